//! Step 3 of a GitSyncConfig pass: what the repository and ToolJet say. All git traffic goes
//! through the repository's worker, so one repository's git work is serialized.

use std::time::Duration;

use super::super::{https, Context, Problem};
use super::status::{access_problem, Via};
use super::validate::Validated;
use super::Cred;
use crate::api::{GitSyncConfig, GitSyncConfigStatus, Reason};
use crate::git::check::Stage;
use crate::git::worker::{WorkerError, WorkerHandle};
use crate::git::{GitFailure, HostKeyPolicy, RepoUrl, Transport};
use crate::keys;

/// What the repository check saw.
pub struct RepoCheck {
    /// Head of the branch (`None`: the branch does not exist yet), or what is wrong.
    pub result: Result<Option<String>, Problem>,
    /// Host keys recorded under trust-on-first-use on this contact.
    pub learned_known_hosts: Option<String>,
    /// The transport the config's AppSyncs use too, once the host keys are recorded (the
    /// webhook's checks run with it).
    pub transport: Option<Transport>,
}

/// Checks read and write access. Once `verified`, only the branch head is read (fresh, which
/// refreshes the worker's cache its AppSyncs share); the write check (a dry-run push) runs on
/// first contact and whenever the spec or the key changed.
pub async fn check_repository(
    gsc: &GitSyncConfig,
    ctx: &Context,
    valid: &Validated,
    cred: &Cred,
    prev: &GitSyncConfigStatus,
    verified: bool,
) -> RepoCheck {
    let key = match cred {
        Cred::Key(key) => key,
        Cred::Https(source) => return check_https(gsc, ctx, valid, source, verified).await,
    };
    let pinned_by_user = valid.pinned_known_hosts.is_some();
    let recorded = keys::known_hosts::trusted(
        valid.pinned_known_hosts.as_deref(),
        key.known_hosts.as_deref(),
        prev.learned_known_hosts.as_deref(),
        key.generated,
    );
    if let Some(kh) = &recorded {
        if let Err(e) = keys::validate_known_hosts(kh) {
            let p = Problem::stalled(
                Reason::InvalidKnownHosts,
                format!(
                    "the recorded known_hosts (Secret {} key known_hosts): {e}",
                    gsc.key_secret_name()
                ),
            );
            return RepoCheck {
                result: Err(p),
                learned_known_hosts: None,
                transport: None,
            };
        }
    }
    let is_file = matches!(valid.url, crate::git::RepoUrl::File { .. });
    let transport = Transport {
        private_key: (!is_file).then(|| key.private.clone()),
        host_keys: match &recorded {
            Some(kh) => HostKeyPolicy::Pinned(kh.clone()),
            None => HostKeyPolicy::TrustOnFirstUse,
        },
        https: None,
    };
    let branch = &gsc.spec.repository.branch;
    let via = Via::Key {
        fingerprint: &key.info.fingerprint,
        pinned_by_user,
    };
    let worker = ctx.workers.get(&valid.url);
    let usable = (recorded.is_some() || is_file).then(|| transport.clone());
    let (result, learned_known_hosts) = read_or_check(
        &worker,
        transport,
        (&valid.url, branch),
        verified && recorded.is_some(),
        via,
    )
    .await;
    RepoCheck {
        result,
        learned_known_hosts,
        transport: usable,
    }
}

/// Once `verified`, the branch head only (fresh); else the whole access check, with the host
/// keys it learned. Git failures say what to do with the credential `via`.
async fn read_or_check(
    worker: &WorkerHandle,
    transport: Transport,
    (url, branch): (&RepoUrl, &str),
    verified: bool,
    via: Via<'_>,
) -> (Result<Option<String>, Problem>, Option<String>) {
    let explain =
        |stage: Stage, f: &GitFailure| access_problem(stage, f.kind, &f.detail, url, branch, via);
    if verified {
        let head = worker.remote_head(transport, branch, Duration::ZERO).await;
        let result = head.map_err(|e| match &e {
            WorkerError::Git(f) => explain(Stage::Read, f),
            other => Problem::retrying(other.reason(), other.to_string()),
        });
        return (result, None);
    }
    match worker.check(transport, branch).await {
        Ok(o) => (
            o.result
                .map(|a| a.head)
                .map_err(|(stage, f)| explain(stage, &f)),
            o.learned_known_hosts,
        ),
        Err(e) => (Err(Problem::retrying(e.reason(), e.to_string())), None),
    }
}

/// The same over HTTPS: the token (an App's fetched or taken from the cache), then the
/// checks; a token git refuses is dropped from the cache so the next pass gets a new one.
async fn check_https(
    gsc: &GitSyncConfig,
    ctx: &Context,
    valid: &Validated,
    source: &https::AuthSource,
    verified: bool,
) -> RepoCheck {
    let failed = |p: Problem| RepoCheck {
        result: Err(p),
        learned_known_hosts: None,
        transport: None,
    };
    let creds = match https::transport(ctx, &valid.url, source).await {
        Ok(c) => c,
        Err(p) => return failed(p),
    };
    let branch = &gsc.spec.repository.branch;
    let via = Via::Https(&creds.description);
    let worker = ctx.workers.get(&valid.url);
    let transport = creds.transport.clone();
    let (result, _) = read_or_check(
        &worker,
        transport.clone(),
        (&valid.url, branch),
        verified,
        via,
    )
    .await;
    // An App token carries the permissions it was issued with: after a refusal, the next
    // pass asks for a new one (granted write access shows at once).
    if result.as_ref().is_err_and(|p| {
        matches!(
            p.reason,
            Reason::AuthenticationFailed | Reason::ReadOnlyAccess | Reason::RepositoryNotFound
        )
    }) {
        https::forget_token(ctx, &valid.url, &creds);
    }
    RepoCheck {
        result,
        learned_known_hosts: None,
        transport: Some(transport),
    }
}
