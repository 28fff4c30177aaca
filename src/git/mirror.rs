//! The repository worker's local bare mirror and the blocking gix work on it: fetch, reading
//! trees and blobs, writing blobs, trees and commits. Everything here blocks; the worker calls
//! it from `spawn_blocking` only, one call at a time per mirror.
//!
//! The mirror is a cache: it is reused across restarts and rebuilt from the remote when it is
//! missing or corrupt (see the worker's `repair`), so nothing in it is ever the only copy of
//! anything; it is never wiped because a fetch failed for another reason.

mod content;
mod history;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use gix::bstr::ByteSlice;
use gix::ObjectId;

use super::sign::{CommitSigner, SignError};

pub(crate) use content::{newer_layout, read_folder, read_meta, repo_state};
pub(crate) use history::{is_ancestor, HistoryIndex};

/// A failure of local git work (the mirror, gix), never of the remote. Carries no key material:
/// the only secret-adjacent input, the ssh command line, holds file paths only.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(crate) struct MirrorError(pub(crate) String);

fn err<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> MirrorError {
    move |e| MirrorError(format!("{what}: {e}"))
}

/// The remote's refs as advertised during the last fetch: full ref name to object id.
pub(crate) type RemoteRefs = BTreeMap<String, ObjectId>;

/// Where the mirror lives; cheap to clone into blocking closures.
#[derive(Clone, Debug)]
pub(crate) struct Mirror {
    dir: PathBuf,
}

fn open_options() -> gix::open::Options {
    // No system, global or environment configuration: the operator's behaviour must not depend
    // on the host it runs on.
    gix::open::Options::isolated()
}

impl Mirror {
    pub(crate) fn new(dir: PathBuf) -> Mirror {
        Mirror { dir }
    }

    /// The mirror's directory (the git dir of a bare repository).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens the mirror, (re)creating it when it is missing or unusable. The flag is `true`
    /// when a new, empty mirror was made (every cached view of its refs is then stale).
    pub(crate) fn open(&self) -> Result<(gix::Repository, bool), MirrorError> {
        if self.dir.exists() {
            match gix::open_opts(&self.dir, open_options()) {
                Ok(repo) if repo.is_bare() => return Ok((repo, false)),
                Ok(_) => {
                    tracing::warn!(mirror = %self.dir.display(), "mirror is not a bare repository; rebuilding it")
                }
                Err(e) => {
                    tracing::warn!(mirror = %self.dir.display(), error = %e, "mirror cannot be opened; rebuilding it")
                }
            }
        }
        self.rebuild()?;
        let repo =
            gix::open_opts(&self.dir, open_options()).map_err(err("opening the new mirror"))?;
        Ok((repo, true))
    }

    /// Removes the lock files (`*.lock`) and half-written packs a process killed inside a
    /// fetch or push leaves behind: git refuses every later ref update while they exist, and
    /// `fsck` calls such a mirror sound. Only for a worker that has just become the mirror's
    /// only owner. Returns how many were removed.
    pub(crate) fn clear_stale_locks(&self) -> usize {
        fn sweep(dir: &Path, depth: usize, removed: &mut usize) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    // Refs nest; objects hold only the pack directory's leftovers.
                    if depth < 64 && (name != "objects" || depth > 0) {
                        sweep(&path, depth + 1, removed);
                    }
                } else if (name.ends_with(".lock") || name.starts_with("tmp_pack_"))
                    && std::fs::remove_file(&path).is_ok()
                {
                    *removed += 1;
                }
            }
        }
        let mut removed = 0;
        sweep(&self.dir, 0, &mut removed);
        sweep(&self.dir.join("objects").join("pack"), 1, &mut removed);
        removed
    }

    /// The mirror's branches and tags (unpeeled), as a fetch by the git CLI left them: the
    /// mirror follows the remote (forced refspecs, `--prune`), so they are the remote's refs.
    pub(crate) fn local_refs(&self) -> Result<RemoteRefs, MirrorError> {
        let repo = gix::open_opts(&self.dir, open_options()).map_err(err("opening the mirror"))?;
        let platform = repo
            .references()
            .map_err(err("listing the mirror's refs"))?;
        let mut refs = RemoteRefs::new();
        for r in platform.all().map_err(err("listing the mirror's refs"))? {
            let r = r.map_err(|e| MirrorError(format!("reading a ref: {e}")))?;
            let name = r.name().as_bstr().to_str_lossy().into_owned();
            if !(name.starts_with("refs/heads/") || name.starts_with("refs/tags/")) {
                continue;
            }
            if let Some(id) = r.target().try_id() {
                refs.insert(name, id.to_owned());
            }
        }
        Ok(refs)
    }

    /// Deletes the mirror and makes a new empty one in its place.
    pub(crate) fn rebuild(&self) -> Result<(), MirrorError> {
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir).map_err(err("removing the old mirror"))?;
        }
        let parent = self
            .dir
            .parent()
            .ok_or_else(|| MirrorError("the mirror directory has no parent".into()))?;
        std::fs::create_dir_all(parent).map_err(err("creating the mirrors directory"))?;
        // Built aside and renamed into place, so a crash never leaves a half-made mirror.
        let tmp = tempfile::Builder::new()
            .prefix(".new-mirror-")
            .tempdir_in(parent)
            .map_err(err("creating a temporary directory"))?;
        let staged = tmp.path().join("repo.git");
        gix::init_bare(&staged).map_err(err("initialising the mirror"))?;
        std::fs::rename(&staged, &self.dir).map_err(err("moving the new mirror into place"))?;
        Ok(())
    }

    /// Fetches all branches and tags of `url` into the mirror (forced: the mirror follows the
    /// remote) and returns the refs the remote advertised. `ssh_command` goes to
    /// `core.sshCommand`; `interrupt` aborts a transfer that takes too long.
    pub(crate) fn fetch(
        &self,
        url: &str,
        ssh_command: &str,
        interrupt: &AtomicBool,
    ) -> Result<RemoteRefs, MirrorError> {
        use gix::remote::Direction;
        let options = open_options().config_overrides([
            // gix copies ssh's stderr to the process's stderr, outside structured logging;
            // failures are diagnosed with `git ls-remote` instead, which captures it.
            format!("core.sshCommand={ssh_command} 2>/dev/null"),
            "ssh.variant=ssh".to_string(),
            "protocol.version=2".to_string(),
            // Local repositories (file://) are a documented form of spec.repository.url.
            "protocol.file.allow=always".to_string(),
        ]);
        let repo = gix::open_opts(&self.dir, options).map_err(err("opening the mirror"))?;
        let parsed = gix::url::parse(url.as_bytes().as_bstr()).map_err(err("parsing the URL"))?;
        let remote = repo
            .remote_at(parsed)
            .map_err(err("setting up the remote"))?
            .with_refspecs(
                ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
                Direction::Fetch,
            )
            .map_err(err("setting the refspecs"))?
            .with_fetch_tags(gix::remote::fetch::Tags::None);
        let connection = remote
            .connect(Direction::Fetch)
            .map_err(err("connecting to the remote"))?;
        let outcome = connection
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(err("listing the remote's refs"))?
            .receive(gix::progress::Discard, interrupt)
            .map_err(err("fetching"))?;
        let mut refs = RemoteRefs::new();
        for remote_ref in &outcome.ref_map.remote_refs {
            let (name, target, _peeled) = remote_ref.unpack();
            if let (Some(target), Ok(name)) = (target, name.to_str()) {
                if name.starts_with("refs/heads/") || name.starts_with("refs/tags/") {
                    refs.insert(name.to_owned(), target.to_owned());
                }
            }
        }
        Ok(refs)
    }
}

/// Sets `refs/heads/<branch>` of the mirror to `id` (after a successful push).
pub(crate) fn set_branch(
    repo: &gix::Repository,
    branch: &str,
    id: ObjectId,
) -> Result<(), MirrorError> {
    repo.reference(
        format!("refs/heads/{branch}").as_str(),
        id,
        gix::refs::transaction::PreviousValue::Any,
        "tooljet-gitsync: pushed",
    )
    .map_err(err("updating the mirror's branch"))?;
    Ok(())
}

/// The commit `id` peels to, if it names a commit or an annotated tag of one.
pub(crate) fn peel_to_commit(
    repo: &gix::Repository,
    id: ObjectId,
) -> Result<Option<ObjectId>, MirrorError> {
    let Some(object) = repo.try_find_object(id).map_err(err("reading an object"))? else {
        return Ok(None);
    };
    Ok(object
        .peel_to_kind(gix::object::Kind::Commit)
        .ok()
        .map(|c| c.id))
}

/// Like [`peel_to_commit`] for an id a fetch brought in: the mirror must hold it, so its
/// absence is corruption (an error), not an unknown revision.
pub(crate) fn peel_fetched(
    repo: &gix::Repository,
    id: ObjectId,
) -> Result<Option<ObjectId>, MirrorError> {
    if !repo.has_object(id) {
        return Err(MirrorError(format!(
            "the mirror lacks object {id}, which a fetch brought in: it is corrupt"
        )));
    }
    peel_to_commit(repo, id)
}

/// A commit id given as (possibly abbreviated) hex, if the mirror holds it.
pub(crate) fn lookup_sha(
    repo: &gix::Repository,
    hex: &str,
) -> Result<Option<ObjectId>, MirrorError> {
    if !(4..=40).contains(&hex.len()) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    // Only hex reaches rev-parse, so no revision syntax (`@{..}`, `^`, `:path`) is interpreted.
    match repo.rev_parse_single(hex.to_ascii_lowercase().as_bytes().as_bstr()) {
        Ok(id) => peel_to_commit(repo, id.detach()),
        Err(_) => Ok(None),
    }
}

/// The tree of commit `commit`.
pub(crate) fn tree_of(repo: &gix::Repository, commit: ObjectId) -> Result<ObjectId, MirrorError> {
    repo.find_commit(commit)
        .map_err(err("reading a commit"))?
        .tree_id()
        .map(|id| id.detach())
        .map_err(err("reading a commit's tree"))
}

/// Writes `writes` and removes `deletes` on top of `tree`; returns the new tree's id.
pub(crate) fn edit_tree(
    repo: &gix::Repository,
    tree: ObjectId,
    writes: &[(String, Vec<u8>)],
    deletes: &[String],
) -> Result<ObjectId, MirrorError> {
    let mut editor = repo.edit_tree(tree).map_err(err("editing a tree"))?;
    for path in deletes {
        editor
            .remove(path.as_str())
            .map_err(err("removing a file"))?;
    }
    for (path, bytes) in writes {
        let blob = repo.write_blob(bytes).map_err(err("writing a blob"))?;
        editor
            .upsert(path.as_str(), gix::object::tree::EntryKind::Blob, blob)
            .map_err(err("adding a file"))?;
    }
    Ok(editor.write().map_err(err("writing a tree"))?.detach())
}

/// Who made a commit and when.
pub(crate) struct Signature<'a> {
    pub(crate) name: &'a str,
    pub(crate) email: &'a str,
    pub(crate) time: jiff::Timestamp,
}

/// Git would refuse (or mangle) these in a signature line; user input must not break a commit.
fn clean_ident(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '<' | '>' | '\n' | '\r' | '\0'))
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Why a commit was not written.
#[derive(Debug)]
pub(crate) enum CommitError {
    /// The mirror failed.
    Mirror(MirrorError),
    /// The signature could not be made; nothing was written (never an unsigned commit instead).
    Sign(SignError),
}

/// Writes a commit object (no ref is touched) and returns its id. With `signer`, the commit
/// carries git's SSH signature in a `gpgsig` header, made over the commit as it is without
/// that header (what `git verify-commit` checks).
pub(crate) fn write_commit(
    repo: &gix::Repository,
    tree: ObjectId,
    parent: Option<ObjectId>,
    message: &str,
    who: &Signature<'_>,
    signer: Option<&CommitSigner>,
) -> Result<ObjectId, CommitError> {
    let signature = gix::actor::Signature {
        name: clean_ident(who.name).into(),
        email: clean_ident(who.email).into(),
        time: gix::date::Time {
            seconds: who.time.as_second(),
            offset: 0,
        },
    };
    let mut message = message.trim_end().to_owned();
    message.push('\n');
    let mut commit = gix::objs::Commit {
        tree,
        parents: parent.into_iter().collect(),
        author: signature.clone(),
        committer: signature,
        encoding: None,
        message: message.into(),
        extra_headers: Vec::new(),
    };
    if let Some(signer) = signer {
        use gix::objs::WriteTo;
        let mut payload = Vec::new();
        commit
            .write_to(&mut payload)
            .map_err(err("serializing a commit"))
            .map_err(CommitError::Mirror)?;
        let armored = signer.sign(&payload).map_err(CommitError::Sign)?;
        // gix writes a multi-line value with git's continuation lines (a leading space).
        commit
            .extra_headers
            .push(("gpgsig".into(), armored.trim_end().into()));
    }
    Ok(repo
        .write_object(&commit)
        .map_err(err("writing a commit"))
        .map_err(CommitError::Mirror)?
        .detach())
}

/// The parts of a commit the API reports.
pub(crate) struct CommitFacts {
    pub(crate) message: String,
    pub(crate) author: String,
    pub(crate) seconds: i64,
}

/// Message, author name and author time of `commit`.
pub(crate) fn commit_facts(
    repo: &gix::Repository,
    commit: ObjectId,
) -> Result<CommitFacts, MirrorError> {
    let commit = repo.find_commit(commit).map_err(err("reading a commit"))?;
    let message = commit
        .message_raw()
        .map_err(err("reading a commit message"))?
        .to_str_lossy()
        .trim_end()
        .to_owned();
    let author = commit.author().map_err(err("reading a commit author"))?;
    let seconds = author.seconds();
    Ok(CommitFacts {
        message,
        author: author.name.to_str_lossy().trim().to_owned(),
        seconds,
    })
}
