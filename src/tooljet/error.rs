//! Typed errors of the ToolJet client and the pure mapping from HTTP answers to them.
//!
//! Every message says what the user should do, because it ends up verbatim in a condition
//! message or an Event. No message ever carries a credential: bodies quoted from ToolJet pass
//! through [`redact`] with the client's secrets first.

use crate::api::Reason;
use std::time::Duration;

/// Which kind of object was missing, so the condition reason can be specific.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// A ToolJet workspace (organization).
    Workspace,
    /// An app.
    App,
    /// A version of an app.
    Version,
    /// Anything else (used where the route does not tell).
    Other,
}

impl Resource {
    fn noun(self) -> &'static str {
        match self {
            Resource::Workspace => "workspace",
            Resource::App => "app",
            Resource::Version => "app version",
            Resource::Other => "object",
        }
    }
}

/// Everything that can go wrong talking to ToolJet.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// ToolJet refused the credentials (401/403).
    #[error("ToolJet refused the credentials ({status} on {route}): {hint}")]
    Unauthorized {
        status: u16,
        route: String,
        hint: String,
    },
    /// The ToolJet edition, licence or configuration lacks what the operation needs.
    #[error("{feature} is not available on this ToolJet: {hint}")]
    FeatureUnavailable { feature: String, hint: String },
    /// A workspace, app or version does not exist.
    #[error("{} {what} not found in ToolJet: {hint}", resource.noun())]
    NotFound {
        resource: Resource,
        what: String,
        hint: String,
    },
    /// The app name (or slug) is already used by another app of the workspace.
    #[error("an app named {name:?} already exists in the workspace ({detail}); rename or delete that app in ToolJet, or point the AppSync at it with `app: id:<uuid>`")]
    NameConflict { name: String, detail: String },
    /// The export was made by a newer ToolJet than the target; ToolJet refuses such imports.
    #[error("the app was exported by ToolJet {export}, which is newer than the target ToolJet {server}; upgrade the target ToolJet to {export} or later, or export the app from a ToolJet not newer than {server}")]
    VersionTooNew { export: String, server: String },
    /// The request body exceeds ToolJet's JSON body limit (`MAX_JSON_SIZE`, 50 MB).
    #[error("the request body ({}) exceeds ToolJet's limit of {limit} bytes (MAX_JSON_SIZE); make the app smaller (e.g. move large static data out of it) or raise MAX_JSON_SIZE on the ToolJet server", size.map(|s| format!("{s} bytes")).unwrap_or_else(|| "size unknown".into()))]
    PayloadTooLarge { size: Option<u64>, limit: u64 },
    /// ToolJet failed (5xx); usually transient.
    #[error("ToolJet answered {status} on {route}: {detail}; this is usually temporary, otherwise check the ToolJet server logs")]
    Server {
        status: u16,
        route: String,
        detail: String,
    },
    /// ToolJet rejected the request (4xx not covered by a more specific variant).
    #[error("ToolJet rejected {route} with {status}: {detail}")]
    Rejected {
        status: u16,
        route: String,
        detail: String,
    },
    /// No answer within the configured timeout.
    #[error("ToolJet did not answer {route} within {}s; check that ToolJet is healthy and not overloaded", after.as_secs_f32())]
    Timeout { route: String, after: Duration },
    /// An operation of several calls (pages, retries, logins) ran past the client's deadline.
    #[error("{operation} did not finish within {}s (the client's overall deadline); check that ToolJet is healthy and not overloaded", after.as_secs_f32())]
    Deadline { operation: String, after: Duration },
    /// Connection-level failure (DNS, refused, TLS, reset).
    #[error("cannot reach ToolJet ({route}): {detail}; check spec.tooljet.url, DNS, TLS and network policies")]
    Transport { route: String, detail: String },
    /// ToolJet answered something this client does not understand.
    #[error("unexpected answer from ToolJet on {route}: {detail}; check that spec.tooljet.url points at ToolJet (not a proxy or login page) and that its version is supported")]
    InvalidResponse { route: String, detail: String },
    /// The answer is larger than the client reads for its route; reading stopped there.
    #[error("ToolJet's answer to {route} is larger than {limit} bytes, so it was not read further; check that spec.tooljet.url points at ToolJet itself (not a proxy or another service); an app whose export is this large could not be imported by ToolJet anyway (50 MB limit)")]
    AnswerTooLarge { route: String, limit: u64 },
    /// The export JSON handed to an import is not a ToolJet export.
    #[error(
        "the app definition is not a ToolJet export: {detail}; export the app again with ToolJet"
    )]
    InvalidExport { detail: String },
    /// The app name cannot be used in ToolJet (empty, or longer than ToolJet's 50 characters).
    #[error("app name {name:?} cannot be used in ToolJet: {detail}")]
    InvalidName { name: String, detail: String },
    /// A workspace constant (or data-source option) cannot be written as given: ToolJet's DTO
    /// would refuse it. Names the key, never the value.
    #[error("workspace constant {key:?} cannot be written to ToolJet: {detail}")]
    InvalidConstant { key: String, detail: String },
    /// The credentials Secret is unusable.
    #[error("the ToolJet credentials Secret is unusable: {detail}; it needs the key `token` (External API token) or the keys `email` and `password` (a ToolJet user)")]
    InvalidCredentials { detail: String },
    /// The ToolJet base URL is unusable.
    #[error("invalid ToolJet URL {url:?}: {detail}; set spec.tooljet.url to the http(s) address of ToolJet, e.g. https://tooljet.example.com")]
    InvalidUrl { url: String, detail: String },
    /// The ToolJet URL is plain http to a host that is not loopback, and nobody opted in.
    #[error("spec.tooljet.url {url:?} is plain http to a host that is not loopback, so the ToolJet credentials would cross the network unencrypted; use https, or set spec.tooljet.allowInsecureHTTP: true if the traffic never leaves a trusted network")]
    InsecureUrl { url: String },
    /// A multi-step change failed and could not be undone completely.
    #[error("{cause}; undoing the partial change failed as well ({rollback}), so ToolJet needs manual cleanup: {leftovers}")]
    RollbackFailed {
        cause: String,
        rollback: String,
        leftovers: String,
    },
}

impl Error {
    /// CamelCase reason for Kubernetes conditions and Events.
    pub fn reason(&self) -> Reason {
        match self {
            Error::Unauthorized { .. } => Reason::ToolJetUnauthorized,
            Error::FeatureUnavailable { .. } => Reason::ToolJetFeatureUnavailable,
            Error::NotFound { resource, .. } => match resource {
                Resource::Workspace => Reason::WorkspaceNotFound,
                Resource::App => Reason::AppNotFound,
                Resource::Version => Reason::AppVersionNotFound,
                Resource::Other => Reason::ToolJetNotFound,
            },
            Error::NameConflict { .. } => Reason::NameConflict,
            Error::VersionTooNew { .. } => Reason::ToolJetVersionTooNew,
            Error::PayloadTooLarge { .. } => Reason::PayloadTooLarge,
            Error::Server { .. } => Reason::ToolJetServerError,
            Error::Rejected { .. } => Reason::ToolJetRejected,
            Error::Timeout { .. } | Error::Deadline { .. } => Reason::ToolJetTimeout,
            Error::Transport { .. } => Reason::ToolJetUnreachable,
            Error::InvalidResponse { .. } | Error::AnswerTooLarge { .. } => {
                Reason::ToolJetInvalidResponse
            }
            Error::InvalidExport { .. } => Reason::InvalidExport,
            Error::InvalidName { .. } => Reason::InvalidAppName,
            // No reason of its own yet (`src/api` is out of this change's scope).
            Error::InvalidConstant { .. } => Reason::ToolJetRejected,
            Error::InvalidCredentials { .. } => Reason::InvalidCredentials,
            Error::InvalidUrl { .. } => Reason::InvalidToolJetURL,
            Error::InsecureUrl { .. } => Reason::InsecureToolJetURL,
            Error::RollbackFailed { .. } => Reason::ToolJetRollbackFailed,
        }
    }

    /// Whether retrying the same call later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Server { .. }
            | Error::Timeout { .. }
            | Error::Deadline { .. }
            | Error::Transport { .. } => true,
            Error::Rejected { status, .. } => *status == 429,
            _ => false,
        }
    }
}

/// Which kind of ToolJet route a call went to; decides how 404 and 401/403 are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RouteKind {
    /// `/api/ext/...` External API v1 (token auth).
    Ext,
    /// `/api/v2/ext/...` External API v2 (token auth, newest EE only).
    ExtV2,
    /// Internal builder routes (session cookie + `tj-workspace-id`).
    Internal,
    /// Login (`/api/authenticate`).
    Login,
    /// Public routes (`/api/metadata`).
    Public,
}

/// What the caller knows about a call, used to turn a status code into a precise [`Error`].
#[derive(Clone, Debug)]
pub(crate) struct ErrorContext {
    pub method: String,
    pub path: String,
    pub kind: RouteKind,
    pub resource: Resource,
    /// Identifier of the object the route addresses (for NotFound messages).
    pub what: String,
    /// App name the call tries to take (for NameConflict).
    pub name: Option<String>,
    /// `tooljet_version` of an export being imported and the server version (for VersionTooNew).
    pub versions: Option<(String, String)>,
}

impl ErrorContext {
    pub(crate) fn route(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

const TOKEN_HINT: &str = "check that the `token` key of the credentials Secret equals EXTERNAL_API_ACCESS_TOKEN of the ToolJet server (it is sent as `Authorization: Basic <token>`)";
const SESSION_HINT: &str = "check the `email` and `password` keys of the credentials Secret, that this user is active and an admin or builder of the workspace, and that password login is enabled for the workspace";
const EXT_DISABLED_HINT: &str = "the External API is not enabled (Community Edition, or ENABLE_EXTERNAL_API is not true); set ENABLE_EXTERNAL_API=true and EXTERNAL_API_ACCESS_TOKEN on an Enterprise ToolJet, or use `email` and `password` credentials instead of `token`";
const LICENSE_HINT: &str = "the ToolJet licence lacks the EXTERNAL_API feature; upgrade the plan or use `email` and `password` credentials instead of `token`";

/// Maps a non-2xx answer to an [`Error`]. `message` is the (already redacted) error text from
/// the body.
pub(crate) fn classify_status(status: u16, ctx: &ErrorContext, message: &str) -> Error {
    let route = ctx.route();
    let detail = if message.is_empty() {
        format!("HTTP {status}")
    } else {
        message.to_string()
    };
    let token_mode = matches!(ctx.kind, RouteKind::Ext | RouteKind::ExtV2);
    match status {
        401 | 403 => Error::Unauthorized {
            status,
            route,
            hint: if token_mode {
                TOKEN_HINT.to_string()
            } else if status == 403 {
                format!("{SESSION_HINT} (ToolJet said: {detail})")
            } else {
                SESSION_HINT.to_string()
            },
        },
        404 if route_missing(ctx, message) => match ctx.kind {
            RouteKind::Ext => Error::FeatureUnavailable {
                feature: "The External API".into(),
                hint: EXT_DISABLED_HINT.into(),
            },
            RouteKind::ExtV2 => Error::FeatureUnavailable {
                feature: "External API v2".into(),
                hint: "this ToolJet does not offer /api/v2/ext (it arrived in late-2025 Enterprise releases); upgrade ToolJet or use `email` and `password` credentials".into(),
            },
            _ => Error::InvalidResponse {
                route,
                detail: format!("the route does not exist ({detail})"),
            },
        },
        404 => Error::NotFound {
            resource: ctx.resource,
            what: ctx.what.clone(),
            hint: format!("ToolJet answered 404 on {route}: {detail}"),
        },
        409 => match &ctx.name {
            Some(name) => Error::NameConflict {
                name: name.clone(),
                detail,
            },
            None => Error::Rejected {
                status,
                route,
                detail,
            },
        },
        413 => Error::PayloadTooLarge {
            size: None,
            limit: crate::tooljet::DEFAULT_MAX_BODY_BYTES,
        },
        451 => Error::FeatureUnavailable {
            feature: "The External API".into(),
            hint: LICENSE_HINT.into(),
        },
        400 if ctx.name.is_some() && mentions_name_taken(message) => Error::NameConflict {
            name: ctx.name.clone().unwrap_or_default(),
            detail,
        },
        400 | 422 if ctx.versions.is_some() && mentions_version(message) => {
            let (export, server) = ctx.versions.clone().unwrap_or_default();
            Error::VersionTooNew { export, server }
        }
        500..=599 => Error::Server {
            status,
            route,
            detail,
        },
        _ => Error::Rejected {
            status,
            route,
            detail,
        },
    }
}

/// NestJS answers an unregistered route with `Cannot <METHOD> <path>`; a missing object gives
/// any other message. That tells "External API disabled" from "app not found".
fn route_missing(ctx: &ErrorContext, message: &str) -> bool {
    message.starts_with(&format!("Cannot {} ", ctx.method))
}

fn mentions_name_taken(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("already taken")
        || m.contains("already exist")
        || (m.contains("name") && (m.contains("unique") || m.contains("duplicate")))
}

fn mentions_version(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("version")
}

/// Longest text from a server quoted in an error, in characters.
pub(crate) const MAX_QUOTE: usize = 300;

/// Extracts ToolJet's error text from a body (NestJS bodies carry `message`, a string or a
/// list) and makes it safe to quote with [`quote`]. `cut_short`: `body` is only the first part
/// of a longer answer (the rest was not read).
pub(crate) fn body_message(body: &[u8], secrets: &[&str], cut_short: bool) -> String {
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => match v.get("message") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| i.to_string())
                })
                .collect::<Vec<_>>()
                .join("; "),
            Some(other) => other.to_string(),
            None => v
                .get("error")
                .and_then(|e| e.as_str())
                .map(str::to_string)
                .unwrap_or_default(),
        },
        Err(_) => String::from_utf8_lossy(body).trim().to_string(),
    };
    quote(&text, secrets, MAX_QUOTE, cut_short)
}

/// Text from a server made safe to put into an error: every secret is redacted first and the
/// result cut to `max` characters after, so a cut can never leave part of a secret behind.
/// `cut_short`: `text` is a prefix of a longer text, so a secret's beginning at its very end
/// (the rest lying beyond the cut) is dropped as well.
pub(crate) fn quote(text: &str, secrets: &[&str], max: usize, cut_short: bool) -> String {
    let mut out = redact(text, secrets);
    if cut_short {
        drop_partial_secret(&mut out, secrets);
    }
    truncate(&out, max)
}

/// Cuts to `max` characters (never inside a character), marking the cut with `…`.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((at, _)) => format!("{}…", text.get(..at).unwrap_or_default()),
    }
}

/// Secrets shorter than this are not redacted: they would match everywhere and are refused as
/// credentials anyway.
const MIN_SECRET: usize = 4;

/// Replaces every occurrence of each secret in `text`, also in its JSON-escaped form (as a
/// server echoing a JSON request body would show it); longer secrets first, so one containing
/// another is blanked out whole.
pub(crate) fn redact(text: &str, secrets: &[&str]) -> String {
    let mut forms: Vec<String> = Vec::new();
    for s in secrets.iter().filter(|s| s.len() >= MIN_SECRET) {
        forms.push(s.to_string());
        if let Ok(quoted) = serde_json::to_string(s) {
            let escaped = quoted
                .strip_prefix('"')
                .and_then(|q| q.strip_suffix('"'))
                .unwrap_or_default();
            if escaped != *s {
                forms.push(escaped.to_string());
            }
        }
    }
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    let mut out = text.to_string();
    for f in &forms {
        out = out.replace(f.as_str(), "[REDACTED]");
    }
    out
}

/// Removes the beginning of a secret from the end of `text` (and a broken character before
/// it, left by a cut inside a multi-byte character).
fn drop_partial_secret(text: &mut String, secrets: &[&str]) {
    let kept = text.trim_end_matches(char::REPLACEMENT_CHARACTER).len();
    text.truncate(kept);
    for s in secrets.iter().filter(|s| s.len() >= MIN_SECRET) {
        let longest = (1..s.len())
            .rev()
            .filter_map(|k| s.get(..k))
            .find(|prefix| text.ends_with(prefix));
        if let Some(prefix) = longest {
            let keep = text.len().saturating_sub(prefix.len());
            text.truncate(keep);
            text.push_str("[REDACTED]");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(kind: RouteKind) -> ErrorContext {
        ErrorContext {
            method: "GET".into(),
            path: "/api/ext/workspaces".into(),
            kind,
            resource: Resource::App,
            what: "Sales".into(),
            name: Some("Sales".into()),
            versions: Some(("3.20.0".into(), "3.16.0".into())),
        }
    }

    #[test]
    fn maps_statuses() {
        assert_eq!(
            classify_status(403, &ctx(RouteKind::Ext), "").reason(),
            "ToolJetUnauthorized"
        );
        let e = classify_status(403, &ctx(RouteKind::Ext), "Forbidden");
        assert!(e.to_string().contains("EXTERNAL_API_ACCESS_TOKEN"));
        let e = classify_status(404, &ctx(RouteKind::Ext), "Cannot GET /api/ext/workspaces");
        assert_eq!(e.reason(), "ToolJetFeatureUnavailable");
        assert!(e.to_string().contains("ENABLE_EXTERNAL_API=true"));
        let e = classify_status(404, &ctx(RouteKind::Ext), "App not found");
        assert_eq!(e.reason(), "AppNotFound");
        let e = classify_status(451, &ctx(RouteKind::Ext), "");
        assert!(e.to_string().contains("EXTERNAL_API feature"));
        let e = classify_status(400, &ctx(RouteKind::Ext), "App name already taken");
        assert_eq!(e.reason(), "NameConflict");
        let e = classify_status(400, &ctx(RouteKind::Ext), "Unsupported ToolJet version");
        assert_eq!(e.reason(), "ToolJetVersionTooNew");
        assert_eq!(
            classify_status(413, &ctx(RouteKind::Ext), "").reason(),
            "PayloadTooLarge"
        );
        let e = classify_status(502, &ctx(RouteKind::Internal), "bad gateway");
        assert!(e.is_transient());
        assert!(!classify_status(400, &ctx(RouteKind::Internal), "nope").is_transient());
        assert!(classify_status(429, &ctx(RouteKind::Internal), "slow down").is_transient());
        let e = classify_status(401, &ctx(RouteKind::Internal), "");
        assert!(e.to_string().contains("`email` and `password`"));
    }

    #[test]
    fn extracts_messages() {
        let m = |body: &[u8]| body_message(body, &[], false);
        assert_eq!(m(br#"{"message":"x","statusCode":400}"#), "x");
        assert_eq!(m(br#"{"message":["a","b"]}"#), "a; b");
        assert_eq!(m(b"plain text"), "plain text");
        assert_eq!(m(&[b'a'; 400]).chars().count(), 301);
    }

    #[test]
    fn redacts() {
        assert_eq!(
            redact("token s3cr3t-token here", &["s3cr3t-token", "ab"]),
            "token [REDACTED] here"
        );
        // As a server echoing a JSON request body shows it.
        assert_eq!(
            redact(r#"{"password":"pa\"ss\\word"}"#, &["pa\"ss\\word"]),
            r#"{"password":"[REDACTED]"}"#
        );
        // A secret containing another is blanked out whole.
        assert_eq!(
            redact("x abcd-efgh-ijkl y", &["efgh", "abcd-efgh-ijkl"]),
            "x [REDACTED] y"
        );
    }

    /// Every prefix of `secret` of at least 8 bytes that occurs in `text`.
    fn leaked_prefix(text: &str, secret: &str) -> Option<String> {
        (8..=secret.len())
            .filter_map(|k| secret.get(..k))
            .find(|p| text.contains(p))
            .map(str::to_string)
    }

    #[test]
    fn redacts_before_truncating_so_no_part_of_a_secret_leaks() {
        let secret = "tj-ext-0123456789abcdef0123456789abcdef";
        // The secret straddles the quoting bound at every offset around it.
        for start in (MAX_QUOTE - secret.len())..=MAX_QUOTE {
            let text = format!("{}{secret} and more text after it", "x".repeat(start));
            let body = serde_json::to_vec(&serde_json::json!({ "message": text })).unwrap();
            let quoted = body_message(&body, &[secret], false);
            assert_eq!(leaked_prefix(&quoted, secret), None, "at {start}: {quoted}");
            assert!(quoted.chars().count() <= MAX_QUOTE + 1);
            let plain = body_message(text.as_bytes(), &[secret], false);
            assert_eq!(leaked_prefix(&plain, secret), None, "at {start}: {plain}");
        }
    }

    #[test]
    fn a_secret_cut_by_the_read_limit_is_dropped() {
        let secret = "session-token-0123456789abcdef";
        for k in 1..secret.len() {
            // Whitespace before it, so the cut secret would be all that is left after trimming.
            let body = format!("{}{}", " ".repeat(500), &secret[..k]);
            let quoted = body_message(body.as_bytes(), &[secret], true);
            assert!(!quoted.contains(&secret[..k]), "{k}: {quoted}");
        }
        // A multi-byte secret cut inside a character.
        let secret = "pässwörd-geheim-1234";
        let cut = &secret.as_bytes()[..2];
        let quoted = body_message(cut, &[secret], true);
        assert!(!quoted.contains('p'), "{quoted}");
    }

    #[test]
    fn multi_byte_text_is_cut_on_character_boundaries() {
        let text = "é".repeat(400);
        let quoted = body_message(text.as_bytes(), &[], false);
        assert_eq!(quoted.chars().count(), MAX_QUOTE + 1);
        assert!(quoted.ends_with("é…"));
        // A body cut inside a character by the read limit.
        let cut = &text.as_bytes()[..601];
        let quoted = body_message(cut, &[], true);
        assert!(quoted.chars().count() <= MAX_QUOTE + 1);
        for max in 0..5 {
            assert!(truncate("日本語テキスト", max).chars().count() <= max + 1);
        }
        assert_eq!(truncate("日本", 2), "日本");
        assert_eq!(truncate("日本語", 2), "日本…");
        assert_eq!(truncate("", 0), "");
    }

    #[test]
    fn new_variants_have_reasons_and_transience() {
        let d = Error::Deadline {
            operation: "listing the apps".into(),
            after: Duration::from_secs(2),
        };
        assert_eq!(d.reason(), "ToolJetTimeout");
        assert!(d.is_transient());
        let a = Error::AnswerTooLarge {
            route: "GET /api/apps".into(),
            limit: 10,
        };
        assert_eq!(a.reason(), "ToolJetInvalidResponse");
        assert!(!a.is_transient());
        let i = Error::InsecureUrl {
            url: "http://tooljet.example/".into(),
        };
        assert_eq!(i.reason(), "InsecureToolJetURL");
        assert!(!i.is_transient());
    }
}
