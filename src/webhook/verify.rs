//! Who sent a delivery and what it says, without IO: the signature schemes of GitHub, GitLab,
//! Gitea/Forgejo and Bitbucket (Cloud and Data Center), checked in constant time, and the refs
//! a push delivery names. Only the refs and their new commits are read from a body; nothing in
//! it is trusted further (every check re-reads the repository itself).

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The git host family a delivery came from, told by the header that authenticated it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// GitHub and GitHub Enterprise: `X-Hub-Signature-256: sha256=<hmac>`.
    GitHub,
    /// GitLab: `X-Gitlab-Token: <secret>`.
    GitLab,
    /// Gitea and Forgejo: `X-Gitea-Signature` / `X-Forgejo-Signature: <hmac>`.
    Gitea,
    /// Bitbucket Cloud and Data Center: `X-Hub-Signature: sha256=<hmac>`.
    Bitbucket,
}

impl Provider {
    /// Label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::GitLab => "gitlab",
            Provider::Gitea => "gitea",
            Provider::Bitbucket => "bitbucket",
        }
    }
}

/// Why a delivery was not accepted as coming from the git host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unauthenticated {
    /// No signature or token header of any supported host.
    Unsigned,
    /// A signature or token that does not match the secret.
    BadSignature,
}

/// A ref a push delivery says moved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefUpdate {
    /// Full ref name (`refs/heads/main`, `refs/tags/v1`).
    pub reference: String,
    /// The commit it moved to (lowercase hex; all zeros when deleted), when the body says.
    pub after: Option<String>,
}

/// What a delivery is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Refs were pushed (branches or tags, created, moved or deleted).
    Push(Vec<RefUpdate>),
    /// The host testing the hook.
    Ping,
    /// Any other event (issues, pull requests, ...): nothing to do.
    Other(String),
}

/// An authenticated delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Who sent it.
    pub provider: Provider,
    /// The host's delivery id (kept across redeliveries), when it sends one.
    pub id: Option<String>,
    /// What it is about.
    pub event: Event,
}

/// A body that authenticated but is not what its event header says.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct Malformed(pub String);

/// An all-zero commit id: git hosts' "the ref was deleted".
pub const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Lowercase hex of HMAC-SHA256 of `body` under `secret`.
fn hmac_hex(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length; the error arm cannot happen.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares in time that depends on the lengths only (both are public: a hex digest, or the
/// length of the secret the host sends back).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

fn hmac_matches(given: &str, secret: &[u8], body: &[u8]) -> bool {
    let expected = hmac_hex(secret, body);
    !expected.is_empty() && same(given.to_ascii_lowercase().as_bytes(), expected.as_bytes())
}

/// Which host signed the delivery with `secret`. The first scheme whose header is present
/// decides: a host that sends several (Gitea also sends GitHub's) is checked by its own.
pub fn authenticate(
    headers: &HeaderMap,
    body: &[u8],
    secret: &[u8],
) -> Result<Provider, Unauthenticated> {
    let check = |ok: bool, p: Provider| {
        if ok {
            Ok(p)
        } else {
            Err(Unauthenticated::BadSignature)
        }
    };
    for name in ["x-forgejo-signature", "x-gitea-signature"] {
        if let Some(sig) = header(headers, name) {
            return check(hmac_matches(sig, secret, body), Provider::Gitea);
        }
    }
    if let Some(sig) = header(headers, "x-hub-signature-256") {
        let ok = sig
            .strip_prefix("sha256=")
            .is_some_and(|hex| hmac_matches(hex, secret, body));
        return check(ok, Provider::GitHub);
    }
    if let Some(token) = header(headers, "x-gitlab-token") {
        // Digests of equal length: the comparison tells nothing of the secret's length either.
        let digest = |b: &[u8]| -> [u8; 32] { <Sha256 as sha2::Digest>::digest(b).into() };
        return check(
            same(&digest(token.as_bytes()), &digest(secret)),
            Provider::GitLab,
        );
    }
    if let Some(sig) = header(headers, "x-hub-signature") {
        // Bitbucket signs with SHA-256; GitHub's legacy SHA-1 header alone is not accepted.
        let ok = sig
            .strip_prefix("sha256=")
            .is_some_and(|hex| hmac_matches(hex, secret, body));
        return check(ok, Provider::Bitbucket);
    }
    Err(Unauthenticated::Unsigned)
}

/// The delivery id the host keeps across redeliveries of one event.
fn delivery_id(provider: Provider, headers: &HeaderMap) -> Option<String> {
    let names: &[&str] = match provider {
        Provider::GitHub => &["x-github-delivery"],
        Provider::Gitea => &["x-forgejo-delivery", "x-gitea-delivery"],
        Provider::GitLab => &["idempotency-key", "x-gitlab-event-uuid"],
        Provider::Bitbucket => &["x-request-uuid", "x-request-id"],
    };
    names
        .iter()
        .find_map(|n| header(headers, n))
        .filter(|v| !v.is_empty())
        .map(|v| v.chars().take(128).collect())
}

/// Reads what an authenticated delivery is about.
pub fn parse(provider: Provider, headers: &HeaderMap, body: &[u8]) -> Result<Delivery, Malformed> {
    let event_header = match provider {
        Provider::GitHub => "x-github-event",
        Provider::Gitea => {
            if headers.contains_key("x-forgejo-event") {
                "x-forgejo-event"
            } else {
                "x-gitea-event"
            }
        }
        Provider::GitLab => "x-gitlab-event",
        Provider::Bitbucket => "x-event-key",
    };
    let name = header(headers, event_header).unwrap_or_default().to_owned();
    let event = match (provider, name.as_str()) {
        (Provider::GitHub, "ping") | (Provider::Bitbucket, "diagnostics:ping") => Event::Ping,
        (Provider::GitHub | Provider::Gitea, "push")
        | (Provider::GitLab, "Push Hook" | "Tag Push Hook") => Event::Push(vec![single_ref(body)?]),
        (Provider::Bitbucket, "repo:push") => Event::Push(bitbucket_cloud_refs(body)?),
        (Provider::Bitbucket, "repo:refs_changed") => Event::Push(bitbucket_server_refs(body)?),
        _ => Event::Other(name.chars().take(64).collect()),
    };
    Ok(Delivery {
        provider,
        id: delivery_id(provider, headers),
        event,
    })
}

/// The JSON of a body: as sent (`application/json`), or GitHub's default form encoding, whose
/// `payload` field holds it (the signature is over the raw body either way).
fn json(body: &[u8]) -> Result<serde_json::Value, Malformed> {
    if let Ok(v) = serde_json::from_slice(body) {
        return Ok(v);
    }
    let payload = url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned());
    match payload {
        Some(p) => serde_json::from_str(&p)
            .map_err(|e| Malformed(format!("the form field `payload` is not JSON: {e}"))),
        None => Err(Malformed(
            "the body is neither JSON nor a form with a `payload` field; set the webhook's content type to application/json".into(),
        )),
    }
}

fn full_ref(name: &str) -> Option<String> {
    (name.starts_with("refs/") && name.len() <= 1024 && !name.contains(['\n', '\0']))
        .then(|| name.to_owned())
}

fn sha(v: Option<&serde_json::Value>) -> Option<String> {
    v.and_then(|v| v.as_str())
        .filter(|s| (4..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase)
}

/// GitHub, Gitea and GitLab: `{"ref": "refs/heads/main", "after": "<sha>"}`.
fn single_ref(body: &[u8]) -> Result<RefUpdate, Malformed> {
    let v = json(body)?;
    let reference = v
        .get("ref")
        .and_then(|r| r.as_str())
        .and_then(full_ref)
        .ok_or_else(|| Malformed("a push delivery without a full `ref`".into()))?;
    Ok(RefUpdate {
        reference,
        after: sha(v.get("after")),
    })
}

/// Bitbucket Cloud: `push.changes[]` with `new` (null when deleted) and `old`, each
/// `{type: branch|tag, name, target: {hash}}`.
fn bitbucket_cloud_refs(body: &[u8]) -> Result<Vec<RefUpdate>, Malformed> {
    let v = json(body)?;
    let changes = v
        .pointer("/push/changes")
        .and_then(|c| c.as_array())
        .ok_or_else(|| Malformed("a repo:push delivery without `push.changes`".into()))?;
    let mut out = Vec::new();
    for c in changes.iter().take(256) {
        let new = c.get("new").filter(|n| !n.is_null());
        let Some(side) = new.or_else(|| c.get("old").filter(|o| !o.is_null())) else {
            continue;
        };
        let prefix = match side.get("type").and_then(|t| t.as_str()) {
            Some("branch" | "named_branch") => "refs/heads/",
            Some("tag" | "annotated_tag") => "refs/tags/",
            _ => continue,
        };
        let Some(name) = side.get("name").and_then(|n| n.as_str()) else {
            continue;
        };
        let Some(reference) = full_ref(&format!("{prefix}{name}")) else {
            continue;
        };
        let after = match new {
            Some(n) => sha(n.pointer("/target/hash")),
            None => Some(ZERO_SHA.to_owned()),
        };
        out.push(RefUpdate { reference, after });
    }
    Ok(out)
}

/// Bitbucket Data Center: `changes[]` of `{ref: {id}, refId, toHash}`.
fn bitbucket_server_refs(body: &[u8]) -> Result<Vec<RefUpdate>, Malformed> {
    let v = json(body)?;
    let changes = v
        .get("changes")
        .and_then(|c| c.as_array())
        .ok_or_else(|| Malformed("a repo:refs_changed delivery without `changes`".into()))?;
    Ok(changes
        .iter()
        .take(256)
        .filter_map(|c| {
            let id = c
                .pointer("/ref/id")
                .or_else(|| c.get("refId"))
                .and_then(|r| r.as_str())?;
            Some(RefUpdate {
                reference: full_ref(id)?,
                after: sha(c.get("toHash")),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const SECRET: &[u8] = b"It's a Secret to Everybody";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn github_documented_example_signature() {
        // docs.github.com "Validating webhook deliveries": secret and payload from the docs.
        let body = b"Hello, World!";
        assert_eq!(
            hmac_hex(SECRET, body),
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        let h = headers(&[(
            "x-hub-signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )]);
        assert_eq!(authenticate(&h, body, SECRET), Ok(Provider::GitHub));
        assert_eq!(
            authenticate(&h, b"Hello, World?", SECRET),
            Err(Unauthenticated::BadSignature)
        );
        assert_eq!(
            authenticate(&h, body, b"another secret"),
            Err(Unauthenticated::BadSignature)
        );
    }

    #[test]
    fn each_scheme_is_checked_by_its_own_header() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let mac = hmac_hex(SECRET, body);
        let gitea = headers(&[("x-gitea-signature", &mac)]);
        assert_eq!(authenticate(&gitea, body, SECRET), Ok(Provider::Gitea));
        let forgejo = headers(&[("x-forgejo-signature", &mac.to_uppercase())]);
        assert_eq!(authenticate(&forgejo, body, SECRET), Ok(Provider::Gitea));
        let gitlab = headers(&[("x-gitlab-token", "It's a Secret to Everybody")]);
        assert_eq!(authenticate(&gitlab, body, SECRET), Ok(Provider::GitLab));
        let wrong = headers(&[("x-gitlab-token", "It's a Secret to Everybod")]);
        assert_eq!(
            authenticate(&wrong, body, SECRET),
            Err(Unauthenticated::BadSignature)
        );
        let bb = headers(&[("x-hub-signature", &format!("sha256={mac}"))]);
        assert_eq!(authenticate(&bb, body, SECRET), Ok(Provider::Bitbucket));
        // GitHub's legacy SHA-1 header alone is refused, and so is a signature without prefix.
        let sha1 = headers(&[("x-hub-signature", "sha1=0123")]);
        assert_eq!(
            authenticate(&sha1, body, SECRET),
            Err(Unauthenticated::BadSignature)
        );
        let bare = headers(&[("x-hub-signature-256", &mac)]);
        assert_eq!(
            authenticate(&bare, body, SECRET),
            Err(Unauthenticated::BadSignature)
        );
        assert_eq!(
            authenticate(&HeaderMap::new(), body, SECRET),
            Err(Unauthenticated::Unsigned)
        );
        // Gitea sends GitHub's header too: its own decides, so a wrong one is not rescued.
        let mixed = headers(&[
            ("x-gitea-signature", "00"),
            ("x-hub-signature-256", &format!("sha256={mac}")),
        ]);
        assert_eq!(
            authenticate(&mixed, body, SECRET),
            Err(Unauthenticated::BadSignature)
        );
    }

    #[test]
    fn push_events_name_their_refs() {
        let body = br#"{"ref":"refs/tags/v1.2","before":"0000000000000000000000000000000000000000","after":"ABCDEF0123456789abcdef0123456789abcdef01"}"#;
        let d = parse(
            Provider::GitHub,
            &headers(&[("x-github-event", "push"), ("x-github-delivery", "d-1")]),
            body,
        )
        .unwrap();
        assert_eq!(d.id.as_deref(), Some("d-1"));
        assert_eq!(
            d.event,
            Event::Push(vec![RefUpdate {
                reference: "refs/tags/v1.2".into(),
                after: Some("abcdef0123456789abcdef0123456789abcdef01".into()),
            }])
        );
        let gl = parse(
            Provider::GitLab,
            &headers(&[
                ("x-gitlab-event", "Push Hook"),
                ("x-gitlab-event-uuid", "u-1"),
                ("idempotency-key", "k-1"),
            ]),
            br#"{"object_kind":"push","ref":"refs/heads/main","after":"da1560886d4f094c3e6c9ef40349f7d38b5d27d7"}"#,
        )
        .unwrap();
        assert_eq!(gl.id.as_deref(), Some("k-1"));
        assert!(matches!(&gl.event, Event::Push(r) if r[0].reference == "refs/heads/main"));
        let ping = parse(
            Provider::GitHub,
            &headers(&[("x-github-event", "ping")]),
            br#"{"zen":"Keep it logically awesome."}"#,
        )
        .unwrap();
        assert_eq!(ping.event, Event::Ping);
        let other = parse(
            Provider::GitHub,
            &headers(&[("x-github-event", "issues")]),
            b"{}",
        )
        .unwrap();
        assert_eq!(other.event, Event::Other("issues".into()));
        assert!(parse(
            Provider::Gitea,
            &headers(&[("x-gitea-event", "push")]),
            br#"{"ref":"main"}"#
        )
        .is_err());
        assert!(parse(
            Provider::Gitea,
            &headers(&[("x-gitea-event", "push")]),
            b"not json"
        )
        .is_err());
        // GitHub's default content type, application/x-www-form-urlencoded.
        let form =
            b"payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%2C%22after%22%3A%22abcd%22%7D";
        let d = parse(
            Provider::GitHub,
            &headers(&[("x-github-event", "push")]),
            form,
        )
        .unwrap();
        assert_eq!(
            d.event,
            Event::Push(vec![RefUpdate {
                reference: "refs/heads/main".into(),
                after: Some("abcd".into())
            }])
        );
    }

    #[test]
    fn bitbucket_cloud_and_data_center_changes() {
        let cloud = br#"{"push":{"changes":[
            {"new":{"type":"branch","name":"main","target":{"hash":"1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f"}},"old":null},
            {"new":null,"old":{"type":"tag","name":"v1","target":{"hash":"aa"}}},
            {"new":{"type":"weird","name":"x"}}
        ]}}"#;
        let d = parse(
            Provider::Bitbucket,
            &headers(&[("x-event-key", "repo:push"), ("x-request-uuid", "r-1")]),
            cloud,
        )
        .unwrap();
        assert_eq!(
            d.event,
            Event::Push(vec![
                RefUpdate {
                    reference: "refs/heads/main".into(),
                    after: Some("1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f".into())
                },
                RefUpdate {
                    reference: "refs/tags/v1".into(),
                    after: Some(ZERO_SHA.into())
                },
            ])
        );
        let server = br#"{"eventKey":"repo:refs_changed","changes":[{"ref":{"id":"refs/heads/release","displayId":"release","type":"BRANCH"},"refId":"refs/heads/release","fromHash":"ecddabb624f6f5ba43816f5926e580a5f680a932","toHash":"178864a7d521b6f5e720b386b2c2b0ef8563e0dc","type":"UPDATE"}]}"#;
        let d = parse(
            Provider::Bitbucket,
            &headers(&[
                ("x-event-key", "repo:refs_changed"),
                ("x-request-id", "s-1"),
            ]),
            server,
        )
        .unwrap();
        assert_eq!(d.id.as_deref(), Some("s-1"));
        assert_eq!(
            d.event,
            Event::Push(vec![RefUpdate {
                reference: "refs/heads/release".into(),
                after: Some("178864a7d521b6f5e720b386b2c2b0ef8563e0dc".into())
            }])
        );
        let ping = parse(
            Provider::Bitbucket,
            &headers(&[("x-event-key", "diagnostics:ping")]),
            b"{}",
        )
        .unwrap();
        assert_eq!(ping.event, Event::Ping);
    }
}
