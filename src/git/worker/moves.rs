//! Ref moves: the worker remembers the last head it saw of every ref and, when one moves,
//! marks what other transports fetched as stale and tells the followers (Pull AppSyncs and
//! sets) through the registry's broadcast channel.

use gix::ObjectId;

use super::Worker;
use crate::git::mirror;

/// A ref of a repository the worker saw at a new commit (or appear, or go): by a fetch, an
/// `ls-remote`, or its own push. Pull AppSyncs and sets that follow the ref re-check at once
/// instead of at their next interval. Names no commit and no content: every follower re-reads
/// with its own credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefMoved {
    /// The repository ([`RepoUrl::identity`]).
    pub repository: String,
    /// The full ref name (`refs/heads/main`, `refs/tags/v1`).
    pub reference: String,
}

impl RefMoved {
    /// Whether a follower of `revision` (a branch, a tag, or a full ref name) cares.
    pub fn concerns(&self, repository: &str, revision: &str) -> bool {
        self.repository == repository
            && (self.reference == revision
                || self.reference.strip_prefix("refs/heads/") == Some(revision)
                || self.reference.strip_prefix("refs/tags/") == Some(revision))
    }
}

impl Worker {
    /// Records the head of `reference` as seen now, telling followers when it moved. The
    /// first sight of a ref after the worker started counts as a move only when the ref was
    /// already looked for (a branch created after a pass saw it missing).
    pub(super) fn saw(&mut self, reference: &str, head: Option<ObjectId>) {
        let before = self.known.insert(reference.to_owned(), head);
        let moved = match before {
            Some(prev) => prev != head,
            None => head.is_some() && self.seen_any,
        };
        if moved {
            tracing::debug!(repository = %self.url, reference, "ref moved");
            // What other transports (configs) fetched is out of date now; each learns the move
            // with its own credentials at its next read, never from another's fetch.
            for record in self.fetches.values_mut() {
                if record.refs.get(reference) != head.as_ref() {
                    record.stale = true;
                }
            }
            if let Some(branch) = reference.strip_prefix("refs/heads/") {
                let hex = head.map(|h| h.to_string());
                self.heads.forget_other(branch, hex.as_deref());
            }
            // No receiver (no controller running, e.g. in tests) is not an error.
            let _ = self.moved.send(RefMoved {
                repository: self.url.identity(),
                reference: reference.to_owned(),
            });
        }
    }

    /// Records every ref of a fetch; refs seen before and missing from it are gone.
    pub(super) fn saw_all(&mut self, refs: &mirror::RemoteRefs) {
        let gone: Vec<String> = self
            .known
            .iter()
            .filter(|(name, head)| head.is_some() && !refs.contains_key(*name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            self.saw(&name, None);
        }
        for (name, id) in refs {
            self.saw(name, Some(*id));
        }
        self.seen_any = true;
    }
}
