//! HTTP primitives shared by every call and by the session login: API URLs, one request and
//! its answer, transport errors, redaction of credentials, and the retry backoff. Kept below
//! both so that the login (which authenticated calls need) does not depend on them.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use super::Client;
use crate::tooljet::error::{body_message, quote, MAX_QUOTE};
use crate::tooljet::Error;

/// How many session tokens are remembered for redaction (the current one and a few before).
const REMEMBERED_TOKENS: usize = 4;

/// A successful answer.
pub(crate) struct Reply {
    pub(super) headers: HeaderMap,
    pub(super) body: Vec<u8>,
}

impl Reply {
    /// The body as JSON; an empty body is `null`.
    pub(super) fn json(&self, route: &str) -> Result<Value, Error> {
        if self.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| Error::InvalidResponse {
            route: route.to_string(),
            detail: format!("the body is not JSON ({e})"),
        })
    }
}

/// Any answer: status, headers and body.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Vec<u8>,
}

pub(super) fn invalid(route: &str, detail: impl Into<String>) -> Error {
    Error::InvalidResponse {
        route: route.to_string(),
        detail: detail.into(),
    }
}

/// A header value that is never logged.
pub(super) fn sensitive(value: &str) -> Result<HeaderValue, Error> {
    let mut v = HeaderValue::from_str(value).map_err(|_| Error::InvalidCredentials {
        detail: "the credential contains characters not allowed in an HTTP header".into(),
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// Text of an error and its sources, without the URL (which is in the route already).
pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
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
    /// `<base>/api/<segments...>`.
    pub(super) fn url(&self, segments: &[String]) -> Result<Url, Error> {
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

    /// Everything secret the client knows: the credentials and the session tokens it was
    /// given (kept apart from the session lock, so redaction never waits or misses one).
    fn secrets(&self) -> Vec<String> {
        let mut secrets = self.inner.credentials.secrets();
        if let Ok(tokens) = self.inner.issued_tokens.lock() {
            secrets.extend(tokens.iter().map(|t| t.expose_secret().to_string()));
        }
        secrets
    }

    /// Remembers a session token ToolJet issued, so texts quoted later are scrubbed of it.
    pub(super) fn remember_token(&self, token: &SecretString) {
        if let Ok(mut tokens) = self.inner.issued_tokens.lock() {
            tokens.push(token.clone());
            let excess = tokens.len().saturating_sub(REMEMBERED_TOKENS);
            tokens.drain(..excess);
        }
    }

    /// Text from the server or the network, redacted, then cut to `max` characters.
    pub(super) fn quote(&self, text: &str, max: usize) -> String {
        let secrets = self.secrets();
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        quote(text, &refs, max)
    }

    /// The error text of an unsuccessful answer, redacted and bounded.
    pub(super) fn quote_body(&self, answer: &Answer) -> String {
        let secrets = self.secrets();
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        body_message(&answer.body, &refs)
    }

    /// Wait before retry `attempt + 1`: the configured backoff, doubling, capped.
    pub(super) fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.inner
            .options
            .backoff
            .saturating_mul(factor)
            .min(self.inner.options.max_backoff)
    }

    /// Sends `rb` and reads the whole answer; only transport failures are errors here.
    pub(super) async fn exchange(
        &self,
        rb: reqwest::RequestBuilder,
        route: &str,
    ) -> Result<Answer, Error> {
        let resp = rb
            .send()
            .await
            .map_err(|e| self.transport_error(e, route))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.transport_error(e, route))?
            .to_vec();
        Ok(Answer {
            status,
            headers,
            body,
        })
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
                detail: self.quote(&error_chain(&e), MAX_QUOTE),
            }
        }
    }
}
