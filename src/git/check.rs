//! The connection check, ToolJet's "Finalize setup": read access with `ls-remote`, write access
//! with a dry-run push of a throwaway commit. Nothing is ever written to the repository.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use super::classify::GitFailure;
use super::cli::{GitCli, GitSession, Transport};
use super::url::RepoUrl;

/// What a successful check saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessCheck {
    /// Head of the branch, `None` when the branch does not exist yet (e.g. empty repository).
    pub head: Option<String>,
}

/// Which access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Reading (ls-remote).
    Read,
    /// Writing (dry-run push).
    Write,
}

/// Result of [`check_access`], with any host keys learned on the way (also on failure: the
/// key exchange happens before authentication).
#[derive(Debug)]
pub struct CheckOutcome {
    /// Success, or the stage that failed and why.
    pub result: Result<AccessCheck, (Stage, GitFailure)>,
    /// Host keys recorded under trust-on-first-use.
    pub learned_known_hosts: Option<String>,
}

/// Verifies read and write access to `branch` of `url`.
pub async fn check_access(
    cli: &GitCli,
    url: &RepoUrl,
    branch: &str,
    transport: &Transport,
) -> CheckOutcome {
    let session = match cli.session(transport) {
        Ok(s) => s,
        Err(f) => {
            return CheckOutcome {
                result: Err((Stage::Read, f)),
                learned_known_hosts: None,
            }
        }
    };
    let result = run_check(cli, &session, url, branch).await;
    CheckOutcome {
        result,
        learned_known_hosts: session.learned_known_hosts(),
    }
}

async fn run_check(
    cli: &GitCli,
    session: &GitSession,
    url: &RepoUrl,
    branch: &str,
) -> Result<AccessCheck, (Stage, GitFailure)> {
    let head = ls_remote_branch(session, url, branch)
        .await
        .map_err(|f| (Stage::Read, f))?;
    let probe = probe_repo(cli, session)
        .await
        .map_err(|f| (Stage::Write, f))?;
    // A new ref is never a fast-forward question, so the dry run only proves that the server
    // lets this key open receive-pack.
    let target = if head.is_none() {
        format!("refs/heads/{branch}")
    } else {
        "refs/heads/tooljet-gitsync-write-check".to_string()
    };
    let refspec = format!("{}:{target}", probe.1);
    match session
        .run(
            [
                "push",
                "--dry-run",
                "--porcelain",
                "--no-verify",
                url.as_git_url(),
                &refspec,
            ],
            Some(&probe.0),
            None,
            &[],
        )
        .await
    {
        Ok(_) => Ok(AccessCheck { head }),
        // Rejected locally after the server advertised its refs: write access was granted.
        Err(f) if f.kind == super::GitFailureKind::NonFastForward => Ok(AccessCheck { head }),
        Err(f) => Err((Stage::Write, f)),
    }
}

/// The sha of `refs/heads/<branch>` on the remote, `None` when absent.
pub async fn ls_remote_branch(
    session: &GitSession,
    url: &RepoUrl,
    branch: &str,
) -> Result<Option<String>, GitFailure> {
    let refname = format!("refs/heads/{branch}");
    let out = session
        .run(["ls-remote", url.as_git_url(), &refname], None, None, &[])
        .await?;
    Ok(out.stdout.lines().find_map(|l| {
        let (sha, name) = l.split_once('\t')?;
        (name == refname).then(|| sha.to_string())
    }))
}

/// A local bare repository holding one throwaway root commit, made once per scratch dir.
async fn probe_repo(cli: &GitCli, session: &GitSession) -> Result<(PathBuf, String), GitFailure> {
    let dir = cli.scratch_dir().join("write-check.git");
    if !dir.join("HEAD").exists() {
        // Unique per call: workers of different repositories may check at the same moment.
        static MADE: AtomicU64 = AtomicU64::new(0);
        let tmp = cli.scratch_dir().join(format!(
            "write-check.{}.{}.tmp",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        ));
        let tmp_s = tmp.to_string_lossy().to_string();
        session
            .run(["init", "-q", "--bare", &tmp_s], None, None, &[])
            .await?;
        // Another check may have put its own in place first: then this one is not needed.
        if std::fs::rename(&tmp, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
    }
    let env = [
        ("GIT_AUTHOR_NAME", "tooljet-gitsync"),
        ("GIT_AUTHOR_EMAIL", "write-check@tooljet-gitsync.local"),
        ("GIT_AUTHOR_DATE", "1700000000 +0000"),
        ("GIT_COMMITTER_NAME", "tooljet-gitsync"),
        ("GIT_COMMITTER_EMAIL", "write-check@tooljet-gitsync.local"),
        ("GIT_COMMITTER_DATE", "1700000000 +0000"),
    ];
    let tree = session
        .run(
            ["hash-object", "-t", "tree", "-w", "--stdin"],
            Some(&dir),
            Some(b""),
            &env,
        )
        .await?
        .stdout
        .trim()
        .to_string();
    let commit = session
        .run(
            [
                "commit-tree",
                &tree,
                "-m",
                "tooljet-gitsync write check (never pushed)",
            ],
            Some(&dir),
            None,
            &env,
        )
        .await?
        .stdout
        .trim()
        .to_string();
    Ok((dir, commit))
}
