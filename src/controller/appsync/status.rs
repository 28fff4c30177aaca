//! The last step of an AppSync pass, without IO: what a pass found or did becomes the status,
//! its conditions and the Events to publish after the status is written.

use super::super::report::{self, Note};
use super::super::{short, Problem};
use super::swap::Carry;
use crate::api::{
    self, types, AppStatus, AppSync, AppSyncStatus, CommitInfo, Condition, GitStatus, Ownership,
    Reason,
};

/// What a successful pass found or did.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Reason of the Ready and Synced conditions.
    pub reason: Reason,
    /// Message of the Synced condition.
    pub message: String,
    /// The app in ToolJet.
    pub app: Option<AppStatus>,
    /// The app in git.
    pub git: Option<GitStatus>,
    /// A commit made (Push) or imported (Pull) now.
    pub committed: Option<CommitInfo>,
    /// Pull: a newer commit touching the app, not yet pulled (Manual policy).
    pub available_update: Option<CommitInfo>,
    /// Pull: whether `UpdateAvailable` applies at all.
    pub tracks_updates: bool,
    /// Pull: workspace constants and secrets the app uses that the target lacks.
    pub missing_constants: Vec<String>,
    /// Pull: the app's data sources without declared credentials (`None`: not looked at).
    pub uncredentialed: Option<Vec<String>>,
    /// Pull: the pull-requested-at value handled by this pass.
    pub handled_request: Option<String>,
    /// Pull: an app was imported or replaced now.
    pub pulled: bool,
    /// Pull: the current spec has been acted on (a later spec change is a new request).
    pub handled_generation: bool,
    /// Pull: the adopt annotation value handled by this pass.
    pub handled_adopt: Option<String>,
    /// What the AppSync owns after this pass (None: unchanged).
    pub owned: Option<Ownership>,
    /// Push in pull-request mode: the request as this pass left it (None: unchanged).
    pub pull_request: Option<crate::api::PullRequestStatus>,
}

impl Outcome {
    /// An outcome with nothing but its reason and message.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Outcome {
            reason,
            message: message.into(),
            app: None,
            git: None,
            committed: None,
            available_update: None,
            tracks_updates: false,
            missing_constants: Vec::new(),
            uncredentialed: None,
            handled_request: None,
            pulled: false,
            handled_generation: false,
            handled_adopt: None,
            owned: None,
            pull_request: None,
        }
    }
}

/// How a pass ended.
pub enum Ended {
    /// `spec.suspend`: nothing was looked at.
    Suspended,
    /// The pass did its work.
    Done(Box<Outcome>),
    /// Something needs attention.
    Failed(Problem),
}

/// Conditions for how a pass ended. Pure.
pub fn conditions(ended: &Ended) -> Vec<Condition> {
    match ended {
        Ended::Suspended => vec![Condition::new(
            types::READY,
            false,
            Reason::Suspended,
            super::pull::SUSPENDED,
        )],
        Ended::Done(o) => outcome_conditions(o),
        Ended::Failed(p) => {
            let mut v = vec![
                Condition::new(types::READY, false, p.reason, &p.message),
                Condition::new(types::SYNCED, false, p.reason, &p.message),
            ];
            v.extend(report::abnormal(p));
            v
        }
    }
}

fn outcome_conditions(o: &Outcome) -> Vec<Condition> {
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
                Reason::UpdateAvailable,
                format!(
                    "commit {} ({}) changes the app; pull it with: kubectl annotate appsync <name> {}=$(date +%s) --overwrite",
                    short(&u.sha),
                    u.message.lines().next().unwrap_or_default(),
                    api::PULL_REQUESTED_ANNOTATION
                ),
            ),
            None => Condition::new(
                types::UPDATE_AVAILABLE,
                false,
                Reason::UpToDate,
                "the app is at the newest commit of the revision that touches it",
            ),
        });
    }
    if !o.missing_constants.is_empty() {
        v.push(Condition::new(
            types::CONSTANTS_MISSING,
            true,
            Reason::WorkspaceConstantsMissing,
            format!(
                "the app references {} which the target workspace does not define; workspace constants are not synced by GitSync: create them in ToolJet (Workspace settings > Workspace constants)",
                o.missing_constants.join(", ")
            ),
        ));
    }
    v
}

/// The new status: what the previous one recorded, updated by the outcome, with the swap
/// journal as the pass leaves it. Pure.
pub fn next_status(
    aps: &AppSync,
    prev: &AppSyncStatus,
    ended: &Ended,
    carry: &Carry,
    now: &str,
) -> AppSyncStatus {
    let mut status = AppSyncStatus {
        observed_generation: aps.metadata.generation,
        conditions: Vec::new(),
        swap: carry.swap.clone(),
        abandoned: carry.abandoned.clone(),
        ..prev.clone()
    };
    if let Ended::Done(o) = ended {
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
        if o.handled_adopt.is_some() {
            status.last_handled_adopt = o.handled_adopt.clone();
        }
        if o.owned.is_some() {
            status.owned = o.owned.clone();
        }
        if o.pull_request.is_some() {
            status.pull_request = o.pull_request.clone();
        }
        if let Some(u) = &o.uncredentialed {
            status.data_sources_without_credentials = u.clone();
        }
    }
    status.conditions = api::merge(
        &prev.conditions,
        conditions(ended),
        aps.metadata.generation,
        now,
    );
    status
}

/// The Events of a pass: constants newly missing, a new update, a pull, a commit, and a
/// change of Ready. Pure.
pub fn notes(prev: &AppSyncStatus, next: &AppSyncStatus, ended: &Ended) -> Vec<Note> {
    let mut out = Vec::new();
    if let Ended::Done(o) = ended {
        let had_missing = api::find(&prev.conditions, types::CONSTANTS_MISSING).is_some();
        if !o.missing_constants.is_empty() && !had_missing {
            out.push(Note::warning(
                Reason::WorkspaceConstantsMissing,
                format!(
                    "missing in the target workspace: {}",
                    o.missing_constants.join(", ")
                ),
            ));
        }
        let known = prev.available_update.as_ref().map(|p| &p.sha);
        if let Some(u) = o
            .available_update
            .as_ref()
            .filter(|u| Some(&u.sha) != known)
        {
            out.push(Note::normal(
                Reason::UpdateAvailable,
                format!("commit {} changes the app: {}", short(&u.sha), u.message),
            ));
        }
        if o.pulled {
            out.push(Note::normal(Reason::Pulled, o.message.clone()));
        } else if let Some(c) = &o.committed {
            out.push(Note::normal(
                Reason::Committed,
                format!("pushed commit {} to git: {}", short(&c.sha), c.message),
            ));
        }
    }
    out.extend(pull_request_notes(
        prev.pull_request.as_ref(),
        next.pull_request.as_ref(),
    ));
    // A Ready change to a reason this pass already announced would only fold into that
    // Event's series (the recorder keys Events by reason, not note).
    let ready = report::ready_transition(
        &prev.conditions,
        &next.conditions,
        &[Reason::Suspended, Reason::GitSyncConfigNotReady],
    );
    out.extend(ready.filter(|r| !out.iter().any(|n| n.reason == r.reason)));
    out
}

/// Events of a pull request opened, merged or closed. Pure.
fn pull_request_notes(
    prev: Option<&crate::api::PullRequestStatus>,
    next: Option<&crate::api::PullRequestStatus>,
) -> Option<Note> {
    let next = next?;
    let same = prev.is_some_and(|p| p.number == next.number && p.url == next.url);
    let changed = !same || prev.is_some_and(|p| p.state != next.state);
    if !changed {
        return None;
    }
    let what = format!(
        "#{} ({}) from {} into {}",
        next.number, next.url, next.branch, next.base_branch
    );
    Some(match next.state.as_str() {
        "Open" if !same => Note::normal(Reason::PullRequestOpened, format!("opened pull request {what}")),
        "Merged" => Note::normal(Reason::PullRequestMerged, format!("pull request {what} was merged; the next change opens a new one")),
        "Closed" => Note::normal(Reason::PullRequestClosed, format!("pull request {what} was closed without merging; the next change opens a new one on a new branch")),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_request_events() {
        let pr = |n: u64, state: &str| crate::api::PullRequestStatus {
            number: n,
            url: format!("https://h/pr/{n}"),
            state: state.into(),
            branch: "b".into(),
            base_branch: "main".into(),
        };
        let r = |p: Option<&crate::api::PullRequestStatus>, n: &crate::api::PullRequestStatus| {
            pull_request_notes(p, Some(n)).map(|n| n.reason)
        };
        assert_eq!(r(None, &pr(1, "Open")), Some(Reason::PullRequestOpened));
        assert_eq!(r(Some(&pr(1, "Open")), &pr(1, "Open")), None);
        assert_eq!(
            r(Some(&pr(1, "Open")), &pr(1, "Merged")),
            Some(Reason::PullRequestMerged)
        );
        assert_eq!(
            r(Some(&pr(1, "Open")), &pr(1, "Closed")),
            Some(Reason::PullRequestClosed)
        );
        assert_eq!(
            r(Some(&pr(1, "Merged")), &pr(2, "Open")),
            Some(Reason::PullRequestOpened)
        );
        assert_eq!(pull_request_notes(Some(&pr(1, "Open")), None), None);
    }

    #[test]
    fn suspended_is_not_ready_without_reconciling() {
        let c = conditions(&Ended::Suspended);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].reason, "Suspended");
    }

    #[test]
    fn problems_map_to_kstatus() {
        let c = conditions(&Ended::Failed(Problem::stalled(Reason::AppNotFound, "m")));
        assert!(api::find(&c, "Stalled").is_some());
        let c = conditions(&Ended::Failed(Problem::retrying(
            Reason::GitSyncConfigNotReady,
            "m",
        )));
        assert!(api::find(&c, "Reconciling").is_some());
        let c = conditions(&Ended::Failed(Problem::retrying(
            Reason::GitSyncConfigDisabled,
            "m",
        )));
        assert!(api::find(&c, "Reconciling").is_none() && api::find(&c, "Stalled").is_none());
        let ok = conditions(&Ended::Done(Box::new(Outcome {
            tracks_updates: true,
            missing_constants: vec!["constants.region".into()],
            ..Outcome::new(Reason::UpToDate, "")
        })));
        assert!(api::find(&ok, "Ready").unwrap().is_true());
        assert_eq!(api::find(&ok, "UpdateAvailable").unwrap().status, "False");
        assert!(api::find(&ok, "WorkspaceConstantsMissing")
            .unwrap()
            .message
            .contains("constants.region"));
    }

    fn commit(sha: &str) -> CommitInfo {
        CommitInfo {
            sha: sha.into(),
            message: "m".into(),
            author: "a".into(),
            date: None,
        }
    }

    #[test]
    fn a_commit_is_one_event_and_ready_turning_true_another() {
        let aps = AppSync::new(
            "x",
            serde_json::from_value(serde_json::json!({
                "gitSyncConfigRef": {"name": "c"}, "app": "A", "direction": "Push"
            }))
            .unwrap(),
        );
        let prev = AppSyncStatus::default();
        let ended = Ended::Done(Box::new(Outcome {
            committed: Some(commit("abcdef1234567890")),
            ..Outcome::new(Reason::Committed, "pushed")
        }));
        let next = next_status(&aps, &prev, &ended, &Carry::default(), "t");
        assert_eq!(next.last_commit.as_ref().unwrap().sha, "abcdef1234567890");
        let n = notes(&prev, &next, &ended);
        let reasons: Vec<Reason> = n.iter().map(|n| n.reason).collect();
        assert_eq!(reasons, vec![Reason::Committed]);
        assert!(n[0].message.starts_with("pushed commit abcdef123456 "));
        // The same outcome again: no Ready transition, but the commit is news only once
        // because a second pass would not commit.
        let again = notes(
            &next,
            &next_status(
                &aps,
                &next,
                &Ended::Done(Box::new(Outcome::new(Reason::Committed, "pushed"))),
                &Carry::default(),
                "t",
            ),
            &Ended::Done(Box::new(Outcome::new(Reason::Committed, "pushed"))),
        );
        assert!(again.is_empty());
    }

    #[test]
    fn an_update_is_announced_once() {
        let aps = AppSync::new(
            "x",
            serde_json::from_value(serde_json::json!({
                "gitSyncConfigRef": {"name": "c"}, "app": "A", "direction": "Pull"
            }))
            .unwrap(),
        );
        let ended = Ended::Done(Box::new(Outcome {
            available_update: Some(commit("1234")),
            tracks_updates: true,
            ..Outcome::new(Reason::UpdateAvailable, "u")
        }));
        let first = next_status(
            &aps,
            &AppSyncStatus::default(),
            &ended,
            &Carry::default(),
            "t",
        );
        assert!(notes(&AppSyncStatus::default(), &first, &ended)
            .iter()
            .any(|n| n.reason == Reason::UpdateAvailable));
        let second = next_status(&aps, &first, &ended, &Carry::default(), "t");
        assert!(notes(&first, &second, &ended).is_empty());
    }
}
