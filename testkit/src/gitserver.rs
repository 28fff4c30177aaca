//! A real OpenSSH sshd on loopback whose `git` user has `git-shell` as login shell, serving bare
//! repositories, with per-server host keys (test-infra-findings §4). Needs root (it runs sshd
//! and creates the `git` user once).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::proc::{free_port_on, spawn_guarded, stop};

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Fetch and push.
    ReadWrite,
    /// Fetch only; pushes are refused with GitHub's read-only deploy key message.
    ReadOnly,
    /// Authenticated, then never answered: the session stays open (sshd keeps answering
    /// keepalives) until the client goes away, like a wedged server-side git.
    Stalls,
}

/// A running sshd + git-shell server.
pub struct GitServer {
    child: Mutex<Option<Child>>,
    dir: tempfile::TempDir,
    /// Address sshd listens on: 127.0.0.1, or the node IP inside the cluster test's own network
    /// namespace ([`GitServer::start_on`]).
    ip: std::net::Ipv4Addr,
    port: u16,
    keys: Mutex<Vec<String>>,
}

const READONLY_COMMAND: &str = "tjgs-readonly";
const STALL_COMMAND: &str = "tjgs-stall";

fn ensure_git_user() -> Result<()> {
    let exists = Command::new("id")
        .arg("-u")
        .arg("git")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?
        .success();
    if !exists {
        let shell = which("git-shell").context("git-shell not found")?;
        let st = Command::new("useradd")
            .args(["--create-home", "--home-dir", "/home/git", "--shell"])
            .arg(&shell)
            .arg("git")
            .status()?;
        if !st.success() {
            // Another process may have created it meanwhile.
            let again = Command::new("id")
                .arg("-u")
                .arg("git")
                .stdout(Stdio::null())
                .status()?
                .success();
            if !again {
                bail!("useradd git failed");
            }
        }
    }
    Command::new("usermod").args(["-p", "*", "git"]).status()?;
    // git-shell only runs programs without '/' from ~/git-shell-commands: the read-only gate.
    let cmds = Path::new("/home/git/git-shell-commands");
    std::fs::create_dir_all(cmds)?;
    let script = cmds.join(READONLY_COMMAND);
    std::fs::write(
        &script,
        "#!/bin/sh\ncase \"$SSH_ORIGINAL_COMMAND\" in\n  git-upload-pack*|\"git upload-pack\"*) exec git-shell -c \"$SSH_ORIGINAL_COMMAND\" ;;\n  *) echo 'ERROR: The key you are authenticating with has been marked as read only.' >&2; exit 1 ;;\nesac\n",
    )?;
    Command::new("chmod").arg("755").arg(&script).status()?;
    // Reads until the client disconnects (EOF), answering nothing.
    let stall = cmds.join(STALL_COMMAND);
    std::fs::write(&stall, "#!/bin/sh\nexec cat >/dev/null\n")?;
    Command::new("chmod").arg("755").arg(&stall).status()?;
    Command::new("chown")
        .args(["-R", "git:git", "/home/git"])
        .status()?;
    std::fs::create_dir_all("/run/sshd")?;
    Ok(())
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(bin))
            .find(|p| p.exists())
    })
}

impl GitServer {
    /// Starts a new server on a free loopback port with a fresh host key.
    pub fn start() -> Result<GitServer> {
        Self::start_on(std::net::Ipv4Addr::LOCALHOST)
    }

    /// [`GitServer::start`] listening on `ip`: only ever an address of a network namespace the
    /// caller made for itself (the cluster test's node IP, which pods reach).
    pub fn start_on(ip: std::net::Ipv4Addr) -> Result<GitServer> {
        ensure_git_user()?;
        let dir = tempfile::Builder::new().prefix("gitserver-").tempdir()?;
        Command::new("chmod").arg("755").arg(dir.path()).status()?;
        let repos = dir.path().join("repos");
        std::fs::create_dir_all(&repos)?;
        Command::new("chown")
            .args(["git:git"])
            .arg(&repos)
            .status()?;
        let server = GitServer {
            child: Mutex::new(None),
            ip,
            port: free_port_on(ip)?,
            dir,
            keys: Mutex::new(Vec::new()),
        };
        server.write_authorized_keys()?;
        server.new_host_key()?;
        server.spawn()?;
        Ok(server)
    }

    fn new_host_key(&self) -> Result<()> {
        let key = self.dir.path().join("hostkey");
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(key.with_extension("pub"));
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "test-host", "-f"])
            .arg(&key)
            .status()?;
        if !st.success() {
            bail!("ssh-keygen failed");
        }
        Ok(())
    }

    fn spawn(&self) -> Result<()> {
        let d = self.dir.path();
        let config = d.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress {ip}\nHostKey {hk}\nPidFile {pid}\nAuthorizedKeysFile {ak}\nPubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nAllowUsers git\nStrictModes no\nPermitUserEnvironment no\nAllowTcpForwarding no\nX11Forwarding no\nLogLevel VERBOSE\n",
                port = self.port,
                ip = self.ip,
                hk = d.join("hostkey").display(),
                pid = d.join("sshd.pid").display(),
                ak = d.join("authorized_keys").display(),
            ),
        )?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("sshd.log"))?;
        let child = spawn_guarded(
            Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::from(log)),
        )?;
        *self.child.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect((self.ip, self.port)).is_err() {
            if start.elapsed() > Duration::from_secs(10) {
                bail!(
                    "sshd did not start: {}",
                    std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    fn kill(&self) {
        if let Ok(mut g) = self.child.lock() {
            if let Some(c) = g.take() {
                stop(c);
            }
        }
    }

    /// Restarts on the same port with a brand-new host key (a "changed host key" attack).
    pub fn restart_with_new_host_key(&self) -> Result<()> {
        self.kill();
        self.new_host_key()?;
        self.spawn()
    }

    /// Port sshd listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The known_hosts line for this server, as `ssh-keyscan` prints it.
    pub fn known_hosts_line(&self) -> Result<String> {
        let pubkey = std::fs::read_to_string(self.dir.path().join("hostkey.pub"))?;
        let mut parts = pubkey.split_whitespace();
        let (t, k) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        Ok(format!("[{}]:{} {t} {k}\n", self.ip, self.port))
    }

    /// Creates an empty bare repository (default branch `main`) and returns its ssh:// URL.
    pub fn create_repo(&self, name: &str) -> Result<String> {
        let path = self.repo_path(name);
        let st = Command::new("git")
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(&path)
            .status()?;
        if !st.success() {
            bail!("git init failed");
        }
        Command::new("chown")
            .args(["-R", "git:git"])
            .arg(&path)
            .status()?;
        Ok(self.url(name))
    }

    /// ssh:// URL of repository `name`.
    pub fn url(&self, name: &str) -> String {
        format!(
            "ssh://git@{}:{}{}",
            self.ip,
            self.port,
            self.repo_path(name).display()
        )
    }

    /// Path of repository `name` on disk.
    pub fn repo_path(&self, name: &str) -> PathBuf {
        self.dir.path().join("repos").join(format!("{name}.git"))
    }

    /// Runs git (as root, safe.directory=*) against repository `name` and returns stdout.
    pub fn git(&self, name: &str, args: &[&str]) -> Result<String> {
        let out = Command::new("git")
            .args(["-c", "safe.directory=*", "-C"])
            .arg(self.repo_path(name))
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Commits `files` (path, content) on top of `branch` of repository `name` as `author`
    /// (a foreign writer, outside the operator) and returns the new commit sha.
    pub fn commit_files(
        &self,
        name: &str,
        branch: &str,
        files: &[(&str, &[u8])],
        message: &str,
    ) -> Result<String> {
        let repo = self.repo_path(name);
        let sha = commit_files_local(&repo, branch, files, message)?;
        // Racing pushes may remove their quarantine directories meanwhile: that is fine.
        Command::new("chown")
            .args(["-R", "git:git"])
            .arg(&repo)
            .stderr(Stdio::null())
            .status()?;
        Ok(sha)
    }

    /// Lets `public_key` (one OpenSSH line) in with `access`.
    pub fn authorize(&self, public_key: &str, access: Access) -> Result<()> {
        let line = match access {
            Access::ReadWrite => public_key.trim().to_string(),
            Access::ReadOnly => format!(
                "command=\"{READONLY_COMMAND}\",no-pty,no-port-forwarding,no-agent-forwarding,no-X11-forwarding {}",
                public_key.trim()
            ),
            Access::Stalls => format!(
                "command=\"{STALL_COMMAND}\",no-pty,no-port-forwarding,no-agent-forwarding,no-X11-forwarding {}",
                public_key.trim()
            ),
        };
        self.keys
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .push(line);
        self.write_authorized_keys()
    }

    /// Removes every authorized key.
    pub fn revoke_all(&self) -> Result<()> {
        self.keys
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .clear();
        self.write_authorized_keys()
    }

    fn write_authorized_keys(&self) -> Result<()> {
        let keys = self
            .keys
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .join("\n");
        let path = self.dir.path().join("authorized_keys");
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{keys}")?;
        drop(f);
        Command::new("chown").args(["git:git"]).arg(&tmp).status()?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    /// sshd's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Commits `files` (path, content) on top of `branch` of the bare repository at `repo` as a
/// foreign writer (a local clone and push) and returns the new commit sha.
pub(crate) fn commit_files_local(
    repo: &Path,
    branch: &str,
    files: &[(&str, &[u8])],
    message: &str,
) -> Result<String> {
    let work = tempfile::tempdir()?;
    let w = work.path();
    // Root writing into the git user's repository: trust it, as an admin would.
    let global = work.path().join("gitconfig");
    std::fs::write(&global, "[safe]\n\tdirectory = *\n")?;
    let w_repo = w.join("work");
    std::fs::create_dir_all(&w_repo)?;
    let w = w_repo.as_path();
    let git = |args: &[&str]| -> Result<String> {
        let out = Command::new("git")
            .args([
                "-c",
                "safe.directory=*",
                "-c",
                "user.name=Foreign Writer",
                "-c",
                "user.email=foreign@example.com",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .env("GIT_CONFIG_GLOBAL", &global)
            .current_dir(w)
            .output()?;
        if !out.status.success() {
            bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    git(&["init", "-q"])?;
    let repo_s = repo.to_string_lossy().to_string();
    git(&["remote", "add", "origin", &repo_s])?;
    let has_branch = !git(&["ls-remote", "origin", &format!("refs/heads/{branch}")])?.is_empty();
    if has_branch {
        git(&["fetch", "-q", "origin", branch])?;
        git(&["checkout", "-q", "-B", branch, "FETCH_HEAD"])?;
    } else {
        git(&["checkout", "-q", "-b", branch])?;
    }
    for (path, content) in files {
        let p = w.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, content)?;
        git(&["add", "--", path])?;
    }
    git(&["commit", "-q", "--allow-empty", "-m", message])?;
    git(&["push", "-q", "origin", &format!("HEAD:refs/heads/{branch}")])?;
    git(&["rev-parse", "HEAD"])
}
