//! A real etcd + kube-apiserver 1.20.2 on loopback, started per test run and torn down on drop.
//!
//! The apiserver binary is built from Debian's `kubernetes` source package by
//! `.ci/install-deps.sh` and cached at `~/.cache/tooljet-gitsync-operator/kube-apiserver-1.20.2`
//! (override with `KUBE_APISERVER`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::proc::{free_port, spawn_guarded, stop};

/// A running etcd + kube-apiserver pair.
pub struct KubeEnv {
    etcd: Option<Child>,
    apiserver: Option<Child>,
    dir: tempfile::TempDir,
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    /// Path of a kubeconfig with admin (system:masters) credentials.
    pub kubeconfig: PathBuf,
}

/// Bearer token of the admin user in the env.
pub const ADMIN_TOKEN: &str = "admintoken";

/// Bearer token of a second static user, [`OPERATOR_USER`], that belongs to no group and so has
/// no rights beyond what every authenticated user gets (discovery, self-review) until a test
/// binds roles to it.
pub const OPERATOR_TOKEN: &str = "operatortoken";

/// User name of [`OPERATOR_TOKEN`], for RoleBinding/ClusterRoleBinding subjects (`kind: User`).
pub const OPERATOR_USER: &str = "operator";

/// Where the cached apiserver binary lives.
pub fn apiserver_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("KUBE_APISERVER") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache")
        });
    cache.join("tooljet-gitsync-operator/kube-apiserver-1.20.2")
}

impl KubeEnv {
    /// Starts etcd and the apiserver on free loopback ports and waits until `/readyz` answers.
    pub fn start() -> Result<KubeEnv> {
        let bin = apiserver_binary();
        if !bin.exists() {
            bail!(
                "kube-apiserver not found at {}: run `bash .ci/install-deps.sh` first",
                bin.display()
            );
        }
        let dir = tempfile::Builder::new().prefix("kube-env-").tempdir()?;
        let d = dir.path();
        let (client_port, peer_port, api_port) = (free_port()?, free_port()?, free_port()?);
        run_ok(
            Command::new("openssl")
                .args(["genrsa", "-out"])
                .arg(d.join("sa.key"))
                .arg("2048"),
        )?;
        run_ok(
            Command::new("openssl")
                .args(["rsa", "-in"])
                .arg(d.join("sa.key"))
                .arg("-pubout")
                .arg("-out")
                .arg(d.join("sa.pub")),
        )?;
        std::fs::write(
            d.join("tokens.csv"),
            format!(
                "{ADMIN_TOKEN},admin,admin-uid,system:masters\n{OPERATOR_TOKEN},{OPERATOR_USER},operator-uid\n"
            ),
        )?;
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd = spawn_guarded(
            Command::new("etcd")
                .args(["--name", "test", "--data-dir"])
                .arg(d.join("etcd"))
                .args([
                    "--listen-client-urls",
                    &etcd_url,
                    "--advertise-client-urls",
                    &etcd_url,
                ])
                .args([
                    "--listen-peer-urls",
                    &peer_url,
                    "--initial-advertise-peer-urls",
                    &peer_url,
                ])
                .args(["--initial-cluster", &format!("test={peer_url}")])
                .args(["--log-level", "error", "--logger", "zap"])
                .stdout(Stdio::null())
                .stderr(log_file(d, "etcd.log")?),
        )?;
        let mut env = KubeEnv {
            etcd: Some(etcd),
            apiserver: None,
            server: format!("https://127.0.0.1:{api_port}"),
            kubeconfig: d.join("kubeconfig"),
            dir,
        };
        let d = env.dir.path().to_path_buf();
        let apiserver = spawn_guarded(
            Command::new(&bin)
                .arg(format!("--etcd-servers={etcd_url}"))
                .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
                .arg(format!("--secure-port={api_port}"))
                .arg(format!("--cert-dir={}", d.join("certs").display()))
                .arg(format!(
                    "--token-auth-file={}",
                    d.join("tokens.csv").display()
                ))
                .arg("--authorization-mode=RBAC")
                .arg("--service-account-issuer=https://kubernetes.default.svc")
                .arg(format!(
                    "--service-account-key-file={}",
                    d.join("sa.pub").display()
                ))
                .arg(format!(
                    "--service-account-signing-key-file={}",
                    d.join("sa.key").display()
                ))
                .arg("--service-cluster-ip-range=10.96.0.0/24")
                .arg("--enable-priority-and-fairness=false")
                .arg("--v=0")
                .stdout(Stdio::null())
                .stderr(log_file(&d, "apiserver.log")?),
        )?;
        env.apiserver = Some(apiserver);
        env.wait_ready(Duration::from_secs(60))?;
        env.write_kubeconfig(ADMIN_TOKEN, &env.kubeconfig.clone())?;
        Ok(env)
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.path().join("certs/apiserver.crt")
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            let ok = Command::new("curl")
                .args(["-skf", "-m", "2", "-H"])
                .arg(format!("Authorization: Bearer {ADMIN_TOKEN}"))
                .arg(format!("{}/readyz", self.server))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok && self.ca_path().exists() {
                return Ok(());
            }
            if let Some(c) = self.apiserver.as_mut() {
                if let Some(status) = c.try_wait()? {
                    bail!(
                        "kube-apiserver exited ({status}); log:\n{}",
                        self.log_tail("apiserver.log")
                    );
                }
            }
            if start.elapsed() > limit {
                bail!(
                    "kube-apiserver not ready after {limit:?}; log:\n{}",
                    self.log_tail("apiserver.log")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The last lines of a component's log, for failure messages.
    pub fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Writes a kubeconfig that authenticates with `token` ([`ADMIN_TOKEN`] or [`OPERATOR_TOKEN`]).
    pub fn write_kubeconfig(&self, token: &str, path: &Path) -> Result<()> {
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context: {{cluster: test, user: u, namespace: default}}\ncurrent-context: test\n",
            self.server,
            self.ca_path().display()
        );
        std::fs::write(path, yaml)?;
        Ok(())
    }

    /// Writes a kubeconfig for `token` to `path` and returns `path`, e.g. for an operator process
    /// that must run with exactly the rights bound to [`OPERATOR_USER`].
    pub fn kubeconfig_for(&self, token: &str, path: &Path) -> Result<PathBuf> {
        self.write_kubeconfig(token, path)?;
        Ok(path.to_path_buf())
    }

    /// A client with admin rights.
    pub async fn client(&self) -> Result<kube::Client> {
        self.client_from(&self.kubeconfig).await
    }

    /// A client from any kubeconfig written by [`KubeEnv::write_kubeconfig`].
    pub async fn client_from(&self, kubeconfig: &Path) -> Result<kube::Client> {
        let kc = Kubeconfig::read_from(kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .context("kubeconfig")?;
        Ok(kube::Client::try_from(config)?)
    }

    /// Directory for the env's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for KubeEnv {
    fn drop(&mut self) {
        if let Some(c) = self.apiserver.take() {
            stop(c);
        }
        if let Some(c) = self.etcd.take() {
            stop(c);
        }
    }
}

fn log_file(dir: &Path, name: &str) -> Result<Stdio> {
    Ok(Stdio::from(std::fs::File::create(dir.join(name))?))
}

fn run_ok(cmd: &mut Command) -> Result<()> {
    let out = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output()?;
    if !out.status.success() {
        bail!("{:?} failed: {}", cmd, String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Creates `crds` and waits until the apiserver has established them.
pub async fn install_crds(
    client: &kube::Client,
    crds: Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>,
) -> Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    let mut names = Vec::new();
    for crd in crds {
        names.push(crd.metadata.name.clone().unwrap_or_default());
        api.create(&Default::default(), &crd).await?;
    }
    for name in names {
        crate::wait::poll(
            &format!("CRD {name} established"),
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async {
                let c = api.get(&name).await.ok()?;
                c.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            },
        )
        .await?;
    }
    Ok(())
}
