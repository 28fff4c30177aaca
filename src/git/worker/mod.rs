//! The per-repository worker (design §3 rule 4, §6): one tokio task per repository owns a local
//! bare mirror and serializes all git work on it. Pushes queued by many AppSyncs are batched
//! into one fetch, one commit per changed app and one push; a push rejected because the remote
//! moved is re-planned on the new head and retried, never forced. Reads (snapshots, remote
//! heads, update checks) share one fetch or one `ls-remote` per `max_age`; connection checks
//! run in turn with everything else (design §3.4).
//!
//! gix does the fetch and all object work in the mirror; the `git` CLI does what gix cannot
//! (push) or where its stderr must be classified for the user (ls-remote), see
//! test-infra-findings §3.
//!
//! This module holds the registry of workers, the caller's handle and the public types; `serve`
//! is the worker task's request loop. The work itself is in the submodules, one concern each:
//! `fetch` (mirror, fetches, revision lookup, remote-head cache), `read` (snapshots, remote
//! heads, update checks), `access` (connection checks), `push` (batching, pushing, retries),
//! `apply` (planning and committing a batch in the mirror) and `repair` (rebuilding a mirror,
//! only when it is corrupt).

mod access;
mod apply;
mod error;
mod fetch;
mod moves;
mod push;
mod read;
mod registry;
mod repair;
mod serve;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gix::ObjectId;
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::check::CheckOutcome;
use super::cli::{GitCli, HostKeyPolicy, Transport};
use super::mirror::{self, Mirror};
use super::sign::CommitSigner;
use super::url::RepoUrl;
use crate::layout::{PushKind, Refusal};

use error::stopped;
pub use error::WorkerError;
use fetch::{FetchRecord, HeadCache};
pub use moves::RefMoved;
pub use registry::Workers;

/// Requests waiting for a worker; callers wait (back-pressure) beyond that.
const QUEUE_DEPTH: usize = 1024;
/// A cheap handle on one repository's worker.
#[derive(Clone)]
pub struct WorkerHandle {
    tx: mpsc::Sender<Request>,
    stats: Arc<Counters>,
    timeout: Duration,
    /// When the next [`WorkerHandle::refresh`] may run: webhook fetches of one repository are
    /// paced, whichever configs (tenants) ask for them.
    next_refresh: Arc<std::sync::Mutex<Option<tokio::time::Instant>>>,
}

/// Least time between two webhook-caused fetches of one repository.
pub const REFRESH_SPACING: Duration = Duration::from_millis(500);

/// A push of one app version, as an AppSync asks for it.
#[derive(Clone)]
pub struct PushJob {
    /// Deploy key and host-key policy of the GitSyncConfig; jobs are only batched with jobs of
    /// the same transport, so no config ever pushes with another's key.
    pub transport: Transport,
    /// Branch to commit to (created when absent).
    pub branch: String,
    /// Where a missing `branch` starts: this branch's head (pull-request mode: the base), or
    /// nothing (a new root). A job that changes nothing against it creates no branch.
    pub start_from: Option<String>,
    /// The git app id (meta.json key).
    pub app_id: String,
    /// The app's current name (its folder).
    pub app_name: String,
    /// The version id (`gitVersionId`).
    pub version_id: String,
    /// The version name (its file name).
    pub version_name: String,
    /// The app version file, made from the export as ToolJet returned it.
    pub file: crate::layout::plan::AppFile,
    /// The user's commit message, without ToolJet's prefix.
    pub message: String,
    /// Commit author (and committer) name; also `lastCommitUser`.
    pub author_name: String,
    /// Commit author (and committer) email.
    pub author_email: String,
    /// Commit date; also `lastpushDate`.
    pub date: jiff::Timestamp,
    /// The key every commit of this job is signed with (`spec.commitSigning`); `None`:
    /// unsigned. Jobs are only batched with jobs of the same signer (by fingerprint), so no
    /// commit is ever signed with another config's key, or left unsigned beside signed ones.
    pub signing: Option<Arc<CommitSigner>>,
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

/// One app at a revision, read in one turn of the worker: what a Pull pass needs.
#[derive(Clone, Debug)]
pub struct AppAt {
    /// The commit read; `None` only when the revision is a branch of a repository that has no
    /// branch at all yet (nothing pushed).
    pub commit: Option<CommitInfo>,
    /// The app in `.meta/meta.json`, or why it is not there.
    pub located: Result<crate::layout::Located, crate::layout::LocateError>,
    /// Every file below the app's folder, keyed by repo-relative path.
    pub files: BTreeMap<String, Vec<u8>>,
    /// The newest commit that changed the app's folder or entry (as
    /// [`WorkerHandle::last_commit_touching`] finds it).
    pub touching: Option<CommitInfo>,
}

/// Counters of a worker's remote operations, for tests, benchmarks and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Fetches from the remote.
    pub fetches: u64,
    /// `ls-remote` calls (remote head checks not answered from a cache or fetch, and
    /// connection checks).
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
    AppAt {
        transport: Transport,
        revision: String,
        app: String,
        max_age: Duration,
        reply: Reply<AppAt>,
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
    Check {
        transport: Transport,
        branch: String,
        reply: Reply<CheckOutcome>,
    },
    IsAncestor {
        transport: Transport,
        ancestor: String,
        descendant: String,
        max_age: Duration,
        reply: Reply<bool>,
    },
    Refresh {
        transport: Transport,
        reply: Reply<BTreeMap<String, String>>,
    },
}

impl WorkerHandle {
    /// Sends a request and waits for its answer, at most the handle's timeout (a full queue
    /// included): a stuck worker answers [`WorkerError::Busy`], never an endless wait.
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, WorkerError> {
        let (reply, rx) = oneshot::channel();
        let exchange = async {
            self.tx.send(make(reply)).await.map_err(|_| stopped())?;
            rx.await.map_err(|_| stopped())?
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(WorkerError::Busy {
                after: self.timeout,
            }))
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

    /// Fetches (at most once per `max_age`, shared by all callers) and reads, all at the one
    /// commit `revision` names: the app `app` (a Pull AppSync's `spec.app`) in
    /// `.meta/meta.json`, its folder's files and the newest commit touching it. One request
    /// where three would queue three times behind every other AppSync of the repository, and
    /// could see the branch move between them.
    pub async fn app_at(
        &self,
        transport: Transport,
        revision: &str,
        app: &str,
        max_age: Duration,
    ) -> Result<AppAt, WorkerError> {
        self.call(|reply| Request::AppAt {
            transport,
            revision: revision.to_owned(),
            app: app.to_owned(),
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
    /// do not count as updates". When `since` is not an ancestor of `revision` (the branch was
    /// rewound or replaced by a force-push), the commits between them cannot tell what happened
    /// to the app, so `revision`'s own commit is returned: it counts as touching the app.
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

    /// Whether `ancestor` (a revision) is `descendant` or in its history, in the mirror after a
    /// fetch at most `max_age` old: a branch head that is not a descendant of the head seen
    /// before was rewound or switched.
    pub async fn is_ancestor(
        &self,
        transport: Transport,
        ancestor: &str,
        descendant: &str,
        max_age: Duration,
    ) -> Result<bool, WorkerError> {
        self.call(|reply| Request::IsAncestor {
            transport,
            ancestor: ancestor.to_owned(),
            descendant: descendant.to_owned(),
            max_age,
            reply,
        })
        .await
    }

    /// The connection check ("Finalize setup", [`crate::git::check_access`]) of `branch`,
    /// run by the worker in turn with its other requests, so that all git traffic of one
    /// repository is serialised (design §3.4). A successful check's head is remembered like an
    /// ls-remote's, so a [`WorkerHandle::remote_head`] within its `max_age` needs no call.
    ///
    /// Access failures are in the outcome's `result`; `Err` only when the worker stopped or
    /// did not answer in time ([`WorkerError::Busy`]).
    pub async fn check(
        &self,
        transport: Transport,
        branch: &str,
    ) -> Result<CheckOutcome, WorkerError> {
        self.call(|reply| Request::Check {
            transport,
            branch: branch.to_owned(),
            reply,
        })
        .await
    }

    /// Fetches now, whatever was fetched before (a webhook said a ref moved), and returns
    /// every branch and tag seen (full name → hex). Refs that moved are announced to their
    /// followers like any other fetch's, and what other transports fetched becomes stale.
    /// At most one per [`REFRESH_SPACING`] per repository: later callers wait their turn.
    pub async fn refresh(
        &self,
        transport: Transport,
    ) -> Result<BTreeMap<String, String>, WorkerError> {
        let now = tokio::time::Instant::now();
        let slot = {
            let mut next = self.next_refresh.lock().unwrap_or_else(|e| e.into_inner());
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + REFRESH_SPACING);
            slot
        };
        tokio::time::sleep_until(slot).await;
        self.call(|reply| Request::Refresh { transport, reply })
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
    // By the credential's identity, not the token: a refreshed App token sees the same refs.
    if let Some(https) = &t.https {
        h.update(b"\0https\0");
        h.update(https.identity.as_bytes());
        h.update(b"\0");
        h.update(https.username.as_bytes());
    }
    h.finalize().into()
}

/// The worker task's state; its methods are spread over the submodules by concern.
struct Worker {
    url: RepoUrl,
    cli: GitCli,
    /// Held while the worker runs: the mirror's exclusive owner.
    lease: Arc<tokio::sync::Mutex<()>>,
    mirror: Mirror,
    rx: mpsc::Receiver<Request>,
    /// Requests taken off the channel while collecting a push batch, in arrival order.
    pending: VecDeque<Request>,
    fetches: HashMap<TransportKey, FetchRecord>,
    heads: HeadCache,
    stats: Arc<Counters>,
    /// The last head seen of every ref (`None`: seen missing), to tell followers of a move.
    known: HashMap<String, Option<ObjectId>>,
    /// Whether any ref was seen yet: the refs of the first look are no news to anyone.
    seen_any: bool,
    moved: broadcast::Sender<RefMoved>,
    /// The histories walked for update checks lately, newest first (at most
    /// [`HISTORIES_KEPT`]): the AppSyncs of one repository ask about the same tip in turn.
    histories: VecDeque<mirror::HistoryIndex>,
}

/// Walks of history (tip, hidden) kept for the next update checks.
const HISTORIES_KEPT: usize = 4;

/// Starts the worker of `url` on the mirror `dir`. It serves nothing before it holds `lease`,
/// which a worker of the same repository that is still finishing holds until it ends: one
/// mirror never has two workers.
fn spawn_worker(
    url: RepoUrl,
    cli: GitCli,
    dir: PathBuf,
    timeout: Duration,
    lease: Arc<tokio::sync::Mutex<()>>,
    moved: broadcast::Sender<RefMoved>,
) -> WorkerHandle {
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let stats = Arc::new(Counters::default());
    let worker = Worker {
        url,
        cli,
        lease,
        mirror: Mirror::new(dir),
        rx,
        pending: VecDeque::new(),
        fetches: HashMap::new(),
        heads: HeadCache::default(),
        stats: stats.clone(),
        known: HashMap::new(),
        seen_any: false,
        moved,
        histories: VecDeque::new(),
    };
    tokio::spawn(worker.run());
    WorkerHandle {
        tx,
        stats,
        timeout,
        next_refresh: Arc::default(),
    }
}

/// Runs blocking mirror work off the async threads.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_keys_differ_by_key_and_policy() {
        let t = |key: Option<&str>, hk: HostKeyPolicy| Transport {
            private_key: key.map(|k| zeroize::Zeroizing::new(k.to_owned())),
            host_keys: hk,
            https: None,
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
        let https = |identity: &str, token: &str| {
            Transport::https(crate::git::cli::HttpsAuth {
                username: "x-access-token".into(),
                password: zeroize::Zeroizing::new(token.into()),
                ca_pem: None,
                identity: identity.into(),
                origin: "https://h".into(),
            })
        };
        assert_eq!(
            transport_key(&https("app:ns/s:1/2", "ghs_one")),
            transport_key(&https("app:ns/s:1/2", "ghs_two")),
            "a refreshed token is the same credential"
        );
        assert_ne!(
            transport_key(&https("app:ns/s:1/2", "t")),
            transport_key(&https("token:ns/s:abc", "t"))
        );
    }
}
