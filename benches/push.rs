//! Design §6 target: pushing 200 apps to one repository over SSH is at least 20x faster than the
//! per-app loop ToolJet's own GitSync performs (reference §4: shallow clone, write, add,
//! commit, push, delete the clone), on the same machine in the same run.
//!
//! `cargo bench --bench push` (needs root: it starts a loopback sshd + git-shell). Without
//! `--bench` (e.g. `cargo test --all-targets`) it runs a 5-app smoke version.
//! `PUSH_BENCH_APPS` overrides the number of apps.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tooljet_gitsync_operator::api::KeyType;
use tooljet_gitsync_operator::git::cli::GitSession;
use tooljet_gitsync_operator::git::worker::{PushJob, PushResult, Workers};
use tooljet_gitsync_operator::git::{GitCli, HostKeyPolicy, RepoUrl, Transport};
use tooljet_gitsync_operator::keys;
use tooljet_gitsync_operator::layout::{
    format_push_date, git_commit_message, to_tooljet_json, MetaFile, MetaRecord, META_PATH,
};
use tooljet_gitsync_testkit::gitserver::{Access, GitServer};

const EXPORT_BYTES: usize = 100 * 1024;
const AUTHOR: &str = "Jane Doe";
const EMAIL: &str = "jane@example.com";
const BASELINE: &str = "ToolJet GitSync per-app loop (reference §4): git clone --depth 1, write <App>/<v>.json + .meta/meta.json, git add, git commit, git push, delete the clone; git CLI, sequential";

struct App {
    id: String,
    name: String,
    version_id: String,
    export: Value,
}

/// A deterministic UUID-looking id, so that exports look like ToolJet's and do not compress
/// unrealistically well.
fn uuid(seed: &str) -> String {
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
fn export(i: usize, name: &str, version_id: &str) -> Value {
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

fn apps(n: usize) -> Vec<App> {
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

/// (a) The operator: every job queued at once on one worker, as many AppSync reconcilers would.
async fn operator(
    server: &GitServer,
    transport: &Transport,
    apps: &[App],
    data: &Path,
) -> Result<(Duration, u64, u64)> {
    let url = RepoUrl::parse(&server.create_repo("operator")?)?;
    let workers = Workers::new(
        GitCli::new(data.join("scratch"), Duration::from_secs(600)),
        data.join("mirrors"),
    );
    let worker = workers.get(&url);
    let date: jiff::Timestamp = "2024-03-01T10:22:33.123Z".parse()?;
    let jobs: Vec<PushJob> = apps
        .iter()
        .map(|app| PushJob {
            transport: transport.clone(),
            branch: "main".into(),
            app_id: app.id.clone(),
            app_name: app.name.clone(),
            version_id: app.version_id.clone(),
            version_name: "v1".into(),
            export: app.export.clone(),
            message: "App creation".into(),
            author_name: AUTHOR.into(),
            author_email: EMAIL.into(),
            date,
        })
        .collect();
    let start = Instant::now();
    let tasks: Vec<_> = jobs
        .into_iter()
        .map(|job| {
            let worker = worker.clone();
            tokio::spawn(async move { worker.push(job).await })
        })
        .collect();
    for task in tasks {
        match task.await?? {
            PushResult::Committed { .. } => {}
            other => anyhow::bail!("expected a commit, got {other:?}"),
        }
    }
    let elapsed = start.elapsed();
    let stats = worker.stats();
    let commits: usize = server
        .git("operator", &["rev-list", "--count", "main"])?
        .trim()
        .parse()?;
    ensure!(commits == apps.len(), "operator: {commits} commits");
    Ok((elapsed, stats.pushes, stats.fetches))
}

/// (b) What ToolJet's GitSync does for each app (reference §4), over the same sshd.
async fn baseline(
    server: &GitServer,
    session: &GitSession,
    apps: &[App],
    data: &Path,
) -> Result<(Duration, u64)> {
    let url = server.create_repo("baseline")?;
    let work = data.join("tooljet-gitsync");
    std::fs::create_dir_all(&work)?;
    let env = [
        ("GIT_AUTHOR_NAME", AUTHOR),
        ("GIT_AUTHOR_EMAIL", EMAIL),
        ("GIT_COMMITTER_NAME", AUTHOR),
        ("GIT_COMMITTER_EMAIL", EMAIL),
    ];
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
        .git("baseline", &["rev-list", "--count", "main"])?
        .trim()
        .parse()?;
    ensure!(commits == apps.len(), "baseline: {commits} commits");
    Ok((elapsed, pushes))
}

async fn run(n: usize) -> Result<()> {
    let server = GitServer::start()?;
    let key = keys::generate(KeyType::Ed25519, "push-bench")?;
    server.authorize(&key.info.public_openssh, Access::ReadWrite)?;
    let transport = Transport {
        private_key: Some(key.private_openssh),
        host_keys: HostKeyPolicy::Pinned(server.known_hosts_line()?),
    };
    let data = tempfile::tempdir()?;

    let t = Instant::now();
    let apps = apps(n);
    let sizes: Vec<usize> = apps
        .iter()
        .map(|a| to_tooljet_json(&a.export).map(|b| b.len()))
        .collect::<Result<_, _>>()?;
    println!(
        "push bench: {n} apps, export {}..{} bytes each ({:.1} MB total), generated in {:.1?}",
        sizes.iter().min().copied().unwrap_or(0),
        sizes.iter().max().copied().unwrap_or(0),
        sizes.iter().sum::<usize>() as f64 / 1e6,
        t.elapsed()
    );

    let (op, op_pushes, op_fetches) = operator(&server, &transport, &apps, data.path()).await?;
    println!(
        "operator (one worker, {n} PushJobs queued at once): {:.2?}, {op_pushes} push(es), {op_fetches} fetch(es), {n} commits",
        op
    );

    let cli = GitCli::new(
        data.path().join("baseline-scratch"),
        Duration::from_secs(600),
    );
    let session = cli.session(&transport)?;
    println!("baseline: {BASELINE}");
    let (base, base_pushes) = baseline(&server, &session, &apps, data.path()).await?;
    println!("baseline: {:.2?}, {base_pushes} pushes, {n} commits", base);

    let ratio = base.as_secs_f64() / op.as_secs_f64().max(1e-9);
    println!("ratio baseline/operator: {ratio:.1}x (target >= 20x)");
    if n >= 200 && ratio < 20.0 {
        println!("WARNING: below the design §6 target of 20x");
    }
    Ok(())
}

fn main() -> Result<()> {
    let bench = std::env::args().any(|a| a == "--bench");
    let n = match std::env::var("PUSH_BENCH_APPS") {
        Ok(v) => v.parse().context("PUSH_BENCH_APPS")?,
        Err(_) if bench => 200,
        Err(_) => 5,
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(n))
}
