//! Carrying out a Pull's import or replace as a journaled sequence of ToolJet calls: the
//! journal is written to status before the first write and after every step, so the next
//! pass (after a crash, an eviction, a failed call) resumes it or rolls it back. The
//! decisions are in `journal`.

use super::super::config_ref::ResolvedConfig;
use super::super::{report, Context, Failure, Problem};
use super::journal::{self, SwapAction};
use crate::api::{Abandoned, AppSync, AppSyncStatus, Reason, SwapJournal, SwapStep};
use crate::tooljet::{AppSummary, Error as ToolJetError};

/// How long an abandoned temporary name is watched for an app ToolJet may still create.
const ABANDON_WATCH: std::time::Duration = std::time::Duration::from_secs(1800);
/// Steps one pass takes at most (a swap needs five; the rest is slack for retries).
const MAX_STEPS: usize = 12;

/// The journal and abandoned names as this pass leaves them; written with every checkpoint
/// and by the pass's final status.
#[derive(Clone, Debug, Default)]
pub struct Carry {
    /// The open journal.
    pub swap: Option<SwapJournal>,
    /// Temporary names to watch.
    pub abandoned: Vec<Abandoned>,
    /// Whether this pass wrote a journal (so a closed one must be removed from status).
    pub journaled: bool,
}

impl Carry {
    /// What the previous status carried.
    pub fn of(prev: &AppSyncStatus) -> Carry {
        Carry {
            swap: prev.swap.clone(),
            abandoned: prev.abandoned.clone(),
            journaled: prev.swap.is_some(),
        }
    }
}

/// What a swap needs besides its journal.
pub struct Swap<'a> {
    /// The operator.
    pub ctx: &'a Context,
    /// The AppSync (checkpoints are written to its status).
    pub aps: &'a AppSync,
    /// The status as read at the start of the pass; checkpoints write it with the journal.
    pub prev: &'a AppSyncStatus,
    /// The config.
    pub cfg: &'a ResolvedConfig,
    /// Leave the imported app editable.
    pub allow_editing: bool,
}

impl Swap<'_> {
    /// Writes the journal to status: the step is on record before the next call is made.
    pub async fn checkpoint(&self, carry: &Carry) -> Result<(), Failure> {
        let mut status = self.prev.clone();
        status.swap = carry.swap.clone();
        status.abandoned = carry.abandoned.clone();
        report::write(self.ctx, self.aps, &status, &[]).await?;
        Ok(())
    }

    /// Runs the open journal to its end: `Some(app)` when the new app is in place, `None`
    /// when the swap was rolled back. On an error the journal stays as far as it got.
    pub async fn drive(&self, carry: &mut Carry) -> Result<Option<AppSummary>, Failure> {
        let client = &self.cfg.tooljet.client;
        let ws = &self.cfg.tooljet.workspace;
        for _ in 0..MAX_STEPS {
            let Some(j) = carry.swap.clone() else {
                return Ok(None);
            };
            let apps = client
                .scoped_app_rows(ws, &journal::searches(&j), &journal::ids(&j))
                .await?;
            let action = journal::next(&j, &apps);
            tracing::info!(appsync = %super::super::key_of(self.aps), step = ?j.step, ?action, "swap step");
            match action {
                SwapAction::StartRollBack => {
                    if j.step == SwapStep::Importing {
                        abandon(carry, &j.temp_name);
                    }
                    set_step(carry, SwapStep::RollingBack);
                    self.checkpoint(carry).await?;
                }
                SwapAction::DeleteNew(id) | SwapAction::DeleteOld(id) => {
                    client.delete_app(ws, &id).await?
                }
                SwapAction::RestoreOld(id) => {
                    let slug = j.slug.clone().unwrap_or_else(|| current_slug(&apps, &id));
                    client.rename_app(ws, &id, &j.name, &slug).await?;
                }
                SwapAction::RolledBack => {
                    carry.swap = None;
                    return Ok(None);
                }
                SwapAction::Park(id) => {
                    client
                        .rename_app(ws, &id, &j.parked_name, &j.parked_slug)
                        .await?;
                    set_step(carry, SwapStep::Parked);
                    self.checkpoint(carry).await?;
                }
                SwapAction::Promote(id) => {
                    let slug = j.slug.clone().unwrap_or_else(|| current_slug(&apps, &id));
                    client.rename_app(ws, &id, &j.name, &slug).await?;
                    set_step(carry, SwapStep::Promoted);
                    // A replace records the step before deleting the old app. A first import
                    // has no further write but the final status: the next step is decided
                    // from the workspace alone (the new app carries the name), so a kill here
                    // resumes the same way without the extra write (hundreds, for a set).
                    if j.old_app_id.is_some() {
                        self.checkpoint(carry).await?;
                    }
                }
                SwapAction::Finish(app) => {
                    if !self.allow_editing {
                        if let Err(e) = client.set_app_editable(ws, &app.id, false).await {
                            tracing::info!(error = %e, "could not make the imported app read-only");
                        }
                    }
                    carry.swap = None;
                    return Ok(Some(app));
                }
            }
        }
        Err(Problem::retrying(
            Reason::SwapIncomplete,
            "the swap did not end within one pass; it is continued by the next",
        )
        .into())
    }

    /// Starts an import (`old`: the owned app to replace, keeping its name and slug): checks
    /// first, then the journal, then the import under a temporary name, then the swap.
    pub async fn start(
        &self,
        carry: &mut Carry,
        mut j: SwapJournal,
        export: &serde_json::Value,
        old: Option<&AppSummary>,
    ) -> Result<AppSummary, Failure> {
        let client = &self.cfg.tooljet.client;
        let ws = &self.cfg.tooljet.workspace;
        let can_rename = client
            .check_swap(ws, export, old.map(|o| o.id.as_str()))
            .await?;
        if !can_rename {
            // A token without the External API v2 cannot rename: import under the final name.
            j.temp_name = j.name.clone();
        }
        carry.swap = Some(j.clone());
        carry.journaled = true;
        self.checkpoint(carry).await?;
        match client.import_app(ws, export, &j.temp_name).await {
            Ok(app) => {
                j.new_app_id = Some(app.id.clone());
                j.step = SwapStep::Imported;
                carry.swap = Some(j);
                self.checkpoint(carry).await?;
            }
            Err(e) if crate::tooljet::import_refused(&e) => {
                carry.swap = None;
                return Err(e.into());
            }
            Err(e) => return Err(self.undo(carry, e).await),
        }
        match self.drive(carry).await {
            Ok(Some(app)) => Ok(app),
            Ok(None) => Err(Problem::retrying(Reason::SwapIncomplete, "the import was rolled back (an app took the name meanwhile, or the new app disappeared); retried").into()),
            Err(Failure::Problem(p)) => Err(self.undo_problem(carry, p).await),
            Err(infra) => Err(infra),
        }
    }

    /// After a failed step: roll back now, and say what failed and how the workspace is left.
    async fn undo(&self, carry: &mut Carry, cause: ToolJetError) -> Failure {
        self.undo_problem(carry, Problem::from(&cause)).await
    }

    async fn undo_problem(&self, carry: &mut Carry, cause: Problem) -> Failure {
        if let Some(j) = &carry.swap {
            if j.step == SwapStep::Importing {
                abandon(carry, &j.temp_name.clone());
            }
        }
        set_step(carry, SwapStep::RollingBack);
        if let Err(f) = self.checkpoint(carry).await {
            return f;
        }
        match self.drive(carry).await {
            Ok(_) => cause.context("rolled back; the workspace keeps the app it had. "),
            Err(Failure::Problem(p)) => Problem::retrying(
                Reason::SwapIncomplete,
                format!(
                    "{}; undoing it failed too ({}), retried from the journal in status.swap",
                    cause.message, p.message
                ),
            ),
            Err(infra) => return infra,
        }
        .into()
    }

    /// Deletes apps of abandoned temporary names that have appeared, and forgets names
    /// watched long enough.
    pub async fn sweep(&self, carry: &mut Carry) -> Result<(), Failure> {
        if carry.abandoned.is_empty() {
            return Ok(());
        }
        let client = &self.cfg.tooljet.client;
        let ws = &self.cfg.tooljet.workspace;
        let names: Vec<&str> = carry.abandoned.iter().map(|x| x.name.as_str()).collect();
        let apps = client.scoped_app_rows(ws, &names, &[]).await?;
        for a in apps
            .iter()
            .filter(|a| carry.abandoned.iter().any(|x| x.name == a.name))
        {
            if a.name.starts_with(journal::PREFIX) {
                client.delete_app(ws, &a.id).await?;
            }
        }
        let now = jiff::Timestamp::now();
        carry.abandoned.retain(|x| {
            x.since
                .parse::<jiff::Timestamp>()
                .is_ok_and(|t| now.duration_since(t).unsigned_abs() < ABANDON_WATCH)
        });
        Ok(())
    }
}

fn set_step(carry: &mut Carry, step: SwapStep) {
    if let Some(j) = carry.swap.as_mut() {
        j.step = step;
    }
}

fn abandon(carry: &mut Carry, name: &str) {
    if name.starts_with(journal::PREFIX) && !carry.abandoned.iter().any(|a| a.name == name) {
        carry.abandoned.push(Abandoned {
            name: name.to_string(),
            since: report::now_rfc3339(),
        });
    }
}

fn current_slug(apps: &[AppSummary], id: &str) -> String {
    apps.iter()
        .find(|a| a.id == id)
        .and_then(|a| a.slug.clone())
        .unwrap_or_else(|| id.to_string())
}
