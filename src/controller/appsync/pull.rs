//! Pull: observe (the app at the revision from the repository worker's mirror, and which apps
//! of the target workspace are ours or have its name) and apply (import, or replace keeping
//! name and slug through the ToolJet client's safe sequence). The decisions are in `plan`.

use std::time::{Duration, Instant};

use super::super::config_ref::ResolvedConfig;
use super::super::{short, Context, Failure, Problem};
use super::plan::{self, PullDecision, PullFacts};
use super::status::Outcome;
use crate::api::{AppStatus, AppSync, AppSyncStatus, CommitInfo, GitStatus, Reason};
use crate::layout::{self, AppLookup, Located};
use crate::tooljet::AppSummary;

/// The app as git holds it at the revision.
struct GitApp {
    located: Located,
    export: serde_json::Value,
    latest: CommitInfo,
}

/// One Pull pass.
pub async fn pull(
    aps: &AppSync,
    ctx: &Context,
    cfg: &ResolvedConfig,
    prev: &AppSyncStatus,
) -> Result<Outcome, Failure> {
    let spec = aps.spec.pull.clone().unwrap_or_default();
    let revision = spec
        .revision
        .clone()
        .unwrap_or_else(|| cfg.branch().to_string());
    let (requested, annotation) = plan::pull_requested(aps, prev);
    let git = observe_git(aps, ctx, cfg, &revision, requested).await?;
    plan::check_expected_version(spec.expect_version.as_deref(), &git.located, &revision)?;

    let conn = &cfg.tooljet;
    let ours = match prev.app.as_ref().and_then(|a| a.id.as_deref()) {
        Some(id) => {
            conn.client
                .find_app(&conn.workspace, &format!("id:{id}"))
                .await?
        }
        None => None,
    };
    let same_name = conn
        .client
        .find_app(&conn.workspace, &git.located.app_name)
        .await?;
    let decision = plan::plan_pull(&PullFacts {
        ours: ours.as_ref(),
        same_name: same_name.as_ref(),
        latest: &git.latest,
        last_pulled: prev.last_commit.as_ref(),
        policy: spec.update_policy,
        requested,
    });
    let mut outcome = Outcome {
        git: Some(GitStatus {
            path: Some(git.located.path.clone()),
            git_app_id: Some(git.located.git_app_id.clone()),
            ..Default::default()
        }),
        tracks_updates: true,
        handled_request: requested.then(|| annotation.clone()).flatten(),
        handled_generation: requested,
        ..Outcome::new(Reason::UpToDate, "")
    };
    let name = &git.located.app_name;
    let at = format!("{} of {revision}", short(&git.latest.sha));
    match decision {
        PullDecision::NameConflict { other_id } => Err(Problem::stalled(
            Reason::NameConflict,
            format!("workspace {} already has an app named {name:?} (id {other_id}) that this AppSync did not create; it was left untouched. Rename or delete that app in ToolJet (or pull under another workspace), then the import proceeds", conn.workspace.name),
        ).into()),
        PullDecision::UpToDate => {
            outcome.app = prev.app.clone();
            outcome.message = format!("{name} in ToolJet is at commit {at}");
            outcome.missing_constants = missing_constants(ctx, cfg, &git.export).await;
            Ok(outcome)
        }
        PullDecision::ReportUpdate => {
            outcome.app = prev.app.clone();
            outcome.available_update = Some(git.latest.clone());
            outcome.reason = Reason::UpdateAvailable;
            outcome.message = format!("an update of {name} is available at {revision} ({}); updatePolicy is Manual", short(&git.latest.sha));
            Ok(outcome)
        }
        PullDecision::Import => import(ctx, cfg, &git, None, spec.allow_editing, &revision, outcome).await,
        PullDecision::Replace { id } => import(ctx, cfg, &git, Some(&id), spec.allow_editing, &revision, outcome).await,
    }
}

/// Reads the app at the revision: `.meta/meta.json`, its version file and the newest commit
/// touching it. A requested pull reads the remote now; otherwise at most once per interval.
async fn observe_git(
    aps: &AppSync,
    ctx: &Context,
    cfg: &ResolvedConfig,
    revision: &str,
    requested: bool,
) -> Result<GitApp, Failure> {
    let max_age = cfg.valid.interval;
    let fresh = if requested { Duration::ZERO } else { max_age };
    let worker = ctx.workers.get(cfg.url());
    let start = Instant::now();
    let snap = worker
        .snapshot(cfg.transport.clone(), revision, Vec::new(), fresh)
        .await;
    ctx.metrics
        .git_op("snapshot", start.elapsed(), snap.is_ok());
    let lookup = match aps.spec.app.strip_prefix("id:") {
        Some(id) => AppLookup::ByGitAppId(id),
        None => AppLookup::ByName(&aps.spec.app),
    };
    let located = layout::locate_app(snap?.meta_json.as_deref(), lookup).map_err(|e| {
        Problem::retrying(Reason::AppNotInGit, format!("revision {revision}: {e}. Check spec.app and that the app was pushed to this revision; retried every interval"))
    })?;
    let folder = located
        .path
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let recent = max_age.max(Duration::from_secs(1));
    let snap = worker
        .snapshot(
            cfg.transport.clone(),
            revision,
            vec![folder.clone()],
            recent,
        )
        .await?;
    let export = plan::read_export(&snap.files, &located, revision)?;
    let touching = worker
        .last_commit_touching(
            cfg.transport.clone(),
            revision,
            None,
            &folder,
            &located.git_app_id,
            recent,
        )
        .await?;
    let latest = match touching.as_ref().or(snap.commit.as_ref()) {
        Some(c) => plan::commit_info(c),
        None => {
            return Err(Problem::retrying(
                Reason::AppNotInGit,
                format!("revision {revision} has no commits"),
            )
            .into())
        }
    };
    Ok(GitApp {
        located,
        export,
        latest,
    })
}

/// Imports the app (`replace`: our app of that id, replaced keeping its name and slug), makes
/// it read-only unless allowed, and reports the missing constants.
async fn import(
    ctx: &Context,
    cfg: &ResolvedConfig,
    git: &GitApp,
    replace: Option<&str>,
    allow_editing: bool,
    revision: &str,
    mut outcome: Outcome,
) -> Result<Outcome, Failure> {
    let conn = &cfg.tooljet;
    let start = Instant::now();
    let result = match replace {
        None => {
            conn.client
                .import_app(&conn.workspace, &git.export, &git.located.app_name)
                .await
        }
        Some(id) => {
            conn.client
                .replace_app(&conn.workspace, id, &git.export)
                .await
        }
    };
    let op = if replace.is_some() {
        "replace_app"
    } else {
        "import_app"
    };
    ctx.metrics
        .tooljet_call(op, start.elapsed(), result.is_ok());
    let app: AppSummary = result.map_err(|e| {
        Problem::from(&e).context(format!(
            "pulling {} from {revision} failed; the workspace keeps the app it had. ",
            git.located.app_name
        ))
    })?;
    ctx.metrics.pulled();
    let mut note = String::new();
    if !allow_editing {
        if let Err(e) = conn
            .client
            .set_app_editable(&conn.workspace, &app.id, false)
            .await
        {
            note = format!(" (could not make it read-only: {e})");
        }
    }
    let verb = if replace.is_some() {
        "updated"
    } else {
        "imported"
    };
    outcome.message = format!(
        "{verb} {} version {} from commit {} of {revision}{note}",
        app.name,
        git.located.version_name,
        short(&git.latest.sha)
    );
    outcome.app = Some(AppStatus {
        id: Some(app.id.clone()),
        name: Some(app.name.clone()),
        version_id: Some(git.located.version_id.clone()),
        version_name: Some(git.located.version_name.clone()),
    });
    outcome.committed = Some(git.latest.clone());
    outcome.pulled = true;
    outcome.handled_generation = true;
    outcome.reason = Reason::Pulled;
    outcome.missing_constants = missing_constants(ctx, cfg, &git.export).await;
    Ok(outcome)
}

/// The constants and secrets the app references that the target workspace lacks; none when
/// they cannot be listed (a warning condition is not worth failing the pull for).
async fn missing_constants(
    ctx: &Context,
    cfg: &ResolvedConfig,
    export: &serde_json::Value,
) -> Vec<String> {
    let refs = layout::workspace_references(export);
    if refs.is_empty() {
        return Vec::new();
    }
    let start = Instant::now();
    let defined = cfg
        .tooljet
        .client
        .list_constants(&cfg.tooljet.workspace)
        .await;
    ctx.metrics
        .tooljet_call("list_constants", start.elapsed(), defined.is_ok());
    match defined {
        Ok(defined) => plan::missing_constants(refs, &defined),
        Err(_) => Vec::new(),
    }
}
