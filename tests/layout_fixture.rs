//! The layout module against a repository as ToolJet's own GitSync writes it.
//!
//! `tests/fixtures/tooljet-repo/` holds two apps pushed by ToolJet (reference §1a): the files
//! were produced by node with `JSON.stringify(x, null, 2)` (no trailing newline), the way
//! ToolJet's `writeMetaFile` and `WriteAppFile` write them.

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use tooljet_gitsync_operator::layout::{
    app_from_export, content_digest, locate_app, plan_push, same_content, to_tooljet_json,
    workspace_references, AppContent, AppLookup, MetaFile, PushKind, PushOutcome, PushPlan,
    PushRequest, Ref, Refusal, RepoState, META_PATH,
};

const SALES_ID: &str = "ab65b201-4207-4876-a8a6-fdcbf31661b6";
const INVENTORY_ID: &str = "0d0f5d47-3c3e-4d8e-9a53-cd3f2c1b7a10";
const PORTAL_ID: &str = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9";

fn fixture_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tooljet-repo")
}

/// Every file of the fixture, keyed by repo-relative path with `/`.
fn load_fixture() -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path.strip_prefix(root).unwrap();
                let key = relative
                    .components()
                    .map(|c| c.as_os_str().to_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.insert(key, std::fs::read(&path).unwrap());
            }
        }
    }
    let root = fixture_root();
    let mut files = BTreeMap::new();
    walk(&root, &root, &mut files);
    files
}

fn state(files: &BTreeMap<String, Vec<u8>>) -> RepoState {
    RepoState {
        has_head: true,
        meta_json: files.get(META_PATH).cloned(),
        root_entries: files
            .keys()
            .map(|path| path.split('/').next().unwrap().to_owned())
            .collect(),
        files: files.clone(),
    }
}

fn apply(files: &BTreeMap<String, Vec<u8>>, plan: &PushPlan) -> BTreeMap<String, Vec<u8>> {
    let mut files = files.clone();
    for path in &plan.deletes {
        assert!(files.remove(path).is_some(), "{path}");
    }
    for (path, bytes) in &plan.writes {
        files.insert(path.clone(), bytes.clone());
    }
    files
}

fn export_of(files: &BTreeMap<String, Vec<u8>>, path: &str) -> Value {
    serde_json::from_slice(&files[path]).unwrap()
}

fn date() -> jiff::Timestamp {
    "2024-04-02T09:08:07.654321Z".parse().unwrap()
}

fn request<'a>(
    app_id: &'a str,
    name: &'a str,
    version_id: &'a str,
    version: &'a str,
    export: &'a Value,
) -> PushRequest<'a> {
    PushRequest {
        app_id,
        app_name: name,
        version_id,
        version_name: version,
        content: AppContent::Export(export),
        message: "Add region filter",
        author: "Jane Doe",
        date: date(),
    }
}

fn plan(outcome: PushOutcome) -> PushPlan {
    match outcome {
        PushOutcome::Plan(plan) => plan,
        other => panic!("expected a plan, got {other:?}"),
    }
}

/// Files under `folder/`.
fn folder(files: &BTreeMap<String, Vec<u8>>, folder: &str) -> BTreeMap<String, Vec<u8>> {
    let prefix = format!("{folder}/");
    files
        .iter()
        .filter(|(path, _)| path.starts_with(&prefix))
        .map(|(path, bytes)| (path.clone(), bytes.clone()))
        .collect()
}

#[test]
fn fixture_is_read_as_tooljet_wrote_it() {
    let files = load_fixture();
    let paths: Vec<_> = files.keys().map(String::as_str).collect();
    assert_eq!(
        paths,
        [
            ".meta/meta.json",
            "Inventory/v1.json",
            "Sales Dashboard/v3.json"
        ]
    );
    // Our writer reproduces ToolJet's bytes exactly.
    let meta = MetaFile::parse(&files[META_PATH]).unwrap();
    assert_eq!(meta.to_bytes().unwrap(), files[META_PATH]);
    for path in ["Inventory/v1.json", "Sales Dashboard/v3.json"] {
        assert_eq!(
            to_tooljet_json(&export_of(&files, path)).unwrap(),
            files[path],
            "{path}"
        );
    }
    // Pull finds both apps, by name and by id, and the exports agree with meta.json.
    for (id, name, path) in [
        (SALES_ID, "Sales Dashboard", "Sales Dashboard/v3.json"),
        (INVENTORY_ID, "Inventory", "Inventory/v1.json"),
    ] {
        let by_name = locate_app(Some(&files[META_PATH]), AppLookup::ByName(name)).unwrap();
        let by_id = locate_app(Some(&files[META_PATH]), AppLookup::ByGitAppId(id)).unwrap();
        assert_eq!(by_name, by_id);
        assert_eq!(by_name.path, path);
        let app = app_from_export(&export_of(&files, path)).unwrap();
        assert_eq!(app.id, id);
        assert_eq!(app.name, name);
        assert_eq!(app.version_id, by_id.version_id);
        assert_eq!(app.version_name, by_id.version_name);
        assert_eq!(app.tooljet_version.as_deref(), Some("2.50.3"));
    }
    let refs = workspace_references(&export_of(&files, "Sales Dashboard/v3.json"));
    assert_eq!(
        refs,
        BTreeSet::from([
            Ref::Constant("API_BASE".into()),
            Ref::Constant("REGION".into()),
            Ref::Secret("SALES_TOKEN".into()),
        ])
    );
}

#[test]
fn pushing_a_third_app_leaves_the_others_byte_for_byte() {
    let files = load_fixture();
    let mut export = export_of(&files, "Inventory/v1.json");
    export["app"][0]["definition"]["appV2"]["id"] = json!(PORTAL_ID);
    export["app"][0]["definition"]["appV2"]["name"] = json!("Customer Portal");
    let plan = plan(
        plan_push(
            &state(&files),
            &request(PORTAL_ID, "Customer Portal", "portal-v1", "v1", &export),
        )
        .unwrap(),
    );
    assert_eq!(plan.kind, PushKind::Creation);
    assert_eq!(
        plan.commit_message,
        "Version v1 Of Customer Portal: App creation"
    );
    assert!(plan.deletes.is_empty());
    let written: Vec<_> = plan.writes.iter().map(|(path, _)| path.as_str()).collect();
    assert_eq!(written, ["Customer Portal/v1.json", ".meta/meta.json"]);
    let after = apply(&files, &plan);
    for other in ["Sales Dashboard", "Inventory"] {
        assert_eq!(folder(&after, other), folder(&files, other));
    }
    // meta.json: the old text with one entry appended, exactly as JSON.stringify would.
    let old = String::from_utf8(files[META_PATH].clone()).unwrap();
    let new = String::from_utf8(after[META_PATH].clone()).unwrap();
    let expected = format!(
        "{},\n  \"{PORTAL_ID}\": {{\n    \"gitAppName\": \"Customer Portal\",\n    \"lastCommitMessage\": \"App creation\",\n    \"gitVersionId\": \"portal-v1\",\n    \"lastpushDate\": \"2024-04-02T09:08:07.654Z\",\n    \"gitVersionName\": \"v1\",\n    \"lastCommitUser\": \"Jane Doe\"\n  }}\n}}",
        old.strip_suffix("\n}").unwrap()
    );
    assert_eq!(new, expected);
}

#[test]
fn updating_one_app_leaves_the_other_byte_for_byte() {
    let files = load_fixture();
    let mut export = export_of(&files, "Inventory/v1.json");
    export["app"][0]["definition"]["appV2"]["components"][0]["properties"]["text"]["value"] =
        json!("Stock levels (live)");
    let plan = plan(
        plan_push(
            &state(&files),
            &request(
                INVENTORY_ID,
                "Inventory",
                "5b7c6a0e-8f0e-4d2a-9c41-2e9f0b6d3a77",
                "v1",
                &export,
            ),
        )
        .unwrap(),
    );
    assert_eq!(plan.kind, PushKind::Update);
    assert_eq!(
        plan.commit_message,
        "Version v1 Of Inventory: Add region filter"
    );
    let after = apply(&files, &plan);
    assert_eq!(
        folder(&after, "Sales Dashboard"),
        folder(&files, "Sales Dashboard")
    );
    let before_meta = MetaFile::parse(&files[META_PATH]).unwrap();
    let after_meta = MetaFile::parse(&after[META_PATH]).unwrap();
    assert_eq!(
        after_meta.raw_entry(SALES_ID),
        before_meta.raw_entry(SALES_ID)
    );
    // The Sales entry's text, and everything before the Inventory entry, is unchanged.
    let old = String::from_utf8(files[META_PATH].clone()).unwrap();
    let new = String::from_utf8(after[META_PATH].clone()).unwrap();
    let split = old.find(&format!("\"{INVENTORY_ID}\"")).unwrap();
    assert_eq!(new[..split], old[..split]);
    let entry = after_meta.entry(INVENTORY_ID).unwrap().unwrap();
    assert_eq!(
        entry.last_commit_message.as_deref(),
        Some("Add region filter")
    );
    assert_eq!(
        entry.last_push_date.as_deref(),
        Some("2024-04-02T09:08:07.654Z")
    );
    assert_eq!(
        after["Inventory/v1.json"],
        to_tooljet_json(&export).unwrap()
    );
}

#[test]
fn a_reexport_from_another_instance_is_no_change() {
    let files = load_fixture();
    let original = export_of(&files, "Sales Dashboard/v3.json");
    // What another instance exports after importing the app: new UUIDs everywhere (consistently),
    // new timestamps and server version.
    let mut text = serde_json::to_string(&original).unwrap();
    for (n, uuid) in uuids(&text).into_iter().enumerate() {
        text = text.replace(&uuid, &format!("00000000-0000-4000-8000-{n:012}"));
    }
    let mut reexport: Value = serde_json::from_str(&text).unwrap();
    reexport["tooljet_version"] = json!("3.16.0-ee-lts");
    reexport["app"][0]["definition"]["appV2"]["updatedAt"] = json!("2025-06-01T00:00:00.000Z");
    assert!(same_content(&original, &reexport));
    assert_eq!(content_digest(&original), content_digest(&reexport));
    let outcome = plan_push(
        &state(&files),
        &request(
            SALES_ID,
            "Sales Dashboard",
            "ab40f07f-96c7-4283-afb8-8cd88df7b195",
            "v3",
            &reexport,
        ),
    )
    .unwrap();
    assert_eq!(
        outcome,
        PushOutcome::NoChange {
            app_path: "Sales Dashboard/v3.json".into()
        }
    );
}

#[test]
fn renaming_one_app_leaves_the_other_byte_for_byte() {
    let files = load_fixture();
    let mut export = export_of(&files, "Inventory/v1.json");
    export["app"][0]["definition"]["appV2"]["name"] = json!("Stock");
    let plan = plan(
        plan_push(
            &state(&files),
            &request(
                INVENTORY_ID,
                "Stock",
                "5b7c6a0e-8f0e-4d2a-9c41-2e9f0b6d3a77",
                "v1",
                &export,
            ),
        )
        .unwrap(),
    );
    assert_eq!(plan.kind, PushKind::Rename);
    assert_eq!(plan.meta_commit_message, "App is renamed");
    assert_eq!(plan.deletes, ["Inventory/v1.json"]);
    let after = apply(&files, &plan);
    assert_eq!(
        folder(&after, "Sales Dashboard"),
        folder(&files, "Sales Dashboard")
    );
    assert!(folder(&after, "Inventory").is_empty());
    assert_eq!(
        MetaFile::parse(&after[META_PATH])
            .unwrap()
            .raw_entry(SALES_ID),
        MetaFile::parse(&files[META_PATH])
            .unwrap()
            .raw_entry(SALES_ID)
    );
    let located = locate_app(Some(&after[META_PATH]), AppLookup::ByName("Stock")).unwrap();
    assert_eq!(located.path, "Stock/v1.json");
}

#[test]
fn another_app_cannot_take_an_existing_folder() {
    let files = load_fixture();
    let export = export_of(&files, "Inventory/v1.json");
    for name in ["Sales Dashboard", "sales dashboard", "INVENTORY"] {
        let outcome = plan_push(
            &state(&files),
            &request(PORTAL_ID, name, "portal-v1", "v1", &export),
        )
        .unwrap();
        assert!(
            matches!(outcome, PushOutcome::Refused(Refusal::FolderClaimed { .. })),
            "{name}: {outcome:?}"
        );
    }
}

/// Distinct UUIDs of a text, in order of first appearance.
fn uuids(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let bytes = text.as_bytes();
    let is_hex = |b: &u8| b.is_ascii_hexdigit();
    for start in 0..bytes.len().saturating_sub(35) {
        let candidate = &bytes[start..start + 36];
        let dashes = [8, 13, 18, 23];
        let ok = candidate.iter().enumerate().all(|(i, b)| {
            if dashes.contains(&i) {
                *b == b'-'
            } else {
                is_hex(b)
            }
        });
        if ok {
            let uuid = text[start..start + 36].to_owned();
            if !found.contains(&uuid) {
                found.push(uuid);
            }
        }
    }
    found
}
