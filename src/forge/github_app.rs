//! GitHub App installation tokens: how the operator authenticates to HTTPS repositories on
//! GitHub as an App (Flux's Secret keys `githubAppID`, `githubAppInstallationID`,
//! `githubAppPrivateKey`, `githubEnterpriseApiUrl`).
//!
//! An App JWT (RS256, `iat` 60 s in the past against clock drift, `exp` 9 minutes ahead, under
//! GitHub's 10-minute limit, `iss` the App ID) is exchanged at
//! `POST {api}/app/installations/{id}/access_tokens` for a one-hour installation token, scoped
//! to the one repository when one is named (least privilege). git uses it as the password of
//! `x-access-token`. Tokens are cached until 5 minutes before they expire.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::RsaPrivateKey;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::http::{self, Transport};

/// The git username that goes with an installation token.
pub const GIT_USERNAME: &str = "x-access-token";

/// A cached token is used until this long before it expires, so git never starts a fetch with
/// a token about to lapse.
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// GitHub's REST API version the requests are written against.
const API_VERSION: &str = "2022-11-28";

/// What identifies a GitHub App installation, from the user's Secret.
#[derive(Clone)]
pub struct AppCredentials {
    /// `https://api.github.com`, or GitHub Enterprise Server's `https://host/api/v3`.
    pub api_base: String,
    /// The App ID (`githubAppID`; GitHub also accepts the client ID as `iss`).
    pub app_id: String,
    /// The installation ID (`githubAppInstallationID`).
    pub installation_id: String,
    /// The App's private key (`githubAppPrivateKey`), PKCS#1 or PKCS#8 PEM.
    pub private_key_pem: Zeroizing<String>,
    /// A CA bundle trusted besides the system roots (GitHub Enterprise Server with a private
    /// CA; Flux's `caFile`).
    pub ca_pem: Option<String>,
}

impl fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppCredentials")
            .field("api_base", &self.api_base)
            .field("app_id", &self.app_id)
            .field("installation_id", &self.installation_id)
            .field("private_key_pem", &"[REDACTED]")
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "[CA]"))
            .finish()
    }
}

/// An installation token and when GitHub says it stops working.
#[derive(Clone)]
pub struct InstallationToken {
    /// The git password (username [`GIT_USERNAME`]) and API bearer token.
    pub token: Zeroizing<String>,
    /// GitHub's `expires_at`.
    pub expires_at: SystemTime,
}

impl fmt::Debug for InstallationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstallationToken")
            .field("token", &"[REDACTED]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// What went wrong, coarsely, for mapping to a Kubernetes condition reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppTokenErrorKind {
    /// The API URL, CA or installation ID cannot be used as given.
    Config,
    /// The private key cannot be parsed.
    KeyInvalid,
    /// GitHub refused the JWT (401).
    JwtRejected,
    /// No such installation of this App (404).
    InstallationNotFound,
    /// The installation is suspended (403).
    InstallationSuspended,
    /// The repository is not among the installation's repositories (422).
    RepositoryNotInstalled,
    /// No answer: connection failed or timed out.
    Unreachable,
    /// Any other answer.
    Unexpected,
}

/// Why no installation token could be had. No message ever contains the key, the JWT or a
/// token; each says what the user should change.
#[derive(Debug, thiserror::Error)]
pub enum AppTokenError {
    /// The settings cannot be used as given.
    #[error("the GitHub App settings are not usable: {detail}")]
    Config {
        /// What is wrong.
        detail: String,
    },
    /// `githubAppPrivateKey` is not an unencrypted RSA private key.
    #[error("the GitHub App private key (githubAppPrivateKey) cannot be used: {detail}; put the App's private key as downloaded from the App's settings (a PEM \"BEGIN RSA PRIVATE KEY\" or \"BEGIN PRIVATE KEY\" block) into the Secret")]
    KeyInvalid {
        /// Why (never the key's content).
        detail: String,
    },
    /// GitHub could not verify the JWT.
    #[error("GitHub refused the JWT of App {app_id} (401{message}): check that githubAppID is this App's ID and githubAppPrivateKey one of its current private keys (a key deleted in the App's settings stops working), and that this machine's clock is right", message = http::said(message))]
    JwtRejected {
        /// The App ID used as `iss`.
        app_id: String,
        /// GitHub's message.
        message: String,
    },
    /// No such installation of this App.
    #[error("GitHub App {app_id} has no installation {installation_id} (404{message}): check githubAppInstallationID (the number at the end of the installation's settings URL), or install the App again if it was uninstalled", message = http::said(message))]
    InstallationNotFound {
        /// The App ID.
        app_id: String,
        /// The installation ID asked for.
        installation_id: String,
        /// GitHub's message.
        message: String,
    },
    /// The installation is suspended.
    #[error("installation {installation_id} of GitHub App {app_id} is suspended (403{message}): an owner of the account must unsuspend it in the installation's settings", message = http::said(message))]
    InstallationSuspended {
        /// The App ID.
        app_id: String,
        /// The installation ID.
        installation_id: String,
        /// GitHub's message.
        message: String,
    },
    /// The repository is not among those the installation was given.
    #[error("installation {installation_id} of GitHub App {app_id} does not include the repository {repository} (422{message}): add the repository to the installation (its settings, \"Repository access\") or use the installation of the repository's owner", message = http::said(message))]
    RepositoryNotInstalled {
        /// The App ID.
        app_id: String,
        /// The installation ID.
        installation_id: String,
        /// `owner/name`.
        repository: String,
        /// GitHub's message.
        message: String,
    },
    /// No answer within the deadline.
    #[error("the GitHub API at {host} did not answer within {}: check githubEnterpriseApiUrl and that the operator may reach that host (network policies, proxies)", humantime::format_duration(*after))]
    Timeout {
        /// `host[:port]`.
        host: String,
        /// The deadline.
        after: Duration,
    },
    /// Connecting or TLS failed.
    #[error("the GitHub API at {host} cannot be reached: {detail}; check githubEnterpriseApiUrl, the CA (caFile) and that the operator may reach that host")]
    Unreachable {
        /// `host[:port]`.
        host: String,
        /// The transport's error.
        detail: String,
    },
    /// GitHub answered something else.
    #[error("the GitHub API at {host} answered the token request unexpectedly ({status}{message}); if it persists, check GitHub's status and the API URL", status = status.map(|s| s.to_string()).unwrap_or_else(|| "no status".into()), message = http::said(detail))]
    Unexpected {
        /// `host[:port]`.
        host: String,
        /// HTTP status, if one came.
        status: Option<u16>,
        /// GitHub's message or what was wrong with the answer.
        detail: String,
    },
}

impl AppTokenError {
    /// The coarse kind, for condition reasons.
    pub fn kind(&self) -> AppTokenErrorKind {
        match self {
            AppTokenError::Config { .. } => AppTokenErrorKind::Config,
            AppTokenError::KeyInvalid { .. } => AppTokenErrorKind::KeyInvalid,
            AppTokenError::JwtRejected { .. } => AppTokenErrorKind::JwtRejected,
            AppTokenError::InstallationNotFound { .. } => AppTokenErrorKind::InstallationNotFound,
            AppTokenError::InstallationSuspended { .. } => AppTokenErrorKind::InstallationSuspended,
            AppTokenError::RepositoryNotInstalled { .. } => {
                AppTokenErrorKind::RepositoryNotInstalled
            }
            AppTokenError::Timeout { .. } | AppTokenError::Unreachable { .. } => {
                AppTokenErrorKind::Unreachable
            }
            AppTokenError::Unexpected { .. } => AppTokenErrorKind::Unexpected,
        }
    }
}

/// What a cached token is filed under: a rotated key, another installation or another
/// repository never shares a token.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CacheKey {
    api_base: String,
    app_id: String,
    installation_id: String,
    key_sha256: [u8; 32],
    repository: Option<String>,
}

struct Cached {
    token: InstallationToken,
    refresh_at: SystemTime,
}

#[derive(Default)]
struct State {
    tokens: HashMap<CacheKey, Cached>,
    /// One HTTP client per CA bundle (`None` = system roots only), built once.
    clients: HashMap<Option<[u8; 32]>, reqwest::Client>,
}

/// Installation tokens, fetched on demand and cached; cheap to clone, shared by all
/// reconcilers.
#[derive(Clone)]
pub struct AppTokens {
    state: Arc<Mutex<State>>,
    timeout: Duration,
}

impl fmt::Debug for AppTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppTokens")
            .field("cached", &lock(&self.state).tokens.len())
            .field("timeout", &self.timeout)
            .finish()
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: String,
    expires_at: String,
    #[serde(default)]
    repositories: Option<Vec<RepoAnswer>>,
}

#[derive(Deserialize)]
struct RepoAnswer {
    #[serde(default)]
    full_name: Option<String>,
}

impl AppTokens {
    /// An empty cache; `timeout` bounds every request to GitHub (connect to last byte).
    pub fn new(timeout: Duration) -> AppTokens {
        AppTokens {
            state: Arc::new(Mutex::new(State::default())),
            timeout,
        }
    }

    /// An installation token for `creds`, scoped to `repository` (`owner/name`) when given.
    /// Cached per (api_base, app_id, installation_id, sha256 of the key, repository) until 5
    /// minutes before it expires; a rotated key gets a new token.
    pub async fn token(
        &self,
        creds: &AppCredentials,
        repository: Option<&str>,
    ) -> Result<InstallationToken, AppTokenError> {
        let key = cache_key(creds, repository);
        let now = SystemTime::now();
        if let Some(c) = lock(&self.state).tokens.get(&key) {
            if now < c.refresh_at {
                return Ok(c.token.clone());
            }
        }
        let token = self.fetch(creds, repository).await?;
        let refresh_at = token
            .expires_at
            .checked_sub(REFRESH_BEFORE_EXPIRY)
            .unwrap_or(UNIX_EPOCH);
        let mut st = lock(&self.state);
        st.tokens.retain(|_, c| c.token.expires_at > now);
        st.tokens.insert(
            key,
            Cached {
                token: token.clone(),
                refresh_at,
            },
        );
        Ok(token)
    }

    /// Drops a cached token (git said it was rejected), so the next call fetches a new one.
    pub fn invalidate(&self, creds: &AppCredentials, repository: Option<&str>) {
        lock(&self.state)
            .tokens
            .remove(&cache_key(creds, repository));
    }

    fn client(&self, ca_pem: Option<&str>) -> Result<reqwest::Client, AppTokenError> {
        let ca = ca_pem.map(str::trim).filter(|p| !p.is_empty());
        let id = ca.map(|p| sha256(p.as_bytes()));
        if let Some(c) = lock(&self.state).clients.get(&id) {
            return Ok(c.clone());
        }
        let c = http::build_client(ca, self.timeout)
            .map_err(|detail| AppTokenError::Config { detail })?;
        lock(&self.state).clients.insert(id, c.clone());
        Ok(c)
    }

    async fn fetch(
        &self,
        creds: &AppCredentials,
        repository: Option<&str>,
    ) -> Result<InstallationToken, AppTokenError> {
        let base = http::parse_api_base(&creds.api_base)
            .map_err(|detail| AppTokenError::Config { detail })?;
        let host = http::host_label(&base);
        let app_id = creds.app_id.trim().to_string();
        let installation_id = creds.installation_id.trim().to_string();
        if app_id.is_empty() {
            return Err(AppTokenError::Config {
                detail: "githubAppID is empty".into(),
            });
        }
        if installation_id.is_empty() || !installation_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AppTokenError::Config {
                detail: format!(
                    "githubAppInstallationID {installation_id:?} is not a number; it is the number at the end of the installation's settings URL"
                ),
            });
        }
        let repo = match repository {
            Some(r) => Some(split_repository(r)?),
            None => None,
        };
        let key = parse_private_key(&creds.private_key_pem)?;
        let jwt = Zeroizing::new(sign_app_jwt(&key, &app_id, unix_now())?);
        let client = self.client(creds.ca_pem.as_deref())?;
        let url = http::join(
            &base,
            &["app", "installations", &installation_id, "access_tokens"],
        );
        let body = match &repo {
            Some((_, name)) => serde_json::json!({ "repositories": [name] }),
            None => serde_json::json!({}),
        };
        let auth = http::sensitive(&format!("Bearer {}", jwt.as_str())).ok_or_else(|| {
            AppTokenError::KeyInvalid {
                detail: "the signed JWT is not a valid header value".into(),
            }
        })?;
        let req = client
            .post(url)
            .header(reqwest::header::AUTHORIZATION, auth)
            .header(reqwest::header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION)
            .json(&body);
        tracing::debug!(%host, %app_id, %installation_id, ?repository, "requesting a GitHub App installation token");
        let reply = match http::send(req, self.timeout).await {
            Ok(r) => r,
            Err(Transport::Timeout) => {
                return Err(AppTokenError::Timeout {
                    host,
                    after: self.timeout,
                })
            }
            Err(Transport::Failed(detail)) => {
                return Err(AppTokenError::Unreachable {
                    host,
                    detail: http::quote(&detail, &[jwt.as_str()]),
                })
            }
            Err(Transport::TooLarge) => {
                return Err(AppTokenError::Unexpected {
                    host,
                    status: None,
                    detail: format!("the answer is larger than {} bytes", http::MAX_BODY),
                })
            }
        };
        let secrets = [jwt.as_str()];
        let message = || http::host_message(&reply.body, &secrets);
        let repository_full = repo.as_ref().map(|(o, n)| format!("{o}/{n}"));
        match reply.status {
            201 | 200 => {}
            401 => {
                return Err(AppTokenError::JwtRejected {
                    app_id,
                    message: message(),
                })
            }
            404 => {
                return Err(AppTokenError::InstallationNotFound {
                    app_id,
                    installation_id,
                    message: message(),
                })
            }
            403 if !message().to_ascii_lowercase().contains("rate limit") => {
                return Err(AppTokenError::InstallationSuspended {
                    app_id,
                    installation_id,
                    message: message(),
                })
            }
            422 if repository_full.is_some() => {
                return Err(AppTokenError::RepositoryNotInstalled {
                    app_id,
                    installation_id,
                    repository: repository_full.unwrap_or_default(),
                    message: message(),
                })
            }
            status => {
                return Err(AppTokenError::Unexpected {
                    host,
                    status: Some(status),
                    detail: message(),
                })
            }
        }
        let answer: TokenAnswer =
            serde_json::from_slice(&reply.body).map_err(|e| AppTokenError::Unexpected {
                host: host.clone(),
                status: Some(reply.status),
                detail: format!("the answer is not a token: {}", without_input(&e)),
            })?;
        let token = Zeroizing::new(answer.token);
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AppTokenError::Unexpected {
                host,
                status: Some(reply.status),
                detail: "the token in the answer is empty or not printable ASCII".into(),
            });
        }
        let expires_at =
            parse_expires_at(&answer.expires_at).ok_or_else(|| AppTokenError::Unexpected {
                host: host.clone(),
                status: Some(reply.status),
                detail: format!(
                    "expires_at {:?} is not an RFC 3339 time",
                    http::quote(&answer.expires_at, &[token.as_str()])
                ),
            })?;
        // GitHub lists the repositories of a scoped token; one of another owner's with the
        // same name would be a token for the wrong repository.
        if let (Some(full), Some(list)) = (&repository_full, &answer.repositories) {
            let listed = list.iter().any(|r| {
                r.full_name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(full))
            });
            if !listed {
                return Err(AppTokenError::RepositoryNotInstalled {
                    app_id,
                    installation_id,
                    repository: full.clone(),
                    message: "the token GitHub issued does not list this repository".into(),
                });
            }
        }
        tracing::info!(%host, %app_id, %installation_id, ?repository, "issued a GitHub App installation token");
        Ok(InstallationToken { token, expires_at })
    }
}

/// A serde error's text without the input it quotes (which could be a token).
fn without_input(e: &serde_json::Error) -> String {
    format!(
        "{:?} at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

fn cache_key(creds: &AppCredentials, repository: Option<&str>) -> CacheKey {
    CacheKey {
        api_base: creds.api_base.trim().trim_end_matches('/').to_string(),
        app_id: creds.app_id.trim().to_string(),
        installation_id: creds.installation_id.trim().to_string(),
        key_sha256: sha256(normalise_pem(&creds.private_key_pem).as_bytes()),
        repository: repository.map(|r| r.trim().trim_matches('/').to_ascii_lowercase()),
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// `owner/name` into its parts; GitHub's `repositories` takes the name only.
fn split_repository(r: &str) -> Result<(String, String), AppTokenError> {
    let r = r.trim().trim_matches('/');
    let r = r.strip_suffix(".git").unwrap_or(r);
    match r.split_once('/') {
        Some((o, n)) if !o.is_empty() && !n.is_empty() && !n.contains('/') => {
            Ok((o.to_string(), n.to_string()))
        }
        _ => Err(AppTokenError::Config {
            detail: format!("the repository {r:?} is not of the form owner/name"),
        }),
    }
}

/// The PEM text with surrounding whitespace removed and, when it came with literal `\n`
/// escapes instead of line breaks (a key pasted through a one-line field), those restored.
fn normalise_pem(pem: &str) -> Zeroizing<String> {
    let t = pem.trim();
    if !t.contains('\n') && t.contains("\\n") {
        Zeroizing::new(t.replace("\\n", "\n"))
    } else {
        Zeroizing::new(t.replace("\r\n", "\n"))
    }
}

/// Parses the App's RSA private key: PKCS#1 (`BEGIN RSA PRIVATE KEY`, as GitHub hands them
/// out) or PKCS#8 (`BEGIN PRIVATE KEY`). The error never quotes the key.
pub(crate) fn parse_private_key(pem: &str) -> Result<RsaPrivateKey, AppTokenError> {
    let pem = normalise_pem(pem);
    let invalid = |detail: &str| AppTokenError::KeyInvalid {
        detail: detail.to_string(),
    };
    if pem.is_empty() {
        return Err(invalid("it is empty"));
    }
    if pem.contains("BEGIN ENCRYPTED PRIVATE KEY") || pem.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(invalid(
            "it is encrypted with a passphrase (GitHub's keys are not; decrypt it, e.g. `openssl pkey -in key.pem -out plain.pem`)",
        ));
    }
    if pem.contains("BEGIN RSA PRIVATE KEY") {
        return RsaPrivateKey::from_pkcs1_pem(&pem)
            .map_err(|_| invalid("its \"RSA PRIVATE KEY\" block does not decode as an RSA key"));
    }
    if pem.contains("BEGIN PRIVATE KEY") {
        return RsaPrivateKey::from_pkcs8_pem(&pem).map_err(|e| match e {
            rsa::pkcs8::Error::PublicKey(_) | rsa::pkcs8::Error::KeyMalformed => {
                invalid("its \"PRIVATE KEY\" block is not an RSA key (GitHub App keys are RSA)")
            }
            _ => invalid("its \"PRIVATE KEY\" block does not decode as an RSA key"),
        });
    }
    if pem.contains("-----BEGIN") {
        return Err(invalid(
            "it is a PEM block of another kind (GitHub App keys are RSA private keys)",
        ));
    }
    Err(invalid("it is not a PEM private key"))
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// The App JWT for `now` (seconds since the epoch): RS256, `iat` = now − 60 s, `exp` = now +
/// 9 min, `iss` = the App ID (a JSON number when numeric, as GitHub's examples send it).
pub(crate) fn sign_app_jwt(
    key: &RsaPrivateKey,
    app_id: &str,
    now: i64,
) -> Result<String, AppTokenError> {
    let iss = match app_id.parse::<u64>() {
        Ok(n) => serde_json::Value::from(n),
        Err(_) => serde_json::Value::from(app_id),
    };
    let claims = serde_json::json!({ "iat": now - 60, "exp": now + 9 * 60, "iss": iss });
    let header = b64(br#"{"alg":"RS256","typ":"JWT"}"#);
    let payload = b64(claims.to_string().as_bytes());
    let input = format!("{header}.{payload}");
    let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(key.clone());
    let sig = signer
        .try_sign(input.as_bytes())
        .map_err(|_| AppTokenError::KeyInvalid {
            detail: "signing with it failed".into(),
        })?
        .to_bytes();
    Ok(format!("{input}.{}", b64(&sig)))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn parse_expires_at(s: &str) -> Option<SystemTime> {
    let ts: jiff::Timestamp = s.trim().parse().ok()?;
    Some(SystemTime::from(ts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::EncodePrivateKey;
    use rsa::signature::Verifier;
    use std::sync::OnceLock;

    fn key() -> &'static RsaPrivateKey {
        static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
        KEY.get_or_init(|| RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap())
    }

    fn decode(part: &str) -> Vec<u8> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap()
    }

    #[test]
    fn jwt_claims_and_signature_verify_with_the_public_key() {
        let now = 1_800_000_000;
        let jwt = sign_app_jwt(key(), "123456", now).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value = serde_json::from_slice(&decode(parts[0])).unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["typ"], "JWT");
        let claims: serde_json::Value = serde_json::from_slice(&decode(parts[1])).unwrap();
        assert_eq!(claims["iat"], now - 60);
        assert_eq!(claims["exp"], now + 540);
        assert_eq!(claims["iss"], 123456);
        let vk = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key().to_public_key());
        let sig = rsa::pkcs1v15::Signature::try_from(decode(parts[2]).as_slice()).unwrap();
        vk.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .unwrap();
        // A client ID stays a string.
        let jwt = sign_app_jwt(key(), "Iv23liabc", now).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&decode(jwt.split('.').nth(1).unwrap())).unwrap();
        assert_eq!(claims["iss"], "Iv23liabc");
    }

    #[test]
    fn pkcs1_and_pkcs8_keys_parse() {
        let pkcs1 = key().to_pkcs1_pem(rsa::pkcs1::LineEnding::LF).unwrap();
        let pkcs8 = key().to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap();
        assert_eq!(&parse_private_key(&pkcs1).unwrap(), key());
        assert_eq!(&parse_private_key(&pkcs8).unwrap(), key());
        // CRLF line ends and a key squeezed onto one line with literal \n.
        assert!(parse_private_key(&pkcs1.replace('\n', "\r\n")).is_ok());
        assert!(parse_private_key(&format!("  {}  ", pkcs1.replace('\n', "\\n"))).is_ok());
    }

    #[test]
    fn bad_keys_are_key_invalid_and_never_quoted() {
        let pkcs1 = key().to_pkcs1_pem(rsa::pkcs1::LineEnding::LF).unwrap();
        let body: String = pkcs1.lines().nth(3).unwrap().to_string();
        let corrupted = pkcs1.replace(&body, &"A".repeat(body.len()));
        let cases = [
            "".to_string(),
            "garbage".to_string(),
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG\n-----END ENCRYPTED PRIVATE KEY-----\n".to_string(),
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n".to_string(),
            "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIIrYSSNQFaA2Hwf1duRSxKtLYX5CB04fSeQ6tF1aY/PuoAoGCCqGSM49\n-----END EC PRIVATE KEY-----\n".to_string(),
            corrupted,
        ];
        for pem in &cases {
            let e = parse_private_key(pem).unwrap_err();
            assert_eq!(e.kind(), AppTokenErrorKind::KeyInvalid, "{pem}");
            let text = e.to_string();
            for line in pem.lines().filter(|l| l.len() > 8) {
                assert!(!text.contains(line), "{text} quotes {line}");
            }
        }
        let e = parse_private_key(&cases[2]).unwrap_err().to_string();
        assert!(e.contains("encrypted"), "{e}");
    }

    #[test]
    fn an_ed25519_pkcs8_key_is_not_rsa() {
        // An Ed25519 PKCS#8 key (RFC 8410 example).
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
        let e = parse_private_key(pem).unwrap_err().to_string();
        assert!(e.contains("not an RSA key"), "{e}");
    }

    #[test]
    fn cache_keys_separate_what_must_not_share_a_token() {
        let creds = AppCredentials {
            api_base: "https://api.github.com/".into(),
            app_id: "1".into(),
            installation_id: "2".into(),
            private_key_pem: Zeroizing::new("k1".into()),
            ca_pem: None,
        };
        let a = cache_key(&creds, Some("acme/apps"));
        assert_eq!(a, cache_key(&creds, Some("Acme/Apps")));
        assert_ne!(a, cache_key(&creds, None));
        assert_ne!(a, cache_key(&creds, Some("acme/other")));
        let rotated = AppCredentials {
            private_key_pem: Zeroizing::new("k2".into()),
            ..creds.clone()
        };
        assert_ne!(a, cache_key(&rotated, Some("acme/apps")));
        let other_inst = AppCredentials {
            installation_id: "3".into(),
            ..creds.clone()
        };
        assert_ne!(a, cache_key(&other_inst, Some("acme/apps")));
    }

    #[test]
    fn repositories_split_into_owner_and_name() {
        assert_eq!(
            split_repository("acme/apps.git").unwrap(),
            ("acme".into(), "apps".into())
        );
        assert!(split_repository("apps").is_err());
        assert!(split_repository("a/b/c").is_err());
    }

    #[test]
    fn error_messages_say_what_to_do() {
        let e = AppTokenError::JwtRejected {
            app_id: "1".into(),
            message: "A JSON web token could not be decoded".into(),
        };
        let t = e.to_string();
        assert!(
            t.contains("githubAppPrivateKey") && t.contains("could not be decoded"),
            "{t}"
        );
        let e = AppTokenError::Unexpected {
            host: "api.github.com".into(),
            status: Some(502),
            detail: String::new(),
        };
        assert!(e.to_string().contains("(502)"), "{e}");
        assert_eq!(e.kind(), AppTokenErrorKind::Unexpected);
    }

    #[test]
    fn expires_at_parses_rfc3339() {
        let t = parse_expires_at("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_767_225_600
        );
        assert!(parse_expires_at("tomorrow").is_none());
    }
}
