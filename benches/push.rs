//! Design §6 target: pushing 200 apps to one repository over SSH is at least 20x faster than the
//! per-app loop ToolJet's own GitSync performs (reference §4: shallow clone, write, add,
//! commit, push, delete the clone), on the same machine in the same run.
//!
//! `cargo bench --bench push` (needs root: it starts a loopback sshd + git-shell). Without
//! `--bench` (e.g. `cargo test --all-targets`) it runs a 5-app smoke version.
//! `PUSH_BENCH_APPS` overrides the number of apps.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::apps::{apps, baseline_push, App, AUTHOR, BASELINE_PUSH, EMAIL};
use tooljet_gitsync_operator::api::KeyType;
use tooljet_gitsync_operator::git::worker::{PushJob, PushResult, Workers};
use tooljet_gitsync_operator::git::{GitCli, HostKeyPolicy, RepoUrl, Transport};
use tooljet_gitsync_operator::keys;
use tooljet_gitsync_operator::layout::{to_tooljet_json, AppFile};
use tooljet_gitsync_testkit::gitserver::{Access, GitServer};

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
        .map(|app| {
            Ok(PushJob {
                start_from: None,
                transport: transport.clone(),
                branch: "main".into(),
                app_id: app.id.clone(),
                app_name: app.name.clone(),
                version_id: app.version_id.clone(),
                version_name: "v1".into(),
                file: AppFile::of(&app.export)?,
                message: "App creation".into(),
                author_name: AUTHOR.into(),
                author_email: EMAIL.into(),
                date,
                signing: None,
            })
        })
        .collect::<Result<_>>()?;
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

async fn run(n: usize) -> Result<()> {
    let server = GitServer::start()?;
    let key = keys::generate(KeyType::Ed25519, "push-bench")?;
    server.authorize(&key.info.public_openssh, Access::ReadWrite)?;
    let transport = Transport {
        private_key: Some(key.private_openssh),
        host_keys: HostKeyPolicy::Pinned(server.known_hosts_line()?),
        https: None,
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
    println!("baseline: {BASELINE_PUSH}");
    let (base, base_pushes) =
        baseline_push(&server, &session, "baseline", &apps, data.path()).await?;
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
