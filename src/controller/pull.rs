//! AppSync Pull: make the target ToolJet workspace run the app as git holds it at a revision.
//!
//! The first pull imports the app under its git name. Later pulls replace it keeping its name
//! and slug (the ToolJet client's safe sequence: the old app stays until the new one is in
//! place). An app of that name that this AppSync did not create is never touched.

use std::time::{Duration, Instant};

use kube::ResourceExt;

use super::appsync::{worker_problem, Outcome};
use super::gitsyncconfig::{parse_interval, repo_access};
use super::tooljet_check::{connect, problem_of};
use super::{Context, Error, Problem};
use crate::api::{
    self, AppStatus, AppSync, AppSyncStatus, CommitInfo, GitStatus, GitSyncConfig, UpdatePolicy,
};
use crate::layout::{self, AppLookup};

fn commit_info(c: &crate::git::worker::CommitInfo) -> CommitInfo {
    CommitInfo {
        sha: c.sha.clone(),
        message: c.message.clone(),
        author: c.author.clone(),
        date: Some(c.date.clone()),
    }
}

/// Whether the user asked for a pull in this pass: a new pull-requested-at value, or a spec
/// change (e.g. a new revision). Pure.
pub fn pull_requested(aps: &AppSync, prev: &AppSyncStatus) -> (bool, Option<String>) {
    let annotation = aps
        .annotations()
        .get(api::PULL_REQUESTED_ANNOTATION)
        .cloned();
    let new_annotation = annotation.is_some() && annotation != prev.last_handled_pull_requested_at;
    let spec_changed = aps.metadata.generation != prev.last_pulled_generation;
    (new_annotation || spec_changed, annotation)
}

/// Imports or updates the app from git.
pub async fn pull(
    aps: &AppSync,
    ctx: &Context,
    gsc: &GitSyncConfig,
    prev: &AppSyncStatus,
) -> Result<Result<Outcome, Problem>, Error> {
    let spec = aps.spec.pull.clone().unwrap_or_default();
    let revision = spec
        .revision
        .clone()
        .unwrap_or_else(|| gsc.spec.repository.branch.clone());
    let max_age = parse_interval(&gsc.spec.interval).unwrap_or(Duration::from_secs(300));
    let conn = match connect(gsc, ctx).await? {
        Ok(c) => c,
        Err(p) => return Ok(Err(p)),
    };
    let (url, transport) = match repo_access(gsc, ctx).await? {
        Ok(a) => a,
        Err(p) => return Ok(Err(p)),
    };
    let worker = ctx.workers.get(&url);
    // A requested pull or a spec change reads the remote now; otherwise at most once per interval.
    let (requested, annotation) = pull_requested(aps, prev);
    let fresh = if requested { Duration::ZERO } else { max_age };

    let start = Instant::now();
    let snap = worker
        .snapshot(transport.clone(), &revision, Vec::new(), fresh)
        .await;
    ctx.metrics
        .git_op("snapshot", start.elapsed(), snap.is_ok());
    let snap = match snap {
        Ok(s) => s,
        Err(e) => return Ok(Err(worker_problem(&e))),
    };
    let lookup = match aps.spec.app.strip_prefix("id:") {
        Some(id) => AppLookup::ByGitAppId(id),
        None => AppLookup::ByName(&aps.spec.app),
    };
    let located = match layout::locate_app(snap.meta_json.as_deref(), lookup) {
        Ok(l) => l,
        Err(e) => {
            return Ok(Err(Problem::retrying(
                "AppNotInGit",
                format!("revision {revision}: {e}. Check spec.app and that the app was pushed to this revision; retried every interval"),
            )))
        }
    };
    let folder = located
        .path
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let snap = match worker
        .snapshot(
            transport.clone(),
            &revision,
            vec![folder.clone()],
            max_age.max(Duration::from_secs(1)),
        )
        .await
    {
        Ok(s) => s,
        Err(e) => return Ok(Err(worker_problem(&e))),
    };
    let Some(bytes) = snap.files.get(&located.path) else {
        return Ok(Err(Problem::retrying(
            "AppNotInGit",
            format!(
                "revision {revision}: .meta/meta.json lists {} at {}, but that file is missing",
                located.app_name, located.path
            ),
        )));
    };
    let export: serde_json::Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            return Ok(Err(Problem::stalled(
                "InvalidExport",
                format!(
                    "{} at revision {revision} is not valid JSON ({e}); fix the file in git",
                    located.path
                ),
            )))
        }
    };
    let git_status = Some(GitStatus {
        path: Some(located.path.clone()),
        git_app_id: Some(located.git_app_id.clone()),
        ..Default::default()
    });
    if let Some(expected) = &spec.expect_version {
        if expected != &located.version_name {
            return Ok(Err(Problem::stalled(
                "VersionMismatch",
                format!("git holds version {} of {} at revision {revision}, but spec.pull.expectVersion is {expected}; nothing was imported. Push the expected version, or change expectVersion", located.version_name, located.app_name),
            )));
        }
    }
    let touching = worker
        .last_commit_touching(
            transport.clone(),
            &revision,
            None,
            &folder,
            &located.git_app_id,
            max_age.max(Duration::from_secs(1)),
        )
        .await;
    let latest = match touching {
        Ok(Some(c)) => commit_info(&c),
        Ok(None) => match &snap.commit {
            Some(c) => commit_info(c),
            None => {
                return Ok(Err(Problem::retrying(
                    "AppNotInGit",
                    format!("revision {revision} has no commits"),
                )))
            }
        },
        Err(e) => return Ok(Err(worker_problem(&e))),
    };

    // Which app in the target is ours.
    let ours_id = prev.app.as_ref().and_then(|a| a.id.clone());
    let ours = match &ours_id {
        Some(id) => match conn
            .client
            .find_app(&conn.workspace, &format!("id:{id}"))
            .await
        {
            Ok(a) => a,
            Err(e) => return Ok(Err(problem_of(&e))),
        },
        None => None,
    };
    let same_name = match conn
        .client
        .find_app(&conn.workspace, &located.app_name)
        .await
    {
        Ok(a) => a,
        Err(e) => return Ok(Err(problem_of(&e))),
    };
    if let Some(other) = &same_name {
        if Some(&other.id) != ours.as_ref().map(|a| &a.id) {
            return Ok(Err(Problem::stalled(
                "NameConflict",
                format!("workspace {} already has an app named {:?} (id {}) that this AppSync did not create; it was left untouched. Rename or delete that app in ToolJet (or pull under another workspace), then the import proceeds", conn.workspace.name, located.app_name, other.id),
            )));
        }
    }

    let up_to_date =
        ours.is_some() && prev.last_commit.as_ref().map(|c| &c.sha) == Some(&latest.sha);
    let handled = requested.then(|| annotation.clone()).flatten();
    let mut outcome = Outcome {
        git: git_status,
        tracks_updates: true,
        handled_request: handled.clone(),
        handled_generation: requested,
        ..Default::default()
    };
    if up_to_date {
        outcome.app = prev.app.clone();
        outcome.reason = "UpToDate";
        outcome.message = format!(
            "{} in ToolJet is at commit {} of {revision}",
            located.app_name,
            &latest.sha[..latest.sha.len().min(12)]
        );
        outcome.missing_constants = missing_constants(ctx, &conn, &export).await;
        return Ok(Ok(outcome));
    }
    if ours.is_some() && spec.update_policy == UpdatePolicy::Manual && !requested {
        outcome.app = prev.app.clone();
        outcome.available_update = Some(latest.clone());
        outcome.reason = "UpdateAvailable";
        outcome.message = format!(
            "an update of {} is available at {revision} ({}); updatePolicy is Manual",
            located.app_name,
            &latest.sha[..latest.sha.len().min(12)]
        );
        return Ok(Ok(outcome));
    }

    let start = Instant::now();
    let result = match &ours {
        None => {
            conn.client
                .import_app(&conn.workspace, &export, &located.app_name)
                .await
        }
        Some(app) => {
            conn.client
                .replace_app(&conn.workspace, &app.id, &export)
                .await
        }
    };
    ctx.metrics.tooljet_call(
        if ours.is_some() {
            "replace_app"
        } else {
            "import_app"
        },
        start.elapsed(),
        result.is_ok(),
    );
    let app = match result {
        Ok(a) => a,
        Err(e) => {
            let mut p = problem_of(&e);
            p.message = format!(
                "pulling {} from {revision} failed; the workspace keeps the app it had. {}",
                located.app_name, p.message
            );
            return Ok(Err(p));
        }
    };
    ctx.metrics.pulled();
    let mut note = String::new();
    if !spec.allow_editing {
        if let Err(e) = conn
            .client
            .set_app_editable(&conn.workspace, &app.id, false)
            .await
        {
            note = format!(" (could not make it read-only: {e})");
        }
    }
    outcome.app = Some(AppStatus {
        id: Some(app.id.clone()),
        name: Some(app.name.clone()),
        version_id: Some(located.version_id.clone()),
        version_name: Some(located.version_name.clone()),
    });
    outcome.committed = Some(latest.clone());
    outcome.pulled = true;
    outcome.handled_generation = true;
    outcome.reason = "Pulled";
    outcome.message = format!(
        "{} {} version {} from commit {} of {revision}{note}",
        if ours.is_some() {
            "updated"
        } else {
            "imported"
        },
        app.name,
        located.version_name,
        &latest.sha[..latest.sha.len().min(12)]
    );
    outcome.missing_constants = missing_constants(ctx, &conn, &export).await;
    Ok(Ok(outcome))
}

async fn missing_constants(
    ctx: &Context,
    conn: &super::tooljet_check::Connection,
    export: &serde_json::Value,
) -> Vec<String> {
    let refs = layout::workspace_references(export);
    if refs.is_empty() {
        return Vec::new();
    }
    let start = Instant::now();
    let defined = conn.client.list_constants(&conn.workspace).await;
    ctx.metrics
        .tooljet_call("list_constants", start.elapsed(), defined.is_ok());
    let Ok(defined) = defined else {
        return Vec::new();
    };
    refs.into_iter()
        .filter(|r| {
            let (name, secret) = match r {
                layout::Ref::Constant(n) => (n, false),
                layout::Ref::Secret(n) => (n, true),
            };
            !defined.iter().any(|d| {
                d.name == *name && (d.kind == crate::tooljet::ConstantKind::Secret) == secret
            })
        })
        .map(|r| r.to_string())
        .collect()
}
