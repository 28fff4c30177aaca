//! ToolJet credentials as read from a Kubernetes Secret.

use std::collections::BTreeMap;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use super::Error;

/// How the operator authenticates to ToolJet.
///
/// `Token` uses the External API (Enterprise, `ENABLE_EXTERNAL_API=true`); `Session` logs in as
/// a ToolJet user, which works on every edition including Community.
#[derive(Clone)]
pub enum Credentials {
    /// External API access token (`EXTERNAL_API_ACCESS_TOKEN`), sent as `Authorization: Basic <token>`.
    Token(SecretString),
    /// A ToolJet user logging in with email and password.
    Session {
        email: String,
        password: SecretString,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Token(_) => f.write_str("Credentials::Token([REDACTED])"),
            Credentials::Session { email, .. } => f
                .debug_struct("Credentials::Session")
                .field("email", email)
                .field("password", &"[REDACTED]")
                .finish(),
        }
    }
}

impl Credentials {
    /// Reads the Secret's data: key `token`, or keys `email` and `password`. If both forms are
    /// present the token wins (the External API needs no login round trip).
    ///
    /// Trailing newlines (from `kubectl create secret --from-file`) are dropped; the token and
    /// email are trimmed entirely.
    pub fn from_secret_data(data: &BTreeMap<String, Vec<u8>>) -> Result<Credentials, Error> {
        let text = |key: &str| -> Result<Option<String>, Error> {
            match data.get(key) {
                None => Ok(None),
                Some(bytes) => {
                    let s = std::str::from_utf8(bytes).map_err(|_| Error::InvalidCredentials {
                        detail: format!("the value of key `{key}` is not valid UTF-8"),
                    })?;
                    let s = if key == "password" {
                        s.trim_end_matches(['\n', '\r'])
                    } else {
                        s.trim()
                    };
                    Ok((!s.is_empty()).then(|| s.to_string()))
                }
            }
        };
        if let Some(token) = text("token")? {
            if token.chars().any(|c| c.is_control() || c == ' ') {
                return Err(Error::InvalidCredentials {
                    detail: "the value of key `token` contains spaces or control characters".into(),
                });
            }
            return Ok(Credentials::Token(SecretString::from(token)));
        }
        match (text("email")?, text("password")?) {
            (Some(email), Some(password)) => {
                if !email.contains('@') {
                    return Err(Error::InvalidCredentials {
                        detail: "the value of key `email` is not an email address".into(),
                    });
                }
                Ok(Credentials::Session {
                    email,
                    password: SecretString::from(password),
                })
            }
            (Some(_), None) => Err(Error::InvalidCredentials {
                detail: "key `email` is set but key `password` is missing or empty".into(),
            }),
            (None, Some(_)) => Err(Error::InvalidCredentials {
                detail: "key `password` is set but key `email` is missing or empty".into(),
            }),
            (None, None) => Err(Error::InvalidCredentials {
                detail: format!(
                    "neither `token` nor `email`/`password` is set (keys present: {})",
                    if data.is_empty() {
                        "none".to_string()
                    } else {
                        data.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                ),
            }),
        }
    }

    /// `"token"` or `"session"`, for logs and status.
    pub fn mode(&self) -> &'static str {
        match self {
            Credentials::Token(_) => "token",
            Credentials::Session { .. } => "session",
        }
    }

    /// The secret strings, so error texts quoted from ToolJet can be scrubbed of them.
    pub(crate) fn secrets(&self) -> Vec<String> {
        match self {
            Credentials::Token(t) => vec![t.expose_secret().to_string()],
            Credentials::Session { password, .. } => vec![password.expose_secret().to_string()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect()
    }

    #[test]
    fn token() {
        let c = Credentials::from_secret_data(&data(&[("token", b"abc123\n")])).unwrap();
        match &c {
            Credentials::Token(t) => assert_eq!(t.expose_secret(), "abc123"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(format!("{c:?}"), "Credentials::Token([REDACTED])");
    }

    #[test]
    fn token_wins_over_session() {
        let c = Credentials::from_secret_data(&data(&[
            ("token", b"abc123"),
            ("email", b"a@b.c"),
            ("password", b"pw"),
        ]))
        .unwrap();
        assert_eq!(c.mode(), "token");
    }

    #[test]
    fn session() {
        let c = Credentials::from_secret_data(&data(&[
            ("email", b" admin@example.com\n"),
            ("password", b" pass word \n"),
        ]))
        .unwrap();
        match &c {
            Credentials::Session { email, password } => {
                assert_eq!(email, "admin@example.com");
                assert_eq!(password.expose_secret(), " pass word ");
            }
            other => panic!("unexpected {other:?}"),
        }
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("pass word"), "{dbg}");
    }

    #[test]
    fn errors_name_keys_never_values() {
        let e = Credentials::from_secret_data(&data(&[("email", b"a@b.c")])).unwrap_err();
        assert!(e.to_string().contains("`password` is missing"));
        let e = Credentials::from_secret_data(&data(&[("password", b"hunter22")])).unwrap_err();
        assert!(e.to_string().contains("`email` is missing"));
        assert!(!e.to_string().contains("hunter22"));
        let e = Credentials::from_secret_data(&data(&[("token", &[0xff, 0xfe])])).unwrap_err();
        assert!(e.to_string().contains("not valid UTF-8"));
        let e = Credentials::from_secret_data(&data(&[("username", b"x")])).unwrap_err();
        assert!(e.to_string().contains("keys present: username"));
        let e = Credentials::from_secret_data(&data(&[("token", b"  \n")])).unwrap_err();
        assert_eq!(e.reason(), "InvalidCredentials");
        let e = Credentials::from_secret_data(&data(&[("email", b"nobody"), ("password", b"x")]))
            .unwrap_err();
        assert!(e.to_string().contains("not an email"));
    }
}
