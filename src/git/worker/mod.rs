//! The per-repository worker (design §3 rule 4, §6): one tokio task per repository owns a local
//! bare mirror and serializes all git work on it. Pushes queued by many AppSyncs are batched
//! into one fetch, one commit per changed app and one push; a push rejected because the remote
//! moved is re-planned on the new head and retried, never forced. Reads (snapshots, remote
//! heads, update checks) share one fetch or one `ls-remote` per `max_age`.
//!
//! gix does the fetch and all object work in the mirror; the `git` CLI does what gix cannot
//! (push) or where its stderr must be classified for the user (ls-remote), see
//! test-infra-findings §3.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gix::ObjectId;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use super::check::ls_remote_branch;
use super::classify::{GitFailure, GitFailureKind};
use super::cli::{GitCli, GitSession, HostKeyPolicy, Transport};
use super::mirror::{self, Mirror, MirrorError, RemoteRefs};
use super::url::RepoUrl;
use crate::layout::{plan_push, PlanError, PushKind, PushOutcome, PushRequest, Refusal};

/// At most this many pushes go into one batch (bounds memory and the blast radius of a failure).
const MAX_BATCH: usize = 500;
/// Push attempts per batch before giving up on a remote that keeps moving.
const MAX_PUSH_ATTEMPTS: u32 = 5;
/// Requests waiting for a worker; callers wait (back-pressure) beyond that.
const QUEUE_DEPTH: usize = 1024;
/// A revision missing after a fetch younger than this is not fetched for again.
const MIN_REFETCH: Duration = Duration::from_secs(2);
/// A fetch still running after this long is interrupted.
const FETCH_TIMEOUT: Duration = Duration::from_secs(600);

/// All repository workers of the operator, keyed by [`RepoUrl::identity`], so that every
/// AppSync and GitSyncConfig of one repository goes through the same worker.
#[derive(Clone)]
pub struct Workers {
    inner: Arc<WorkersInner>,
}

struct WorkersInner {
    cli: GitCli,
    mirrors_dir: PathBuf,
    workers: Mutex<HashMap<String, WorkerHandle>>,
}

impl Workers {
    /// `mirrors_dir` holds one bare mirror per repository (`<mirrors_dir>/<hash of identity>`),
    /// reused across restarts.
    pub fn new(cli: GitCli, mirrors_dir: PathBuf) -> Workers {
        Workers {
            inner: Arc::new(WorkersInner {
                cli,
                mirrors_dir,
                workers: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The worker of `url`'s repository, started on first use (needs a tokio runtime).
    pub fn get(&self, url: &RepoUrl) -> WorkerHandle {
        let identity = url.identity();
        let mut workers = self
            .inner
            .workers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(handle) = workers.get(&identity) {
            if !handle.tx.is_closed() {
                return handle.clone();
            }
            tracing::warn!(repository = %identity, "repository worker had stopped; starting a new one");
        }
        let dir = self.inner.mirrors_dir.join(mirror_dir_name(&identity));
        let handle = spawn_worker(url.clone(), self.inner.cli.clone(), dir);
        workers.insert(identity, handle.clone());
        handle
    }
}

/// Directory name of a repository's mirror: stable, filesystem-safe, and free of the URL.
fn mirror_dir_name(identity: &str) -> String {
    let digest = Sha256::digest(identity.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// A cheap handle on one repository's worker.
#[derive(Clone)]
pub struct WorkerHandle {
    tx: mpsc::Sender<Request>,
    stats: Arc<Counters>,
}

/// A push of one app version, as an AppSync asks for it.
#[derive(Clone)]
pub struct PushJob {
    /// Deploy key and host-key policy of the GitSyncConfig; jobs are only batched with jobs of
    /// the same transport, so no config ever pushes with another's key.
    pub transport: Transport,
    /// Branch to commit to (created when absent).
    pub branch: String,
    /// The git app id (meta.json key).
    pub app_id: String,
    /// The app's current name (its folder).
    pub app_name: String,
    /// The version id (`gitVersionId`).
    pub version_id: String,
    /// The version name (its file name).
    pub version_name: String,
    /// The export, as ToolJet returned it.
    pub export: serde_json::Value,
    /// The user's commit message, without ToolJet's prefix.
    pub message: String,
    /// Commit author (and committer) name; also `lastCommitUser`.
    pub author_name: String,
    /// Commit author (and committer) email.
    pub author_email: String,
    /// Commit date; also `lastpushDate`.
    pub date: jiff::Timestamp,
}

/// What became of a push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushResult {
    /// Git already held this content under this name and version: no commit.
    NoChange {
        /// The app's version file.
        app_path: String,
        /// The branch head the app was compared with (`None` only for a missing branch).
        head: Option<String>,
    },
    /// A commit was made and pushed.
    Committed {
        /// The commit made for this app.
        commit: CommitInfo,
        /// The app's version file.
        app_path: String,
        /// What kind of change it was.
        kind: PushKind,
    },
    /// The push would be unsafe or overwrite another app; nothing was written.
    Refused(Refusal),
}

/// A commit as reported in status (`lastCommit`, `availableUpdate`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitInfo {
    /// Full hex sha.
    pub sha: String,
    /// Full message, trailing whitespace removed.
    pub message: String,
    /// Author name.
    pub author: String,
    /// Author date, RFC 3339 in UTC.
    pub date: String,
}

/// An app's files at a revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The commit read; `None` only when the revision is a branch of a repository that has no
    /// branch at all yet (nothing pushed).
    pub commit: Option<CommitInfo>,
    /// `.meta/meta.json`, if present.
    pub meta_json: Option<Vec<u8>>,
    /// Every file below the requested folders, keyed by repo-relative path.
    pub files: BTreeMap<String, Vec<u8>>,
}

/// Counters of a worker's remote operations, for tests, benchmarks and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Fetches from the remote.
    pub fetches: u64,
    /// `ls-remote` calls (remote head checks not answered from a cache or fetch).
    pub ls_remotes: u64,
    /// Successful pushes.
    pub pushes: u64,
    /// Pushes rejected because the remote had moved (each was retried or failed the batch).
    pub push_rejections: u64,
    /// Commits made (and pushed or retried).
    pub commits: u64,
    /// Push batches processed.
    pub batches: u64,
}

#[derive(Default)]
struct Counters {
    fetches: AtomicU64,
    ls_remotes: AtomicU64,
    pushes: AtomicU64,
    push_rejections: AtomicU64,
    commits: AtomicU64,
    batches: AtomicU64,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Why a worker request failed; the message says what to do.
#[derive(Clone, Debug, thiserror::Error)]
pub enum WorkerError {
    /// git or ssh failed talking to the remote; the kind says why.
    #[error("{}", git_message(.0))]
    Git(GitFailure),
    /// The branch, tag or commit does not exist (or is not a valid name).
    #[error("revision {revision:?} was not found in the repository: check that the branch or tag exists (names are case-sensitive) or that the commit sha belongs to a branch or tag of the repository")]
    RevisionNotFound {
        /// The revision as given.
        revision: String,
    },
    /// The remote kept moving: every attempt was rejected as non-fast-forward.
    #[error("the push was rejected {attempts} times because other writers kept updating the branch at the same moment; nothing was forced or lost, and the push is retried on the next reconcile")]
    PushRejected {
        /// Attempts made.
        attempts: u32,
    },
    /// The repository's content cannot be planned on (e.g. an unreadable `.meta/meta.json`).
    #[error(transparent)]
    Layout(#[from] PlanError),
    /// A local failure (mirror, I/O, the worker itself).
    #[error("internal error in the repository worker: {0}. The local mirror is a cache and is rebuilt from the remote when damaged, so the request is retried with backoff")]
    Internal(String),
}

impl WorkerError {
    /// Condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            WorkerError::Git(f) => match f.kind {
                GitFailureKind::AuthenticationFailed => "AuthenticationFailed",
                GitFailureKind::ReadOnlyAccess => "ReadOnlyAccess",
                GitFailureKind::HostKeyMismatch => "HostKeyMismatch",
                GitFailureKind::Unreachable => "RepositoryUnreachable",
                GitFailureKind::RepositoryNotFound => "RepositoryNotFound",
                GitFailureKind::NonFastForward => "PushRejected",
                GitFailureKind::Other => "GitError",
            },
            WorkerError::RevisionNotFound { .. } => "RevisionNotFound",
            WorkerError::PushRejected { .. } => "PushRejected",
            WorkerError::Layout(_) => "InvalidRepositoryContent",
            WorkerError::Internal(_) => "InternalError",
        }
    }

    /// The git failure class, when git or ssh failed.
    pub fn git_kind(&self) -> Option<GitFailureKind> {
        match self {
            WorkerError::Git(f) => Some(f.kind),
            _ => None,
        }
    }
}

fn git_message(f: &GitFailure) -> String {
    let d = &f.detail;
    match f.kind {
        GitFailureKind::AuthenticationFailed => format!("the repository refused the deploy key: add the GitSyncConfig's status.publicKey as a deploy key of the repository (with write access for pushes). Git said: {d}"),
        GitFailureKind::ReadOnlyAccess => format!("the deploy key may read but not write: give it write access (GitHub: Allow write access; GitLab: Grant write permissions) and check branch protection. Git said: {d}"),
        GitFailureKind::HostKeyMismatch => format!("the server's SSH host key is not the pinned or recorded one, so the connection was refused: verify the key out of band (ssh-keyscan) and update spec.repository.knownHosts. ssh said: {d}"),
        GitFailureKind::Unreachable => format!("cannot connect to the repository: check the host name, port and network policies (egress to the git host); retried with backoff. Detail: {d}"),
        GitFailureKind::RepositoryNotFound => format!("the repository does not exist or the deploy key cannot see it: check spec.repository.url and that the key is added to this repository. Detail: {d}"),
        GitFailureKind::NonFastForward => format!("the push was rejected because the branch moved; it is retried. Git said: {d}"),
        GitFailureKind::Other => format!("git failed: {d}"),
    }
}

fn internal(e: MirrorError) -> WorkerError {
    WorkerError::Internal(e.0)
}

fn stopped() -> WorkerError {
    WorkerError::Internal("the repository worker stopped".into())
}

type Reply<T> = oneshot::Sender<Result<T, WorkerError>>;

enum Request {
    Push {
        job: Box<PushJob>,
        reply: Reply<PushResult>,
    },
    Snapshot {
        transport: Transport,
        revision: String,
        folders: Vec<String>,
        max_age: Duration,
        reply: Reply<Snapshot>,
    },
    RemoteHead {
        transport: Transport,
        branch: String,
        max_age: Duration,
        reply: Reply<Option<String>>,
    },
    LastCommit {
        transport: Transport,
        revision: String,
        since: Option<String>,
        folder: String,
        app_id: String,
        max_age: Duration,
        reply: Reply<Option<CommitInfo>>,
    },
}

impl WorkerHandle {
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, WorkerError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Queues a push; resolves when the batch containing it was pushed, found unchanged,
    /// refused or failed.
    pub async fn push(&self, job: PushJob) -> Result<PushResult, WorkerError> {
        self.call(|reply| Request::Push {
            job: Box::new(job),
            reply,
        })
        .await
    }

    /// Fetches (at most once per `max_age`, shared by all callers) and reads `.meta/meta.json`
    /// plus the files under `folders` at `revision` (branch name, tag name or commit sha).
    pub async fn snapshot(
        &self,
        transport: Transport,
        revision: &str,
        folders: Vec<String>,
        max_age: Duration,
    ) -> Result<Snapshot, WorkerError> {
        self.call(|reply| Request::Snapshot {
            transport,
            revision: revision.to_owned(),
            folders,
            max_age,
            reply,
        })
        .await
    }

    /// Remote head of `branch` via one ls-remote, cached for `max_age` and shared by every
    /// caller (design §6: at most one remote ref check per repository per interval, however
    /// many AppSyncs share it). Returns None for a missing branch.
    pub async fn remote_head(
        &self,
        transport: Transport,
        branch: &str,
        max_age: Duration,
    ) -> Result<Option<String>, WorkerError> {
        self.call(|reply| Request::RemoteHead {
            transport,
            branch: branch.to_owned(),
            max_age,
            reply,
        })
        .await
    }

    /// The newest commit reachable from `revision` (not from `since`, when given) that changed
    /// the folder `folder` or the meta.json entry `app_id` — "commits that do not touch the app
    /// do not count as updates".
    pub async fn last_commit_touching(
        &self,
        transport: Transport,
        revision: &str,
        since: Option<&str>,
        folder: &str,
        app_id: &str,
        max_age: Duration,
    ) -> Result<Option<CommitInfo>, WorkerError> {
        self.call(|reply| Request::LastCommit {
            transport,
            revision: revision.to_owned(),
            since: since.map(str::to_owned),
            folder: folder.to_owned(),
            app_id: app_id.to_owned(),
            max_age,
            reply,
        })
        .await
    }

    /// Counters of remote operations so far.
    pub fn stats(&self) -> WorkerStats {
        let c = &self.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WorkerStats {
            fetches: get(&c.fetches),
            ls_remotes: get(&c.ls_remotes),
            pushes: get(&c.pushes),
            push_rejections: get(&c.push_rejections),
            commits: get(&c.commits),
            batches: get(&c.batches),
        }
    }
}

/// Identifies a transport without holding its key: caches and batches are per transport, so a
/// config never sees data fetched or pushes made with another config's credentials.
type TransportKey = [u8; 32];

fn transport_key(t: &Transport) -> TransportKey {
    let mut h = Sha256::new();
    match &t.private_key {
        Some(key) => {
            h.update(b"key\0");
            h.update(key.as_bytes());
        }
        None => h.update(b"nokey\0"),
    }
    match &t.host_keys {
        HostKeyPolicy::Pinned(lines) => {
            h.update(b"\0pinned\0");
            h.update(lines.as_bytes());
        }
        HostKeyPolicy::TrustOnFirstUse => h.update(b"\0tofu"),
    }
    h.finalize().into()
}

struct FetchRecord {
    at: Instant,
    refs: RemoteRefs,
}

struct QueuedPush {
    job: Box<PushJob>,
    reply: Reply<PushResult>,
}

struct Worker {
    url: RepoUrl,
    cli: GitCli,
    mirror: Mirror,
    rx: mpsc::Receiver<Request>,
    pending: VecDeque<Request>,
    fetches: HashMap<TransportKey, FetchRecord>,
    heads: HashMap<(TransportKey, String), (Instant, Option<String>)>,
    stats: Arc<Counters>,
}

fn spawn_worker(url: RepoUrl, cli: GitCli, dir: PathBuf) -> WorkerHandle {
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let stats = Arc::new(Counters::default());
    let worker = Worker {
        url,
        cli,
        mirror: Mirror::new(dir),
        rx,
        pending: VecDeque::new(),
        fetches: HashMap::new(),
        heads: HashMap::new(),
        stats: stats.clone(),
    };
    tokio::spawn(worker.run());
    WorkerHandle { tx, stats }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, WorkerError> + Send + 'static,
) -> Result<T, WorkerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| WorkerError::Internal(format!("blocking task failed: {e}")))?
}

fn commit_info(sha: ObjectId, facts: mirror::CommitFacts) -> CommitInfo {
    CommitInfo {
        sha: sha.to_string(),
        message: facts.message,
        author: facts.author,
        date: rfc3339(facts.seconds),
    }
}

fn rfc3339(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The outcome of applying a batch on one base commit.
struct Applied {
    tip: Option<ObjectId>,
    results: Vec<Result<PushResult, WorkerError>>,
    commits: u64,
}

/// Plans every job on the tree the previous one produced and commits each change.
fn apply_batch(
    mirror: &Mirror,
    base: Option<ObjectId>,
    jobs: &[Box<PushJob>],
) -> Result<Applied, WorkerError> {
    let (repo, _) = mirror.open().map_err(internal)?;
    let mut head = base;
    let mut tree = match base {
        Some(commit) => mirror::tree_of(&repo, commit).map_err(internal)?,
        None => ObjectId::empty_tree(gix::hash::Kind::Sha1),
    };
    let mut results = Vec::with_capacity(jobs.len());
    let mut commits = 0;
    for job in jobs {
        let state =
            match mirror::repo_state(&repo, tree, head.is_some(), &job.app_id).map_err(internal)? {
                Ok(state) => state,
                Err(e) => {
                    results.push(Err(WorkerError::Layout(e)));
                    continue;
                }
            };
        let request = PushRequest {
            app_id: &job.app_id,
            app_name: &job.app_name,
            version_id: &job.version_id,
            version_name: &job.version_name,
            export: &job.export,
            message: &job.message,
            author: &job.author_name,
            date: job.date,
        };
        let head_hex = head.map(|h| h.to_string());
        match plan_push(&state, &request) {
            Err(e) => results.push(Err(WorkerError::Layout(e))),
            Ok(PushOutcome::NoChange { app_path }) => results.push(Ok(PushResult::NoChange {
                app_path,
                head: head_hex,
            })),
            Ok(PushOutcome::Refused(refusal)) => results.push(Ok(PushResult::Refused(refusal))),
            Ok(PushOutcome::Plan(plan)) => {
                let new_tree = mirror::edit_tree(&repo, tree, &plan.writes, &plan.deletes)
                    .map_err(internal)?;
                if new_tree == tree {
                    // Never an empty commit, whatever the planner thought.
                    results.push(Ok(PushResult::NoChange {
                        app_path: plan.app_path,
                        head: head_hex,
                    }));
                    continue;
                }
                let who = mirror::Signature {
                    name: &job.author_name,
                    email: &job.author_email,
                    time: job.date,
                };
                let commit =
                    mirror::write_commit(&repo, new_tree, head, &plan.commit_message, &who)
                        .map_err(internal)?;
                let facts = mirror::commit_facts(&repo, commit).map_err(internal)?;
                head = Some(commit);
                tree = new_tree;
                commits += 1;
                results.push(Ok(PushResult::Committed {
                    commit: commit_info(commit, facts),
                    app_path: plan.app_path,
                    kind: plan.kind,
                }));
            }
        }
    }
    Ok(Applied {
        tip: head,
        results,
        commits,
    })
}

fn fail_all(replies: Vec<Reply<PushResult>>, e: &WorkerError) {
    for reply in replies {
        let _ = reply.send(Err(e.clone()));
    }
}

impl Worker {
    async fn run(mut self) {
        loop {
            let request = match self.pending.pop_front() {
                Some(r) => r,
                None => match self.rx.recv().await {
                    Some(r) => r,
                    None => return,
                },
            };
            match request {
                Request::Push { job, reply } => self.push_batch(QueuedPush { job, reply }).await,
                Request::Snapshot {
                    transport,
                    revision,
                    folders,
                    max_age,
                    reply,
                } => {
                    let r = self.snapshot(&transport, &revision, folders, max_age).await;
                    let _ = reply.send(r);
                }
                Request::RemoteHead {
                    transport,
                    branch,
                    max_age,
                    reply,
                } => {
                    let r = self.remote_head(&transport, &branch, max_age).await;
                    let _ = reply.send(r);
                }
                Request::LastCommit {
                    transport,
                    revision,
                    since,
                    folder,
                    app_id,
                    max_age,
                    reply,
                } => {
                    let r = self
                        .last_commit(
                            &transport,
                            &revision,
                            since.as_deref(),
                            &folder,
                            &app_id,
                            max_age,
                        )
                        .await;
                    let _ = reply.send(r);
                }
            }
        }
    }

    /// Opens (or rebuilds) the mirror; a rebuilt mirror has no refs, so every cached view of
    /// the remote is dropped with it.
    async fn ensure_mirror(&mut self) -> Result<(), WorkerError> {
        let mirror = self.mirror.clone();
        let rebuilt = blocking(move || mirror.open().map(|(_, r)| r).map_err(internal)).await?;
        if rebuilt {
            self.fetches.clear();
        }
        Ok(())
    }

    /// Fetches with `session`, rebuilding the mirror once when the fetch fails for a local
    /// reason. gix hides ssh's stderr, so a failed fetch is diagnosed with `git ls-remote`,
    /// whose failures are classified into condition reasons.
    async fn fetch(&mut self, session: &GitSession, key: TransportKey) -> Result<(), WorkerError> {
        self.ensure_mirror().await?;
        let first = self.fetch_once(session).await;
        let refs = match first {
            Ok(refs) => refs,
            Err(e) => {
                // Reachable and authorized? Then the problem is local: rebuild and retry once.
                session
                    .run(
                        ["ls-remote", "--heads", self.url.as_git_url()],
                        None,
                        None,
                        &[],
                    )
                    .await
                    .map_err(WorkerError::Git)?;
                tracing::warn!(repository = %self.url, error = %e, "fetch into the mirror failed while the remote is reachable; rebuilding the mirror");
                let mirror = self.mirror.clone();
                blocking(move || mirror.rebuild().map_err(internal)).await?;
                self.fetches.clear();
                self.fetch_once(session).await.map_err(internal)?
            }
        };
        bump(&self.stats.fetches, 1);
        self.fetches.insert(
            key,
            FetchRecord {
                at: Instant::now(),
                refs,
            },
        );
        Ok(())
    }

    async fn fetch_once(&self, session: &GitSession) -> Result<RemoteRefs, MirrorError> {
        let mirror = self.mirror.clone();
        let url = self.url.as_git_url().to_owned();
        let ssh = session.ssh_command().to_owned();
        let interrupt = Arc::new(AtomicBool::new(false));
        let flag = interrupt.clone();
        let task = tokio::task::spawn_blocking(move || mirror.fetch(&url, &ssh, &flag));
        let timer = {
            let interrupt = interrupt.clone();
            tokio::spawn(async move {
                tokio::time::sleep(FETCH_TIMEOUT).await;
                interrupt.store(true, Ordering::Relaxed);
            })
        };
        let result = task.await;
        timer.abort();
        result.map_err(|e| MirrorError(format!("fetch task failed: {e}")))?
    }

    /// Makes sure this transport fetched within `max_age`.
    async fn fetch_if_older(
        &mut self,
        transport: &Transport,
        max_age: Duration,
    ) -> Result<(TransportKey, Option<GitSession>), WorkerError> {
        let key = transport_key(transport);
        self.ensure_mirror().await?;
        if self
            .fetches
            .get(&key)
            .is_some_and(|r| r.at.elapsed() <= max_age)
        {
            return Ok((key, None));
        }
        let session = self.cli.session(transport).map_err(WorkerError::Git)?;
        self.fetch(&session, key).await?;
        Ok((key, Some(session)))
    }

    /// Resolves `revision` with the refs this transport last fetched; a missing revision is
    /// fetched for once more unless the last fetch is very recent.
    async fn resolve(
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

    async fn resolve_local(
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
                Some(id) => mirror::peel_to_commit(&repo, id).map_err(internal),
                None => mirror::lookup_sha(&repo, &revision).map_err(internal),
            }
        })
        .await
    }

    fn has_branches(&self, key: TransportKey) -> bool {
        self.fetches
            .get(&key)
            .is_some_and(|r| r.refs.keys().any(|k| k.starts_with("refs/heads/")))
    }

    async fn snapshot(
        &mut self,
        transport: &Transport,
        revision: &str,
        folders: Vec<String>,
        max_age: Duration,
    ) -> Result<Snapshot, WorkerError> {
        let (key, session) = self.fetch_if_older(transport, max_age).await?;
        let Some(commit) = self.resolve(transport, key, session, revision).await? else {
            if !self.has_branches(key) && is_branch_like(revision) {
                return Ok(Snapshot::default());
            }
            return Err(WorkerError::RevisionNotFound {
                revision: revision.to_owned(),
            });
        };
        let mirror = self.mirror.clone();
        blocking(move || {
            let (repo, _) = mirror.open().map_err(internal)?;
            let tree = mirror::tree_of(&repo, commit).map_err(internal)?;
            let meta_json =
                mirror::read_file(&repo, tree, crate::layout::META_PATH).map_err(internal)?;
            let mut files = BTreeMap::new();
            for folder in &folders {
                mirror::read_folder(&repo, tree, folder, &mut files).map_err(internal)?;
            }
            let facts = mirror::commit_facts(&repo, commit).map_err(internal)?;
            Ok(Snapshot {
                commit: Some(commit_info(commit, facts)),
                meta_json,
                files,
            })
        })
        .await
    }

    async fn remote_head(
        &mut self,
        transport: &Transport,
        branch: &str,
        max_age: Duration,
    ) -> Result<Option<String>, WorkerError> {
        let key = transport_key(transport);
        let refname = format!("refs/heads/{branch}");
        if let Some((at, head)) = self.heads.get(&(key, branch.to_owned())) {
            if at.elapsed() <= max_age {
                return Ok(head.clone());
            }
        }
        // A fetch is a ref check too.
        if let Some(record) = self.fetches.get(&key) {
            if record.at.elapsed() <= max_age {
                return Ok(record.refs.get(&refname).map(|id| id.to_string()));
            }
        }
        let session = self.cli.session(transport).map_err(WorkerError::Git)?;
        bump(&self.stats.ls_remotes, 1);
        let head = ls_remote_branch(&session, &self.url, branch)
            .await
            .map_err(WorkerError::Git)?;
        self.heads
            .insert((key, branch.to_owned()), (Instant::now(), head.clone()));
        Ok(head)
    }

    async fn last_commit(
        &mut self,
        transport: &Transport,
        revision: &str,
        since: Option<&str>,
        folder: &str,
        app_id: &str,
        max_age: Duration,
    ) -> Result<Option<CommitInfo>, WorkerError> {
        let (key, session) = self.fetch_if_older(transport, max_age).await?;
        let Some(tip) = self.resolve(transport, key, session, revision).await? else {
            if !self.has_branches(key) && is_branch_like(revision) {
                return Ok(None);
            }
            return Err(WorkerError::RevisionNotFound {
                revision: revision.to_owned(),
            });
        };
        let hidden = match since {
            None => None,
            Some(since) => Some(self.resolve_local(key, since).await?.ok_or_else(|| {
                WorkerError::RevisionNotFound {
                    revision: since.to_owned(),
                }
            })?),
        };
        let mirror = self.mirror.clone();
        let folder = folder.to_owned();
        let app_id = app_id.to_owned();
        blocking(move || {
            let (repo, _) = mirror.open().map_err(internal)?;
            let Some(found) = mirror::last_commit_touching(&repo, tip, hidden, &folder, &app_id)
                .map_err(internal)?
            else {
                return Ok(None);
            };
            let facts = mirror::commit_facts(&repo, found).map_err(internal)?;
            Ok(Some(commit_info(found, facts)))
        })
        .await
    }

    /// Moves queued pushes into `batch` (up to [`MAX_BATCH`]); other requests wait in
    /// `pending`, in order.
    fn drain_pushes(&mut self, batch: &mut Vec<QueuedPush>, only: Option<(&str, TransportKey)>) {
        let mut keep = VecDeque::new();
        let take = |request: Request, batch: &mut Vec<QueuedPush>, keep: &mut VecDeque<Request>| {
            match request {
                Request::Push { job, reply }
                    if batch.len() < MAX_BATCH
                        && only.is_none_or(|(branch, key)| {
                            job.branch == branch && transport_key(&job.transport) == key
                        }) =>
                {
                    batch.push(QueuedPush { job, reply })
                }
                other => keep.push_back(other),
            }
        };
        while let Some(request) = self.pending.pop_front() {
            take(request, batch, &mut keep);
        }
        while batch.len() < MAX_BATCH {
            match self.rx.try_recv() {
                Ok(request) => take(request, batch, &mut keep),
                Err(_) => break,
            }
        }
        self.pending = keep;
    }

    async fn push_batch(&mut self, first: QueuedPush) {
        let started = Instant::now();
        bump(&self.stats.batches, 1);
        let mut batch = vec![first];
        self.drain_pushes(&mut batch, None);
        // One group per (branch, transport), in order of first appearance.
        let mut groups: Vec<(String, TransportKey, Vec<QueuedPush>)> = Vec::new();
        for queued in batch {
            let key = transport_key(&queued.job.transport);
            match groups
                .iter_mut()
                .find(|(branch, k, _)| *branch == queued.job.branch && *k == key)
            {
                Some((_, _, jobs)) => jobs.push(queued),
                None => groups.push((queued.job.branch.clone(), key, vec![queued])),
            }
        }
        for (branch, key, jobs) in groups {
            self.push_group(&branch, key, jobs, started).await;
        }
    }

    async fn push_group(
        &mut self,
        branch: &str,
        key: TransportKey,
        mut queued: Vec<QueuedPush>,
        batch_started: Instant,
    ) {
        let Some(transport) = queued.first().map(|q| q.job.transport.clone()) else {
            return;
        };
        let session = match self.cli.session(&transport) {
            Ok(s) => s,
            Err(f) => {
                let replies = queued.into_iter().map(|q| q.reply).collect();
                return fail_all(replies, &WorkerError::Git(f));
            }
        };
        let invalid_branch = gix::refs::FullName::try_from(format!("refs/heads/{branch}")).is_err();
        if invalid_branch {
            let replies = queued.into_iter().map(|q| q.reply).collect();
            return fail_all(
                replies,
                &WorkerError::RevisionNotFound {
                    revision: branch.to_owned(),
                },
            );
        }
        let mut jobs: Option<Arc<Vec<Box<PushJob>>>> = None;
        let mut replies: Vec<Reply<PushResult>> = Vec::new();
        let mut rebuilt = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let fresh = attempt == 1
                && self
                    .fetches
                    .get(&key)
                    .is_some_and(|r| r.at >= batch_started);
            if !fresh {
                if let Err(e) = self.fetch(&session, key).await {
                    let replies = match jobs {
                        Some(_) => replies,
                        None => queued.into_iter().map(|q| q.reply).collect(),
                    };
                    return fail_all(replies, &e);
                }
            }
            let specs = match &jobs {
                Some(specs) => specs.clone(),
                None => {
                    // Pushes that arrived during the fetch join this batch.
                    self.drain_pushes(&mut queued, Some((branch, key)));
                    let (specs, r): (Vec<_>, Vec<_>) =
                        queued.drain(..).map(|q| (q.job, q.reply)).unzip();
                    replies = r;
                    let specs = Arc::new(specs);
                    jobs = Some(specs.clone());
                    specs
                }
            };
            let base = self
                .fetches
                .get(&key)
                .and_then(|r| r.refs.get(&format!("refs/heads/{branch}")).copied());
            let mirror = self.mirror.clone();
            let applied = blocking(move || apply_batch(&mirror, base, &specs)).await;
            let applied = match applied {
                Ok(a) => a,
                Err(e @ WorkerError::Internal(_)) if !rebuilt => {
                    tracing::warn!(repository = %self.url, error = %e, "mirror failed while applying a batch; rebuilding it");
                    rebuilt = true;
                    let mirror = self.mirror.clone();
                    if let Err(e) = blocking(move || mirror.rebuild().map_err(internal)).await {
                        return fail_all(replies, &e);
                    }
                    self.fetches.clear();
                    continue;
                }
                Err(e) => return fail_all(replies, &e),
            };
            bump(&self.stats.commits, applied.commits);
            let Some(tip) = applied.tip.filter(|tip| Some(*tip) != base) else {
                return deliver(replies, applied.results);
            };
            let refspec = format!("{tip}:refs/heads/{branch}");
            let mirror_dir = self.mirror.dir().to_path_buf();
            // Not --porcelain: its ref status goes to stdout, and the rejection must be seen
            // on stderr to be classified as non-fast-forward.
            let pushed = session
                .run(
                    [
                        "push",
                        "--no-verify",
                        self.url.as_git_url(),
                        refspec.as_str(),
                    ],
                    Some(&mirror_dir),
                    None,
                    &[],
                )
                .await;
            match pushed {
                Ok(_) => {
                    bump(&self.stats.pushes, 1);
                    self.after_push(key, branch, tip, &session).await;
                    tracing::info!(repository = %self.url, branch, commit = %tip, commits = applied.commits, jobs = replies.len(), "pushed");
                    return deliver(replies, applied.results);
                }
                Err(f) if f.kind == GitFailureKind::NonFastForward => {
                    bump(&self.stats.push_rejections, 1);
                    if attempt >= MAX_PUSH_ATTEMPTS {
                        tracing::warn!(repository = %self.url, branch, attempts = attempt, "push rejected every time; giving up for now");
                        return fail_all(replies, &WorkerError::PushRejected { attempts: attempt });
                    }
                    tracing::info!(repository = %self.url, branch, attempt, "push rejected as non-fast-forward; fetching and re-applying");
                    let jitter = rand::random::<u64>() % 100;
                    let backoff = 100u64 * (1 << (attempt - 1).min(4)) + jitter;
                    tokio::time::sleep(Duration::from_millis(backoff)).await;
                }
                Err(f) => return fail_all(replies, &WorkerError::Git(f)),
            }
        }
    }

    /// Records the pushed head (mirror ref, caches) and lets git pack loose objects when due.
    async fn after_push(
        &mut self,
        key: TransportKey,
        branch: &str,
        tip: ObjectId,
        session: &GitSession,
    ) {
        let refname = format!("refs/heads/{branch}");
        if let Some(record) = self.fetches.get_mut(&key) {
            record.refs.insert(refname, tip);
        }
        self.heads.insert(
            (key, branch.to_owned()),
            (Instant::now(), Some(tip.to_string())),
        );
        let mirror = self.mirror.clone();
        let branch = branch.to_owned();
        let set = blocking(move || {
            let (repo, _) = mirror.open().map_err(internal)?;
            mirror::set_branch(&repo, &branch, tip).map_err(internal)
        })
        .await;
        if let Err(e) = set {
            tracing::warn!(repository = %self.url, error = %e, "could not record the pushed head in the mirror");
        }
        let dir = self.mirror.dir().to_path_buf();
        if let Err(e) = session
            .run(
                ["-c", "gc.autoDetach=false", "gc", "--auto", "--quiet"],
                Some(&dir),
                None,
                &[],
            )
            .await
        {
            tracing::debug!(repository = %self.url, error = %e, "git gc --auto failed in the mirror");
        }
    }
}

fn deliver(replies: Vec<Reply<PushResult>>, results: Vec<Result<PushResult, WorkerError>>) {
    for (reply, result) in replies.into_iter().zip(results) {
        let _ = reply.send(result);
    }
}

/// Whether `revision` could name a branch (not a full sha), for the empty-repository case.
fn is_branch_like(revision: &str) -> bool {
    !(revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_dir_name_is_stable_hex() {
        let a = mirror_dir_name("ssh://git@github.com:22/acme/apps.git");
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a, mirror_dir_name("ssh://git@github.com:22/acme/apps.git"));
        assert_ne!(a, mirror_dir_name("ssh://git@github.com:22/acme/other.git"));
    }

    #[test]
    fn transport_keys_differ_by_key_and_policy() {
        let t = |key: Option<&str>, hk: HostKeyPolicy| Transport {
            private_key: key.map(|k| zeroize::Zeroizing::new(k.to_owned())),
            host_keys: hk,
        };
        let a = transport_key(&t(Some("a"), HostKeyPolicy::TrustOnFirstUse));
        assert_eq!(
            a,
            transport_key(&t(Some("a"), HostKeyPolicy::TrustOnFirstUse))
        );
        assert_ne!(
            a,
            transport_key(&t(Some("b"), HostKeyPolicy::TrustOnFirstUse))
        );
        assert_ne!(
            a,
            transport_key(&t(Some("a"), HostKeyPolicy::Pinned("x".into())))
        );
        assert_ne!(a, transport_key(&t(None, HostKeyPolicy::TrustOnFirstUse)));
    }

    #[test]
    fn reasons_follow_the_failure_kind() {
        let git = |kind| {
            WorkerError::Git(GitFailure {
                kind,
                detail: "d".into(),
            })
        };
        assert_eq!(
            git(GitFailureKind::HostKeyMismatch).reason(),
            "HostKeyMismatch"
        );
        assert_eq!(
            git(GitFailureKind::AuthenticationFailed).reason(),
            "AuthenticationFailed"
        );
        assert_eq!(
            WorkerError::PushRejected { attempts: 5 }.reason(),
            "PushRejected"
        );
        assert!(git(GitFailureKind::HostKeyMismatch)
            .to_string()
            .contains("knownHosts"));
    }
}
