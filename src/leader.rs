//! Leader election on a `coordination.k8s.io/v1` Lease, so two replicas never reconcile at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

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
    /// How often the holder renews.
    pub renew_every: Duration,
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
            lease_duration_seconds: Some(cfg.duration.as_secs() as i32),
            acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..Default::default()
        }),
    }
}

/// One attempt to acquire or renew; true when this replica holds the lease afterwards.
pub async fn try_acquire(client: &Client, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    match api.get_opt(&cfg.name).await? {
        None => match api
            .create(&PostParams::default(), &lease_object(cfg, None, 0, None))
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        },
        Some(lease) => {
            let spec = lease.spec.clone().unwrap_or_default();
            let holder = spec.holder_identity.as_deref();
            let renewed = spec.renew_time.as_ref().map(|t| t.0);
            if !may_take(
                holder,
                renewed,
                cfg.duration,
                &cfg.identity,
                jiff::Timestamp::now(),
            ) {
                return Ok(false);
            }
            let mine = holder == Some(cfg.identity.as_str());
            let transitions = spec.lease_transitions.unwrap_or(0) + if mine { 0 } else { 1 };
            let acquired = if mine {
                spec.acquire_time.clone()
            } else {
                None
            };
            let obj = lease_object(
                cfg,
                lease.metadata.resource_version.clone(),
                transitions,
                acquired,
            );
            match api.replace(&cfg.name, &PostParams::default(), &obj).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Waits until this replica holds the lease.
pub async fn acquire(client: &Client, cfg: &LeaseConfig) {
    loop {
        match try_acquire(client, cfg).await {
            Ok(true) => {
                tracing::info!(lease = %cfg.name, identity = %cfg.identity, "acquired leadership");
                return;
            }
            Ok(false) => tracing::debug!(lease = %cfg.name, "another replica leads; waiting"),
            Err(e) => tracing::warn!(error = %e, "lease acquire failed"),
        }
        tokio::time::sleep(cfg.renew_every).await;
    }
}

/// Renews until renewal fails for longer than the lease duration; returns when leadership is lost.
pub async fn hold(client: &Client, cfg: &LeaseConfig) {
    let mut last_ok = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(cfg.renew_every).await;
        match try_acquire(client, cfg).await {
            Ok(true) => last_ok = tokio::time::Instant::now(),
            Ok(false) => {
                tracing::error!(lease = %cfg.name, "leadership taken by another replica");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "lease renewal failed");
                if last_ok.elapsed() > cfg.duration {
                    tracing::error!("could not renew the lease in time; stepping down");
                    return;
                }
            }
        }
    }
}

/// Gives the lease up on shutdown so a standby takes over at once.
pub async fn release(client: &Client, cfg: &LeaseConfig) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    if let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await {
        if let Some(spec) = lease.spec.as_mut() {
            if spec.holder_identity.as_deref() == Some(cfg.identity.as_str()) {
                spec.holder_identity = None;
                spec.renew_time = None;
                let _ = api.replace(&cfg.name, &PostParams::default(), &lease).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
