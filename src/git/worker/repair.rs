//! When the mirror is rebuilt: only when it is corrupt (it cannot be opened, or git finds
//! objects missing or unreadable), never because a fetch, push or read failed for another
//! reason. A mirror is a cache, but rebuilding it means fetching the whole history again: a
//! large repository rebuilt on every transient failure would never converge, and a mirror is
//! shared by every config of its repository, so one config's failure must not cost the others.

use super::{Worker, WorkerError};
use crate::git::classify::GitFailureKind;
use crate::git::cli::{HostKeyPolicy, Transport};

/// What git's check of the mirror found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Soundness {
    /// Every ref's history is complete and readable.
    Sound,
    /// Objects are missing or unreadable, or it is no repository.
    Corrupt(String),
    /// The check could not tell (it timed out, git could not start).
    Unknown(String),
}

impl Worker {
    /// Checks the mirror with `git fsck --connectivity-only` (every object reachable from a
    /// ref is present and parses; blob contents are not hashed, so it stays cheap) and
    /// rebuilds it when corrupt. Returns whether it was rebuilt.
    pub(super) async fn repair_if_corrupt(&mut self) -> Result<bool, WorkerError> {
        match self.soundness().await {
            Soundness::Sound => Ok(false),
            Soundness::Unknown(why) => {
                tracing::warn!(repository = %self.url, why, "could not check the mirror; keeping it");
                Ok(false)
            }
            Soundness::Corrupt(why) => {
                tracing::warn!(repository = %self.url, why, "the mirror is corrupt; rebuilding it from the remote");
                self.rebuild_mirror().await?;
                Ok(true)
            }
        }
    }

    /// After a request failed locally: the mirror is repaired if that was corruption.
    pub(super) async fn after_local_failure<T>(&mut self, result: &Result<T, WorkerError>) {
        if matches!(result, Err(WorkerError::Internal(_))) {
            if let Err(e) = self.repair_if_corrupt().await {
                tracing::warn!(repository = %self.url, error = %e, "repairing the mirror failed");
            }
        }
    }

    async fn soundness(&self) -> Soundness {
        if !self.mirror.dir().join("HEAD").exists() {
            return Soundness::Corrupt("the mirror has no HEAD".into());
        }
        // A local command: no key, no remote.
        let local = Transport {
            private_key: None,
            host_keys: HostKeyPolicy::TrustOnFirstUse,
            https: None,
        };
        let session = match self.cli.session(&local) {
            Ok(s) => s,
            Err(f) => return Soundness::Unknown(f.detail),
        };
        let dir = self.mirror.dir().to_path_buf();
        let args = [
            "fsck",
            "--connectivity-only",
            "--no-dangling",
            "--no-progress",
        ];
        match session.run(args, Some(&dir), None, &[]).await {
            Ok(_) => Soundness::Sound,
            Err(f) if f.kind == GitFailureKind::Unreachable => Soundness::Unknown(f.detail),
            Err(f) if f.detail.starts_with("cannot start git") => Soundness::Unknown(f.detail),
            Err(f) => Soundness::Corrupt(f.detail),
        }
    }
}
