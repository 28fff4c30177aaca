//! Issue #11 target: a whole workspace of 200 distinct apps (~100 KB each) migrated dev → git →
//! prod by two AppSyncSets in at most 30 s, and at least 20x faster than the same work done app
//! by app the way ToolJet's own GitSync does it, on the same machine in the same run.
//!
//! Everything real on loopback: etcd + kube-apiserver, sshd + git-shell with one bare
//! repository, two ToolJet emulators (dev: Enterprise, External API token; prod: Community
//! Edition, email/password session login) and the operator *binary* as a subprocess. A Push
//! set in namespace `migrate-dev` backs the dev workspace up to the repository; a Pull set in
//! `migrate-prod` imports every app of the repository's `.meta/meta.json` into prod. Both sets
//! are created at the same moment; the clock stops when all apps are in the prod ToolJet (the
//! prod emulator's app list, polled directly), and again when the Pull set reports Ready.
//! Measured on the operator's side: every SSH session on the git server (the deploy keys run
//! the tracer's forced command, see `common/trace.rs`), pushes from the server's reflog, and
//! every call each emulator received.
//!
//! Baseline, in the same run, over the same sshd and the same prod emulator (its second
//! workspace, so that names do not collide): for each app, `git clone --depth 1`, write the app
//! file and `.meta/meta.json`, commit, push, delete the clone (ToolJet's push, as in
//! `benches/push.rs`); then for each app, `git clone --depth 1`, read the app file and one import
//! call to the prod ToolJet (ToolJet's "import from git"), sequentially.
//!
//! `cargo bench --bench migrate` (needs root: sshd). Without `--bench` (e.g. `cargo test
//! --all-targets`) it runs a smoke version with 10 apps. `MIGRATE_APPS` overrides the number of
//! apps, `MIGRATE_CONCURRENCY` the operator's `--concurrency` (default 4, the chart's),
//! `MIGRATE_INTERVAL` both GitSyncConfigs' interval in seconds (default 60, the CRD's default;
//! at 10 s the periodic re-checks of 400 AppSyncs alone outrun 4 reconcile slots here),
//! `MIGRATE_LIMIT` the seconds to wait for the migration, `MIGRATE_BASELINE=0` skips the
//! baseline; `RUST_LOG` is passed to the operator, `BENCH_KEEP_LOG=<path>` keeps its log.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use common::apps::{apps, baseline_push, git_env, App, BASELINE_PUSH};
use common::operator::{request_kind, Operator};
use common::trace::{accepted, per_repo, reflog_len, traced_repo, unix_ns, Tracer};
use common::{apply, manifest_gsc, mib, ready};
use kube::api::ListParams;
use kube::{Api, Client, CustomResourceExt};
use serde_json::{json, Value};
use tooljet_gitsync_operator::api::{AppSync, AppSyncSet, GitSyncConfig, KeyType};
use tooljet_gitsync_operator::git::cli::GitSession;
use tooljet_gitsync_operator::git::{GitCli, HostKeyPolicy, Transport};
use tooljet_gitsync_operator::keys;
use tooljet_gitsync_testkit::emulator::{Emulator, EmulatorConfig, RequestRecord};
use tooljet_gitsync_testkit::gitserver::{Access, GitServer};
use tooljet_gitsync_testkit::kube_env::{install_crds, KubeEnv};
use tooljet_gitsync_testkit::proc::descendants;

const DEV_NS: &str = "migrate-dev";
const PROD_NS: &str = "migrate-prod";
const REPO: &str = "apps";
const BASELINE_REPO: &str = "baseline";
const MANAGER: &str = "migrate-bench";
const TARGET: Duration = Duration::from_secs(30);
const RATIO_TARGET: f64 = 20.0;
const BASELINE_IMPORT: &str = "ToolJet's import from git, per app: git clone --depth 1, read <App>/v1.json, one import call (POST /api/v2/resources/import, session), delete the clone; sequential";

struct Cfg {
    apps: usize,
    /// Both GitSyncConfigs' `interval` (seconds): every AppSync re-checks once per interval,
    /// and the sets re-list their apps once per it.
    interval: u64,
    concurrency: String,
    limit: Duration,
}

impl Cfg {
    fn from_env(bench: bool) -> Result<Cfg> {
        let num = |name: &str, default: usize| -> Result<usize> {
            match std::env::var(name) {
                Ok(v) => match v.parse::<usize>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => bail!("{name} must be a positive number"),
                },
                Err(_) => Ok(default),
            }
        };
        Ok(Cfg {
            apps: num("MIGRATE_APPS", if bench { 200 } else { 10 })?,
            interval: num("MIGRATE_INTERVAL", 60)? as u64,
            concurrency: num("MIGRATE_CONCURRENCY", 4)?.to_string(),
            limit: Duration::from_secs(num("MIGRATE_LIMIT", if bench { 300 } else { 120 })? as u64),
        })
    }
}

fn set_manifest(name: &str, config: &str, direction: &str, extra: &str) -> String {
    format!(
        "apiVersion: gitsync.tooljet.io/v1alpha1\nkind: AppSyncSet\nmetadata:\n  name: {name}\nspec:\n  gitSyncConfigRef: {{ name: {config} }}\n  direction: {direction}\n{extra}"
    )
}

/// (total, ready, failing) and Ready of a set.
async fn set_state(client: &Client, ns: &str, name: &str) -> ((u32, u32, u32), Option<String>) {
    let api: Api<AppSyncSet> = Api::namespaced(client.clone(), ns);
    let Ok(s) = api.get(name).await else {
        return ((0, 0, 0), None);
    };
    let st = s.status.unwrap_or_default();
    let counts = st
        .apps
        .as_ref()
        .map(|a| (a.total, a.ready, a.failing))
        .unwrap_or_default();
    (counts, ready(&st.conditions))
}

/// Histogram of the reasons of AppSyncs in `ns` that are not Ready.
async fn not_ready(client: &Client, ns: &str) -> BTreeMap<String, usize> {
    let api: Api<AppSync> = Api::namespaced(client.clone(), ns);
    let mut out = BTreeMap::new();
    if let Ok(list) = api.list(&ListParams::default()).await {
        for a in list.items {
            let r = a
                .status
                .as_ref()
                .and_then(|s| ready(&s.conditions))
                .unwrap_or_else(|| "no status".into());
            if !r.starts_with("True:") {
                *out.entry(r).or_default() += 1;
            }
        }
    }
    out
}

fn kinds(reqs: &[RequestRecord]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in reqs {
        *out.entry(request_kind(&r.method, &r.path)).or_default() += 1;
    }
    out
}

fn show_kinds(k: &BTreeMap<String, usize>) -> String {
    k.iter()
        .map(|(k, n)| format!("{k} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the sets did.
struct Migration {
    /// Sets created -> every app in the prod ToolJet.
    imported: Duration,
    /// Sets created -> the Push set Ready (every app pushed, status written).
    pushed: Option<Duration>,
    /// Sets created -> the first app in prod.
    first_import: Option<Duration>,
    /// Sets created -> the Pull set Ready.
    pull_ready: Option<Duration>,
    /// SSH sessions on the repository: AppSync/set ref checks, fetches, pushes (traced).
    sessions: [u64; 5],
    ssh_accepted: usize,
    pushes: usize,
    commits: usize,
    dev_calls: Vec<RequestRecord>,
    prod_calls: Vec<RequestRecord>,
    rss: Option<(u64, u64)>,
    export_bytes: (usize, usize),
    /// The operator's histograms at the end: where its time went.
    spent: Vec<String>,
}

/// What ToolJet's per-app loops did.
struct Baseline {
    push: Duration,
    pushes: u64,
    import: Duration,
    import_calls: usize,
    ssh_accepted: usize,
}

struct Parts<'a> {
    client: Client,
    git: &'a GitServer,
    dev: Emulator,
    prod: Emulator,
    tracer: Tracer,
    apps: Vec<App>,
}

async fn setup<'a>(kube: &KubeEnv, git: &'a GitServer, cfg: &Cfg) -> Result<Parts<'a>> {
    let client = kube.client().await?;
    install_crds(
        &client,
        vec![GitSyncConfig::crd(), AppSync::crd(), AppSyncSet::crd()],
    )
    .await?;
    let dev = Emulator::start(EmulatorConfig::default()).await?;
    let prod = Emulator::start(EmulatorConfig {
        community: true,
        ..EmulatorConfig::default()
    })
    .await?;
    let t = Instant::now();
    let apps = apps(cfg.apps);
    for a in &apps {
        dev.create_app(&a.name, Some(a.export.clone()))
            .map_err(anyhow::Error::msg)?;
    }
    println!(
        "{} apps generated and created in the dev ToolJet in {:.1?}",
        apps.len(),
        t.elapsed()
    );
    common::namespace(
        &client,
        DEV_NS,
        "tooljet-dev",
        &[("token", dev.token().unwrap_or_default())],
    )
    .await?;
    common::namespace(
        &client,
        PROD_NS,
        "tooljet-prod",
        &[
            ("email", prod.email().unwrap_or_default()),
            ("password", prod.password().unwrap_or_default()),
        ],
    )
    .await?;
    traced_repo(git, REPO)?;
    let tracer = Tracer::install()?;
    Ok(Parts {
        client,
        git,
        dev,
        prod,
        tracer,
        apps,
    })
}

async fn migrate(p: &Parts<'_>, op: &mut Operator, cfg: &Cfg) -> Result<Migration> {
    let url = p.git.url(REPO);
    let t = Instant::now();
    let dev_gsc = manifest_gsc("dev", &url, &p.dev.url(), "tooljet-dev", cfg.interval);
    let prod_gsc = manifest_gsc("prod", &url, &p.prod.url(), "tooljet-prod", cfg.interval);
    let (a, b) = tokio::join!(
        common::ready_config(&p.client, p.git, &p.tracer, DEV_NS, "dev", &dev_gsc),
        common::ready_config(&p.client, p.git, &p.tracer, PROD_NS, "prod", &prod_gsc)
    );
    a.with_context(|| format!("dev GitSyncConfig; operator log:\n{}", op.log_tail(10)))?;
    b.with_context(|| format!("prod GitSyncConfig; operator log:\n{}", op.log_tail(10)))?;
    println!(
        "GitSyncConfigs Ready in {:.1?} (dev: token, prod: session login); creating the sets",
        t.elapsed()
    );

    let names: BTreeSet<String> = p.apps.iter().map(|a| a.name.clone()).collect();
    let prod_ws = p.prod.workspace().id;
    let since = unix_ns();
    let (dev0, prod0) = (p.dev.requests().len(), p.prod.requests().len());
    let (acc0, ref0) = (accepted(p.git), reflog_len(p.git, REPO));
    let push_set = set_manifest("workspace", "dev", "Push", "");
    let pull_set = set_manifest(
        "workspace",
        "prod",
        "Pull",
        "  template:\n    pull: { revision: main }\n",
    );
    let t = Instant::now();
    let (a, b) = tokio::join!(
        apply::<AppSyncSet>(&p.client, DEV_NS, MANAGER, &push_set),
        apply::<AppSyncSet>(&p.client, PROD_NS, MANAGER, &pull_set)
    );
    a?;
    b?;
    let n = cfg.apps as u32;
    let (mut pushed, mut first_import, mut imported, mut pull_ready) = (None, None, None, None);
    let mut last_print = Instant::now();
    loop {
        if !op.alive() {
            bail!("the operator exited:\n{}", op.log_tail(30));
        }
        let in_prod = p
            .prod
            .apps_in(&prod_ws)
            .iter()
            .filter(|a| names.contains(&a.name))
            .count();
        if in_prod > 0 && first_import.is_none() {
            first_import = Some(t.elapsed());
        }
        if in_prod == cfg.apps && imported.is_none() {
            imported = Some(t.elapsed());
        }
        let (dev_counts, _) = set_state(&p.client, DEV_NS, "workspace").await;
        if dev_counts == (n, n, 0) && pushed.is_none() {
            pushed = Some(t.elapsed());
        }
        let (prod_counts, prod_ready) = set_state(&p.client, PROD_NS, "workspace").await;
        if prod_counts == (n, n, 0) && prod_ready.as_deref() == Some("True:Ready") {
            pull_ready.get_or_insert(t.elapsed());
        }
        if imported.is_some() && pull_ready.is_some() && pushed.is_some() {
            break;
        }
        if t.elapsed() > cfg.limit {
            bail!(
                "after {:?}: {in_prod}/{} apps in prod; Push set {dev_counts:?}, Pull set {prod_counts:?} {prod_ready:?}; {} pushes (reflog), {} SSH sessions, ToolJet calls: dev {}, prod {}; dev AppSyncs not Ready: {:?}; prod AppSyncs not Ready: {:?}; operator /metrics: {}\noperator log tail:\n{}",
                cfg.limit,
                cfg.apps,
                reflog_len(p.git, REPO) - ref0,
                accepted(p.git) - acc0,
                p.dev.requests().len() - dev0,
                p.prod.requests().len() - prod0,
                not_ready(&p.client, DEV_NS).await,
                not_ready(&p.client, PROD_NS).await,
                common::operator::metric_deltas(&BTreeMap::new(), &op.metrics().await).join(", "),
                op.log_tail(3)
            );
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            println!(
                "  {:>5.1} s: Push set (total, ready, failing) {dev_counts:?}; Pull set {prod_counts:?} {}; {in_prod}/{} apps in prod; pushes {}; RSS {:?} KiB",
                t.elapsed().as_secs_f64(),
                prod_ready.unwrap_or_default(),
                cfg.apps,
                reflog_len(p.git, REPO) - ref0,
                op.rss().map(|r| r.0)
            );
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let imported = imported.context("imported")?;
    // Sessions that started in the window finish within a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let to = unix_ns();
    let sessions = per_repo(&p.tracer.sessions(), since, to)
        .remove(REPO)
        .unwrap_or_default();
    // Every app arrived whole: prod holds what dev exported.
    let mut sizes = Vec::new();
    let dev_apps = p.dev.apps();
    for a in p.prod.apps_in(&prod_ws) {
        let Some(d) = dev_apps.iter().find(|d| d.name == a.name) else {
            continue;
        };
        let count = |v: &Value| {
            v["app"][0]["definition"]["appV2"]["components"]
                .as_array()
                .map(Vec::len)
        };
        let (pe, de) = (p.prod.export_of(&a.id), p.dev.export_of(&d.id));
        ensure!(
            pe.as_ref().and_then(count) == de.as_ref().and_then(count)
                && pe.as_ref().and_then(count).is_some(),
            "{}: prod's components differ from dev's",
            a.name
        );
        sizes.push(
            de.map(|v| serde_json::to_vec_pretty(&v).map(|b| b.len()).unwrap_or(0))
                .unwrap_or(0),
        );
    }
    ensure!(sizes.len() == cfg.apps, "{} apps checked", sizes.len());
    let commits: usize = p
        .git
        .git(REPO, &["rev-list", "--count", "main"])?
        .trim()
        .parse()?;
    Ok(Migration {
        imported,
        pushed,
        first_import,
        pull_ready,
        sessions,
        ssh_accepted: accepted(p.git) - acc0,
        pushes: reflog_len(p.git, REPO) - ref0,
        commits,
        dev_calls: p.dev.requests().split_off(dev0),
        prod_calls: p.prod.requests().split_off(prod0),
        rss: op.rss(),
        spent: common::operator::time_spent(&op.metrics().await),
        export_bytes: (
            sizes.iter().min().copied().unwrap_or(0),
            sizes.iter().max().copied().unwrap_or(0),
        ),
    })
}

/// ToolJet's "import from git", app by app, into the prod emulator's second workspace.
async fn baseline_import(
    p: &Parts<'_>,
    session: &GitSession,
    url: &str,
    data: &Path,
) -> Result<(Duration, usize)> {
    let ws = p
        .prod
        .workspaces()
        .get(1)
        .map(|w| w.id.clone())
        .context("the prod emulator's second workspace")?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().cookie_store(true).build()?;
    let base = p.prod.url();
    let work = data.join("tooljet-import");
    std::fs::create_dir_all(&work)?;
    let env = git_env();
    let before = p.prod.requests().len();
    let start = Instant::now();
    let login = http
        .post(format!("{base}/api/authenticate/{ws}"))
        .json(&json!({"email": p.prod.email(), "password": p.prod.password()}))
        .send()
        .await?;
    ensure!(login.status().is_success(), "login: {}", login.status());
    for (i, app) in p.apps.iter().enumerate() {
        let dir = work.join(format!("user-org-{i}-importing"));
        let dir_s = dir.to_string_lossy().to_string();
        session
            .run(
                ["clone", "--depth", "1", "-q", url, &dir_s],
                Some(&work),
                None,
                &env,
            )
            .await?;
        let export: Value =
            serde_json::from_slice(&std::fs::read(dir.join(&app.name).join("v1.json"))?)?;
        let body = json!({
            "organization_id": ws,
            "tooljet_version": export["tooljet_version"],
            "app": [{"definition": export["app"][0]["definition"], "appName": app.name}],
        });
        let r = http
            .post(format!("{base}/api/v2/resources/import"))
            .header("tj-workspace-id", &ws)
            .json(&body)
            .send()
            .await?;
        ensure!(
            r.status().is_success(),
            "import of {}: {} {}",
            app.name,
            r.status(),
            r.text().await.unwrap_or_default()
        );
        std::fs::remove_dir_all(&dir)?;
    }
    let took = start.elapsed();
    let there = p.prod.apps_in(&ws).len();
    ensure!(there == p.apps.len(), "baseline imported {there} apps");
    Ok((took, p.prod.requests().len() - before))
}

async fn baseline(p: &Parts<'_>) -> Result<Baseline> {
    // Its own deploy key, authorized plainly: the baseline is not slowed by the tracer.
    let key = keys::generate(KeyType::Ed25519, "migrate-baseline")?;
    p.git
        .authorize(&key.info.public_openssh, Access::ReadWrite)?;
    let transport = Transport {
        private_key: Some(key.private_openssh),
        host_keys: HostKeyPolicy::Pinned(p.git.known_hosts_line()?),
        https: None,
    };
    let data = tempfile::Builder::new()
        .prefix("migrate-baseline-")
        .tempdir()?;
    let cli = GitCli::new(data.path().join("scratch"), Duration::from_secs(600));
    let session = cli.session(&transport)?;
    let acc0 = accepted(p.git);
    println!("baseline push: {BASELINE_PUSH}");
    let (push, pushes) =
        baseline_push(p.git, &session, BASELINE_REPO, &p.apps, data.path()).await?;
    println!("baseline push: {push:.2?}, {pushes} pushes");
    println!("baseline import: {BASELINE_IMPORT}");
    let url = p.git.url(BASELINE_REPO);
    let (import, import_calls) = baseline_import(p, &session, &url, data.path()).await?;
    println!("baseline import: {import:.2?}, {import_calls} ToolJet calls");
    Ok(Baseline {
        push,
        pushes,
        import,
        import_calls,
        ssh_accepted: accepted(p.git) - acc0,
    })
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn report(cfg: &Cfg, m: &Migration, b: Option<&Baseline>) {
    let opt = |d: Option<Duration>| d.map(secs).unwrap_or_else(|| "-".into());
    println!();
    println!(
        "migrate bench: {} apps (exports {}..{} bytes), dev ToolJet (token) -> Push AppSyncSet -> git (sshd) -> Pull AppSyncSet -> prod ToolJet (Community, session login); operator binary --concurrency {}, interval {} s",
        cfg.apps, m.export_bytes.0, m.export_bytes.1, cfg.concurrency, cfg.interval
    );
    println!(
        "  sets created -> first app in prod {}; Push set Ready (all pushed) {}; all {} apps in prod {}; Pull set Ready {}",
        opt(m.first_import),
        opt(m.pushed),
        cfg.apps,
        secs(m.imported),
        opt(m.pull_ready)
    );
    let s = &m.sessions;
    println!(
        "  git server: {} SSH sessions ({} traced: {} ref checks, {} GitSyncConfig ls-remote, {} fetches, {} dry-run pushes, {} pushes); {} pushes by reflog, {} commits on main",
        m.ssh_accepted,
        s.iter().sum::<u64>(),
        s[0],
        s[1],
        s[2],
        s[3],
        s[4],
        m.pushes,
        m.commits
    );
    println!(
        "  dev ToolJet: {} calls ({:.1} per app): {}",
        m.dev_calls.len(),
        m.dev_calls.len() as f64 / cfg.apps as f64,
        show_kinds(&kinds(&m.dev_calls))
    );
    println!(
        "  prod ToolJet: {} calls ({:.1} per app): {}",
        m.prod_calls.len(),
        m.prod_calls.len() as f64 / cfg.apps as f64,
        show_kinds(&kinds(&m.prod_calls))
    );
    if let Some((rss, hwm)) = m.rss {
        println!("  operator RSS at the end {}, peak {}", mib(rss), mib(hwm));
    }
    println!(
        "  where the operator's time went (its /metrics histograms, summed over concurrent work):"
    );
    for row in &m.spent {
        println!("    {row}");
    }
    let verdict = |ok: bool| if ok { "MET" } else { "NOT MET" };
    println!(
        "target (issue #11): all {} apps in prod within {} s of the sets being created: {} -> {}",
        cfg.apps,
        TARGET.as_secs(),
        secs(m.imported),
        verdict(m.imported <= TARGET)
    );
    let Some(b) = b else {
        println!("baseline skipped (MIGRATE_BASELINE=0)");
        return;
    };
    let total = b.push + b.import;
    println!(
        "baseline (ToolJet GitSync app by app): push {} ({} pushes), import {} ({} ToolJet calls), total {}; {} SSH sessions",
        secs(b.push),
        b.pushes,
        secs(b.import),
        b.import_calls,
        secs(total),
        b.ssh_accepted
    );
    let ratio = total.as_secs_f64() / m.imported.as_secs_f64().max(1e-9);
    println!(
        "ratio baseline/operator (sets created -> all in prod): {ratio:.1}x (target >= {RATIO_TARGET}x) -> {}",
        verdict(ratio >= RATIO_TARGET)
    );
    if cfg.apps < 200 {
        println!("  (fewer than 200 apps: the targets are for 200)");
    }
}

async fn run(kube: &KubeEnv, git: &GitServer, cfg: &Cfg, op: &mut Option<Operator>) -> Result<()> {
    let p = setup(kube, git, cfg).await?;
    let o = op.insert(Operator::start(&kube.kubeconfig, &cfg.concurrency, &[])?);
    let m = migrate(&p, o, cfg).await?;
    println!(
        "migrated: all {} apps in prod {} after the sets were created; baseline next",
        cfg.apps,
        secs(m.imported)
    );
    let errors = o.log_matches("\"level\":\"ERROR\"") + o.log_matches("\"level\":\"WARN\"");
    if errors > 0 {
        println!("operator log: {errors} WARN/ERROR line(s); tail:");
        println!("{}", o.log_tail(5));
    }
    // The operator is stopped first: the baseline has the machine to itself.
    if let Some(mut o) = op.take() {
        o.stop();
    }
    if std::env::var("MIGRATE_BASELINE").as_deref() == Ok("0") {
        report(cfg, &m, None);
        return Ok(());
    }
    let b = baseline(&p).await?;
    report(cfg, &m, Some(&b));
    Ok(())
}

fn main() -> ExitCode {
    let bench = std::env::args().any(|a| a == "--bench");
    let cfg = match Cfg::from_env(bench) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::FAILURE;
        }
    };
    let (rt, kube, git, started) = match common::start_parts() {
        Ok(parts) => parts,
        Err(code) => return code,
    };
    let mut code = ExitCode::SUCCESS;
    let mut operator: Option<Operator> = None;
    let mut ours = Vec::new();
    rt.block_on(async {
        if let Err(e) = run(&kube, &git, &cfg, &mut operator).await {
            eprintln!("migrate bench failed: {e:#}");
            code = ExitCode::FAILURE;
        }
        ours = descendants();
        if let Some(mut op) = operator.take() {
            op.stop();
        }
    });
    drop(git);
    drop(kube);
    drop(rt);
    if !common::teardown_clean(&ours, started) {
        code = ExitCode::FAILURE;
    }
    code
}
