//! Every decision the e2e suite exercises, decided here without servers.

use super::*;
use crate::layout::PushKind;

fn app(id: &str, name: &str) -> AppSummary {
    AppSummary {
        id: id.into(),
        name: name.into(),
        slug: None,
        versions: Vec::new(),
    }
}

fn exported() -> ExportedApp {
    ExportedApp {
        id: "a1".into(),
        name: "Sales".into(),
        version_id: "v1id".into(),
        version_name: "v1".into(),
        tooljet_version: Some("3.0.0".into()),
    }
}

fn commit(sha: &str) -> CommitInfo {
    CommitInfo {
        sha: sha.into(),
        message: "App update".into(),
        author: "dev".into(),
        date: None,
    }
}

fn wcommit(sha: &str) -> worker::CommitInfo {
    worker::CommitInfo {
        sha: sha.into(),
        message: "App update".into(),
        author: "dev".into(),
        date: "2026-01-01T00:00:00Z".into(),
    }
}

// ---- Push

#[test]
fn apps_are_found_by_name_id_or_previous_id() {
    let apps = vec![app("ID-1", "Sales"), app("id-2", "Orders")];
    assert_eq!(pick_app(&apps, "Sales", None).unwrap().id, "ID-1");
    assert_eq!(pick_app(&apps, "id:id-1", None).unwrap().name, "Sales");
    assert_eq!(pick_app(&apps, "id-2", None).unwrap().name, "Orders");
    // Renamed in ToolJet: followed by the id it last synced.
    assert_eq!(
        pick_app(&apps, "Old Sales", Some("id-1")).unwrap().name,
        "Sales"
    );
    assert!(pick_app(&apps, "Old Sales", None).is_none());
    // An explicit id never falls back to a name.
    assert!(pick_app(&apps, "id:Sales", None).is_none());
}

#[test]
fn a_missing_app_is_refused_and_git_is_kept() {
    let mut prev = AppSyncStatus::default();
    let p = app_not_found("Sales", "dev", &prev);
    assert_eq!(p.reason, Reason::AppNotFound);
    assert!(p.stalled && !p.message.contains("is kept"));
    prev.git = Some(GitStatus {
        path: Some("Sales/v1.json".into()),
        ..Default::default()
    });
    assert!(app_not_found("Sales", "dev", &prev)
        .message
        .contains("Sales/v1.json is kept"));
}

#[test]
fn digest_follows_name_version_and_content() {
    let e = serde_json::json!({"app": [{"definition": {"appV2": {"name": "Sales"}}}]});
    let base = synced_digest("a1", "Sales", &exported(), &e);
    assert_eq!(base, synced_digest("a1", "Sales", &exported(), &e));
    assert_ne!(base, synced_digest("a1", "Sales 2", &exported(), &e));
    let mut other_version = exported();
    other_version.version_name = "v2".into();
    assert_ne!(base, synced_digest("a1", "Sales", &other_version, &e));
    let e2 = serde_json::json!({"app": [{"definition": {"appV2": {"name": "Sales", "x": 1}}}]});
    assert_ne!(base, synced_digest("a1", "Sales", &exported(), &e2));
}

fn facts<'a>(a: &'a AppSummary, x: &'a ExportedApp) -> PushFacts<'a> {
    PushFacts {
        app: a,
        exported: x,
        branch: "main",
        digest: "d1",
    }
}

fn verified() -> GitStatus {
    GitStatus {
        path: Some("Sales/v1.json".into()),
        git_app_id: Some("a1".into()),
        head: Some("h1".into()),
        synced_digest: Some("d1".into()),
    }
}

#[test]
fn push_is_up_to_date_when_nothing_changed_on_either_side() {
    let (a, x) = (app("a1", "Sales"), exported());
    let prev = AppSyncStatus {
        git: Some(verified()),
        ..Default::default()
    };
    let known = still_synced(&prev, "d1");
    assert!(known.is_some());
    assert_eq!(still_synced(&prev, "d2"), None);
    let PushDecision::UpToDate(o) = plan_push(&facts(&a, &x), known, &HeadView::Same("h1".into()))
    else {
        panic!("expected UpToDate");
    };
    assert_eq!(o.reason, Reason::UpToDate);
    assert_eq!(o.git.as_ref().unwrap().synced_digest.as_deref(), Some("d1"));
    assert!(o.message.contains("Sales/v1.json on main (head h1)"));
    assert!(o.committed.is_none());
}

#[test]
fn push_follows_a_moved_head_only_when_the_app_was_not_touched() {
    let (a, x) = (app("a1", "Sales"), exported());
    let known = verified();
    let untouched = HeadView::Moved {
        head: "h2".into(),
        untouched: true,
    };
    let PushDecision::UpToDate(o) = plan_push(&facts(&a, &x), Some(&known), &untouched) else {
        panic!("expected UpToDate");
    };
    assert_eq!(o.git.unwrap().head.as_deref(), Some("h2"));
    let touched = HeadView::Moved {
        head: "h2".into(),
        untouched: false,
    };
    assert_eq!(
        plan_push(&facts(&a, &x), Some(&known), &touched),
        PushDecision::Commit
    );
    assert_eq!(
        plan_push(&facts(&a, &x), Some(&known), &HeadView::Unknown),
        PushDecision::Commit
    );
    assert_eq!(
        plan_push(&facts(&a, &x), None, &HeadView::Same("h1".into())),
        PushDecision::Commit
    );
}

#[test]
fn worker_answers_become_outcomes() {
    let (a, x) = (app("a1", "Sales"), exported());
    let f = facts(&a, &x);
    let o = push_outcome(
        &f,
        PushResult::Committed {
            commit: wcommit("abcdef0123456789"),
            app_path: "Sales/v1.json".into(),
            kind: PushKind::Creation,
        },
    )
    .unwrap();
    assert_eq!(o.reason, Reason::Committed);
    assert_eq!(o.committed.unwrap().sha, "abcdef0123456789");
    assert_eq!(
        o.git.as_ref().unwrap().head.as_deref(),
        Some("abcdef0123456789")
    );
    assert!(o.message.starts_with(
        "pushed Creation of Sales version v1 to Sales/v1.json on main as abcdef012345"
    ));
    let o = push_outcome(
        &f,
        PushResult::NoChange {
            app_path: "Sales/v1.json".into(),
            head: None,
        },
    )
    .unwrap();
    assert_eq!(o.reason, Reason::UpToDate);
    // Nothing verified at a head: no digest, so the next pass asks the worker again.
    assert_eq!(o.git.unwrap().synced_digest, None);
}

#[test]
fn two_push_appsyncs_with_different_versions_conflict() {
    assert!(check_push_conflict("Sales", "v1", "main", &[]).is_ok());
    let p =
        check_push_conflict("Sales", "v1", "main", &[("team/b".into(), "v2".into())]).unwrap_err();
    assert_eq!(p.reason, Reason::PushConflict);
    assert!(p.stalled && p.message.contains("team/b (version v2)"));
}

#[test]
fn commit_text_from_git_is_bounded() {
    let mut c = wcommit("abc");
    c.message = "x".repeat(1 << 20);
    c.author = "é".repeat(10_000);
    let info = commit_info(&c);
    assert!(info.message.len() <= MAX_COMMIT_MESSAGE + 3);
    assert!(info.author.len() <= MAX_AUTHOR + 3);
}

#[test]
fn refusals_name_what_to_do() {
    let (a, x) = (app("a1", "Sales"), exported());
    let name = Refusal::Name(crate::layout::app_folder("..").unwrap_err());
    let p = push_outcome(&facts(&a, &x), PushResult::Refused(name)).unwrap_err();
    assert_eq!(p.reason, Reason::AppNameRefused);
    assert!(p.stalled && p.message.starts_with("nothing was written to git"));
    let claimed = Refusal::FolderClaimed {
        folder: "Sales".into(),
        other_app_id: "b".into(),
        other_folder: "sales".into(),
    };
    assert_eq!(refusal_problem(&claimed).reason, Reason::FolderCollision);
    let exists = Refusal::FolderExists {
        folder: "Sales".into(),
        existing: "SALES".into(),
    };
    assert_eq!(refusal_problem(&exists).reason, Reason::FolderCollision);
    assert_eq!(
        refusal_problem(&Refusal::EmptyAppId).reason,
        Reason::PushRefused
    );
}

// ---- Pull

fn aps(generation: i64, annotation: Option<&str>) -> AppSync {
    let mut a = AppSync::new(
        "x",
        serde_json::from_value(serde_json::json!({
            "gitSyncConfigRef": {"name": "c"}, "app": "Sales", "direction": "Pull"
        }))
        .unwrap(),
    );
    a.metadata.generation = Some(generation);
    if let Some(v) = annotation {
        a.metadata.annotations = Some(
            [(
                crate::api::PULL_REQUESTED_ANNOTATION.to_string(),
                v.to_string(),
            )]
            .into(),
        );
    }
    a
}

#[test]
fn pulls_are_requested_by_a_new_annotation_or_a_spec_change() {
    let handled = AppSyncStatus {
        last_pulled_generation: Some(1),
        last_handled_pull_requested_at: Some("100".into()),
        ..Default::default()
    };
    assert_eq!(
        pull_requested(&aps(1, Some("100")), &handled),
        (false, Some("100".into()))
    );
    assert_eq!(
        pull_requested(&aps(1, Some("200")), &handled),
        (true, Some("200".into()))
    );
    assert!(pull_requested(&aps(2, Some("100")), &handled).0);
    assert_eq!(pull_requested(&aps(1, None), &handled), (false, None));
    assert!(pull_requested(&aps(1, None), &AppSyncStatus::default()).0);
}

#[test]
fn git_is_read_now_on_request_recently_after_a_spec_change_else_per_interval() {
    let handled = AppSyncStatus {
        last_pulled_generation: Some(1),
        last_handled_pull_requested_at: Some("100".into()),
        ..Default::default()
    };
    let minute = Duration::from_secs(60);
    assert_eq!(
        git_freshness(&aps(1, Some("100")), &handled, minute),
        minute
    );
    assert_eq!(
        git_freshness(&aps(1, Some("200")), &handled, minute),
        Duration::ZERO
    );
    assert_eq!(
        git_freshness(&aps(2, Some("200")), &handled, minute),
        Duration::ZERO
    );
    assert_eq!(
        git_freshness(&aps(2, Some("100")), &handled, minute),
        SPEC_CHANGE_FRESHNESS
    );
    assert_eq!(
        git_freshness(&aps(1, None), &AppSyncStatus::default(), minute),
        SPEC_CHANGE_FRESHNESS
    );
    let short = Duration::from_secs(1);
    assert_eq!(git_freshness(&aps(2, None), &handled, short), short);
}

fn located(version: &str) -> Located {
    Located {
        git_app_id: "g1".into(),
        app_name: "Sales".into(),
        version_name: version.into(),
        version_id: "vid".into(),
        path: format!("Sales/{version}.json"),
        last_commit_message: None,
        last_commit_user: None,
        last_push_date: None,
    }
}

#[test]
fn expect_version_guards_promotion() {
    assert!(check_expected_version(None, &located("v1"), "main").is_ok());
    assert!(check_expected_version(Some("v1"), &located("v1"), "main").is_ok());
    let p = check_expected_version(Some("v2"), &located("v1"), "main").unwrap_err();
    assert_eq!(p.reason, Reason::VersionMismatch);
    assert!(p.stalled && p.message.contains("nothing was imported"));
}

#[test]
fn the_version_file_must_exist_and_be_json() {
    let l = located("v1");
    let mut files = std::collections::BTreeMap::new();
    assert_eq!(
        read_export(&files, &l, "main").unwrap_err().reason,
        Reason::AppNotInGit
    );
    files.insert("Sales/v1.json".to_string(), b"{not json".to_vec());
    let p = read_export(&files, &l, "main").unwrap_err();
    assert!(p.reason == Reason::InvalidExport && p.stalled);
    files.insert("Sales/v1.json".to_string(), br#"{"app": []}"#.to_vec());
    assert_eq!(
        read_export(&files, &l, "main").unwrap(),
        serde_json::json!({"app": []})
    );
}

fn pull<'a>(
    ours: Option<&'a AppSummary>,
    same: Option<&'a AppSummary>,
    latest: &'a CommitInfo,
    last: Option<&'a CommitInfo>,
    policy: UpdatePolicy,
    requested: bool,
) -> PullDecision {
    plan_pull(&PullFacts {
        ours,
        same_name: same,
        latest,
        last_pulled: last,
        policy,
        requested,
    })
}

#[test]
fn pull_decisions() {
    let (mine, other) = (app("m1", "Sales"), app("o1", "Sales"));
    let (c1, c2) = (commit("c1"), commit("c2"));
    use UpdatePolicy::{Auto, Manual};
    // First pull: nothing of that name -> import; someone else's app of that name -> conflict.
    assert_eq!(
        pull(None, None, &c1, None, Manual, false),
        PullDecision::Import
    );
    assert_eq!(
        pull(None, Some(&other), &c1, None, Auto, true),
        PullDecision::NameConflict {
            other_id: "o1".into()
        }
    );
    // Ours is gone but another app took the name: conflict, not an overwrite.
    assert_eq!(
        pull(None, Some(&other), &c1, Some(&c1), Auto, false),
        PullDecision::NameConflict {
            other_id: "o1".into()
        }
    );
    // Ours, renamed away, and another app now holds the name.
    assert_eq!(
        pull(Some(&mine), Some(&other), &c2, Some(&c1), Auto, false),
        PullDecision::NameConflict {
            other_id: "o1".into()
        }
    );
    // Ours at the newest commit.
    assert_eq!(
        pull(Some(&mine), Some(&mine), &c1, Some(&c1), Manual, true),
        PullDecision::UpToDate
    );
    // Ours, newer commit: Manual reports, a request or Auto replaces.
    assert_eq!(
        pull(Some(&mine), Some(&mine), &c2, Some(&c1), Manual, false),
        PullDecision::ReportUpdate
    );
    assert_eq!(
        pull(Some(&mine), Some(&mine), &c2, Some(&c1), Manual, true),
        PullDecision::Replace { id: "m1".into() }
    );
    assert_eq!(
        pull(Some(&mine), None, &c2, Some(&c1), Auto, false),
        PullDecision::Replace { id: "m1".into() }
    );
}

#[test]
fn missing_constants_are_those_neither_global_nor_secret_in_the_workspace() {
    let refs = vec![
        layout::Ref::Constant("region".into()),
        layout::Ref::Secret("api_key".into()),
        layout::Ref::Constant("api_key".into()),
    ];
    let defined = vec![
        WorkspaceConstant {
            name: "region".into(),
            kind: ConstantKind::Global,
        },
        WorkspaceConstant {
            name: "api_key".into(),
            kind: ConstantKind::Secret,
        },
    ];
    assert_eq!(
        missing_constants(refs, &defined),
        vec!["constants.api_key".to_string()]
    );
}
