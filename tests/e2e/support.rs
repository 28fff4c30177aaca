//! Shared environment and helpers for the end-to-end trials.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, CustomResourceExt, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tooljet_gitsync_operator::api::{self, AppSync, AppSyncSet, Condition, GitSyncConfig};
use tooljet_gitsync_operator::controller::{self, Context, Options};
use tooljet_gitsync_testkit::emulator::{Emulator, EmulatorConfig};
use tooljet_gitsync_testkit::kube_env::{install_crds, KubeEnv};

/// Label that routes objects to the operator binaries of the runtime trials.
pub const SHARD_LABEL: &str = "e2e-shard";

/// What every trial shares.
#[allow(dead_code)] // kube and data_dir are held for their Drop
pub struct Env {
    /// One ToolJet emulator (EE mode, External API on) shared by the GitSyncConfig trials.
    pub tooljet: Emulator,
    pub kube: KubeEnv,
    pub client: Client,
    pub data_dir: tempfile::TempDir,
    /// The in-process operator's shared state (its repository workers).
    pub ctx: Arc<Context>,
    /// Where the in-process operator's webhook receiver listens.
    pub webhook: std::net::SocketAddr,
    shutdown: watch::Sender<bool>,
    operator: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

type Shared = (Arc<Env>, tokio::runtime::Handle);
static ENV: std::sync::Mutex<Option<Shared>> = std::sync::Mutex::new(None);

fn shared() -> Option<Shared> {
    ENV.lock().ok().and_then(|g| g.clone())
}

impl Env {
    /// Starts the apiserver, installs the CRDs and runs the operator in-process.
    pub fn start(rt: &tokio::runtime::Runtime) -> Result<Arc<Env>> {
        let kube = KubeEnv::start()?;
        let client = rt.block_on(kube.client())?;
        rt.block_on(install_crds(
            &client,
            vec![GitSyncConfig::crd(), AppSync::crd(), AppSyncSet::crd()],
        ))?;
        let data_dir = tempfile::Builder::new()
            .prefix("operator-data-")
            .tempdir()?;
        let tooljet = rt.block_on(Emulator::start(EmulatorConfig::default()))?;
        let options = Options {
            data_dir: data_dir.path().to_path_buf(),
            retry_min: Duration::from_millis(500),
            retry_max: Duration::from_secs(3),
            git_timeout: Duration::from_secs(30),
            // Objects labelled for the binary trials belong to operator processes started there.
            label_selector: Some(format!("{SHARD_LABEL} notin (binary,crash,crash-pr,race)")),
            // Every trial runs at once against this one operator (the hostile table alone
            // brings dozens of objects): more reconciles at a time than one cluster's default,
            // so a trial's first pass does not wait behind the others'.
            concurrency: 16,
            webhook_enabled: true,
            // Unknown paths are 404 at once (the trials start right after the operator).
            webhook_startup_grace: Duration::ZERO,
            ..Options::default()
        };
        let ctx = Arc::new(Context::new(client.clone(), options));
        let (tx, mut rx) = watch::channel(false);
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let webhook = listener.local_addr()?;
        let mut hooks_stop = rx.clone();
        rt.spawn(tooljet_gitsync_operator::webhook::serve(
            listener,
            ctx.clone(),
            async move {
                let _ = hooks_stop.wait_for(|stop| *stop).await;
            },
        ));
        let operator = rt.spawn(controller::run(ctx.clone(), async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }));
        Ok(Arc::new(Env {
            tooljet,
            kube,
            client,
            data_dir,
            ctx,
            webhook,
            shutdown: tx,
            operator: std::sync::Mutex::new(Some(operator)),
        }))
    }
}

/// Makes the env reachable from trials.
pub fn install(env: Arc<Env>, handle: tokio::runtime::Handle) {
    if let Ok(mut g) = ENV.lock() {
        *g = Some((env, handle));
    }
}

/// Stops the operator, then the apiserver and etcd (dropping the last `Arc<Env>`).
pub fn teardown(rt: &tokio::runtime::Runtime) {
    let Some((env, _)) = ENV.lock().ok().and_then(|mut g| g.take()) else {
        return;
    };
    let _ = env.shutdown.send(true);
    if let Some(handle) = env.operator.lock().ok().and_then(|mut o| o.take()) {
        let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), handle).await });
    }
    drop(env);
}

/// Whether a trial is selected by the command-line filter.
pub fn selected(args: &libtest_mimic::Arguments, name: &str) -> bool {
    match &args.filter {
        Some(f) if args.exact => name == f,
        Some(f) => name.contains(f.as_str()),
        None => true,
    }
}

/// A trial running an async test on the shared runtime.
pub fn trial<F, Fut>(name: &str, f: F) -> libtest_mimic::Trial
where
    F: FnOnce(Arc<Env>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    libtest_mimic::Trial::test(name, move || {
        let (env, handle) = shared().ok_or("environment not started")?;
        handle
            .block_on(async move { tokio::time::timeout(Duration::from_secs(240), f(env)).await })
            .map_err(|_| "timed out after 240s".to_string())?
            .map_err(|e| format!("{e:#}").into())
    })
}

/// Polls `f` until it yields a value or `limit` passes.
pub async fn wait<T, F, Fut>(limit: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if start.elapsed() > limit {
            bail!("condition not met within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// Creates a fresh namespace holding the Secret `tooljet-api` with the shared emulator's token.
pub async fn namespace(client: &Client, name: &str) -> Result<String> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
    }))?;
    api.create(&PostParams::default(), &ns).await?;
    let token = shared()
        .and_then(|(env, _)| env.tooljet.token())
        .unwrap_or_default();
    secret(client, name, "tooljet-api", &[("token", &token)]).await?;
    Ok(name.to_string())
}

/// Creates a Secret from string data.
pub async fn secret(client: &Client, ns: &str, name: &str, data: &[(&str, &str)]) -> Result<()> {
    let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), ns);
    let map: serde_json::Map<String, serde_json::Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
        .collect();
    let s = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": map
    }))?;
    api.create(&PostParams::default(), &s).await?;
    Ok(())
}

/// URL of the shared ToolJet emulator.
pub fn tooljet_url() -> String {
    shared()
        .map(|(env, _)| env.tooljet.url())
        .unwrap_or_default()
}

/// Applies a manifest (YAML) in `ns` with server-side apply as a user would.
pub async fn apply<K>(client: &Client, ns: &str, yaml: &str) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let value: serde_json::Value = serde_yaml::from_str(yaml)?;
    let name = value["metadata"]["name"]
        .as_str()
        .ok_or_else(|| anyhow!("manifest without name"))?
        .to_string();
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    Ok(api
        .patch(
            &name,
            &PatchParams::apply("e2e-user").force(),
            &Patch::Apply(&value),
        )
        .await?)
}

/// A condition of an object's status.
pub fn condition<'a>(conds: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    api::find(conds, type_)
}

/// Waits until object `name` satisfies `pred`; the error shows its last status.
pub async fn wait_obj<K>(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    limit: Duration,
    pred: impl Fn(&K) -> bool,
) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let start = Instant::now();
    let mut last = None;
    loop {
        if let Ok(o) = api.get(name).await {
            if pred(&o) {
                return Ok(o);
            }
            last = Some(o);
        }
        if start.elapsed() > limit {
            let status = last
                .and_then(|o| serde_json::to_value(o).ok())
                .map(|v| v["status"].clone())
                .unwrap_or_default();
            bail!(
                "{} {ns}/{name}: {what} not reached in {limit:?}; last status: {}",
                K::kind(&()),
                serde_json::to_string_pretty(&status).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// Waits until a GitSyncConfig satisfies `pred`.
pub async fn wait_gsc(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    pred: impl Fn(&GitSyncConfig) -> bool,
) -> Result<GitSyncConfig> {
    wait_obj(client, ns, name, what, Duration::from_secs(60), pred).await
}

/// The Ready condition's reason, or "" when absent.
pub fn ready_reason(g: &GitSyncConfig) -> String {
    g.status
        .as_ref()
        .and_then(|s| condition(&s.conditions, "Ready"))
        .map(|c| format!("{}:{}", c.status, c.reason))
        .unwrap_or_default()
}

/// Whether condition `type_` has `status` and `reason`.
pub fn has(g: &GitSyncConfig, type_: &str, status: &str, reason: &str) -> bool {
    g.status
        .as_ref()
        .and_then(|s| condition(&s.conditions, type_))
        .is_some_and(|c| c.status == status && c.reason == reason)
}

/// Touches an annotation so the operator reconciles now.
pub async fn poke<K>(client: &Client, ns: &str, name: &str) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let patch = serde_json::json!({"metadata": {"annotations": {"e2e/poke": format!("{:?}", Instant::now())}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Reasons of the Events recorded for an object.
pub async fn event_reasons(client: &Client, ns: &str, name: &str) -> Result<Vec<String>> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let list = api.list(&Default::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reason)
        .collect())
}

/// Waits until the Events of an object include every reason in `wanted`, and returns all its
/// reasons. Events are published after the status is written, so a test that has just seen the
/// status must wait for them rather than read them once.
pub async fn wait_events(
    client: &Client,
    ns: &str,
    name: &str,
    wanted: &[&str],
) -> Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reasons = event_reasons(client, ns, name).await?;
        if wanted.iter().all(|w| reasons.iter().any(|r| r == w)) {
            return Ok(reasons);
        }
        if Instant::now() > deadline {
            bail!("no {wanted:?} Event for {ns}/{name} within 30 s; seen {reasons:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every Event note in a namespace, for leak checks.
pub async fn event_notes(client: &Client, ns: &str) -> Result<String> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let list = api.list(&Default::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|e| e.note)
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Waits until an AppSync satisfies `pred`.
pub async fn wait_aps(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    pred: impl Fn(&AppSync) -> bool,
) -> Result<AppSync> {
    wait_obj(client, ns, name, what, Duration::from_secs(90), pred).await
}

/// Whether an AppSync's condition `type_` has `status` and `reason`.
pub fn aps_has(a: &AppSync, type_: &str, status: &str, reason: &str) -> bool {
    a.status
        .as_ref()
        .and_then(|s| condition(&s.conditions, type_))
        .is_some_and(|c| c.status == status && c.reason == reason)
}

/// An AppSync manifest for the GitSyncConfig `sales`.
pub fn appsync_manifest(name: &str, app: &str, direction: &str, extra: &str) -> String {
    format!(
        "apiVersion: gitsync.tooljet.io/v1alpha1\nkind: AppSync\nmetadata:\n  name: {name}\nspec:\n  gitSyncConfigRef: {{ name: sales }}\n  app: {app:?}\n  direction: {direction}\n{extra}"
    )
}

/// A file of the ToolJet-written fixture: repo-relative path and bytes.
pub type FixtureFile = (&'static str, Vec<u8>);

/// Commits a repository exactly as ToolJet's own GitSync left it (`tests/fixtures/tooljet-repo`:
/// two apps and their meta entries) and returns the commit and the files.
pub fn seed_tooljet_repo(
    git: &tooljet_gitsync_testkit::gitserver::GitServer,
) -> Result<(String, Vec<FixtureFile>)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tooljet-repo");
    let mut files = Vec::new();
    for rel in [
        ".meta/meta.json",
        "Sales Dashboard/v3.json",
        "Inventory/v1.json",
    ] {
        files.push((rel, std::fs::read(root.join(rel))?));
    }
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (*p, b.as_slice())).collect();
    let sha = git.commit_files(
        "apps",
        "main",
        &refs,
        "Version v3 Of Sales Dashboard: add filter to table",
    )?;
    Ok((sha, files))
}

/// Everything the in-process operator logs (its own crate, at debug), so that a test can check
/// that no secret value reaches a log line. Bounded: past 64 MiB the rest is dropped.
static LOGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());
const MAX_LOGS: usize = 64 << 20;

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut logs) = LOGS.lock() {
            if logs.len() + buf.len() <= MAX_LOGS {
                logs.extend_from_slice(buf);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts capturing the operator's logs (JSON, as the binary writes them).
pub fn capture_logs() {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "tooljet_gitsync_operator=debug",
        ))
        .with_writer(|| LogWriter)
        .try_init();
}

/// What the operator logged so far.
pub fn logs() -> String {
    LOGS.lock()
        .map(|l| String::from_utf8_lossy(&l).into_owned())
        .unwrap_or_default()
}
