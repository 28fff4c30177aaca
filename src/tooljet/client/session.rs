//! Session credentials: logging in as a ToolJet user (`POST /api/authenticate`), adding
//! workspaces to the session, and handing authenticated calls a token valid for their
//! workspace. Token credentials never get here.

use reqwest::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use url::Url;

use super::http::{invalid, sensitive, AnswerSize, Reply};
use super::{Client, Session};
use crate::tooljet::error::{classify_status, ErrorContext, RouteKind};
use crate::tooljet::{wire, Credentials, Error, Resource};

/// Name of ToolJet's session cookie (`server/src/modules/session/util.service.ts`).
pub(super) const AUTH_COOKIE: &str = "tj_auth_token";

/// One login request, the same for every attempt.
struct Login<'a> {
    url: Url,
    route: String,
    body: Vec<u8>,
    org: Option<&'a str>,
    previous: Option<&'a Session>,
}

impl Client {
    /// Returns a session token valid for `org` (or the default workspace) and the workspace id
    /// to send in `tj-workspace-id`. Logs in (again) when needed.
    pub(super) async fn session_for(
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

    /// Forgets the session, so the next call logs in again.
    pub(super) async fn drop_session(&self) {
        *self.inner.session.lock().await = None;
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
        let login = Login {
            url,
            route,
            body,
            org,
            previous: previous.as_ref(),
        };
        let reply = self.login_with_retries(&login).await?;
        let route = login.route;
        let session = session_from(&reply, &route, org, previous)?;
        self.remember_token(&session.token);
        Ok(session)
    }

    /// The login, repeated after transient failures like an idempotent call.
    async fn login_with_retries(&self, login: &Login<'_>) -> Result<Reply, Error> {
        let attempts = 1 + self.inner.options.retries;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.login_once(login).await {
                Err(e) if e.is_transient() && attempt < attempts => {
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
                other => return other,
            }
        }
    }

    async fn login_once(&self, login: &Login<'_>) -> Result<Reply, Error> {
        let mut rb = self
            .inner
            .http
            .post(login.url.clone())
            .timeout(self.inner.options.timeout)
            .header(CONTENT_TYPE, "application/json")
            .body(login.body.clone());
        if let Some(prev) = login.previous {
            rb = rb.header(
                COOKIE,
                sensitive(&format!("{AUTH_COOKIE}={}", prev.token.expose_secret()))?,
            );
        }
        let answer = self.exchange(rb, &login.route, AnswerSize::Small).await?;
        if answer.status.is_success() {
            return Ok(Reply {
                headers: answer.headers,
                body: answer.body,
            });
        }
        if answer.status == StatusCode::NOT_FOUND && login.org.is_some() {
            return Err(Error::NotFound {
                resource: Resource::Workspace,
                what: login.org.unwrap_or_default().to_string(),
                hint: "ToolJet does not know this workspace or the user is not a member of it"
                    .into(),
            });
        }
        let ctx = ErrorContext {
            method: "POST".into(),
            path: login.url.path().to_string(),
            kind: RouteKind::Login,
            resource: Resource::Workspace,
            what: login.org.unwrap_or("default").to_string(),
            name: None,
            versions: None,
        };
        Err(classify_status(
            answer.status.as_u16(),
            &ctx,
            &self.quote_body(&answer),
        ))
    }
}

/// The session a successful login answer opens: its cookie, and the workspaces it is valid
/// for (those of `previous`, the one logged into, and the answer's current one).
fn session_from(
    reply: &Reply,
    route: &str,
    org: Option<&str>,
    previous: Option<Session>,
) -> Result<Session, Error> {
    let cookies = reply
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let token = wire::cookie_value(cookies, AUTH_COOKIE).ok_or_else(|| {
        invalid(
            route,
            "the login answer has no tj_auth_token cookie; check that spec.tooljet.url reaches ToolJet directly",
        )
    })?;
    let answer = reply.json(route).unwrap_or(Value::Null);
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
