//! Read requests: an app's files at a revision, a branch's remote head, and the newest commit
//! touching an app (update checks). Each is answered from the last fetch or `ls-remote` when
//! that is younger than the caller's `max_age`, so many AppSyncs share one remote call.

use std::collections::BTreeMap;
use std::time::Duration;

use gix::ObjectId;

use super::error::internal;
use super::{
    blocking, bump, commit_info, transport_key, AppAt, CommitInfo, Snapshot, TransportKey, Worker,
    WorkerError, HISTORIES_KEPT,
};
use crate::git::check::ls_remote_branch;
use crate::git::cli::Transport;
use crate::git::mirror::{self, HistoryIndex};
use crate::layout::{self, AppLookup, LocateError};

impl Worker {
    pub(super) async fn snapshot(
        &mut self,
        transport: &Transport,
        revision: &str,
        folders: Vec<String>,
        max_age: Duration,
    ) -> Result<Snapshot, WorkerError> {
        let (key, session) = self.fetch_if_older(transport, max_age).await?;
        let Some(commit) = self.resolve(transport, key, session, revision).await? else {
            return self.unresolved(key, revision).map(|()| Snapshot::default());
        };
        let mirror = self.mirror.clone();
        blocking(move || {
            let (repo, _) = mirror.open().map_err(internal)?;
            let (tree, meta_json) = meta_at(&repo, commit)?;
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

    pub(super) async fn app_at(
        &mut self,
        transport: &Transport,
        revision: &str,
        app: &str,
        max_age: Duration,
    ) -> Result<AppAt, WorkerError> {
        let (key, session) = self.fetch_if_older(transport, max_age).await?;
        let Some(commit) = self.resolve(transport, key, session, revision).await? else {
            return self.unresolved(key, revision).map(|()| AppAt {
                commit: None,
                located: Err(LocateError::NoMeta),
                files: BTreeMap::new(),
                touching: None,
            });
        };
        let mirror = self.mirror.clone();
        let app = app.to_owned();
        let mut index = self.history(commit, None);
        let (at, index) = blocking(move || {
            let (repo, _) = mirror.open().map_err(internal)?;
            let (tree, meta_json) = meta_at(&repo, commit)?;
            let located = layout::locate_app(meta_json.as_deref(), AppLookup::of_spec(&app));
            let mut files = BTreeMap::new();
            let mut touching = None;
            if let Ok(l) = &located {
                let folder = l.path.split('/').next().unwrap_or_default();
                mirror::read_folder(&repo, tree, folder, &mut files).map_err(internal)?;
                if let Some(found) = index
                    .last_touching(&repo, folder, &l.git_app_id)
                    .map_err(internal)?
                {
                    let facts = mirror::commit_facts(&repo, found).map_err(internal)?;
                    touching = Some(commit_info(found, facts));
                }
            }
            let facts = mirror::commit_facts(&repo, commit).map_err(internal)?;
            let at = AppAt {
                commit: Some(commit_info(commit, facts)),
                located,
                files,
                touching,
            };
            Ok((at, index))
        })
        .await?;
        self.keep_history(index);
        Ok(at)
    }

    /// The history walk from `tip` hiding `hidden` walked before, else a new one.
    fn history(&mut self, tip: ObjectId, hidden: Option<ObjectId>) -> HistoryIndex {
        match self.histories.iter().position(|h| h.is_for(tip, hidden)) {
            Some(at) => self.histories.remove(at),
            None => None,
        }
        .unwrap_or_else(|| HistoryIndex::new(tip, hidden))
    }

    /// Keeps a walk for the next requests; one that walked nothing (the answer needed no
    /// history) would only push out a useful one.
    fn keep_history(&mut self, index: HistoryIndex) {
        if index.is_empty() {
            return;
        }
        self.histories.push_front(index);
        self.histories.truncate(HISTORIES_KEPT);
    }

    pub(super) async fn remote_head(
        &mut self,
        transport: &Transport,
        branch: &str,
        max_age: Duration,
    ) -> Result<Option<String>, WorkerError> {
        let key = transport_key(transport);
        if let Some(head) = self.heads.fresh(key, branch, max_age) {
            return Ok(head);
        }
        // A fetch is a ref check too.
        if let Some(record) = self.fetches.get(&key) {
            if !record.stale && record.at.elapsed() <= max_age {
                let refname = format!("refs/heads/{branch}");
                return Ok(record.refs.get(&refname).map(|id| id.to_string()));
            }
        }
        let session = self.cli.session(transport).map_err(WorkerError::Git)?;
        bump(&self.stats.ls_remotes, 1);
        tracing::debug!(repository = %self.url, branch, ?max_age, "ls-remote");
        let head = ls_remote_branch(&session, &self.url, branch)
            .await
            .map_err(WorkerError::Git)?;
        self.heads.record(key, branch, head.clone());
        let id = head
            .as_deref()
            .and_then(|h| gix::ObjectId::from_hex(h.as_bytes()).ok());
        self.saw(&format!("refs/heads/{branch}"), id);
        self.seen_any = true;
        Ok(head)
    }

    pub(super) async fn last_commit(
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
            return self.unresolved(key, revision).map(|()| None);
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
        let mut index = self.history(tip, hidden);
        let (found, index) = blocking(move || {
            let (repo, _) = mirror.open().map_err(internal)?;
            let found = match hidden {
                // Rewound or replaced: the history between them says nothing about the app.
                Some(old) if !mirror::is_ancestor(&repo, old, tip).map_err(internal)? => tip,
                _ => match index
                    .last_touching(&repo, &folder, &app_id)
                    .map_err(internal)?
                {
                    Some(found) => found,
                    None => return Ok((None, index)),
                },
            };
            let facts = mirror::commit_facts(&repo, found).map_err(internal)?;
            Ok((Some(commit_info(found, facts)), index))
        })
        .await?;
        self.keep_history(index);
        Ok(found)
    }

    /// A fetch now with `transport`, answering the refs it saw.
    pub(super) async fn refresh(
        &mut self,
        transport: &Transport,
    ) -> Result<BTreeMap<String, String>, WorkerError> {
        let (key, _) = self.fetch_if_older(transport, Duration::ZERO).await?;
        Ok(self
            .fetches
            .get(&key)
            .map(|r| {
                r.refs
                    .iter()
                    .map(|(name, id)| (name.clone(), id.to_string()))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Whether `ancestor` is `descendant` or in its history (fetching at most once per
    /// `max_age`). An `ancestor` the mirror lacks after the fetch is in no history of the
    /// remote, so it is none of `descendant`'s; a missing `descendant` is
    /// [`WorkerError::RevisionNotFound`].
    pub(super) async fn is_ancestor(
        &mut self,
        transport: &Transport,
        ancestor: &str,
        descendant: &str,
        max_age: Duration,
    ) -> Result<bool, WorkerError> {
        let (key, session) = self.fetch_if_older(transport, max_age).await?;
        let Some(descendant_id) = self.resolve(transport, key, session, descendant).await? else {
            return Err(WorkerError::RevisionNotFound {
                revision: descendant.to_owned(),
            });
        };
        let Some(ancestor_id) = self.resolve_local(key, ancestor).await? else {
            return Ok(false);
        };
        let mirror = self.mirror.clone();
        blocking(move || {
            let (repo, _) = mirror.open().map_err(internal)?;
            mirror::is_ancestor(&repo, ancestor_id, descendant_id).map_err(internal)
        })
        .await
    }

    /// A revision that did not resolve: fine (`Ok`, nothing to read) when it names a branch of
    /// a repository without any branch yet, else [`WorkerError::RevisionNotFound`].
    fn unresolved(&self, key: TransportKey, revision: &str) -> Result<(), WorkerError> {
        if !self.has_branches(key) && is_branch_like(revision) {
            return Ok(());
        }
        Err(WorkerError::RevisionNotFound {
            revision: revision.to_owned(),
        })
    }
}

/// The tree of `commit` and its `.meta/meta.json`, refusing a tree in ToolJet's newer layout.
fn meta_at(
    repo: &gix::Repository,
    commit: ObjectId,
) -> Result<(ObjectId, Option<Vec<u8>>), WorkerError> {
    let tree = mirror::tree_of(repo, commit).map_err(internal)?;
    if let Some(evidence) = mirror::newer_layout(repo, tree).map_err(internal)? {
        return Err(WorkerError::UnsupportedLayout { evidence });
    }
    let meta_json = mirror::read_meta(repo, tree).map_err(internal)??;
    Ok((tree, meta_json))
}

/// Whether `revision` could name a branch (not a full sha), for the empty-repository case.
fn is_branch_like(revision: &str) -> bool {
    !(revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit()))
}
