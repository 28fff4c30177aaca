//! AppSync reconciler: validate → dereference the GitSyncConfig → observe → plan → apply →
//! report. Push exports the app from ToolJet into git; Pull imports it from git. Nothing in
//! git or ToolJet is ever deleted.

mod journal;
mod plan;
mod pr;
mod pull;
mod push;
mod status;
mod swap;
mod validate;

pub use plan::{PullDecision, PushDecision};
pub use status::{Ended, Outcome};
pub use validate::check_revision;

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::{Api, ResourceExt};

use super::gitsyncconfig::DEFAULT_INTERVAL;
use super::report;
use super::{config_ref, key_of, Context, Error, Failure};
use crate::api::{self, AppSync, AppSyncStatus, Direction, Reason};

/// Entry point for the controller.
pub async fn reconcile(aps: Arc<AppSync>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api: Api<AppSync> =
        Api::namespaced(ctx.client.clone(), &aps.namespace().unwrap_or_default());
    finalizer(&api, api::FINALIZER, aps, |event| async {
        match event {
            Finalizer::Apply(a) => apply(a, ctx.clone()).await,
            Finalizer::Cleanup(a) => cleanup(a, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(e.to_string()))
}

/// Requeue after infrastructure errors, backing off exponentially per object.
pub fn error_policy(aps: Arc<AppSync>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(appsync = %key_of(aps.as_ref()), error = %err, "reconcile error");
    Action::requeue(ctx.backoff(&format!("AppSync/{}", key_of(aps.as_ref()))))
}

/// Deleting an AppSync deletes nothing in git or ToolJet; an import or replace still in
/// progress is finished or rolled back first, so the target is never left half-swapped.
async fn cleanup(aps: Arc<AppSync>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api: Api<AppSync> =
        Api::namespaced(ctx.client.clone(), &aps.namespace().unwrap_or_default());
    let aps = api
        .get_opt(&aps.name_any())
        .await?
        .unwrap_or_else(|| (*aps).clone());
    let prev = aps.status.clone().unwrap_or_default();
    if prev.swap.is_some() {
        let mut carry = swap::Carry::of(&prev);
        let (_, resolved) = config_ref::dereference(&aps, &ctx).await;
        let done = match resolved {
            Ok(cfg) => {
                let allow_editing = aps.spec.pull.as_ref().is_some_and(|p| p.allow_editing);
                let s = swap::Swap {
                    ctx: &ctx,
                    aps: &aps,
                    prev: &prev,
                    cfg: &cfg,
                    allow_editing,
                };
                s.drive(&mut carry).await
            }
            Err(f) => Err(f),
        };
        match done {
            // The config is gone: nothing can reach the workspace any more. The journal names
            // what may be left; the AppSync is not kept forever for it.
            Err(Failure::Problem(p))
                if matches!(
                    p.reason,
                    Reason::GitSyncConfigNotFound | Reason::GitSyncConfigDisabled
                ) =>
            {
                let names = prev
                    .swap
                    .as_ref()
                    .map(|j| format!("{} / {}", j.temp_name, j.parked_name))
                    .unwrap_or_default();
                tracing::warn!(appsync = %key_of(&aps), reason = %p.reason, leftovers = %names, "deleted AppSync had an open swap its config can no longer finish; apps of these names may be left in ToolJet");
                return Ok(finish_cleanup(&aps, &prev, &ctx));
            }
            _ => {}
        }
        if let Err(f) = done {
            tracing::warn!(appsync = %key_of(&aps), error = %f, "deleted AppSync has an open swap; retrying before it goes");
            return Err(match f {
                Failure::Infra(e) => e,
                Failure::Problem(p) => Error::Internal(format!("{}: {}", p.reason, p.message)),
            });
        }
    }
    Ok(finish_cleanup(&aps, &prev, &ctx))
}

fn finish_cleanup(aps: &AppSync, prev: &AppSyncStatus, ctx: &Context) -> Action {
    ctx.release_claims(&key_of(aps));
    let path = prev
        .git
        .as_ref()
        .and_then(|g| g.path.clone())
        .unwrap_or_else(|| "the app's folder".into());
    tracing::info!(appsync = %key_of(aps), %path, "AppSync deleted; git and ToolJet left untouched");
    Action::await_change()
}

async fn apply(aps: Arc<AppSync>, ctx: Arc<Context>) -> Result<Action, Error> {
    // The cached object may predate our last status write; the status carries state (the app
    // id in ToolJet, the last pulled commit), so read the current one.
    let api: Api<AppSync> =
        Api::namespaced(ctx.client.clone(), &aps.namespace().unwrap_or_default());
    let Some(aps) = api.get_opt(&aps.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let prev = aps.status.clone().unwrap_or_default();
    let mut carry = swap::Carry::of(&prev);
    // A suspended AppSync still finishes a swap in progress: the target must not stay half-swapped.
    let (interval, ended) = match aps.spec.suspend && prev.swap.is_none() {
        true => (Duration::ZERO, Ended::Suspended),
        false => match run(&aps, &ctx, &prev, &mut carry).await? {
            // The open swap was rolled back; suspended, the pass ends there.
            Some((iv, Ended::Failed(p))) if p.reason == Reason::Suspended => (iv, Ended::Suspended),
            Some(other) => other,
            // A push was handed to the repository worker: its answer re-runs the AppSync,
            // and that pass writes the status (the fallback only guards a lost answer).
            None => return Ok(Action::requeue(ctx.options.retry_max)),
        },
    };
    let status = status::next_status(&aps, &prev, &ended, &carry, &report::now_rfc3339());
    let notes = status::notes(&prev, &status, &ended);
    let remove: &[&str] = if carry.journaled && status.swap.is_none() {
        &["swap"]
    } else {
        &[]
    };
    report::write_removing(&ctx, &aps, &status, &notes, remove).await?;
    let problem = match &ended {
        Ended::Suspended => return Ok(Action::await_change()),
        Ended::Done(_) => None,
        Ended::Failed(p) => Some(p),
    };
    Ok(Action::requeue(report::next_check(
        problem,
        report::failing_for(&status.conditions),
        interval,
        ctx.options.retry_min,
        ctx.options.retry_max,
    )))
}

/// One pass, and the interval of the config it used; `None` when a push was handed over.
async fn run(
    aps: &AppSync,
    ctx: &Context,
    prev: &AppSyncStatus,
    carry: &mut swap::Carry,
) -> Result<Option<(Duration, Ended)>, Error> {
    let checked =
        validate::validate(aps).and_then(|_| plan::check_direction(prev, aps.spec.direction));
    if let Err(p) = checked {
        return Ok(Some((DEFAULT_INTERVAL, Ended::Failed(p))));
    }
    let (interval, resolved) = config_ref::dereference(aps, ctx).await;
    let result = match resolved {
        Ok(cfg) => match aps.spec.direction {
            // Boxed: each direction's future is large; the reconcile task stays small.
            Direction::Push => match Box::pin(push::push(aps, ctx, &cfg, prev)).await {
                Ok(push::Pushed::HandedOver) => return Ok(None),
                Ok(push::Pushed::Done(o)) => Ok(*o),
                Err(f) => Err(f),
            },
            Direction::Pull => Box::pin(pull::pull(aps, ctx, &cfg, prev, carry)).await,
        },
        Err(f) => Err(f),
    };
    match result {
        Ok(o) => Ok(Some((interval, Ended::Done(Box::new(o))))),
        Err(Failure::Problem(p)) => Ok(Some((interval, Ended::Failed(p)))),
        Err(Failure::Infra(e)) => Err(e),
    }
}
