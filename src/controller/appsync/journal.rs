//! The swap journal of a Pull (design §8), without IO: the names a swap uses, and the next
//! step from the journal and what the workspace holds now. Every step is decided from what
//! is observed, so a pass killed between any two calls is resumed (or rolled back) by the
//! next one, whatever the last recorded step.

use crate::api::{SwapJournal, SwapStep};
use crate::tooljet::{AppSummary, SwapNames};

/// Prefix of every temporary or parked app name, so leftovers are recognisable.
pub const PREFIX: &str = "__gitsync_";

/// Temporary name, parked name and parked slug of a swap with a fresh random suffix: the
/// ToolJet client's [`SwapNames`], so every swap leaves recognisably the same leftovers.
pub fn random_names() -> (String, String, String) {
    let n = SwapNames::random();
    (n.temp_name, n.parked_name, n.parked_slug)
}

/// What to do next for an open journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SwapAction {
    /// Record that the swap is being undone, then go on.
    StartRollBack,
    /// Delete this app (the new one, or a temporary one of a rolled-back import).
    DeleteNew(String),
    /// Give the old app its name and slug back.
    RestoreOld(String),
    /// The journal is done with: rolled back, the workspace as it was.
    RolledBack,
    /// Move the old app out of the way (parked name and slug).
    Park(String),
    /// Give the new app the name (and the old app's slug).
    Promote(String),
    /// Delete the parked old app.
    DeleteOld(String),
    /// The new app is in place: make it read-only as asked and close the journal.
    Finish(AppSummary),
}

fn by_id<'a>(apps: &'a [AppSummary], id: Option<&str>) -> Option<&'a AppSummary> {
    let id = id?;
    apps.iter().find(|a| a.id.eq_ignore_ascii_case(id))
}

fn slug_of(a: &AppSummary) -> &str {
    a.slug.as_deref().unwrap_or(&a.id)
}

/// Whether the journal imports straight under the final name (a token without the External
/// API v2 cannot rename, so a first import cannot go through a temporary name).
pub fn is_direct(j: &SwapJournal) -> bool {
    j.temp_name == j.name
}

/// The name searches whose results (with the apps of [`ids`]) hold every app [`next`] looks
/// at: the final name, and the prefix of the temporary and parked names.
pub fn searches(j: &SwapJournal) -> [&str; 2] {
    [j.name.as_str(), PREFIX]
}

/// The apps [`next`] looks for by id: the old and the new one.
pub fn ids(j: &SwapJournal) -> Vec<&str> {
    [j.old_app_id.as_deref(), j.new_app_id.as_deref()]
        .into_iter()
        .flatten()
        .collect()
}

/// The next step. Pure.
pub fn next(j: &SwapJournal, apps: &[AppSummary]) -> SwapAction {
    let old = by_id(apps, j.old_app_id.as_deref());
    let new = by_id(apps, j.new_app_id.as_deref());
    match j.step {
        // Killed while importing: what ToolJet made (if anything) is not known to be whole.
        // A direct import is the exception: the app of that name can only be ours.
        SwapStep::Importing if is_direct(j) => match apps.iter().find(|a| a.name == j.name) {
            Some(a) => SwapAction::Finish(a.clone()),
            None => SwapAction::RolledBack,
        },
        SwapStep::Importing => SwapAction::StartRollBack,
        SwapStep::RollingBack => roll_back(j, apps, old, new),
        SwapStep::Imported | SwapStep::Parked | SwapStep::Promoted => match new {
            None => SwapAction::StartRollBack,
            Some(new) => forward(j, apps, old, new),
        },
    }
}

fn roll_back(
    j: &SwapJournal,
    apps: &[AppSummary],
    old: Option<&AppSummary>,
    new: Option<&AppSummary>,
) -> SwapAction {
    if let Some(new) = new.filter(|n| Some(&n.id) != old.map(|o| &o.id)) {
        return SwapAction::DeleteNew(new.id.clone());
    }
    if let Some(temp) = apps.iter().find(|a| a.name == j.temp_name && !is_direct(j)) {
        return SwapAction::DeleteNew(temp.id.clone());
    }
    if let Some(old) = old {
        let slug_ok = j.slug.as_deref().is_none_or(|s| s == slug_of(old));
        if old.name != j.name || !slug_ok {
            return SwapAction::RestoreOld(old.id.clone());
        }
    }
    SwapAction::RolledBack
}

fn forward(
    j: &SwapJournal,
    apps: &[AppSummary],
    old: Option<&AppSummary>,
    new: &AppSummary,
) -> SwapAction {
    let new_in_place = new.name == j.name && j.slug.as_deref().is_none_or(|s| s == slug_of(new));
    if !new_in_place {
        if let Some(old) = old.filter(|o| o.name == j.name || j.slug.as_deref() == Some(slug_of(o)))
        {
            return SwapAction::Park(old.id.clone());
        }
        // Someone else took the name while it was free: give up, never overwrite.
        let holder = apps.iter().find(|a| a.name == j.name && a.id != new.id);
        if holder.is_some() {
            return SwapAction::StartRollBack;
        }
        return SwapAction::Promote(new.id.clone());
    }
    match old {
        Some(old) => SwapAction::DeleteOld(old.id.clone()),
        None => SwapAction::Finish(new.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::CommitInfo;

    fn names(suffix: &str) -> (String, String, String) {
        let n = SwapNames::new(suffix);
        (n.temp_name, n.parked_name, n.parked_slug)
    }

    fn app(id: &str, name: &str, slug: &str) -> AppSummary {
        AppSummary {
            id: id.into(),
            name: name.into(),
            slug: Some(slug.into()),
            versions: Vec::new(),
        }
    }

    fn journal(step: SwapStep, old: Option<&str>, new: Option<&str>) -> SwapJournal {
        let (temp_name, parked_name, parked_slug) = names("s1");
        SwapJournal {
            step,
            commit: CommitInfo::default(),
            name: "Sales".into(),
            slug: old.map(|_| "sales".to_string()),
            old_app_id: old.map(String::from),
            new_app_id: new.map(String::from),
            temp_name,
            parked_name,
            parked_slug,
            git_app_id: "g".into(),
            version_name: "v1".into(),
            version_id: "vid".into(),
            started_at: "t".into(),
        }
    }

    /// What the client's scoped lookup returns: the apps whose names contain a search key
    /// (case-insensitive, as ToolJet's `searchKey`), plus the apps of the ids.
    fn scoped(j: &SwapJournal, apps: &[AppSummary]) -> Vec<AppSummary> {
        let keys = searches(j).map(str::to_lowercase);
        let ids = ids(j);
        apps.iter()
            .filter(|a| {
                keys.iter()
                    .any(|k| a.name.to_lowercase().contains(k.as_str()))
                    || ids.contains(&a.id.as_str())
            })
            .cloned()
            .collect()
    }

    #[test]
    fn the_scoped_lookup_decides_like_the_whole_workspace() {
        let (t, p, ps) = names("s1");
        let (t2, _, _) = names("s2");
        let pool = [
            app("old", "Sales", "sales"),
            app("old", &p, &ps),
            app("old", "Renamed by hand", "sales"),
            app("new", &t, "new"),
            app("new", "Sales", "sales"),
            app("new", "Renamed too", "x"),
            app("x", "Sales", "other-slug"),
            app("y", "Sales copy", "y"),
            app("z", &t2, "z"),
            app("w", "Other", "other"),
        ];
        let steps = [
            SwapStep::Importing,
            SwapStep::Imported,
            SwapStep::Parked,
            SwapStep::Promoted,
            SwapStep::RollingBack,
        ];
        let mut checked = 0;
        for mask in 0u32..(1 << pool.len()) {
            let apps: Vec<AppSummary> = (0..pool.len())
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| pool[i].clone())
                .collect();
            // One app per id, as in a workspace.
            let mut ids: Vec<&str> = apps.iter().map(|a| a.id.as_str()).collect();
            ids.sort_unstable();
            if ids.windows(2).any(|w| w[0] == w[1]) {
                continue;
            }
            for step in steps {
                for (old, new) in [
                    (None, None),
                    (None, Some("new")),
                    (Some("old"), None),
                    (Some("old"), Some("new")),
                ] {
                    for direct in [false, true] {
                        let mut j = journal(step, old, new);
                        if direct {
                            j.temp_name = j.name.clone();
                        }
                        assert_eq!(
                            next(&j, &apps),
                            next(&j, &scoped(&j, &apps)),
                            "{j:?} {apps:?}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 1000, "{checked}");
    }

    #[test]
    fn names_fit_tooljet_and_are_recognisable() {
        let (t, p, s) = random_names();
        assert!(t.len() <= 50 && p.len() <= 50 && t.starts_with(PREFIX) && p.starts_with(PREFIX));
        assert!(s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        assert_ne!(random_names(), random_names());
    }

    /// Runs the journal to its end against a simulated workspace, as the driver does, and
    /// returns the workspace and whether it went forward.
    fn run(mut j: SwapJournal, mut apps: Vec<AppSummary>) -> (Vec<AppSummary>, bool) {
        for _ in 0..10 {
            match next(&j, &apps) {
                SwapAction::StartRollBack => j.step = SwapStep::RollingBack,
                SwapAction::DeleteNew(id) | SwapAction::DeleteOld(id) => {
                    apps.retain(|a| a.id != id)
                }
                SwapAction::RestoreOld(id) | SwapAction::Park(id) | SwapAction::Promote(id) => {
                    let action = next(&j, &apps);
                    let a = apps.iter_mut().find(|a| a.id == id).unwrap();
                    match action {
                        SwapAction::Park(_) => {
                            a.name = j.parked_name.clone();
                            a.slug = Some(j.parked_slug.clone());
                            j.step = SwapStep::Parked;
                        }
                        SwapAction::Promote(_) => {
                            a.name = j.name.clone();
                            if let Some(s) = &j.slug {
                                a.slug = Some(s.clone());
                            }
                            j.step = SwapStep::Promoted;
                        }
                        _ => {
                            a.name = j.name.clone();
                            a.slug = j.slug.clone();
                        }
                    }
                }
                SwapAction::RolledBack => return (apps, false),
                SwapAction::Finish(_) => return (apps, true),
            }
        }
        panic!("journal did not end: {j:?}");
    }

    /// The invariant: one app of the name (and slug, when known), no temporary or parked app.
    fn invariant<'a>(apps: &'a [AppSummary], slug: Option<&str>) -> &'a AppSummary {
        assert!(
            apps.iter().all(|a| !a.name.starts_with(PREFIX)),
            "leftover in {apps:?}"
        );
        let named: Vec<_> = apps.iter().filter(|a| a.name == "Sales").collect();
        assert_eq!(named.len(), 1, "{apps:?}");
        if let Some(s) = slug {
            assert_eq!(named[0].slug.as_deref(), Some(s));
        }
        named[0]
    }

    #[test]
    fn a_replace_killed_after_any_step_ends_with_one_app_of_the_name_and_slug() {
        let (t, p, ps) = names("s1");
        let old = app("old", "Sales", "sales");
        let new_tmp = app("new", &t, "new");
        let parked = app("old", &p, &ps);
        let new_named = app("new", "Sales", "sales");
        let other = app("x", "Other", "other");
        // Every state a kill can leave: (journal step, new id known, workspace).
        let cases: Vec<(SwapStep, Option<&str>, Vec<AppSummary>, bool)> = vec![
            (
                SwapStep::Importing,
                None,
                vec![old.clone(), other.clone()],
                false,
            ),
            (
                SwapStep::Importing,
                None,
                vec![old.clone(), new_tmp.clone(), other.clone()],
                false,
            ),
            (
                SwapStep::Imported,
                Some("new"),
                vec![old.clone(), new_tmp.clone()],
                true,
            ),
            (
                SwapStep::Imported,
                Some("new"),
                vec![parked.clone(), new_tmp.clone()],
                true,
            ),
            (
                SwapStep::Parked,
                Some("new"),
                vec![parked.clone(), new_tmp.clone()],
                true,
            ),
            (
                SwapStep::Parked,
                Some("new"),
                vec![parked.clone(), new_named.clone()],
                true,
            ),
            (
                SwapStep::Promoted,
                Some("new"),
                vec![parked.clone(), new_named.clone()],
                true,
            ),
            (
                SwapStep::Promoted,
                Some("new"),
                vec![new_named.clone(), other.clone()],
                true,
            ),
            (
                SwapStep::RollingBack,
                Some("new"),
                vec![parked.clone(), new_named.clone()],
                false,
            ),
            (
                SwapStep::RollingBack,
                Some("new"),
                vec![parked.clone()],
                false,
            ),
            (SwapStep::RollingBack, Some("new"), vec![old.clone()], false),
            // The new app vanished (deleted by someone): roll back to the old one.
            (SwapStep::Parked, Some("new"), vec![parked.clone()], false),
        ];
        for (step, new, apps, forward) in cases {
            let j = journal(step, Some("old"), new);
            let (after, went_forward) = run(j, apps.clone());
            assert_eq!(went_forward, forward, "{step:?} {apps:?}");
            let survivor = invariant(&after, Some("sales"));
            assert_eq!(
                survivor.id,
                if forward { "new" } else { "old" },
                "{step:?} {apps:?}"
            );
        }
    }

    #[test]
    fn a_first_import_killed_after_any_step_leaves_no_temporary_app() {
        let (t, _, _) = names("s1");
        let cases: Vec<(SwapStep, Option<&str>, Vec<AppSummary>, bool)> = vec![
            (SwapStep::Importing, None, vec![], false),
            (
                SwapStep::Importing,
                None,
                vec![app("new", &t, "new")],
                false,
            ),
            (
                SwapStep::Imported,
                Some("new"),
                vec![app("new", &t, "new")],
                true,
            ),
            (
                SwapStep::Promoted,
                Some("new"),
                vec![app("new", "Sales", "new")],
                true,
            ),
        ];
        for (step, new, apps, forward) in cases {
            let (after, went_forward) = run(journal(step, None, new), apps.clone());
            assert_eq!(went_forward, forward, "{step:?}");
            assert!(after.iter().all(|a| !a.name.starts_with(PREFIX)));
            assert_eq!(
                after.iter().filter(|a| a.name == "Sales").count(),
                usize::from(forward)
            );
        }
    }

    #[test]
    fn a_name_taken_during_a_first_import_is_never_overwritten() {
        let (t, _, _) = names("s1");
        let j = journal(SwapStep::Imported, None, Some("new"));
        let apps = vec![app("new", &t, "new"), app("human", "Sales", "s")];
        let (after, forward) = run(j, apps);
        assert!(!forward);
        assert_eq!(after, vec![app("human", "Sales", "s")]);
    }

    #[test]
    fn a_direct_import_is_finished_when_its_app_exists() {
        let mut j = journal(SwapStep::Importing, None, None);
        j.temp_name = j.name.clone();
        assert!(
            matches!(next(&j, &[app("a", "Sales", "a")]), SwapAction::Finish(a) if a.id == "a")
        );
        assert_eq!(next(&j, &[]), SwapAction::RolledBack);
    }
}
