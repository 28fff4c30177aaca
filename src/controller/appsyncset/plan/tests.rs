use super::*;
use crate::api::{AppSyncSetSpec, AppSyncStatus, ConfigRef, Ownership};
use std::time::{Duration, Instant};

/// A pass in which no missing app is kept.
fn plan(
    set: &AppSyncSet,
    apps: Option<&[FoundApp]>,
    children: &[&AppSync],
    others: &[&AppSync],
) -> SetPlan {
    super::plan(set, apps, children, others, &BTreeSet::new())
}

fn set(direction: Direction) -> AppSyncSet {
    let mut s = AppSyncSet::new(
        "sales-backup",
        AppSyncSetSpec {
            git_sync_config_ref: ConfigRef {
                name: "sales".into(),
                namespace: None,
            },
            direction,
            apps: AppSelector::default(),
            template: Default::default(),
            suspend: false,
        },
    );
    s.metadata.namespace = Some("team".into());
    s.metadata.uid = Some("set-uid".into());
    s.metadata.labels = Some(
        [
            ("e2e-shard", "a"),
            ("app.kubernetes.io/instance", "argo-app"),
            ("argocd.argoproj.io/instance", "argo-app"),
            ("kustomize.toolkit.fluxcd.io/name", "apps"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into(),
    );
    s
}

fn app(id: &str, name: &str) -> FoundApp {
    FoundApp {
        identity: id.into(),
        name: name.into(),
    }
}

fn hand_written(name: &str, app: &str) -> AppSync {
    let mut a = AppSync::new(
        name,
        AppSyncSpec {
            git_sync_config_ref: ConfigRef {
                name: "sales".into(),
                namespace: None,
            },
            app: app.into(),
            direction: Direction::Push,
            push: None,
            pull: None,
            suspend: false,
        },
    );
    a.metadata.namespace = Some("team".into());
    a
}

#[test]
fn names_are_dns_labels_readable_and_bounded() {
    let h = identity_hash("3F9A-uuid");
    assert_eq!(
        h,
        identity_hash("3f9a-UUID"),
        "ids compare case-insensitively"
    );
    assert_eq!(h.len(), 16);
    let n = child_name("sales-backup", "Orders Dashboard (v2)", &h);
    assert_eq!(n, format!("sales-backup-orders-dashboard-v2-{}", &h[..8]));
    for (set, app) in [
        ("s", "名前だけ"),
        ("s", "---"),
        ("x".repeat(200).as_str(), "y".repeat(200).as_str()),
        ("UPPER.case", "Ünïcödé / slash"),
    ] {
        let n = child_name(set, app, &h);
        assert!(n.len() <= 63, "{n}");
        assert!(n
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        assert!(
            !n.starts_with('-') && !n.ends_with('-') && !n.contains("--"),
            "{n}"
        );
        assert!(n.ends_with(&h[..8]));
    }
    let mut s = set(Direction::Push);
    s.metadata.name = Some("x".repeat(100));
    let f = fallback_name(&s, "3f9a-uuid");
    assert!(f.len() <= 63 && f.starts_with(&"x".repeat(30)), "{f}");
    s.metadata.uid = Some("another-set".into());
    assert_ne!(
        f,
        fallback_name(&s, "3f9a-uuid"),
        "sets cut to one prefix still differ"
    );
    assert!(label_value(&"y".repeat(253)).len() <= 63);
}

#[test]
fn globs_include_and_exclude_by_name() {
    let sel = selector(&AppSelector {
        include: vec!["Sales *".into(), "Orders".into()],
        exclude: vec!["* (old)".into()],
    })
    .unwrap();
    assert!(sel.selects("Sales Dashboard"));
    assert!(sel.selects("Orders"));
    assert!(!sel.selects("Orders v2"));
    assert!(!sel.selects("Sales Dashboard (old)"));
    assert!(selector(&AppSelector::default()).unwrap().selects("a/b c"));
    let bad = selector(&AppSelector {
        include: vec!["[".into()],
        exclude: vec![],
    });
    let p = bad.err().unwrap();
    assert_eq!(p.reason, Reason::InvalidAppSelector);
    assert!(p.stalled && p.message.contains("\"[\""));
    let picked = select(
        vec![app("b", "B"), app("a", "A"), app("A", "A again")],
        &selector(&AppSelector::default()).unwrap(),
    );
    assert_eq!(
        picked,
        vec![app("a", "A"), app("b", "B")],
        "one per identity"
    );
}

#[test]
fn new_apps_get_appsyncs_that_follow_the_template() {
    let mut s = set(Direction::Push);
    s.spec.template.push = Some(crate::api::PushSpec {
        commit_message: Some("Backup".into()),
        ..Default::default()
    });
    s.spec.template.pull = Some(Default::default());
    let apps = [app("id-1", "Orders")];
    let p = plan(&s, Some(&apps), &[], &[]);
    assert_eq!(p.create.len(), 1);
    let c = &p.create[0];
    assert_eq!(c.spec.app, "id:id-1");
    assert_eq!(c.spec.direction, Direction::Push);
    assert_eq!(
        c.spec.push.as_ref().unwrap().commit_message.as_deref(),
        Some("Backup")
    );
    assert!(c.spec.pull.is_none(), "only the direction's settings");
    assert!(is_child(c, &s));
    assert_eq!(c.labels()["e2e-shard"], "a", "the set's labels are carried");
    for tracking in [
        "app.kubernetes.io/instance",
        "argocd.argoproj.io/instance",
        "kustomize.toolkit.fluxcd.io/name",
    ] {
        assert!(
            !c.labels().contains_key(tracking),
            "{tracking}: GitOps tools would claim the generated AppSync"
        );
    }
    assert_eq!(c.labels()[APP_SYNC_SET_LABEL], "sales-backup");
    assert_eq!(c.annotations()[APP_NAME_ANNOTATION], "Orders");
    assert_eq!(p.covered.len(), 1);
    assert!(p.delete.is_empty() && p.revert.is_empty());
}

#[test]
fn a_renamed_app_keeps_its_appsync_and_name() {
    let s = set(Direction::Push);
    let first = plan(&s, Some(&[app("id-1", "Orders")]), &[], &[]);
    let mut child = first.create[0].clone();
    let name = child.name_any();
    let p = plan(&s, Some(&[app("id-1", "Orders (EU)")]), &[&child], &[]);
    assert!(p.create.is_empty() && p.delete.is_empty());
    // Only the recorded name annotation changes.
    assert_eq!(p.revert.len(), 1);
    assert_eq!(p.revert[0].name_any(), name);
    assert_eq!(p.covered[0].app_sync, name);
    child = p.revert[0].clone();
    let p = plan(&s, Some(&[app("id-1", "Orders (EU)")]), &[&child], &[]);
    assert!(p.revert.is_empty(), "in step now");
}

#[test]
fn hand_edits_are_reverted_but_the_users_annotations_kept() {
    let s = set(Direction::Push);
    let mut child = plan(&s, Some(&[app("id-1", "Orders")]), &[], &[]).create[0].clone();
    child
        .annotations_mut()
        .insert(PULL_REQUESTED_ANNOTATION.into(), "1".into());
    assert!(!drifted(
        &child,
        &desired(&s, &app("id-1", "Orders"), &child.name_any())
    ));
    child.spec.push = Some(crate::api::PushSpec {
        version: Some("v9".into()),
        ..Default::default()
    });
    let p = plan(&s, Some(&[app("id-1", "Orders")]), &[&child], &[]);
    assert_eq!(p.revert.len(), 1);
    assert!(p.revert[0].spec.push.is_none());
    let mut relabelled = p.revert[0].clone();
    relabelled.labels_mut().remove(APP_SYNC_SET_LABEL);
    let p = plan(&s, Some(&[app("id-1", "Orders")]), &[&relabelled], &[]);
    assert_eq!(p.revert.len(), 1, "a removed label is put back");
}

#[test]
fn apps_gone_or_deselected_lose_their_appsync_only() {
    let s = set(Direction::Push);
    let made = plan(&s, Some(&[app("id-1", "A"), app("id-2", "B")]), &[], &[]).create;
    let refs: Vec<&AppSync> = made.iter().collect();
    let p = plan(&s, Some(&[app("id-2", "B")]), &refs, &[]);
    assert_eq!(p.delete, vec![(made[0].name_any(), "A".to_string())]);
    let p = plan(&s, Some(&[]), &refs, &[]);
    assert_eq!(p.delete.len(), 2);
    assert!(p.covered.is_empty());
}

#[test]
fn a_hand_written_appsync_wins() {
    let s = set(Direction::Push);
    let apps = [app("id-1", "Orders"), app("id-2", "Sales")];
    let by_name = hand_written("mine", "Orders");
    let p = plan(&s, Some(&apps), &[], &[&by_name]);
    assert_eq!(p.create.len(), 1);
    assert_eq!(p.create[0].spec.app, "id:id-2");
    let overlap = p.covered.iter().find(|c| !c.generated).unwrap();
    assert_eq!(overlap.app_sync, "mine");
    // By id, or by what it owns.
    let by_id = hand_written("mine", "id:ID-2");
    let mut by_owner = hand_written("also-mine", "Old name");
    by_owner.status = Some(AppSyncStatus {
        owned: Some(Ownership {
            direction: Some(Direction::Push),
            app_id: Some("id-1".into()),
            git_app_id: None,
        }),
        ..Default::default()
    });
    let p = plan(&s, Some(&apps), &[], &[&by_id, &by_owner]);
    assert!(p.create.is_empty());
    // Written after the set generated one: the generated one goes.
    let made = plan(&s, Some(&apps), &[], &[]).create;
    let refs: Vec<&AppSync> = made.iter().collect();
    let p = plan(&s, Some(&apps), &refs, &[&by_name]);
    assert_eq!(p.delete.len(), 1);
    assert_eq!(p.delete[0].1, "Orders");
}

#[test]
fn of_two_sets_the_older_appsync_stays() {
    let a = set(Direction::Push);
    let mut b = set(Direction::Push);
    b.metadata.name = Some("other-set".into());
    b.metadata.uid = Some("other-uid".into());
    let apps = [app("id-1", "Orders")];
    let mut ours = plan(&a, Some(&apps), &[], &[]).create[0].clone();
    let mut theirs = plan(&b, Some(&apps), &[], &[]).create[0].clone();
    let t = |s: &str| k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(s.parse().unwrap());
    ours.metadata.creation_timestamp = Some(t("2026-01-01T00:00:00Z"));
    theirs.metadata.creation_timestamp = Some(t("2026-01-02T00:00:00Z"));
    let p = plan(&a, Some(&apps), &[&ours], &[&theirs]);
    assert!(p.delete.is_empty() && p.covered[0].generated);
    let p = plan(&b, Some(&apps), &[&theirs], &[&ours]);
    assert_eq!(p.delete.len(), 1);
    assert!(!p.covered[0].generated);
}

#[test]
fn a_suspended_set_only_suspends_its_appsyncs() {
    let mut s = set(Direction::Pull);
    let made = plan(&s, Some(&[app("g-1", "A")]), &[], &[]).create;
    let refs: Vec<&AppSync> = made.iter().collect();
    s.spec.suspend = true;
    let p = plan(&s, None, &refs, &[]);
    assert!(p.create.is_empty() && p.delete.is_empty());
    assert_eq!(p.revert.len(), 1);
    assert!(p.revert[0].spec.suspend);
    assert_eq!(p.covered.len(), 1);
}

#[test]
fn appsyncs_with_an_owner_reference_of_another_set_are_not_ours() {
    let s = set(Direction::Push);
    let mut forged = hand_written("forged", "Orders");
    forged
        .labels_mut()
        .insert(APP_SYNC_SET_LABEL.into(), "sales-backup".into());
    assert!(
        !is_child(&forged, &s),
        "a label alone does not make a child"
    );
}

#[test]
fn an_app_missing_once_keeps_its_appsync_until_the_grace_passes() {
    let s = set(Direction::Pull);
    let made = plan(&s, Some(&[app("g-1", "A"), app("g-2", "B")]), &[], &[]).create;
    let refs: Vec<&AppSync> = made.iter().collect();
    let mut missing = BTreeMap::new();
    let t0 = Instant::now();
    let grace = Duration::from_secs(10);
    let listed = [app("g-2", "B")];
    let keep = within_grace(&listed, &refs, &mut missing, t0, grace);
    assert_eq!(keep, BTreeSet::from([identity_hash("g-1")]));
    let p = super::plan(&s, Some(&listed), &refs, &[], &keep);
    assert!(p.delete.is_empty(), "one odd listing deletes nothing");
    assert_eq!(p.covered.len(), 2, "the kept app is still counted");
    // Back in the next listing: forgotten.
    let both = [app("g-1", "A"), app("g-2", "B")];
    assert!(within_grace(&both, &refs, &mut missing, t0 + grace, grace).is_empty());
    assert!(missing.is_empty());
    // Missing for the whole grace: it goes.
    within_grace(&listed, &refs, &mut missing, t0, grace);
    let keep = within_grace(&listed, &refs, &mut missing, t0 + grace, grace);
    assert!(keep.is_empty());
    let p = super::plan(&s, Some(&listed), &refs, &[], &keep);
    assert_eq!(p.delete, vec![(made[0].name_any(), "A".to_string())]);
}

#[test]
fn copies_and_edited_identity_labels_are_put_right() {
    let s = set(Direction::Push);
    let apps = [app("id-1", "Orders")];
    let mut first = plan(&s, Some(&apps), &[], &[]).create[0].clone();
    first.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-01-01T00:00:00Z".parse().unwrap(),
    ));
    let mut copy = first.clone();
    copy.metadata.name = Some("copy".into());
    copy.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-01-02T00:00:00Z".parse().unwrap(),
    ));
    let p = plan(&s, Some(&apps), &[&copy, &first], &[]);
    assert_eq!(
        p.delete,
        vec![("copy".to_string(), String::new())],
        "the newer copy goes"
    );
    assert!(p.create.is_empty());
    // A hand-edited identity label: reverted, not taken for another app.
    let mut edited = first.clone();
    edited
        .labels_mut()
        .insert(APP_IDENTITY_LABEL.into(), "0000000000000000".into());
    let p = plan(&s, Some(&apps), &[&edited], &[]);
    assert!(p.delete.is_empty() && p.create.is_empty());
    assert_eq!(p.revert.len(), 1);
    assert_eq!(
        p.revert[0].labels()[APP_IDENTITY_LABEL],
        identity_hash("id-1")
    );
}

#[test]
fn identities_an_appsync_cannot_name_are_left_out() {
    let all = selector(&AppSelector::default()).unwrap();
    let picked = select(
        vec![
            app(&"x".repeat(300), "Long"),
            app("bad\nid", "Control"),
            app(" ", "Blank"),
            app("ok", &"n".repeat(1000)),
        ],
        &all,
    );
    assert_eq!(picked.len(), 1);
    assert!(picked[0].name.len() <= 253 + '…'.len_utf8());
}
