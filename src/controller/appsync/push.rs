//! Push: observe (the app in the shared listing, a fresh export, the branch head) and apply
//! (hand the export to the repository worker, which commits in ToolJet's layout; the answer is
//! reported by the next pass, see `handoff`). The decisions are in `plan`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;

use super::super::config_ref::ResolvedConfig;
use super::super::handoff::{Handed, Taken};
use super::super::{Context, Failure, Problem};
use super::plan::{self, HeadView, PushDecision, PushFacts};
use super::pr::{self, PrMode};
use super::status::Outcome;
use crate::api::{AppSync, AppSyncStatus, GitStatus, Reason};
use crate::git::worker::{PushJob, PushResult, WorkerError};
use crate::layout;
use crate::tooljet::{AppSummary, Error as ToolJetError};

/// How a Push pass ended.
pub enum Pushed {
    /// The outcome to report.
    Done(Box<Outcome>),
    /// The export is in the repository worker's hands; its answer re-runs the AppSync.
    HandedOver,
}

/// One Push pass: the answer to a push handed over earlier, or a look at the app.
pub async fn push(
    aps: &AppSync,
    ctx: &Context,
    cfg: &ResolvedConfig,
    prev: &AppSyncStatus,
) -> Result<Pushed, Failure> {
    let me = super::super::key_of(aps);
    // The worker's own call has a deadline of a few fetches; this only guards a lost task.
    let max_wait = ctx.options.git_timeout.saturating_mul(20);
    match ctx.handoff.take(&me, aps.metadata.generation, max_wait) {
        Taken::Waiting => Ok(Pushed::HandedOver),
        Taken::Answered(handed, answer) => {
            let mut mode = pr::prepare(aps, ctx, cfg, prev).await?;
            let outcome = answered(ctx, cfg, prev, &handed, answer).await?;
            let outcome = in_pull_request(ctx, cfg, mode.as_mut(), outcome).await?;
            Ok(Pushed::Done(Box::new(outcome)))
        }
        Taken::Nothing => {
            let mut mode = pr::prepare(aps, ctx, cfg, prev).await?;
            match look(aps, ctx, cfg, prev, me, mode.as_ref()).await? {
                Pushed::Done(o) => {
                    let outcome = in_pull_request(ctx, cfg, mode.as_mut(), *o).await?;
                    Ok(Pushed::Done(Box::new(outcome)))
                }
                handed => Ok(handed),
            }
        }
    }
}

/// In pull-request mode, the request that carries the working branch (opened when the branch
/// is ahead of the base and none is open), recorded in the outcome; Ready says the change
/// waits in it.
async fn in_pull_request(
    ctx: &Context,
    cfg: &ResolvedConfig,
    mode: Option<&mut PrMode>,
    mut outcome: Outcome,
) -> Result<Outcome, Failure> {
    let Some(mode) = mode else {
        return Ok(outcome);
    };
    let app = outcome.app.as_ref();
    let name = app.and_then(|a| a.name.clone()).unwrap_or_default();
    let version = app.and_then(|a| a.version_name.clone()).unwrap_or_default();
    mode.ensure(ctx, cfg, &name, &version).await?;
    outcome.pull_request = mode.status.clone();
    if let Some(waiting) = mode.waiting_message() {
        outcome.reason = Reason::PullRequestOpen;
        outcome.message = waiting;
    }
    Ok(outcome)
}

/// The app's state in ToolJet and git, and the push when they differ.
async fn look(
    aps: &AppSync,
    ctx: &Context,
    cfg: &ResolvedConfig,
    prev: &AppSyncStatus,
    me: String,
    mode: Option<&PrMode>,
) -> Result<Pushed, Failure> {
    // In pull-request mode, changes go to the request's branch, started at the base.
    let branch = mode.map_or(cfg.branch(), |m| m.branch.as_str());
    let start_from = mode.map(|m| m.base.as_str());
    let workspace = &cfg.tooljet.workspace;
    let list_key = format!("{}|{}", cfg.key(), workspace.id);
    let previous_id = prev.app.as_ref().and_then(|a| a.id.as_deref());
    let not_found = || plan::app_not_found(&aps.spec.app, &workspace.name, prev);
    let found = find_app(ctx, cfg, &list_key, &aps.spec.app, previous_id).await?;
    let app = found.ok_or_else(not_found)?;

    let export = export(ctx, cfg, aps, &app.id, &list_key)
        .await?
        .ok_or_else(not_found)?;
    let exported = layout::app_from_export(&export).map_err(|e| {
        Problem::retrying(
            Reason::InvalidExport,
            format!("ToolJet returned an export the operator cannot read: {e}"),
        )
    })?;
    // The export is fresh; a shared listing may be a little older (e.g. just before a rename).
    let app = AppSummary {
        name: exported.name.clone(),
        ..app
    };
    // Claimed on the base: two AppSyncs promoting one app at two versions conflict there.
    let claim = format!("{}|{}|{}", cfg.key(), start_from.unwrap_or(branch), app.id);
    let ttl = cfg.valid.interval.saturating_mul(3);
    let others = ctx.claim_push(&claim, &me, &exported.version_name, ttl);
    plan::check_push_conflict(&app.name, &exported.version_name, branch, &others)?;
    let digest = plan::synced_digest(&app.id, &app.name, &exported, &export);
    let facts = PushFacts {
        app: &app,
        exported: &exported,
        branch,
        digest: &digest,
    };

    let known = plan::still_synced(prev, &digest);
    // A request closed without merging rejected this content: it is not offered again; the
    // next change in ToolJet opens a new request.
    if let (Some(m), Some(_)) = (mode, known) {
        if let Some(closed) = m.closed() {
            return Ok(Pushed::Done(Box::new(Outcome {
                owned: owned(&app.id),
                ..Outcome::new(
                    Reason::UpToDate,
                    format!(
                        "pull request #{} ({}) was closed without merging; the app is unchanged since, so no new request is opened until it changes in ToolJet",
                        closed.number, closed.url
                    ),
                )
            })));
        }
    }
    let view = match known {
        Some(k) => head_view(ctx, cfg, branch, start_from, k, &app.id).await,
        None => HeadView::Unknown,
    };
    match plan::plan_push(&facts, known, &view) {
        PushDecision::UpToDate(outcome) => Ok(Pushed::Done(Box::new(Outcome {
            owned: owned(&app.id),
            ..*outcome
        }))),
        PushDecision::Commit => {
            // The file, not the parsed export, waits for the batch: a fraction of its memory.
            let file = layout::AppFile::of(&export).map_err(|e| {
                Problem::retrying(
                    Reason::InvalidExport,
                    format!("ToolJet returned an export the operator cannot write as a file ({e}); nothing was pushed. Retried every interval; if it persists, open and save the app in ToolJet so that it exports again"),
                )
            })?;
            drop(export);
            let handed = Handed {
                generation: aps.metadata.generation,
                app: app.clone(),
                exported: exported.clone(),
                digest: digest.clone(),
                branch: branch.to_string(),
                started: Instant::now(),
                bytes: file.content.len(),
            };
            let job = push_job(aps, cfg, (branch, start_from), &app, &exported, file);
            let worker = ctx.workers.get(cfg.url());
            if !ctx.handoff.has_room() {
                // Enough exports wait in workers' hands: this one waits in its slot.
                let answer = worker.push(job).await;
                let outcome = answered(ctx, cfg, prev, &handed, answer).await?;
                return Ok(Pushed::Done(Box::new(outcome)));
            }
            let obj = ObjectRef::from_obj(aps);
            ctx.handoff
                .hand_over(me, obj, handed, async move { worker.push(job).await });
            Ok(Pushed::HandedOver)
        }
    }
}

fn owned(app_id: &str) -> Option<crate::api::Ownership> {
    Some(crate::api::Ownership {
        direction: Some(crate::api::Direction::Push),
        app_id: Some(app_id.to_string()),
        git_app_id: Some(app_id.to_string()),
    })
}

/// The outcome of a push the worker answered.
async fn answered(
    ctx: &Context,
    cfg: &ResolvedConfig,
    prev: &AppSyncStatus,
    handed: &Handed,
    answer: Result<PushResult, WorkerError>,
) -> Result<Outcome, Failure> {
    ctx.metrics
        .git_op("push", handed.started.elapsed(), answer.is_ok());
    let result = answer?;
    let app = &handed.app;
    let facts = PushFacts {
        app,
        exported: &handed.exported,
        branch: &handed.branch,
        digest: &handed.digest,
    };
    let recovered = match &result {
        PushResult::NoChange {
            app_path,
            head: Some(h),
        } => last_commit_in_git(ctx, cfg, h, app_path, &app.id, prev).await,
        _ => None,
    };
    let mut outcome = Outcome {
        owned: owned(&app.id),
        ..plan::push_outcome(&facts, result)?
    };
    if outcome.committed.is_some() {
        ctx.metrics.pushed(1);
    }
    if recovered.is_some() {
        outcome.committed = recovered;
    }
    Ok(outcome)
}

/// A fresh export of the app; `None` when ToolJet says the app is gone (the shared listing
/// that still had it is dropped).
async fn export(
    ctx: &Context,
    cfg: &ResolvedConfig,
    aps: &AppSync,
    app_id: &str,
    list_key: &str,
) -> Result<Option<serde_json::Value>, Failure> {
    let version = aps.spec.push.as_ref().and_then(|p| p.version.as_deref());
    let start = Instant::now();
    let export = cfg
        .tooljet
        .client
        .export_app(&cfg.tooljet.workspace, app_id, version)
        .await;
    ctx.metrics
        .tooljet_call("export_app", start.elapsed(), export.is_ok());
    match export {
        Ok(e) => Ok(Some(e)),
        Err(e) if e.reason() == Reason::AppNotFound => {
            ctx.forget_app_list(list_key);
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Git already holds the export although the status did not say so: the pass that pushed it
/// was killed before its status write. The newest commit touching the app is the last
/// commit the status missed (answered from the mirror, no remote call).
async fn last_commit_in_git(
    ctx: &Context,
    cfg: &ResolvedConfig,
    head: &str,
    app_path: &str,
    app_id: &str,
    prev: &AppSyncStatus,
) -> Option<crate::api::CommitInfo> {
    let folder = app_path.split('/').next().filter(|f| !f.is_empty())?;
    let worker = ctx.workers.get(cfg.url());
    let touched = worker
        .last_commit_touching(
            cfg.transport.clone(),
            head,
            None,
            folder,
            app_id,
            cfg.valid.interval,
        )
        .await
        .ok()??;
    let info = plan::commit_info(&touched);
    let known = prev.last_commit.as_ref().map(|c| c.sha.as_str());
    (known != Some(info.sha.as_str())).then_some(info)
}

/// The branch head against what was verified: unchanged, or moved with or without commits
/// touching the app (answered from the mirror, at most one shared fetch per interval). A
/// branch rewound or switched by a force-push (the verified head no longer in its history)
/// counts as touched: the worker reports the new head itself as the touching commit.
async fn head_view(
    ctx: &Context,
    cfg: &ResolvedConfig,
    branch: &str,
    start_from: Option<&str>,
    known: &GitStatus,
    app_id: &str,
) -> HeadView {
    let interval = cfg.valid.interval;
    let worker = ctx.workers.get(cfg.url());
    let start = Instant::now();
    // The config's own check refreshes this head every interval; accepting it a little
    // longer keeps AppSyncs from a second ls-remote when their timing drifts past it.
    let max_age = interval.saturating_add(interval / 2);
    let mut head = worker
        .remote_head(cfg.transport.clone(), branch, max_age)
        .await;
    // A pull-request branch not made yet: the app is compared with its base.
    if let (Ok(None), Some(base)) = (&head, start_from) {
        head = worker
            .remote_head(cfg.transport.clone(), base, max_age)
            .await;
    }
    ctx.metrics
        .git_op("remote_head", start.elapsed(), head.is_ok());
    let (Ok(Some(head)), Some(k)) = (head, known.head.as_deref()) else {
        return HeadView::Unknown;
    };
    if head == k {
        return HeadView::Same(head);
    }
    let Some(folder) = plan::folder_of(known) else {
        return HeadView::Moved {
            head,
            untouched: false,
        };
    };
    let start = Instant::now();
    let touched = worker
        .last_commit_touching(
            cfg.transport.clone(),
            &head,
            Some(k),
            folder,
            app_id,
            interval,
        )
        .await;
    ctx.metrics
        .git_op("touched_since", start.elapsed(), touched.is_ok());
    let untouched = matches!(touched, Ok(None));
    HeadView::Moved { head, untouched }
}

/// The job of one push to `branch` (started at `start_from` when it is missing).
fn push_job(
    aps: &AppSync,
    cfg: &ResolvedConfig,
    (branch, start_from): (&str, Option<&str>),
    app: &AppSummary,
    exported: &layout::ExportedApp,
    file: layout::AppFile,
) -> PushJob {
    let spec = aps.spec.push.as_ref();
    let author = spec
        .and_then(|p| p.author.clone())
        .or_else(|| cfg.gsc.spec.commit_author.clone())
        .unwrap_or_default();
    let message = spec
        .and_then(|p| p.commit_message.clone())
        .unwrap_or_else(|| layout::plan::DEFAULT_UPDATE_MESSAGE.to_string());
    PushJob {
        start_from: start_from.map(str::to_string),
        transport: cfg.transport.clone(),
        branch: branch.to_string(),
        app_id: app.id.clone(),
        app_name: app.name.clone(),
        version_id: exported.version_id.clone(),
        version_name: exported.version_name.clone(),
        file,
        message,
        author_name: author.name,
        author_email: author.email,
        date: jiff::Timestamp::now(),
        signing: cfg.signing.clone(),
    }
}

/// Finds the app in a listing shared by the config's AppSyncs (refreshed when older than half
/// the interval, at most a minute, or when the app is not in it). Only this listing's slot is
/// locked while it is fetched; other configs' AppSyncs never wait for it.
async fn find_app(
    ctx: &Context,
    cfg: &ResolvedConfig,
    key: &str,
    ident: &str,
    previous_id: Option<&str>,
) -> Result<Option<AppSummary>, ToolJetError> {
    let max_age = (cfg.valid.interval / 2).min(Duration::from_secs(60));
    let slot = ctx.app_list_slot(key);
    let mut cached = slot.lock().await;
    if let Some((at, apps)) = cached.as_ref() {
        if at.elapsed() < max_age {
            if let Some(a) = plan::pick_app(apps, ident, previous_id) {
                return Ok(Some(a.clone()));
            }
        }
    }
    let start = Instant::now();
    let listed = cfg.tooljet.client.list_apps(&cfg.tooljet.workspace).await;
    ctx.metrics
        .tooljet_call("list_apps", start.elapsed(), listed.is_ok());
    let apps = Arc::new(listed?);
    let found = plan::pick_app(&apps, ident, previous_id).cloned();
    *cached = Some((Instant::now(), apps));
    Ok(found)
}
