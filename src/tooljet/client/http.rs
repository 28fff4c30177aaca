//! HTTP primitives shared by every call and by the session login: API URLs, one request and
//! its answer read up to a size limit, transport errors, redaction of credentials, the retry
//! backoff and the overall deadline. Kept below both so that the login (which authenticated
//! calls need) does not depend on them.

use std::future::Future;
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

/// Which size limit applies to a successful answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AnswerSize {
    /// Lists, app objects, login: `max_answer_bytes`.
    Small,
    /// Exports: `max_export_bytes`.
    Export,
}

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
    /// The body is only the first part of an error answer; the rest was not read.
    pub(super) cut_short: bool,
}

/// A body read up to a limit.
struct Capped {
    body: Vec<u8>,
    /// The answer had more than the limit; reading stopped there.
    over: bool,
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
        quote(text, &refs, max, false)
    }

    /// The error text of an unsuccessful answer, redacted and bounded.
    pub(super) fn quote_body(&self, answer: &Answer) -> String {
        self.quote_body_without(answer, &[])
    }

    /// Like [`Client::quote_body`], also redacting `extra`: the secret values a call sends
    /// (a constant's value, a data source's credentials), which a server may echo.
    pub(super) fn quote_body_without(&self, answer: &Answer, extra: &[SecretString]) -> String {
        let mut secrets = self.secrets();
        secrets.extend(extra.iter().map(|s| s.expose_secret().to_string()));
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        body_message(&answer.body, &refs, answer.cut_short)
    }

    /// Runs `op` within the overall deadline, so a sequence of calls (pages, retries,
    /// logins) ends in bounded time however each call behaves. `op` lives on the heap: the
    /// nested operations would otherwise make every caller's future (and the reconcile task's
    /// stack) very large.
    pub(super) async fn within<T>(
        &self,
        operation: impl FnOnce() -> String,
        op: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let after = self.inner.options.deadline;
        tokio::time::timeout(after, Box::pin(op))
            .await
            .unwrap_or_else(|_| {
                Err(Error::Deadline {
                    operation: operation(),
                    after,
                })
            })
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

    /// Sends `rb` and reads the answer: a successful one up to the limit of `size` (more is
    /// [`Error::AnswerTooLarge`]), an error one up to `max_error_bytes` (the rest is dropped:
    /// its status says what happened). Otherwise only transport failures are errors here.
    pub(super) async fn exchange(
        &self,
        rb: reqwest::RequestBuilder,
        route: &str,
        size: AnswerSize,
    ) -> Result<Answer, Error> {
        let mut resp = rb
            .send()
            .await
            .map_err(|e| self.transport_error(e, route))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let options = &self.inner.options;
        let limit = match (status.is_success(), size) {
            (false, _) => options.max_error_bytes,
            (true, AnswerSize::Small) => options.max_answer_bytes,
            (true, AnswerSize::Export) => options.max_export_bytes,
        };
        let capped = self.read_capped(&mut resp, limit, route).await?;
        if capped.over && status.is_success() {
            return Err(Error::AnswerTooLarge {
                route: route.to_string(),
                limit,
            });
        }
        Ok(Answer {
            status,
            headers,
            body: capped.body,
            cut_short: capped.over,
        })
    }

    /// Reads at most `limit` bytes of the body, chunk by chunk, so an endless or huge answer
    /// costs no more memory than the limit; a declared length above it is not read at all.
    async fn read_capped(
        &self,
        resp: &mut reqwest::Response,
        limit: u64,
        route: &str,
    ) -> Result<Capped, Error> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let declared = resp
            .content_length()
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        if declared.is_some_and(|n| n > limit) && resp.status().is_success() {
            return Ok(Capped {
                body: Vec::new(),
                over: true,
            });
        }
        let mut body = Vec::with_capacity(declared.unwrap_or(0).min(limit).min(1 << 20));
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.transport_error(e, route))?
        {
            let room = limit.saturating_sub(body.len());
            if chunk.len() > room {
                body.extend_from_slice(chunk.get(..room).unwrap_or_default());
                return Ok(Capped { body, over: true });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Capped { body, over: false })
    }

    fn transport_error(&self, e: reqwest::Error, route: &str) -> Error {
        let e = e.without_url();
        if e.is_timeout() {
            Error::Timeout {
                route: route.to_string(),
                after: if e.is_connect() {
                    self.inner.options.connect_timeout
                } else {
                    self.inner.options.timeout
                },
            }
        } else {
            Error::Transport {
                route: route.to_string(),
                detail: self.quote(&error_chain(&e), MAX_QUOTE),
            }
        }
    }
}
