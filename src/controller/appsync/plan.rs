//! Step 4 of an AppSync pass: every decision, without IO, from (validated spec, what was
//! observed, previous status). The push and pull modules gather the observations and carry
//! the decisions out.

use super::super::{short, Problem};
use super::status::Outcome;
use crate::api::{
    AppStatus, AppSync, AppSyncStatus, CommitInfo, Direction, GitStatus, Ownership, Reason,
    SwapJournal, SwapStep, UpdatePolicy,
};
use crate::git::worker::{self, PushResult};
use crate::layout::{self, ExportedApp, Located, Refusal};
use crate::tooljet::{AppSummary, ConstantKind, WorkspaceConstant};
use std::time::Duration;

// ---------------------------------------------------------------- Push

/// The app a Push AppSync means in a listing: `id:<uuid>` by id; a name by name, else as an
/// id, else the id it last synced (the app was renamed).
pub fn pick_app<'a>(
    apps: &'a [AppSummary],
    ident: &str,
    previous_id: Option<&str>,
) -> Option<&'a AppSummary> {
    let by_id = |id: &str| apps.iter().find(|a| a.id.eq_ignore_ascii_case(id));
    match ident.strip_prefix("id:") {
        Some(id) => by_id(id),
        None => apps
            .iter()
            .find(|a| a.name == ident)
            .or_else(|| by_id(ident))
            .or_else(|| previous_id.and_then(by_id)),
    }
}

/// The refusal when the app is not in the workspace: nothing in git is deleted.
pub fn app_not_found(spec_app: &str, workspace: &str, prev: &AppSyncStatus) -> Problem {
    let kept = prev
        .git
        .as_ref()
        .and_then(|g| g.path.as_deref())
        .map(|p| format!("; nothing in git was deleted ({p} is kept)"))
        .unwrap_or_default();
    Problem::stalled(
        Reason::AppNotFound,
        format!("no app {spec_app:?} in ToolJet workspace {workspace}{kept}. If it was deleted, delete this AppSync (git keeps the app); otherwise fix spec.app (a name, or id:<uuid>)"),
    )
}

/// Identifies what a push verified in git: app, name, version and normalized content.
pub fn synced_digest(
    app_id: &str,
    name: &str,
    exported: &ExportedApp,
    export: &serde_json::Value,
) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [
        app_id,
        name,
        &exported.version_id,
        &exported.version_name,
        &layout::content_digest(export),
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What git was verified to hold at the last push, when the export is still the same.
pub fn still_synced<'a>(prev: &'a AppSyncStatus, digest: &str) -> Option<&'a GitStatus> {
    prev.git
        .as_ref()
        .filter(|g| g.synced_digest.as_deref() == Some(digest))
}

/// The app's top-level folder in a verified git status.
pub fn folder_of(g: &GitStatus) -> Option<&str> {
    g.path
        .as_deref()
        .and_then(|p| p.split('/').next())
        .filter(|f| !f.is_empty())
}

/// What the remote said about the branch since the last verified push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeadView {
    /// The head could not be read, or nothing was verified before.
    Unknown,
    /// The head is the verified one.
    Same(String),
    /// The head moved; `untouched` when no commit since touched the app's folder or meta entry.
    Moved {
        /// The new head.
        head: String,
        /// Whether the app is unaffected by the new commits.
        untouched: bool,
    },
}

/// Push decision.
#[derive(Clone, Debug, PartialEq)]
pub enum PushDecision {
    /// Git holds the export already: no worker call.
    UpToDate(Box<Outcome>),
    /// Hand the export to the repository worker (which still finds "no change" itself).
    Commit,
}

/// Facts of the exported app for messages and status.
pub struct PushFacts<'a> {
    /// The app in ToolJet.
    pub app: &'a AppSummary,
    /// What the export says.
    pub exported: &'a ExportedApp,
    /// The branch.
    pub branch: &'a str,
    /// [`synced_digest`] of the export.
    pub digest: &'a str,
}

impl PushFacts<'_> {
    fn app_status(&self) -> AppStatus {
        AppStatus {
            id: Some(self.app.id.clone()),
            name: Some(self.app.name.clone()),
            version_id: Some(self.exported.version_id.clone()),
            version_name: Some(self.exported.version_name.clone()),
        }
    }

    fn git_status(&self, path: &str, head: Option<String>) -> GitStatus {
        GitStatus {
            path: Some(path.to_string()),
            git_app_id: Some(self.app.id.clone()),
            synced_digest: head.is_some().then(|| self.digest.to_string()),
            head,
        }
    }

    fn up_to_date(&self, path: &str, head: Option<String>) -> Outcome {
        let at = head
            .as_deref()
            .map(|h| format!(" (head {})", short(h)))
            .unwrap_or_default();
        Outcome {
            app: Some(self.app_status()),
            git: Some(self.git_status(path, head.clone())),
            ..Outcome::new(
                Reason::UpToDate,
                format!(
                    "git holds {} version {} at {path} on {}{at}",
                    self.app.name, self.exported.version_name, self.branch
                ),
            )
        }
    }
}

/// Decides whether the worker is needed. Pure.
pub fn plan_push(facts: &PushFacts, known: Option<&GitStatus>, view: &HeadView) -> PushDecision {
    let Some(known) = known else {
        return PushDecision::Commit;
    };
    let head = match view {
        HeadView::Same(h)
        | HeadView::Moved {
            head: h,
            untouched: true,
        } => h,
        HeadView::Moved {
            untouched: false, ..
        }
        | HeadView::Unknown => return PushDecision::Commit,
    };
    let mut outcome = facts.up_to_date(
        known.path.as_deref().unwrap_or_default(),
        Some(head.clone()),
    );
    // Keep what was verified (its digest), at the new head.
    outcome.git = Some(GitStatus {
        head: Some(head.clone()),
        ..known.clone()
    });
    PushDecision::UpToDate(Box::new(outcome))
}

/// Two Push AppSyncs exporting one app at different versions would commit in turn forever:
/// each is refused until one goes or they agree. Pure.
pub fn check_push_conflict(
    app: &str,
    version: &str,
    branch: &str,
    others: &[(String, String)],
) -> Result<(), Problem> {
    if others.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = others
        .iter()
        .map(|(k, v)| format!("{k} (version {v})"))
        .collect();
    Err(Problem::stalled(
        Reason::PushConflict,
        format!("this AppSync pushes {app} version {version} to branch {branch}, and so does {}: they would overwrite each other in turn, so neither writes. Delete all but one, or give them the same spec.push.version", list.join(", ")),
    ))
}

/// The problem of a push the planner refused.
pub fn refusal_problem(r: &Refusal) -> Problem {
    let reason = match r {
        Refusal::Name(_) => Reason::AppNameRefused,
        Refusal::FolderClaimed { .. } | Refusal::FolderExists { .. } => Reason::FolderCollision,
        _ => Reason::PushRefused,
    };
    Problem::stalled(reason, format!("nothing was written to git: {r}"))
}

/// What the worker's answer means for the AppSync. Pure.
pub fn push_outcome(facts: &PushFacts, result: PushResult) -> Result<Outcome, Problem> {
    match result {
        PushResult::NoChange { app_path, head } => Ok(facts.up_to_date(&app_path, head)),
        PushResult::Committed {
            commit,
            app_path,
            kind,
        } => Ok(Outcome {
            app: Some(facts.app_status()),
            git: Some(facts.git_status(&app_path, Some(commit.sha.clone()))),
            committed: Some(commit_info(&commit)),
            ..Outcome::new(
                Reason::Committed,
                format!(
                    "pushed {kind:?} of {} version {} to {app_path} on {} as {}",
                    facts.app.name,
                    facts.exported.version_name,
                    facts.branch,
                    short(&commit.sha)
                ),
            )
        }),
        PushResult::Refused(r) => Err(refusal_problem(&r)),
    }
}

/// Longest commit message kept in status (git's are anyone's text).
pub const MAX_COMMIT_MESSAGE: usize = 2048;
/// Longest author name kept in status.
pub const MAX_AUTHOR: usize = 256;

/// A worker commit as status shows it, its free text bounded.
pub fn commit_info(c: &worker::CommitInfo) -> CommitInfo {
    use crate::api::bounded;
    CommitInfo {
        sha: bounded(c.sha.clone(), 64),
        message: bounded(c.message.clone(), MAX_COMMIT_MESSAGE),
        author: bounded(c.author.clone(), MAX_AUTHOR),
        date: Some(bounded(c.date.clone(), 64)),
    }
}

// ---------------------------------------------------------------- Ownership

/// The direction this AppSync has synced in: recorded, or (status written before ownership
/// was recorded) told by what the status holds. Pure.
pub fn owned_direction(prev: &AppSyncStatus) -> Option<Direction> {
    if let Some(d) = prev.owned.as_ref().and_then(|o| o.direction) {
        return Some(d);
    }
    if prev.last_pulled_generation.is_some() && prev.app.is_some() {
        return Some(Direction::Pull);
    }
    prev.git
        .as_ref()
        .and_then(|g| g.synced_digest.as_ref())
        .map(|_| Direction::Push)
}

/// `spec.direction` cannot change once the AppSync has synced: a Push AppSync turned Pull
/// would replace the developer's source app from git. Pure.
pub fn check_direction(prev: &AppSyncStatus, spec: Direction) -> Result<(), Problem> {
    match owned_direction(prev) {
        Some(owned) if owned != spec => Err(Problem::stalled(
            Reason::DirectionChanged,
            format!("spec.direction is {spec:?}, but this AppSync has synced as {owned:?}; the direction cannot change (a Push AppSync turned Pull would replace the source app from git). Set it back to {owned:?} and create a new AppSync for {spec:?}"),
        )),
        _ => Ok(()),
    }
}

/// The ToolJet app a Pull AppSync imported itself, if any. Pure.
pub fn owned_pull_app(prev: &AppSyncStatus) -> Option<&str> {
    match prev.owned.as_ref() {
        Some(o) if o.direction == Some(Direction::Pull) => o.app_id.as_deref(),
        Some(_) => None,
        None if owned_direction(prev) == Some(Direction::Pull) => {
            prev.app.as_ref().and_then(|a| a.id.as_deref())
        }
        None => None,
    }
}

/// Whether the user asked to adopt a different git app (a new `gitsync.tooljet.io/adopt`
/// value), and the value. Pure.
pub fn adopt_requested(aps: &AppSync, prev: &AppSyncStatus) -> (bool, Option<String>) {
    let value = aps
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::api::ADOPT_ANNOTATION))
        .cloned();
    (value.is_some() && value != prev.last_handled_adopt, value)
}

/// A Pull replaces only what it imported: a different git app behind the name (or after a
/// change of `spec.app`) needs explicit adoption. Pure.
pub fn check_git_app(prev: &AppSyncStatus, located: &Located, adopt: bool) -> Result<(), Problem> {
    let owned = prev
        .owned
        .as_ref()
        .filter(|o| o.direction == Some(Direction::Pull))
        .and_then(|o| o.git_app_id.as_deref())
        .or_else(|| {
            (owned_direction(prev) == Some(Direction::Pull))
                .then(|| prev.git.as_ref().and_then(|g| g.git_app_id.as_deref()))
                .flatten()
        });
    match owned {
        Some(id) if !id.eq_ignore_ascii_case(&located.git_app_id) && !adopt => Err(Problem::stalled(
            Reason::GitAppChanged,
            format!("git now has a different app {:?} (git app id {}) where this AppSync imported git app {id}; the app it owns was left untouched. If the new one should replace it, annotate: kubectl annotate appsync <name> {}=$(date +%s) --overwrite; otherwise fix spec.app", located.app_name, located.git_app_id, crate::api::ADOPT_ANNOTATION),
        )),
        _ => Ok(()),
    }
}

/// What a Pull owns after a pass that did not import: unchanged, or first recorded. Pure.
pub fn pull_ownership(
    prev: &AppSyncStatus,
    located: &Located,
    ours: Option<&AppSummary>,
) -> Option<Ownership> {
    let ours = ours?;
    Some(Ownership {
        direction: Some(Direction::Pull),
        app_id: Some(ours.id.clone()),
        git_app_id: prev
            .owned
            .as_ref()
            .and_then(|o| o.git_app_id.clone())
            .or_else(|| Some(located.git_app_id.clone())),
    })
}

/// A fresh journal for importing `located` at `commit` (`old`: the owned app it replaces).
pub fn new_journal(
    located: &Located,
    commit: &CommitInfo,
    old: Option<&AppSummary>,
    now: &str,
) -> SwapJournal {
    let (temp_name, parked_name, parked_slug) = super::journal::random_names();
    SwapJournal {
        step: SwapStep::Importing,
        commit: commit.clone(),
        name: old.map_or_else(|| located.app_name.clone(), |o| o.name.clone()),
        slug: old.map(|o| o.slug.clone().unwrap_or_else(|| o.id.clone())),
        old_app_id: old.map(|o| o.id.clone()),
        new_app_id: None,
        temp_name,
        parked_name,
        parked_slug,
        git_app_id: located.git_app_id.clone(),
        version_name: located.version_name.clone(),
        version_id: located.version_id.clone(),
        started_at: now.to_string(),
    }
}

// ---------------------------------------------------------------- Pull

/// Whether the user asked for a pull in this pass: a new pull-requested-at value, or a spec
/// change (e.g. a new revision); and the annotation's value. Pure.
pub fn pull_requested(aps: &AppSync, prev: &AppSyncStatus) -> (bool, Option<String>) {
    let annotation = aps
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::api::PULL_REQUESTED_ANNOTATION))
        .cloned();
    let new_annotation = annotation.is_some() && annotation != prev.last_handled_pull_requested_at;
    let spec_changed = aps.metadata.generation != prev.last_pulled_generation;
    (new_annotation || spec_changed, annotation)
}

/// How recent a fetch must be for this pass to read git from the mirror. A new
/// pull-requested-at annotation ("pull now", typically right after a push) reads the remote
/// now; a spec change (a new revision, or a new AppSync: hundreds at once when a set is
/// created) accepts a fetch of the last [`SPEC_CHANGE_FRESHNESS`], so they share one; other
/// passes accept one of the interval (the ref moves the operator sees re-run them). Pure.
pub fn git_freshness(aps: &AppSync, prev: &AppSyncStatus, interval: Duration) -> Duration {
    let (requested, annotation) = pull_requested(aps, prev);
    let new_annotation = annotation.is_some() && annotation != prev.last_handled_pull_requested_at;
    if new_annotation {
        Duration::ZERO
    } else if requested {
        SPEC_CHANGE_FRESHNESS.min(interval)
    } else {
        interval
    }
}

/// The oldest fetch a pass after a spec change reads from.
pub const SPEC_CHANGE_FRESHNESS: Duration = Duration::from_secs(5);

/// The promotion guard: the version in git must be the expected one. Pure.
pub fn check_expected_version(
    expect: Option<&str>,
    located: &Located,
    revision: &str,
) -> Result<(), Problem> {
    match expect {
        Some(expected) if expected != located.version_name => Err(Problem::stalled(
            Reason::VersionMismatch,
            format!("git holds version {} of {} at revision {revision}, but spec.pull.expectVersion is {expected}; nothing was imported. Push the expected version, or change expectVersion", located.version_name, located.app_name),
        )),
        _ => Ok(()),
    }
}

/// The app's export from the files read at the revision. Pure.
pub fn read_export(
    files: &std::collections::BTreeMap<String, Vec<u8>>,
    located: &Located,
    revision: &str,
) -> Result<serde_json::Value, Problem> {
    let Some(bytes) = files.get(&located.path) else {
        return Err(Problem::retrying(
            Reason::AppNotInGit,
            format!(
                "revision {revision}: .meta/meta.json lists {} at {}, but that file is missing",
                located.app_name, located.path
            ),
        ));
    };
    serde_json::from_slice(bytes).map_err(|e| {
        Problem::stalled(
            Reason::InvalidExport,
            format!(
                "{} at revision {revision} is not valid JSON ({e}); fix the file in git",
                located.path
            ),
        )
    })
}

/// What a Pull pass observed, for [`plan_pull`].
pub struct PullFacts<'a> {
    /// The app this AppSync imported, still in the workspace (by its recorded id).
    pub ours: Option<&'a AppSummary>,
    /// The app in the workspace with the git app's name.
    pub same_name: Option<&'a AppSummary>,
    /// The newest commit of the revision that touches the app.
    pub latest: &'a CommitInfo,
    /// The commit last imported.
    pub last_pulled: Option<&'a CommitInfo>,
    /// `spec.pull.updatePolicy`.
    pub policy: UpdatePolicy,
    /// The user asked for a pull in this pass.
    pub requested: bool,
}

/// Pull decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullDecision {
    /// Another app has the name: left untouched.
    NameConflict {
        /// Its id.
        other_id: String,
    },
    /// The target runs the newest commit touching the app.
    UpToDate,
    /// Manual policy, not asked: report the newer commit.
    ReportUpdate,
    /// No app of ours yet: import.
    Import,
    /// Replace our app, keeping its name and slug.
    Replace {
        /// The id of our app.
        id: String,
    },
}

/// Decides what a Pull does. Pure.
pub fn plan_pull(f: &PullFacts) -> PullDecision {
    if let Some(other) = f.same_name {
        if Some(&other.id) != f.ours.map(|a| &a.id) {
            return PullDecision::NameConflict {
                other_id: other.id.clone(),
            };
        }
    }
    let Some(ours) = f.ours else {
        return PullDecision::Import;
    };
    if f.last_pulled.map(|c| &c.sha) == Some(&f.latest.sha) {
        return PullDecision::UpToDate;
    }
    if f.policy == UpdatePolicy::Manual && !f.requested {
        return PullDecision::ReportUpdate;
    }
    PullDecision::Replace {
        id: ours.id.clone(),
    }
}

/// The `constants.*` / `secrets.*` references the target workspace does not define. Pure.
pub fn missing_constants(
    refs: impl IntoIterator<Item = layout::Ref>,
    defined: &[WorkspaceConstant],
) -> Vec<String> {
    refs.into_iter()
        .filter(|r| {
            let (name, secret) = match r {
                layout::Ref::Constant(n) => (n, false),
                layout::Ref::Secret(n) => (n, true),
            };
            !defined
                .iter()
                .any(|d| d.name == *name && (d.kind == ConstantKind::Secret) == secret)
        })
        .map(|r| r.to_string())
        .collect()
}

/// The constants the GitSyncConfig keeps in the workspace (its status lists them once
/// applied), as workspace constants a pull may count on. Pure.
pub fn declared_constants(gsc: &crate::api::GitSyncConfig) -> Vec<WorkspaceConstant> {
    gsc.status
        .as_ref()
        .and_then(|s| s.values.as_ref())
        .map(|v| {
            v.constants
                .iter()
                .map(|c| WorkspaceConstant {
                    name: c.name.clone(),
                    kind: if c.kind == "Secret" {
                        ConstantKind::Secret
                    } else {
                        ConstantKind::Global
                    },
                })
                .collect()
        })
        .unwrap_or_default()
}

/// ToolJet's built-in data sources, which carry no credentials (`restapidefault`, ...).
const STATIC_KINDS: &[&str] = &[
    "restapidefault",
    "runjsdefault",
    "runpydefault",
    "tooljetdbdefault",
    "workflowsdefault",
];

/// The data sources of an export that hold credentials of their own (not ToolJet's static or
/// sample ones) and that `declared` (the GitSyncConfig's `dataSources` names) does not cover,
/// sorted, at most 50. Pure.
pub fn uncredentialed_data_sources(export: &serde_json::Value, declared: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = export
        .pointer("/app/0/definition/appV2/dataSources")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter(|d| {
            let kind = d
                .get("kind")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("");
            let ty = d
                .get("type")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("default");
            !STATIC_KINDS.contains(&kind) && ty != "static" && ty != "sample"
        })
        .filter_map(|d| d.get("name").and_then(serde_json::Value::as_str))
        .filter(|n| !declared.contains(n))
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out.truncate(50);
    out
}

#[cfg(test)]
mod tests;
