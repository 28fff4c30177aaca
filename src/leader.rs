//! Leader election on a `coordination.k8s.io/v1` Lease, so two replicas never reconcile at once.
//!
//! Timing follows client-go's leaderelection: the holder renews every `renew_every` (the retry
//! period), steps down once `renew_deadline` has passed since its last successful renewal, and
//! `renew_deadline < duration` so it has stopped before the Lease can expire for the others.
//! Every Lease request has its own timeout, so one hung request cannot eat the deadline.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::time::Instant;

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity (pod name).
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub duration: Duration,
    /// How long the holder keeps leading without a successful renewal; below `duration`.
    pub renew_deadline: Duration,
    /// How often the holder renews (and retries); also each Lease request's timeout.
    pub renew_every: Duration,
}

/// Lease timings that could let two replicas lead at once, or spin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseConfigError {
    /// A zero retry period would renew in a busy loop.
    #[error("the lease retry period must be greater than zero")]
    ZeroRetryPeriod,
    /// Renewals must get more than one chance before the deadline.
    #[error(
        "the lease retry period ({}) must be shorter than the renew deadline ({})",
        humantime::format_duration(*retry),
        humantime::format_duration(*deadline)
    )]
    RetryNotBelowDeadline {
        /// The retry period.
        retry: Duration,
        /// The renew deadline.
        deadline: Duration,
    },
    /// Otherwise the Lease can expire for others while this replica still leads.
    #[error(
        "the lease renew deadline ({}) must be shorter than the lease duration ({}), or another \
         replica can take the Lease while this one still leads",
        humantime::format_duration(*deadline),
        humantime::format_duration(*duration)
    )]
    DeadlineNotBelowDuration {
        /// The renew deadline.
        deadline: Duration,
        /// The lease duration.
        duration: Duration,
    },
    /// The Lease stores whole seconds in an `i32`, and the API server rejects zero.
    #[error(
        "the lease duration ({}) must be between 1s and {}s",
        humantime::format_duration(*.0),
        i32::MAX
    )]
    DurationOutOfRange(Duration),
}

/// Checks `0 < renew_every < renew_deadline < duration` and that `duration` fits a Lease. Pure.
pub fn validate_timing(
    duration: Duration,
    renew_deadline: Duration,
    renew_every: Duration,
) -> Result<(), LeaseConfigError> {
    if renew_every.is_zero() {
        return Err(LeaseConfigError::ZeroRetryPeriod);
    }
    if renew_every >= renew_deadline {
        return Err(LeaseConfigError::RetryNotBelowDeadline {
            retry: renew_every,
            deadline: renew_deadline,
        });
    }
    if renew_deadline >= duration {
        return Err(LeaseConfigError::DeadlineNotBelowDuration {
            deadline: renew_deadline,
            duration,
        });
    }
    if duration < Duration::from_secs(1) || duration > Duration::from_secs(i32::MAX as u64) {
        return Err(LeaseConfigError::DurationOutOfRange(duration));
    }
    Ok(())
}

impl LeaseConfig {
    /// Refuses timings that could let two replicas lead at once; see [`validate_timing`].
    pub fn validate(&self) -> Result<(), LeaseConfigError> {
        validate_timing(self.duration, self.renew_deadline, self.renew_every)
    }

    /// Each Lease request's timeout: one retry period, so a hung request costs one attempt.
    pub fn request_timeout(&self) -> Duration {
        self.renew_every
    }

    /// `duration` in the Lease's whole seconds, rounded up.
    fn duration_seconds(&self) -> i32 {
        let secs = self.duration.as_secs() + u64::from(self.duration.subsec_nanos() > 0);
        i32::try_from(secs).unwrap_or(i32::MAX)
    }
}

/// A Lease request that failed or did not answer in time.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The API server did not answer within the per-request timeout.
    #[error("Lease request timed out after {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The API server (or the connection to it) failed the request.
    #[error("Lease request failed: {0}")]
    Kube(#[from] kube::Error),
}

impl LeaseError {
    /// A 409: someone else created or changed the Lease between our read and write.
    fn is_conflict(&self) -> bool {
        matches!(self, LeaseError::Kube(kube::Error::Api(e)) if e.code == 409)
    }
}

/// Runs one Lease request, cut off after `limit`.
async fn bounded<T>(
    limit: Duration,
    request: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, LeaseError> {
    match tokio::time::timeout(limit, request).await {
        Ok(answer) => answer.map_err(LeaseError::from),
        Err(_) => Err(LeaseError::Timeout(limit)),
    }
}

/// Whether the holder must stop leading: `renew_deadline` has passed since its last successful
/// renewal at `last_success`, so the Lease may soon expire for the others. Pure.
pub fn should_step_down(last_success: Instant, now: Instant, renew_deadline: Duration) -> bool {
    now.saturating_duration_since(last_success) >= renew_deadline
}

/// Whether a lease held by `holder`, last renewed at `renewed`, may be taken by `me` at `now`. Pure.
pub fn may_take(
    holder: Option<&str>,
    renewed: Option<jiff::Timestamp>,
    duration: Duration,
    me: &str,
    now: jiff::Timestamp,
) -> bool {
    match (holder, renewed) {
        (None, _) | (Some(""), _) => true,
        (Some(h), _) if h == me => true,
        (Some(_), None) => true,
        (Some(_), Some(t)) => {
            let expiry =
                t.checked_add(jiff::SignedDuration::try_from(duration).unwrap_or_default());
            expiry.map(|e| e < now).unwrap_or(true)
        }
    }
}

fn lease_object(
    cfg: &LeaseConfig,
    rv: Option<String>,
    transitions: i32,
    acquired: Option<MicroTime>,
) -> Lease {
    let now = MicroTime(jiff::Timestamp::now());
    Lease {
        metadata: ObjectMeta {
            name: Some(cfg.name.clone()),
            namespace: Some(cfg.namespace.clone()),
            resource_version: rv,
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(cfg.identity.clone()),
            lease_duration_seconds: Some(cfg.duration_seconds()),
            acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..Default::default()
        }),
    }
}

/// One attempt to acquire or renew; true when this replica holds the lease afterwards, false
/// when another replica holds it or wrote it concurrently (409). Each request is cut off after
/// [`LeaseConfig::request_timeout`].
pub async fn try_acquire(client: &Client, cfg: &LeaseConfig) -> Result<bool, LeaseError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let limit = cfg.request_timeout();
    let Some(lease) = bounded(limit, api.get_opt(&cfg.name)).await? else {
        let obj = lease_object(cfg, None, 0, None);
        return match bounded(limit, api.create(&PostParams::default(), &obj)).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_conflict() => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.as_deref();
    let renewed = spec.renew_time.as_ref().map(|t| t.0);
    let now = jiff::Timestamp::now();
    if !may_take(holder, renewed, cfg.duration, &cfg.identity, now) {
        return Ok(false);
    }
    let mine = holder == Some(cfg.identity.as_str());
    let transitions = spec
        .lease_transitions
        .unwrap_or(0)
        .saturating_add(i32::from(!mine));
    let acquired = if mine { spec.acquire_time } else { None };
    let obj = lease_object(cfg, lease.metadata.resource_version, transitions, acquired);
    match bounded(limit, api.replace(&cfg.name, &PostParams::default(), &obj)).await {
        Ok(_) => Ok(true),
        Err(e) if e.is_conflict() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waits until this replica holds the lease; returns when the successful attempt started, the
/// conservative start of the holder's renew deadline.
pub async fn acquire(client: &Client, cfg: &LeaseConfig) -> Instant {
    loop {
        let started = Instant::now();
        match try_acquire(client, cfg).await {
            Ok(true) => {
                tracing::info!(lease = %cfg.name, identity = %cfg.identity, "acquired leadership");
                return started;
            }
            Ok(false) => tracing::debug!(lease = %cfg.name, "another replica leads; waiting"),
            Err(e) => tracing::warn!(lease = %cfg.name, error = %e, "lease acquire failed"),
        }
        tokio::time::sleep(cfg.renew_every).await;
    }
}

/// Renews every `renew_every`, retrying failures, and returns when leadership is lost: another
/// holder is seen, or `renew_deadline` passed since the last successful renewal (which started
/// at `since`, first from [`acquire`]). Returns when the Lease may expire for the others: the
/// caller must have stopped reconciling by then.
pub async fn hold(client: &Client, cfg: &LeaseConfig, since: Instant) -> Instant {
    let mut last_ok = since;
    loop {
        let left = cfg
            .renew_deadline
            .saturating_sub(Instant::now().saturating_duration_since(last_ok));
        tokio::time::sleep(cfg.renew_every.min(left)).await;
        let started = Instant::now();
        if should_step_down(last_ok, started, cfg.renew_deadline) {
            break;
        }
        let left = cfg
            .renew_deadline
            .saturating_sub(started.saturating_duration_since(last_ok));
        match tokio::time::timeout(left, try_acquire(client, cfg)).await {
            Ok(Ok(true)) => last_ok = started,
            Ok(Ok(false)) => {
                tracing::error!(lease = %cfg.name, "leadership taken by another replica");
                return Instant::now();
            }
            Ok(Err(e)) => tracing::warn!(lease = %cfg.name, error = %e, "lease renewal failed"),
            Err(_) => {
                tracing::warn!(lease = %cfg.name, "lease renewal ran into the renew deadline")
            }
        }
        if should_step_down(last_ok, Instant::now(), cfg.renew_deadline) {
            break;
        }
    }
    tracing::error!(
        lease = %cfg.name,
        renew_deadline = %humantime::format_duration(cfg.renew_deadline),
        "could not renew the lease before the renew deadline; stepping down"
    );
    last_ok
        .checked_add(cfg.duration)
        .unwrap_or_else(Instant::now)
}

/// Gives the lease up on shutdown so a standby takes over at once; best effort, each request
/// bounded so a hung API server cannot stall the shutdown.
pub async fn release(client: &Client, cfg: &LeaseConfig) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let limit = cfg.request_timeout();
    let mut lease = match bounded(limit, api.get_opt(&cfg.name)).await {
        Ok(Some(lease)) => lease,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(lease = %cfg.name, error = %e, "could not read the lease to release it");
            return;
        }
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    match bounded(
        limit,
        api.replace(&cfg.name, &PostParams::default(), &lease),
    )
    .await
    {
        Ok(_) => tracing::info!(lease = %cfg.name, "released leadership"),
        Err(e) => tracing::warn!(lease = %cfg.name, error = %e, "could not release the lease"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use bytes::Bytes;
    use http::{Request, Response, StatusCode};
    use http_body_util::{BodyExt, Full};

    const SLACK: Duration = Duration::from_millis(900);

    /// Fails (rather than hangs) a test whose future never finishes, as the old code did.
    async fn within_10s<T>(f: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .expect("did not finish within 10 s")
    }

    fn cfg(renew_every_ms: u64, deadline_ms: u64, duration_ms: u64) -> LeaseConfig {
        LeaseConfig {
            name: "l".into(),
            namespace: "default".into(),
            identity: "me".into(),
            duration: Duration::from_millis(duration_ms),
            renew_deadline: Duration::from_millis(deadline_ms),
            renew_every: Duration::from_millis(renew_every_ms),
        }
    }

    /// A client whose API server accepts requests and never answers.
    fn silent_client() -> Client {
        Client::new(
            tower::service_fn(|_req: Request<kube::client::Body>| {
                std::future::pending::<Result<Response<Full<Bytes>>, Infallible>>()
            }),
            "default",
        )
    }

    fn respond(code: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = code;
        resp
    }

    /// A client whose API server fails the first `failures` requests with 500, then serves the
    /// Lease as held by `holder` (renewed just now) and accepts every replace. Counts replaces.
    fn flaky_client(failures: usize, holder: &'static str) -> (Client, Arc<AtomicUsize>) {
        let seen = Arc::new(AtomicUsize::new(0));
        let renewed = Arc::new(AtomicUsize::new(0));
        let r = renewed.clone();
        let svc = tower::service_fn(move |req: Request<kube::client::Body>| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let renewed = r.clone();
            async move {
                if n < failures {
                    let status = serde_json::json!({"kind": "Status", "apiVersion": "v1",
                        "status": "Failure", "message": "boom", "reason": "InternalError",
                        "code": 500});
                    return Ok::<_, Infallible>(respond(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        status.to_string().into_bytes(),
                    ));
                }
                if req.method() == http::Method::PUT {
                    renewed.fetch_add(1, Ordering::SeqCst);
                    let body = match req.into_body().collect().await {
                        Ok(b) => b.to_bytes().to_vec(),
                        Err(_) => Vec::new(),
                    };
                    return Ok(respond(StatusCode::OK, body));
                }
                let mut held = lease_object(&cfg(1, 2, 1000), Some("1".into()), 0, None);
                if let Some(spec) = held.spec.as_mut() {
                    spec.holder_identity = Some(holder.into());
                }
                let body = serde_json::to_vec(&held).unwrap_or_default();
                Ok(respond(StatusCode::OK, body))
            }
        });
        (Client::new(svc, "default"), renewed)
    }

    #[test]
    fn lease_rules() {
        let now: jiff::Timestamp = "2026-01-01T00:00:30Z".parse().unwrap();
        let fresh: jiff::Timestamp = "2026-01-01T00:00:20Z".parse().unwrap();
        let old: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let d = Duration::from_secs(15);
        assert!(may_take(None, None, d, "a", now));
        assert!(may_take(Some("a"), Some(fresh), d, "a", now));
        assert!(!may_take(Some("b"), Some(fresh), d, "a", now));
        assert!(may_take(Some("b"), Some(old), d, "a", now));
    }

    #[test]
    fn timing_must_be_retry_below_deadline_below_duration() {
        let s = Duration::from_secs;
        assert_eq!(validate_timing(s(15), s(10), s(3)), Ok(()));
        assert_eq!(
            validate_timing(s(15), s(10), Duration::ZERO),
            Err(LeaseConfigError::ZeroRetryPeriod)
        );
        assert!(matches!(
            validate_timing(s(15), s(10), s(10)),
            Err(LeaseConfigError::RetryNotBelowDeadline { .. })
        ));
        assert!(matches!(
            validate_timing(s(15), s(15), s(3)),
            Err(LeaseConfigError::DeadlineNotBelowDuration { .. })
        ));
        let err = validate_timing(s(15), s(20), s(3)).unwrap_err().to_string();
        assert!(err.contains("20s") && err.contains("15s"), "{err}");
        assert_eq!(
            validate_timing(
                Duration::from_millis(900),
                Duration::from_millis(500),
                Duration::from_millis(100)
            ),
            Err(LeaseConfigError::DurationOutOfRange(Duration::from_millis(
                900
            )))
        );
        assert!(validate_timing(s(u64::from(u32::MAX)), s(10), s(3)).is_err());
        assert_eq!(cfg(100, 500, 1500).duration_seconds(), 2);
        assert_eq!(cfg(1000, 10_000, 15_000).duration_seconds(), 15);
    }

    #[test]
    fn steps_down_once_the_renew_deadline_has_passed() {
        let t0 = Instant::now();
        let d = Duration::from_secs(10);
        assert!(!should_step_down(t0, t0, d));
        assert!(!should_step_down(t0, t0 + Duration::from_millis(9_999), d));
        assert!(should_step_down(t0, t0 + d, d));
        assert!(should_step_down(t0, t0 + Duration::from_secs(11), d));
        // A clock read before the success does not underflow.
        assert!(!should_step_down(t0 + d, t0, d));
    }

    #[tokio::test]
    async fn try_acquire_gives_up_on_a_silent_api_server_after_the_request_timeout() {
        let cfg = cfg(200, 1000, 3000);
        let t0 = Instant::now();
        let res = within_10s(try_acquire(&silent_client(), &cfg)).await;
        let took = t0.elapsed();
        assert!(matches!(res, Err(LeaseError::Timeout(t)) if t == cfg.request_timeout()));
        assert!(
            took >= cfg.request_timeout() && took < cfg.request_timeout() + SLACK,
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn hold_steps_down_within_the_renew_deadline_when_the_api_server_hangs() {
        let cfg = cfg(200, 1000, 3000);
        let t0 = Instant::now();
        let expires = within_10s(hold(&silent_client(), &cfg, t0)).await;
        let took = t0.elapsed();
        assert!(took >= cfg.renew_deadline, "{took:?}");
        assert!(
            took < cfg.renew_deadline + SLACK && took < cfg.duration,
            "{took:?}"
        );
        assert_eq!(expires, t0 + cfg.duration);
    }

    #[tokio::test]
    async fn hold_steps_down_when_renewals_keep_failing() {
        let cfg = cfg(200, 1000, 3000);
        let (client, renewed) = flaky_client(usize::MAX, "me");
        let t0 = Instant::now();
        within_10s(hold(&client, &cfg, t0)).await;
        let took = t0.elapsed();
        assert!(
            took >= cfg.renew_deadline && took < cfg.renew_deadline + SLACK,
            "{took:?}"
        );
        assert_eq!(renewed.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn hold_retries_transient_failures_inside_the_deadline() {
        let cfg = cfg(200, 1000, 3000);
        // Two failed attempts (400 ms) then renewals succeed: leadership is kept.
        let (client, renewed) = flaky_client(2, "me");
        let held =
            tokio::time::timeout(Duration::from_secs(3), hold(&client, &cfg, Instant::now()));
        assert!(
            held.await.is_err(),
            "hold stepped down after a transient failure"
        );
        assert!(renewed.load(Ordering::SeqCst) >= 5);
    }

    #[tokio::test]
    async fn hold_steps_down_at_once_when_another_replica_holds_the_lease() {
        let cfg = cfg(200, 1000, 3000);
        let (client, renewed) = flaky_client(0, "other");
        let t0 = Instant::now();
        let expires = within_10s(hold(&client, &cfg, t0)).await;
        let took = t0.elapsed();
        assert!(took < cfg.renew_every + SLACK, "{took:?}");
        assert!(expires <= Instant::now());
        assert_eq!(renewed.load(Ordering::SeqCst), 0);
    }
}
