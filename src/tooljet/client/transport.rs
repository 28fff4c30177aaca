//! One ToolJet call: how operations describe it ([`Call`]), and how it is sent: auth for the
//! route kind, body and answer limits, timeout, retries of idempotent calls, one re-login on
//! 401 in session mode, all within the overall deadline, and the mapping of error statuses
//! to [`Error`].

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION};
use reqwest::{Method, RequestBuilder};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::http::{invalid, sensitive, Answer, AnswerSize, Reply};
use super::session::AUTH_COOKIE;
use super::Client;
use crate::tooljet::error::{classify_status, ErrorContext, RouteKind};
use crate::tooljet::{Credentials, Error, Resource};

/// Header selecting the workspace of an internal call (`session/jwt/jwt.strategy.ts`).
const WORKSPACE_HEADER: &str = "tj-workspace-id";

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
    answer: AnswerSize,
    resource: Resource,
    what: String,
    name: Option<String>,
    versions: Option<(String, String)>,
    /// Secret values in the body, redacted from anything quoted back.
    secrets: Vec<SecretString>,
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
            answer: AnswerSize::Small,
            resource: Resource::Other,
            what: String::new(),
            name: None,
            versions: None,
            secrets: Vec::new(),
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
    /// The answer is an export, read up to `max_export_bytes` instead of `max_answer_bytes`.
    pub(crate) fn export_answer(mut self) -> Call {
        self.answer = AnswerSize::Export;
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
    /// The body carries `secret`: it is redacted from error texts quoted from the answer.
    pub(crate) fn secret(mut self, secret: &SecretString) -> Call {
        self.secrets.push(secret.clone());
        self
    }
    pub(crate) fn versions(mut self, export: &str, server: &str) -> Call {
        self.versions = Some((export.to_string(), server.to_string()));
        self
    }
}

impl Client {
    /// Sends a call: auth, body limit, timeout, retries of idempotent calls on transient
    /// failures, one re-login on 401 in session mode, status -> [`Error`] mapping; all of it
    /// within the overall deadline.
    pub(crate) async fn send(&self, call: &Call) -> Result<Reply, Error> {
        self.within(|| self.route_of(call), self.send_with_retries(call))
            .await
    }

    async fn send_with_retries(&self, call: &Call) -> Result<Reply, Error> {
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
                    tracing::debug!(reason = %e.reason(), attempt, ?wait, "retrying ToolJet call");
                    tokio::time::sleep(wait).await;
                }
                Err(Error::Unauthorized { status: 401, .. })
                    if call.kind == RouteKind::Internal && !relogged =>
                {
                    tracing::debug!("ToolJet session refused, logging in again");
                    relogged = true;
                    self.drop_session().await;
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
        rb = self.authorize(rb, call, &route).await?;
        if let Some(body) = &call.body {
            rb = rb
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let started = std::time::Instant::now();
        let answer = self.exchange(rb, &route, call.answer).await?;
        tracing::debug!(%route, status = answer.status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "ToolJet call");
        if answer.status.is_success() {
            return Ok(Reply {
                headers: answer.headers,
                body: answer.body,
            });
        }
        Err(self.status_error(call, &path, &route, &answer))
    }

    /// Adds the credentials the route kind takes: the token on External API routes, the
    /// session cookie and workspace header on internal ones, nothing on public ones.
    async fn authorize(
        &self,
        rb: RequestBuilder,
        call: &Call,
        route: &str,
    ) -> Result<RequestBuilder, Error> {
        match (&self.inner.credentials, call.kind) {
            (Credentials::Token(token), RouteKind::Ext | RouteKind::ExtV2) => Ok(rb.header(
                AUTHORIZATION,
                sensitive(&format!("Basic {}", token.expose_secret()))?,
            )),
            (Credentials::Session { .. }, RouteKind::Internal) => {
                let (token, org) = self.session_for(call.org.as_deref()).await?;
                let mut rb = rb.header(
                    COOKIE,
                    sensitive(&format!("{AUTH_COOKIE}={}", token.expose_secret()))?,
                );
                if let Some(org) = org {
                    rb = rb.header(WORKSPACE_HEADER, sensitive(&org)?);
                }
                Ok(rb)
            }
            (_, RouteKind::Public) => Ok(rb),
            (creds, kind) => Err(Error::FeatureUnavailable {
                feature: format!("{route} ({kind:?} route)"),
                hint: format!(
                    "this operation is not possible with {} credentials",
                    creds.mode()
                ),
            }),
        }
    }

    /// The error an unsuccessful answer means.
    fn status_error(&self, call: &Call, path: &str, route: &str, answer: &Answer) -> Error {
        let status = answer.status;
        if status.is_redirection() {
            let location = answer
                .headers
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            return invalid(
                route,
                format!(
                    "redirected ({}) to {}; use the final URL (often https://) in spec.tooljet.url",
                    status.as_u16(),
                    self.quote(location, 200)
                ),
            );
        }
        let message = self.quote_body_without(answer, &call.secrets);
        match classify_status(status.as_u16(), &self.context(call, path), &message) {
            Error::PayloadTooLarge { limit, .. } => Error::PayloadTooLarge {
                size: call.body.as_ref().map(|b| b.len() as u64),
                limit,
            },
            other => other,
        }
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
}
