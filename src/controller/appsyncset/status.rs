//! The status of an AppSyncSet, without IO: how its apps' AppSyncs are doing, its conditions,
//! and the Events for apps added and removed.

use super::super::report::{self, Note};
use super::super::Problem;
use super::plan::Covered;
use crate::api::{
    self, types, AppEntry, AppSync, AppSyncSet, AppSyncSetStatus, AppsSummary, Condition, Reason,
};

/// At most this many apps are listed in `failingApps` and `overlapping`.
pub const MAX_LISTED: usize = 20;
/// At most this many app names are quoted in one Event.
const MAX_NAMED: usize = 10;

/// How one app's AppSync is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildState {
    /// Ready.
    Ready,
    /// Not looked at yet, or not since its spec changed.
    Pending,
    /// Ready is False.
    Failing,
}

/// The state of an AppSync, from its conditions. Pure.
pub fn child_state(aps: Option<&AppSync>) -> (ChildState, Option<&Condition>) {
    let Some(aps) = aps else {
        return (ChildState::Pending, None);
    };
    let status = aps.status.as_ref();
    let ready = status.and_then(|s| api::find(&s.conditions, types::READY));
    let seen = status.and_then(|s| s.observed_generation);
    match ready {
        None => (ChildState::Pending, None),
        Some(_) if seen.is_some() && seen < aps.metadata.generation => (ChildState::Pending, ready),
        Some(c) if c.is_true() => (ChildState::Ready, ready),
        // Suspended by the set or by hand: a choice, not a failure.
        Some(c) if c.reason == Reason::Suspended.as_str() => (ChildState::Pending, ready),
        Some(c) => (ChildState::Failing, Some(c)),
    }
}

/// Counts and lists of the covered apps; `lookup` finds an AppSync by name. Pure.
pub fn summarize<'a>(
    covered: &[Covered],
    lookup: impl Fn(&str) -> Option<&'a AppSync>,
) -> (AppsSummary, u32) {
    let mut s = AppsSummary {
        total: u32::try_from(covered.len()).unwrap_or(u32::MAX),
        ..Default::default()
    };
    let mut pending = 0u32;
    for c in covered {
        let (state, cond) = child_state(lookup(&c.app_sync));
        match state {
            ChildState::Ready => s.ready += 1,
            ChildState::Pending => pending += 1,
            ChildState::Failing => {
                s.failing += 1;
                if s.failing_apps.len() < MAX_LISTED {
                    s.failing_apps.push(AppEntry {
                        name: c.app.name.clone(),
                        app_sync: c.app_sync.clone(),
                        reason: cond.map(|c| c.reason.clone()),
                        message: cond.map(|c| api::bounded(c.message.clone(), 300)),
                    });
                }
            }
        }
        if !c.generated && s.overlapping.len() < MAX_LISTED {
            s.overlapping.push(AppEntry {
                name: c.app.name.clone(),
                app_sync: c.app_sync.clone(),
                reason: None,
                message: None,
            });
        }
    }
    (s, pending)
}

/// How a pass ended.
pub enum SetEnded {
    /// Suspended: the generated AppSyncs were only suspended.
    Suspended(AppsSummary),
    /// The apps were listed and their AppSyncs made; `pending` have not finished a pass.
    Listed {
        /// Counts.
        apps: AppsSummary,
        /// AppSyncs not looked at yet.
        pending: u32,
        /// Pull: the commit read.
        revision: Option<String>,
        /// Pull: apps imported by AppSyncs deleted now or before, not yet owned again.
        released: Vec<crate::api::ReleasedApp>,
    },
    /// The apps could not be listed; nothing was created or deleted.
    Failed(Problem),
}

/// The conditions of a pass. Pure.
pub fn conditions(ended: &SetEnded) -> Vec<Condition> {
    let ready = |status, reason, msg: String| Condition::new(types::READY, status, reason, msg);
    match ended {
        SetEnded::Suspended(_) => vec![ready(
            false,
            Reason::Suspended,
            "spec.suspend is true: no AppSync is generated or deleted, and the generated ones are suspended".into(),
        )],
        SetEnded::Failed(p) => {
            let mut v = vec![ready(false, p.reason, p.message.clone())];
            v.extend(report::abnormal(p));
            v
        }
        SetEnded::Listed { apps, pending, .. } => {
            if apps.failing > 0 {
                let named = apps
                    .failing_apps
                    .iter()
                    .take(MAX_NAMED)
                    .map(|e| format!("{} ({})", e.name, e.reason.as_deref().unwrap_or("?")))
                    .collect::<Vec<_>>()
                    .join(", ");
                let more = (apps.failing as usize).saturating_sub(apps.failing_apps.len().min(MAX_NAMED));
                let more = if more > 0 { format!(" and {more} more") } else { String::new() };
                vec![ready(
                    false,
                    Reason::AppsNotReady,
                    format!("{} of {} apps are not Ready: {named}{more}; see status.apps.failingApps and each AppSync's conditions", apps.failing, apps.total),
                )]
            } else if *pending > 0 {
                let msg = format!(
                    "{} of {} apps Ready; {pending} AppSyncs have not finished their first pass yet",
                    apps.ready, apps.total
                );
                vec![
                    ready(false, Reason::AppsPending, msg.clone()),
                    Condition::new(types::RECONCILING, true, Reason::AppsPending, msg),
                ]
            } else {
                vec![ready(
                    true,
                    Reason::Ready,
                    format!("all {} selected apps are Ready", apps.total),
                )]
            }
        }
    }
}

/// The next status. Pure.
pub fn next_status(
    set: &AppSyncSet,
    prev: &AppSyncSetStatus,
    ended: &SetEnded,
    now: &str,
) -> AppSyncSetStatus {
    let generation = set.metadata.generation;
    let conditions = api::merge(&prev.conditions, conditions(ended), generation, now);
    let (apps, revision, released) = match ended {
        SetEnded::Suspended(a) => (
            Some(a.clone()),
            prev.revision.clone(),
            prev.released.clone(),
        ),
        SetEnded::Listed {
            apps,
            revision,
            released,
            ..
        } => (Some(apps.clone()), revision.clone(), released.clone()),
        SetEnded::Failed(_) => (
            prev.apps.clone(),
            prev.revision.clone(),
            prev.released.clone(),
        ),
    };
    AppSyncSetStatus {
        observed_generation: generation,
        conditions,
        apps,
        revision,
        released,
    }
}

/// Events: one for the AppSyncs generated, one for those deleted, one for new overlaps, one
/// for a change of Ready. Each names a bounded number of apps.
pub fn notes(
    prev: &AppSyncSetStatus,
    next: &AppSyncSetStatus,
    created: &[String],
    deleted: &[String],
) -> Vec<Note> {
    let mut out = Vec::new();
    let names = |v: &[String]| {
        let mut s = v
            .iter()
            .take(MAX_NAMED)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if v.len() > MAX_NAMED {
            s.push_str(&format!(" and {} more", v.len() - MAX_NAMED));
        }
        s
    };
    if !created.is_empty() {
        out.push(Note::normal(
            Reason::AppAdded,
            format!(
                "generated AppSyncs for {} apps: {}",
                created.len(),
                names(created)
            ),
        ));
    }
    if !deleted.is_empty() {
        out.push(Note::normal(
            Reason::AppRemoved,
            format!("deleted the AppSyncs of {} apps no longer found or selected: {}; nothing in git or ToolJet was deleted", deleted.len(), names(deleted)),
        ));
    }
    // Compared on the (bounded, ordered) lists the status holds: an unchanged set of
    // overlaps, however long, is not announced again.
    let listed = |s: &AppSyncSetStatus| -> Vec<(String, String)> {
        s.apps
            .iter()
            .flat_map(|a| a.overlapping.iter())
            .map(|e| (e.name.clone(), e.app_sync.clone()))
            .collect()
    };
    let was = listed(prev);
    let new_overlaps: Vec<String> = listed(next)
        .into_iter()
        .filter(|e| !was.contains(e))
        .map(|(app, aps)| format!("{app} (AppSync {aps})"))
        .collect();

    if !new_overlaps.is_empty() {
        out.push(Note::warning(
            Reason::AppSyncOverlap,
            format!("apps already handled by an AppSync the set did not generate; that AppSync wins and the set generates none: {}", names(&new_overlaps)),
        ));
    }
    out.extend(report::ready_transition(
        &prev.conditions,
        &next.conditions,
        &[Reason::AppsPending, Reason::Suspended],
    ));
    out
}
