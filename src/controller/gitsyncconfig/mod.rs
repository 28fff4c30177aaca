//! GitSyncConfig reconciler: validate the spec → ensure the deploy key → observe the
//! repository and ToolJet → conditions → one status write and its Events.

mod key;
mod observe;
mod signing;
mod status;
mod validate;
mod webhook;

pub use key::{data_str, is_generated_by, read_identity};
pub use signing::{load as load_signer, references as signs_with};
pub use status::{access_problem, conditions, Credential, Observations, Via};
pub use validate::{
    check_branch_name, interval_or_default, parse_interval, ref_format_violation, validate,
    Validated, DEFAULT_INTERVAL, MAX_INTERVAL, MIN_INTERVAL,
};
pub use webhook::{references as webhook_references, WEBHOOK_READY};

use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::{Api, ResourceExt};

use super::report::{self, Note};
use super::{connection, key_of, Context, Error, Failure, Problem};
use crate::api::{self, types, GitSyncConfig, GitSyncConfigStatus, Reason, RepositoryStatus};
use crate::keys;

/// Entry point for the controller.
pub async fn reconcile(gsc: Arc<GitSyncConfig>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = gsc.namespace().unwrap_or_default();
    let api: Api<GitSyncConfig> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, api::FINALIZER, gsc, |event| async {
        match event {
            Finalizer::Apply(gsc) => apply(gsc, ctx.clone()).await,
            Finalizer::Cleanup(gsc) => cleanup(gsc, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(e.to_string()))
}

/// Requeue after infrastructure errors, backing off exponentially per object.
pub fn error_policy(gsc: Arc<GitSyncConfig>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(config = %key_of(gsc.as_ref()), error = %err, "reconcile error");
    Action::requeue(ctx.backoff(&format!("GitSyncConfig/{}", key_of(gsc.as_ref()))))
}

/// What the config authenticates to the repository with.
enum Cred {
    /// The deploy key (SSH and file URLs).
    Key(key::KeyState),
    /// The credentials Secret (HTTPS URLs).
    Https(super::https::AuthSource),
}

impl Cred {
    /// What a changed credential changes: the key's fingerprint, or the HTTPS identity.
    fn fingerprint(&self) -> String {
        match self {
            Cred::Key(k) => k.info.fingerprint.clone(),
            Cred::Https(s) => s.identity(),
        }
    }
}

/// What the repository and ToolJet checks found, and the Events they call for.
#[derive(Default)]
struct Checks {
    repo: Option<Result<Option<String>, Problem>>,
    tooljet: Option<Result<api::ToolJetStatus, Problem>>,
    notes: Vec<Note>,
    /// The constants and data-source credentials kept in the workspace.
    values: super::values::Applied,
    /// The webhook's registration.
    webhook: webhook::WebhookOutcome,
}

async fn apply(gsc: Arc<GitSyncConfig>, ctx: Arc<Context>) -> Result<Action, Error> {
    // The cached object may predate our last status write (learned host keys live there).
    let api: Api<GitSyncConfig> =
        Api::namespaced(ctx.client.clone(), &gsc.namespace().unwrap_or_default());
    let Some(gsc) = api.get_opt(&gsc.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let prev = gsc.status.clone().unwrap_or_default();
    let validation = validate(&gsc.spec, &ctx.options);
    let mut status = GitSyncConfigStatus {
        observed_generation: gsc.metadata.generation,
        last_handled_rotate_key: gsc.annotations().get(api::ROTATE_KEY_ANNOTATION).cloned(),
        learned_known_hosts: prev.learned_known_hosts.clone(),
        repository: prev.repository.clone(),
        tooljet: prev.tooljet.clone(),
        ..Default::default()
    };

    let is_https = crate::git::RepoUrl::parse(&gsc.spec.repository.url).is_ok_and(|u| u.is_https());
    let (key, mut notes): (Result<Cred, Problem>, Vec<Note>) = if is_https {
        // No deploy key for HTTPS: the Secret of spec.repository.auth is read in every pass
        // (it is watched), so a fixed or rotated token shows at once.
        match super::https::read(&gsc, &ctx).await {
            Ok(source) => (Ok(Cred::Https(source)), Vec::new()),
            Err(Failure::Problem(p)) => (Err(p), Vec::new()),
            Err(Failure::Infra(e)) => return Err(e),
        }
    } else {
        // The key is made even when the rest of the spec is wrong or disabled: users need
        // the public key before they can finish setting up the repository.
        match key::ensure_key(&gsc, &ctx).await {
            Ok((k, note)) => (Ok(Cred::Key(k)), note.into_iter().collect()),
            Err(Failure::Problem(p)) => (Err(p), Vec::new()),
            Err(Failure::Infra(e)) => return Err(e),
        }
    };
    let key_info: Result<Credential, Problem> =
        key.as_ref().map_err(Clone::clone).and_then(|c| match c {
            Cred::Https(source) => Ok(Credential::Https(source.summary())),
            Cred::Key(k) => {
                status.public_key = Some(k.info.public_openssh.clone());
                status.public_key_fingerprint = Some(k.info.fingerprint.clone());
                match validation.as_ref().ok().and_then(|v| v.url.host()) {
                    Some(host) => keys::check_host_compatibility(host, &k.info.algorithm)
                        .map(|_| Credential::Key(k.info.clone()))
                        .map_err(|m| Problem::stalled(Reason::KeyTypeUnsupported, m)),
                    None => Ok(Credential::Key(k.info.clone())),
                }
            }
        });

    // Read in every pass, so a Secret that changed or broke shows at once (the Secret is watched).
    let signing = match signing::load(&gsc, &ctx, None).await {
        Ok(s) => s.map(|s| {
            status.commit_signing = Some(signing::status_of(&s));
            Ok(format!(
                "commits are signed with {} key {}",
                s.algorithm(),
                s.fingerprint()
            ))
        }),
        Err(Failure::Problem(p)) => Some(Err(p)),
        Err(Failure::Infra(e)) => return Err(e),
    };

    let mut checks = Checks::default();
    if let (Ok(valid), Ok(k), Ok(_), true) = (&validation, &key, &key_info, gsc.spec.enabled) {
        checks = observe(&gsc, &ctx, valid, k, &prev, &mut status).await?;
    } else {
        ctx.hooks.unregister(&key_of(&gsc));
    }
    notes.append(&mut checks.notes);
    notes.append(&mut checks.values.notes);
    notes.append(&mut checks.webhook.notes);
    status.values = checks.values.status.take();
    status.webhook = checks.webhook.status.take();

    let (mut conds, problem) = conditions(&Observations {
        validation: &validation,
        key: &key_info,
        signing: signing.as_ref(),
        enabled: gsc.spec.enabled,
        repo: checks.repo.as_ref(),
        tooljet: checks.tooljet.as_ref(),
        branch: &gsc.spec.repository.branch,
    });
    // Its own condition: a refused constant is no reason to stop the config's AppSyncs.
    if let Some(c) = checks.values.condition.take() {
        conds.push(c);
    }
    if let Some(c) = checks.webhook.condition.take() {
        conds.push(c);
    }
    status.conditions = api::merge(
        &prev.conditions,
        conds,
        gsc.metadata.generation,
        &report::now_rfc3339(),
    );
    notes.extend(report::ready_transition(
        &prev.conditions,
        &status.conditions,
        &[Reason::Disabled, Reason::AwaitingDeployKey],
    ));
    if let (Some(old), Some(new)) = (&prev.commit_signing, &status.commit_signing) {
        if old.fingerprint != new.fingerprint {
            notes.push(Note::normal(
                Reason::KeyAvailable,
                format!(
                    "commits are now signed with key {} (was {}): register the new status.commitSigning.publicKey with the git host as a signing key",
                    new.fingerprint, old.fingerprint
                ),
            ));
        }
    }
    // A status object that goes away is removed first (see report::write_removing).
    let gone: &[&str] = if prev.commit_signing.is_some() && status.commit_signing.is_none() {
        &["commitSigning"]
    } else {
        &[]
    };
    report::write_removing(&ctx, &gsc, &status, &notes, gone).await?;

    let interval = validation
        .as_ref()
        .map(|v| v.interval)
        .unwrap_or(DEFAULT_INTERVAL);
    Ok(Action::requeue(report::next_check(
        problem.as_ref(),
        report::failing_for(&status.conditions),
        interval,
        ctx.options.retry_min,
        ctx.options.retry_max,
    )))
}

/// The repository check (recording host keys seen on first contact), then the ToolJet check.
async fn observe(
    gsc: &GitSyncConfig,
    ctx: &Context,
    valid: &Validated,
    k: &Cred,
    prev: &GitSyncConfigStatus,
    status: &mut GitSyncConfigStatus,
) -> Result<Checks, Error> {
    let mut checks = Checks::default();
    let verified = api::find(&prev.conditions, types::READY).is_some_and(|c| c.is_true())
        && prev.observed_generation == gsc.metadata.generation
        && verified_with(ctx, gsc, prev, k);
    let start = std::time::Instant::now();
    let repo = observe::check_repository(gsc, ctx, valid, k, prev, verified).await;
    let op = if verified { "recheck" } else { "check" };
    ctx.metrics.git_op(op, start.elapsed(), repo.result.is_ok());
    if let (Some(hosts), Cred::Key(k)) = (&repo.learned_known_hosts, k) {
        checks
            .notes
            .push(key::record_host_keys(gsc, ctx, k, hosts, status).await?);
    }
    if let Cred::Https(_) = k {
        if repo.result.is_ok() {
            ctx.remember_verified(&key_of(gsc), k.fingerprint());
        }
    }
    if let Ok(head) = &repo.result {
        status.repository = Some(RepositoryStatus {
            branch: gsc.spec.repository.branch.clone(),
            head: head.clone(),
            last_checked_at: Some(report::now_rfc3339()),
        });
    }
    let prev_hook = api::find(&prev.conditions, WEBHOOK_READY);
    checks.webhook = webhook::apply(
        gsc,
        ctx,
        &valid.url,
        repo.transport.as_ref().filter(|_| repo.result.is_ok()),
        prev_hook,
    )
    .await?;
    checks.repo = Some(repo.result);
    let tooljet = match connection::connect(gsc, ctx, true).await {
        Ok(c) => {
            let prev_values = api::find(&prev.conditions, super::values::VALUES_APPLIED);
            checks.values = super::values::apply(gsc, ctx, &c, prev_values).await?;
            Ok(connection::tooljet_status(&c))
        }
        Err(Failure::Problem(p)) => Err(p),
        Err(Failure::Infra(e)) => return Err(e),
    };
    if let Ok(t) = &tooljet {
        status.tooljet = Some(t.clone());
    }
    checks.tooljet = Some(tooljet);
    Ok(checks)
}

/// Whether the credential is the one the last successful write check used: the deploy key's
/// fingerprint is in status; an HTTPS credential's identity is remembered in memory (a new
/// process checks once more).
fn verified_with(ctx: &Context, gsc: &GitSyncConfig, prev: &GitSyncConfigStatus, k: &Cred) -> bool {
    match k {
        Cred::Key(k) => prev.public_key_fingerprint.as_deref() == Some(k.info.fingerprint.as_str()),
        Cred::Https(_) => ctx.was_verified(&key_of(gsc), &k.fingerprint()),
    }
}

async fn cleanup(gsc: Arc<GitSyncConfig>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.forget_config(&gsc.namespace().unwrap_or_default(), &gsc.name_any());
    ctx.hooks.unregister(&key_of(gsc.as_ref()));
    signing::forget(&gsc, &ctx);
    release_worker(&gsc, &ctx).await;
    if key::delete_generated(&gsc, &ctx).await? {
        tracing::info!(config = %key_of(gsc.as_ref()), secret = %gsc.key_secret_name(), "deleted generated deploy key Secret");
    }
    Ok(Action::await_change())
}

/// Drops the repository's worker (its caches and fetch records) when no other GitSyncConfig
/// this operator reconciles (same namespaces and label selector) uses the repository. Best
/// effort: when the configs cannot be listed, the worker stays (it is only memory).
async fn release_worker(gsc: &GitSyncConfig, ctx: &Context) {
    let Ok(url) = crate::git::RepoUrl::parse(&gsc.spec.repository.url) else {
        return;
    };
    let identity = url.identity();
    let api: Api<GitSyncConfig> = match &ctx.options.watch_namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let mut params = kube::api::ListParams::default();
    if let Some(selector) = &ctx.options.label_selector {
        params = params.labels(selector);
    }
    let others = match api.list(&params).await {
        Ok(list) => list.items,
        Err(e) => {
            tracing::warn!(config = %key_of(gsc), error = %e, "cannot list GitSyncConfigs; keeping the repository worker");
            return;
        }
    };
    let shared = others.iter().any(|other| {
        other.uid() != gsc.uid()
            && other.metadata.deletion_timestamp.is_none()
            && crate::git::RepoUrl::parse(&other.spec.repository.url)
                .is_ok_and(|u| u.identity() == identity)
    });
    if !shared {
        ctx.workers.forget(&identity);
    }
}
