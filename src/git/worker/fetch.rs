//! The worker's view of the remote: opening (and rebuilding) the mirror, fetching into it at
//! most once per `max_age` per transport, resolving revisions against what was fetched, and
//! the cache of remote branch heads. Reads and pushes build on this; it depends on neither.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gix::ObjectId;

use super::error::internal;
use super::{blocking, bump, transport_key, TransportKey, Worker, WorkerError};
use crate::git::classify::{GitFailure, GitFailureKind};
use crate::git::cli::{GitSession, Transport};
use crate::git::mirror::{self, MirrorError, RemoteRefs};

/// A revision missing after a fetch younger than this is not fetched for again.
const MIN_REFETCH: Duration = Duration::from_secs(2);
/// Fetch records and heads older than this serve nobody: the longest `max_age` a caller uses
/// is one and a half of the longest `spec.interval` (24h).
const RECORD_TTL: Duration = Duration::from_secs(48 * 3600);
/// How long past its deadline a fetch's thread may take to notice its ssh was killed.
const FETCH_GRACE: Duration = Duration::from_secs(5);

/// Why one gix fetch failed.
enum FetchFailure {
    /// It ran into [`GitCli::fetch_timeout`](crate::git::GitCli::fetch_timeout); its ssh
    /// was killed.
    TimedOut(Duration),
    /// gix failed (locally, or on what the remote sent).
    Mirror(MirrorError),
    /// `git fetch` (HTTPS) failed; classified from its stderr.
    Git(GitFailure),
}

impl FetchFailure {
    fn into_worker_error(self) -> WorkerError {
        match self {
            FetchFailure::TimedOut(after) => timed_out("fetch", after),
            FetchFailure::Mirror(e) => internal(e),
            FetchFailure::Git(f) => WorkerError::Git(f),
        }
    }
}

/// A fetch that failed although the remote answers and the mirror is sound.
fn fetch_failed(e: &MirrorError) -> WorkerError {
    WorkerError::Git(GitFailure {
        kind: GitFailureKind::Other,
        detail: format!("the fetch failed although the repository answers (ls-remote works); the local mirror is sound and was kept: {e}"),
    })
}

/// A remote operation that got no answer in time, as callers see it.
pub(super) fn timed_out(operation: &str, after: Duration) -> WorkerError {
    WorkerError::Git(GitFailure {
        kind: GitFailureKind::Unreachable,
        detail: format!(
            "the {operation} got no answer from the repository within {}s (the operator's timeout), so its connection was killed",
            after.as_secs_f64().ceil()
        ),
    })
}

/// The refs one transport saw in its last fetch, and when.
pub(super) struct FetchRecord {
    pub(super) at: Instant,
    pub(super) refs: RemoteRefs,
    /// Another transport saw one of these refs elsewhere since: the next read fetches.
    pub(super) stale: bool,
}

/// Remote branch heads learned without a fetch (ls-remote, connection check, push), per
/// transport and branch; `None` records a branch that does not exist.
#[derive(Default)]
pub(super) struct HeadCache {
    heads: HashMap<(TransportKey, String), (Instant, Option<String>)>,
}

impl HeadCache {
    /// The head recorded for `branch` within `max_age`, if any (`Some(None)`: known missing).
    pub(super) fn fresh(
        &self,
        key: TransportKey,
        branch: &str,
        max_age: Duration,
    ) -> Option<Option<String>> {
        let (at, head) = self.heads.get(&(key, branch.to_owned()))?;
        (at.elapsed() <= max_age).then(|| head.clone())
    }

    /// Drops the heads of `branch` other than `head`: another transport saw it move.
    pub(super) fn forget_other(&mut self, branch: &str, head: Option<&str>) {
        self.heads
            .retain(|(_, b), (_, h)| b != branch || h.as_deref() == head);
    }

    /// Drops heads recorded longer ago than `age`.
    fn prune(&mut self, age: Duration) {
        self.heads.retain(|_, (at, _)| at.elapsed() <= age);
    }

    /// Records `head` as the remote head of `branch`, as of now.
    pub(super) fn record(&mut self, key: TransportKey, branch: &str, head: Option<String>) {
        self.heads
            .insert((key, branch.to_owned()), (Instant::now(), head));
    }
}

impl Worker {
    /// Drops fetch records and heads older than [`RECORD_TTL`]: nobody asks for them any more
    /// (a deleted config's transport), since every caller's `max_age` is shorter.
    pub(super) fn prune_records(&mut self) {
        self.fetches.retain(|_, r| r.at.elapsed() <= RECORD_TTL);
        self.heads.prune(RECORD_TTL);
    }

    /// Opens (or rebuilds) the mirror; a rebuilt mirror has no refs, so every cached view of
    /// the remote is dropped with it.
    pub(super) async fn ensure_mirror(&mut self) -> Result<(), WorkerError> {
        let mirror = self.mirror.clone();
        let rebuilt = blocking(move || mirror.open().map(|(_, r)| r).map_err(internal)).await?;
        if rebuilt {
            self.fetches.clear();
        }
        Ok(())
    }

    /// Deletes and recreates the mirror, forgetting every fetch made into it.
    pub(super) async fn rebuild_mirror(&mut self) -> Result<(), WorkerError> {
        let mirror = self.mirror.clone();
        blocking(move || mirror.rebuild().map_err(internal)).await?;
        self.fetches.clear();
        Ok(())
    }

    /// Fetches with `session`. gix hides ssh's stderr, so a failed fetch is diagnosed with
    /// `git ls-remote`, whose failures are classified into condition reasons; when the remote
    /// answers, the mirror is rebuilt and fetched into once more only if it is corrupt.
    pub(super) async fn fetch(
        &mut self,
        session: &GitSession,
        key: TransportKey,
    ) -> Result<(), WorkerError> {
        self.ensure_mirror().await?;
        tracing::debug!(repository = %self.url, "fetch");
        let refs = match self.fetch_once(session).await {
            Ok(refs) => refs,
            // git's own stderr is classified already; a corrupt mirror shows as a local error.
            Err(FetchFailure::Git(f)) if f.kind != GitFailureKind::Other => {
                return Err(WorkerError::Git(f))
            }
            Err(FetchFailure::Git(f)) => {
                if !self.repair_if_corrupt().await? {
                    return Err(WorkerError::Git(f));
                }
                tracing::warn!(repository = %self.url, error = %f.detail, "fetch into the corrupt mirror failed; fetching into the rebuilt one");
                self.fetch_once(session)
                    .await
                    .map_err(FetchFailure::into_worker_error)?
            }
            // No answer in time: asking again (ls-remote) would only wait as long once more.
            Err(e @ FetchFailure::TimedOut(_)) => return Err(e.into_worker_error()),
            Err(FetchFailure::Mirror(e)) => {
                session
                    .run(
                        ["ls-remote", "--heads", self.url.as_git_url()],
                        None,
                        None,
                        &[],
                    )
                    .await
                    .map_err(WorkerError::Git)?;
                if !self.repair_if_corrupt().await? {
                    return Err(fetch_failed(&e));
                }
                tracing::warn!(repository = %self.url, error = %e, "fetch into the corrupt mirror failed; fetching into the rebuilt one");
                self.fetch_once(session)
                    .await
                    .map_err(FetchFailure::into_worker_error)?
            }
        };
        bump(&self.stats.fetches, 1);
        self.saw_all(&refs);
        self.fetches.insert(
            key,
            FetchRecord {
                at: Instant::now(),
                refs,
                stale: false,
            },
        );
        Ok(())
    }

    /// One gix fetch on a blocking thread, within [`GitCli::fetch_timeout`]: its ssh is killed
    /// at the deadline (which ends the transfer), and should gix still not return, the worker
    /// stops waiting for it shortly after.
    ///
    /// [`GitCli::fetch_timeout`]: crate::git::GitCli::fetch_timeout
    async fn fetch_once(&self, session: &GitSession) -> Result<RemoteRefs, FetchFailure> {
        if session.is_https() {
            return self.fetch_once_cli(session).await;
        }
        let deadline = self.cli.fetch_timeout();
        let mirror = self.mirror.clone();
        let url = self.url.as_git_url().to_owned();
        let ssh = session.ssh_command_within(deadline);
        let interrupt = Arc::new(AtomicBool::new(false));
        let flag = interrupt.clone();
        let started = Instant::now();
        let task = tokio::task::spawn_blocking(move || mirror.fetch(&url, &ssh, &flag));
        let joined = tokio::time::timeout(deadline.saturating_add(FETCH_GRACE), task).await;
        // Ends the transfer if gix is still receiving (a file:// fetch has no ssh to kill).
        interrupt.store(true, Ordering::Relaxed);
        match joined {
            Err(_) => Err(FetchFailure::TimedOut(deadline)),
            Ok(Err(e)) => Err(FetchFailure::Mirror(MirrorError(format!(
                "fetch task failed: {e}"
            )))),
            Ok(Ok(Ok(refs))) => Ok(refs),
            Ok(Ok(Err(_))) if started.elapsed() >= deadline => {
                Err(FetchFailure::TimedOut(deadline))
            }
            Ok(Ok(Err(e))) => Err(FetchFailure::Mirror(e)),
        }
    }

    /// One `git fetch` over HTTPS (gix here speaks no HTTP): the same refspecs as the gix
    /// fetch, the URL on the command line (it holds no credentials), nothing written to the
    /// mirror's config; the refs are read back from the mirror, which follows the remote.
    async fn fetch_once_cli(&self, session: &GitSession) -> Result<RemoteRefs, FetchFailure> {
        let dir = self.mirror.dir().to_string_lossy().into_owned();
        let git_dir = format!("--git-dir={dir}");
        session
            .run_within(
                self.cli.fetch_timeout(),
                [
                    git_dir.as_str(),
                    "fetch",
                    "--quiet",
                    "--prune",
                    "--no-tags",
                    "--no-write-fetch-head",
                    "--no-auto-gc",
                    "--no-recurse-submodules",
                    self.url.as_git_url(),
                    "+refs/heads/*:refs/heads/*",
                    "+refs/tags/*:refs/tags/*",
                ],
                None,
                None,
                &[],
            )
            .await
            .map_err(|f| {
                // A git killed at its deadline leaves ref locks that would refuse every later
                // fetch; the worker is the mirror's only user, so none is anyone else's.
                let removed = self.mirror.clear_stale_locks();
                if removed > 0 {
                    tracing::warn!(repository = %self.url, removed, "removed the lock files a failed fetch left in the mirror");
                }
                FetchFailure::Git(f)
            })?;
        let mirror = self.mirror.clone();
        match tokio::task::spawn_blocking(move || mirror.local_refs()).await {
            Ok(Ok(refs)) => Ok(refs),
            Ok(Err(e)) => Err(FetchFailure::Mirror(e)),
            Err(e) => Err(FetchFailure::Mirror(MirrorError(format!(
                "reading the mirror's refs failed: {e}"
            )))),
        }
    }

    /// Makes sure this transport fetched within `max_age`; returns the session when it had to
    /// fetch now.
    pub(super) async fn fetch_if_older(
        &mut self,
        transport: &Transport,
        max_age: Duration,
    ) -> Result<(TransportKey, Option<GitSession>), WorkerError> {
        let key = transport_key(transport);
        self.ensure_mirror().await?;
        if self
            .fetches
            .get(&key)
            .is_some_and(|r| !r.stale && r.at.elapsed() <= max_age)
        {
            return Ok((key, None));
        }
        let session = self.cli.session(transport).map_err(WorkerError::Git)?;
        self.fetch(&session, key).await?;
        Ok((key, Some(session)))
    }

    /// Resolves `revision` with the refs this transport last fetched; a missing revision is
    /// fetched for once more unless the last fetch is very recent.
    pub(super) async fn resolve(
        &mut self,
        transport: &Transport,
        key: TransportKey,
        session: Option<GitSession>,
        revision: &str,
    ) -> Result<Option<ObjectId>, WorkerError> {
        if let Some(id) = self.resolve_local(key, revision).await? {
            return Ok(Some(id));
        }
        let recent = self
            .fetches
            .get(&key)
            .is_some_and(|r| r.at.elapsed() < MIN_REFETCH);
        if session.is_some() || recent {
            return Ok(None);
        }
        let session = self.cli.session(transport).map_err(WorkerError::Git)?;
        self.fetch(&session, key).await?;
        self.resolve_local(key, revision).await
    }

    /// Resolves `revision` (branch, tag or sha) with the refs fetched last, without a fetch.
    pub(super) async fn resolve_local(
        &self,
        key: TransportKey,
        revision: &str,
    ) -> Result<Option<ObjectId>, WorkerError> {
        let Some(record) = self.fetches.get(&key) else {
            return Ok(None);
        };
        let by_ref = [
            format!("refs/heads/{revision}"),
            format!("refs/tags/{revision}"),
        ]
        .into_iter()
        .find_map(|name| record.refs.get(&name).copied());
        let mirror = self.mirror.clone();
        let revision = revision.to_owned();
        blocking(move || {
            let (repo, _) = mirror.open().map_err(internal)?;
            match by_ref {
                Some(id) => mirror::peel_fetched(&repo, id).map_err(internal),
                None => mirror::lookup_sha(&repo, &revision).map_err(internal),
            }
        })
        .await
    }

    /// Whether the last fetch of this transport saw any branch.
    pub(super) fn has_branches(&self, key: TransportKey) -> bool {
        self.fetches
            .get(&key)
            .is_some_and(|r| r.refs.keys().any(|k| k.starts_with("refs/heads/")))
    }

    /// The head of `branch` as this transport last fetched it.
    pub(super) fn fetched_head(&self, key: TransportKey, branch: &str) -> Option<ObjectId> {
        self.fetches
            .get(&key)
            .and_then(|r| r.refs.get(&format!("refs/heads/{branch}")).copied())
    }
}
