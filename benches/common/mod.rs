//! What the benches share: generated apps and ToolJet's per-app push loop (`apps`), the
//! operator binary as a subprocess (`operator`), the server-side SSH session tracer (`trace`),
//! and a few Kubernetes helpers. Each bench uses a part of it.
#![allow(dead_code)]

pub mod apps;
pub mod operator;
pub mod trace;

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use tooljet_gitsync_operator::api::{self, GitSyncConfig};
use tooljet_gitsync_testkit::gitserver::{Access, GitServer};
use tooljet_gitsync_testkit::kube_env::KubeEnv;
use tooljet_gitsync_testkit::proc::descendants;
use tooljet_gitsync_testkit::wait::poll;

use trace::Tracer;

/// Creates namespace `name` with a Secret `secret` holding `data` (`stringData`).
pub async fn namespace(
    client: &Client,
    name: &str,
    secret: &str,
    data: &[(&str, String)],
) -> Result<()> {
    let ns: Namespace = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
    )?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
        .collect();
    let s: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret}, "stringData": data
    }))?;
    Api::<Secret>::namespaced(client.clone(), name)
        .create(&PostParams::default(), &s)
        .await?;
    Ok(())
}

/// Creates Secret `name` in `ns` holding `data` (`stringData`).
#[allow(dead_code)] // not every bench uses it
pub async fn secret(client: &Client, ns: &str, name: &str, data: &[(&str, &str)]) -> Result<()> {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    let s: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data
    }))?;
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &s)
        .await?;
    Ok(())
}

/// Server-side apply of a namespaced manifest, as a user would (field manager `manager`).
pub async fn apply<K>(client: &Client, ns: &str, manager: &str, yaml: &str) -> Result<()>
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
    Api::<K>::namespaced(client.clone(), ns)
        .patch(
            &name,
            &PatchParams::apply(manager).force(),
            &Patch::Apply(&value),
        )
        .await?;
    Ok(())
}

/// `status:reason` of the Ready condition.
pub fn ready(conds: &[api::Condition]) -> Option<String> {
    api::find(conds, "Ready").map(|c| format!("{}:{}", c.status, c.reason))
}

/// A GitSyncConfig manifest: repository `url` (branch main), the ToolJet at `tooljet`
/// (workspace `my-workspace`) with the credentials of Secret `secret`.
pub fn manifest_gsc(name: &str, url: &str, tooljet: &str, secret: &str, interval: u64) -> String {
    manifest_gsc_in(name, url, tooljet, "my-workspace", secret, interval)
}

/// [`manifest_gsc`] for the ToolJet workspace `workspace` (id, slug or name).
pub fn manifest_gsc_in(
    name: &str,
    url: &str,
    tooljet: &str,
    workspace: &str,
    secret: &str,
    interval: u64,
) -> String {
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
    workspace: {workspace}
    credentialsSecretRef: {{ name: {secret} }}
  interval: {interval}s
"#
    )
}

/// Applies GitSyncConfig `name` from `manifest` in `ns`, authorizes its generated deploy key
/// through the tracer's forced command, and waits until it is Ready.
pub async fn ready_config(
    client: &Client,
    git: &GitServer,
    tracer: &Tracer,
    ns: &str,
    name: &str,
    manifest: &str,
) -> Result<()> {
    apply::<GitSyncConfig>(client, ns, "bench", manifest).await?;
    let api: Api<GitSyncConfig> = Api::namespaced(client.clone(), ns);
    let public = poll(
        &format!("{ns}/{name} publicKey"),
        Duration::from_secs(90),
        Duration::from_millis(200),
        || async { api.get(name).await.ok()?.status?.public_key },
    )
    .await?;
    git.authorize(&tracer.key_line(&public), Access::ReadWrite)?;
    let patch = json!({"metadata": {"annotations": {"bench/poke": "1"}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let last = std::sync::Mutex::new(None);
    poll(
        &format!("{ns}/{name} Ready"),
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

/// The runtime and the real parts every bench starts first: kube-apiserver (with etcd) and the
/// sshd git server, and when they were started. On failure the reason is printed and the exit
/// code returned. Child processes are started from the calling (main) thread: they die with it
/// (PDEATHSIG).
pub fn start_parts(
) -> Result<(tokio::runtime::Runtime, KubeEnv, GitServer, Instant), std::process::ExitCode> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        eprintln!("setup failed: {what}: {e:#}");
        std::process::ExitCode::FAILURE
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| failed("tokio runtime", &e))?;
    let started = Instant::now();
    let kube = KubeEnv::start().map_err(|e| failed("kube-apiserver", &e))?;
    let git = GitServer::start().map_err(|e| failed("git server", &e))?;
    Ok((rt, kube, git, started))
}

/// `KiB` as MiB, for reports.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// After the parts are dropped: whether every child process in `ours` (the descendants seen
/// before teardown) is gone; prints what was stopped or what is left.
pub fn teardown_clean(ours: &[(u32, String)], started: Instant) -> bool {
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
        true
    } else {
        eprintln!("teardown: processes left: {left:?}");
        false
    }
}
