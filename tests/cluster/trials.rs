//! The trials, in order: the image, the Helm release in a pod, GitSync through it, metrics,
//! operations (upgrade to two replicas, rollout restart and leader deletion mid-batch), uninstall.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use tooljet_gitsync_operator::api::{self, AppSync, GitSyncConfig};
use tooljet_gitsync_testkit::emulator::{Emulator, EmulatorConfig};
use tooljet_gitsync_testkit::gitserver::{Access, GitServer};

use crate::node::{self, Node, NODE_IP};

const NS_OP: &str = "tooljet-gitsync";
const RELEASE: &str = "gitsync";
const DEPLOY: &str = "gitsync-tooljet-gitsync-operator";
const SELECTOR: &str =
    "app.kubernetes.io/name=tooljet-gitsync-operator,app.kubernetes.io/instance=gitsync";
const LEASE: &str = "tooljet-gitsync-operator";

pub struct Env {
    pub node: Node,
    pub client: Client,
    pub git: GitServer,
    /// The ToolJet that apps are pushed from.
    pub dev: Emulator,
    /// The ToolJet that apps are pulled into.
    pub prod: Emulator,
}

type Shared = (Arc<Env>, tokio::runtime::Handle);
static ENV: Mutex<Option<Shared>> = Mutex::new(None);

fn emulator_config() -> EmulatorConfig {
    EmulatorConfig {
        listen: std::net::SocketAddr::new(NODE_IP.into(), 0),
        private_namespace_address: true,
        ..EmulatorConfig::default()
    }
}

fn chart() -> String {
    node::root()
        .join("charts/tooljet-gitsync-operator")
        .display()
        .to_string()
}

/// `helm install|upgrade` arguments every release here has: the local image, never pulled.
fn release_args(cmd: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        cmd,
        RELEASE,
        &chart(),
        "--namespace",
        NS_OP,
        "--set",
        "image.repository=localhost/tooljet-gitsync-operator",
        "--set",
        "image.tag=dev",
        "--set",
        "image.pullPolicy=Never",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

impl Env {
    /// The node, the git server and two emulators on the node IP, and `helm install`.
    pub fn start(rt: &tokio::runtime::Runtime) -> Result<Arc<Env>> {
        let node = Node::start()?;
        let client = rt.block_on(node.client())?;
        let git = GitServer::start_on(NODE_IP)?;
        git.create_repo("apps")?;
        let (dev, prod) = rt.block_on(async {
            Ok::<_, anyhow::Error>((
                Emulator::start(emulator_config()).await?,
                Emulator::start(emulator_config()).await?,
            ))
        })?;
        let started = Instant::now();
        let args = release_args(
            "install",
            &[
                "--create-namespace",
                "--wait",
                "--timeout",
                "180s",
                "--set",
                "webhook.enabled=true",
            ],
        );
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        if let Err(e) = node.helm(&refs) {
            let pods = node
                .kubectl(&["-n", NS_OP, "describe", "pods"])
                .unwrap_or_default();
            bail!(
                "{e:#}\n{pods}\nkubelet:\n{}",
                node.log_tail("kubelet.log", 30)
            );
        }
        eprintln!(
            "helm install --wait: {:.1} s (node Ready in {:.1} s)",
            started.elapsed().as_secs_f64(),
            node.ready_in.as_secs_f64()
        );
        Ok(Arc::new(Env {
            node,
            client,
            git,
            dev,
            prod,
        }))
    }
}

pub fn install(env: Arc<Env>, handle: tokio::runtime::Handle) {
    if let Ok(mut g) = ENV.lock() {
        *g = Some((env, handle));
    }
}

/// Drops the env (git server, emulators, node directory); the processes go in
/// `node::stop_everything`.
pub fn teardown() {
    if let Ok(mut g) = ENV.lock() {
        g.take();
    }
}

pub fn selected(args: &libtest_mimic::Arguments, name: &str) -> bool {
    match &args.filter {
        Some(f) if args.exact => name == f,
        Some(f) => name.contains(f.as_str()),
        None => true,
    }
}

fn trial<F, Fut>(name: &str, f: F) -> libtest_mimic::Trial
where
    F: FnOnce(Arc<Env>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    libtest_mimic::Trial::test(name, move || {
        let (env, handle) = ENV
            .lock()
            .ok()
            .and_then(|g| g.clone())
            .ok_or("environment not started")?;
        handle
            .block_on(async move { tokio::time::timeout(Duration::from_secs(420), f(env)).await })
            .map_err(|_| "timed out after 420s".to_string())?
            .map_err(|e| format!("{e:#}").into())
    })
}

pub fn trials() -> Vec<libtest_mimic::Trial> {
    vec![
        trial("image_config_matches_the_dockerfile", image_config),
        trial(
            "image_runs_crd_version_and_git_over_ssh_as_65532_read_only",
            image_runs,
        ),
        trial(
            "helm_release_pod_ready_probes_serviceaccount_lease",
            release_ready,
        ),
        trial(
            "in_pod_gitsyncconfig_ready_push_commits_pull_imports",
            push_and_pull,
        ),
        trial("metrics_scraped_through_the_service", metrics),
        trial("webhook_delivered_through_its_service", webhook),
        trial("helm_upgrade_two_replicas_one_leader", upgrade_two_replicas),
        trial(
            "rollout_restart_and_leader_deletion_mid_batch_lose_nothing",
            restart_mid_batch,
        ),
        trial(
            "helm_uninstall_leaves_repository_apps_crds_secrets",
            uninstall,
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// helpers

async fn wait<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    let mut last_err = String::new();
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = format!("{e:#}"),
        }
        if start.elapsed() > limit {
            bail!("{what}: not reached within {limit:?} {last_err}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn ensure_namespace(c: &Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(c.clone());
    if api.get_opt(name).await?.is_none() {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
        api.create(&PostParams::default(), &ns).await?;
    }
    Ok(())
}

async fn apply_json<K>(c: &Client, ns: &str, v: Value) -> Result<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let name = v["metadata"]["name"]
        .as_str()
        .ok_or_else(|| anyhow!("no name"))?
        .to_string();
    let api: Api<K> = Api::namespaced(c.clone(), ns);
    Ok(api
        .patch(
            &name,
            &PatchParams::apply("cluster-test").force(),
            &Patch::Apply(&v),
        )
        .await?)
}

fn cond(conds: &[api::Condition], type_: &str, status: &str, reason: &str) -> bool {
    api::find(conds, type_).is_some_and(|c| c.status == status && c.reason == reason)
}

fn gsc_ready(g: &GitSyncConfig) -> bool {
    g.status
        .as_ref()
        .is_some_and(|s| cond(&s.conditions, "Ready", "True", "Ready"))
}

/// Pushed: Committed, or UpToDate on a later pass (git already holds the version).
fn aps_committed(a: &AppSync) -> bool {
    a.status.as_ref().is_some_and(|s| {
        (cond(&s.conditions, "Ready", "True", "Committed")
            || cond(&s.conditions, "Ready", "True", "UpToDate"))
            && s.last_commit.is_some()
    })
}

fn aps_pulled(a: &AppSync) -> bool {
    a.status.as_ref().is_some_and(|s| {
        (cond(&s.conditions, "Ready", "True", "Pulled")
            || cond(&s.conditions, "Ready", "True", "UpToDate"))
            && s.last_commit.is_some()
    })
}

/// A Ready GitSyncConfig `sales` in `ns` for `tooljet`, its deploy key authorized on the git
/// server: reconciled by the operator in the pod.
async fn ready_config(env: &Env, ns: &str, tooljet: &Emulator) -> Result<GitSyncConfig> {
    let c = &env.client;
    ensure_namespace(c, ns).await?;
    let secrets: Api<Secret> = Api::namespaced(c.clone(), ns);
    if secrets.get_opt("tooljet-api").await?.is_none() {
        let s: Secret = serde_json::from_value(json!({
            "metadata": {"name": "tooljet-api"},
            "stringData": {"token": tooljet.token().unwrap_or_default()}
        }))?;
        secrets.create(&PostParams::default(), &s).await?;
    }
    apply_json::<GitSyncConfig>(
        c,
        ns,
        json!({
            "apiVersion": "gitsync.tooljet.io/v1alpha1", "kind": "GitSyncConfig",
            "metadata": {"name": "sales"},
            "spec": {
                "repository": {"url": env.git.url("apps"), "branch": "main"},
                "tooljet": {"url": tooljet.url(), "workspace": "my-workspace",
                            "credentialsSecretRef": {"name": "tooljet-api"}, "allowInsecureHTTP": true},
                "interval": "1m"
            }
        }),
    )
    .await?;
    let api: Api<GitSyncConfig> = Api::namespaced(c.clone(), ns);
    let g = wait(
        "GitSyncConfig publicKey",
        Duration::from_secs(120),
        || async { Ok(api.get("sales").await?.status.and_then(|s| s.public_key)) },
    )
    .await?;
    if api
        .get("sales")
        .await
        .map(|g| gsc_ready(&g))
        .unwrap_or(false)
    {
        return Ok(api.get("sales").await?);
    }
    env.git.authorize(&g, Access::ReadWrite)?;
    let poke = json!({"metadata": {"annotations": {"cluster-test/poke": format!("{:?}", Instant::now())}}});
    api.patch("sales", &PatchParams::default(), &Patch::Merge(&poke))
        .await?;
    let last = Mutex::new(Value::Null);
    let r = wait("GitSyncConfig Ready", Duration::from_secs(120), || async {
        let g = api.get("sales").await?;
        *last.lock().map_err(|_| anyhow!("poisoned"))? = serde_json::to_value(&g.status)?;
        Ok(gsc_ready(&g).then_some(g))
    })
    .await;
    r.with_context(|| format!("last status {:?}", last.lock().map(|v| v.to_string())))
}

fn push_appsync(name: &str, app: &str) -> Value {
    json!({
        "apiVersion": "gitsync.tooljet.io/v1alpha1", "kind": "AppSync",
        "metadata": {"name": name},
        "spec": {"gitSyncConfigRef": {"name": "sales"}, "app": app, "direction": "Push"}
    })
}

async fn wait_appsync(
    c: &Client,
    ns: &str,
    name: &str,
    limit: Duration,
    pred: fn(&AppSync) -> bool,
) -> Result<AppSync> {
    let api: Api<AppSync> = Api::namespaced(c.clone(), ns);
    let last = Mutex::new(Value::Null);
    let r = wait(&format!("AppSync {ns}/{name}"), limit, || async {
        let a = api.get(name).await?;
        *last.lock().map_err(|_| anyhow!("poisoned"))? = serde_json::to_value(&a.status)?;
        Ok(pred(&a).then_some(a))
    })
    .await;
    r.with_context(|| format!("last status {:?}", last.lock().map(|v| v.to_string())))
}

/// The dev side with one pushed app, for the trials that need an operator with work done.
async fn pushed_orders(env: &Env) -> Result<AppSync> {
    ready_config(env, "dev", &env.dev).await?;
    if !env.dev.apps().iter().any(|a| a.name == "Orders") {
        env.dev
            .create_app("Orders", None)
            .map_err(anyhow::Error::msg)?;
    }
    apply_json::<AppSync>(&env.client, "dev", push_appsync("orders", "Orders")).await?;
    wait_appsync(
        &env.client,
        "dev",
        "orders",
        Duration::from_secs(120),
        aps_committed,
    )
    .await
}

async fn operator_pods(c: &Client) -> Result<Vec<Pod>> {
    let api: Api<Pod> = Api::namespaced(c.clone(), NS_OP);
    Ok(api
        .list(&ListParams::default().labels(SELECTOR))
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect())
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_running(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

fn pod_name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

fn pod_ip(p: &Pod) -> Result<String> {
    p.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .context("pod IP")
}

async fn lease_holder(c: &Client) -> Result<Option<String>> {
    let api: Api<Lease> = Api::namespaced(c.clone(), NS_OP);
    Ok(api
        .get_opt(LEASE)
        .await?
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity))
}

/// An HTTP POST with curl from inside the namespaces: (status, body).
fn http_post(url: &str, headers: &[(&str, String)], body: &[u8]) -> Result<(u16, String)> {
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), body)?;
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-s", "-m", "10", "-w", "\n%{http_code}", "-X", "POST"]);
    for (k, v) in headers {
        cmd.args(["-H", &format!("{k}: {v}")]);
    }
    cmd.arg("--data-binary")
        .arg(format!("@{}", file.path().display()))
        .arg(url);
    let out = cmd.output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    Ok((code.trim().parse().unwrap_or(0), body.to_string()))
}

/// An HTTP GET with curl from inside the namespaces: (status, body).
fn http_get(url: &str) -> Result<(u16, String)> {
    let out = std::process::Command::new("curl")
        .args(["-s", "-m", "10", "-w", "\n%{http_code}", url])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    Ok((code.trim().parse().unwrap_or(0), body.to_string()))
}

fn git_head(env: &Env) -> Result<String> {
    Ok(env
        .git
        .git("apps", &["rev-parse", "main"])?
        .trim()
        .to_string())
}

fn git_files(env: &Env) -> Result<Vec<String>> {
    Ok(env
        .git
        .git("apps", &["ls-tree", "-r", "--name-only", "main"])?
        .lines()
        .map(String::from)
        .collect())
}

fn operator_logs(env: &Env) -> String {
    env.node
        .kubectl(&["-n", NS_OP, "logs", "-l", SELECTOR, "--tail=40", "--prefix"])
        .unwrap_or_else(|e| format!("{e:#}"))
}

// ---------------------------------------------------------------------------------------------
// trials

/// The built image's config against the Dockerfile's final stage, and its binary against this
/// tree's release build (a stale image would test old code).
async fn image_config(_env: Arc<Env>) -> Result<()> {
    let archive = node::image_archive();
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--config"])
        .arg(format!("oci-archive:{}", archive.display()))
        .output()?;
    ensure!(
        out.status.success(),
        "skopeo inspect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout)?;
    let cfg = &v["config"];
    let docker = std::fs::read_to_string(node::root().join("Dockerfile"))?;
    let last_stage = docker.rsplit("\nFROM ").next().unwrap_or_default();
    let directive = |name: &str| -> String {
        last_stage
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    ensure!(cfg["User"] == directive("USER"), "User {}", cfg["User"]);
    ensure!(cfg["WorkingDir"] == directive("WORKDIR"));
    let entry: Value = serde_json::from_str(&directive("ENTRYPOINT"))?;
    ensure!(
        cfg["Entrypoint"] == entry,
        "Entrypoint {}",
        cfg["Entrypoint"]
    );
    let cmd: Value = serde_json::from_str(&directive("CMD"))?;
    ensure!(cfg["Cmd"] == cmd, "Cmd {}", cfg["Cmd"]);
    let env_home = directive("ENV");
    ensure!(
        cfg["Env"]
            .as_array()
            .is_some_and(|e| e.iter().any(|x| x == &Value::String(env_home.clone()))),
        "Env {} lacks {env_home}",
        cfg["Env"]
    );
    ensure!(cfg["ExposedPorts"]
        .as_object()
        .is_some_and(|p| p.contains_key(&format!("{}/tcp", directive("EXPOSE")))));
    // The image's binary is this tree's release build.
    let release = archive
        .parent()
        .and_then(|p| p.parent())
        .context("target dir")?
        .join("release/tooljet-gitsync-operator");
    let bytes = std::fs::read(&release).with_context(|| release.display().to_string())?;
    let sha = {
        use std::process::Stdio;
        let mut child = std::process::Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        std::io::Write::write_all(&mut child.stdin.take().context("stdin")?, &bytes)?;
        String::from_utf8_lossy(&child.wait_with_output()?.stdout)[..12].to_string()
    };
    ensure!(
        cfg["Labels"]["org.opencontainers.image.version"] == Value::String(sha.clone()),
        "the image holds another binary than {} ({sha}): rebuild it with hack/image.sh",
        release.display()
    );
    Ok(())
}

/// A pod of the image with the chart's hardening: `crd`, `--version`, and git over ssh as the
/// image's user 65532 on a read-only root filesystem.
async fn image_runs(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    ensure_namespace(c, "image-probe").await?;
    env.git.create_repo("probe")?;
    let sha = env
        .git
        .commit_files("probe", "main", &[("README", b"probe\n")], "probe")?;
    let keydir = tempfile::tempdir()?;
    let key = keydir.path().join("id");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "probe", "-f"])
        .arg(&key)
        .status()?;
    ensure!(st.success(), "ssh-keygen");
    env.git.authorize(
        &std::fs::read_to_string(key.with_extension("pub"))?,
        Access::ReadOnly,
    )?;
    let secrets: Api<Secret> = Api::namespaced(c.clone(), "image-probe");
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": "probe-key"},
        "stringData": {"id": std::fs::read_to_string(&key)?, "known_hosts": env.git.known_hosts_line()?}
    }))?;
    secrets.create(&PostParams::default(), &s).await?;
    let url = env.git.url("probe");
    let script = format!(
        "set -e; echo uid=$(id -u) home=$HOME; \
         if touch /probe 2>/dev/null; then echo root-writable; else echo root-read-only; fi; \
         install -m 600 /key/id /tmp/id; \
         export GIT_SSH_COMMAND='ssh -i /tmp/id -o UserKnownHostsFile=/key/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes'; \
         git ls-remote {url} refs/heads/main; git clone -q {url} /tmp/clone; echo cloned=$(git -C /tmp/clone rev-parse HEAD)"
    );
    let hardening = json!({"readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                           "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}});
    let image = "localhost/tooljet-gitsync-operator:dev";
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "probe"},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "containers": [
                {"name": "crd", "image": image, "imagePullPolicy": "Never", "args": ["crd"],
                 "securityContext": hardening, "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]},
                {"name": "version", "image": image, "imagePullPolicy": "Never", "args": ["--version"],
                 "securityContext": hardening, "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]},
                {"name": "git", "image": image, "imagePullPolicy": "Never",
                 "command": ["bash", "-c", script], "securityContext": hardening,
                 "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "key", "mountPath": "/key", "readOnly": true}]}
            ],
            "volumes": [{"name": "tmp", "emptyDir": {}},
                        {"name": "key", "secret": {"secretName": "probe-key", "defaultMode": 0o444}}]
        }
    }))?;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "image-probe");
    pods.create(&PostParams::default(), &pod).await?;
    let phase = wait("probe pod finished", Duration::from_secs(120), || async {
        let p = pods.get("probe").await?;
        let phase = p.status.and_then(|s| s.phase).unwrap_or_default();
        Ok((phase == "Succeeded" || phase == "Failed").then_some(phase))
    })
    .await?;
    let log = |container: &str| {
        env.node
            .kubectl(&["-n", "image-probe", "logs", "probe", "-c", container])
            .unwrap_or_else(|e| format!("{e:#}"))
    };
    let (crd, version, git) = (log("crd"), log("version"), log("git"));
    ensure!(
        phase == "Succeeded",
        "probe pod {phase}:\ncrd: {crd}\nversion: {version}\ngit: {git}"
    );
    ensure!(
        crd.contains("kind: CustomResourceDefinition")
            && crd.contains("gitsyncconfigs.gitsync.tooljet.io")
            && crd.contains("appsyncs.gitsync.tooljet.io"),
        "crd: {crd}"
    );
    ensure!(
        version.trim() == format!("tooljet-gitsync-operator {}", env!("CARGO_PKG_VERSION")),
        "version: {version}"
    );
    ensure!(git.contains("uid=65532 home=/tmp"), "git: {git}");
    ensure!(git.contains("root-read-only"), "git: {git}");
    ensure!(
        git.contains(&format!("{sha}\trefs/heads/main")),
        "git: {git}"
    );
    ensure!(git.contains(&format!("cloned={sha}")), "git: {git}");
    Ok(())
}

/// The release's pod: Ready (readiness probe), both probes answer, the chart's ServiceAccount,
/// hardened, and the Lease held under the pod's name (its token reached the apiserver).
async fn release_ready(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let pods = operator_pods(c).await?;
    ensure!(pods.len() == 1, "{} operator pods", pods.len());
    let p = &pods[0];
    ensure!(pod_ready(p), "pod not Ready: {:?}", p.status);
    let spec = p.spec.as_ref().context("spec")?;
    ensure!(spec.service_account_name.as_deref() == Some(DEPLOY));
    let ctr = &spec.containers[0];
    ensure!(ctr.image.as_deref() == Some("localhost/tooljet-gitsync-operator:dev"));
    ensure!(ctr.image_pull_policy.as_deref() == Some("Never"));
    let sc = ctr.security_context.as_ref().context("securityContext")?;
    ensure!(sc.read_only_root_filesystem == Some(true) && sc.run_as_user == Some(65532));
    let ip = pod_ip(p)?;
    ensure!(http_get(&format!("http://{ip}:8080/healthz"))? == (200, "ok".into()));
    ensure!(http_get(&format!("http://{ip}:8080/readyz"))? == (200, "ready".into()));
    let holder = wait("Lease holder", Duration::from_secs(60), || async {
        lease_holder(c).await
    })
    .await?;
    ensure!(holder == pod_name(p), "Lease held by {holder}, not the pod");
    let restarts = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|s| s.first())
        .map(|s| s.restart_count)
        .unwrap_or(-1);
    ensure!(restarts == 0, "restarted {restarts} times");
    // The chart's RBAC, as the apiserver sees the pod's ServiceAccount: what the operator needs,
    // and not more.
    let sa = format!("--as=system:serviceaccount:{NS_OP}:{DEPLOY}");
    let can = |verb: &str, what: &str, ns: &str| -> Result<bool> {
        let out = std::process::Command::new(node::kubectl_bin())
            .arg(format!("--kubeconfig={}", env.node.kubeconfig.display()))
            .args(["auth", "can-i", verb, what, "-n", ns, &sa])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim() == "yes")
    };
    for (verb, what, ns, allowed) in [
        ("watch", "appsyncs.gitsync.tooljet.io", "dev", true),
        // AppSyncSets generate and delete AppSyncs; the operator never creates sets.
        ("create", "appsyncs.gitsync.tooljet.io", "dev", true),
        ("delete", "appsyncs.gitsync.tooljet.io", "dev", true),
        ("watch", "appsyncsets.gitsync.tooljet.io", "dev", true),
        (
            "update",
            "appsyncsets.gitsync.tooljet.io/finalizers",
            "dev",
            true,
        ),
        ("create", "appsyncsets.gitsync.tooljet.io", "dev", false),
        (
            "patch",
            "gitsyncconfigs.gitsync.tooljet.io/status",
            "dev",
            true,
        ),
        ("create", "secrets", "dev", true),
        // ConfigMaps hold constants (spec.tooljet.constants): read and watched, never written.
        ("watch", "configmaps", "dev", true),
        ("update", "configmaps", "dev", false),
        (
            "update",
            "leases.coordination.k8s.io/tooljet-gitsync-operator",
            NS_OP,
            true,
        ),
        (
            "update",
            "leases.coordination.k8s.io/someone-elses",
            NS_OP,
            false,
        ),
        ("create", "pods", "dev", false),
        (
            "delete",
            "customresourcedefinitions.apiextensions.k8s.io",
            "",
            false,
        ),
        ("update", "deployments.apps", NS_OP, false),
    ] {
        ensure!(
            can(verb, what, ns)? == allowed,
            "ServiceAccount may {verb} {what} in {ns:?}: expected {allowed}"
        );
    }
    Ok(())
}

/// A GitSyncConfig turns Ready after its deploy key is added, a Push AppSync commits and a
/// Pull AppSync imports, all done by the operator in the pod.
async fn push_and_pull(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let r = pushed_orders(&env).await;
    let a = r.with_context(|| operator_logs(&env))?;
    let last = a
        .status
        .as_ref()
        .and_then(|s| s.last_commit.clone())
        .context("lastCommit")?;
    ensure!(last.sha == git_head(&env)?, "lastCommit is the branch head");
    let files = git_files(&env)?;
    ensure!(
        files.iter().any(|f| f.starts_with("Orders/")) && files.contains(&".meta/meta.json".into()),
        "{files:?}"
    );

    ready_config(&env, "prod", &env.prod).await?;
    apply_json::<AppSync>(
        c,
        "prod",
        json!({
            "apiVersion": "gitsync.tooljet.io/v1alpha1", "kind": "AppSync",
            "metadata": {"name": "orders"},
            "spec": {"gitSyncConfigRef": {"name": "sales"}, "app": "Orders", "direction": "Pull"}
        }),
    )
    .await?;
    let a = wait_appsync(c, "prod", "orders", Duration::from_secs(120), aps_pulled).await?;
    let imported = env
        .prod
        .apps()
        .into_iter()
        .find(|x| x.name == "Orders")
        .context("Orders imported into prod")?;
    ensure!(
        a.status
            .as_ref()
            .and_then(|s| s.app.as_ref())
            .and_then(|x| x.id.clone())
            == Some(imported.id.clone())
    );
    // Nothing in the pod tried to write outside its volumes, or was refused by the filesystem.
    let logs = env
        .node
        .kubectl(&["-n", NS_OP, "logs", "-l", SELECTOR, "--tail=-1"])?;
    for bad in [
        "Read-only file system",
        "Permission denied",
        "permission denied",
    ] {
        ensure!(!logs.contains(bad), "operator log has {bad:?}:\n{logs}");
    }
    ensure!(logs.contains("acquired leadership"), "{logs}");
    Ok(())
}

/// /metrics of the pod, through the release's Service (ClusterIP, kube-proxy's iptables).
async fn metrics(env: Arc<Env>) -> Result<()> {
    pushed_orders(&env).await?;
    let svc: Service = Api::namespaced(env.client.clone(), NS_OP)
        .get(DEPLOY)
        .await?;
    let ip = svc.spec.and_then(|s| s.cluster_ip).context("ClusterIP")?;
    let (code, body) = http_get(&format!("http://{ip}:8080/metrics"))?;
    ensure!(code == 200, "GET /metrics: {code}");
    for series in [
        "tooljet_gitsync_reconciliations_total{kind=\"GitSyncConfig\"}",
        "tooljet_gitsync_reconciliations_total{kind=\"AppSync\"}",
        "tooljet_gitsync_reconcile_duration_seconds_count{kind=\"AppSync\"}",
        "tooljet_gitsync_git_operation_duration_seconds_count{op=\"push\"",
        "tooljet_gitsync_tooljet_api_duration_seconds_count{",
        "tooljet_gitsync_pushes_total ",
    ] {
        ensure!(body.contains(series), "no {series} in:\n{body}");
    }
    Ok(())
}

/// The receiver the chart enables (`webhook.enabled=true`), through its own Service: a config
/// with `spec.webhook` gets its path, a signed ping and a signed push of its branch are taken,
/// an unsigned one is refused, and the push caused a repository check.
async fn webhook(env: Arc<Env>) -> Result<()> {
    use hmac::Mac;
    const TOKEN: &str = "cluster-webhook-token-5d2e8a";
    let c = &env.client;
    pushed_orders(&env).await?;
    let secrets: Api<Secret> = Api::namespaced(c.clone(), "dev");
    if secrets.get_opt("repo-hook").await?.is_none() {
        let s: Secret = serde_json::from_value(json!({
            "metadata": {"name": "repo-hook"}, "stringData": {"token": TOKEN}
        }))?;
        secrets.create(&PostParams::default(), &s).await?;
    }
    let api: Api<GitSyncConfig> = Api::namespaced(c.clone(), "dev");
    api.patch(
        "sales",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"webhook": {"secretRef": {"name": "repo-hook"}}}})),
    )
    .await?;
    let path = wait(
        "WebhookReady and status.webhook.path",
        Duration::from_secs(60),
        || async {
            let g = api.get("sales").await?;
            let s = g.status.unwrap_or_default();
            let ready = s
                .conditions
                .iter()
                .any(|c| c.type_ == "WebhookReady" && c.status == "True");
            Ok(s.webhook.filter(|_| ready).map(|w| w.path))
        },
    )
    .await
    .with_context(|| operator_logs(&env))?;
    let svc: Service = Api::namespaced(c.clone(), NS_OP)
        .get(&format!("{DEPLOY}-webhook"))
        .await?;
    let ip = svc.spec.and_then(|s| s.cluster_ip).context("ClusterIP")?;
    let url = format!("http://{ip}:9292{path}");
    let signed = |event: &str, id: &str, body: &[u8]| -> Result<Vec<(&'static str, String)>> {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(TOKEN.as_bytes())?;
        mac.update(body);
        let sig: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(vec![
            ("X-GitHub-Event", event.to_string()),
            ("X-GitHub-Delivery", id.to_string()),
            ("X-Hub-Signature-256", format!("sha256={sig}")),
            ("Content-Type", "application/json".to_string()),
        ])
    };
    let ping = br#"{"zen":"Speak like a human.","hook_id":7}"#;
    let (code, body) = http_post(&url, &signed("ping", "c-ping", ping)?, ping)?;
    ensure!(
        code == 200 && body.contains("\"ping\""),
        "ping: {code} {body}"
    );
    let push = serde_json::to_vec(&json!({"ref": "refs/heads/main", "after": git_head(&env)?}))?;
    let (code, body) = http_post(&url, &[("X-GitHub-Event", "push".into())], &push)?;
    ensure!(code == 401, "unsigned: {code} {body}");
    let (code, body) = http_post(&url, &signed("push", "c-push", &push)?, &push)?;
    ensure!(code == 202, "signed push: {code} {body}");
    let metrics: Service = Api::namespaced(c.clone(), NS_OP).get(DEPLOY).await?;
    let mip = metrics
        .spec
        .and_then(|s| s.cluster_ip)
        .context("ClusterIP")?;
    wait(
        "webhook_checks_total 1",
        Duration::from_secs(30),
        || async {
            let (_, m) = http_get(&format!("http://{mip}:8080/metrics"))?;
            Ok(m.lines()
                .any(|l| {
                    l.starts_with("tooljet_gitsync_webhook_checks_total ") && !l.ends_with(" 0")
                })
                .then_some(()))
        },
    )
    .await?;
    // Only /hook/ is served there: the metrics stay on their own port.
    ensure!(http_get(&format!("http://{ip}:9292/metrics"))?.0 == 404);
    Ok(())
}

/// `helm upgrade` to two replicas with changed values: both pods run the new template, one
/// holds the Lease and is Ready, the other stands by (not Ready, reconciling nothing).
async fn upgrade_two_replicas(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    pushed_orders(&env).await?;
    let args = release_args(
        "upgrade",
        &[
            "--set",
            "replicas=2",
            "--set",
            "logLevel=debug",
            "--set",
            "concurrency=2",
        ],
    );
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    env.node.helm(&refs)?;
    let (leader, standby) = wait(
        "two pods, one Ready leader",
        Duration::from_secs(180),
        || async {
            let pods = operator_pods(c).await?;
            let new: Vec<&Pod> = pods
                .iter()
                .filter(|p| {
                    p.spec.as_ref().is_some_and(|s| {
                        s.containers[0]
                            .args
                            .as_ref()
                            .is_some_and(|a| a.contains(&"--concurrency=2".to_string()))
                            && s.containers[0].env.as_ref().is_some_and(|e| {
                                e.iter().any(|v| {
                                    v.name == "RUST_LOG" && v.value.as_deref() == Some("debug")
                                })
                            })
                    })
                })
                .collect();
            if pods.len() != 2 || new.len() != 2 || !new.iter().all(|p| pod_running(p)) {
                return Ok(None);
            }
            let ready: Vec<&&Pod> = new.iter().filter(|p| pod_ready(p)).collect();
            let holder = lease_holder(c).await?;
            if ready.len() != 1 || holder.as_deref() != Some(pod_name(ready[0]).as_str()) {
                return Ok(None);
            }
            let standby = new.iter().find(|p| !pod_ready(p)).map(|p| (*p).clone());
            Ok(standby.map(|s| ((*ready[0]).clone(), s)))
        },
    )
    .await
    .with_context(|| operator_logs(&env))?;
    // The standby answers its probes' liveness but runs no controller.
    let ip = pod_ip(&standby)?;
    ensure!(http_get(&format!("http://{ip}:8080/healthz"))?.0 == 200);
    ensure!(http_get(&format!("http://{ip}:8080/readyz"))?.0 == 503);
    let (_, body) = http_get(&format!("http://{ip}:8080/metrics"))?;
    ensure!(
        !body.contains("tooljet_gitsync_reconciliations_total{"),
        "the standby reconciled:\n{body}"
    );
    // And the leader does: a new app is pushed.
    env.dev
        .create_app("After Upgrade", None)
        .map_err(anyhow::Error::msg)?;
    apply_json::<AppSync>(c, "dev", push_appsync("after-upgrade", "After Upgrade")).await?;
    wait_appsync(
        c,
        "dev",
        "after-upgrade",
        Duration::from_secs(120),
        aps_committed,
    )
    .await?;
    eprintln!(
        "leader {}, standby {}",
        pod_name(&leader),
        pod_name(&standby)
    );
    Ok(())
}

/// A batch of pushes, `kubectl rollout restart` right after it is created and the leader pod
/// deleted while it is still under way: every app ends committed, each exactly once in git.
async fn restart_mid_batch(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    pushed_orders(&env).await?;
    const N: usize = 16;
    let names: Vec<String> = (1..=N).map(|i| format!("Batch {i:02}")).collect();
    for n in &names {
        if !env.dev.apps().iter().any(|a| &a.name == n) {
            env.dev.create_app(n, None).map_err(anyhow::Error::msg)?;
        }
    }
    let head_before = git_head(&env)?;
    for (i, n) in names.iter().enumerate() {
        apply_json::<AppSync>(c, "dev", push_appsync(&format!("batch-{:02}", i + 1), n)).await?;
    }
    env.node.kubectl(&[
        "-n",
        NS_OP,
        "rollout",
        "restart",
        &format!("deployment/{DEPLOY}"),
    ])?;
    let aps: Api<AppSync> = Api::namespaced(c.clone(), "dev");
    let committed = |list: &[AppSync]| {
        list.iter()
            .filter(|a| {
                a.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("batch-"))
            })
            .filter(|a| aps_committed(a))
            .count()
    };
    let at_restart = committed(&aps.list(&ListParams::default()).await?.items);
    // The restarted leader: a pod of the new template holding the Lease.
    let leader = wait(
        "a leader after the restart",
        Duration::from_secs(180),
        || async {
            let pods = operator_pods(c).await?;
            let holder = lease_holder(c).await?;
            Ok(pods.into_iter().find(|p| {
                pod_ready(p)
                    && Some(pod_name(p)) == holder
                    && p.metadata
                        .annotations
                        .as_ref()
                        .is_some_and(|a| a.contains_key("kubectl.kubernetes.io/restartedAt"))
            }))
        },
    )
    .await
    .with_context(|| operator_logs(&env))?;
    let at_delete = committed(&aps.list(&ListParams::default()).await?.items);
    env.node.kubectl(&[
        "-n",
        NS_OP,
        "delete",
        "pod",
        &pod_name(&leader),
        "--wait=false",
    ])?;
    let done = wait(
        "every batch app committed",
        Duration::from_secs(300),
        || async {
            let list = aps.list(&ListParams::default()).await?.items;
            Ok((committed(&list) == N).then_some(list))
        },
    )
    .await
    .with_context(|| operator_logs(&env))?;
    eprintln!(
        "batch of {N}: {at_restart} committed at the rollout restart, {at_delete} when the leader {} was deleted",
        pod_name(&leader)
    );
    // Every app is in git exactly once, under its own directory, and the history is linear
    // from the head before the batch.
    let files = git_files(&env)?;
    for n in &names {
        let in_git = files
            .iter()
            .filter(|f| f.starts_with(&format!("{n}/")))
            .count();
        ensure!(in_git == 1, "{n}: {in_git} files in git: {files:?}");
    }
    let meta: Value =
        serde_json::from_str(&env.git.git("apps", &["show", "main:.meta/meta.json"])?)?;
    for a in done.iter().filter(|a| {
        a.metadata
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with("batch-"))
    }) {
        let id = a
            .status
            .as_ref()
            .and_then(|s| s.app.as_ref())
            .and_then(|x| x.id.clone())
            .context("app id")?;
        ensure!(meta.get(&id).is_some(), "{id} not in .meta/meta.json");
    }
    env.git
        .git(
            "apps",
            &["merge-base", "--is-ancestor", &head_before, "main"],
        )
        .context("history rewritten")?;
    env.git.git("apps", &["fsck", "--strict"]).context("fsck")?;
    // And the new pods are back: one leader.
    wait("a leader again", Duration::from_secs(180), || async {
        let pods = operator_pods(c).await?;
        let holder = lease_holder(c).await?;
        Ok(pods
            .iter()
            .any(|p| pod_ready(p) && Some(pod_name(p)) == holder)
            .then_some(()))
    })
    .await?;
    Ok(())
}

/// `helm uninstall`: the repository and both ToolJets are untouched; the CRDs, the custom
/// objects and the Secrets stay; the operator's own objects go.
async fn uninstall(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    pushed_orders(&env).await?;
    let head = git_head(&env)?;
    let snapshot = |e: &Emulator| {
        let mut v: Vec<(String, usize, String)> = e
            .apps()
            .into_iter()
            .map(|a| (a.name, a.versions.len(), a.content.to_string()))
            .collect();
        v.sort();
        v
    };
    let (dev_before, prod_before) = (snapshot(&env.dev), snapshot(&env.prod));
    env.node.helm(&[
        "uninstall",
        RELEASE,
        "--namespace",
        NS_OP,
        "--wait",
        "--timeout",
        "120s",
    ])?;
    wait("operator pods gone", Duration::from_secs(120), || async {
        Ok(operator_pods(c).await?.is_empty().then_some(()))
    })
    .await?;
    ensure!(git_head(&env)? == head, "the repository moved");
    ensure!(snapshot(&env.dev) == dev_before, "dev ToolJet changed");
    ensure!(snapshot(&env.prod) == prod_before, "prod ToolJet changed");
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(c.clone());
    for crd in [
        "gitsyncconfigs.gitsync.tooljet.io",
        "appsyncs.gitsync.tooljet.io",
    ] {
        ensure!(crds.get_opt(crd).await?.is_some(), "CRD {crd} removed");
    }
    ensure!(Api::<GitSyncConfig>::namespaced(c.clone(), "dev")
        .get_opt("sales")
        .await?
        .is_some());
    ensure!(Api::<AppSync>::namespaced(c.clone(), "dev")
        .get_opt("orders")
        .await?
        .is_some());
    let secrets: Api<Secret> = Api::namespaced(c.clone(), "dev");
    for s in ["tooljet-api", "sales-deploy-key"] {
        ensure!(secrets.get_opt(s).await?.is_some(), "Secret {s} removed");
    }
    ensure!(
        Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(c.clone(), NS_OP)
            .get_opt(DEPLOY)
            .await?
            .is_none(),
        "the ServiceAccount outlived the release"
    );
    Ok(())
}
