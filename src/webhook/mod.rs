//! The webhook receiver (design §10): git hosts deliver push events to a path per
//! GitSyncConfig; a verified delivery naming the config's branch, or a ref a Pull AppSync or
//! set of its namespace follows, makes the repository's worker fetch at once. The fetch tells
//! the followers that their ref moved (`controller::follow`), so `availableUpdate` and Auto
//! pulls no longer wait for the interval.
//!
//! Hostile input is the normal case here: the path is looked up before the body is read,
//! bodies are size- and time-limited, few deliveries are read at once, every refusal is
//! counted, and neither the secret nor a signature is ever logged.

pub mod hooks;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

pub use hooks::{path_for, Checker, HookTarget, Hooks, Scheduled};
use verify::{Event, Unauthenticated};

use crate::controller::Context;
use crate::git::worker::RefMoved;

/// Largest body read: push payloads of GitHub's 2,048-commit limit fit.
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// Deliveries read at once, all configs together (each has its own smaller share,
/// [`hooks::PER_HOOK_IN_FLIGHT`]); more wait up to [`BUSY_WAIT`], then are answered 503.
const IN_FLIGHT: usize = 16;

/// How long a delivery waits for a reading slot before it is answered 503.
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Time to receive a body.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time to receive a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections open at once; more wait in the kernel's backlog.
const CONNECTIONS: usize = 128;
/// How long open connections may finish once the receiver stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

struct Receiver {
    ctx: Arc<Context>,
    reading: Semaphore,
}

/// The receiver's routes: `POST /hook/<id>`.
pub fn router(ctx: Arc<Context>) -> Router {
    let state = Arc::new(Receiver {
        ctx,
        reading: Semaphore::new(IN_FLIGHT),
    });
    Router::new()
        .route("/hook/{id}", post(deliver))
        .fallback(unrouted)
        .with_state(state)
}

fn answer(code: StatusCode, result: &'static str, message: impl Into<String>) -> Response {
    (
        code,
        Json(serde_json::json!({"result": result, "message": message.into()})),
    )
        .into_response()
}

/// Anything but `POST /hook/<id>`: counted like an unknown path.
async fn unrouted(State(rx): State<Arc<Receiver>>) -> Response {
    rx.ctx.metrics.webhook_delivery("unknown", "unknown_path");
    answer(
        StatusCode::NOT_FOUND,
        "unknown_path",
        "deliveries go to POST /hook/<id>, the path in the GitSyncConfig's status.webhook",
    )
}

async fn deliver(
    State(rx): State<Arc<Receiver>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let metrics = &rx.ctx.metrics;
    let path = format!("/hook/{id}");
    let Some(hook) = rx.ctx.hooks.lookup(&path) else {
        if rx.ctx.hooks.starting() {
            // A new leader whose configs have not all registered yet: worth a redelivery.
            metrics.webhook_delivery("unknown", "starting");
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "starting",
                "the operator is starting; redeliver in a minute",
            );
        }
        metrics.webhook_delivery("unknown", "unknown_path");
        return answer(
            StatusCode::NOT_FOUND,
            "unknown_path",
            "no GitSyncConfig has this webhook path; copy it from the config's status.webhook",
        );
    };
    let target = hook.target();
    // A burst (several hooks of one repository, a redelivery) waits briefly for a slot
    // instead of being refused; the connection limit bounds how many wait.
    let permits = tokio::time::timeout(BUSY_WAIT, async {
        let mine = hook.reading.acquire().await?;
        let all = rx.reading.acquire().await?;
        Ok::<_, tokio::sync::AcquireError>((mine, all))
    })
    .await;
    let Ok(Ok((_mine, _all))) = permits else {
        metrics.webhook_delivery("unknown", "busy");
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many deliveries at once; redeliver later",
        );
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        metrics.webhook_delivery("unknown", "too_large");
        return too_large();
    }
    let bytes = match tokio::time::timeout(READ_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await
    {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            let limit = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if limit {
                metrics.webhook_delivery("unknown", "too_large");
                return too_large();
            }
            metrics.webhook_delivery("unknown", "bad_request");
            return answer(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the body could not be read",
            );
        }
        Err(_) => {
            metrics.webhook_delivery("unknown", "timeout");
            return answer(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "the body did not arrive in time",
            );
        }
    };
    let provider = match verify::authenticate(&headers, &bytes, hook.secret()) {
        Ok(p) => p,
        Err(why) => {
            let result = match why {
                Unauthenticated::Unsigned => "unsigned",
                Unauthenticated::BadSignature => "bad_signature",
            };
            metrics.webhook_delivery("unknown", result);
            tracing::info!(config = %target.config, result, "webhook delivery refused");
            return answer(
                StatusCode::UNAUTHORIZED,
                result,
                "the delivery is not signed with this config's webhook secret (GitHub: X-Hub-Signature-256, GitLab: X-Gitlab-Token, Gitea/Forgejo: X-Gitea-Signature, Bitbucket: X-Hub-Signature)",
            );
        }
    };
    let p = provider.as_str();
    let delivery = match verify::parse(provider, &headers, &bytes) {
        Ok(d) => d,
        Err(e) => {
            metrics.webhook_delivery(p, "bad_request");
            return answer(StatusCode::BAD_REQUEST, "bad_request", e.to_string());
        }
    };
    // A host's delivery id is kept across its redeliveries; without one, the body stands in
    // (some bodies carry no time, so two pushes of the same commits look alike: only then).
    let key = match &delivery.id {
        Some(id) => digest(&[b"id\0", p.as_bytes(), b"\0", id.as_bytes()]),
        None => digest(&[b"body\0", &bytes]),
    };
    let keys = [key];
    if !hook.first_sight(&keys) {
        metrics.webhook_delivery(p, "duplicate");
        tracing::debug!(config = %target.config, provider = p, "webhook delivery seen before; ignored");
        return answer(
            StatusCode::OK,
            "duplicate",
            "this delivery was received before; ignored",
        );
    }
    let updates = match delivery.event {
        Event::Ping => {
            metrics.webhook_delivery(p, "ping");
            return answer(StatusCode::OK, "ping", "the webhook reaches the operator");
        }
        Event::Other(name) => {
            metrics.webhook_delivery(p, "ignored");
            return answer(
                StatusCode::OK,
                "ignored",
                format!("{name:?} events need nothing; only pushes trigger a check"),
            );
        }
        Event::Push(updates) => updates,
    };
    let branch = format!("refs/heads/{}", target.branch);
    let relevant: Vec<_> = updates
        .into_iter()
        .filter(|u| {
            u.reference == branch
                || rx.ctx.follows.followed_in(
                    &target.namespace,
                    &RefMoved {
                        repository: target.repository.clone(),
                        reference: u.reference.clone(),
                    },
                )
        })
        .collect();
    if relevant.is_empty() {
        metrics.webhook_delivery(p, "ignored");
        return answer(
            StatusCode::OK,
            "ignored",
            "no ref in this push is the config's branch or followed by a Pull AppSync or set",
        );
    }
    let refs: Vec<String> = relevant.iter().map(|u| u.reference.clone()).collect();
    let scheduled = hook.schedule(relevant);
    metrics.webhook_delivery(p, "accepted");
    tracing::info!(config = %target.config, provider = p, refs = ?refs, joined = (scheduled == Scheduled::Joined), "webhook delivery accepted; checking the repository");
    answer(
        StatusCode::ACCEPTED,
        "accepted",
        format!("checking the repository for {}", refs.join(", ")),
    )
}

fn too_large() -> Response {
    answer(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("bodies are limited to {} MiB", MAX_BODY / (1024 * 1024)),
    )
}

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Serves the receiver on `listener` until `stop` resolves: HTTP/1.1, headers within
/// [`HEADER_TIMEOUT`], at most [`CONNECTIONS`] at once; open connections get
/// [`SHUTDOWN_GRACE`] to finish after the stop, then are dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctx: Arc<Context>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(ctx);
    let slots = Arc::new(Semaphore::new(CONNECTIONS));
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            _ = &mut stop => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, _) = tokio::select! {
            _ = &mut stop => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "webhook receiver cannot accept");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        connections.spawn(async move {
            let _permit = permit;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = conn.await;
        });
        // Reap finished connections as we go.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.abort_all();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use axum::http::Request;
    use futures::future::BoxFuture;
    use tower::ServiceExt;

    struct Idle;

    impl Checker for Idle {
        fn check(&self) -> BoxFuture<'static, Option<BTreeMap<String, String>>> {
            Box::pin(async { None })
        }
    }

    async fn result_of(res: Response) -> String {
        let body = axum::body::to_bytes(res.into_body(), MAX_BODY)
            .await
            .unwrap_or_default();
        serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("result")?.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// A burst beyond a config's reading slots waits for one; only a delivery that found none
    /// within [`BUSY_WAIT`] is answered 503 (`busy`).
    #[tokio::test(start_paused = true)]
    async fn a_delivery_waits_for_a_reading_slot_and_only_then_is_busy() {
        let (ctx, _dir) = Context::offline();
        let ctx = Arc::new(ctx);
        ctx.hooks.activate();
        let target = HookTarget {
            config: "ns/c".into(),
            namespace: "ns".into(),
            repository: "r".into(),
            branch: "main".into(),
            checker: Arc::new(Idle),
        };
        let path = ctx
            .hooks
            .register(b"0123456789abcdef", "c", target)
            .expect("registered");
        let hook = ctx.hooks.lookup(&path).expect("hook");
        let app = router(ctx.clone());
        let request = || {
            Request::post(path.as_str())
                .body(Body::from("{}"))
                .expect("request")
        };

        // Every slot of the config taken for longer than the wait: busy, after the wait.
        let held = hook
            .reading
            .acquire_many(hooks::PER_HOOK_IN_FLIGHT as u32)
            .await
            .expect("slots");
        let started = tokio::time::Instant::now();
        let res = app.clone().oneshot(request()).await.expect("answer");
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() >= BUSY_WAIT, "{:?}", started.elapsed());
        assert_eq!(result_of(res).await, "busy");

        // A slot freed within the wait: the delivery is read (and refused, being unsigned).
        let waiting = tokio::spawn(app.clone().oneshot(request()));
        tokio::time::sleep(BUSY_WAIT / 2).await;
        assert!(!waiting.is_finished(), "it waits for a slot");
        drop(held);
        let res = waiting.await.expect("task").expect("answer");
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(result_of(res).await, "unsigned");

        // The slots come back once the deliveries are answered.
        assert_eq!(hook.reading.available_permits(), hooks::PER_HOOK_IN_FLIGHT);
    }
}
