//! The async ToolJet client: transport (auth, timeouts, retries, error mapping) and the
//! read/import operations. `replace_app` lives in `replace.rs`.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use tokio::sync::{Mutex, OnceCell};
use url::Url;

use super::error::{body_message, classify_status, redact, truncate, ErrorContext, RouteKind};
use super::wire;
use super::{
    version, AppSummary, AppVersion, ClientOptions, Credentials, Error, Resource, Workspace,
    WorkspaceConstant,
};

/// Name of ToolJet's session cookie (`server/src/modules/session/util.service.ts`).
const AUTH_COOKIE: &str = "tj_auth_token";
/// Header selecting the workspace of an internal call (`session/jwt/jwt.strategy.ts`).
const WORKSPACE_HEADER: &str = "tj-workspace-id";
/// ToolJet's `AppUpdateDto`/`AppCreateDto` limit app names to 50 characters.
pub(crate) const MAX_APP_NAME: usize = 50;
/// Safety stop for paginated listings.
const MAX_PAGES: u64 = 1000;

/// Async ToolJet client; cheap to clone, safe to share between tasks.
///
/// The server version is read once and cached; a session login is made lazily and renewed when
/// ToolJet answers 401.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    http: reqwest::Client,
    base: Url,
    pub(crate) credentials: Credentials,
    options: ClientOptions,
    version: OnceCell<String>,
    session: Mutex<Option<Session>>,
}

struct Session {
    token: SecretString,
    /// Workspaces this session's JWT is valid for (`organizationIds` of the JWT payload).
    orgs: BTreeSet<String>,
    /// The workspace ToolJet logged the user into by default.
    default_org: Option<String>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base.as_str())
            .field("credentials", &self.inner.credentials)
            .finish_non_exhaustive()
    }
}

/// One HTTP call, described before auth is added.
pub(crate) struct Call {
    method: Method,
    segments: Vec<String>,
    query: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    kind: RouteKind,
    /// Workspace for `tj-workspace-id` (internal routes); `None` = the session's default.
    org: Option<String>,
    idempotent: bool,
    resource: Resource,
    what: String,
    name: Option<String>,
    versions: Option<(String, String)>,
}

impl Call {
    pub(crate) fn new(method: Method, kind: RouteKind, segments: &[&str]) -> Call {
        let idempotent = method == Method::GET;
        Call {
            method,
            segments: segments.iter().map(|s| s.to_string()).collect(),
            query: Vec::new(),
            body: None,
            kind,
            org: None,
            idempotent,
            resource: Resource::Other,
            what: String::new(),
            name: None,
            versions: None,
        }
    }
    pub(crate) fn org(mut self, org: &str) -> Call {
        self.org = Some(org.to_string());
        self
    }
    pub(crate) fn query(mut self, key: &str, value: &str) -> Call {
        self.query.push((key.to_string(), value.to_string()));
        self
    }
    pub(crate) fn json(mut self, body: &Value) -> Result<Call, Error> {
        self.body = Some(serde_json::to_vec(body).map_err(|e| Error::InvalidExport {
            detail: format!("cannot serialise the request: {e}"),
        })?);
        Ok(self)
    }
    /// Marks a non-GET call as safe to repeat (e.g. an export, which only reads).
    pub(crate) fn idempotent(mut self) -> Call {
        self.idempotent = true;
        self
    }
    pub(crate) fn about(mut self, resource: Resource, what: &str) -> Call {
        self.resource = resource;
        self.what = what.to_string();
        self
    }
    pub(crate) fn naming(mut self, name: &str) -> Call {
        self.name = Some(name.to_string());
        self
    }
    pub(crate) fn versions(mut self, export: &str, server: &str) -> Call {
        self.versions = Some((export.to_string(), server.to_string()));
        self
    }
}

pub(crate) struct Reply {
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self, route: &str) -> Result<Value, Error> {
        if self.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| Error::InvalidResponse {
            route: route.to_string(),
            detail: format!("the body is not JSON ({e})"),
        })
    }
}

fn invalid(route: &str, detail: impl Into<String>) -> Error {
    Error::InvalidResponse {
        route: route.to_string(),
        detail: detail.into(),
    }
}

fn sensitive(value: &str) -> Result<HeaderValue, Error> {
    let mut v = HeaderValue::from_str(value).map_err(|_| Error::InvalidCredentials {
        detail: "the credential contains characters not allowed in an HTTP header".into(),
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// Text of an error and its sources, without the URL (which is in the route already).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

impl Client {
    /// Creates a client for the ToolJet at `base_url` (`http`/`https`, optionally with a path
    /// prefix; a trailing `/api` is accepted). Fails on an unusable URL.
    pub fn new(base_url: &str, credentials: Credentials) -> Result<Client, Error> {
        Client::with_options(base_url, credentials, ClientOptions::default())
    }

    /// Like [`Client::new`] with explicit timeouts, retries and body limit.
    pub fn with_options(
        base_url: &str,
        credentials: Credentials,
        options: ClientOptions,
    ) -> Result<Client, Error> {
        let raw = base_url.trim();
        let mut url = Url::parse(raw).map_err(|e| Error::InvalidUrl {
            // The raw text may contain userinfo; only echo it when it parses cleanly below.
            url: "<unparsable>".into(),
            detail: e.to_string(),
        })?;
        if !url.username().is_empty() || url.password().is_some() {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            return Err(Error::InvalidUrl {
                url: url.to_string(),
                detail: "the URL contains a user name or password; put credentials into the credentials Secret instead".into(),
            });
        }
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(Error::InvalidUrl {
                url: url.to_string(),
                detail: format!("scheme {:?} is not http or https", url.scheme()),
            });
        }
        if url.host_str().is_none_or(str::is_empty) || url.cannot_be_a_base() {
            return Err(Error::InvalidUrl {
                url: url.to_string(),
                detail: "the URL has no host".into(),
            });
        }
        url.set_query(None);
        url.set_fragment(None);
        {
            let mut segs = url.path_segments_mut().map_err(|_| Error::InvalidUrl {
                url: raw.to_string(),
                detail: "the URL cannot have a path".into(),
            })?;
            segs.pop_if_empty();
        }
        if url.path_segments().and_then(|mut s| s.next_back()) == Some("api") {
            if let Ok(mut segs) = url.path_segments_mut() {
                segs.pop();
            }
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "tooljet-gitsync-operator/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| Error::InvalidUrl {
                url: url.to_string(),
                detail: format!("cannot build an HTTP client: {}", error_chain(&e)),
            })?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base: url,
                credentials,
                options,
                version: OnceCell::new(),
                session: Mutex::new(None),
            }),
        })
    }

    /// The normalised base URL (without `/api`).
    pub fn base_url(&self) -> &str {
        self.inner.base.as_str()
    }

    /// `"token"` or `"session"`.
    pub fn auth_mode(&self) -> &'static str {
        self.inner.credentials.mode()
    }

    pub(crate) fn token_mode(&self) -> bool {
        matches!(self.inner.credentials, Credentials::Token(_))
    }

    fn url(&self, segments: &[String]) -> Result<Url, Error> {
        let mut u = self.inner.base.clone();
        {
            let mut p = u.path_segments_mut().map_err(|_| Error::InvalidUrl {
                url: self.inner.base.to_string(),
                detail: "the URL cannot have a path".into(),
            })?;
            p.pop_if_empty();
            p.push("api");
            p.extend(segments);
        }
        Ok(u)
    }

    fn redact(&self, text: &str) -> String {
        let mut secrets = self.inner.credentials.secrets();
        if let Ok(guard) = self.inner.session.try_lock() {
            if let Some(s) = guard.as_ref() {
                secrets.push(s.token.expose_secret().to_string());
            }
        }
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        redact(text, &refs)
    }

    fn context(&self, call: &Call, path: &str) -> ErrorContext {
        ErrorContext {
            method: call.method.to_string(),
            path: path.to_string(),
            kind: call.kind,
            resource: call.resource,
            what: call.what.clone(),
            name: call.name.clone(),
            versions: call.versions.clone(),
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.inner
            .options
            .backoff
            .saturating_mul(factor)
            .min(self.inner.options.max_backoff)
    }

    /// Sends a call: auth, body limit, timeout, retries of idempotent calls on transient
    /// failures, one re-login on 401 in session mode, status -> [`Error`] mapping.
    pub(crate) async fn send(&self, call: &Call) -> Result<Reply, Error> {
        if let Some(body) = &call.body {
            let size = body.len() as u64;
            if size > self.inner.options.max_body_bytes {
                return Err(Error::PayloadTooLarge {
                    size: Some(size),
                    limit: self.inner.options.max_body_bytes,
                });
            }
        }
        let attempts = if call.idempotent {
            1 + self.inner.options.retries
        } else {
            1
        };
        let mut attempt = 0;
        let mut relogged = false;
        loop {
            attempt += 1;
            match self.send_once(call).await {
                Err(e) if e.is_transient() && attempt < attempts => {
                    let wait = self.backoff(attempt);
                    tracing::debug!(reason = e.reason(), attempt, ?wait, "retrying ToolJet call");
                    tokio::time::sleep(wait).await;
                }
                Err(Error::Unauthorized { status: 401, .. })
                    if call.kind == RouteKind::Internal && !relogged =>
                {
                    tracing::debug!("ToolJet session refused, logging in again");
                    relogged = true;
                    *self.inner.session.lock().await = None;
                }
                other => return other,
            }
        }
    }

    async fn send_once(&self, call: &Call) -> Result<Reply, Error> {
        let url = self.url(&call.segments)?;
        let path = url.path().to_string();
        let route = format!("{} {}", call.method, path);
        let mut rb = self
            .inner
            .http
            .request(call.method.clone(), url)
            .timeout(self.inner.options.timeout);
        if !call.query.is_empty() {
            rb = rb.query(&call.query);
        }
        match (&self.inner.credentials, call.kind) {
            (Credentials::Token(token), RouteKind::Ext | RouteKind::ExtV2) => {
                rb = rb.header(
                    AUTHORIZATION,
                    sensitive(&format!("Basic {}", token.expose_secret()))?,
                );
            }
            (Credentials::Session { .. }, RouteKind::Internal) => {
                let (token, org) = self.session_for(call.org.as_deref()).await?;
                rb = rb.header(
                    COOKIE,
                    sensitive(&format!("{AUTH_COOKIE}={}", token.expose_secret()))?,
                );
                if let Some(org) = org {
                    rb = rb.header(WORKSPACE_HEADER, sensitive(&org)?);
                }
            }
            (_, RouteKind::Public) => {}
            (creds, kind) => {
                return Err(Error::FeatureUnavailable {
                    feature: format!("{route} ({kind:?} route)"),
                    hint: format!(
                        "this operation is not possible with {} credentials",
                        creds.mode()
                    ),
                })
            }
        }
        if let Some(body) = &call.body {
            rb = rb
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let started = std::time::Instant::now();
        let resp = rb
            .send()
            .await
            .map_err(|e| self.transport_error(e, &route))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.transport_error(e, &route))?
            .to_vec();
        tracing::debug!(%route, status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "ToolJet call");
        if status.is_success() {
            return Ok(Reply { headers, body });
        }
        if status.is_redirection() {
            let location = headers
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            return Err(invalid(
                &route,
                format!(
                    "redirected ({}) to {}; use the final URL (often https://) in spec.tooljet.url",
                    status.as_u16(),
                    truncate(location, 200)
                ),
            ));
        }
        let message = self.redact(&body_message(&body));
        Err(
            match classify_status(status.as_u16(), &self.context(call, &path), &message) {
                Error::PayloadTooLarge { limit, .. } => Error::PayloadTooLarge {
                    size: call.body.as_ref().map(|b| b.len() as u64),
                    limit,
                },
                other => other,
            },
        )
    }

    fn transport_error(&self, e: reqwest::Error, route: &str) -> Error {
        let e = e.without_url();
        if e.is_timeout() {
            Error::Timeout {
                route: route.to_string(),
                after: self.inner.options.timeout,
            }
        } else {
            Error::Transport {
                route: route.to_string(),
                detail: self.redact(&error_chain(&e)),
            }
        }
    }

    /// Sends and parses the JSON answer.
    pub(crate) async fn send_json(&self, call: &Call) -> Result<Value, Error> {
        let reply = self.send(call).await?;
        reply.json(&self.route_of(call))
    }

    pub(crate) fn route_of(&self, call: &Call) -> String {
        let path = self
            .url(&call.segments)
            .map(|u| u.path().to_string())
            .unwrap_or_default();
        format!("{} {}", call.method, path)
    }

    // ---- session handling -------------------------------------------------------------

    /// Returns a session token valid for `org` (or the default workspace) and the workspace id
    /// to send in `tj-workspace-id`. Logs in (again) when needed.
    async fn session_for(
        &self,
        org: Option<&str>,
    ) -> Result<(SecretString, Option<String>), Error> {
        let mut guard = self.inner.session.lock().await;
        if guard.is_none() {
            *guard = Some(self.login(None, None).await?);
        }
        if let Some(org) = org {
            let known = guard.as_ref().is_some_and(|s| s.orgs.contains(org));
            if !known {
                // ToolJet's JWT lists the workspaces it is valid for; logging in to another
                // workspace with the current cookie adds it (`POST /api/authenticate/:orgId`).
                let previous = guard.take();
                *guard = Some(self.login(Some(org), previous).await?);
            }
        }
        let session = guard
            .as_ref()
            .ok_or_else(|| invalid("POST /api/authenticate", "no session after login"))?;
        let org = org
            .map(str::to_string)
            .or_else(|| session.default_org.clone());
        Ok((session.token.clone(), org))
    }

    /// `POST /api/authenticate` (or `/api/authenticate/:organizationId`) with
    /// `{email, password}`; the answer sets cookie `tj_auth_token`.
    /// Source: `server/src/modules/auth/controller.ts` (`login`, `organizationLogin`),
    /// `AppAuthenticationDto` in `auth/dto/index.ts`, cookie set in
    /// `session/util.service.ts` `generateLoginResultPayload`.
    async fn login(&self, org: Option<&str>, previous: Option<Session>) -> Result<Session, Error> {
        let Credentials::Session { email, password } = &self.inner.credentials else {
            return Err(Error::FeatureUnavailable {
                feature: "Session login".into(),
                hint: "the client was built with token credentials".into(),
            });
        };
        let mut segments = vec!["authenticate".to_string()];
        if let Some(org) = org {
            segments.push(org.to_string());
        }
        let url = self.url(&segments)?;
        let route = format!("POST {}", url.path());
        let body =
            serde_json::to_vec(&json!({"email": email, "password": password.expose_secret()}))
                .map_err(|e| invalid(&route, e.to_string()))?;
        let ctx = ErrorContext {
            method: "POST".into(),
            path: url.path().to_string(),
            kind: RouteKind::Login,
            resource: Resource::Workspace,
            what: org.unwrap_or("default").to_string(),
            name: None,
            versions: None,
        };
        let attempts = 1 + self.inner.options.retries;
        let mut attempt = 0;
        let reply = loop {
            attempt += 1;
            let mut rb = self
                .inner
                .http
                .post(url.clone())
                .timeout(self.inner.options.timeout)
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
            if let Some(prev) = &previous {
                rb = rb.header(
                    COOKIE,
                    sensitive(&format!("{AUTH_COOKIE}={}", prev.token.expose_secret()))?,
                );
            }
            let result = async {
                let resp = rb
                    .send()
                    .await
                    .map_err(|e| self.transport_error(e, &route))?;
                let status = resp.status();
                let headers = resp.headers().clone();
                let body = resp
                    .bytes()
                    .await
                    .map_err(|e| self.transport_error(e, &route))?
                    .to_vec();
                if status.is_success() {
                    Ok(Reply { headers, body })
                } else if status == StatusCode::NOT_FOUND && org.is_some() {
                    Err(Error::NotFound {
                        resource: Resource::Workspace,
                        what: org.unwrap_or_default().to_string(),
                        hint:
                            "ToolJet does not know this workspace or the user is not a member of it"
                                .into(),
                    })
                } else {
                    Err(classify_status(
                        status.as_u16(),
                        &ctx,
                        &self.redact(&body_message(&body)),
                    ))
                }
            }
            .await;
            match result {
                Err(e) if e.is_transient() && attempt < attempts => {
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
                other => break other?,
            }
        };
        let cookies = reply
            .headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok());
        let token = wire::cookie_value(cookies, AUTH_COOKIE).ok_or_else(|| {
            invalid(
                &route,
                "the login answer has no tj_auth_token cookie; check that spec.tooljet.url reaches ToolJet directly",
            )
        })?;
        let answer = reply.json(&route).unwrap_or(Value::Null);
        let current = wire::parse_login_org(&answer);
        let mut orgs = previous.map(|p| p.orgs).unwrap_or_default();
        orgs.extend(current.iter().cloned());
        if let Some(org) = org {
            orgs.insert(org.to_string());
        }
        tracing::debug!(workspaces = orgs.len(), "logged in to ToolJet");
        Ok(Session {
            token: SecretString::from(token),
            default_org: current.or_else(|| org.map(str::to_string)),
            orgs,
        })
    }

    // ---- operations -------------------------------------------------------------------

    /// ToolJet's version, read once and cached for the life of the client.
    ///
    /// Route: `GET /api/metadata` → `{installed_version}` (public; source
    /// `server/src/modules/meta/{controller,service}.ts`). Fallback when that is missing or
    /// refused: `tooljet_version` of an export of the first app found.
    pub async fn server_version(&self) -> Result<String, Error> {
        self.inner
            .version
            .get_or_try_init(|| self.fetch_version())
            .await
            .cloned()
    }

    async fn fetch_version(&self) -> Result<String, Error> {
        let call = Call::new(Method::GET, RouteKind::Public, &["metadata"]);
        match self.send_json(&call).await {
            Ok(v) => match wire::parse_metadata_version(&v) {
                Some(ver) if version::parse(&ver).is_some() => return Ok(ver),
                _ => tracing::debug!("GET /api/metadata has no usable installed_version"),
            },
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => tracing::debug!(reason = e.reason(), "GET /api/metadata failed"),
        }
        for ws in self.list_workspaces().await? {
            if let Some(app) = self.list_app_rows(&ws).await?.into_iter().next() {
                let export = self.export_raw(&ws, &app.id, None).await?;
                if let Some(v) = export.get("tooljet_version").and_then(Value::as_str) {
                    return Ok(v.to_string());
                }
            }
        }
        Err(Error::FeatureUnavailable {
            feature: "Reading the ToolJet version".into(),
            hint: "GET /api/metadata gave no installed_version and no workspace has an app to export; check that spec.tooljet.url points at ToolJet".into(),
        })
    }

    /// All workspaces the credentials can see.
    ///
    /// Token: `GET /api/ext/workspaces` → `[{id, name, status, groups}]` (reference §3,
    /// `external-apis/Interfaces/IController.ts` `getAllWorkspaces`). Session:
    /// `GET /api/organizations` → `{organizations:[{id, name, slug, ...}], total_count}`
    /// (`server/src/modules/organizations/controller.ts`).
    pub async fn list_workspaces(&self) -> Result<Vec<Workspace>, Error> {
        let call = if self.token_mode() {
            Call::new(Method::GET, RouteKind::Ext, &["ext", "workspaces"])
        } else {
            Call::new(Method::GET, RouteKind::Internal, &["organizations"])
        }
        .about(Resource::Workspace, "list");
        let v = self.send_json(&call).await?;
        wire::parse_workspaces(&v).map_err(|d| invalid(&self.route_of(&call), d))
    }

    /// Finds a workspace by id, slug or name (ToolJet's own v2 resolution order).
    ///
    /// The External API v1 list has no slugs, so in token mode an unmatched identifier is tried
    /// with `GET /api/v2/ext/workspaces/:workspaceIdentifier` (newest EE; `external-apis/AGENTS.md`
    /// "resolveWorkspaceByIdentifier tries id → slug → name").
    pub async fn resolve_workspace(&self, ident: &str) -> Result<Workspace, Error> {
        let list = self.list_workspaces().await?;
        if let Some(w) = wire::match_workspace(&list, ident) {
            return Ok(w.clone());
        }
        let known = truncate(
            &list
                .iter()
                .map(|w| w.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            300,
        );
        let not_found = || {
            Error::NotFound {
            resource: Resource::Workspace,
            what: ident.to_string(),
            hint: format!(
                "no workspace has this id, slug or name (visible workspaces: {known}); fix spec.tooljet.workspace"
            ),
        }
        };
        if self.token_mode() {
            let call = Call::new(
                Method::GET,
                RouteKind::ExtV2,
                &["v2", "ext", "workspaces", ident.trim()],
            )
            .about(Resource::Workspace, ident);
            return match self.send_json(&call).await {
                Ok(v) => wire::parse_workspace(&v).map_err(|d| invalid(&self.route_of(&call), d)),
                Err(Error::NotFound { .. }) | Err(Error::FeatureUnavailable { .. }) => {
                    Err(not_found())
                }
                Err(e) => Err(e),
            };
        }
        Err(not_found())
    }

    /// All apps of the workspace (type `front-end`), with their versions.
    ///
    /// Token: `GET /api/ext/workspace/:workspaceId/apps` → `[{id, name, slug, versions:[{id,
    /// name}]}]` (reference §3; ToolJet docs "Get All App Details"). Session: `GET
    /// /api/apps?page=N&type=front-end` → `{meta:{total_pages}, apps}` for every page
    /// (`modules/apps/controller.ts` `index`, 9 per page), then `GET /api/apps/:id/versions` →
    /// `{versions}` per app (`modules/versions/controller.ts` `fetchVersions`).
    pub async fn list_apps(&self, ws: &Workspace) -> Result<Vec<AppSummary>, Error> {
        let mut apps = self.list_app_rows(ws).await?;
        if !self.token_mode() {
            for app in &mut apps {
                app.versions = self.app_versions(ws, &app.id).await?;
            }
        }
        Ok(apps)
    }

    /// Apps without the per-app version calls of session mode.
    pub(crate) async fn list_app_rows(&self, ws: &Workspace) -> Result<Vec<AppSummary>, Error> {
        if self.token_mode() {
            let call = Call::new(
                Method::GET,
                RouteKind::Ext,
                &["ext", "workspace", &ws.id, "apps"],
            )
            .about(Resource::Workspace, &ws.name);
            let v = self.send_json(&call).await?;
            return wire::parse_ext_apps(&v).map_err(|d| invalid(&self.route_of(&call), d));
        }
        let mut all = Vec::new();
        let mut page = 1u64;
        loop {
            let call = Call::new(Method::GET, RouteKind::Internal, &["apps"])
                .org(&ws.id)
                .query("page", &page.to_string())
                .query("type", "front-end")
                .about(Resource::Workspace, &ws.name);
            let v = self.send_json(&call).await?;
            let (apps, pages) =
                wire::parse_internal_app_page(&v).map_err(|d| invalid(&self.route_of(&call), d))?;
            let empty = apps.is_empty();
            all.extend(apps);
            if page >= pages || empty || page >= MAX_PAGES {
                break;
            }
            page += 1;
        }
        Ok(all)
    }

    /// Session mode: `GET /api/apps/:id/versions`.
    pub(crate) async fn app_versions(
        &self,
        ws: &Workspace,
        app_id: &str,
    ) -> Result<Vec<AppVersion>, Error> {
        let call = Call::new(
            Method::GET,
            RouteKind::Internal,
            &["apps", app_id, "versions"],
        )
        .org(&ws.id)
        .about(Resource::App, app_id);
        let v = self.send_json(&call).await?;
        wire::parse_versions(&v).map_err(|d| invalid(&self.route_of(&call), d))
    }

    /// Finds an app: `"id:<uuid>"` or a bare UUID by id (a UUID that matches no id is tried as
    /// a name), anything else by exact name. Same routes as [`Client::list_apps`].
    pub async fn find_app(&self, ws: &Workspace, ident: &str) -> Result<Option<AppSummary>, Error> {
        let rows = self.list_app_rows(ws).await?;
        let Some(found) = wire::match_app(&rows, ident).cloned() else {
            return Ok(None);
        };
        self.with_versions(ws, found).await.map(Some)
    }

    pub(crate) async fn with_versions(
        &self,
        ws: &Workspace,
        mut app: AppSummary,
    ) -> Result<AppSummary, Error> {
        if !self.token_mode() {
            app.versions = self.app_versions(ws, &app.id).await?;
        }
        Ok(app)
    }

    /// Exports one app, as ToolJet returns it (`{app:[{definition:{appV2}}], tooljet_version}`).
    /// `version` is a version name or id; `None` exports ToolJet's default (latest) version.
    ///
    /// Token: `POST /api/ext/export/workspace/:workspaceId/apps/:appId?appVersion=<name>`
    /// (reference §3; docs "Export Application"; the version is passed by name as in ToolJet's
    /// Cypress tests). Session: `POST /api/v2/resources/export` with `{organization_id,
    /// app:[{id, search_params:{version_id}}]}` (`import-export-resources/controller.ts`,
    /// `dto/export-resources.dto.ts`).
    pub async fn export_app(
        &self,
        ws: &Workspace,
        app_id: &str,
        version: Option<&str>,
    ) -> Result<Value, Error> {
        let export = self.export_raw(ws, app_id, version).await?;
        let route = if self.token_mode() {
            "POST /api/ext/export"
        } else {
            "POST /api/v2/resources/export"
        };
        if export.get("app").and_then(Value::as_array).is_none() {
            return Err(invalid(route, "the export has no `app` list"));
        }
        if export
            .get("tooljet_version")
            .and_then(Value::as_str)
            .is_none()
        {
            return Err(invalid(route, "the export has no `tooljet_version`"));
        }
        Ok(export)
    }

    pub(crate) async fn export_raw(
        &self,
        ws: &Workspace,
        app_id: &str,
        version: Option<&str>,
    ) -> Result<Value, Error> {
        if self.token_mode() {
            let mut call = Call::new(
                Method::POST,
                RouteKind::Ext,
                &["ext", "export", "workspace", &ws.id, "apps", app_id],
            )
            .idempotent()
            .about(Resource::App, app_id);
            if let Some(wanted) = version {
                let apps = self.list_app_rows(ws).await?;
                let app = apps
                    .iter()
                    .find(|a| a.id.eq_ignore_ascii_case(app_id))
                    .ok_or_else(|| app_not_found(app_id, &ws.name))?;
                let v = wire::match_version(&app.versions, wanted)
                    .ok_or_else(|| version_not_found(wanted, &app.name, &app.versions))?;
                call = call.query("appVersion", &v.name);
            }
            return self.send_json(&call).await;
        }
        let mut entry = json!({ "id": app_id });
        if let Some(wanted) = version {
            let versions = self.app_versions(ws, app_id).await?;
            let v = wire::match_version(&versions, wanted)
                .ok_or_else(|| version_not_found(wanted, app_id, &versions))?;
            entry["search_params"] = json!({ "version_id": v.id });
        }
        let call = Call::new(
            Method::POST,
            RouteKind::Internal,
            &["v2", "resources", "export"],
        )
        .org(&ws.id)
        .idempotent()
        .about(Resource::App, app_id)
        .json(&json!({ "organization_id": ws.id, "app": [entry] }))?;
        self.send_json(&call).await
    }

    /// Checks the export's `tooljet_version` against the server's; returns the server version.
    pub(crate) async fn check_version(&self, export_version: &str) -> Result<String, Error> {
        let server = self.server_version().await?;
        match version::is_newer(export_version, &server) {
            Some(true) => Err(Error::VersionTooNew {
                export: export_version.to_string(),
                server,
            }),
            Some(false) => Ok(server),
            None if version::parse(export_version).is_none() => Err(Error::InvalidExport {
                detail: format!("`tooljet_version` {export_version:?} is not a version number"),
            }),
            // The server's own string is odd; let ToolJet apply its rule.
            None => Ok(server),
        }
    }

    /// Imports an export as a new app named `app_name`. Refused before any import call when the
    /// export's `tooljet_version` is newer than the server, when the name is taken, or when the
    /// body exceeds the limit.
    ///
    /// Token: `POST /api/ext/import/workspace/:workspaceId/apps` with the export plus `appName`
    /// → 201 `{message}` (reference §3), then the app list to learn the new id. Session:
    /// `POST /api/v2/resources/import` with `{organization_id, tooljet_version, app:[{definition,
    /// appName}], tooljet_database?}` → `{imports:{app:[{id, name}]}, success}`
    /// (`import-export-resources/controller.ts`), then `GET /api/apps/:id` and its versions.
    pub async fn import_app(
        &self,
        ws: &Workspace,
        export: &Value,
        app_name: &str,
    ) -> Result<AppSummary, Error> {
        let parts = wire::check_export(export).map_err(|detail| Error::InvalidExport { detail })?;
        check_app_name(app_name)?;
        let server = self.check_version(parts.tooljet_version).await?;
        let rows = self.list_app_rows(ws).await?;
        if rows.iter().any(|a| a.name == app_name) {
            return Err(Error::NameConflict {
                name: app_name.to_string(),
                detail: "found in the app list before importing".into(),
            });
        }
        self.import_unchecked(ws, export, app_name, &server).await
    }

    /// Import without the pre-checks (callers did them).
    pub(crate) async fn import_unchecked(
        &self,
        ws: &Workspace,
        export: &Value,
        app_name: &str,
        server_version: &str,
    ) -> Result<AppSummary, Error> {
        let parts = wire::check_export(export).map_err(|detail| Error::InvalidExport { detail })?;
        if self.token_mode() {
            let mut body = export.clone();
            if let Some(obj) = body.as_object_mut() {
                obj.insert("appName".into(), Value::String(app_name.to_string()));
            }
            let call = Call::new(
                Method::POST,
                RouteKind::Ext,
                &["ext", "import", "workspace", &ws.id, "apps"],
            )
            .about(Resource::Workspace, &ws.name)
            .naming(app_name)
            .versions(parts.tooljet_version, server_version)
            .json(&body)?;
            self.send(&call).await?;
            let rows = self.list_app_rows(ws).await?;
            return rows
                .into_iter()
                .find(|a| a.name == app_name)
                .ok_or_else(|| {
                    invalid(
                        &self.route_of(&call),
                        format!("the import succeeded but no app named {app_name:?} is listed"),
                    )
                });
        }
        let mut body = json!({
            "organization_id": ws.id,
            "tooljet_version": parts.tooljet_version,
            "app": [{ "definition": parts.definition, "appName": app_name }],
        });
        if let Some(tables) = export.get("tooljet_database") {
            body["tooljet_database"] = tables.clone();
        }
        let call = Call::new(
            Method::POST,
            RouteKind::Internal,
            &["v2", "resources", "import"],
        )
        .org(&ws.id)
        .about(Resource::Workspace, &ws.name)
        .naming(app_name)
        .versions(parts.tooljet_version, server_version)
        .json(&body)?;
        let v = self.send_json(&call).await?;
        let (id, name) =
            wire::parse_session_import(&v).map_err(|d| invalid(&self.route_of(&call), d))?;
        if name != app_name {
            // Some ToolJet versions rename on conflict instead of failing; undo that.
            tracing::warn!(%name, "ToolJet imported under another name; removing it");
            if let Err(e) = self.delete_app(ws, &id).await {
                tracing::warn!(reason = e.reason(), "could not remove the renamed import");
            }
            return Err(Error::NameConflict {
                name: app_name.to_string(),
                detail: format!("ToolJet imported the app as {name:?} instead"),
            });
        }
        self.app_by_id(ws, &id).await
    }

    /// Session mode: `GET /api/apps/:id` (`modules/apps/controller.ts` `show`) plus versions;
    /// token mode: from the app list.
    pub(crate) async fn app_by_id(&self, ws: &Workspace, id: &str) -> Result<AppSummary, Error> {
        if self.token_mode() {
            let rows = self.list_app_rows(ws).await?;
            return rows
                .into_iter()
                .find(|a| a.id.eq_ignore_ascii_case(id))
                .ok_or_else(|| app_not_found(id, &ws.name));
        }
        let call = Call::new(Method::GET, RouteKind::Internal, &["apps", id])
            .org(&ws.id)
            .about(Resource::App, id);
        let v = self.send_json(&call).await?;
        let app = wire::parse_app_object(&v).map_err(|d| invalid(&self.route_of(&call), d))?;
        self.with_versions(ws, app).await
    }

    /// Renames an app and sets its slug.
    ///
    /// Session: `PUT /api/apps/:id` with `{app:{name, slug}}` (`modules/apps/controller.ts`
    /// `update`, `AppUpdateDto`). Token: `PATCH /api/v2/ext/workspaces/:ws/apps/:app` with
    /// `{name, slug}` → 200, 409 on a taken name (ToolJet `apps-v2.e2e-spec.ts`).
    pub(crate) async fn rename_app(
        &self,
        ws: &Workspace,
        app_id: &str,
        name: &str,
        slug: &str,
    ) -> Result<(), Error> {
        let call = if self.token_mode() {
            Call::new(
                Method::PATCH,
                RouteKind::ExtV2,
                &["v2", "ext", "workspaces", &ws.id, "apps", app_id],
            )
            .json(&json!({ "name": name, "slug": slug }))?
        } else {
            Call::new(Method::PUT, RouteKind::Internal, &["apps", app_id])
                .org(&ws.id)
                .json(&json!({ "app": { "name": name, "slug": slug } }))?
        }
        .about(Resource::App, app_id)
        .naming(name);
        self.send(&call).await.map(|_| ())
    }

    /// Deletes an app; an app that is already gone counts as deleted.
    ///
    /// Session: `DELETE /api/apps/:id` (`modules/apps/controller.ts` `delete`). Token:
    /// `DELETE /api/v2/ext/workspaces/:ws/apps/:app` → 204 (`apps-v2.e2e-spec.ts`).
    pub(crate) async fn delete_app(&self, ws: &Workspace, app_id: &str) -> Result<(), Error> {
        let call = if self.token_mode() {
            Call::new(
                Method::DELETE,
                RouteKind::ExtV2,
                &["v2", "ext", "workspaces", &ws.id, "apps", app_id],
            )
        } else {
            Call::new(Method::DELETE, RouteKind::Internal, &["apps", app_id]).org(&ws.id)
        }
        .about(Resource::App, app_id);
        match self.send(&call).await {
            Ok(_) | Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Locks (`editable = false`) or unlocks an app the way ToolJet GitSync does for apps pulled
    /// from git (`app_git_sync.allow_editing`).
    ///
    /// Session: `PUT /api/app-git/:appId/configs` with `{allowEditing}` (reference §4 "Frozen
    /// apps"; `frontend/src/_services/git_sync.service.js` `updateAppEditState`,
    /// `AppGitUpdateDto` in `modules/app-git/dto/index.ts`); Enterprise with GitSync only, so a
    /// 404 means [`Error::FeatureUnavailable`]. Token: the External API has no such route, so
    /// this is always [`Error::FeatureUnavailable`] without a call.
    pub async fn set_app_editable(
        &self,
        ws: &Workspace,
        app_id: &str,
        editable: bool,
    ) -> Result<(), Error> {
        const FEATURE: &str = "Locking apps against editing (GitSync's allowEditing)";
        if self.token_mode() {
            return Err(Error::FeatureUnavailable {
                feature: FEATURE.into(),
                hint: "ToolJet's External API has no route for it; use `email` and `password` credentials on a ToolJet Enterprise with GitSync, or leave the app editable".into(),
            });
        }
        let call = Call::new(
            Method::PUT,
            RouteKind::Internal,
            &["app-git", app_id, "configs"],
        )
        .org(&ws.id)
        .about(Resource::App, app_id)
        .json(&json!({ "allowEditing": editable }))?;
        match self.send(&call).await {
            Ok(_) => Ok(()),
            Err(Error::NotFound { .. }) | Err(Error::InvalidResponse { .. }) => {
                Err(Error::FeatureUnavailable {
                    feature: FEATURE.into(),
                    hint: "PUT /api/app-git/:appId/configs is missing or refused it; it needs ToolJet Enterprise with a GitSync licence and GitSync configured for the workspace".into(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Names and kinds of the workspace constants (values are never read), so a pull can warn
    /// about `{{constants.X}}`/`{{secrets.X}}` references that do not resolve.
    ///
    /// Session: `GET /api/organization-constants` → `{constants:[{name, type, values}|{name}]}`
    /// (`modules/organization-constants/controller.ts`). Token: no External API route →
    /// [`Error::FeatureUnavailable`].
    pub async fn list_constants(&self, ws: &Workspace) -> Result<Vec<WorkspaceConstant>, Error> {
        if self.token_mode() {
            return Err(Error::FeatureUnavailable {
                feature: "Listing workspace constants".into(),
                hint: "ToolJet's External API has no route for constants; use `email` and `password` credentials".into(),
            });
        }
        let call = Call::new(
            Method::GET,
            RouteKind::Internal,
            &["organization-constants"],
        )
        .org(&ws.id)
        .about(Resource::Workspace, &ws.name);
        let v = self.send_json(&call).await?;
        wire::parse_constants(&v).map_err(|d| invalid(&self.route_of(&call), d))
    }
}

pub(crate) fn check_app_name(name: &str) -> Result<(), Error> {
    let count = name.trim().chars().count();
    if count == 0 {
        return Err(Error::InvalidName {
            name: name.to_string(),
            detail: "it is empty".into(),
        });
    }
    if name.chars().count() > MAX_APP_NAME {
        return Err(Error::InvalidName {
            name: name.to_string(),
            detail: format!("ToolJet allows at most {MAX_APP_NAME} characters"),
        });
    }
    Ok(())
}

pub(crate) fn app_not_found(ident: &str, ws_name: &str) -> Error {
    Error::NotFound {
        resource: Resource::App,
        what: ident.to_string(),
        hint: format!("no such app in workspace {ws_name:?}; check the AppSync's spec.app"),
    }
}

fn version_not_found(wanted: &str, app: &str, versions: &[AppVersion]) -> Error {
    Error::NotFound {
        resource: Resource::Version,
        what: wanted.to_string(),
        hint: format!(
            "app {app:?} has no version with this name or id (versions: {}); fix spec.push.version",
            truncate(
                &versions
                    .iter()
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                200
            )
        ),
    }
}
