//! Step 1 of an AppSync pass: the spec checked without IO, before anything is read.

use super::super::Problem;
use crate::api::{AppSync, Reason};

/// Checks `spec.app` and `spec.pull.revision`. Pure.
pub fn validate(aps: &AppSync) -> Result<(), Problem> {
    let app = aps.spec.app.as_str();
    if app.trim().is_empty()
        || app
            .strip_prefix("id:")
            .is_some_and(|id| id.trim().is_empty())
    {
        return Err(Problem::stalled(
            Reason::InvalidApp,
            format!("spec.app {app:?} names no app: give the app's name, or id:<uuid>"),
        ));
    }
    if app.chars().any(char::is_control) {
        return Err(Problem::stalled(
            Reason::InvalidApp,
            "spec.app contains control characters; give the app's name, or id:<uuid>",
        ));
    }
    if let Some(rev) = aps.spec.pull.as_ref().and_then(|p| p.revision.as_deref()) {
        check_revision(rev)?;
    }
    Ok(())
}

/// A branch, tag or commit sha as git accepts it on a command line and in a ref: never an
/// option, no whitespace, control characters or revision syntax.
pub fn check_revision(rev: &str) -> Result<(), Problem> {
    match super::super::gitsyncconfig::ref_format_violation(rev) {
        None => Ok(()),
        Some(why) => Err(Problem::stalled(
            Reason::InvalidRevision,
            format!("spec.pull.revision {rev:?} is not a branch, tag or commit sha: {why}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aps(app: &str, revision: Option<&str>) -> AppSync {
        AppSync::new(
            "x",
            serde_json::from_value(serde_json::json!({
                "gitSyncConfigRef": {"name": "c"}, "app": app, "direction": "Pull",
                "pull": {"revision": revision},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn apps_and_revisions() {
        for ok in [
            ("Sales", None),
            ("id:3f2a", Some("main")),
            ("Sales / EU", Some("v1.2.0")),
            ("S", Some("0123abcd")),
            ("S", Some("release/2026")),
        ] {
            assert!(validate(&aps(ok.0, ok.1)).is_ok(), "{ok:?}");
        }
        for (app, rev, reason) in [
            ("", None, Reason::InvalidApp),
            ("  ", None, Reason::InvalidApp),
            ("id:", None, Reason::InvalidApp),
            ("a\u{0}b", None, Reason::InvalidApp),
            ("S", Some(""), Reason::InvalidRevision),
            ("S", Some("--upload-pack=evil"), Reason::InvalidRevision),
            ("S", Some("main..dev"), Reason::InvalidRevision),
            ("S", Some("HEAD~1"), Reason::InvalidRevision),
            ("S", Some("a b"), Reason::InvalidRevision),
            ("S", Some("main@{1}"), Reason::InvalidRevision),
        ] {
            assert_eq!(
                validate(&aps(app, rev)).unwrap_err().reason,
                reason,
                "{app:?} {rev:?}"
            );
        }
    }
}
