//! HTTP client for ToolJet: list workspaces and apps, export, import and replace apps.
//!
//! Two ways in, chosen by the credentials Secret:
//! * **token** — ToolJet's External API (`/api/ext/...`, Enterprise, `ENABLE_EXTERNAL_API=true`),
//!   header `Authorization: Basic <EXTERNAL_API_ACCESS_TOKEN>` (the raw token, not base64).
//! * **session** — log in as a ToolJet user (`POST /api/authenticate`), then the internal
//!   builder routes with cookie `tj_auth_token` and header `tj-workspace-id`; works on the
//!   Community Edition too.
//!
//! The routes used per operation and the ToolJet source each comes from are listed on the
//! methods of [`Client`]. Pure logic (status mapping, parsing, version rule) lives in
//! `error`, `wire` and `version` and is unit-tested there.

mod client;
mod constants;
mod credentials;
mod datasources;
mod error;
mod replace;
pub mod version;
mod wire;

use std::time::Duration;

pub use client::Client;
pub use constants::{
    check_constant_name, check_constant_value, ConstantEntry, Environment, MAX_CONSTANT_NAME,
    MAX_CONSTANT_VALUE,
};
pub use credentials::Credentials;
pub use datasources::{merge_options, DataSource, OptionEntry, OptionValue};
pub use error::{Error, Resource};
pub(crate) use replace::import_refused;
pub use replace::SwapNames;

/// ToolJet's JSON body limit (`MAX_JSON_SIZE`, body-parser `50mb`); larger bodies are refused
/// before sending.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 50 * 1024 * 1024;

/// A ToolJet workspace (an "organization" in ToolJet's code).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workspace {
    /// Workspace UUID.
    pub id: String,
    /// Display name (unique per instance).
    pub name: String,
    /// URL slug; the External API v1 list does not return it, so it may be unknown.
    pub slug: Option<String>,
}

/// An app as listed by ToolJet, with its versions when the route provides them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppSummary {
    /// App UUID.
    pub id: String,
    /// App name (unique per workspace).
    pub name: String,
    /// App slug (defaults to the app id in ToolJet).
    pub slug: Option<String>,
    /// Versions, editing version first where ToolJet orders them so.
    pub versions: Vec<AppVersion>,
}

/// One version of an app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppVersion {
    /// Version UUID.
    pub id: String,
    /// Version name, e.g. `v3`.
    pub name: String,
}

/// Kind of a workspace constant: `{{constants.X}}` are global, `{{secrets.X}}` are secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConstantKind {
    /// Referenced as `{{constants.NAME}}`.
    Global,
    /// Referenced as `{{secrets.NAME}}`.
    Secret,
}

/// A workspace constant's name and kind; values are never read into this type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkspaceConstant {
    /// Constant name.
    pub name: String,
    /// Global or secret.
    pub kind: ConstantKind,
}

/// Largest successful answer read from ordinary routes (lists, app objects, login); the app
/// list of a workspace with thousands of apps and versions fits.
pub const DEFAULT_MAX_ANSWER_BYTES: u64 = 4 * 1024 * 1024;

/// Largest export read; above ToolJet's 50 MB import limit, so every importable app fits.
pub const DEFAULT_MAX_EXPORT_BYTES: u64 = 64 * 1024 * 1024;

/// Largest error body read; only its message is quoted, so the rest is not needed.
pub const DEFAULT_MAX_ERROR_BYTES: u64 = 64 * 1024;

/// Tunables of a [`Client`]; the defaults suit production.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Timeout of each HTTP request (connect + answer).
    pub timeout: Duration,
    /// Timeout of establishing a connection.
    pub connect_timeout: Duration,
    /// Upper bound of one operation with all its requests, retries, backoffs and logins
    /// (e.g. every page of a listing), so a slow ToolJet cannot stall a reconcile for long.
    pub deadline: Duration,
    /// Extra attempts for idempotent calls (GET, exports) after a transient failure.
    pub retries: u32,
    /// First backoff between retries; doubles per attempt.
    pub backoff: Duration,
    /// Upper bound of the backoff.
    pub max_backoff: Duration,
    /// Largest request body sent; larger ones fail with [`Error::PayloadTooLarge`].
    pub max_body_bytes: u64,
    /// Largest successful answer read, except exports; larger ones fail with
    /// [`Error::AnswerTooLarge`] and are not read further.
    pub max_answer_bytes: u64,
    /// Largest export read (export routes only).
    pub max_export_bytes: u64,
    /// Largest part of an error answer read; the rest is dropped unread.
    pub max_error_bytes: u64,
    /// Send credentials over plain `http://` to a host that is not loopback. Off: such a URL
    /// is refused with [`Error::InsecureUrl`] before any request.
    pub allow_insecure_http: bool,
    /// Fixed addresses for host names, bypassing DNS (like `curl --resolve`; the URL's port is
    /// used). For sidecars and tests; empty in production.
    pub resolve: Vec<(String, std::net::IpAddr)>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            deadline: Duration::from_secs(300),
            retries: 3,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
            max_export_bytes: DEFAULT_MAX_EXPORT_BYTES,
            max_error_bytes: DEFAULT_MAX_ERROR_BYTES,
            allow_insecure_http: false,
            resolve: Vec::new(),
        }
    }
}
