//! The operator binary itself: `run` against the real apiserver, its HTTP endpoints, graceful
//! shutdown, and leader election between two processes.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tooljet_gitsync_operator::api::GitSyncConfig;
use tooljet_gitsync_testkit::proc::free_port;

use crate::support::{apply, has, namespace, trial, wait, wait_gsc, Env, SHARD_LABEL};

pub fn trials() -> Vec<libtest_mimic::Trial> {
    vec![trial(
        "runtime_binary_leader_election_and_endpoints",
        leader_election,
    )]
}

struct Operator {
    child: Option<Child>,
    port: u16,
    _data: tempfile::TempDir,
}

impl Operator {
    fn start(env: &Env, identity: &str, ns: &str) -> Result<Operator> {
        let port = free_port()?;
        let data = tempfile::tempdir()?;
        let child = Command::new(env!("CARGO_BIN_EXE_tooljet-gitsync-operator"))
            .args([
                "run",
                "--leader-elect",
                "--lease-name",
                "e2e-operator",
                "--lease-namespace",
            ])
            .arg(ns)
            .arg("--http-addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data.path().join("data"))
            .arg("--label-selector")
            .arg(format!("{SHARD_LABEL}=binary"))
            .args(["--lease-duration", "15s", "--lease-renew-deadline", "10s"])
            .args(["--lease-retry-period", "2s"])
            .env("KUBECONFIG", &env.kube.kubeconfig)
            .env("POD_NAME", identity)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(std::fs::File::create(
                data.path().join("operator.log"),
            )?))
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Operator {
            child: Some(child),
            port,
            _data: data,
        })
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        let out = Command::new("curl")
            .args(["-s", "-m", "2", "-w", "\n%{http_code}"])
            .arg(format!("http://127.0.0.1:{}{path}", self.port))
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n')?;
        Some((code.trim().parse().ok()?, body.to_string()))
    }

    /// SIGTERM and wait; returns the exit status code.
    fn terminate(&mut self) -> Result<Option<i32>> {
        let mut child = self.child.take().context("not running")?;
        // SAFETY: kill(2) on our own child.
        unsafe { libc_kill(child.id() as i32) };
        for _ in 0..100 {
            if let Some(st) = child.try_wait()? {
                return Ok(st.code());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        anyhow::bail!("operator did not stop within 10s of SIGTERM")
    }
}

unsafe fn libc_kill(pid: i32) {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    kill(pid, 15);
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn holder(env: &Env, ns: &str) -> Option<String> {
    let api: Api<Lease> = Api::namespaced(env.client.clone(), ns);
    api.get_opt("e2e-operator")
        .await
        .ok()??
        .spec?
        .holder_identity
}

fn manifest(annotation: &str) -> String {
    format!(
        r#"apiVersion: gitsync.tooljet.io/v1alpha1
kind: GitSyncConfig
metadata:
  name: sharded
  labels: {{ {SHARD_LABEL}: binary }}
  annotations: {{ step: "{annotation}" }}
spec:
  enabled: false
  repository: {{ url: "git@127.0.0.1:x.git" }}
  tooljet: {{ url: "http://127.0.0.1:9", workspace: w, credentialsSecretRef: {{ name: t }} }}
"#
    )
}

/// A renew deadline not below the lease duration could let two replicas lead: refused at start.
fn refuses_unsafe_lease_timing(env: &Env, ns: &str) -> Result<()> {
    let out = Command::new(env!("CARGO_BIN_EXE_tooljet-gitsync-operator"))
        .args(["run", "--leader-elect", "--lease-name", "e2e-operator"])
        .args(["--lease-namespace", ns, "--http-addr", "127.0.0.1:0"])
        .args(["--lease-duration", "5s", "--lease-renew-deadline", "5s"])
        .env("KUBECONFIG", &env.kube.kubeconfig)
        .env("RUST_LOG", "info")
        .output()?;
    let log = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.code() == Some(1), "exit {:?}: {log}", out.status);
    ensure!(
        log.contains("must be shorter than the lease duration"),
        "{log}"
    );
    Ok(())
}

async fn leader_election(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let ns = namespace(c, "runtime").await?;
    refuses_unsafe_lease_timing(&env, &ns)?;
    ensure!(
        holder(&env, &ns).await.is_none(),
        "a refused replica touched the Lease"
    );
    let mut a = Operator::start(&env, "replica-a", &ns)?;
    let ready_a = wait(Duration::from_secs(30), || async {
        (a.get("/readyz")?.0 == 200).then_some(())
    })
    .await;
    ready_a.context("replica-a /readyz")?;
    ensure!(holder(&env, &ns).await.as_deref() == Some("replica-a"));
    let mut b = Operator::start(&env, "replica-b", &ns)?;
    wait(Duration::from_secs(15), || async {
        b.get("/healthz").map(|_| ())
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(
        b.get("/readyz").map(|r| r.0) == Some(503),
        "standby must not report ready"
    );
    ensure!(holder(&env, &ns).await.as_deref() == Some("replica-a"));

    // The leader reconciles objects of its shard (and the in-process operator does not).
    apply::<GitSyncConfig>(c, &ns, &manifest("1")).await?;
    let g = wait_gsc(c, &ns, "sharded", "Disabled by replica-a", |g| {
        has(g, "Ready", "False", "Disabled")
    })
    .await?;
    ensure!(g
        .metadata
        .finalizers
        .unwrap_or_default()
        .iter()
        .any(|f| f == "gitsync.tooljet.io/finalizer"));
    // Counted when the reconcile returns, just after its status write.
    wait(Duration::from_secs(10), || async {
        let (code, body) = a.get("/metrics")?;
        (code == 200
            && body.contains("tooljet_gitsync_reconciliations_total{kind=\"GitSyncConfig\"}"))
        .then_some(())
    })
    .await
    .with_context(|| {
        let log = std::fs::read_to_string(a._data.path().join("operator.log")).unwrap_or_default();
        format!("reconcile metrics exposed; operator log:\n{log}")
    })?;

    // Graceful stop: exits 0 and hands the lease over; the standby takes over and reconciles.
    ensure!(a.terminate()? == Some(0), "replica-a did not exit cleanly");
    wait(Duration::from_secs(30), || async {
        (holder(&env, &ns).await.as_deref() == Some("replica-b")).then_some(())
    })
    .await
    .context("replica-b takes the lease")?;
    wait(Duration::from_secs(15), || async {
        (b.get("/readyz")?.0 == 200).then_some(())
    })
    .await?;
    let mut m = manifest("2");
    m = m.replace("enabled: false", "enabled: false\n  interval: 7m");
    apply::<GitSyncConfig>(c, &ns, &m).await?;
    wait_gsc(c, &ns, "sharded", "reconciled by replica-b", |g| {
        g.status.as_ref().and_then(|s| s.observed_generation) == g.metadata.generation
            && g.metadata.generation.unwrap_or(0) >= 2
    })
    .await?;
    ensure!(b.terminate()? == Some(0));
    Ok(())
}
