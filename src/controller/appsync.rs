//! AppSync reconciler. Push: export the app from ToolJet and hand it to the repository worker,
//! which commits it in ToolJet's layout. Nothing in git or ToolJet is ever deleted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::gitsyncconfig::{failing_for, next_check, now_rfc3339, parse_interval, repo_access};
use super::tooljet_check::{connect, problem_of};
use super::{key_of, Context, Error, Problem, FIELD_MANAGER};
use crate::api::{
    self, types, AppStatus, AppSync, AppSyncStatus, CommitInfo, Condition, Direction, GitStatus,
    GitSyncConfig,
};
use crate::git::worker::{PushJob, PushResult, WorkerError};
use crate::layout::{self, Refusal};

/// What a successful pass found or did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The app in ToolJet.
    pub app: Option<AppStatus>,
    /// The app in git.
    pub git: Option<GitStatus>,
    /// A commit made now.
    pub committed: Option<CommitInfo>,
    /// Message of the Synced condition.
    pub message: String,
    /// Reason of the Synced condition.
    pub reason: &'static str,
    /// Pull: a newer commit touching the app, not yet pulled (Manual policy).
    pub available_update: Option<CommitInfo>,
    /// Pull: whether `UpdateAvailable` applies at all.
    pub tracks_updates: bool,
    /// Pull: workspace constants and secrets the app uses that the target lacks.
    pub missing_constants: Vec<String>,
    /// Pull: the pull-requested-at value handled by this pass.
    pub handled_request: Option<String>,
    /// Pull: an app was imported or replaced now.
    pub pulled: bool,
    /// Pull: the current spec has been acted on (a later spec change is a new request).
    pub handled_generation: bool,
}

/// Resolves `spec.gitSyncConfigRef`, refusing other namespaces unless allowed.
pub fn config_namespace(aps: &AppSync, allow_cross: bool) -> Result<String, Problem> {
    let own = aps.namespace().unwrap_or_default();
    match aps.spec.git_sync_config_ref.namespace.as_deref() {
        None => Ok(own),
        Some(ns) if ns == own => Ok(own),
        Some(ns) if allow_cross => Ok(ns.to_string()),
        Some(ns) => Err(Problem::stalled(
            "CrossNamespaceRefDenied",
            format!("spec.gitSyncConfigRef points to namespace {ns}, but the operator only allows GitSyncConfigs in the AppSync's own namespace ({own}); move the AppSync, or start the operator with --allow-cross-namespace-refs"),
        )),
    }
}

/// Conditions for an outcome. Pure.
pub fn conditions(result: &Result<Outcome, Problem>, suspended: bool) -> Vec<Condition> {
    if suspended {
        return vec![Condition::new(
            types::READY,
            false,
            "Suspended",
            "spec.suspend is true: nothing is written to git or ToolJet",
        )];
    }
    match result {
        Ok(o) => {
            let mut v = vec![
                Condition::new(types::READY, true, o.reason, &o.message),
                Condition::new(
                    types::SYNCED,
                    o.available_update.is_none(),
                    o.reason,
                    &o.message,
                ),
            ];
            if o.tracks_updates {
                v.push(match &o.available_update {
                    Some(u) => Condition::new(
                        types::UPDATE_AVAILABLE,
                        true,
                        "UpdateAvailable",
                        format!(
                            "commit {} ({}) changes the app; pull it with: kubectl annotate appsync <name> {}=$(date +%s) --overwrite",
                            &u.sha[..u.sha.len().min(12)],
                            u.message.lines().next().unwrap_or_default(),
                            api::PULL_REQUESTED_ANNOTATION
                        ),
                    ),
                    None => Condition::new(types::UPDATE_AVAILABLE, false, "UpToDate", "the app is at the newest commit of the revision that touches it"),
                });
            }
            if !o.missing_constants.is_empty() {
                v.push(Condition::new(
                    types::CONSTANTS_MISSING,
                    true,
                    "WorkspaceConstantsMissing",
                    format!(
                        "the app references {} which the target workspace does not define; workspace constants are not synced by GitSync: create them in ToolJet (Workspace settings > Workspace constants)",
                        o.missing_constants.join(", ")
                    ),
                ));
            }
            v
        }
        Err(p) => {
            let mut v = vec![
                Condition::new(types::READY, false, &p.reason, &p.message),
                Condition::new(types::SYNCED, false, &p.reason, &p.message),
            ];
            if p.reason != "GitSyncConfigDisabled" {
                let t = if p.stalled {
                    types::STALLED
                } else {
                    types::RECONCILING
                };
                v.push(Condition::new(t, true, &p.reason, &p.message));
            }
            v
        }
    }
}

fn refusal_problem(r: &Refusal) -> Problem {
    let reason = match r {
        Refusal::Name(_) => "AppNameRefused",
        Refusal::FolderClaimed { .. } | Refusal::FolderExists { .. } => "FolderCollision",
        _ => "PushRefused",
    };
    Problem::stalled(reason, format!("nothing was written to git: {r}"))
}

/// Finds the app of a Push AppSync in a listing shared by the config's AppSyncs (refreshed when
/// older than half the interval, at most a minute, or when the app is not in it), following
/// the app by its previous id when its name changed.
async fn find_app_shared(
    ctx: &Context,
    conn: &super::tooljet_check::Connection,
    key: &str,
    ident: &str,
    previous_id: Option<&str>,
    interval: Duration,
) -> Result<Option<crate::tooljet::AppSummary>, crate::tooljet::Error> {
    let max_age = (interval / 2).min(Duration::from_secs(60));
    let pick = |apps: &[crate::tooljet::AppSummary]| {
        let by_id = |id: &str| apps.iter().find(|a| a.id.eq_ignore_ascii_case(id)).cloned();
        match ident.strip_prefix("id:") {
            Some(id) => by_id(id),
            None => apps
                .iter()
                .find(|a| a.name == ident)
                .cloned()
                .or_else(|| by_id(ident))
                .or_else(|| previous_id.and_then(by_id)),
        }
    };
    let mut lists = ctx.app_lists.lock().await;
    if let Some((at, apps)) = lists.get(key) {
        if at.elapsed() < max_age {
            if let Some(a) = pick(apps) {
                return Ok(Some(a));
            }
        }
    }
    let start = Instant::now();
    let listed = conn.client.list_apps(&conn.workspace).await;
    ctx.metrics
        .tooljet_call("list_apps", start.elapsed(), listed.is_ok());
    let apps = Arc::new(listed?);
    let found = pick(&apps);
    lists.insert(key.to_string(), (Instant::now(), apps));
    Ok(found)
}

/// Identifies what a push verified in git: app, name, version and normalized content.
pub fn synced_digest(
    app_id: &str,
    name: &str,
    version_id: &str,
    version_name: &str,
    export: &serde_json::Value,
) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [
        app_id,
        name,
        version_id,
        version_name,
        &layout::content_digest(export),
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Condition problem of a repository worker error.
pub fn worker_problem(e: &WorkerError) -> Problem {
    let stalled = matches!(e.reason(), "HostKeyMismatch" | "InvalidRepositoryContent");
    Problem {
        reason: e.reason().to_string(),
        message: e.to_string(),
        stalled,
    }
}

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

/// Requeue after infrastructure errors.
pub fn error_policy(aps: Arc<AppSync>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(appsync = %key_of(aps.as_ref()), error = %err, "reconcile error");
    Action::requeue(ctx.options.retry_min)
}

async fn cleanup(aps: Arc<AppSync>, _ctx: Arc<Context>) -> Result<Action, Error> {
    let path = aps
        .status
        .as_ref()
        .and_then(|s| s.git.as_ref())
        .and_then(|g| g.path.clone())
        .unwrap_or_else(|| "the app's folder".into());
    tracing::info!(appsync = %key_of(aps.as_ref()), %path, "AppSync deleted; git and ToolJet left untouched");
    Ok(Action::await_change())
}

async fn apply(aps: Arc<AppSync>, ctx: Arc<Context>) -> Result<Action, Error> {
    // The cached object may predate our last status write; the status carries state (the app
    // id in ToolJet, the last pulled commit), so read the current one.
    let api: Api<AppSync> =
        Api::namespaced(ctx.client.clone(), &aps.namespace().unwrap_or_default());
    let aps = match api.get_opt(&aps.name_any()).await? {
        Some(fresh) => Arc::new(fresh),
        None => return Ok(Action::await_change()),
    };
    let prev = aps.status.clone().unwrap_or_default();
    let mut status = AppSyncStatus {
        observed_generation: aps.metadata.generation,
        app: prev.app.clone(),
        git: prev.git.clone(),
        last_commit: prev.last_commit.clone(),
        available_update: prev.available_update.clone(),
        last_handled_pull_requested_at: prev.last_handled_pull_requested_at.clone(),
        last_pulled_generation: prev.last_pulled_generation,
        ..Default::default()
    };
    let mut interval = Duration::from_secs(300);
    let result = if aps.spec.suspend {
        Err(Problem::retrying("Suspended", ""))
    } else {
        match run(&aps, &ctx, &prev, &mut interval).await? {
            Ok(o) => {
                if o.app.is_some() {
                    status.app = o.app.clone();
                }
                if o.git.is_some() {
                    status.git = o.git.clone();
                }
                if let Some(c) = &o.committed {
                    status.last_commit = Some(c.clone());
                }
                if o.tracks_updates {
                    status.available_update = o.available_update.clone();
                }
                if o.handled_request.is_some() {
                    status.last_handled_pull_requested_at = o.handled_request.clone();
                }
                if o.handled_generation {
                    status.last_pulled_generation = aps.metadata.generation;
                }
                Ok(o)
            }
            Err(p) => Err(p),
        }
    };
    let conds = conditions(&result, aps.spec.suspend);
    let now = now_rfc3339();
    status.conditions = api::merge(&prev.conditions, conds, aps.metadata.generation, &now);

    if let Ok(o) = &result {
        let had_missing = api::find(&prev.conditions, types::CONSTANTS_MISSING).is_some();
        if !o.missing_constants.is_empty() && !had_missing {
            ctx.event(
                aps.as_ref(),
                EventType::Warning,
                "WorkspaceConstantsMissing",
                format!(
                    "missing in the target workspace: {}",
                    o.missing_constants.join(", ")
                ),
            )
            .await;
        }
        let known = prev.available_update.as_ref().map(|p| &p.sha);
        if let Some(u) = o
            .available_update
            .as_ref()
            .filter(|u| Some(&u.sha) != known)
        {
            ctx.event(
                aps.as_ref(),
                EventType::Normal,
                "UpdateAvailable",
                format!(
                    "commit {} changes the app: {}",
                    &u.sha[..u.sha.len().min(12)],
                    u.message
                ),
            )
            .await;
        }
        if o.pulled {
            ctx.event(aps.as_ref(), EventType::Normal, "Pulled", o.message.clone())
                .await;
        }
    }
    if let Ok(Outcome {
        committed: Some(c),
        pulled: false,
        ..
    }) = &result
    {
        ctx.event(
            aps.as_ref(),
            EventType::Normal,
            "Committed",
            format!(
                "pushed commit {} to git: {}",
                &c.sha[..c.sha.len().min(12)],
                c.message
            ),
        )
        .await;
    }
    ctx.report_ready_transition(
        aps.as_ref(),
        &prev.conditions,
        &status.conditions,
        &["Suspended", "GitSyncConfigNotReady"],
    )
    .await;

    let api: Api<AppSync> =
        Api::namespaced(ctx.client.clone(), &aps.namespace().unwrap_or_default());
    let patch =
        json!({"apiVersion": "gitsync.tooljet.io/v1alpha1", "kind": "AppSync", "status": status});
    api.patch_status(
        &aps.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;

    let problem = result.err().filter(|_| !aps.spec.suspend);
    let wait = match &problem {
        Some(p) if p.reason == "GitSyncConfigDisabled" => interval,
        _ => next_check(
            problem.as_ref(),
            failing_for(&status.conditions),
            interval,
            ctx.options.retry_min,
            ctx.options.retry_max,
        ),
    };
    if aps.spec.suspend {
        return Ok(Action::await_change());
    }
    Ok(Action::requeue(wait))
}

/// One pass: dereference the config, then push or pull.
async fn run(
    aps: &AppSync,
    ctx: &Context,
    prev: &AppSyncStatus,
    interval: &mut Duration,
) -> Result<Result<Outcome, Problem>, Error> {
    let ns = match config_namespace(aps, ctx.options.allow_cross_namespace_refs) {
        Ok(ns) => ns,
        Err(p) => return Ok(Err(p)),
    };
    let ref_name = &aps.spec.git_sync_config_ref.name;
    let gscs: Api<GitSyncConfig> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(gsc) = gscs.get_opt(ref_name).await? else {
        return Ok(Err(Problem::retrying(
            "GitSyncConfigNotFound",
            format!("GitSyncConfig {ns}/{ref_name} (spec.gitSyncConfigRef) does not exist: create it or fix the reference"),
        )));
    };
    if let Ok(d) = parse_interval(&gsc.spec.interval) {
        *interval = d;
    }
    if !gsc.spec.enabled {
        return Ok(Err(Problem::retrying(
            "GitSyncConfigDisabled",
            format!("GitSyncConfig {ns}/{ref_name} has spec.enabled: false, so nothing is committed or pulled"),
        )));
    }
    let gsc_ready = gsc
        .status
        .as_ref()
        .and_then(|s| api::find(&s.conditions, types::READY).cloned());
    match gsc_ready {
        Some(c) if c.is_true() => {}
        Some(c) => {
            return Ok(Err(Problem::retrying(
                "GitSyncConfigNotReady",
                format!(
                "GitSyncConfig {ns}/{ref_name} is not Ready ({}: {}); this AppSync waits for it",
                c.reason, c.message
            ),
            )))
        }
        None => {
            return Ok(Err(Problem::retrying(
                "GitSyncConfigNotReady",
                format!(
                "GitSyncConfig {ns}/{ref_name} has not been checked yet; this AppSync waits for it"
            ),
            )))
        }
    }
    match aps.spec.direction {
        Direction::Push => push(aps, ctx, &gsc, prev).await,
        Direction::Pull => super::pull::pull(aps, ctx, &gsc, prev).await,
    }
}

async fn push(
    aps: &AppSync,
    ctx: &Context,
    gsc: &GitSyncConfig,
    prev: &AppSyncStatus,
) -> Result<Result<Outcome, Problem>, Error> {
    let conn = match connect(gsc, ctx).await? {
        Ok(c) => c,
        Err(p) => return Ok(Err(p)),
    };
    let previous_id = prev.app.as_ref().and_then(|a| a.id.clone());
    let missing = || {
        let kept = prev
            .git
            .as_ref()
            .and_then(|g| g.path.clone())
            .map(|p| format!("; nothing in git was deleted ({p} is kept)"))
            .unwrap_or_default();
        Problem::stalled(
            "AppNotFound",
            format!("no app {:?} in ToolJet workspace {}{kept}. If it was deleted, delete this AppSync (git keeps the app); otherwise fix spec.app (a name, or id:<uuid>)", aps.spec.app, conn.workspace.name),
        )
    };
    let list_key = format!(
        "{}/{}|{}",
        gsc.namespace().unwrap_or_default(),
        gsc.name_any(),
        conn.workspace.id
    );
    let interval = parse_interval(&gsc.spec.interval).unwrap_or(Duration::from_secs(300));
    let found = find_app_shared(
        ctx,
        &conn,
        &list_key,
        &aps.spec.app,
        previous_id.as_deref(),
        interval,
    )
    .await;
    let app = match found {
        Ok(Some(a)) => a,
        Ok(None) => return Ok(Err(missing())),
        Err(e) => return Ok(Err(problem_of(&e))),
    };
    let version = aps.spec.push.as_ref().and_then(|p| p.version.clone());
    let start = Instant::now();
    let export = conn
        .client
        .export_app(&conn.workspace, &app.id, version.as_deref())
        .await;
    ctx.metrics
        .tooljet_call("export_app", start.elapsed(), export.is_ok());
    let export = match export {
        Ok(e) => e,
        Err(e) if e.reason() == "AppNotFound" => {
            ctx.app_lists.lock().await.remove(&list_key);
            return Ok(Err(missing()));
        }
        Err(e) => return Ok(Err(problem_of(&e))),
    };
    let exported = match layout::app_from_export(&export) {
        Ok(x) => x,
        Err(e) => {
            return Ok(Err(Problem::retrying(
                "InvalidExport",
                format!("ToolJet returned an export the operator cannot read: {e}"),
            )))
        }
    };
    // The export is fresh; a shared listing may be a little older (e.g. just before a rename).
    let app = crate::tooljet::AppSummary {
        name: exported.name.clone(),
        ..app
    };
    let (url, transport) = match repo_access(gsc, ctx).await? {
        Ok(a) => a,
        Err(p) => return Ok(Err(p)),
    };
    let branch = gsc.spec.repository.branch.clone();
    let worker = ctx.workers.get(&url);
    let digest = synced_digest(
        &app.id,
        &app.name,
        &exported.version_id,
        &exported.version_name,
        &export,
    );
    // Nothing changed on either side: one shared ref check per repository and interval.
    if let Some(known) = prev
        .git
        .as_ref()
        .filter(|g| g.synced_digest.as_deref() == Some(digest.as_str()))
    {
        let start = Instant::now();
        // The config's own check refreshes this head every interval; accepting it a little
        // longer keeps AppSyncs from a second ls-remote when their timing drifts past it.
        let head = worker
            .remote_head(transport.clone(), &branch, interval.mul_f32(1.5))
            .await;
        ctx.metrics
            .git_op("remote_head", start.elapsed(), head.is_ok());
        if let (Ok(Some(h)), Some(k)) = (&head, &known.head) {
            // The head moved (other apps were pushed): unchanged when no commit since the
            // verified head touched this app's folder or meta entry. The mirror answers, with
            // at most one shared fetch per interval.
            let unchanged = h == k || {
                let folder = known
                    .path
                    .as_deref()
                    .and_then(|p| p.split('/').next())
                    .unwrap_or_default();
                let start = Instant::now();
                let touched = worker
                    .last_commit_touching(transport.clone(), h, Some(k), folder, &app.id, interval)
                    .await;
                ctx.metrics
                    .git_op("touched_since", start.elapsed(), touched.is_ok());
                !folder.is_empty() && matches!(touched, Ok(None))
            };
            if unchanged {
                let mut git = known.clone();
                git.head = Some(h.clone());
                return Ok(Ok(Outcome {
                    app: Some(AppStatus {
                        id: Some(app.id.clone()),
                        name: Some(app.name.clone()),
                        version_id: Some(exported.version_id.clone()),
                        version_name: Some(exported.version_name.clone()),
                    }),
                    reason: "UpToDate",
                    message: format!(
                        "git holds {} version {} at {} on {branch} (head {})",
                        app.name,
                        exported.version_name,
                        known.path.as_deref().unwrap_or_default(),
                        &h[..h.len().min(12)]
                    ),
                    git: Some(git),
                    ..Default::default()
                }));
            }
        }
    }
    let author = aps
        .spec
        .push
        .as_ref()
        .and_then(|p| p.author.clone())
        .or_else(|| gsc.spec.commit_author.clone())
        .unwrap_or_default();
    let message = aps
        .spec
        .push
        .as_ref()
        .and_then(|p| p.commit_message.clone())
        .unwrap_or_else(|| layout::plan::DEFAULT_UPDATE_MESSAGE.to_string());
    let job = PushJob {
        transport,
        branch: gsc.spec.repository.branch.clone(),
        app_id: app.id.clone(),
        app_name: app.name.clone(),
        version_id: exported.version_id.clone(),
        version_name: exported.version_name.clone(),
        export,
        message,
        author_name: author.name.clone(),
        author_email: author.email.clone(),
        date: jiff::Timestamp::now(),
    };
    let start = Instant::now();
    let result = worker.push(job).await;
    ctx.metrics.git_op("push", start.elapsed(), result.is_ok());
    let app_status = Some(AppStatus {
        id: Some(app.id.clone()),
        name: Some(app.name.clone()),
        version_id: Some(exported.version_id.clone()),
        version_name: Some(exported.version_name.clone()),
    });
    let git_status = |path: &str, head: Option<String>| {
        Some(GitStatus {
            path: Some(path.to_string()),
            git_app_id: Some(app.id.clone()),
            synced_digest: head.is_some().then(|| digest.clone()),
            head,
        })
    };
    Ok(match result {
        Ok(PushResult::NoChange { app_path, head }) => Ok(Outcome {
            app: app_status,
            git: git_status(&app_path, head.clone()),
            committed: None,
            reason: "UpToDate",
            message: format!(
                "git holds {} version {} at {app_path} on {branch}{}",
                app.name,
                exported.version_name,
                head.map(|h| format!(" (head {})", &h[..h.len().min(12)]))
                    .unwrap_or_default()
            ),
            ..Default::default()
        }),
        Ok(PushResult::Committed {
            commit,
            app_path,
            kind,
        }) => {
            ctx.metrics.pushed(1);
            Ok(Outcome {
                app: app_status,
                git: git_status(&app_path, Some(commit.sha.clone())),
                message: format!(
                    "pushed {kind:?} of {} version {} to {app_path} on {branch} as {}",
                    app.name,
                    exported.version_name,
                    &commit.sha[..commit.sha.len().min(12)]
                ),
                committed: Some(CommitInfo {
                    sha: commit.sha,
                    message: commit.message,
                    author: commit.author,
                    date: Some(commit.date),
                }),
                reason: "Committed",
                ..Default::default()
            })
        }
        Ok(PushResult::Refused(r)) => Err(refusal_problem(&r)),
        Err(e) => Err(worker_problem(&e)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aps(ns_ref: Option<&str>) -> AppSync {
        let mut a = AppSync::new(
            "x",
            api::AppSyncSpec {
                git_sync_config_ref: api::ConfigRef {
                    name: "c".into(),
                    namespace: ns_ref.map(String::from),
                },
                app: "A".into(),
                direction: Direction::Push,
                push: None,
                pull: None,
                suspend: false,
            },
        );
        a.metadata.namespace = Some("team".into());
        a
    }

    #[test]
    fn cross_namespace_refs_need_the_flag() {
        assert_eq!(config_namespace(&aps(None), false).unwrap(), "team");
        assert_eq!(config_namespace(&aps(Some("team")), false).unwrap(), "team");
        assert_eq!(
            config_namespace(&aps(Some("other")), false)
                .unwrap_err()
                .reason,
            "CrossNamespaceRefDenied"
        );
        assert_eq!(
            config_namespace(&aps(Some("other")), true).unwrap(),
            "other"
        );
    }

    #[test]
    fn suspended_is_not_ready_without_reconciling() {
        let c = conditions(&Err(Problem::retrying("X", "")), true);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].reason, "Suspended");
    }

    #[test]
    fn problems_map_to_kstatus() {
        let c = conditions(&Err(Problem::stalled("AppNotFound", "m")), false);
        assert!(api::find(&c, "Stalled").is_some());
        let c = conditions(&Err(Problem::retrying("GitSyncConfigNotReady", "m")), false);
        assert!(api::find(&c, "Reconciling").is_some());
        let ok = conditions(
            &Ok(Outcome {
                reason: "UpToDate",
                tracks_updates: true,
                missing_constants: vec!["constants.region".into()],
                ..Default::default()
            }),
            false,
        );
        assert!(api::find(&ok, "Ready").unwrap().is_true());
        assert_eq!(api::find(&ok, "UpdateAvailable").unwrap().status, "False");
        assert!(api::find(&ok, "WorkspaceConstantsMissing")
            .unwrap()
            .message
            .contains("constants.region"));
    }
}
