use super::*;
use crate::layout::meta::{locate_app, AppLookup};
use crate::layout::normalize::content_digest;
use proptest::prelude::*;
use serde_json::json;

/// A repository tree as path -> bytes, with helpers to derive [`RepoState`] and apply plans
/// the way the git worker does.
#[derive(Debug, Clone, Default)]
struct Tree {
    files: BTreeMap<String, Vec<u8>>,
    commits: Vec<String>,
}

impl Tree {
    fn state(&self) -> RepoState {
        RepoState {
            has_head: !self.commits.is_empty(),
            meta_json: self.files.get(META_PATH).cloned(),
            root_entries: self
                .files
                .keys()
                .map(|path| path.split('/').next().unwrap().to_owned())
                .collect(),
            files: self.files.clone(),
        }
    }

    /// Like [`Tree::state`], but with only the files the plan asks for.
    fn minimal_state(&self, app_id: &str) -> RepoState {
        let mut state = self.state();
        let folders = folders_to_read(state.meta_json.as_deref(), app_id).unwrap();
        state.files.retain(|path, _| {
            folders
                .iter()
                .any(|folder| path.starts_with(&format!("{folder}/")))
        });
        state
    }

    fn apply(&mut self, plan: &PushPlan) {
        for path in &plan.deletes {
            assert!(self.files.remove(path).is_some(), "deleting absent {path}");
        }
        for (path, bytes) in &plan.writes {
            self.files.insert(path.clone(), bytes.clone());
        }
        self.commits.push(plan.commit_message.clone());
    }

    fn push(&mut self, request: &PushRequest<'_>) -> PushOutcome {
        let outcome = plan_push(&self.minimal_state(request.app_id), request).unwrap();
        // The full listing gives the same answer.
        assert_eq!(outcome, plan_push(&self.state(), request).unwrap());
        if let PushOutcome::Plan(plan) = &outcome {
            self.apply(plan);
        }
        outcome
    }

    fn text(&self, path: &str) -> String {
        String::from_utf8(self.files[path].clone()).unwrap()
    }
}

fn export(name: &str, version: &str, text: &str) -> Value {
    json!({
        "app": [{"definition": {"appV2": {
            "id": "39f9a222-5cf9-486d-9e9d-7ee9964752b1",
            "name": name,
            "updatedAt": "2024-03-01T10:22:33.123Z",
            "editingVersion": {"id": "d486cb0f-64bf-41c0-b445-c8308e87c1bf", "name": version},
            "components": [{"id": "6fdbe287-cffd-4d6d-a846-db5a003b6835", "name": "button1", "properties": {"text": {"value": text}}}],
            "appVersions": [{"id": "d486cb0f-64bf-41c0-b445-c8308e87c1bf", "name": version}]
        }}}],
        "tooljet_version": "3.16.0-ee-lts"
    })
}

fn date() -> jiff::Timestamp {
    "2024-03-01T10:22:33.123Z".parse().unwrap()
}

struct Push {
    app_id: &'static str,
    name: String,
    version_id: String,
    version: String,
    export: Value,
    message: String,
}

impl Push {
    fn new(app_id: &'static str, name: &str, version: &str, text: &str) -> Self {
        Push {
            app_id,
            name: name.to_owned(),
            version_id: format!("{version}-id"),
            version: version.to_owned(),
            export: export(name, version, text),
            message: "add filter to table".to_owned(),
        }
    }

    fn request(&self) -> PushRequest<'_> {
        PushRequest {
            app_id: self.app_id,
            app_name: &self.name,
            version_id: &self.version_id,
            version_name: &self.version,
            content: AppContent::Export(&self.export),
            message: &self.message,
            author: "Jane Doe",
            date: date(),
        }
    }
}

fn expect_plan(outcome: PushOutcome) -> PushPlan {
    match outcome {
        PushOutcome::Plan(plan) => plan,
        other => panic!("expected a plan, got {other:?}"),
    }
}

fn expect_refusal(outcome: PushOutcome) -> Refusal {
    match outcome {
        PushOutcome::Refused(refusal) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

const A: &str = "ab65b201-4207-4876-a8a6-fdcbf31661b6";
const B: &str = "0d0f5d47-3c3e-4d8e-9a53-cd3f2c1b7a10";

#[test]
fn first_push_to_an_empty_repository() {
    let mut tree = Tree::default();
    let push = Push::new(A, "Sales Dashboard", "v3", "Refresh");
    let plan = expect_plan(tree.push(&push.request()));
    assert_eq!(plan.kind, PushKind::Creation);
    // Root commit: bare message.
    assert_eq!(plan.commit_message, "App creation");
    assert_eq!(plan.meta_commit_message, "App creation");
    assert_eq!(plan.app_path, "Sales Dashboard/v3.json");
    assert!(plan.deletes.is_empty());
    let paths: Vec<_> = plan.writes.iter().map(|(path, _)| path.as_str()).collect();
    assert_eq!(paths, ["Sales Dashboard/v3.json", ".meta/meta.json"]);
    // The file is the export, JSON.stringify(x, null, 2), no trailing newline.
    assert_eq!(
        tree.files["Sales Dashboard/v3.json"],
        to_tooljet_json(&push.export).unwrap()
    );
    assert!(!tree.text("Sales Dashboard/v3.json").ends_with('\n'));
    assert_eq!(
        tree.text(META_PATH),
        format!(
            "{{\n  \"{A}\": {{\n    \"gitAppName\": \"Sales Dashboard\",\n    \"lastCommitMessage\": \"App creation\",\n    \"gitVersionId\": \"v3-id\",\n    \"lastpushDate\": \"2024-03-01T10:22:33.123Z\",\n    \"gitVersionName\": \"v3\",\n    \"lastCommitUser\": \"Jane Doe\"\n  }}\n}}"
        )
    );
    // Pull finds it.
    let located = locate_app(
        tree.files.get(META_PATH).map(Vec::as_slice),
        AppLookup::ByName("Sales Dashboard"),
    )
    .unwrap();
    assert_eq!(located.path, plan.app_path);
    assert_eq!(located.git_app_id, A);
}

#[test]
fn first_push_to_a_repository_with_history_is_prefixed() {
    let mut tree = Tree::default();
    tree.files.insert("README.md".into(), b"hello".to_vec());
    tree.commits.push("init".into());
    let push = Push::new(A, "Sales", "v1", "x");
    let plan = expect_plan(tree.push(&push.request()));
    assert_eq!(plan.commit_message, "Version v1 Of Sales: App creation");
    assert_eq!(plan.meta_commit_message, "App creation");
}

#[test]
fn unchanged_content_makes_no_commit() {
    let mut tree = Tree::default();
    let push = Push::new(A, "Sales", "v1", "x");
    expect_plan(tree.push(&push.request()));
    assert_eq!(
        tree.push(&push.request()),
        PushOutcome::NoChange {
            app_path: "Sales/v1.json".into()
        }
    );
    // A re-export from another instance: other UUIDs, timestamps and tooljet_version.
    let mut other = Push::new(A, "Sales", "v1", "x");
    let text = serde_json::to_string(&other.export)
        .unwrap()
        .replace(
            "39f9a222-5cf9-486d-9e9d-7ee9964752b1",
            "11111111-2222-4333-8444-555555555555",
        )
        .replace(
            "6fdbe287-cffd-4d6d-a846-db5a003b6835",
            "66666666-7777-4888-9999-000000000000",
        )
        .replace("2024-03-01T10:22:33.123Z", "2025-01-01T00:00:00.000Z")
        .replace("3.16.0-ee-lts", "3.20.0");
    other.export = serde_json::from_str(&text).unwrap();
    other.message = "something else".into();
    assert_ne!(content_digest(&other.export), "");
    assert!(matches!(
        tree.push(&other.request()),
        PushOutcome::NoChange { .. }
    ));
    assert_eq!(tree.commits.len(), 1);
}

#[test]
fn changed_content_uses_the_users_message() {
    let mut tree = Tree::default();
    expect_plan(tree.push(&Push::new(A, "Sales", "v1", "x").request()));
    let plan = expect_plan(tree.push(&Push::new(A, "Sales", "v1", "y").request()));
    assert_eq!(plan.kind, PushKind::Update);
    assert_eq!(
        plan.commit_message,
        "Version v1 Of Sales: add filter to table"
    );
    assert_eq!(plan.meta_commit_message, "add filter to table");
    assert!(plan.deletes.is_empty());
    assert!(tree.text("Sales/v1.json").contains("\"y\""));
    let located = locate_app(
        tree.files.get(META_PATH).map(Vec::as_slice),
        AppLookup::ByGitAppId(A),
    )
    .unwrap();
    assert_eq!(
        located.last_commit_message.as_deref(),
        Some("add filter to table")
    );
    // An empty message falls back to a default.
    let mut push = Push::new(A, "Sales", "v1", "z");
    push.message = "  ".into();
    let plan = expect_plan(tree.push(&push.request()));
    assert_eq!(plan.meta_commit_message, DEFAULT_UPDATE_MESSAGE);
}

#[test]
fn rename_moves_the_folder() {
    let mut tree = Tree::default();
    tree.commits.push("init".into());
    expect_plan(tree.push(&Push::new(A, "Old Name", "v1", "x").request()));
    tree.files
        .insert("Old Name/notes.md".into(), b"kept".to_vec());
    let plan = expect_plan(tree.push(&Push::new(A, "New Name", "v1", "x").request()));
    assert_eq!(plan.kind, PushKind::Rename);
    assert_eq!(
        plan.commit_message,
        "Version v1 Of New Name: App is renamed"
    );
    assert_eq!(plan.deletes, ["Old Name/notes.md", "Old Name/v1.json"]);
    assert!(tree.files.keys().all(|path| !path.starts_with("Old Name/")));
    assert_eq!(tree.files["New Name/notes.md"], b"kept");
    assert!(tree.files.contains_key("New Name/v1.json"));
    let meta = MetaFile::parse(&tree.files[META_PATH]).unwrap();
    assert_eq!(
        meta.entry(A).unwrap().unwrap().git_app_name.as_deref(),
        Some("New Name")
    );
    // Renamed and changed: the user's message.
    let plan = expect_plan(tree.push(&Push::new(A, "Third Name", "v1", "changed").request()));
    assert_eq!(plan.kind, PushKind::Rename);
    assert_eq!(plan.meta_commit_message, "add filter to table");
}

#[test]
fn rename_that_only_changes_case() {
    let mut tree = Tree::default();
    expect_plan(tree.push(&Push::new(A, "Sales", "v1", "x").request()));
    let plan = expect_plan(tree.push(&Push::new(A, "sales", "v1", "x").request()));
    assert_eq!(plan.kind, PushKind::Rename);
    assert_eq!(plan.deletes, ["Sales/v1.json"]);
    assert!(tree.files.contains_key("sales/v1.json"));
}

#[test]
fn new_version_replaces_the_file() {
    let mut tree = Tree::default();
    tree.commits.push("init".into());
    expect_plan(tree.push(&Push::new(A, "Sales", "v1", "x").request()));
    // A new version with the same content.
    let plan = expect_plan(tree.push(&Push::new(A, "Sales", "v2", "x").request()));
    assert_eq!(plan.kind, PushKind::VersionChange);
    assert_eq!(plan.commit_message, "Version v2 Of Sales: Version creation");
    assert_eq!(plan.deletes, ["Sales/v1.json"]);
    assert!(tree.files.contains_key("Sales/v2.json"));
    // A new version with changed content: the user's message, still one commit.
    let plan = expect_plan(tree.push(&Push::new(A, "Sales", "v3", "y").request()));
    assert_eq!(plan.kind, PushKind::VersionChange);
    assert_eq!(plan.meta_commit_message, "add filter to table");
    assert_eq!(plan.deletes, ["Sales/v2.json"]);
    // The same version renamed (same id).
    let mut push = Push::new(A, "Sales", "v3-final", "y");
    push.version_id = "v3-id".into();
    let plan = expect_plan(tree.push(&push.request()));
    assert_eq!(plan.kind, PushKind::VersionChange);
    assert_eq!(
        plan.meta_commit_message,
        "Version v3 of app Sales is renamed to v3-final"
    );
    assert_eq!(plan.deletes, ["Sales/v3.json"]);
    // A new version id under the same name overwrites the file in place.
    let mut push = Push::new(A, "Sales", "v3-final", "y");
    push.version_id = "other-id".into();
    let plan = expect_plan(tree.push(&push.request()));
    assert_eq!(plan.meta_commit_message, VERSION_CREATION_MESSAGE);
    assert!(plan.deletes.is_empty());
    let files: Vec<_> = tree.files.keys().cloned().collect();
    assert_eq!(files, [".meta/meta.json", "Sales/v3-final.json"]);
}

#[test]
fn rename_and_new_version_together() {
    let mut tree = Tree::default();
    expect_plan(tree.push(&Push::new(A, "Old", "v1", "x").request()));
    let plan = expect_plan(tree.push(&Push::new(A, "New", "v2", "x").request()));
    assert_eq!(plan.kind, PushKind::Rename);
    assert_eq!(plan.deletes, ["Old/v1.json"]);
    let files: Vec<_> = tree.files.keys().cloned().collect();
    assert_eq!(files, [".meta/meta.json", "New/v2.json"]);
}

#[test]
fn other_apps_folders_are_never_overwritten() {
    let mut tree = Tree::default();
    expect_plan(tree.push(&Push::new(A, "Sales", "v1", "x").request()));
    // Same name, exact.
    let refusal = expect_refusal(tree.push(&Push::new(B, "Sales", "v1", "y").request()));
    assert_eq!(
        refusal,
        Refusal::FolderClaimed {
            folder: "Sales".into(),
            other_app_id: A.into(),
            other_folder: "Sales".into()
        }
    );
    assert!(refusal.to_string().contains("rename this app in ToolJet"));
    // Case-insensitive and Windows-equivalent variants.
    for name in ["sales", "SALES", "Sales.", "Sales "] {
        let refusal = expect_refusal(tree.push(&Push::new(B, name, "v1", "y").request()));
        assert!(
            matches!(refusal, Refusal::FolderClaimed { .. }),
            "{name:?}: {refusal:?}"
        );
    }
    // Renaming into another app's folder.
    expect_plan(tree.push(&Push::new(B, "Inventory", "v1", "y").request()));
    let refusal = expect_refusal(tree.push(&Push::new(B, "SALES", "v1", "y").request()));
    assert!(matches!(refusal, Refusal::FolderClaimed { .. }));
    // Claimed in meta.json although the folder is gone from the tree.
    tree.files.remove("Sales/v1.json");
    let refusal = expect_refusal(tree.push(&Push::new(B, "Sales", "v1", "y").request()));
    assert!(matches!(refusal, Refusal::FolderClaimed { .. }));
}

#[test]
fn unowned_folders_and_files_are_never_overwritten() {
    let mut tree = Tree::default();
    tree.files.insert("Reports/readme.md".into(), b"x".to_vec());
    tree.files.insert("LICENSE".into(), b"x".to_vec());
    for name in ["Reports", "reports", "license"] {
        let refusal = expect_refusal(tree.push(&Push::new(A, name, "v1", "x").request()));
        assert!(
            matches!(&refusal, Refusal::FolderExists { existing, .. } if collision_key(existing) == collision_key(name)),
            "{refusal:?}"
        );
        assert!(refusal.to_string().contains("rename the app in ToolJet"));
    }
    // Not even by renaming into it.
    expect_plan(tree.push(&Push::new(A, "Mine", "v1", "x").request()));
    let refusal = expect_refusal(tree.push(&Push::new(A, "REPORTS", "v1", "x").request()));
    assert!(matches!(refusal, Refusal::FolderExists { .. }));
}

#[test]
fn an_existing_app_keeps_working_next_to_a_case_variant() {
    let mut tree = Tree::default();
    expect_plan(tree.push(&Push::new(A, "Sales", "v1", "x").request()));
    tree.files.insert("sales/v1.json".into(), b"{}".to_vec());
    let plan = expect_plan(tree.push(&Push::new(A, "Sales", "v1", "changed").request()));
    assert_eq!(plan.kind, PushKind::Update);
    assert_eq!(tree.files["sales/v1.json"], b"{}");
}

#[test]
fn unsafe_names_are_refused() {
    let mut tree = Tree::default();
    for (name, version) in [
        ("..", "v1"),
        ("a/b", "v1"),
        ("", "v1"),
        ("App", "../x"),
        ("App", ""),
    ] {
        let refusal = expect_refusal(tree.push(&Push::new(A, name, version, "x").request()));
        assert!(matches!(refusal, Refusal::Name(_)), "{refusal:?}");
    }
    let mut push = Push::new(A, "App", "v1", "x");
    push.app_id = "";
    assert_eq!(
        expect_refusal(tree.push(&push.request())),
        Refusal::EmptyAppId
    );
    assert!(tree.files.is_empty());
}

#[test]
fn unsafe_recorded_names_are_refused() {
    let mut tree = Tree::default();
    let meta = format!(
        r#"{{"{A}": {{"gitAppName": "../outside", "gitVersionName": "v1", "gitVersionId": "v1-id"}}}}"#
    );
    tree.files.insert(META_PATH.into(), meta.into_bytes());
    let refusal = expect_refusal(tree.push(&Push::new(A, "App", "v1", "x").request()));
    assert!(
        matches!(refusal, Refusal::RecordedNameUnsafe { .. }),
        "{refusal:?}"
    );
    let meta = format!(
        r#"{{"{A}": {{"gitAppName": "App", "gitVersionName": "../../v1", "gitVersionId": "v1-id"}}}}"#
    );
    tree.files.insert(META_PATH.into(), meta.into_bytes());
    let refusal = expect_refusal(tree.push(&Push::new(A, "App", "v1", "x").request()));
    assert!(matches!(refusal, Refusal::RecordedNameUnsafe { .. }));
}

#[test]
fn broken_meta_is_an_error_not_an_overwrite() {
    let mut state = RepoState {
        has_head: true,
        meta_json: Some(b"{ not json".to_vec()),
        ..RepoState::default()
    };
    state.root_entries.insert(".meta".into());
    let push = Push::new(A, "App", "v1", "x");
    let err = plan_push(&state, &push.request()).unwrap_err();
    assert!(matches!(err, PlanError::Meta(MetaError::Syntax { .. })));
    assert!(err.to_string().contains(".meta/meta.json"));
    state.meta_json = Some(format!(r#"{{"{A}": 3}}"#).into_bytes());
    assert_eq!(
        plan_push(&state, &push.request()).unwrap_err(),
        PlanError::Meta(MetaError::EntryNotObject { id: A.into() })
    );
}

#[test]
fn missing_listing_is_an_error() {
    let mut tree = Tree::default();
    expect_plan(tree.push(&Push::new(A, "Sales", "v1", "x").request()));
    let mut state = tree.state();
    state.files.clear();
    let err = plan_push(&state, &Push::new(A, "Sales", "v1", "y").request()).unwrap_err();
    assert_eq!(
        err,
        PlanError::FolderNotListed {
            folder: "Sales".into()
        }
    );
    let mut state = tree.state();
    state.files.insert("Sales/../x".into(), vec![]);
    assert!(matches!(
        plan_push(&state, &Push::new(A, "Sales", "v1", "y").request()).unwrap_err(),
        PlanError::UnsafeListing { .. }
    ));
}

#[test]
fn entry_without_folder_counts_as_creation_and_keeps_unknown_keys() {
    let mut tree = Tree::default();
    let meta = format!(r#"{{"{A}": {{"note": "keep me"}}}}"#);
    tree.files.insert(META_PATH.into(), meta.into_bytes());
    let plan = expect_plan(tree.push(&Push::new(A, "App", "v1", "x").request()));
    assert_eq!(plan.kind, PushKind::Creation);
    let value: Value = serde_json::from_slice(&tree.files[META_PATH]).unwrap();
    assert_eq!(value[A]["note"], "keep me");
    assert_eq!(value[A]["gitAppName"], "App");
}

#[test]
fn a_missing_file_is_rewritten() {
    let mut tree = Tree::default();
    expect_plan(tree.push(&Push::new(A, "Sales", "v1", "x").request()));
    tree.files.remove("Sales/v1.json");
    let plan = expect_plan(tree.push(&Push::new(A, "Sales", "v1", "x").request()));
    assert_eq!(plan.kind, PushKind::Update);
    assert!(tree.files.contains_key("Sales/v1.json"));
}

#[test]
fn renaming_out_of_a_shared_folder_leaves_the_other_apps_files() {
    let mut tree = Tree::default();
    // A repository where ToolJet let two apps share a folder (app recreated with a new id).
    let meta = format!(
        r#"{{"{A}": {{"gitAppName": "Shared", "gitVersionName": "v1", "gitVersionId": "v1-id"}}, "{B}": {{"gitAppName": "Shared", "gitVersionName": "v2", "gitVersionId": "v2-id"}}}}"#
    );
    tree.files.insert(META_PATH.into(), meta.into_bytes());
    tree.files.insert(
        "Shared/v1.json".into(),
        to_tooljet_json(&export("Shared", "v1", "x")).unwrap(),
    );
    tree.files.insert("Shared/v2.json".into(), b"{}".to_vec());
    // Updating in place is refused: the folder is another app's too.
    assert!(matches!(
        expect_refusal(tree.push(&Push::new(A, "Shared", "v1", "y").request())),
        Refusal::FolderClaimed { .. }
    ));
    let plan = expect_plan(tree.push(&Push::new(A, "Own", "v1", "x").request()));
    assert_eq!(plan.deletes, ["Shared/v1.json"]);
    assert_eq!(tree.files["Shared/v2.json"], b"{}");
}

/// The git worker's view must never contain writes outside the repository or into `.git`.
fn assert_paths_safe(plan: &PushPlan) {
    for path in plan
        .writes
        .iter()
        .map(|(path, _)| path)
        .chain(plan.deletes.iter())
    {
        assert!(
            is_safe_relative_path(path),
            "unsafe path {path:?} in {plan:?}"
        );
        assert!(!path.to_lowercase().starts_with(".git/"), "{path:?}");
    }
    let written: BTreeSet<_> = plan.writes.iter().map(|(path, _)| path).collect();
    assert!(plan.deletes.iter().all(|path| !written.contains(path)));
}

fn arb_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Sales".to_owned()),
        Just("sales".to_owned()),
        Just("Inventory".to_owned()),
        Just("Sales Dashboard".to_owned()),
        Just("..".to_owned()),
        Just("a/b".to_owned()),
        "[A-Za-z .]{1,6}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever sequence of pushes of two apps happens, an app's push never touches the other
    /// app's folder or meta entry, paths stay safe, and a repeated push is a no-op.
    #[test]
    fn pushes_never_touch_the_other_app(
        steps in prop::collection::vec(
            (any::<bool>(), arb_name(), prop_oneof![Just("v1"), Just("v2"), Just("V1")], prop_oneof![Just("x"), Just("y")]),
            1..12,
        )
    ) {
        let mut tree = Tree::default();
        for (is_a, name, version, text) in steps {
            let (me, other) = if is_a { (A, B) } else { (B, A) };
            let push = Push::new(me, &name, version, text);
            let before = tree.clone();
            let other_entry = before
                .files
                .get(META_PATH)
                .and_then(|bytes| MetaFile::parse(bytes).unwrap().raw_entry(other).map(str::to_owned));
            let other_folder = other_entry.as_ref().and_then(|_| {
                MetaFile::parse(&before.files[META_PATH]).unwrap().entry(other).unwrap().unwrap().git_app_name
            });
            match tree.push(&push.request()) {
                PushOutcome::Plan(plan) => {
                    assert_paths_safe(&plan);
                    let after = MetaFile::parse(&tree.files[META_PATH]).unwrap();
                    prop_assert_eq!(after.raw_entry(other).map(str::to_owned), other_entry);
                    if let Some(folder) = other_folder {
                        let prefix = format!("{folder}/");
                        let files = |t: &Tree| -> Vec<(String, Vec<u8>)> {
                            t.files.iter().filter(|(p, _)| p.starts_with(&prefix)).map(|(p, b)| (p.clone(), b.clone())).collect()
                        };
                        prop_assert_eq!(files(&before), files(&tree));
                    }
                    // Pushing the same thing again changes nothing.
                    let again = tree.push(&push.request());
                    prop_assert!(matches!(again, PushOutcome::NoChange { .. }), "{:?}", again);
                }
                PushOutcome::NoChange { .. } | PushOutcome::Refused(_) => {
                    prop_assert_eq!(&before.files, &tree.files);
                }
            }
        }
    }
}
