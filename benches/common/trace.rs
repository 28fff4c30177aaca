//! The forced-command SSH session tracer and push counting, from the git server's side.
//!
//! Each deploy key is authorized with a forced command that logs every SSH session
//! (`git-upload-pack` / `git-receive-pack`, which repository) and runs it with
//! `GIT_TRACE_PACKET`, so a session is classified from the server side: a ref check (no `want`),
//! a fetch (`want` lines), a dry-run push (receive-pack without update commands) or a push.
//! Pushes are also counted from each bare repository's reflog.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;
use tooljet_gitsync_testkit::gitserver::GitServer;

/// Where git-shell looks up custom commands (set up by the testkit's GitServer).
const SHELL_COMMANDS: &str = "/home/git/git-shell-commands";

/// The forced command every deploy key runs: logs the session and traces its packets.
pub struct Tracer {
    dir: tempfile::TempDir,
    script: PathBuf,
    name: String,
}

impl Tracer {
    pub fn install() -> Result<Tracer> {
        let dir = tempfile::Builder::new().prefix("bench-trace-").tempdir()?;
        Command::new("chmod").arg("1777").arg(dir.path()).status()?;
        let name = format!("tjgs-bench-{}", std::process::id());
        let script = Path::new(SHELL_COMMANDS).join(&name);
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nid=\"$(date +%s%N)-$$\"\nd='{}'\necho \"$id $SSH_ORIGINAL_COMMAND\" >> \"$d/sessions.log\"\nGIT_TRACE_PACKET=\"$d/$id.trace\" exec git-shell -c \"$SSH_ORIGINAL_COMMAND\"\n",
                dir.path().display()
            ),
        )?;
        Command::new("chmod").arg("755").arg(&script).status()?;
        Command::new("chown")
            .args(["git:git"])
            .arg(&script)
            .status()?;
        Ok(Tracer { dir, script, name })
    }

    /// The authorized_keys line for `public_key`: forced through the tracing command.
    pub fn key_line(&self, public_key: &str) -> String {
        format!(
            "command=\"{}\",no-pty,no-port-forwarding,no-agent-forwarding,no-X11-forwarding {}",
            self.name,
            public_key.trim()
        )
    }

    /// Every session so far, in start order.
    pub fn sessions(&self) -> Vec<Session> {
        let log = std::fs::read_to_string(self.dir.path().join("sessions.log")).unwrap_or_default();
        let mut out: Vec<Session> = log
            .lines()
            .filter_map(|l| {
                let (id, cmd) = l.split_once(' ')?;
                let ns: u128 = id.split_once('-')?.0.parse().ok()?;
                let (service, path) = cmd.split_once(' ')?;
                let repo = path
                    .trim_matches(|c| c == '\'' || c == '"')
                    .rsplit('/')
                    .next()?
                    .trim_end_matches(".git")
                    .to_string();
                let trace = std::fs::read_to_string(self.dir.path().join(format!("{id}.trace")))
                    .unwrap_or_default();
                let kind = classify(service, &trace);
                Some(Session {
                    at_ns: ns,
                    repo,
                    kind,
                })
            })
            .collect();
        out.sort_by_key(|s| s.at_ns);
        out
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.script);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// upload-pack without `want`: ls-remote (or a fetch that found nothing to fetch).
    RefCheck,
    /// upload-pack with `want` lines: a fetch that transferred objects.
    Fetch,
    /// receive-pack without update commands: `push --dry-run` (GitSyncConfig verification).
    DryRunPush,
    /// receive-pack with update commands.
    Push,
    Other,
}

pub fn classify(service: &str, trace: &str) -> Kind {
    let sent = |side: &str| -> Vec<String> {
        let marker = format!("{side}< ");
        trace
            .lines()
            .filter_map(|l| l.split_once(&marker).map(|x| x.1.to_string()))
            .collect()
    };
    match service {
        "git-upload-pack" => {
            if sent("upload-pack")
                .iter()
                .any(|p| p.starts_with("want ") || p.starts_with("command=fetch"))
            {
                Kind::Fetch
            } else {
                Kind::RefCheck
            }
        }
        "git-receive-pack" => {
            let update = |p: &String| {
                p.len() > 82
                    && p.as_bytes()[40] == b' '
                    && p[..40].bytes().all(|b| b.is_ascii_hexdigit())
            };
            if sent("receive-pack").iter().any(update) {
                Kind::Push
            } else {
                Kind::DryRunPush
            }
        }
        _ => Kind::Other,
    }
}

/// One SSH session seen by the server.
pub struct Session {
    /// When it started (ns since the epoch, from the forced command).
    pub at_ns: u128,
    /// The repository's name (without `.git`).
    pub repo: String,
    /// What it did.
    pub kind: Kind,
}

pub fn unix_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Per repository, in `[from, to)`: (ref checks by AppSyncs, ref checks by the GitSyncConfig
/// verification, fetches, dry-run pushes, pushes). A GitSyncConfig verification is one
/// ls-remote followed by one dry-run push (src/git/check.rs): each dry-run push claims the
/// latest unclaimed ref check of its repository in the 10 s before it.
pub fn per_repo(sessions: &[Session], from: u128, to: u128) -> BTreeMap<String, [u64; 5]> {
    let mut out: BTreeMap<String, [u64; 5]> = BTreeMap::new();
    let mut by_repo: BTreeMap<&str, Vec<&Session>> = BTreeMap::new();
    for s in sessions.iter().filter(|s| s.at_ns >= from && s.at_ns < to) {
        by_repo.entry(s.repo.as_str()).or_default().push(s);
    }
    for (repo, list) in by_repo {
        let mut claimed = vec![false; list.len()];
        for (i, s) in list.iter().enumerate() {
            if s.kind != Kind::DryRunPush {
                continue;
            }
            if let Some(j) = (0..i).rev().find(|&j| {
                !claimed[j]
                    && list[j].kind == Kind::RefCheck
                    && s.at_ns - list[j].at_ns < 10_000_000_000
            }) {
                claimed[j] = true;
            }
        }
        let e = out.entry(repo.to_string()).or_default();
        for (i, s) in list.iter().enumerate() {
            match s.kind {
                Kind::RefCheck if claimed[i] => e[1] += 1,
                Kind::RefCheck => e[0] += 1,
                Kind::Fetch => e[2] += 1,
                Kind::DryRunPush => e[3] += 1,
                Kind::Push => e[4] += 1,
                Kind::Other => {}
            }
        }
    }
    out
}

/// Entries in the server-side reflog of `main` (one per accepted push).
pub fn reflog_len(git: &GitServer, repo: &str) -> usize {
    std::fs::read_to_string(git.repo_path(repo).join("logs/refs/heads/main"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

pub fn accepted(git: &GitServer) -> usize {
    git.log().matches("Accepted publickey").count()
}

/// Creates bare repository `name` for traced sessions: every update of a branch is logged (so
/// pushes are counted from the reflog), and it is owned by `git`, as the sessions run.
pub fn traced_repo(git: &GitServer, name: &str) -> Result<String> {
    let url = git.create_repo(name)?;
    git.git(name, &["config", "core.logAllRefUpdates", "always"])?;
    Command::new("chown")
        .args(["-R", "git:git"])
        .arg(git.repo_path(name))
        .status()?;
    Ok(url)
}
