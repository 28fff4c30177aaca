//! Design §6 target: 1,000 AppSyncs over 10 repositories, nothing changed: at most one remote
//! ref check per repository per interval, operator RSS at most 64 MiB.
//!
//! Everything real on loopback: etcd + kube-apiserver, sshd + git-shell with one bare repository
//! per GitSyncConfig, a ToolJet emulator (External API token) holding the apps, and the operator
//! *binary* (`tooljet-gitsync-operator run --concurrency 16`) as a subprocess. Each
//! GitSyncConfig's deploy key is authorized with a forced command that logs every SSH session
//! (`git-upload-pack` / `git-receive-pack`, which repository) and runs it with
//! `GIT_TRACE_PACKET`, so a session is classified from the server side: a ref check (no `want`),
//! a fetch (`want` lines), a dry-run push (receive-pack without update commands) or a push.
//! Pushes are also counted from each bare repository's reflog.
//!
//! Phases: (1) every AppSync created, until all are Ready (the first pushes); (2) steady state,
//! nothing changed, for `SCALE_WINDOWS` intervals: SSH sessions per repository, ToolJet API
//! calls, reconciles (operator `/metrics`) and the operator's RSS (`/proc/<pid>/status`, every
//! second).
//!
//! `cargo bench --bench scale` (needs root: sshd). Without `--bench` (e.g. `cargo test
//! --all-targets`) it runs a smoke version (20 apps over 2 repositories, one 10 s interval).
//! `SCALE_APPS`, `SCALE_REPOS`, `SCALE_INTERVAL` (seconds, >= 10), `SCALE_WINDOWS` and
//! `SCALE_READY_LIMIT` (seconds to wait for every AppSync to be Ready) override.
//! `RUST_LOG` is passed to the operator (default: info, written to a file; its tail is shown on
//! failure).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, CustomResourceExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tooljet_gitsync_operator::api::{self, AppSync, GitSyncConfig};
use tooljet_gitsync_testkit::emulator::{Emulator, EmulatorConfig};
use tooljet_gitsync_testkit::gitserver::{Access, GitServer};
use tooljet_gitsync_testkit::kube_env::{install_crds, KubeEnv};
use tooljet_gitsync_testkit::proc::descendants;
use tooljet_gitsync_testkit::proc::{free_port, spawn_guarded, stop};
use tooljet_gitsync_testkit::wait::poll;

const NS: &str = "scale";
const SECRET: &str = "tooljet-api";
const RSS_TARGET_KIB: u64 = 64 * 1024;
const CONCURRENCY: &str = "16";
/// Where git-shell looks up custom commands (set up by the testkit's GitServer).
const SHELL_COMMANDS: &str = "/home/git/git-shell-commands";

struct Cfg {
    apps: usize,
    repos: usize,
    interval: u64,
    windows: usize,
    bench: bool,
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
        let cfg = Cfg {
            apps: num("SCALE_APPS", if bench { 1000 } else { 20 })?,
            repos: num("SCALE_REPOS", if bench { 10 } else { 2 })?,
            interval: num("SCALE_INTERVAL", if bench { 30 } else { 10 })? as u64,
            windows: num("SCALE_WINDOWS", if bench { 2 } else { 1 })?,
            bench,
        };
        if cfg.interval < 10 {
            bail!("SCALE_INTERVAL must be at least 10 (the CRD's minimum)");
        }
        if cfg.repos > cfg.apps {
            bail!("SCALE_REPOS must not exceed SCALE_APPS");
        }
        Ok(cfg)
    }
}

fn repo_name(r: usize) -> String {
    format!("r{r:02}")
}

fn app_name(i: usize) -> String {
    format!("Scale App {i:04}")
}

fn aps_name(i: usize) -> String {
    format!("app-{i:04}")
}

async fn namespace(client: &Client, token: &str) -> Result<()> {
    let ns: Namespace = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    )?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    let s: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET},
        "stringData": {"token": token}
    }))?;
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &s)
        .await?;
    Ok(())
}

fn manifest_gsc(name: &str, url: &str, tooljet: &str, interval: u64) -> String {
    format!(
        r#"apiVersion: gitsync.tooljet.io/v1alpha1
kind: GitSyncConfig
metadata:
  name: {name}
spec:
  repository:
    url: "{url}"
    branch: main
  tooljet:
    url: {tooljet}
    workspace: my-workspace
    credentialsSecretRef: {{ name: {SECRET} }}
  interval: {interval}s
"#
    )
}

fn manifest_aps(name: &str, config: &str, app: &str) -> String {
    format!(
        "apiVersion: gitsync.tooljet.io/v1alpha1\nkind: AppSync\nmetadata:\n  name: {name}\nspec:\n  gitSyncConfigRef: {{ name: {config} }}\n  app: {app:?}\n  direction: Push\n"
    )
}

/// Server-side apply of a manifest in [`NS`], as a user would.
async fn apply<K>(client: &Client, yaml: &str) -> Result<()>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let value: Value = serde_yaml::from_str(yaml)?;
    let name = value["metadata"]["name"]
        .as_str()
        .ok_or_else(|| anyhow!("manifest without name"))?
        .to_string();
    Api::<K>::namespaced(client.clone(), NS)
        .patch(
            &name,
            &PatchParams::apply("scale-bench").force(),
            &Patch::Apply(&value),
        )
        .await?;
    Ok(())
}

fn ready(conds: &[api::Condition]) -> Option<String> {
    api::find(conds, "Ready").map(|c| format!("{}:{}", c.status, c.reason))
}

/// The forced command every deploy key runs: logs the session and traces its packets.
struct Tracer {
    dir: tempfile::TempDir,
    script: PathBuf,
    name: String,
}

impl Tracer {
    fn install() -> Result<Tracer> {
        let dir = tempfile::Builder::new().prefix("scale-trace-").tempdir()?;
        Command::new("chmod").arg("1777").arg(dir.path()).status()?;
        let name = format!("tjgs-scale-{}", std::process::id());
        let script = Path::new(SHELL_COMMANDS).join(&name);
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nid=\"$(date +%s%N)-$$\"\nd='{}'\necho \"$id $SSH_ORIGINAL_COMMAND\" >> \"$d/sessions.log\"\nGIT_TRACE_PACKET=\"$d/$id.trace\" exec git-shell -c \"$SSH_ORIGINAL_COMMAND\"\n",
                dir.path().display()
            ),
        )?;
        Command::new("chmod").arg("755").arg(&script).status()?;
        Command::new("chown")
            .args(["git:git"])
            .arg(&script)
            .status()?;
        Ok(Tracer { dir, script, name })
    }

    /// The authorized_keys line for `public_key`: forced through the tracing command.
    fn key_line(&self, public_key: &str) -> String {
        format!(
            "command=\"{}\",no-pty,no-port-forwarding,no-agent-forwarding,no-X11-forwarding {}",
            self.name,
            public_key.trim()
        )
    }

    /// Every session so far, in start order.
    fn sessions(&self) -> Vec<Session> {
        let log = std::fs::read_to_string(self.dir.path().join("sessions.log")).unwrap_or_default();
        let mut out: Vec<Session> = log
            .lines()
            .filter_map(|l| {
                let (id, cmd) = l.split_once(' ')?;
                let ns: u128 = id.split_once('-')?.0.parse().ok()?;
                let (service, path) = cmd.split_once(' ')?;
                let repo = path
                    .trim_matches(|c| c == '\'' || c == '"')
                    .rsplit('/')
                    .next()?
                    .trim_end_matches(".git")
                    .to_string();
                let trace = std::fs::read_to_string(self.dir.path().join(format!("{id}.trace")))
                    .unwrap_or_default();
                let kind = classify(service, &trace);
                Some(Session {
                    at_ns: ns,
                    repo,
                    kind,
                })
            })
            .collect();
        out.sort_by_key(|s| s.at_ns);
        out
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.script);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// upload-pack without `want`: ls-remote (or a fetch that found nothing to fetch).
    RefCheck,
    /// upload-pack with `want` lines: a fetch that transferred objects.
    Fetch,
    /// receive-pack without update commands: `push --dry-run` (GitSyncConfig verification).
    DryRunPush,
    /// receive-pack with update commands.
    Push,
    Other,
}

fn classify(service: &str, trace: &str) -> Kind {
    let sent = |side: &str| -> Vec<String> {
        let marker = format!("{side}< ");
        trace
            .lines()
            .filter_map(|l| l.split_once(&marker).map(|x| x.1.to_string()))
            .collect()
    };
    match service {
        "git-upload-pack" => {
            if sent("upload-pack")
                .iter()
                .any(|p| p.starts_with("want ") || p.starts_with("command=fetch"))
            {
                Kind::Fetch
            } else {
                Kind::RefCheck
            }
        }
        "git-receive-pack" => {
            let update = |p: &String| {
                p.len() > 82
                    && p.as_bytes()[40] == b' '
                    && p[..40].bytes().all(|b| b.is_ascii_hexdigit())
            };
            if sent("receive-pack").iter().any(update) {
                Kind::Push
            } else {
                Kind::DryRunPush
            }
        }
        _ => Kind::Other,
    }
}

struct Session {
    at_ns: u128,
    repo: String,
    kind: Kind,
}

fn unix_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Per repository, in `[from, to)`: (ref checks by AppSyncs, ref checks by the GitSyncConfig
/// verification, fetches, dry-run pushes, pushes). A GitSyncConfig verification is one
/// ls-remote followed by one dry-run push (src/git/check.rs): each dry-run push claims the
/// latest unclaimed ref check of its repository in the 10 s before it.
fn per_repo(sessions: &[Session], from: u128, to: u128) -> BTreeMap<String, [u64; 5]> {
    let mut out: BTreeMap<String, [u64; 5]> = BTreeMap::new();
    let mut by_repo: BTreeMap<&str, Vec<&Session>> = BTreeMap::new();
    for s in sessions.iter().filter(|s| s.at_ns >= from && s.at_ns < to) {
        by_repo.entry(s.repo.as_str()).or_default().push(s);
    }
    for (repo, list) in by_repo {
        let mut claimed = vec![false; list.len()];
        for (i, s) in list.iter().enumerate() {
            if s.kind != Kind::DryRunPush {
                continue;
            }
            if let Some(j) = (0..i).rev().find(|&j| {
                !claimed[j]
                    && list[j].kind == Kind::RefCheck
                    && s.at_ns - list[j].at_ns < 10_000_000_000
            }) {
                claimed[j] = true;
            }
        }
        let e = out.entry(repo.to_string()).or_default();
        for (i, s) in list.iter().enumerate() {
            match s.kind {
                Kind::RefCheck if claimed[i] => e[1] += 1,
                Kind::RefCheck => e[0] += 1,
                Kind::Fetch => e[2] += 1,
                Kind::DryRunPush => e[3] += 1,
                Kind::Push => e[4] += 1,
                Kind::Other => {}
            }
        }
    }
    out
}

/// Entries in the server-side reflog of `main` (one per accepted push).
fn reflog_len(git: &GitServer, repo: &str) -> usize {
    std::fs::read_to_string(git.repo_path(repo).join("logs/refs/heads/main"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn accepted(git: &GitServer) -> usize {
    git.log().matches("Accepted publickey").count()
}

/// The operator binary, as a subprocess.
struct Operator {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

fn operator_binary() -> Result<PathBuf> {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_tooljet-gitsync-operator"));
    if !bin.exists() {
        bail!("operator binary {} not built", bin.display());
    }
    Ok(bin)
}

impl Operator {
    /// Must be called on the main thread (the child dies with it).
    fn start(kubeconfig: &Path) -> Result<Operator> {
        let port = free_port()?;
        let dir = tempfile::Builder::new()
            .prefix("scale-operator-")
            .tempdir()?;
        let log = std::fs::File::create(dir.path().join("operator.log"))?;
        let child = spawn_guarded(
            Command::new(operator_binary()?)
                .args(["run", "--concurrency", CONCURRENCY, "--log-format", "json"])
                .arg("--data-dir")
                .arg(dir.path().join("data"))
                .arg("--http-addr")
                .arg(format!("127.0.0.1:{port}"))
                .env("KUBECONFIG", kubeconfig)
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
                )
                .stdout(Stdio::from(log.try_clone()?))
                .stderr(Stdio::from(log)),
        )?;
        Ok(Operator {
            child: Some(child),
            port,
            dir,
        })
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// (VmRSS, VmHWM) in KiB.
    fn rss(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let field = |name: &str| -> Option<u64> {
            status
                .lines()
                .find(|l| l.starts_with(name))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }

    async fn get(&self, path: &str) -> Option<String> {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
            .await
            .ok()?
            .ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        Some(text.split_once("\r\n\r\n")?.1.to_string())
    }

    /// Every sample of `/metrics` (series -> value).
    async fn metrics(&self) -> BTreeMap<String, f64> {
        let text = self.get("/metrics").await.unwrap_or_default();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_string(), value.parse().ok()?))
            })
            .collect()
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("operator.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn log_matches(&self, needle: &str) -> usize {
        std::fs::read_to_string(self.dir.path().join("operator.log"))
            .unwrap_or_default()
            .matches(needle)
            .count()
    }

    fn stop(&mut self) {
        if let Some(c) = self.child.take() {
            stop(c);
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Metric deltas worth reporting: counters and histogram counts that moved.
fn metric_deltas(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> Vec<String> {
    after
        .iter()
        .filter(|(k, _)| k.contains("_count{") || k.contains("_total"))
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0.0);
            (d > 0.0).then(|| {
                let k = k.strip_prefix("tooljet_gitsync_").unwrap_or(k);
                format!("{k} +{d}")
            })
        })
        .collect()
}

fn metric(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

/// `GET /api/v2/ext/.../<uuid>` -> `GET /api/v2/ext/.../:id`.
fn request_kind(method: &str, path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let parts: Vec<String> = path
        .split('/')
        .map(|p| {
            if p.len() >= 32 && p.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
                ":id".to_string()
            } else {
                p.to_string()
            }
        })
        .collect();
    format!("{method} {}", parts.join("/"))
}

struct Parts<'a> {
    client: Client,
    git: &'a GitServer,
    tooljet: Emulator,
    tracer: Tracer,
}

/// GitSyncConfig `name` on repository `name`: apply, authorize its key, wait Ready.
async fn ready_config(p: &Parts<'_>, name: &str, interval: u64) -> Result<()> {
    let url = p.git.url(name);
    apply::<GitSyncConfig>(
        &p.client,
        &manifest_gsc(name, &url, &p.tooljet.url(), interval),
    )
    .await?;
    let api: Api<GitSyncConfig> = Api::namespaced(p.client.clone(), NS);
    let public = poll(
        &format!("{name} publicKey"),
        Duration::from_secs(90),
        Duration::from_millis(200),
        || async { api.get(name).await.ok()?.status?.public_key },
    )
    .await?;
    p.git
        .authorize(&p.tracer.key_line(&public), Access::ReadWrite)?;
    let patch = json!({"metadata": {"annotations": {"bench/poke": "1"}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let last = std::sync::Mutex::new(None);
    poll(
        &format!("{name} Ready"),
        Duration::from_secs(90),
        Duration::from_millis(200),
        || async {
            let g = api.get(name).await.ok()?;
            let r = ready(&g.status?.conditions);
            let ok = r.as_deref() == Some("True:Ready");
            *last.lock().ok()? = r;
            ok.then_some(())
        },
    )
    .await
    .with_context(|| format!("last Ready: {:?}", last.lock().ok().and_then(|l| l.clone())))
}

/// Ready AppSyncs, and a histogram of the others' Ready reasons.
async fn appsyncs_ready(client: &Client) -> Result<(usize, BTreeMap<String, usize>)> {
    let api: Api<AppSync> = Api::namespaced(client.clone(), NS);
    let list = api.list(&ListParams::default()).await?;
    let mut n = 0;
    let mut others: BTreeMap<String, usize> = BTreeMap::new();
    for a in list.items {
        let r = a
            .status
            .as_ref()
            .and_then(|s| ready(&s.conditions))
            .unwrap_or_else(|| "no status".into());
        if r.starts_with("True:") {
            n += 1;
        } else {
            *others.entry(r).or_default() += 1;
        }
    }
    Ok((n, others))
}

struct Window {
    sessions: BTreeMap<String, [u64; 5]>,
    ssh_accepted: usize,
    pushes_reflog: usize,
    tooljet: usize,
    tooljet_kinds: BTreeMap<String, usize>,
    reconciles_aps: f64,
    reconciles_gsc: f64,
    remote_head_calls: f64,
    metric_moves: Vec<String>,
    rss_max: u64,
    rss_avg: u64,
    hwm: u64,
}

struct Initial {
    gsc_ready: Duration,
    created: Duration,
    all_ready: Duration,
    pushes: Vec<(String, usize)>,
    sessions: BTreeMap<String, [u64; 5]>,
    rss: Option<(u64, u64)>,
    tooljet: usize,
}

async fn snapshot_window(
    p: &Parts<'_>,
    op: &mut Operator,
    cfg: &Cfg,
    repos: &[String],
) -> Result<Window> {
    let from = unix_ns();
    let m0 = op.metrics().await;
    let t0 = p.tooljet.requests().len();
    let a0 = accepted(p.git);
    let r0: usize = repos.iter().map(|r| reflog_len(p.git, r)).sum();
    let start = Instant::now();
    let end = start + Duration::from_secs(cfg.interval);
    let mut samples = Vec::new();
    let mut hwm = 0;
    let mut tick = 0u32;
    while Instant::now() < end {
        if !op.alive() {
            bail!("the operator exited:\n{}", op.log_tail(30));
        }
        if let Some((rss, h)) = op.rss() {
            samples.push(rss);
            hwm = hwm.max(h);
        }
        tick += 1;
        tokio::time::sleep_until((start + Duration::from_secs(tick as u64)).into()).await;
    }
    // Sessions that started inside the window finish within a second or two.
    let to = unix_ns();
    let m1 = op.metrics().await;
    let reqs = p.tooljet.requests();
    let a1 = accepted(p.git);
    let r1: usize = repos.iter().map(|r| reflog_len(p.git, r)).sum();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sessions = per_repo(&p.tracer.sessions(), from, to);
    let mut tooljet_kinds: BTreeMap<String, usize> = BTreeMap::new();
    for r in reqs.iter().skip(t0) {
        *tooljet_kinds
            .entry(request_kind(&r.method, &r.path))
            .or_default() += 1;
    }
    let d = |s: &str| metric(&m1, s) - metric(&m0, s);
    Ok(Window {
        sessions,
        ssh_accepted: a1 - a0,
        pushes_reflog: r1 - r0,
        tooljet: reqs.len().saturating_sub(t0),
        tooljet_kinds,
        reconciles_aps: d("tooljet_gitsync_reconciliations_total{kind=\"AppSync\"}"),
        reconciles_gsc: d("tooljet_gitsync_reconciliations_total{kind=\"GitSyncConfig\"}"),
        remote_head_calls: d(
            "tooljet_gitsync_git_operation_duration_seconds_count{op=\"remote_head\",result=\"ok\"}",
        ),
        metric_moves: metric_deltas(&m0, &m1),
        rss_max: samples.iter().copied().max().unwrap_or(0),
        rss_avg: if samples.is_empty() {
            0
        } else {
            samples.iter().sum::<u64>() / samples.len() as u64
        },
        hwm,
    })
}

async fn run(
    kube: &KubeEnv,
    git: &GitServer,
    cfg: &Cfg,
    op_slot: &mut Option<Operator>,
) -> Result<(Initial, Vec<Window>)> {
    let client = kube.client().await?;
    install_crds(&client, vec![GitSyncConfig::crd(), AppSync::crd()]).await?;
    let tooljet = Emulator::start(EmulatorConfig::default()).await?;
    for i in 0..cfg.apps {
        tooljet
            .create_app(&app_name(i), None)
            .map_err(anyhow::Error::msg)?;
    }
    namespace(&client, &tooljet.token().unwrap_or_default()).await?;
    let repos: Vec<String> = (0..cfg.repos).map(repo_name).collect();
    for r in &repos {
        git.create_repo(r)?;
        git.git(r, &["config", "core.logAllRefUpdates", "always"])?;
        Command::new("chown")
            .args(["-R", "git:git"])
            .arg(git.repo_path(r))
            .status()?;
    }
    let tracer = Tracer::install()?;
    let p = Parts {
        client: client.clone(),
        git,
        tooljet,
        tracer,
    };
    let op = op_slot.insert(Operator::start(&kube.kubeconfig)?);
    let t = Instant::now();
    futures::future::try_join_all(repos.iter().map(|r| ready_config(&p, r, cfg.interval)))
        .await
        .with_context(|| format!("operator log tail:\n{}", op.log_tail(20)))?;
    let gsc_ready = t.elapsed();
    println!(
        "{} GitSyncConfigs Ready in {:.1?}; creating {} Push AppSyncs",
        cfg.repos, gsc_ready, cfg.apps
    );

    let since = unix_ns();
    let tooljet_before = p.tooljet.requests().len();
    let t = Instant::now();
    futures::stream::iter(0..cfg.apps)
        .map(|i| {
            let client = client.clone();
            let config = repo_name(i % cfg.repos);
            async move {
                apply::<AppSync>(&client, &manifest_aps(&aps_name(i), &config, &app_name(i))).await
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    let created = t.elapsed();
    let limit = Duration::from_secs(
        std::env::var("SCALE_READY_LIMIT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if cfg.bench { 300 } else { 120 }),
    );
    let mut last_print = Instant::now();
    loop {
        if !op.alive() {
            bail!("the operator exited:\n{}", op.log_tail(30));
        }
        let (n, others) = appsyncs_ready(&client).await?;
        if n == cfg.apps {
            break;
        }
        if t.elapsed() > limit {
            let pushes: usize = repos.iter().map(|r| reflog_len(git, r)).sum();
            let s = per_repo(&p.tracer.sessions(), since, unix_ns());
            let upload: u64 = s.values().map(|v| v[0] + v[1] + v[2]).sum();
            let moved = metric_deltas(&BTreeMap::new(), &op.metrics().await);
            bail!(
                "only {n}/{} AppSyncs Ready after {limit:?}; others: {others:?}\n  pushes (reflog): {pushes}; upload-pack sessions: {upload}; ToolJet calls: {}; operator RSS/VmHWM: {:?} KiB\n  /metrics: {}\noperator log tail:\n{}",
                cfg.apps,
                p.tooljet.requests().len() - tooljet_before,
                op.rss(),
                moved.join(", "),
                op.log_tail(3)
            );
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            println!(
                "  {:>5.1} s: {n}/{} AppSyncs Ready; others {others:?}; RSS {:?} KiB",
                t.elapsed().as_secs_f64(),
                cfg.apps,
                op.rss().map(|r| r.0)
            );
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let all_ready = t.elapsed();
    let initial = Initial {
        gsc_ready,
        created,
        all_ready,
        pushes: repos
            .iter()
            .map(|r| (r.clone(), reflog_len(git, r)))
            .collect(),
        sessions: per_repo(&p.tracer.sessions(), since, unix_ns()),
        rss: op.rss(),
        tooljet: p.tooljet.requests().len() - tooljet_before,
    };
    println!(
        "all {} AppSyncs Ready {:.1?} after creation started (creation took {:.1?}); steady state next",
        cfg.apps, all_ready, created
    );
    // Let the last reconciles of the first pass (status updates, requeues) settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Window 0: the first interval after the initial sync, reported apart (AppSyncs of earlier
    // push batches recorded a head that later batches moved); then the steady-state windows.
    let mut windows = Vec::new();
    for w in 0..=cfg.windows {
        let win = snapshot_window(&p, op, cfg, &repos).await?;
        println!(
            "  interval {w}/{}{}: {} SSH sessions, {} ToolJet calls, {} AppSync reconciles, RSS max {} KiB",
            cfg.windows,
            if w == 0 { " (first after the initial sync)" } else { "" },
            win.ssh_accepted,
            win.tooljet,
            win.reconciles_aps,
            win.rss_max
        );
        windows.push(win);
    }
    let errors = op.log_matches("\"level\":\"ERROR\"") + op.log_matches("\"level\":\"WARN\"");
    if errors > 0 {
        println!("operator log: {errors} WARN/ERROR line(s); tail:");
        println!("{}", op.log_tail(5));
    }
    Ok((initial, windows))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn report(cfg: &Cfg, initial: &Initial, windows: &[Window]) {
    println!();
    println!(
        "scale bench: {} Push AppSyncs over {} repositories ({} per GitSyncConfig), interval {} s, operator binary --concurrency {CONCURRENCY}",
        cfg.apps,
        cfg.repos,
        cfg.apps / cfg.repos,
        cfg.interval
    );
    println!();
    println!("initial sync (every app exported and pushed once):");
    println!(
        "  GitSyncConfigs Ready: {:.1?}; AppSyncs created in {:.1?}; all Ready {:.1?} after creation started",
        initial.gsc_ready, initial.created, initial.all_ready
    );
    let pushes: Vec<String> = initial
        .pushes
        .iter()
        .map(|(r, n)| format!("{r}:{n}"))
        .collect();
    let total: usize = initial.pushes.iter().map(|x| x.1).sum();
    println!(
        "  pushes per repository (server reflog): {} (total {total} for {} apps)",
        pushes.join(" "),
        cfg.apps
    );
    let sum = |m: &BTreeMap<String, [u64; 5]>, k: usize| m.values().map(|v| v[k]).sum::<u64>();
    println!(
        "  SSH sessions: {} AppSync ref checks, {} GitSyncConfig ls-remote + {} dry-run pushes, {} fetches, {} pushes",
        sum(&initial.sessions, 0),
        sum(&initial.sessions, 1),
        sum(&initial.sessions, 3),
        sum(&initial.sessions, 2),
        sum(&initial.sessions, 4)
    );
    println!("  ToolJet API calls: {}", initial.tooljet);
    if let Some((rss, hwm)) = initial.rss {
        println!(
            "  operator RSS when all Ready: {} (peak so far, VmHWM {})",
            mib(rss),
            mib(hwm)
        );
    }
    println!();
    println!(
        "nothing changed: interval 0 is the first interval after the initial sync, intervals 1..{} are the steady state (each window is one interval long):",
        windows.len().saturating_sub(1)
    );
    let mut worst_aps = 0;
    let mut worst_all = 0;
    let mut first_worst = 0;
    let mut pushes = 0;
    let mut rss_max = 0;
    let mut hwm = 0;
    for (i, w) in windows.iter().enumerate() {
        let steady = i > 0;
        println!(
            "  interval {i}{}:",
            if steady {
                " (steady state)"
            } else {
                " (first after the initial sync, not counted)"
            }
        );
        println!(
            "    {:<6} {:>18} {:>18} {:>12} {:>8} {:>7}",
            "repo", "AppSync ref checks", "GSC verify ls-rem", "dry-run push", "fetches", "pushes"
        );
        for (repo, v) in &w.sessions {
            println!(
                "    {repo:<6} {:>18} {:>18} {:>12} {:>8} {:>7}",
                v[0], v[1], v[3], v[2], v[4]
            );
            if steady {
                worst_aps = worst_aps.max(v[0]);
                worst_all = worst_all.max(v[0] + v[1] + v[2]);
                pushes += v[4];
            } else {
                first_worst = first_worst.max(v[0] + v[1] + v[2]);
            }
        }
        let total_ssh: u64 = w.sessions.values().map(|v| v.iter().sum::<u64>()).sum();
        println!(
            "    SSH sessions: {total_ssh} traced ({} \"Accepted publickey\" in the sshd log); pushes by reflog: {}",
            w.ssh_accepted, w.pushes_reflog
        );
        if steady {
            pushes += w.pushes_reflog as u64;
        }
        println!(
            "    reconciles: {} AppSync, {} GitSyncConfig; operator remote_head calls (served from the shared cache or one ls-remote): {}",
            w.reconciles_aps, w.reconciles_gsc, w.remote_head_calls
        );
        let kinds: Vec<String> = w
            .tooljet_kinds
            .iter()
            .map(|(k, n)| format!("{k} x{n}"))
            .collect();
        println!(
            "    ToolJet API calls: {} ({:.1} per AppSync): {}",
            w.tooljet,
            w.tooljet as f64 / cfg.apps as f64,
            kinds.join(", ")
        );
        println!(
            "    operator RSS: max {}, avg {}, VmHWM {}",
            mib(w.rss_max),
            mib(w.rss_avg),
            mib(w.hwm)
        );
        println!("    /metrics moved: {}", w.metric_moves.join(", "));
        if steady {
            rss_max = rss_max.max(w.rss_max);
        }
        hwm = hwm.max(w.hwm);
    }
    println!();
    let verdict = |ok: bool| if ok { "MET" } else { "NOT MET" };
    println!(
        "target (design §6): at most one remote ref check per repository per interval: AppSync ref checks max {worst_aps} per repository per interval -> {}",
        verdict(worst_aps <= 1)
    );
    println!(
        "  all upload-pack sessions (AppSync ref checks, GitSyncConfig verification, fetches): max {worst_all} per repository per interval -> {}",
        verdict(worst_all <= 1)
    );
    println!(
        "  (first interval after the initial sync, not counted: max {first_worst} upload-pack sessions per repository)"
    );
    println!(
        "  pushes while nothing changed: {pushes} -> {}",
        verdict(pushes == 0)
    );
    println!(
        "target (design §6): operator RSS at most 64 MiB: steady-state max {} -> {}; peak over the whole run (VmHWM, incl. the initial sync) {} -> {}",
        mib(rss_max),
        verdict(rss_max <= RSS_TARGET_KIB),
        mib(hwm),
        verdict(hwm <= RSS_TARGET_KIB)
    );
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
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    // Child processes are started from this (main) thread: they die with it (PDEATHSIG).
    let kube = match KubeEnv::start() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("setup failed: kube-apiserver: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let git = match GitServer::start() {
        Ok(g) => Arc::new(g),
        Err(e) => {
            eprintln!("setup failed: git server: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let mut code = ExitCode::SUCCESS;
    let mut operator: Option<Operator> = None;
    let mut ours = Vec::new();
    rt.block_on(async {
        match run(&kube, &git, &cfg, &mut operator).await {
            Ok((initial, windows)) => report(&cfg, &initial, &windows),
            Err(e) => {
                eprintln!("setup failed: {e:#}");
                code = ExitCode::FAILURE;
            }
        }
        ours = descendants();
        if let Some(mut op) = operator.take() {
            op.stop();
        }
    });
    drop(git);
    drop(kube);
    drop(rt);
    std::thread::sleep(Duration::from_millis(300));
    let left: Vec<_> = descendants()
        .into_iter()
        .filter(|d| ours.iter().any(|o| o.0 == d.0))
        .collect();
    if left.is_empty() {
        println!(
            "teardown: {} child process(es) stopped ({}); total {:.1?}",
            ours.len(),
            ours.iter()
                .map(|o| o.1.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            started.elapsed()
        );
    } else {
        eprintln!("teardown: processes left: {left:?}");
        code = ExitCode::FAILURE;
    }
    code
}
