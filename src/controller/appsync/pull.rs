//! Pull: observe (the app at the revision from the repository worker's mirror, and which apps
//! of the target workspace are ours or have its name) and apply (import, or replace keeping
//! name and slug, as a journaled swap: `swap`). The decisions are in `plan` and `journal`.

use std::time::{Duration, Instant};

use super::super::config_ref::ResolvedConfig;
use super::super::{report, short, Context, Failure, Problem};
use super::plan::{self, PullDecision, PullFacts};
use super::status::Outcome;
use super::swap::{Carry, Swap};
use crate::api::{
    AppStatus, AppSync, AppSyncStatus, CommitInfo, Direction, GitStatus, Ownership, Reason,
    SwapJournal,
};
use crate::layout::{self, Located};
use crate::tooljet::AppSummary;

/// Message of a suspended AppSync.
pub const SUSPENDED: &str = "spec.suspend is true: nothing is written to git or ToolJet";

/// The app as git holds it at the revision.
struct GitApp {
    located: Located,
    export: serde_json::Value,
    latest: CommitInfo,
}

/// One Pull pass: an open journal first (resumed or rolled back), then the usual look at git.
pub async fn pull(
    aps: &AppSync,
    ctx: &Context,
    cfg: &ResolvedConfig,
    prev: &AppSyncStatus,
    carry: &mut Carry,
) -> Result<Outcome, Failure> {
    let spec = aps.spec.pull.clone().unwrap_or_default();
    let swap = Swap {
        ctx,
        aps,
        prev,
        cfg,
        allow_editing: spec.allow_editing,
    };
    swap.sweep(carry).await?;
    if let Some(j) = carry.swap.clone() {
        if let Some(app) = swap.drive(carry).await? {
            return Ok(finished(
                &j,
                &app,
                ctx,
                Vec::new(),
                "finished the interrupted",
            ));
        }
    }
    // Suspended: the open swap (if any) is closed; nothing new is started.
    if aps.spec.suspend {
        return Err(Problem::retrying(Reason::Suspended, SUSPENDED).into());
    }
    let revision = spec
        .revision
        .clone()
        .unwrap_or_else(|| cfg.branch().to_string());
    // A move of the revision (seen by a fetch, or pushed by this operator) re-runs this pass.
    ctx.follows.follow(
        super::super::follow::Follower::AppSync,
        &super::super::key_of(aps),
        &cfg.url().identity(),
        &revision,
    );
    let (requested, annotation) = plan::pull_requested(aps, prev);
    let fresh = plan::git_freshness(aps, prev, cfg.valid.interval);
    let git = observe_git(aps, ctx, cfg, &revision, fresh).await?;
    plan::check_expected_version(spec.expect_version.as_deref(), &git.located, &revision)?;
    let (adopt, adopt_value) = plan::adopt_requested(aps, prev);
    plan::check_git_app(prev, &git.located, adopt)?;

    let declared: Vec<&str> = cfg
        .gsc
        .spec
        .tooljet
        .data_sources
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    let uncredentialed = plan::uncredentialed_data_sources(&git.export, &declared);
    let conn = &cfg.tooljet;
    let ours = match plan::owned_pull_app(prev) {
        Some(id) => {
            conn.client
                .find_app(&conn.workspace, &format!("id:{id}"))
                .await?
        }
        None => None,
    };
    // The app we own usually has the name: no second lookup then.
    let same_name = match ours.as_ref() {
        Some(o) if o.name == git.located.app_name => ours.clone(),
        _ => {
            conn.client
                .find_app(&conn.workspace, &git.located.app_name)
                .await?
        }
    };
    let decision = plan::plan_pull(&PullFacts {
        ours: ours.as_ref(),
        same_name: same_name.as_ref(),
        latest: &git.latest,
        last_pulled: prev.last_commit.as_ref(),
        policy: spec.update_policy,
        requested: requested || adopt,
    });
    let outcome = Outcome {
        git: Some(GitStatus {
            path: Some(git.located.path.clone()),
            git_app_id: Some(git.located.git_app_id.clone()),
            ..Default::default()
        }),
        tracks_updates: true,
        handled_request: requested.then(|| annotation.clone()).flatten(),
        handled_adopt: adopt.then_some(adopt_value).flatten(),
        handled_generation: requested,
        owned: plan::pull_ownership(prev, &git.located, ours.as_ref()),
        uncredentialed: Some(uncredentialed),
        ..Outcome::new(Reason::UpToDate, "")
    };
    let pass = Pass {
        swap: &swap,
        git: &git,
        revision: &revision,
        ours: ours.as_ref(),
        require_constants: spec.require_constants,
    };
    pass.act(decision, outcome, carry).await
}

/// What a Pull pass decided on, for carrying it out.
struct Pass<'a> {
    swap: &'a Swap<'a>,
    git: &'a GitApp,
    revision: &'a str,
    ours: Option<&'a AppSummary>,
    require_constants: bool,
}

impl Pass<'_> {
    /// Carries out the decision: refuse, report, or import through the journaled swap.
    async fn act(
        &self,
        decision: PullDecision,
        mut outcome: Outcome,
        carry: &mut Carry,
    ) -> Result<Outcome, Failure> {
        let (ctx, cfg, git, revision) = (self.swap.ctx, self.swap.cfg, self.git, self.revision);
        let prev = self.swap.prev;
        let name = &git.located.app_name;
        match decision {
            PullDecision::NameConflict { other_id } => Err(Problem::stalled(
                Reason::NameConflict,
                format!("workspace {} already has an app named {name:?} (id {other_id}) that this AppSync did not create; it was left untouched. Rename or delete that app in ToolJet (or pull under another workspace), then the import proceeds", cfg.tooljet.workspace.name),
            ).into()),
            PullDecision::UpToDate => {
                outcome.app = prev.app.clone();
                outcome.message = format!("{name} in ToolJet is at commit {} of {revision}", short(&git.latest.sha));
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
            PullDecision::Import | PullDecision::Replace { .. } => {
                // Preflight: what the app references that nobody will define.
                let missing = missing_constants(ctx, cfg, &git.export).await;
                if self.require_constants && !missing.is_empty() {
                    return Err(Problem::retrying(
                        Reason::WorkspaceConstantsMissing,
                        format!("{name} references {}, which workspace {} does not define and spec.tooljet.constants of the GitSyncConfig does not declare; the import is held (spec.pull.requireConstants) until they exist: create them in ToolJet or declare them", missing.join(", "), cfg.tooljet.workspace.name),
                    ).into());
                }
                let j = plan::new_journal(&git.located, &git.latest, self.ours, &report::now_rfc3339());
                let app = self.swap.start(carry, j.clone(), &git.export, self.ours).await.map_err(|f| match f {
                    Failure::Problem(p) => Failure::Problem(p.context(format!("pulling {name} from {revision} failed: "))),
                    infra => infra,
                })?;
                let verb = if self.ours.is_some() { "updated" } else { "imported" };
                let done = finished(&j, &app, ctx, missing, verb);
                // The import may have made data sources whose credentials the config keeps.
                if !cfg.gsc.spec.tooljet.data_sources.is_empty() {
                    ctx.config_wakeups.wake(&cfg.gsc);
                }
                Ok(Outcome {
                    git: outcome.git,
                    handled_request: outcome.handled_request,
                    handled_adopt: outcome.handled_adopt,
                    uncredentialed: outcome.uncredentialed,
                    ..done
                })
            }
        }
    }
}

/// The outcome of a swap that put `app` in place; `missing`: what the preflight found the
/// app references and the workspace lacks (an import creates no constants).
fn finished(
    j: &SwapJournal,
    app: &AppSummary,
    ctx: &Context,
    missing: Vec<String>,
    verb: &str,
) -> Outcome {
    ctx.metrics.pulled();
    let what = if verb.starts_with("finished") {
        format!("{verb} import of")
    } else {
        verb.to_string()
    };
    Outcome {
        app: Some(AppStatus {
            id: Some(app.id.clone()),
            name: Some(j.name.clone()),
            version_id: Some(j.version_id.clone()),
            version_name: Some(j.version_name.clone()),
        }),
        committed: Some(j.commit.clone()),
        pulled: true,
        handled_generation: true,
        tracks_updates: true,
        missing_constants: missing,
        owned: Some(Ownership {
            direction: Some(Direction::Pull),
            app_id: Some(app.id.clone()),
            git_app_id: Some(j.git_app_id.clone()),
        }),
        ..Outcome::new(
            Reason::Pulled,
            format!(
                "{what} {} version {} from commit {}",
                j.name,
                j.version_name,
                short(&j.commit.sha)
            ),
        )
    }
}

/// Reads the app at the revision: `.meta/meta.json`, its version file and the newest commit
/// touching it, all at one commit and in one request to the repository worker. A requested
/// pull reads the remote now; otherwise at most once per interval.
async fn observe_git(
    aps: &AppSync,
    ctx: &Context,
    cfg: &ResolvedConfig,
    revision: &str,
    fresh: Duration,
) -> Result<GitApp, Failure> {
    let worker = ctx.workers.get(cfg.url());
    let start = Instant::now();
    let at = worker
        .app_at(cfg.transport.clone(), revision, &aps.spec.app, fresh)
        .await;
    ctx.metrics.git_op("snapshot", start.elapsed(), at.is_ok());
    let at = at?;
    let located = at.located.map_err(|e| {
        Problem::retrying(Reason::AppNotInGit, format!("revision {revision}: {e}. Check spec.app and that the app was pushed to this revision; retried every interval"))
    })?;
    let export = plan::read_export(&at.files, &located, revision)?;
    // The commit the app was read at, never the revision read again: the branch may move in
    // between, and an export of one commit recorded as another would leave the newer one
    // never imported.
    let latest = match at.touching.as_ref().or(at.commit.as_ref()) {
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
        Ok(mut defined) => {
            defined.extend(plan::declared_constants(&cfg.gsc));
            plan::missing_constants(refs, &defined)
        }
        Err(_) => Vec::new(),
    }
}
