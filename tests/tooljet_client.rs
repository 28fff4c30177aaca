//! The ToolJet client against the ToolJet emulator (both auth modes, every operation and error
//! class), `replace_app`'s failure paths, the emulator's own behaviour, and that credentials
//! never show up in errors, Debug output or logs. Everything listens on 127.0.0.1 only.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use secrecy::SecretString;
use serde_json::{json, Value};
use tooljet_gitsync_operator::tooljet::{
    AppSummary, Client, ClientOptions, ConstantKind, Credentials, Error, Workspace,
};
use tooljet_gitsync_testkit::emulator::{Emulator, EmulatorConfig, Fault};

// ---- helpers ------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Token,
    Session,
}

const MODES: [Mode; 2] = [Mode::Token, Mode::Session];

fn fast() -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        retries: 2,
        backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        ..ClientOptions::default()
    }
}

async fn emulator() -> Emulator {
    Emulator::start(EmulatorConfig::default()).await.unwrap()
}

async fn emulator_with(f: impl FnOnce(&mut EmulatorConfig)) -> Emulator {
    let mut c = EmulatorConfig::default();
    f(&mut c);
    Emulator::start(c).await.unwrap()
}

fn credentials(emu: &Emulator, mode: Mode) -> Credentials {
    match mode {
        Mode::Token => Credentials::Token(SecretString::from(emu.token().unwrap())),
        Mode::Session => Credentials::Session {
            email: emu.email().unwrap(),
            password: SecretString::from(emu.password().unwrap()),
        },
    }
}

fn client(emu: &Emulator, mode: Mode) -> Client {
    Client::with_options(&emu.url(), credentials(emu, mode), fast()).unwrap()
}

fn client_with(emu: &Emulator, mode: Mode, options: ClientOptions) -> Client {
    Client::with_options(&emu.url(), credentials(emu, mode), options).unwrap()
}

fn default_ws(emu: &Emulator) -> Workspace {
    let w = emu.workspace();
    Workspace {
        id: w.id,
        name: w.name,
        slug: Some(w.slug),
    }
}

fn count(emu: &Emulator, method: &str, path_prefix: &str) -> usize {
    emu.requests()
        .iter()
        .filter(|r| r.method == method && r.path.starts_with(path_prefix))
        .count()
}

fn no_temp_apps(emu: &Emulator) {
    let leftovers: Vec<String> = emu
        .apps()
        .into_iter()
        .filter(|a| a.name.starts_with("__gitsync_"))
        .map(|a| a.name)
        .collect();
    assert!(leftovers.is_empty(), "temporary apps left: {leftovers:?}");
}

/// An export of a fresh sample app, produced by the emulator, with the given version string.
fn foreign_export(emu: &Emulator, title: &str, version: &str) -> Value {
    let ws = emu.workspaces()[1].id.clone();
    let app = emu.create_app_in(&ws, title, None).unwrap();
    let mut export = emu.export_of(&app.id).unwrap();
    emu.delete_app(&app.id);
    export["tooljet_version"] = json!(version);
    export
}

fn component_names(export: &Value) -> Vec<String> {
    let mut names: Vec<String> = export["app"][0]["definition"]["appV2"]["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

fn raw_http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A loopback HTTP server answering every request with `status` and `body`.
async fn canned_server(status: u16, body: &'static str, content_type: &'static str) -> String {
    use axum::http::StatusCode;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move || async move {
        (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", content_type)],
            body,
        )
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn assert_no_secret(text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "secret leaked into: {text}");
    }
}

// ---- reading --------------------------------------------------------------------------------

#[tokio::test]
async fn reads_workspaces_apps_and_exports_in_both_modes() {
    let emu = emulator().await;
    let sales = emu.create_app("Sales Dashboard", None).unwrap();
    emu.add_version(&sales.id, "v2").unwrap();
    emu.create_app("Inventory", None).unwrap();
    for mode in MODES {
        let c = client(&emu, mode);
        assert_eq!(
            c.auth_mode(),
            if mode == Mode::Token {
                "token"
            } else {
                "session"
            }
        );
        assert_eq!(c.server_version().await.unwrap(), "3.16.0");

        let by_name = c.resolve_workspace("My workspace").await.unwrap();
        let by_id = c.resolve_workspace(&emu.workspace().id).await.unwrap();
        let by_slug = c.resolve_workspace("my-workspace").await.unwrap();
        assert_eq!(by_name.id, emu.workspace().id);
        assert_eq!(by_id.id, by_name.id);
        assert_eq!(by_slug.id, by_name.id, "{mode:?}");

        let apps = c.list_apps(&by_name).await.unwrap();
        assert_eq!(apps.len(), 2, "{mode:?}");
        let listed = apps.iter().find(|a| a.id == sales.id).unwrap();
        assert_eq!(listed.name, "Sales Dashboard");
        assert_eq!(listed.slug.as_deref(), Some(sales.slug.as_str()));
        let mut vnames: Vec<_> = listed.versions.iter().map(|v| v.name.clone()).collect();
        vnames.sort();
        assert_eq!(vnames, ["v1", "v2"], "{mode:?}");

        let found = c
            .find_app(&by_name, "Sales Dashboard")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.id, sales.id);
        assert_eq!(found.versions.len(), 2);
        assert_eq!(
            c.find_app(&by_name, &sales.id).await.unwrap().unwrap().name,
            "Sales Dashboard"
        );
        assert_eq!(
            c.find_app(&by_name, &format!("id:{}", sales.id.to_uppercase()))
                .await
                .unwrap()
                .unwrap()
                .id,
            sales.id
        );
        assert!(c
            .find_app(&by_name, "sales dashboard")
            .await
            .unwrap()
            .is_none());
        assert!(c
            .find_app(&by_name, "id:00000000-0000-0000-0000-000000000000")
            .await
            .unwrap()
            .is_none());

        let latest = c.export_app(&by_name, &sales.id, None).await.unwrap();
        let app_v2 = &latest["app"][0]["definition"]["appV2"];
        assert_eq!(latest["tooljet_version"], "3.16.0");
        assert_eq!(app_v2["name"], "Sales Dashboard");
        assert_eq!(app_v2["appVersions"][0]["name"], "v2");
        assert!(app_v2["components"].as_array().unwrap().len() >= 3);
        let v1 = c.export_app(&by_name, &sales.id, Some("v1")).await.unwrap();
        assert_eq!(
            v1["app"][0]["definition"]["appV2"]["appVersions"][0]["name"],
            "v1"
        );
        let v1_id = sales.versions[0].id.clone();
        let by_vid = c
            .export_app(&by_name, &sales.id, Some(&v1_id))
            .await
            .unwrap();
        assert_eq!(
            by_vid["app"][0]["definition"]["appV2"]["editingVersion"]["id"],
            v1_id.as_str()
        );
        let e = c
            .export_app(&by_name, &sales.id, Some("v9"))
            .await
            .unwrap_err();
        assert_eq!(e.reason(), "AppVersionNotFound", "{e}");
        let e = c
            .export_app(&by_name, "00000000-0000-0000-0000-000000000000", None)
            .await
            .unwrap_err();
        assert_eq!(e.reason(), "AppNotFound", "{mode:?}: {e}");

        let all = c.list_workspaces().await.unwrap();
        assert_eq!(all.len(), 2);
        let staging = c.resolve_workspace("staging").await.unwrap();
        assert_eq!(staging.name, "Staging");
        assert!(c.list_apps(&staging).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn unknown_workspace_is_not_found() {
    let emu = emulator().await;
    for mode in MODES {
        let e = client(&emu, mode)
            .resolve_workspace("Nope")
            .await
            .unwrap_err();
        assert_eq!(e.reason(), "WorkspaceNotFound", "{mode:?}");
        assert!(e.to_string().contains("My workspace"), "{e}");
        assert!(!e.is_transient());
    }
    // Token mode without External API v2 cannot use slugs but still reports NotFound.
    emu.set_ext_v2(false);
    let e = client(&emu, Mode::Token)
        .resolve_workspace("staging")
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "WorkspaceNotFound");
    let ok = client(&emu, Mode::Token)
        .resolve_workspace("Staging")
        .await
        .unwrap();
    assert_eq!(ok.slug, None, "the v1 list carries no slug");
}

#[tokio::test]
async fn paginates_the_internal_app_list() {
    let emu = emulator_with(|c| c.page_size = 3).await;
    for i in 0..8 {
        emu.create_app(&format!("App {i}"), None).unwrap();
    }
    let c = client(&emu, Mode::Session);
    let ws = default_ws(&emu);
    assert_eq!(c.list_apps(&ws).await.unwrap().len(), 8);
    assert!(c.find_app(&ws, "App 7").await.unwrap().is_some());
    assert!(count(&emu, "GET", "/api/apps") >= 3);
}

#[tokio::test]
async fn session_lookups_read_the_app_not_the_whole_workspace() {
    let emu = emulator_with(|c| {
        c.page_size = 3;
        c.workspaces.push(("Other".into(), "other".into()));
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(emu.create_app(&format!("App {i:02}"), None).unwrap().id);
    }
    let other = emu
        .workspaces()
        .into_iter()
        .find(|w| w.name == "Other")
        .unwrap();
    let foreign = emu.create_app_in(&other.id, "App 05", None).unwrap();
    let c = client(&emu, Mode::Session);
    let ws = default_ws(&emu);
    let listings = |emu: &Emulator| {
        emu.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path == "/api/apps")
            .count()
    };
    let before = listings(&emu);
    // By name: one search page (ToolJet's searchKey), not ten pages.
    let found = c.find_app(&ws, "App 07").await.unwrap().unwrap();
    assert_eq!(found.id, ids[7]);
    assert!(!found.versions.is_empty(), "with its versions");
    assert_eq!(listings(&emu) - before, 1);
    // A name that only others contain is no match; the search is case-insensitive, the
    // match exact.
    assert_eq!(c.find_app(&ws, "App 0").await.unwrap(), None);
    assert_eq!(c.find_app(&ws, "app 07").await.unwrap(), None);
    // By id: the app itself; an unknown id or another workspace's app is none.
    let before = listings(&emu);
    assert_eq!(
        c.find_app(&ws, &format!("id:{}", ids[3]))
            .await
            .unwrap()
            .unwrap()
            .name,
        "App 03"
    );
    assert_eq!(
        c.find_app(&ws, "id:00000000-0000-0000-0000-000000000000")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        c.find_app(&ws, &format!("id:{}", foreign.id))
            .await
            .unwrap(),
        None
    );
    assert_eq!(listings(&emu), before, "no listing for lookups by id");
    // Scoped: a superset of what the searches and ids name, never another workspace's app.
    let rows = c
        .scoped_app_rows(&ws, &["App 1", "nothing"], &[&ids[25], &foreign.id])
        .await
        .unwrap();
    let mut names: Vec<&str> = rows.iter().map(|a| a.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "App 10", "App 11", "App 12", "App 13", "App 14", "App 15", "App 16", "App 17",
            "App 18", "App 19", "App 25"
        ]
    );
    // Token mode: one listing, the same answers.
    let t = client(&emu, Mode::Token);
    assert_eq!(t.find_app(&ws, "App 07").await.unwrap().unwrap().id, ids[7]);
    assert_eq!(
        t.find_app(&ws, &format!("id:{}", foreign.id))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn server_version_is_read_once() {
    let emu = emulator().await;
    let c = client(&emu, Mode::Token);
    let c2 = c.clone();
    assert_eq!(c.server_version().await.unwrap(), "3.16.0");
    emu.set_version("3.20.0");
    assert_eq!(c2.server_version().await.unwrap(), "3.16.0");
    assert_eq!(count(&emu, "GET", "/api/metadata"), 1);
}

#[tokio::test]
async fn server_version_falls_back_to_an_export() {
    let emu = emulator().await;
    emu.create_app("Any", None).unwrap();
    emu.inject(Fault::status("GET", "/api/metadata", 404));
    for mode in MODES {
        emu.inject(Fault::status("GET", "/api/metadata", 404));
        let c = client(&emu, mode);
        assert_eq!(c.server_version().await.unwrap(), "3.16.0", "{mode:?}");
    }
}

// ---- importing ------------------------------------------------------------------------------

#[tokio::test]
async fn imports_with_fresh_ids_in_both_modes() {
    let emu = emulator().await;
    let source = emu.create_app("Source", None).unwrap();
    let export = emu.export_of(&source.id).unwrap();
    for mode in MODES {
        let c = client(&emu, mode);
        let ws = default_ws(&emu);
        let name = format!("Imported {mode:?}");
        let imported = c.import_app(&ws, &export, &name).await.unwrap();
        assert_eq!(imported.name, name);
        assert_ne!(imported.id, source.id);
        assert_eq!(imported.versions.len(), 1);
        assert_eq!(imported.versions[0].name, "v1");
        let stored = emu.app(&imported.id).unwrap();
        assert_eq!(stored.name, name);
        let again = c.export_app(&ws, &imported.id, None).await.unwrap();
        assert_eq!(component_names(&again), component_names(&export));
        let old_ids: Vec<_> = export["app"][0]["definition"]["appV2"]["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].clone())
            .collect();
        for comp in again["app"][0]["definition"]["appV2"]["components"]
            .as_array()
            .unwrap()
        {
            assert!(
                !old_ids.contains(&comp["id"]),
                "component ids must change on import"
            );
        }
    }
}

#[tokio::test]
async fn import_refuses_taken_names() {
    let emu = emulator().await;
    let existing = emu.create_app("Taken", None).unwrap();
    let export = emu.export_of(&existing.id).unwrap();
    for mode in MODES {
        let c = client(&emu, mode);
        let e = c
            .import_app(&default_ws(&emu), &export, "Taken")
            .await
            .unwrap_err();
        assert_eq!(e.reason(), "NameConflict", "{mode:?}");
        assert!(e.to_string().contains("\"Taken\""), "{e}");
    }
    assert_eq!(emu.apps().len(), 1);
}

#[tokio::test]
async fn import_maps_a_name_conflict_reported_by_tooljet() {
    // The name is free when the client looks, and taken when ToolJet imports.
    for (mode, route) in [
        (Mode::Token, "/api/ext/import/**"),
        (Mode::Session, "/api/v2/resources/import"),
    ] {
        let emu = emulator().await;
        let source = emu.create_app("Source", None).unwrap();
        let export = emu.export_of(&source.id).unwrap();
        let c = client(&emu, mode);
        c.server_version().await.unwrap();
        emu.inject(Fault::delay("POST", route, Duration::from_millis(400)));
        let emu_ref = &emu;
        let racer = async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            emu_ref.create_app("Racy", None).unwrap();
        };
        let ws = default_ws(&emu);
        let (result, ()) = tokio::join!(c.import_app(&ws, &export, "Racy"), racer);
        let e = result.unwrap_err();
        assert_eq!(e.reason(), "NameConflict", "{mode:?}: {e}");
        assert_eq!(emu.apps().iter().filter(|a| a.name == "Racy").count(), 1);
    }
}

#[tokio::test]
async fn import_refuses_newer_exports_before_any_call() {
    let emu = emulator().await;
    let export = foreign_export(&emu, "Future", "3.17.0-ee-lts");
    for mode in MODES {
        let c = client(&emu, mode);
        emu.clear_requests();
        let e = c
            .import_app(&default_ws(&emu), &export, "Future")
            .await
            .unwrap_err();
        match &e {
            Error::VersionTooNew { export, server } => {
                assert_eq!(export, "3.17.0-ee-lts");
                assert_eq!(server, "3.16.0");
            }
            other => panic!("{mode:?}: {other}"),
        }
        assert_eq!(e.reason(), "ToolJetVersionTooNew");
        assert!(e.to_string().contains("upgrade the target ToolJet"), "{e}");
        let writes = emu
            .requests()
            .iter()
            .filter(|r| r.method != "GET")
            .filter(|r| !r.path.starts_with("/api/authenticate"))
            .count();
        assert_eq!(writes, 0, "{mode:?}: {:?}", emu.requests());
    }
    // Same-numeric with a suffix is accepted.
    let ok = foreign_export(&emu, "Same", "3.16.0-ee-lts");
    client(&emu, Mode::Session)
        .import_app(&default_ws(&emu), &ok, "Same")
        .await
        .unwrap();
}

#[tokio::test]
async fn import_maps_tooljets_own_version_check() {
    let emu = emulator().await;
    let export = foreign_export(&emu, "Mid", "3.14.0");
    for mode in MODES {
        let c = client(&emu, mode);
        emu.set_version("3.16.0");
        assert_eq!(c.server_version().await.unwrap(), "3.16.0");
        emu.set_version("3.10.0"); // downgraded behind the client's back
        let e = c
            .import_app(&default_ws(&emu), &export, "Mid")
            .await
            .unwrap_err();
        assert_eq!(e.reason(), "ToolJetVersionTooNew", "{mode:?}: {e}");
    }
}

#[tokio::test]
async fn import_rejects_malformed_exports_and_names() {
    let emu = emulator().await;
    let c = client(&emu, Mode::Session);
    let ws = default_ws(&emu);
    let e = c
        .import_app(&ws, &json!({"app": []}), "X")
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "InvalidExport");
    let e = c
        .import_app(
            &ws,
            &json!({"app": [{"definition": {"appV2": {}}}], "tooljet_version": "banana"}),
            "X",
        )
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "InvalidExport", "{e}");
    let export = foreign_export(&emu, "Y", "3.16.0");
    let e = c
        .import_app(&ws, &export, &"n".repeat(51))
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "InvalidAppName");
    let e = c.import_app(&ws, &export, "  ").await.unwrap_err();
    assert_eq!(e.reason(), "InvalidAppName");
}

#[tokio::test]
async fn oversized_bodies_are_refused_before_sending() {
    let emu = emulator().await;
    let mut export = foreign_export(&emu, "Huge", "3.16.0");
    export["app"][0]["definition"]["appV2"]["padding"] = json!("x".repeat(50 * 1024 * 1024 + 1));
    for mode in MODES {
        emu.clear_requests();
        let e = client(&emu, mode)
            .import_app(&default_ws(&emu), &export, "Huge")
            .await
            .unwrap_err();
        assert_eq!(e.reason(), "PayloadTooLarge", "{mode:?}");
        assert!(matches!(e, Error::PayloadTooLarge { size: Some(s), .. } if s > 50 * 1024 * 1024));
        assert!(e.to_string().contains("MAX_JSON_SIZE"));
        assert_eq!(
            count(&emu, "POST", "/api/ext/import")
                + count(&emu, "POST", "/api/v2/resources/import"),
            0
        );
    }
}

#[tokio::test]
async fn a_413_from_tooljet_is_payload_too_large() {
    let emu = emulator_with(|c| c.max_body_bytes = 256 * 1024).await;
    let mut export = foreign_export(&emu, "Big", "3.16.0");
    export["app"][0]["definition"]["appV2"]["padding"] = json!("x".repeat(512 * 1024));
    for mode in MODES {
        let e = client(&emu, mode)
            .import_app(&default_ws(&emu), &export, "Big")
            .await
            .unwrap_err();
        assert_eq!(e.reason(), "PayloadTooLarge", "{mode:?}: {e}");
    }
    assert!(emu.apps().iter().all(|a| a.name != "Big"));
}

// ---- errors -----------------------------------------------------------------------------------

#[tokio::test]
async fn wrong_token_is_unauthorized_and_never_echoed() {
    let emu = emulator().await;
    let secret = "wrong-token-9f8e7d6c";
    let c = Client::with_options(
        &emu.url(),
        Credentials::Token(SecretString::from(secret)),
        fast(),
    )
    .unwrap();
    let e = c.list_workspaces().await.unwrap_err();
    assert_eq!(e.reason(), "ToolJetUnauthorized");
    assert!(matches!(e, Error::Unauthorized { status: 403, .. }));
    assert!(e.to_string().contains("EXTERNAL_API_ACCESS_TOKEN"), "{e}");
    assert!(e.to_string().contains("`token` key"), "{e}");
    assert!(!e.is_transient());
    assert_no_secret(&format!("{e} {e:?} {c:?}"), &[secret]);
}

#[tokio::test]
async fn wrong_password_is_unauthorized_and_never_echoed() {
    let emu = emulator().await;
    let secret = "not-the-password-1234";
    let c = Client::with_options(
        &emu.url(),
        Credentials::Session {
            email: emu.email().unwrap(),
            password: SecretString::from(secret),
        },
        fast(),
    )
    .unwrap();
    let e = c.list_workspaces().await.unwrap_err();
    assert_eq!(e.reason(), "ToolJetUnauthorized");
    assert!(e.to_string().contains("`email` and `password`"), "{e}");
    assert_no_secret(&format!("{e} {e:?} {c:?}"), &[secret]);
}

#[tokio::test]
async fn community_edition_has_no_external_api() {
    let emu = emulator_with(|c| c.community = true).await;
    emu.create_app("CE App", None).unwrap();
    let e = client(&emu, Mode::Token)
        .list_workspaces()
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "ToolJetFeatureUnavailable");
    let text = e.to_string();
    assert!(
        text.contains("ENABLE_EXTERNAL_API=true") && text.contains("`email` and `password`"),
        "{text}"
    );
    // Session credentials work on the Community Edition.
    let c = client(&emu, Mode::Session);
    let ws = c.resolve_workspace("My workspace").await.unwrap();
    let app = c.find_app(&ws, "CE App").await.unwrap().unwrap();
    let export = c.export_app(&ws, &app.id, None).await.unwrap();
    c.import_app(&ws, &export, "CE Copy").await.unwrap();
    let replaced = c.replace_app(&ws, &app.id, &export).await.unwrap();
    assert_eq!(replaced.name, "CE App");
    let e = c
        .set_app_editable(&ws, &replaced.id, false)
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "ToolJetFeatureUnavailable");
}

#[tokio::test]
async fn missing_licence_is_feature_unavailable() {
    let emu = emulator_with(|c| c.external_api_licensed = false).await;
    let e = client(&emu, Mode::Token)
        .list_workspaces()
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "ToolJetFeatureUnavailable");
    assert!(e.to_string().contains("EXTERNAL_API feature"), "{e}");
}

#[tokio::test]
async fn transient_server_errors_are_retried_for_reads_only() {
    let emu = emulator().await;
    let source = emu.create_app("Source", None).unwrap();
    let export = emu.export_of(&source.id).unwrap();
    let c = client(&emu, Mode::Token);
    emu.inject(Fault::status("GET", "/api/ext/workspaces", 503).times(2));
    assert_eq!(c.list_workspaces().await.unwrap().len(), 2);
    assert_eq!(count(&emu, "GET", "/api/ext/workspaces"), 3);

    emu.inject(Fault::status("GET", "/api/ext/workspaces", 500).times(10));
    let e = c.list_workspaces().await.unwrap_err();
    assert_eq!(e.reason(), "ToolJetServerError");
    assert!(e.is_transient());
    emu.clear_faults();

    c.server_version().await.unwrap();
    emu.clear_requests();
    emu.inject(Fault::status("POST", "/api/ext/import/**", 500));
    let e = c
        .import_app(&default_ws(&emu), &export, "Once")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Server { status: 500, .. }), "{e}");
    assert_eq!(
        count(&emu, "POST", "/api/ext/import"),
        1,
        "imports are never retried"
    );

    // Exports only read, so they are retried.
    emu.inject(Fault::status("POST", "/api/ext/export/**", 502));
    c.export_app(&default_ws(&emu), &source.id, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn slow_answers_time_out() {
    let emu = emulator().await;
    let opts = ClientOptions {
        timeout: Duration::from_millis(300),
        retries: 1,
        ..fast()
    };
    let c = client_with(&emu, Mode::Token, opts.clone());
    emu.inject(Fault::delay("GET", "/api/ext/workspaces", Duration::from_secs(3)).times(2));
    let e = c.list_workspaces().await.unwrap_err();
    assert_eq!(e.reason(), "ToolJetTimeout", "{e}");
    assert!(e.is_transient());
    emu.clear_faults();
    // One slow answer is absorbed by the retry.
    emu.inject(Fault::delay(
        "GET",
        "/api/ext/workspaces",
        Duration::from_secs(3),
    ));
    assert_eq!(
        client_with(&emu, Mode::Token, opts)
            .list_workspaces()
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn unreachable_tooljet_is_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let c = Client::with_options(
        &format!("http://{addr}"),
        Credentials::Token(SecretString::from("tok-unreachable")),
        ClientOptions {
            retries: 0,
            ..fast()
        },
    )
    .unwrap();
    let e = c.server_version().await.unwrap_err();
    assert_eq!(e.reason(), "ToolJetUnreachable", "{e}");
    assert!(e.is_transient());
    assert!(e.to_string().contains("spec.tooljet.url"));
}

#[tokio::test]
async fn non_tooljet_answers_are_invalid_responses() {
    let url = canned_server(200, "<html>login</html>", "text/html").await;
    let c = Client::with_options(
        &url,
        Credentials::Token(SecretString::from("tok-html")),
        fast(),
    )
    .unwrap();
    let e = c.list_workspaces().await.unwrap_err();
    assert_eq!(e.reason(), "ToolJetInvalidResponse", "{e}");
    let url = canned_server(302, "", "text/plain").await;
    let c = Client::with_options(
        &url,
        Credentials::Token(SecretString::from("tok-html")),
        fast(),
    )
    .unwrap();
    let e = c.list_workspaces().await.unwrap_err();
    assert!(e.to_string().contains("redirected"), "{e}");
}

#[tokio::test]
async fn server_echoed_secrets_are_redacted() {
    let token = "echoed-token-abcdef";
    let url = canned_server(
        500,
        r#"{"statusCode":500,"message":"bad header Basic echoed-token-abcdef and password echoed-password-123456"}"#,
        "application/json",
    )
    .await;
    let c = Client::with_options(
        &url,
        Credentials::Token(SecretString::from(token)),
        ClientOptions {
            retries: 0,
            ..fast()
        },
    )
    .unwrap();
    let e = c.list_workspaces().await.unwrap_err();
    assert_eq!(e.reason(), "ToolJetServerError");
    assert!(e.to_string().contains("[REDACTED]"), "{e}");
    assert_no_secret(&format!("{e} {e:?}"), &[token]);
    let c = Client::with_options(
        &url,
        Credentials::Session {
            email: "a@b.example".into(),
            password: SecretString::from("echoed-password-123456"),
        },
        ClientOptions {
            retries: 0,
            ..fast()
        },
    )
    .unwrap();
    let e = c.list_workspaces().await.unwrap_err();
    assert_no_secret(&format!("{e} {e:?}"), &["echoed-password-123456"]);
}

#[tokio::test]
async fn invalid_urls_are_refused() {
    let creds = || Credentials::Token(SecretString::from("tok-url"));
    for bad in [
        "ftp://tooljet.example",
        "not a url",
        "http://",
        "mailto:x@y.z",
    ] {
        let e = Client::new(bad, creds()).unwrap_err();
        assert_eq!(e.reason(), "InvalidToolJetURL", "{bad}");
    }
    let e = Client::new("https://admin:hunter2-secret@tooljet.example", creds()).unwrap_err();
    assert_eq!(e.reason(), "InvalidToolJetURL");
    assert_no_secret(&format!("{e} {e:?}"), &["hunter2-secret"]);
    let c = Client::new("https://tooljet.example/base/api/", creds()).unwrap();
    assert_eq!(c.base_url(), "https://tooljet.example/base");
}

#[tokio::test]
async fn api_prefix_in_the_url_is_accepted() {
    let emu = emulator().await;
    let c = Client::with_options(
        &format!("{}/api", emu.url()),
        credentials(&emu, Mode::Token),
        fast(),
    )
    .unwrap();
    assert_eq!(c.server_version().await.unwrap(), "3.16.0");
}

// ---- hardening: answer limits, quoting, plain http, deadlines -------------------------------

/// What a raw loopback server does with every connection.
#[derive(Clone, Copy)]
enum Raw {
    /// Accepts and reads the request, then never answers.
    Silent,
    /// Answers this status with an endless chunked body.
    Endless(u16),
    /// Answers 200 with a body declared (and sent) as this many bytes.
    Declared(usize),
}

/// A raw HTTP/1.1 server on 127.0.0.1; returns its URL and how many body bytes it wrote.
async fn raw_server(mode: Raw) -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(raw_connection(sock, mode, counter.clone()));
        }
    });
    (format!("http://{addr}"), written)
}

async fn raw_connection(mut sock: tokio::net::TcpStream, mode: Raw, written: Arc<AtomicU64>) {
    let mut buf = vec![0u8; 64 * 1024];
    let _ = sock.read(&mut buf).await;
    let chunk = vec![b'a'; 64 * 1024];
    match mode {
        Raw::Silent => tokio::time::sleep(Duration::from_secs(600)).await,
        Raw::Endless(status) => {
            let head = format!("HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n");
            let framed = [
                format!("{:x}\r\n", chunk.len()).into_bytes(),
                chunk.clone(),
                b"\r\n".to_vec(),
            ]
            .concat();
            if sock.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            // Throttled (at most ~32 MB/s), so even a client without a limit would not
            // exhaust the machine during the test's timeout.
            while sock.write_all(&framed).await.is_ok() {
                written.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        Raw::Declared(len) => {
            let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n");
            if sock.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let mut left = len;
            while left > 0 {
                let n = left.min(chunk.len());
                if sock.write_all(&chunk[..n]).await.is_err() {
                    return;
                }
                written.fetch_add(n as u64, Ordering::Relaxed);
                left -= n;
            }
        }
    }
}

fn token_client(url: &str, options: ClientOptions) -> Client {
    Client::with_options(
        url,
        Credentials::Token(SecretString::from("tok-hardening-0123456789")),
        options,
    )
    .unwrap()
}

/// Waits until the server stops writing (the client hung up), returning the bytes written.
async fn settled(written: &AtomicU64) -> u64 {
    let mut last = written.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = written.load(Ordering::Relaxed);
        if now == last {
            return now;
        }
        last = now;
    }
}

#[tokio::test]
async fn endless_answers_stop_at_the_limit() {
    const LIMIT: u64 = 1024 * 1024;
    let opts = ClientOptions {
        timeout: Duration::from_secs(10),
        retries: 0,
        max_answer_bytes: LIMIT,
        ..fast()
    };
    // A successful answer that never ends.
    let (url, written) = raw_server(Raw::Endless(200)).await;
    let started = Instant::now();
    let e = token_client(&url, opts.clone())
        .list_workspaces()
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::AnswerTooLarge { limit: LIMIT, .. }),
        "{e}"
    );
    assert_eq!(e.reason(), "ToolJetInvalidResponse");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let total = settled(&written).await;
    assert!(total < 32 * LIMIT, "the client kept reading: {total} bytes");

    // A declared length above the limit is not read at all.
    let (url, written) = raw_server(Raw::Declared(8 * LIMIT as usize)).await;
    let e = token_client(&url, opts.clone())
        .list_workspaces()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::AnswerTooLarge { .. }), "{e}");
    assert!(settled(&written).await < 8 * LIMIT);

    // An error answer that never ends keeps its meaning (a transient 5xx), quoted briefly.
    let (url, written) = raw_server(Raw::Endless(503)).await;
    let started = Instant::now();
    let e = token_client(&url, opts.clone())
        .list_workspaces()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Server { status: 503, .. }), "{e}");
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(e.to_string().len() < 1000, "{e}");
    assert!(settled(&written).await < 32 * LIMIT);

    // The login answer has a limit too.
    let (url, _) = raw_server(Raw::Endless(201)).await;
    let c = Client::with_options(
        &url,
        Credentials::Session {
            email: "a@b.example".into(),
            password: SecretString::from("pw-endless-0123"),
        },
        opts,
    )
    .unwrap();
    let e = c.list_workspaces().await.unwrap_err();
    assert!(
        matches!(&e, Error::AnswerTooLarge { route, .. } if route.contains("/api/authenticate")),
        "{e}"
    );
}

#[tokio::test]
async fn exports_have_their_own_larger_limit() {
    let emu = emulator().await;
    let app = emu.create_app("Big", None).unwrap();
    emu.edit_app(&app.id, |c| c["bigStaticData"] = json!("x".repeat(3 << 20)))
        .unwrap();
    let roomy = ClientOptions {
        max_answer_bytes: 1 << 20,
        max_export_bytes: 8 << 20,
        ..fast()
    };
    let tight = ClientOptions {
        max_export_bytes: 1 << 20,
        ..roomy.clone()
    };
    for mode in MODES {
        let ws = default_ws(&emu);
        let export = client_with(&emu, mode, roomy.clone())
            .export_app(&ws, &app.id, None)
            .await
            .unwrap();
        assert!(serde_json::to_vec(&export).unwrap().len() > 3 << 20);
        let Err(e) = client_with(&emu, mode, tight.clone())
            .export_app(&ws, &app.id, None)
            .await
        else {
            panic!("{mode:?}: the export was read past the limit");
        };
        assert!(
            matches!(e, Error::AnswerTooLarge { limit, .. } if limit == 1 << 20),
            "{mode:?}: {e}"
        );
    }
}

/// Every prefix of `secret` of 8 bytes or more found in `text`.
fn leaked_prefix(text: &str, secret: &str) -> Option<String> {
    (8..=secret.len())
        .map(|k| &secret[..k])
        .find(|p| text.contains(p))
        .map(str::to_string)
}

/// A message of `len` characters with `secret` starting at character `at`.
fn message_around(secret: &str, at: usize, len: usize) -> String {
    let mut m = "x".repeat(at);
    m.push_str(secret);
    m.push_str(&"y".repeat(len.saturating_sub(m.len())));
    m
}

/// A ToolJet stand-in: logs in (cookie `tj_auth_token=<session>`), then answers 500 on every
/// other call with the secret the request carried (token, cookie or password) inside a long
/// message, starting at character `at`.
async fn echoing_server(session: &'static str, at: usize) -> String {
    use axum::http::{HeaderMap, StatusCode};
    async fn echo(
        at: usize,
        session: &'static str,
        headers: HeaderMap,
        body: String,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        if body.contains("password") {
            let password: Value = serde_json::from_str(&body).unwrap_or_default();
            if password["password"] == "fail-on-purpose-password" {
                let m = message_around("fail-on-purpose-password", at, 2000);
                return (StatusCode::BAD_GATEWAY, axum::Json(json!({ "message": m })))
                    .into_response();
            }
            let cookie = format!("tj_auth_token={session}; Path=/; HttpOnly");
            return (
                StatusCode::CREATED,
                [("set-cookie", cookie)],
                axum::Json(json!({"current_organization_id": "o1"})),
            )
                .into_response();
        }
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let secret = match header("authorization").strip_prefix("Basic ") {
            Some(token) => token.to_string(),
            None => header("cookie")
                .trim_start_matches("tj_auth_token=")
                .to_string(),
        };
        let m = message_around(&secret, at, 2000);
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({ "statusCode": 500, "message": m })),
        )
            .into_response()
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .fallback(move |headers: HeaderMap, body: String| echo(at, session, headers, body));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn secrets_cut_by_the_message_bound_never_leak_partially() {
    let token = "tj-ext-straddling-token-0123456789abcdef";
    let session = "eyJhbGciOiJIUzI1NiJ9.c2Vzc2lvbi1zdHJhZGRsaW5n.c2lnbmF0dXJl";
    let password = "fail-on-purpose-password";
    let once = ClientOptions {
        retries: 0,
        ..fast()
    };
    // Around the 300-character bound, so a cut after quoting would split each secret.
    for at in [280, 290, 295, 299] {
        let url = echoing_server(session, at).await;
        let e = token_client_with(&url, token, once.clone())
            .list_workspaces()
            .await
            .unwrap_err();
        assert_eq!(e.reason(), "ToolJetServerError", "{e}");
        let text = format!("{e} {e:?}");
        assert_eq!(leaked_prefix(&text, token), None, "token at {at}: {text}");

        let session_client = |pw: &str| {
            Client::with_options(
                &url,
                Credentials::Session {
                    email: "a@b.example".into(),
                    password: SecretString::from(pw.to_string()),
                },
                once.clone(),
            )
            .unwrap()
        };
        let e = session_client("right-password-0123")
            .list_workspaces()
            .await
            .unwrap_err();
        assert_eq!(e.reason(), "ToolJetServerError", "{e}");
        let text = format!("{e} {e:?}");
        assert_eq!(
            leaked_prefix(&text, session),
            None,
            "cookie at {at}: {text}"
        );

        let e = session_client(password)
            .list_workspaces()
            .await
            .unwrap_err();
        let text = format!("{e} {e:?}");
        assert_eq!(
            leaked_prefix(&text, password),
            None,
            "password at {at}: {text}"
        );
    }
}

fn token_client_with(url: &str, token: &str, options: ClientOptions) -> Client {
    Client::with_options(
        url,
        Credentials::Token(SecretString::from(token.to_string())),
        options,
    )
    .unwrap()
}

#[tokio::test]
async fn plain_http_beyond_loopback_sends_nothing_without_the_opt_in() {
    let emu = emulator().await;
    let url = format!("http://tooljet.gitsync.test:{}", emu.addr().port());
    // The name leads to the emulator on 127.0.0.1, but only the URL counts, and it is not
    // loopback by name.
    let via_name = |allow_insecure_http: bool| ClientOptions {
        allow_insecure_http,
        resolve: vec![("tooljet.gitsync.test".into(), Ipv4Addr::LOCALHOST.into())],
        ..fast()
    };
    for mode in MODES {
        let e = Client::with_options(&url, credentials(&emu, mode), via_name(false)).unwrap_err();
        assert_eq!(e.reason(), "InsecureToolJetURL", "{e}");
        assert!(e.to_string().contains("allowInsecureHTTP"), "{e}");
        assert_no_secret(
            &format!("{e} {e:?}"),
            &[&emu.token().unwrap(), &emu.password().unwrap()],
        );
    }
    assert!(emu.requests().is_empty(), "{:?}", emu.requests());

    // Opted in, the same URL reaches the emulator.
    for mode in MODES {
        let c = Client::with_options(&url, credentials(&emu, mode), via_name(true)).unwrap();
        assert_eq!(c.list_workspaces().await.unwrap().len(), 2);
    }
    assert!(!emu.requests().is_empty());

    // Loopback by name needs no opt-in.
    let c = client_with_url(&emu, &format!("http://localhost:{}", emu.addr().port()));
    assert_eq!(c.list_workspaces().await.unwrap().len(), 2);
}

fn client_with_url(emu: &Emulator, url: &str) -> Client {
    Client::with_options(url, credentials(emu, Mode::Token), fast()).unwrap()
}

#[tokio::test]
async fn a_silent_tooljet_fails_within_the_deadline() {
    let (url, _) = raw_server(Raw::Silent).await;
    // Without an overall deadline, six attempts of 1 s each would take over 6 s.
    let opts = ClientOptions {
        timeout: Duration::from_secs(1),
        retries: 5,
        backoff: Duration::from_millis(10),
        deadline: Duration::from_millis(1500),
        ..fast()
    };
    let started = Instant::now();
    let e = token_client(&url, opts.clone())
        .list_workspaces()
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "ToolJetTimeout", "{e}");
    assert!(e.is_transient());
    assert!(
        started.elapsed() < Duration::from_millis(3500),
        "{:?}",
        started.elapsed()
    );
    // The session login and its retries fall under the same deadline.
    let c = Client::with_options(
        &url,
        Credentials::Session {
            email: "a@b.example".into(),
            password: SecretString::from("pw-silent-0123"),
        },
        opts,
    )
    .unwrap();
    let started = Instant::now();
    let e = c.list_workspaces().await.unwrap_err();
    assert_eq!(e.reason(), "ToolJetTimeout", "{e}");
    assert!(
        started.elapsed() < Duration::from_millis(3500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_paginated_listing_has_one_deadline() {
    let emu = emulator_with(|c| {
        c.page_size = 1;
        c.seed_apps = 12;
    })
    .await;
    // Each page is quick enough on its own; all twelve together are not.
    emu.inject(Fault::delay("GET", "/api/apps", Duration::from_millis(300)).times(100));
    let opts = ClientOptions {
        timeout: Duration::from_secs(2),
        deadline: Duration::from_secs(1),
        ..fast()
    };
    let c = client_with(&emu, Mode::Session, opts);
    let started = Instant::now();
    let e = c.list_app_rows(&default_ws(&emu)).await.unwrap_err();
    assert!(matches!(e, Error::Deadline { .. }), "{e}");
    assert_eq!(e.reason(), "ToolJetTimeout");
    assert!(e.to_string().contains("within 1s"), "{e}");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    assert!(count(&emu, "GET", "/api/apps") < 12);
}

#[tokio::test]
async fn connecting_has_its_own_timeout() {
    // A listener whose accept queue is full: the kernel drops further SYNs, so connecting
    // hangs (on 127.0.0.1, like a firewall dropping packets).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let _filler = std::net::TcpStream::connect(addr).unwrap();
    let opts = ClientOptions {
        timeout: Duration::from_secs(20),
        connect_timeout: Duration::from_millis(300),
        retries: 0,
        ..fast()
    };
    let started = Instant::now();
    let e = token_client(&format!("http://{addr}"), opts)
        .list_workspaces()
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Timeout { after, .. } if after == Duration::from_millis(300)),
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(listener);
}

#[tokio::test]
async fn a_server_claiming_endless_pages_is_read_once() {
    use axum::http::StatusCode;
    let pages = Arc::new(AtomicU64::new(0));
    let seen = pages.clone();
    let app = axum::Router::new()
        .route(
            "/api/authenticate",
            axum::routing::post(|| async {
                (
                    StatusCode::CREATED,
                    [("set-cookie", "tj_auth_token=jwt-pages-0123; Path=/")],
                    axum::Json(json!({"current_organization_id": "o1"})),
                )
            }),
        )
        .route(
            "/api/apps",
            axum::routing::get(move || {
                seen.fetch_add(1, Ordering::Relaxed);
                async {
                    axum::Json(json!({
                        "apps": [{"id": "a1", "name": "Same"}],
                        "meta": {"total_pages": u64::MAX, "total_count": u64::MAX}
                    }))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let c = Client::with_options(
        &format!("http://{addr}"),
        Credentials::Session {
            email: "a@b.example".into(),
            password: SecretString::from("pw-pages-0123"),
        },
        fast(),
    )
    .unwrap();
    let ws = Workspace {
        id: "o1".into(),
        name: "W".into(),
        slug: None,
    };
    assert_eq!(c.find_app(&ws, "Nowhere").await.unwrap(), None);
    // Page 2 repeated page 1, so the listing stopped there.
    assert_eq!(pages.load(Ordering::Relaxed), 2);
}

// ---- sessions -------------------------------------------------------------------------------

#[tokio::test]
async fn sessions_log_in_lazily_renew_and_cover_other_workspaces() {
    let emu = emulator().await;
    let staging = emu.workspaces()[1].clone();
    emu.create_app_in(&staging.id, "Staged", None).unwrap();
    let c = client(&emu, Mode::Session);
    assert_eq!(count(&emu, "POST", "/api/authenticate"), 0);
    let ws = c.resolve_workspace("Staging").await.unwrap();
    let apps = c.list_apps(&ws).await.unwrap();
    assert_eq!(apps.len(), 1);
    assert!(count(&emu, "POST", &format!("/api/authenticate/{}", staging.id)) == 1);
    let logins = count(&emu, "POST", "/api/authenticate");
    c.list_apps(&ws).await.unwrap();
    assert_eq!(
        count(&emu, "POST", "/api/authenticate"),
        logins,
        "the session is reused"
    );

    emu.expire_sessions();
    assert_eq!(c.list_apps(&ws).await.unwrap().len(), 1);
    assert!(
        count(&emu, "POST", "/api/authenticate") > logins,
        "logged in again after a 401"
    );
}

// ---- locking and constants ------------------------------------------------------------------

#[tokio::test]
async fn set_app_editable_uses_gitsync_configs() {
    let emu = emulator().await;
    let app = emu.create_app("Locked", None).unwrap();
    let ws = default_ws(&emu);
    let c = client(&emu, Mode::Session);
    c.set_app_editable(&ws, &app.id, false).await.unwrap();
    assert!(!emu.app(&app.id).unwrap().editable);
    c.set_app_editable(&ws, &app.id, true).await.unwrap();
    assert!(emu.app(&app.id).unwrap().editable);

    emu.clear_requests();
    let e = client(&emu, Mode::Token)
        .set_app_editable(&ws, &app.id, false)
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "ToolJetFeatureUnavailable");
    assert!(emu.requests().is_empty(), "no call is made in token mode");

    emu.set_gitsync(false);
    let e = c.set_app_editable(&ws, &app.id, false).await.unwrap_err();
    assert_eq!(e.reason(), "ToolJetFeatureUnavailable");
    assert!(e.to_string().contains("GitSync"), "{e}");
}

#[tokio::test]
async fn lists_constant_names_without_values() {
    let emu = emulator().await;
    let ws = default_ws(&emu);
    emu.set_constant(&ws.id, "REGION", false, "value-eu-west-1");
    let c = client(&emu, Mode::Session);
    let mut constants = c.list_constants(&ws).await.unwrap();
    constants.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<_> = constants.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["API_BASE_URL", "ORDERS_API_KEY", "REGION"]);
    assert_eq!(constants[1].kind, ConstantKind::Secret);
    assert_eq!(constants[2].kind, ConstantKind::Global);
    assert_no_secret(
        &format!("{constants:?}"),
        &["value-eu-west-1", "emulated-secret-value"],
    );
    let e = client(&emu, Mode::Token)
        .list_constants(&ws)
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "ToolJetFeatureUnavailable");
}

// ---- replace_app ------------------------------------------------------------------------------

fn assert_intact(emu: &Emulator, before: &tooljet_gitsync_testkit::emulator::AppRec) {
    let now = emu
        .app(&before.id)
        .expect("the original app must still exist");
    assert_eq!(now.name, before.name);
    assert_eq!(now.slug, before.slug);
    assert_eq!(now.content, before.content);
}

async fn setup_replace(
    mode: Mode,
) -> (
    Emulator,
    Client,
    Workspace,
    tooljet_gitsync_testkit::emulator::AppRec,
    Value,
) {
    let emu = emulator().await;
    let old = emu.create_app("Orders", None).unwrap();
    let export = foreign_export(&emu, "New Orders Definition", "3.16.0");
    let c = client(&emu, mode);
    let ws = default_ws(&emu);
    (emu, c, ws, old, export)
}

#[tokio::test]
async fn replace_keeps_name_and_slug_in_both_modes() {
    for mode in MODES {
        let (emu, c, ws, old, export) = setup_replace(mode).await;
        let replaced: AppSummary = c.replace_app(&ws, &old.id, &export).await.unwrap();
        assert_eq!(replaced.name, "Orders");
        assert_eq!(replaced.slug.as_deref(), Some(old.slug.as_str()));
        assert_ne!(replaced.id, old.id);
        assert!(emu.app(&old.id).is_none(), "{mode:?}: old app deleted");
        let stored = emu.app(&replaced.id).unwrap();
        assert_eq!(stored.name, "Orders");
        assert_eq!(stored.slug, old.slug);
        let text = stored.content["components"][0]["properties"]["text"]["value"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(text.contains("New Orders Definition"), "{text}");
        assert_eq!(emu.apps_in(&ws.id).len(), 1);
        no_temp_apps(&emu);
    }
}

#[tokio::test]
async fn replace_refuses_before_touching_anything() {
    for mode in MODES {
        let (emu, c, ws, old, export) = setup_replace(mode).await;
        let mut newer = export.clone();
        newer["tooljet_version"] = json!("4.0.0");
        emu.clear_requests();
        let e = c.replace_app(&ws, &old.id, &newer).await.unwrap_err();
        assert_eq!(e.reason(), "ToolJetVersionTooNew");
        assert!(emu
            .requests()
            .iter()
            .all(|r| r.method == "GET" || r.path.starts_with("/api/authenticate")));
        let e = c
            .replace_app(&ws, "00000000-0000-0000-0000-000000000000", &export)
            .await
            .unwrap_err();
        assert_eq!(e.reason(), "AppNotFound");
        assert_intact(&emu, &old);
        no_temp_apps(&emu);
    }
}

#[tokio::test]
async fn replace_with_token_needs_external_api_v2() {
    let (emu, c, ws, old, export) = setup_replace(Mode::Token).await;
    emu.set_ext_v2(false);
    emu.clear_requests();
    let e = c.replace_app(&ws, &old.id, &export).await.unwrap_err();
    assert_eq!(e.reason(), "ToolJetFeatureUnavailable");
    assert!(e.to_string().contains("`email` and `password`"), "{e}");
    assert_eq!(count(&emu, "POST", "/api/ext/import"), 0);
    assert_intact(&emu, &old);
}

/// Route patterns of the steps per mode: (import, rename, delete).
fn step_routes(mode: Mode, ws: &str) -> (String, String, String) {
    match mode {
        Mode::Token => (
            "/api/ext/import/**".into(),
            format!("/api/v2/ext/workspaces/{ws}/apps/*"),
            format!("/api/v2/ext/workspaces/{ws}/apps/*"),
        ),
        Mode::Session => (
            "/api/v2/resources/import".into(),
            "/api/apps/*".into(),
            "/api/apps/*".into(),
        ),
    }
}

fn rename_method(mode: Mode) -> &'static str {
    match mode {
        Mode::Token => "PATCH",
        Mode::Session => "PUT",
    }
}

#[tokio::test]
async fn replace_failing_import_leaves_everything_as_it_was() {
    for mode in MODES {
        let (emu, c, ws, old, export) = setup_replace(mode).await;
        let (import, _, _) = step_routes(mode, &ws.id);
        emu.inject(Fault::status("POST", &import, 500));
        let e = c.replace_app(&ws, &old.id, &export).await.unwrap_err();
        assert_eq!(e.reason(), "ToolJetServerError", "{mode:?}");
        assert_intact(&emu, &old);
        assert_eq!(emu.apps_in(&ws.id).len(), 1);
        no_temp_apps(&emu);
    }
}

#[tokio::test]
async fn replace_import_done_but_answer_lost_is_cleaned_up() {
    for mode in MODES {
        let (emu, c, ws, old, export) = setup_replace(mode).await;
        let (import, _, _) = step_routes(mode, &ws.id);
        emu.inject(Fault::status_after_handling("POST", &import, 502));
        let e = c.replace_app(&ws, &old.id, &export).await.unwrap_err();
        assert_eq!(e.reason(), "ToolJetServerError", "{mode:?}");
        assert_intact(&emu, &old);
        no_temp_apps(&emu);
        assert_eq!(emu.apps_in(&ws.id).len(), 1);
    }
}

#[tokio::test]
async fn replace_failing_to_park_the_old_app_rolls_back() {
    for mode in MODES {
        let (emu, c, ws, old, export) = setup_replace(mode).await;
        let path = match mode {
            Mode::Token => format!("/api/v2/ext/workspaces/{}/apps/{}", ws.id, old.id),
            Mode::Session => format!("/api/apps/{}", old.id),
        };
        emu.inject(Fault::status(rename_method(mode), &path, 500));
        let e = c.replace_app(&ws, &old.id, &export).await.unwrap_err();
        assert_eq!(e.reason(), "ToolJetServerError", "{mode:?}: {e}");
        assert_intact(&emu, &old);
        assert_eq!(emu.apps_in(&ws.id).len(), 1);
        no_temp_apps(&emu);
    }
}

#[tokio::test]
async fn replace_failing_to_promote_the_new_app_rolls_back() {
    for mode in MODES {
        let (emu, c, ws, old, export) = setup_replace(mode).await;
        let (_, rename, _) = step_routes(mode, &ws.id);
        // The first rename (parking the old app) passes, the second (promotion) fails.
        emu.inject(Fault::status(rename_method(mode), &rename, 409).after(1));
        let e = c.replace_app(&ws, &old.id, &export).await.unwrap_err();
        assert!(
            matches!(e.reason().as_str(), "NameConflict" | "ToolJetRejected"),
            "{mode:?}: {e}"
        );
        assert_intact(&emu, &old);
        assert_eq!(emu.apps_in(&ws.id).len(), 1, "{mode:?}");
        no_temp_apps(&emu);
    }
}

#[tokio::test]
async fn replace_failing_to_delete_the_old_app_rolls_back() {
    for mode in MODES {
        let (emu, c, ws, old, export) = setup_replace(mode).await;
        let path = match mode {
            Mode::Token => format!("/api/v2/ext/workspaces/{}/apps/{}", ws.id, old.id),
            Mode::Session => format!("/api/apps/{}", old.id),
        };
        emu.inject(Fault::status("DELETE", &path, 500));
        let e = c.replace_app(&ws, &old.id, &export).await.unwrap_err();
        assert_eq!(e.reason(), "ToolJetServerError", "{mode:?}: {e}");
        assert_intact(&emu, &old);
        assert_eq!(emu.apps_in(&ws.id).len(), 1);
        no_temp_apps(&emu);
    }
}

#[tokio::test]
async fn replace_delete_done_but_answer_lost_counts_as_success() {
    for mode in MODES {
        let (emu, c, ws, old, export) = setup_replace(mode).await;
        let path = match mode {
            Mode::Token => format!("/api/v2/ext/workspaces/{}/apps/{}", ws.id, old.id),
            Mode::Session => format!("/api/apps/{}", old.id),
        };
        emu.inject(Fault::status_after_handling("DELETE", &path, 504));
        let replaced = c.replace_app(&ws, &old.id, &export).await.unwrap();
        assert_eq!(replaced.name, "Orders");
        assert!(emu.app(&old.id).is_none());
        assert_eq!(emu.apps_in(&ws.id).len(), 1);
        no_temp_apps(&emu);
    }
}

#[tokio::test]
async fn replace_reports_what_a_failed_rollback_leaves() {
    for mode in MODES {
        let (emu, c, ws, old, export) = setup_replace(mode).await;
        let (_, rename, delete) = step_routes(mode, &ws.id);
        // Promotion fails, and so does every delete: the rollback can only park the new app.
        emu.inject(Fault::status(rename_method(mode), &rename, 500).after(1));
        emu.inject(Fault::status("DELETE", &delete, 500).times(20));
        let e = c.replace_app(&ws, &old.id, &export).await.unwrap_err();
        assert_eq!(e.reason(), "ToolJetRollbackFailed", "{mode:?}: {e}");
        assert!(!e.is_transient());
        let text = e.to_string();
        assert!(text.contains("__gitsync_tmp_"), "{text}");
        assert!(text.contains("manual cleanup"), "{text}");
        // The old app is back in place; the new one is parked under its temporary name.
        assert_intact(&emu, &old);
        let apps = emu.apps_in(&ws.id);
        assert_eq!(apps.len(), 2);
        assert!(apps.iter().any(|a| a.name.starts_with("__gitsync_tmp_")));
        emu.clear_faults();
    }
}

// ---- secrets in logs -------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn credentials_never_reach_logs() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let emu = emulator().await;
    let app = emu.create_app("Logged", None).unwrap();
    let export = foreign_export(&emu, "Logged v2", "3.16.0");
    for mode in MODES {
        let c = client(&emu, mode);
        let ws = c.resolve_workspace("My workspace").await.unwrap();
        let current = c.find_app(&ws, "Logged").await.unwrap().unwrap();
        c.export_app(&ws, &current.id, None).await.unwrap();
        emu.expire_sessions();
        c.replace_app(&ws, &current.id, &export).await.unwrap();
        emu.inject(Fault::status("GET", "/api/**", 500).times(10));
        let _ = c.list_workspaces().await;
        emu.clear_faults();
    }
    let _ = app;
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).to_string();
    assert!(logs.contains("ToolJet call"), "debug logs were captured");
    let token = emu.token().unwrap();
    let password = emu.password().unwrap();
    assert_no_secret(&logs, &[&token, &password, "tj_auth_token="]);
}

#[test]
fn credentials_from_secret_data() {
    let mut data = BTreeMap::new();
    data.insert("email".to_string(), b"ops@example.com".to_vec());
    data.insert("password".to_string(), b"s3cret-pass\n".to_vec());
    let c = Credentials::from_secret_data(&data).unwrap();
    assert_eq!(c.mode(), "session");
    assert_no_secret(&format!("{c:?}"), &["s3cret-pass"]);
    data.remove("password");
    let e = Credentials::from_secret_data(&data).unwrap_err();
    assert_eq!(e.reason(), "InvalidCredentials");
}

// ---- the emulator itself ------------------------------------------------------------------------

#[tokio::test]
async fn emulator_follows_the_reference() {
    let emu = emulator().await;
    let http = raw_http();
    let base = emu.url();
    let ws = emu.workspace().id;
    let auth = format!("Basic {}", emu.token().unwrap());
    let app = emu.create_app("Reference", None).unwrap();

    // External API auth: missing or wrong token -> 403; the raw token, not base64.
    let r = http
        .get(format!("{base}/api/ext/workspaces"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .get(format!("{base}/api/ext/workspaces"))
        .header("Authorization", "Bearer x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .get(format!("{base}/api/ext/workspaces"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let list: Value = r.json().await.unwrap();
    assert!(list[0].get("slug").is_none() && list[0]["status"] == "active");
    let r = http
        .get(format!("{base}/api/ext/workspace/not-a-uuid/apps"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Export shape (reference §2) with constants and secrets references.
    let r = http
        .post(format!(
            "{base}/api/ext/export/workspace/{ws}/apps/{}",
            app.id
        ))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let export: Value = r.json().await.unwrap();
    let app_v2 = &export["app"][0]["definition"]["appV2"];
    for key in [
        "components",
        "pages",
        "events",
        "dataQueries",
        "dataSources",
        "appVersions",
        "appEnvironments",
        "dataSourceOptions",
        "schemaDetails",
        "editingVersion",
    ] {
        assert!(!app_v2[key].is_null(), "missing {key}");
    }
    assert_eq!(app_v2["type"], "front-end");
    assert_eq!(export["tooljet_version"], "3.16.0");
    let text = export.to_string();
    assert!(
        text.contains("{{constants.API_BASE_URL}}") && text.contains("{{secrets.ORDERS_API_KEY}}")
    );

    // Import: 201 {message}; the same name again -> 400 "already taken"; newer version -> 400.
    let mut body = export.clone();
    body["appName"] = json!("Copy");
    let r = http
        .post(format!("{base}/api/ext/import/workspace/{ws}/apps"))
        .header("Authorization", &auth)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let msg: Value = r.json().await.unwrap();
    assert!(msg["message"].as_str().unwrap().contains(&ws));
    let r = http
        .post(format!("{base}/api/ext/import/workspace/{ws}/apps"))
        .header("Authorization", &auth)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let err: Value = r.json().await.unwrap();
    assert!(err["message"].as_str().unwrap().contains("already taken"));
    body["appName"] = json!("Future");
    body["tooljet_version"] = json!("3.17.0");
    let r = http
        .post(format!("{base}/api/ext/import/workspace/{ws}/apps"))
        .header("Authorization", &auth)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!("{base}/api/ext/import/workspace/{ws}/apps"))
        .header("Authorization", &auth)
        .json(&json!({"tooljet_version": "3.16.0", "appName": "No app"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);

    // Imports get fresh ids and timestamps; names and structure stay.
    let copy = emu.apps().into_iter().find(|a| a.name == "Copy").unwrap();
    assert_ne!(copy.content, app.content);
    assert_eq!(
        copy.content["components"][0]["name"],
        app.content["components"][0]["name"]
    );
    assert_ne!(
        copy.content["components"][0]["id"],
        app.content["components"][0]["id"]
    );

    // Internal routes need the session cookie and a covered workspace header.
    let r = http.get(format!("{base}/api/apps")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(format!("{base}/api/authenticate"))
        .json(&json!({"email": emu.email().unwrap(), "password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(format!("{base}/api/authenticate"))
        .json(&json!({"email": emu.email().unwrap(), "password": emu.password().unwrap()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("tj_auth_token="));
    let r = http
        .get(format!("{base}/api/apps"))
        .header("cookie", &cookie)
        .header("tj-workspace-id", &ws)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page: Value = r.json().await.unwrap();
    assert_eq!(page["meta"]["total_count"], 2);
    let other = emu.workspaces()[1].id.clone();
    let r = http
        .get(format!("{base}/api/apps"))
        .header("cookie", &cookie)
        .header("tj-workspace-id", &other)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "the session covers only the workspace logged in to"
    );

    // Community Edition: External API routes are not registered.
    emu.set_community(true);
    let r = http
        .get(format!("{base}/api/ext/workspaces"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["message"], "Cannot GET /api/ext/workspaces");
}

#[tokio::test]
async fn emulator_enforces_the_50_mb_body_limit() {
    let emu = emulator().await;
    let ws = emu.workspace().id;
    let http = raw_http();
    let body = format!(
        r#"{{"tooljet_version":"3.16.0","appName":"X","pad":"{}"}}"#,
        "y".repeat(50 * 1024 * 1024)
    );
    let r = http
        .post(format!("{}/api/ext/import/workspace/{ws}/apps", emu.url()))
        .header("Authorization", format!("Basic {}", emu.token().unwrap()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}

#[tokio::test]
async fn emulator_listens_on_loopback_only() {
    let config = EmulatorConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..EmulatorConfig::default()
    };
    assert!(Emulator::start(config).await.is_err());
    let emu = emulator().await;
    assert!(emu.url().starts_with("http://127.0.0.1:"));
}

#[tokio::test]
async fn emulator_seeds_sample_apps() {
    let emu = emulator_with(|c| c.seed_apps = 3).await;
    assert_eq!(emu.apps_in(&emu.workspace().id).len(), 3);
    let c = client(&emu, Mode::Token);
    let apps = c.list_apps(&default_ws(&emu)).await.unwrap();
    assert_eq!(apps.len(), 3);
}

#[test]
fn client_can_be_shared_between_tasks() {
    fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
    assert_shareable::<Client>();
    fn assert_error<T: std::error::Error + Send + Sync + 'static>() {}
    assert_error::<Error>();
}
