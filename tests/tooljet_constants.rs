//! Environments, workspace constants and data-source options through the ToolJet client
//! against the emulator, Enterprise and Community Edition: round trips with ToolJet's status
//! codes, masking, CE fan-out versus EE per-environment writes, options replaced (not merged)
//! by a PUT, `tokenData` wiped on restapi, token mode's refusal, and that no secret value
//! shows in any answer, error or Debug output. Everything listens on 127.0.0.1 only.

use std::time::Duration;

use secrecy::SecretString;
use serde_json::{json, Value};
use tooljet_gitsync_operator::tooljet::{
    merge_options, Client, ClientOptions, ConstantKind, Credentials, Error, OptionEntry,
    OptionValue, Workspace,
};
use tooljet_gitsync_testkit::emulator::{add_postgres_source, Emulator, EmulatorConfig};

// ---- helpers ------------------------------------------------------------------------------

fn fast() -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        retries: 1,
        backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
        ..ClientOptions::default()
    }
}

async fn emulator_with(f: impl FnOnce(&mut EmulatorConfig)) -> Emulator {
    let mut c = EmulatorConfig::default();
    f(&mut c);
    Emulator::start(c).await.unwrap()
}

async fn ee() -> Emulator {
    emulator_with(|_| {}).await
}

async fn ce() -> Emulator {
    emulator_with(|c| c.community = true).await
}

fn session(emu: &Emulator) -> Client {
    Client::with_options(
        &emu.url(),
        Credentials::Session {
            email: emu.email().unwrap(),
            password: SecretString::from(emu.password().unwrap()),
        },
        fast(),
    )
    .unwrap()
}

fn token(emu: &Emulator) -> Client {
    Client::with_options(
        &emu.url(),
        Credentials::Token(SecretString::from(emu.token().unwrap())),
        fast(),
    )
    .unwrap()
}

fn ws(emu: &Emulator) -> Workspace {
    let w = emu.workspace();
    Workspace {
        id: w.id,
        name: w.name,
        slug: Some(w.slug),
    }
}

fn env(emu: &Emulator, name: &str) -> String {
    emu.environment_id(&emu.workspace().id, name).unwrap()
}

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

fn count(emu: &Emulator, method: &str, prefix: &str) -> usize {
    emu.requests()
        .iter()
        .filter(|r| r.method == method && r.path.starts_with(prefix))
        .count()
}

fn assert_no_secret(text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "secret {s:?} leaked into: {text}");
    }
}

fn assert_error_clean(e: &Error, secrets: &[&str]) {
    assert_no_secret(&format!("{e} {e:?}"), secrets);
}

/// A raw session on the emulator: (HTTP client, cookie header, workspace id).
async fn raw_session(emu: &Emulator) -> (reqwest::Client, String, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/api/authenticate", emu.url()))
        .json(&json!({"email": emu.email().unwrap(), "password": emu.password().unwrap()}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.split(';').next().map(str::to_string))
        .unwrap();
    (http, cookie, emu.workspace().id)
}

/// Sends a raw internal call; returns (status, body text).
async fn raw(
    emu: &Emulator,
    s: &(reqwest::Client, String, String),
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, String) {
    let mut rb =
        s.0.request(method, format!("{}{path}", emu.url()))
            .header("cookie", &s.1)
            .header("tj-workspace-id", &s.2);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// Imports (through the client) an app whose export carries a postgres data source
/// `orders_db` with an encrypted `password`, made in the second workspace; returns the id of
/// the data source the import created in the default workspace.
async fn import_postgres_app(emu: &Emulator, c: &Client, app_name: &str) -> String {
    let other = emu.workspaces()[1].clone();
    let src = emu
        .create_app_in(&other.id, &format!("{app_name} source"), None)
        .unwrap();
    emu.edit_app(&src.id, |content| {
        add_postgres_source(content, "orders_db", &other.environments);
    })
    .unwrap();
    let export = emu.export_of(&src.id).unwrap();
    c.import_app(&ws(emu), &export, app_name).await.unwrap();
    emu.data_source(&emu.workspace().id, "orders_db")
        .expect("the import created the data source")
        .id
}

// ---- environments -------------------------------------------------------------------------

#[tokio::test]
async fn environments_in_both_modes_and_editions() {
    for community in [false, true] {
        let emu = emulator_with(|c| c.community = community).await;
        let envs = session(&emu).list_environments(&ws(&emu)).await.unwrap();
        let names: Vec<_> = envs.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["development", "staging", "production"]);
        assert_eq!(
            envs.iter().map(|e| e.priority).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(envs[2].is_default && !envs[0].is_default && !envs[1].is_default);
        assert_eq!(envs[2].id, env(&emu, "production"));
        if !community {
            let by_token = token(&emu).list_environments(&ws(&emu)).await.unwrap();
            assert_eq!(by_token, envs, "the External API v2 gives the same list");
        } else {
            let e = token(&emu).list_environments(&ws(&emu)).await.unwrap_err();
            assert_eq!(e.reason(), "ToolJetFeatureUnavailable");
        }
    }
    let old = emulator_with(|c| {
        c.community = true;
        c.single_environment = true;
    })
    .await;
    let envs = session(&old).list_environments(&ws(&old)).await.unwrap();
    assert_eq!(envs.len(), 1);
    assert_eq!(envs[0].name, "production");
    assert!(envs[0].is_default);
}

// ---- constants ----------------------------------------------------------------------------

#[tokio::test]
async fn enterprise_writes_only_the_named_environment() {
    let emu = ee().await;
    let w = ws(&emu);
    let c = session(&emu);
    let (dev, stg, prod) = (
        env(&emu, "development"),
        env(&emu, "staging"),
        env(&emu, "production"),
    );
    let id = c
        .create_constant(
            &w,
            "DB_HOST",
            ConstantKind::Global,
            &secret("db.stage"),
            std::slice::from_ref(&stg),
        )
        .await
        .unwrap();
    let value = |e: &str| emu.constant_value(&w.id, "DB_HOST", false, e);
    assert_eq!(value("staging").as_deref(), Some("db.stage"));
    assert_eq!(value("production").as_deref(), Some(""));
    assert_eq!(value("development").as_deref(), Some(""));

    let in_stg = c.constants_in_environment(&w, &stg).await.unwrap();
    let entry = in_stg.iter().find(|e| e.name == "DB_HOST").unwrap();
    assert_eq!(entry.id, id);
    assert_eq!(entry.kind, ConstantKind::Global);
    assert!(!entry.value_masked);
    assert_eq!(
        entry
            .value
            .as_ref()
            .map(|v| secrecy::ExposeSecret::expose_secret(v).to_string()),
        Some("db.stage".to_string())
    );

    c.update_constant(&w, &id, &secret("db.prod"), &prod)
        .await
        .unwrap();
    assert_eq!(value("production").as_deref(), Some("db.prod"));
    assert_eq!(value("staging").as_deref(), Some("db.stage"));
    assert_eq!(value("development").as_deref(), Some(""));

    // A Secret may share the Global's name; its value never comes back.
    let sid = c
        .create_constant(
            &w,
            "DB_HOST",
            ConstantKind::Secret,
            &secret("s3cr3t-db-host"),
            &[dev.clone(), prod.clone()],
        )
        .await
        .unwrap();
    assert_ne!(sid, id);
    assert_eq!(
        emu.constant_value(&w.id, "DB_HOST", true, "development")
            .as_deref(),
        Some("s3cr3t-db-host")
    );
    let in_dev = c.constants_in_environment(&w, &dev).await.unwrap();
    let s = in_dev
        .iter()
        .find(|e| e.name == "DB_HOST" && e.kind == ConstantKind::Secret)
        .unwrap();
    assert!(s.value_masked && s.value.is_none());
    assert_eq!(s.id, sid);
    assert_no_secret(&format!("{in_dev:?}"), &["s3cr3t-db-host"]);

    // Delete with an environment: EE removes the whole constant.
    c.delete_constant(&w, &sid, Some(&dev)).await.unwrap();
    assert!(emu
        .constants(&w.id)
        .iter()
        .all(|k| !(k.name == "DB_HOST" && k.secret)));
    c.delete_constant(&w, &id, None).await.unwrap();
    assert!(emu.constants(&w.id).iter().all(|k| k.name != "DB_HOST"));

    // Gone: update and delete are NotFound (ToolJet's 500 "Constant not found"), not a retry.
    let before = count(&emu, "PATCH", "/api/organization-constants/");
    let e = c
        .update_constant(&w, &id, &secret("again"), &prod)
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "ToolJetNotFound", "{e}");
    assert!(!e.is_transient());
    assert_eq!(
        count(&emu, "PATCH", "/api/organization-constants/"),
        before + 1,
        "no retry of a write"
    );
    let e = c.delete_constant(&w, &id, None).await.unwrap_err();
    assert_eq!(e.reason(), "ToolJetNotFound", "{e}");
}

#[tokio::test]
async fn community_edition_fans_writes_out_to_every_environment() {
    let emu = ce().await;
    let w = ws(&emu);
    let c = session(&emu);
    let (dev, stg) = (env(&emu, "development"), env(&emu, "staging"));
    let id = c
        .create_constant(
            &w,
            "API_TOKEN",
            ConstantKind::Secret,
            &secret("tok-one-1234"),
            std::slice::from_ref(&stg),
        )
        .await
        .unwrap();
    let all = |v: &str| {
        let k = emu
            .constants(&w.id)
            .into_iter()
            .find(|k| k.name == "API_TOKEN")
            .unwrap();
        assert!(k.secret);
        assert_eq!(k.values.len(), 3);
        assert!(k.values.values().all(|x| x == v), "{:?}", k.values.keys());
    };
    all("tok-one-1234");
    c.update_constant(&w, &id, &secret("tok-two-5678"), &dev)
        .await
        .unwrap();
    all("tok-two-5678");
    // CE's delete with an environment blanks that environment's value only.
    c.delete_constant(&w, &id, Some(&dev)).await.unwrap();
    assert_eq!(
        emu.constant_value(&w.id, "API_TOKEN", true, "development")
            .as_deref(),
        Some("")
    );
    assert_eq!(
        emu.constant_value(&w.id, "API_TOKEN", true, "production")
            .as_deref(),
        Some("tok-two-5678")
    );
    c.delete_constant(&w, &id, None).await.unwrap();
    assert!(emu.constants(&w.id).iter().all(|k| k.name != "API_TOKEN"));
}

#[tokio::test]
async fn routes_answer_with_tooljets_status_codes_and_mask_secrets() {
    let emu = ee().await;
    let s = raw_session(&emu).await;
    let prod = env(&emu, "production");
    let post = |body: Value| {
        raw(
            &emu,
            &s,
            reqwest::Method::POST,
            "/api/organization-constants",
            Some(body),
        )
    };
    let (st, body) = post(json!({"constant_name": "PAY_KEY", "value": "pay-secret-9876", "type": "Secret", "environments": [prod]})).await;
    assert_eq!(st, 201, "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    let id = created["constant"]["id"].as_str().unwrap().to_string();
    for key in [
        "constant_name",
        "organization_id",
        "type",
        "created_at",
        "updated_at",
    ] {
        assert!(created["constant"].get(key).is_some(), "{key} in {body}");
    }
    assert_no_secret(&body, &["pay-secret-9876"]);
    // Same name and type: 422; the other type: fine.
    let (st, body) = post(
        json!({"constant_name": "PAY_KEY", "value": "x", "type": "Secret", "environments": [prod]}),
    )
    .await;
    assert_eq!(st, 422);
    assert!(body.contains("Already exists!"), "{body}");
    let (st, _) = post(
        json!({"constant_name": "PAY_KEY", "value": "x", "type": "Global", "environments": [prod]}),
    )
    .await;
    assert_eq!(st, 201);
    // DTO validation: 400 with a list of messages.
    for bad in [
        json!({"constant_name": "1bad", "value": "x", "type": "Global", "environments": [prod]}),
        json!({"constant_name": "a".repeat(51), "value": "x", "type": "Global", "environments": [prod]}),
        json!({"constant_name": "ok", "value": "", "type": "Global", "environments": [prod]}),
        json!({"constant_name": "ok", "value": "x".repeat(10_001), "type": "Global", "environments": [prod]}),
        json!({"constant_name": "ok", "value": "x", "environments": [prod]}),
        json!({"constant_name": "ok", "value": "x", "type": "Other", "environments": [prod]}),
        json!({"constant_name": "ok", "value": "x", "type": "Global", "environments": [""]}),
    ] {
        let (st, body) = post(bad.clone()).await;
        assert_eq!(st, 400, "{bad}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["message"].is_array(), "{body}");
        assert_eq!(v["statusCode"], 400);
    }
    // Masking on every route.
    for path in [
        "/api/organization-constants".to_string(),
        format!("/api/organization-constants/environment/{prod}"),
    ] {
        let (st, body) = raw(&emu, &s, reqwest::Method::GET, &path, None).await;
        assert_eq!(st, 200);
        assert_no_secret(&body, &["pay-secret-9876", "emulated-secret-value"]);
    }
    let (_, body) = raw(
        &emu,
        &s,
        reqwest::Method::GET,
        &format!("/api/organization-constants/environment/{prod}"),
        None,
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let pay = v["constants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "PAY_KEY" && c["type"] == "Secret")
        .unwrap();
    assert_eq!(pay["value"], "**********");
    let (_, body) = raw(
        &emu,
        &s,
        reqwest::Method::GET,
        "/api/organization-constants",
        None,
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["constants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == &json!({"name": "PAY_KEY"})),
        "{body}"
    );
    // PATCH: unknown id and nothing to update are 500.
    let patch = |id: String, body: Value| {
        let path = format!("/api/organization-constants/{id}");
        let s = &s;
        let emu = &emu;
        async move { raw(emu, s, reqwest::Method::PATCH, &path, Some(body)).await }
    };
    let (st, body) = patch(
        "00000000-0000-4000-8000-000000000000".into(),
        json!({"value": "v", "environment_id": prod}),
    )
    .await;
    assert_eq!(st, 500);
    assert!(body.contains("Constant not found"), "{body}");
    let (st, body) = patch(id.clone(), json!({})).await;
    assert_eq!(st, 500);
    assert!(body.contains("Nothing to update"), "{body}");
    // EE PATCH without environment_id writes production.
    let (st, body) = patch(id.clone(), json!({"value": "pay-secret-new"})).await;
    assert_eq!(st, 200, "{body}");
    assert!(serde_json::from_str::<Value>(&body).unwrap()["constant"]["id"] == json!(id));
    assert_eq!(
        emu.constant_value(&s.2, "PAY_KEY", true, "production")
            .as_deref(),
        Some("pay-secret-new")
    );
    // DELETE: 200 {statusCode:204}; unknown → 500.
    let path = format!("/api/organization-constants/{id}");
    let (st, body) = raw(&emu, &s, reqwest::Method::DELETE, &path, None).await;
    assert_eq!((st, body.as_str()), (200, r#"{"statusCode":204}"#));
    let (st, _) = raw(&emu, &s, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(st, 500);
    // A foreign workspace's constant is "not found" too.
    let other = emu.workspaces()[1].id.clone();
    emu.set_constant(&other, "FOREIGN", false, "v");
    let fid = emu
        .constants(&other)
        .into_iter()
        .find(|c| c.name == "FOREIGN")
        .unwrap()
        .id;
    let (st, _) = patch(fid, json!({"value": "v", "environment_id": prod})).await;
    assert_eq!(st, 500);
    // Token mode has no constants route at all.
    let resp =
        s.0.get(format!(
            "{}/api/v2/ext/workspaces/{}/constants",
            emu.url(),
            s.2
        ))
        .header("authorization", format!("Basic {}", emu.token().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn client_maps_duplicates_and_checks_inputs_before_sending() {
    let emu = ee().await;
    let w = ws(&emu);
    let c = session(&emu);
    let prod = vec![env(&emu, "production")];
    c.create_constant(&w, "REGION", ConstantKind::Global, &secret("eu-1"), &prod)
        .await
        .unwrap();
    let e = c
        .create_constant(
            &w,
            "REGION",
            ConstantKind::Global,
            &secret("eu-2-value"),
            &prod,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Rejected { status: 422, .. }), "{e:?}");
    assert!(e.to_string().contains("\"REGION\""), "{e}");
    assert_error_clean(&e, &["eu-2-value"]);

    emu.clear_requests();
    let long = format!("sekrit-{}", "z".repeat(10_000));
    let long_name = "n".repeat(51);
    let bad: Vec<(&str, SecretString, Vec<String>)> = vec![
        ("db-host", secret("v"), prod.clone()),
        ("9lives", secret("v"), prod.clone()),
        ("", secret("v"), prod.clone()),
        (&long_name, secret("v"), prod.clone()),
        ("EMPTY", secret(""), prod.clone()),
        ("LONG", SecretString::from(long.clone()), prod.clone()),
        ("NO_ENV", secret("sekrit-no-env"), vec![]),
    ];
    for (name, value, envs) in &bad {
        let e = c
            .create_constant(&w, name, ConstantKind::Secret, value, envs)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidConstant { .. }), "{name}: {e:?}");
        assert!(e.to_string().contains(&format!("{name:?}")), "{e}");
        assert_error_clean(&e, &["sekrit"]);
    }
    let e = c
        .update_constant(&w, "some-id", &SecretString::from(long.clone()), &prod[0])
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidConstant { .. }), "{e:?}");
    assert_error_clean(&e, &["sekrit"]);
    assert!(emu.requests().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn token_mode_says_constants_need_session_credentials() {
    let emu = ee().await;
    let w = ws(&emu);
    let c = token(&emu);
    let prod = env(&emu, "production");
    emu.clear_requests();
    let errors = vec![
        c.constants_in_environment(&w, &prod).await.unwrap_err(),
        c.create_constant(
            &w,
            "A",
            ConstantKind::Secret,
            &secret("tok-mode-secret"),
            std::slice::from_ref(&prod),
        )
        .await
        .unwrap_err(),
        c.update_constant(&w, "id", &secret("tok-mode-secret"), &prod)
            .await
            .unwrap_err(),
        c.delete_constant(&w, "id", None).await.unwrap_err(),
        c.list_constants(&w).await.unwrap_err(),
        c.list_data_sources(&w).await.unwrap_err(),
        c.data_source_options(&w, "id", &prod).await.unwrap_err(),
        c.update_data_source_options(&w, "id", &prod, &[])
            .await
            .unwrap_err(),
    ];
    for e in &errors {
        assert!(matches!(e, Error::FeatureUnavailable { .. }), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("`email` and `password`"), "{text}");
        assert!(text.contains("External API"), "{text}");
        assert_error_clean(e, &["tok-mode-secret"]);
    }
    assert!(emu.requests().is_empty(), "nothing was sent");
}

/// A ToolJet stand-in: logs in, then answers every call with `status` and the request body
/// echoed in the message, as a careless server or proxy might.
async fn echoing_server(status: u16) -> String {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move |body: String| async move {
        if body.contains("\"email\"") {
            return (
                StatusCode::CREATED,
                [(
                    "set-cookie",
                    "tj_auth_token=sess-echo-1234; Path=/; HttpOnly",
                )],
                axum::Json(json!({"current_organization_id": "o1"})),
            )
                .into_response();
        }
        (
            StatusCode::from_u16(status).unwrap(),
            axum::Json(json!({"statusCode": status, "message": format!("bad input: {body}")})),
        )
            .into_response()
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn echoed_values_never_reach_errors() {
    let w = Workspace {
        id: "o1".into(),
        name: "o1".into(),
        slug: None,
    };
    let secrets = ["echo-secret-\"value\"", "ds-pass-0001", "ds-key-0002"];
    for status in [400, 422, 500] {
        let url = echoing_server(status).await;
        let c = Client::with_options(
            &url,
            Credentials::Session {
                email: "a@example.com".into(),
                password: secret("pw-echo-000"),
            },
            fast(),
        )
        .unwrap();
        let v = secret(secrets[0]);
        let mut errors = vec![
            c.create_constant(&w, "K", ConstantKind::Secret, &v, &["e1".into()])
                .await
                .unwrap_err(),
            c.update_constant(&w, "id1", &v, "e1").await.unwrap_err(),
        ];
        let options = vec![
            OptionEntry {
                key: "host".into(),
                value: Some(OptionValue::Plain(json!("db"))),
                encrypted: false,
            },
            OptionEntry {
                key: "password".into(),
                value: Some(OptionValue::Secret(secret(secrets[1]))),
                encrypted: true,
            },
            OptionEntry {
                key: "api_key".into(),
                value: Some(OptionValue::Secret(secret(secrets[2]))),
                encrypted: true,
            },
        ];
        errors.push(
            c.update_data_source_options(&w, "ds1", "e1", &options)
                .await
                .unwrap_err(),
        );
        for e in &errors {
            let text = format!("{e} {e:?}");
            assert!(text.contains("bad input"), "the message is quoted: {text}");
            assert_error_clean(e, &secrets);
            assert_error_clean(e, &["sess-echo-1234", "pw-echo-000", "echo-secret"]);
        }
        assert_no_secret(&format!("{options:?}"), &secrets);
    }
}

// ---- data sources -------------------------------------------------------------------------

#[tokio::test]
async fn import_creates_data_sources_with_empty_credentials_and_reuses_them() {
    let emu = ee().await;
    let w = ws(&emu);
    let c = session(&emu);
    let ds_id = import_postgres_app(&emu, &c, "Orders").await;
    let list = c.list_data_sources(&w).await.unwrap();
    let ds = list.iter().find(|d| d.name == "orders_db").unwrap();
    assert_eq!(
        (ds.id.as_str(), ds.kind.as_str()),
        (ds_id.as_str(), "postgresql")
    );
    assert_eq!(ds.scope.as_deref(), Some("global"));
    // The sample app's REST source came along; the static restapidefault did not.
    assert!(list
        .iter()
        .any(|d| d.name == "orders_api" && d.kind == "restapi"));
    assert!(list.iter().all(|d| d.name != "restapidefault"));
    for e in ["development", "staging", "production"] {
        assert_eq!(
            emu.data_source_value(&ds_id, e, "password"),
            Some(json!("")),
            "{e}"
        );
        assert_eq!(
            emu.data_source_value(&ds_id, e, "host"),
            Some(json!("db.example.invalid"))
        );
    }
    let opts = c
        .data_source_options(&w, &ds_id, &env(&emu, "production"))
        .await
        .unwrap();
    assert_eq!(opts["port"]["value"], 5432);
    assert_eq!(opts["password"]["encrypted"], true);
    assert!(opts["password"].get("credential_id").is_some());
    assert!(opts["password"].get("value").is_none());

    // Set the password, then import again: the existing data source is reused, untouched.
    let merged =
        merge_options(&opts, &[("password".into(), secret("pg-pass-4242"))], true).unwrap();
    c.update_data_source_options(&w, &ds_id, &env(&emu, "production"), &merged)
        .await
        .unwrap();
    import_postgres_app(&emu, &c, "Orders again").await;
    let same: Vec<_> = emu
        .data_sources(&w.id)
        .into_iter()
        .filter(|d| d.name == "orders_db")
        .collect();
    assert_eq!(same.len(), 1);
    assert_eq!(
        emu.data_source_value(&ds_id, "production", "password"),
        Some(json!("pg-pass-4242"))
    );
}

#[tokio::test]
async fn a_put_replaces_the_options_so_the_merge_keeps_every_one() {
    for community in [false, true] {
        let emu = emulator_with(|c| c.community = community).await;
        let w = ws(&emu);
        let c = session(&emu);
        let ds_id = import_postgres_app(&emu, &c, "Orders").await;
        let stg = env(&emu, "staging");
        let keys_before: Vec<String> = c
            .data_source_options(&w, &ds_id, &stg)
            .await
            .unwrap()
            .keys()
            .cloned()
            .collect();

        let current = c.data_source_options(&w, &ds_id, &stg).await.unwrap();
        let merged = merge_options(
            &current,
            &[("password".into(), secret("stg-pass-777"))],
            true,
        )
        .unwrap();
        c.update_data_source_options(&w, &ds_id, &stg, &merged)
            .await
            .unwrap();
        let after = c.data_source_options(&w, &ds_id, &stg).await.unwrap();
        assert_eq!(after.keys().cloned().collect::<Vec<_>>(), keys_before);
        assert_eq!(
            after["host"], current["host"],
            "non-secret values unchanged"
        );
        assert_eq!(
            emu.data_source_value(&ds_id, "staging", "password"),
            Some(json!("stg-pass-777"))
        );
        let prod_pw = emu.data_source_value(&ds_id, "production", "password");
        if community {
            assert_eq!(
                prod_pw,
                Some(json!("stg-pass-777")),
                "CE writes every environment"
            );
        } else {
            assert_eq!(prod_pw, Some(json!("")), "EE writes only staging");
        }
        let w1 = emu.data_source_writes();
        assert_eq!(w1.len(), 1);
        assert_eq!(w1[0].environments.len(), if community { 3 } else { 1 });
        assert!(!w1[0].keys.iter().any(|k| k == "name"));

        // Unchanged hash and the key already encrypted: nothing to send.
        let current = c.data_source_options(&w, &ds_id, &stg).await.unwrap();
        assert!(merge_options(
            &current,
            &[("password".into(), secret("stg-pass-777"))],
            false
        )
        .is_none());

        // A second PUT of the merge: the encrypted key without value keeps its secret.
        let no_secret = merge_options(&current, &[], true).unwrap();
        c.update_data_source_options(&w, &ds_id, &stg, &no_secret)
            .await
            .unwrap();
        assert_eq!(
            emu.data_source_value(&ds_id, "staging", "password"),
            Some(json!("stg-pass-777"))
        );

        // What the merge protects against: a partial list drops every option not sent.
        let partial = vec![OptionEntry {
            key: "password".into(),
            value: Some(OptionValue::Secret(secret("only-this"))),
            encrypted: true,
        }];
        c.update_data_source_options(&w, &ds_id, &stg, &partial)
            .await
            .unwrap();
        let after = c.data_source_options(&w, &ds_id, &stg).await.unwrap();
        assert_eq!(after.keys().collect::<Vec<_>>(), ["password"]);
        assert_eq!(emu.data_source_value(&ds_id, "staging", "host"), None);
        assert_eq!(count(&emu, "PUT", "/api/data-sources/"), 3);
        assert_eq!(emu.data_source_writes().len(), 3);
    }
}

#[tokio::test]
async fn restapi_puts_wipe_token_data_and_secrets_never_come_back() {
    let emu = ee().await;
    let w = ws(&emu);
    let c = session(&emu);
    let ds_id = emu.create_data_source(
        &w.id,
        "crm",
        "restapi",
        &[
            ("url", json!("https://crm.example.invalid"), false),
            ("headers", json!([["x-tenant", "t1"]]), false),
            ("client_secret", json!("oauth-client-secret-55"), true),
        ],
    );
    assert!(emu.set_token_data(
        &ds_id,
        "production",
        json!({"access_token": "oauth-access-66"})
    ));
    let prod = env(&emu, "production");
    let current = c.data_source_options(&w, &ds_id, &prod).await.unwrap();
    assert!(
        !current.contains_key("tokenData"),
        "tokenData is never shown"
    );
    let merged =
        merge_options(&current, &[("api_key".into(), secret("crm-key-77"))], true).unwrap();
    c.update_data_source_options(&w, &ds_id, &prod, &merged)
        .await
        .unwrap();
    assert_eq!(
        emu.data_source_value(&ds_id, "production", "tokenData"),
        None,
        "wiped"
    );
    assert_eq!(
        emu.data_source_value(&ds_id, "production", "client_secret"),
        Some(json!("oauth-client-secret-55"))
    );
    assert_eq!(
        emu.data_source_value(&ds_id, "production", "api_key"),
        Some(json!("crm-key-77"))
    );
    assert_eq!(
        emu.data_source_value(&ds_id, "production", "headers"),
        Some(json!([["x-tenant", "t1"]]))
    );

    // No route shows a secret, and a foreign workspace's list is refused.
    let s = raw_session(&emu).await;
    let secrets = ["oauth-client-secret-55", "crm-key-77", "oauth-access-66"];
    for path in [
        format!("/api/data-sources/{}", w.id),
        format!("/api/data-sources/{ds_id}/environment/{prod}"),
    ] {
        let (st, body) = raw(&emu, &s, reqwest::Method::GET, &path, None).await;
        assert_eq!(st, 200, "{path}");
        assert_no_secret(&body, &secrets);
        assert!(body.contains("credential_id"), "{body}");
    }
    let other = emu.workspaces()[1].id.clone();
    let (st, _) = raw(
        &emu,
        &s,
        reqwest::Method::GET,
        &format!("/api/data-sources/{other}"),
        None,
    )
    .await;
    assert_eq!(st, 403);

    // A PUT with no environment_id writes production (EE); the answer is an empty 200.
    let (st, body) = raw(
        &emu,
        &s,
        reqwest::Method::PUT,
        &format!("/api/data-sources/{ds_id}"),
        Some(json!({"options": [{"key": "url", "value": "https://x", "encrypted": false}]})),
    )
    .await;
    assert_eq!((st, body.as_str()), (200, ""));
    assert_eq!(
        emu.data_source_value(&ds_id, "production", "url"),
        Some(json!("https://x"))
    );

    // Unknown or foreign data sources are NotFound.
    let foreign = emu.create_data_source(&other, "theirs", "postgresql", &[]);
    for id in [foreign.as_str(), "00000000-0000-4000-8000-000000000000"] {
        let e = c
            .update_data_source_options(&w, id, &prod, &merged)
            .await
            .unwrap_err();
        assert_eq!(e.reason(), "ToolJetNotFound", "{e}");
        assert_error_clean(&e, &secrets);
        let e = c.data_source_options(&w, id, &prod).await.unwrap_err();
        assert_eq!(e.reason(), "ToolJetNotFound", "{e}");
    }
}
