//! The `git` subprocess edge: a controlled environment (no user or system config, no prompts,
//! no agent) and a per-call `GIT_SSH_COMMAND` carrying the deploy key and host-key policy.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use zeroize::Zeroizing;

use super::classify::{classify, GitFailure, GitFailureKind};

/// How the SSH server's host key is verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Only these known_hosts lines are accepted (StrictHostKeyChecking=yes).
    Pinned(String),
    /// Nothing recorded yet: accept and record the first key (StrictHostKeyChecking=accept-new).
    TrustOnFirstUse,
}

/// Credentials and host-key policy for one repository.
#[derive(Clone)]
pub struct Transport {
    /// OpenSSH private key; `None` for file:// repositories.
    pub private_key: Option<Zeroizing<String>>,
    /// Host-key verification.
    pub host_keys: HostKeyPolicy,
}

/// Runs git. Cheap to clone; holds only paths and limits.
#[derive(Clone, Debug)]
pub struct GitCli {
    git: PathBuf,
    scratch: PathBuf,
    timeout: Duration,
}

/// Output of a successful git call.
#[derive(Debug)]
pub struct GitOutput {
    /// Standard output.
    pub stdout: String,
    /// Standard error (progress, warnings).
    pub stderr: String,
}

impl GitCli {
    /// `scratch` holds short-lived private directories for key files (mode 0700).
    pub fn new(scratch: impl Into<PathBuf>, timeout: Duration) -> Self {
        GitCli {
            git: PathBuf::from("git"),
            scratch: scratch.into(),
            timeout,
        }
    }

    /// Directory for the operator's working files.
    pub fn scratch_dir(&self) -> &Path {
        &self.scratch
    }

    /// Writes the key and known_hosts into a private directory, removed when the returned
    /// session is dropped.
    pub fn session(&self, transport: &Transport) -> Result<GitSession, GitFailure> {
        std::fs::create_dir_all(&self.scratch).map_err(io_failure)?;
        let dir = tempfile::Builder::new()
            .prefix("ssh-")
            .tempdir_in(&self.scratch)
            .map_err(io_failure)?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(io_failure)?;
        let key_path = dir.path().join("identity");
        let kh_path = dir.path().join("known_hosts");
        if let Some(key) = &transport.private_key {
            write_private(&key_path, key.as_bytes())?;
        }
        let (strict, kh) = match &transport.host_keys {
            HostKeyPolicy::Pinned(lines) => ("yes", lines.as_str()),
            HostKeyPolicy::TrustOnFirstUse => ("accept-new", ""),
        };
        write_private(&kh_path, kh.as_bytes())?;
        let mut ssh = vec![
            "ssh".to_string(),
            "-F".into(),
            "/dev/null".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "IdentityAgent=none".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", shell_quote(&kh_path)),
            "-o".into(),
            "GlobalKnownHostsFile=/dev/null".into(),
            "-o".into(),
            format!("StrictHostKeyChecking={strict}"),
            "-o".into(),
            "HashKnownHosts=no".into(),
            "-o".into(),
            "UpdateHostKeys=no".into(),
            "-o".into(),
            "ConnectTimeout=15".into(),
            "-o".into(),
            "ServerAliveInterval=15".into(),
            "-o".into(),
            "ServerAliveCountMax=4".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
        ];
        if transport.private_key.is_some() {
            ssh.push("-i".into());
            ssh.push(shell_quote(&key_path));
        }
        Ok(GitSession {
            cli: self.clone(),
            ssh_command: ssh.join(" "),
            known_hosts_path: kh_path,
            tofu: transport.host_keys == HostKeyPolicy::TrustOnFirstUse,
            home: dir.path().to_path_buf(),
            _dir: dir,
        })
    }
}

/// A prepared transport: run any number of git commands with it.
pub struct GitSession {
    cli: GitCli,
    ssh_command: String,
    known_hosts_path: PathBuf,
    tofu: bool,
    home: PathBuf,
    _dir: tempfile::TempDir,
}

impl GitSession {
    /// The ssh command line (for gix's `core.sshCommand`); holds paths, never key material.
    pub fn ssh_command(&self) -> &str {
        &self.ssh_command
    }

    /// Host keys recorded during this session under trust-on-first-use.
    pub fn learned_known_hosts(&self) -> Option<String> {
        if !self.tofu {
            return None;
        }
        std::fs::read_to_string(&self.known_hosts_path)
            .ok()
            .filter(|s| !s.trim().is_empty())
    }

    /// Runs `git <args>` in `cwd`, with `stdin` fed when given.
    pub async fn run<I, S>(
        &self,
        args: I,
        cwd: Option<&Path>,
        stdin: Option<&[u8]>,
        env: &[(&str, &str)],
    ) -> Result<GitOutput, GitFailure>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(&self.cli.git);
        cmd.args(args)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
            )
            .env("HOME", &self.home)
            .env("LANG", "C")
            .env("LC_ALL", "C")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_SSH_VARIANT", "ssh")
            .env("GIT_SSH_COMMAND", &self.ssh_command)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(|e| GitFailure {
            kind: GitFailureKind::Other,
            detail: format!(
                "cannot start git: {e}; the operator needs git and openssh-client installed"
            ),
        })?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input).await.map_err(io_failure)?;
            drop(pipe);
        }
        let out = match tokio::time::timeout(self.cli.timeout, child.wait_with_output()).await {
            Ok(r) => r.map_err(io_failure)?,
            Err(_) => {
                return Err(GitFailure {
                    kind: GitFailureKind::Unreachable,
                    detail: format!("git timed out after {}s", self.cli.timeout.as_secs()),
                })
            }
        };
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            Ok(GitOutput { stdout, stderr })
        } else {
            Err(classify(&stderr))
        }
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), GitFailure> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_failure)?;
    f.write_all(bytes).map_err(io_failure)?;
    if !bytes.ends_with(b"\n") && !bytes.is_empty() {
        f.write_all(b"\n").map_err(io_failure)?;
    }
    Ok(())
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

fn io_failure(e: std::io::Error) -> GitFailure {
    GitFailure {
        kind: GitFailureKind::Other,
        detail: format!("local I/O error: {e}"),
    }
}
