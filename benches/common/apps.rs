//! Apps shaped like ToolJet's exports, and ToolJet GitSync's own per-app push loop (the
//! baseline of `push` and `migrate`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tooljet_gitsync_operator::git::cli::GitSession;
use tooljet_gitsync_operator::layout::{
    format_push_date, git_commit_message, to_tooljet_json, MetaFile, MetaRecord, META_PATH,
};
use tooljet_gitsync_testkit::gitserver::GitServer;

/// About how large each app's export is.
pub const EXPORT_BYTES: usize = 100 * 1024;
pub const AUTHOR: &str = "Jane Doe";
pub const EMAIL: &str = "jane@example.com";
/// What the per-app push baseline does.
pub const BASELINE_PUSH: &str = "ToolJet GitSync per-app loop (reference §4): git clone --depth 1, write <App>/<v>.json + .meta/meta.json, git add, git commit, git push, delete the clone; git CLI, sequential";

/// One generated app.
pub struct App {
    /// Its ToolJet id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its (only) version's id.
    pub version_id: String,
    /// Its export, ToolJet's shape.
    pub export: Value,
}

/// A deterministic UUID-looking id, so that exports look like ToolJet's and do not compress
/// unrealistically well.
pub fn uuid(seed: &str) -> String {
    let h = Sha256::digest(seed.as_bytes());
    let x: String = h.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &x[0..8],
        &x[8..12],
        &x[13..16],
        &x[17..20],
        &x[20..32]
    )
}

const ENVIRONMENTS: [&str; 3] = ["development", "staging", "production"];

const WORDS: [&str; 16] = [
    "revenue", "region", "filter", "table", "customer", "order", "total", "status", "invoice",
    "pending", "shipped", "quarter", "target", "forecast", "account", "manager",
];

fn words(seed: &str, n: usize) -> String {
    let h = Sha256::digest(seed.as_bytes());
    (0..n)
        .map(|i| WORDS[(h[i % 32] as usize + i) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

/// An export shaped like ToolJet's (reference §2), about `EXPORT_BYTES` once written.
pub fn export(i: usize, name: &str, version_id: &str) -> Value {
    let app_id = uuid(&format!("app{i}"));
    let page_id = uuid(&format!("page{i}"));
    let env_ids: Vec<String> = ENVIRONMENTS
        .iter()
        .map(|e| uuid(&format!("env{e}")))
        .collect();
    let ds_id = uuid(&format!("ds{i}"));
    let ts = "2024-03-01T10:22:33.123Z";
    let component = |k: usize| {
        let id = uuid(&format!("c{i}-{k}"));
        json!({
            "id": id,
            "name": format!("text{k}"),
            "type": if k % 3 == 0 { "Table" } else if k % 3 == 1 { "Text" } else { "Button" },
            "pageId": page_id,
            "parent": null,
            "properties": {
                "text": {"value": words(&format!("t{i}-{k}"), 12)},
                "loadingState": {"value": "{{false}}"},
                "data": {"value": format!("{{{{queries.query{}.data}}}}", k % 7)},
                "tooltip": {"value": words(&format!("tt{i}-{k}"), 6)}
            },
            "styles": {
                "textColor": {"value": "#000"},
                "backgroundColor": {"value": "#fff00000"},
                "visibility": {"value": "{{true}}"},
                "disabledState": {"value": "{{false}}"}
            },
            "general": null,
            "generalStyles": {"boxShadow": {"value": "0px 0px 0px 0px #00000040"}},
            "displayPreferences": {"showOnDesktop": {"value": "{{true}}"}, "showOnMobile": {"value": "{{false}}"}},
            "validation": {},
            "permissions": [],
            "createdAt": ts,
            "updatedAt": ts,
            "layouts": [
                {"id": uuid(&format!("l{i}-{k}-d")), "type": "desktop", "top": 30 + 40 * k, "left": 4.6 * (k % 9) as f64, "width": 12, "height": 40, "componentId": id},
                {"id": uuid(&format!("l{i}-{k}-m")), "type": "mobile", "top": 30 + 40 * k, "left": 0, "width": 43, "height": 40, "componentId": id}
            ]
        })
    };
    let query = |k: usize| {
        json!({
            "id": uuid(&format!("q{i}-{k}")),
            "name": format!("query{k}"),
            "options": {"query": format!("select * from orders where region = '{}' limit 100", words(&format!("q{i}{k}"), 1)), "transformationLanguage": "javascript", "enableTransformation": false},
            "dataSourceId": ds_id,
            "appVersionId": version_id,
            "createdAt": ts,
            "updatedAt": ts
        })
    };
    let mut export = json!({
        "app": [{"definition": {"appV2": {
            "type": "front-end",
            "id": app_id,
            "name": name,
            "slug": app_id,
            "isPublic": false,
            "isMaintenanceOn": false,
            "icon": "sentfast",
            "organizationId": uuid("org"),
            "currentVersionId": version_id,
            "userId": uuid("user"),
            "workflowApiToken": null,
            "workflowEnabled": false,
            "createdAt": ts,
            "creationMode": "DEFAULT",
            "updatedAt": ts,
            "editingVersion": {"id": version_id, "name": "v1", "appId": app_id},
            "components": [],
            "pages": [{"id": page_id, "name": "Home", "handle": "home", "index": 1, "disabled": false, "hidden": false, "appVersionId": version_id}],
            "events": [],
            "dataQueries": (0..7).map(query).collect::<Vec<_>>(),
            "dataSources": [{"id": ds_id, "name": "postgresql", "kind": "postgresql", "type": "default", "scope": "global", "appVersionId": null, "createdAt": ts, "updatedAt": ts}],
            "appVersions": [{"id": version_id, "name": "v1", "globalSettings": {"hideHeader": false, "appInMaintenance": false, "canvasMaxWidth": 100, "canvasMaxWidthType": "%", "canvasBackgroundColor": "#edeff5", "backgroundFxQuery": ""}, "showViewerNavigation": true, "homePageId": page_id, "appId": app_id, "currentEnvironmentId": env_ids[0], "promotedFrom": null, "createdAt": ts, "updatedAt": ts}],
            "appEnvironments": env_ids.iter().enumerate().map(|(p, id)| json!({"id": id, "name": ENVIRONMENTS[p], "isDefault": p == 0, "priority": p + 1, "enabled": true, "createdAt": ts, "updatedAt": ts})).collect::<Vec<_>>(),
            "dataSourceOptions": env_ids.iter().map(|e| json!({"id": uuid(&format!("dso{i}{e}")), "options": {"host": {"value": "db"}, "port": {"value": 5432}}, "environmentId": e, "dataSourceId": ds_id})).collect::<Vec<_>>(),
            "schemaDetails": {"multiPages": true, "multiEnv": true, "globalDataSources": true}
        }}}],
        "tooljet_version": "3.16.0-ee-lts"
    });
    let mut k = 0;
    loop {
        let size = to_tooljet_json(&export)
            .map(|b| b.len())
            .unwrap_or(usize::MAX);
        if size >= EXPORT_BYTES {
            return export;
        }
        if let Some(components) =
            export["app"][0]["definition"]["appV2"]["components"].as_array_mut()
        {
            for _ in 0..10 {
                components.push(component(k));
                k += 1;
            }
        } else {
            return export;
        }
    }
}

/// `n` distinct apps of about [`EXPORT_BYTES`] each.
pub fn apps(n: usize) -> Vec<App> {
    (0..n)
        .map(|i| {
            let name = format!("App {i:03} {}", words(&format!("n{i}"), 2));
            let version_id = uuid(&format!("v{i}"));
            App {
                id: uuid(&format!("app{i}")),
                export: export(i, &name, &version_id),
                name,
                version_id,
            }
        })
        .collect()
}

/// The commit author of the baseline loops.
pub fn git_env() -> [(&'static str, &'static str); 4] {
    [
        ("GIT_AUTHOR_NAME", AUTHOR),
        ("GIT_AUTHOR_EMAIL", EMAIL),
        ("GIT_COMMITTER_NAME", AUTHOR),
        ("GIT_COMMITTER_EMAIL", EMAIL),
    ]
}

/// What ToolJet's GitSync does for each app (reference §4), over the same sshd, into a new
/// repository `repo`: [`BASELINE_PUSH`]. Returns the time taken and the pushes made.
pub async fn baseline_push(
    server: &GitServer,
    session: &GitSession,
    repo: &str,
    apps: &[App],
    data: &Path,
) -> Result<(Duration, u64)> {
    let url = server.create_repo(repo)?;
    let work = data.join("tooljet-gitsync");
    std::fs::create_dir_all(&work)?;
    let env = git_env();
    let date: jiff::Timestamp = "2024-03-01T10:22:33.123Z".parse()?;
    let mut pushes = 0;
    let start = Instant::now();
    for (i, app) in apps.iter().enumerate() {
        let dir = work.join(format!(
            "user-org-{i}-pushing-{}",
            start.elapsed().as_millis()
        ));
        let dir_s = dir.to_string_lossy().to_string();
        session
            .run(
                ["clone", "--depth", "1", "-q", url.as_str(), &dir_s],
                Some(&work),
                None,
                &env,
            )
            .await?;
        let has_head = session
            .run(
                ["rev-parse", "--verify", "-q", "HEAD"],
                Some(&dir),
                None,
                &env,
            )
            .await
            .is_ok();
        let folder = dir.join(&app.name);
        std::fs::create_dir_all(&folder)?;
        std::fs::write(folder.join("v1.json"), to_tooljet_json(&app.export)?)?;
        let meta_path = dir.join(META_PATH);
        let mut meta = MetaFile::parse_optional(std::fs::read(&meta_path).ok().as_deref())?;
        meta.upsert(
            &app.id,
            &MetaRecord {
                git_app_name: app.name.clone(),
                last_commit_message: "App creation".into(),
                git_version_id: app.version_id.clone(),
                last_push_date: format_push_date(date),
                git_version_name: "v1".into(),
                last_commit_user: AUTHOR.into(),
            },
        )?;
        std::fs::create_dir_all(meta_path.parent().context("meta dir")?)?;
        std::fs::write(&meta_path, meta.to_bytes()?)?;
        session.run(["add", "-A"], Some(&dir), None, &env).await?;
        let message = git_commit_message(has_head, "v1", &app.name, "App creation");
        session
            .run(
                ["commit", "-q", "-m", message.as_str()],
                Some(&dir),
                None,
                &env,
            )
            .await?;
        session
            .run(
                ["push", "-q", "origin", "HEAD:refs/heads/main"],
                Some(&dir),
                None,
                &env,
            )
            .await?;
        pushes += 1;
        std::fs::remove_dir_all(&dir)?;
    }
    let elapsed = start.elapsed();
    let commits: usize = server
        .git(repo, &["rev-list", "--count", "main"])?
        .trim()
        .parse()?;
    ensure!(commits == apps.len(), "baseline: {commits} commits");
    Ok((elapsed, pushes))
}
