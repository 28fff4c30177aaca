//! The `git` subprocess edge: a controlled environment (no user or system config, no prompts,
//! no agent) and a per-call `GIT_SSH_COMMAND` carrying the deploy key and host-key policy, or,
//! for HTTPS repositories, per-call `GIT_CONFIG_*` settings: a credential helper that prints
//! the username and token from the git process's environment (never a command line, a URL or
//! a config file), the CA to trust, and no redirects.
//!
//! Every remote operation ends within a deadline (a server that accepts the connection and
//! then never answers must not wedge a repository's worker): a git command is killed with its
//! whole process group (git and the ssh it started) after [`GitCli::timeout`], and the ssh
//! that gix starts for a fetch is wrapped so that it dies after [`GitCli::fetch_timeout`].

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
    /// OpenSSH private key; `None` for file:// and HTTPS repositories.
    pub private_key: Option<Zeroizing<String>>,
    /// Host-key verification.
    pub host_keys: HostKeyPolicy,
    /// Basic-auth credentials for an HTTPS repository.
    pub https: Option<HttpsAuth>,
}

impl Transport {
    /// An SSH (or file://) transport.
    pub fn ssh(private_key: Option<Zeroizing<String>>, host_keys: HostKeyPolicy) -> Transport {
        Transport {
            private_key,
            host_keys,
            https: None,
        }
    }

    /// An HTTPS transport.
    pub fn https(auth: HttpsAuth) -> Transport {
        Transport {
            private_key: None,
            host_keys: HostKeyPolicy::TrustOnFirstUse,
            https: Some(auth),
        }
    }
}

/// What git sends to an HTTPS repository.
#[derive(Clone)]
pub struct HttpsAuth {
    /// Basic-auth username (`x-access-token` for GitHub App tokens).
    pub username: String,
    /// Token or password.
    pub password: Zeroizing<String>,
    /// PEM certificates to trust instead of the system's (self-hosted CAs).
    pub ca_pem: Option<String>,
    /// Names the credential, stable across token refreshes and free of secrets (it keys the
    /// worker's fetch records): e.g. `token:<ns>/<secret>:<digest>`.
    pub identity: String,
    /// `https://host[:port]` of the repository: the only place git offers the credential (a
    /// proxy or a redirect target never gets it).
    pub origin: String,
}

impl std::fmt::Debug for HttpsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("identity", &self.identity)
            .finish()
    }
}

/// Environment variables the credential helper reads (set on git's process only).
const USERNAME_ENV: &str = "TOOLJET_GITSYNC_GIT_USERNAME";
const PASSWORD_ENV: &str = "TOOLJET_GITSYNC_GIT_PASSWORD";
/// Prints the credential for git's `get`; `printf` is a shell builtin, so the token is never
/// an argument of any process. Other actions (store, erase) are ignored.
const CREDENTIAL_HELPER: &str = "!f() { test \"$1\" = get || exit 0; printf 'username=%s\\npassword=%s\\n' \"$TOOLJET_GITSYNC_GIT_USERNAME\" \"$TOOLJET_GITSYNC_GIT_PASSWORD\"; }; f";
/// Proxy settings passed through to HTTPS git (the rest of the environment is cleared).
const PROXY_ENV: [&str; 6] = [
    "HTTPS_PROXY",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Name prefix of a session's private directory in the scratch directory.
const SESSION_PREFIX: &str = "ssh-";

/// A fetch moves whole histories (a first fetch of a large repository), so it may take this
/// many command timeouts.
pub const FETCH_TIMEOUT_FACTOR: u32 = 5;

/// ssh gives up connecting (TCP, banner, key exchange) after at most this long.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// ssh gives up connecting this long after a git command would be killed, so a command's own
/// deadline (whose message names it) is what a user sees.
const CONNECT_TIMEOUT_SLACK: Duration = Duration::from_secs(1);

/// Runs git. Cheap to clone; holds only paths and limits.
#[derive(Clone, Debug)]
pub struct GitCli {
    git: PathBuf,
    scratch: PathBuf,
    timeout: Duration,
    fetch_timeout: Duration,
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
    /// `scratch` holds short-lived private directories for key files (mode 0700); `timeout`
    /// bounds every git command, and [`FETCH_TIMEOUT_FACTOR`] times it every fetch.
    pub fn new(scratch: impl Into<PathBuf>, timeout: Duration) -> Self {
        GitCli {
            git: PathBuf::from("git"),
            scratch: scratch.into(),
            timeout,
            fetch_timeout: timeout.saturating_mul(FETCH_TIMEOUT_FACTOR),
        }
    }

    /// Overrides the deadline of a fetch (tests of stuck servers want it short).
    pub fn with_fetch_timeout(mut self, fetch_timeout: Duration) -> Self {
        self.fetch_timeout = fetch_timeout;
        self
    }

    /// Deadline of one git command (ls-remote, push, each step of the connection check).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Deadline of one fetch into a mirror.
    pub fn fetch_timeout(&self) -> Duration {
        self.fetch_timeout
    }

    /// Directory for the operator's working files.
    pub fn scratch_dir(&self) -> &Path {
        &self.scratch
    }

    /// Removes what sessions of an earlier process left in the scratch directory (a killed
    /// process never drops its sessions): key and known_hosts files must not outlive their
    /// call. Run once at start, before any session. Returns how many entries went.
    pub fn remove_stale_sessions(&self) -> std::io::Result<usize> {
        let entries = match std::fs::read_dir(&self.scratch) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let stale = name.starts_with(SESSION_PREFIX)
                || (name.starts_with("write-check.") && name.ends_with(".tmp"));
            if stale {
                std::fs::remove_dir_all(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Writes the key and known_hosts into a private directory, removed when the returned
    /// session is dropped.
    pub fn session(&self, transport: &Transport) -> Result<GitSession, GitFailure> {
        std::fs::create_dir_all(&self.scratch).map_err(io_failure)?;
        let dir = tempfile::Builder::new()
            .prefix(SESSION_PREFIX)
            .tempdir_in(&self.scratch)
            .map_err(io_failure)?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(io_failure)?;
        let key_path = dir.path().join("identity");
        let kh_path = dir.path().join("known_hosts");
        if let Some(key) = &transport.private_key {
            write_private(&key_path, key.as_bytes())?;
        }
        let https = match &transport.https {
            Some(auth) => Some(self.https_config(auth, dir.path())?),
            None => None,
        };
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
            format!("ConnectTimeout={}", connect_timeout(self.timeout)),
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
            https,
            ssh_command: ssh.join(" "),
            known_hosts_path: kh_path,
            tofu: transport.host_keys == HostKeyPolicy::TrustOnFirstUse,
            home: dir.path().to_path_buf(),
            _dir: dir,
        })
    }
}

impl GitCli {
    /// The `GIT_CONFIG_*` settings and credential variables of an HTTPS session.
    fn https_config(&self, auth: &HttpsAuth, dir: &Path) -> Result<HttpsSession, GitFailure> {
        let mut config: Vec<(String, String)> = vec![
            // An empty value resets the list: no helper but ours answers, and ours only for
            // the repository's origin.
            ("credential.helper".into(), String::new()),
            (
                format!("credential.{}.helper", auth.origin),
                CREDENTIAL_HELPER.into(),
            ),
            // A redirect would take the token to wherever it points.
            ("http.followRedirects".into(), "false".into()),
            ("http.lowSpeedLimit".into(), "1".into()),
            (
                "http.lowSpeedTime".into(),
                whole_seconds(self.timeout.min(MAX_CONNECT_TIMEOUT.saturating_mul(4))).to_string(),
            ),
            ("protocol.version".into(), "2".into()),
        ];
        if let Some(pem) = &auth.ca_pem {
            let ca = dir.join("ca.pem");
            write_private(&ca, pem.as_bytes())?;
            config.push(("http.sslCAInfo".into(), ca.to_string_lossy().into_owned()));
        }
        Ok(HttpsSession {
            config,
            username: auth.username.clone(),
            password: auth.password.clone(),
        })
    }
}

/// What an HTTPS session adds to every git command's environment.
struct HttpsSession {
    config: Vec<(String, String)>,
    username: String,
    password: Zeroizing<String>,
}

/// A prepared transport: run any number of git commands with it.
pub struct GitSession {
    cli: GitCli,
    https: Option<HttpsSession>,
    ssh_command: String,
    known_hosts_path: PathBuf,
    tofu: bool,
    home: PathBuf,
    _dir: tempfile::TempDir,
}

impl GitSession {
    /// Whether this session speaks HTTPS.
    pub fn is_https(&self) -> bool {
        self.https.is_some()
    }

    /// The ssh command line; holds paths, never key material.
    pub fn ssh_command(&self) -> &str {
        &self.ssh_command
    }

    /// The ssh command line for callers that cannot kill the ssh they start (gix's
    /// `core.sshCommand`): coreutils' `timeout` kills ssh (its process group) after `deadline`,
    /// so a server that stops answering mid-fetch cannot hold the caller forever.
    pub fn ssh_command_within(&self, deadline: Duration) -> String {
        format!(
            "timeout --signal=KILL {}s {}",
            whole_seconds(deadline),
            self.ssh_command
        )
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

    /// Runs `git <args>` in `cwd`, with `stdin` fed when given. Killed with everything it
    /// started (its ssh) when it runs longer than the command timeout, or when the returned
    /// future is dropped.
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
        self.run_within(self.cli.timeout, args, cwd, stdin, env)
            .await
    }

    /// [`GitSession::run`] with another deadline (a fetch moves whole histories).
    pub async fn run_within<I, S>(
        &self,
        timeout: Duration,
        args: I,
        cwd: Option<&Path>,
        stdin: Option<&[u8]>,
        env: &[(&str, &str)],
    ) -> Result<GitOutput, GitFailure>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<std::ffi::OsString> =
            args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let mut cmd = self.command(&args, cwd, stdin.is_some(), env);
        let mut child = cmd.spawn().map_err(|e| GitFailure {
            kind: GitFailureKind::Other,
            detail: format!(
                "cannot start git: {e}; the operator needs git and openssh-client installed"
            ),
        })?;
        // Declared after the child, so dropped (the group killed) before the child is reaped.
        let mut group = KillGroupOnDrop(child.id());
        let io = collect(&mut child, stdin);
        let Ok(collected) = tokio::time::timeout(timeout, io).await else {
            drop(group);
            let _ = child.wait().await;
            return Err(GitFailure {
                kind: GitFailureKind::Unreachable,
                detail: format!(
                    "git {} got no answer within {}s (the operator's git timeout), so it and its connection were killed",
                    args.first().map(|a| a.to_string_lossy()).unwrap_or_default(),
                    whole_seconds(timeout)
                ),
            });
        };
        group.0 = None;
        let (status, stdout, stderr) = collected.map_err(io_failure)?;
        let stdout = String::from_utf8_lossy(&stdout).into_owned();
        let stderr = String::from_utf8_lossy(&stderr).into_owned();
        if status.success() {
            Ok(GitOutput { stdout, stderr })
        } else {
            Err(classify(&stderr))
        }
    }

    /// The git command in its controlled environment, in a process group of its own.
    fn command(
        &self,
        args: &[std::ffi::OsString],
        cwd: Option<&Path>,
        with_stdin: bool,
        env: &[(&str, &str)],
    ) -> Command {
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
            .stdin(if with_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so that a kill reaches the ssh git started too.
            .process_group(0)
            .kill_on_drop(true);
        if let Some(https) = &self.https {
            cmd.env("GIT_CONFIG_COUNT", https.config.len().to_string());
            for (i, (k, v)) in https.config.iter().enumerate() {
                cmd.env(format!("GIT_CONFIG_KEY_{i}"), k)
                    .env(format!("GIT_CONFIG_VALUE_{i}"), v);
            }
            cmd.env(USERNAME_ENV, &https.username)
                .env(PASSWORD_ENV, https.password.as_str());
            for name in PROXY_ENV {
                if let Some(v) = std::env::var_os(name) {
                    cmd.env(name, v);
                }
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        cmd
    }
}

/// Feeds `stdin` and reads stdout and stderr to the end while waiting for the child, all at
/// once (a child blocked writing output must not stop it reading its input).
async fn collect(
    child: &mut tokio::process::Child,
    stdin: Option<&[u8]>,
) -> std::io::Result<(std::process::ExitStatus, Vec<u8>, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let input = child.stdin.take();
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let feed = async {
        if let (Some(bytes), Some(mut pipe)) = (stdin, input) {
            pipe.write_all(bytes).await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let mut out = Vec::new();
    let mut err = Vec::new();
    let read_out = async {
        match out_pipe.as_mut() {
            Some(p) => p.read_to_end(&mut out).await.map(|_| ()),
            None => Ok(()),
        }
    };
    let read_err = async {
        match err_pipe.as_mut() {
            Some(p) => p.read_to_end(&mut err).await.map(|_| ()),
            None => Ok(()),
        }
    };
    let (fed, read_out, read_err, status) = tokio::join!(feed, read_out, read_err, child.wait());
    fed?;
    read_out?;
    read_err?;
    Ok((status?, out, err))
}

/// Kills a child's process group (the child and whatever it started) when dropped, unless
/// emptied (`.0 = None`) once the child finished on its own.
struct KillGroupOnDrop(Option<u32>);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        let Some(pgid) = self.0.and_then(|id| libc::pid_t::try_from(id).ok()) else {
            return;
        };
        // SAFETY: killpg has no memory effects; the group is the child's own (process_group(0))
        // and the child is not reaped yet, so the id cannot name another group.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
}

/// ssh's `ConnectTimeout` (TCP, banner and key exchange): just over the command timeout, at
/// most [`MAX_CONNECT_TIMEOUT`].
fn connect_timeout(timeout: Duration) -> u64 {
    whole_seconds(
        timeout
            .saturating_add(CONNECT_TIMEOUT_SLACK)
            .min(MAX_CONNECT_TIMEOUT),
    )
}

/// `d` in whole seconds, rounded up, at least 1.
fn whole_seconds(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_derive_from_the_command_timeout() {
        let cli = GitCli::new("/nonexistent", Duration::from_secs(120));
        assert_eq!(cli.fetch_timeout(), Duration::from_secs(600));
        assert_eq!(connect_timeout(cli.timeout()), 15);
        assert_eq!(connect_timeout(Duration::from_secs(3)), 4);
        assert_eq!(whole_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        let short = cli.with_fetch_timeout(Duration::from_secs(7));
        assert_eq!(short.fetch_timeout(), Duration::from_secs(7));
    }

    #[test]
    fn stale_sessions_are_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = dir.path().join("tmp");
        let cli = GitCli::new(&scratch, Duration::from_secs(3));
        assert_eq!(
            cli.remove_stale_sessions().unwrap(),
            0,
            "no scratch dir yet"
        );
        // What a killed process leaves: a session with its key, a half-made probe repository.
        let session = cli
            .session(&Transport::ssh(
                Some(Zeroizing::new("-----BEGIN OPENSSH PRIVATE KEY-----".into())),
                HostKeyPolicy::TrustOnFirstUse,
            ))
            .unwrap();
        let left = session.home.clone();
        std::mem::forget(session);
        assert!(left.join("identity").exists());
        std::fs::create_dir_all(scratch.join("write-check.42.tmp")).unwrap();
        std::fs::create_dir_all(scratch.join("write-check.git")).unwrap();
        assert_eq!(cli.remove_stale_sessions().unwrap(), 2);
        assert!(!left.exists(), "the stale key is gone");
        assert!(!scratch.join("write-check.42.tmp").exists());
        assert!(
            scratch.join("write-check.git").exists(),
            "the probe repository stays"
        );
    }

    #[test]
    fn the_fetch_ssh_command_dies_at_its_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let cli = GitCli::new(dir.path(), Duration::from_secs(3));
        let session = cli
            .session(&Transport::ssh(None, HostKeyPolicy::TrustOnFirstUse))
            .unwrap();
        let wrapped = session.ssh_command_within(Duration::from_secs(6));
        assert!(
            wrapped.starts_with("timeout --signal=KILL 6s ssh "),
            "{wrapped}"
        );
        assert!(session.ssh_command().contains("ConnectTimeout=4"));
    }
}
