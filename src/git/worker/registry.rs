//! The registry of repository workers: one per repository ([`RepoUrl::identity`]), started on
//! first use, forgotten when no config uses its repository any more.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{spawn_worker, WorkerHandle};
use crate::git::cli::GitCli;
use crate::git::url::RepoUrl;

/// A caller waits at most this many fetch timeouts for its answer (queueing included): every
/// remote operation of a worker has its own deadline, so this only ends the wait for a worker
/// that is stuck behind a slow repository (or in a bug).
const REQUEST_TIMEOUT_FETCHES: u32 = 3;
/// Ref moves kept for a receiver that is behind.
pub const MOVES_BUFFERED: usize = 1024;

/// All repository workers of the operator, keyed by [`RepoUrl::identity`], so that every
/// AppSync and GitSyncConfig of one repository goes through the same worker.
#[derive(Clone)]
pub struct Workers {
    inner: Arc<WorkersInner>,
}

struct WorkersInner {
    cli: GitCli,
    mirrors_dir: PathBuf,
    request_timeout: Duration,
    /// Every worker's ref moves, for the controllers to re-run what follows them.
    moved: tokio::sync::broadcast::Sender<super::RefMoved>,
    /// Locked only to look up, insert or remove entries, never across a request or any IO.
    registry: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    workers: HashMap<String, WorkerHandle>,
    /// Per repository, the lease its running worker holds (see [`spawn_worker`]); outlives a
    /// forgotten worker that is still finishing, so its successor waits for it.
    leases: HashMap<String, Weak<tokio::sync::Mutex<()>>>,
}

impl Workers {
    /// `mirrors_dir` holds one bare mirror per repository (`<mirrors_dir>/<hash of identity>`),
    /// reused across restarts.
    ///
    /// Callers wait for an answer up to [`REQUEST_TIMEOUT_FETCHES`] fetch timeouts, plus one
    /// command timeout.
    pub fn new(cli: GitCli, mirrors_dir: PathBuf) -> Workers {
        let request_timeout = cli
            .fetch_timeout()
            .saturating_mul(REQUEST_TIMEOUT_FETCHES)
            .saturating_add(cli.timeout());
        Workers::with_request_timeout(cli, mirrors_dir, request_timeout)
    }

    /// Like [`Workers::new`], with the longest wait of a caller for an answer given.
    pub fn with_request_timeout(
        cli: GitCli,
        mirrors_dir: PathBuf,
        request_timeout: Duration,
    ) -> Workers {
        Workers {
            inner: Arc::new(WorkersInner {
                cli,
                mirrors_dir,
                request_timeout,
                moved: tokio::sync::broadcast::channel(MOVES_BUFFERED).0,
                registry: Mutex::default(),
            }),
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The worker of `url`'s repository, started on first use (needs a tokio runtime).
    pub fn get(&self, url: &RepoUrl) -> WorkerHandle {
        let identity = url.identity();
        let mut registry = self.registry();
        if let Some(handle) = registry.workers.get(&identity) {
            if !handle.tx.is_closed() {
                return handle.clone();
            }
            tracing::warn!(repository = %identity, "repository worker had stopped; starting a new one");
        }
        let lease = registry
            .leases
            .get(&identity)
            .and_then(Weak::upgrade)
            .unwrap_or_default();
        registry
            .leases
            .insert(identity.clone(), Arc::downgrade(&lease));
        let dir = self.inner.mirrors_dir.join(mirror_dir_name(&identity));
        let handle = spawn_worker(
            url.clone(),
            self.inner.cli.clone(),
            dir,
            self.inner.request_timeout,
            lease,
            self.inner.moved.clone(),
        );
        registry.workers.insert(identity, handle.clone());
        handle
    }

    /// Drops the worker of the repository `identity` (its caches and fetch records go with
    /// it once its last request is answered; the mirror stays on disk). A later
    /// [`Workers::get`] starts a new one, which waits for the old one to finish. Returns
    /// whether there was one.
    pub fn forget(&self, identity: &str) -> bool {
        let mut registry = self.registry();
        let removed = registry.workers.remove(identity).is_some();
        registry.leases.retain(|_, lease| lease.strong_count() > 0);
        if removed {
            tracing::info!(repository = %identity, "repository worker dropped: no config uses the repository any more");
        }
        removed
    }

    /// The ref moves every worker sees from now on. A receiver that lags behind by more than
    /// [`MOVES_BUFFERED`] moves misses the oldest (their followers re-check at their interval).
    pub fn moves(&self) -> tokio::sync::broadcast::Receiver<super::RefMoved> {
        self.inner.moved.subscribe()
    }

    /// Whether a worker is registered for the repository `identity`.
    pub fn contains(&self, identity: &str) -> bool {
        self.registry().workers.contains_key(identity)
    }
}

/// Directory name of a repository's mirror: stable, filesystem-safe, and free of the URL.
fn mirror_dir_name(identity: &str) -> String {
    let digest = Sha256::digest(identity.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
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
}
