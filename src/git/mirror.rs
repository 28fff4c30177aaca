//! The repository worker's local bare mirror and the blocking gix work on it: fetch, reading
//! trees and blobs, writing blobs, trees and commits. Everything here blocks; the worker calls
//! it from `spawn_blocking` only, one call at a time per mirror.
//!
//! The mirror is a cache: it is reused across restarts and rebuilt from the remote when it is
//! missing or corrupt (see the worker's `repair`), so nothing in it is ever the only copy of
//! anything; it is never wiped because a fetch failed for another reason.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use gix::bstr::ByteSlice;
use gix::ObjectId;
use serde_json::Value;

use crate::layout::{folders_to_read, PlanError, RepoState, META_PATH};

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

/// What an entry is, for messages.
fn entry_kind(mode: gix::object::tree::EntryMode) -> &'static str {
    if mode.is_link() {
        "a symbolic link"
    } else if mode.is_tree() {
        "a directory"
    } else if mode.is_commit() {
        "a submodule"
    } else {
        "a file"
    }
}

/// `.meta/meta.json` of `tree` (`None` when absent). Refused when it is a symlink, a directory
/// or a submodule, or `.meta` is no directory: ToolJet never writes those, and a push must not
/// replace them (nor a pull read through them). The inner error is the repository's content.
pub(crate) fn read_meta(
    repo: &gix::Repository,
    tree: ObjectId,
) -> Result<Result<Option<Vec<u8>>, PlanError>, MirrorError> {
    let root = repo.find_tree(tree).map_err(err("reading a tree"))?;
    let (dir, _) = META_PATH.split_once('/').unwrap_or((META_PATH, ""));
    let Some(meta_dir) = root
        .lookup_entry([dir.as_bytes()])
        .map_err(err("looking up a path"))?
    else {
        return Ok(Ok(None));
    };
    if !meta_dir.mode().is_tree() {
        return Ok(Err(PlanError::NotInLayout {
            path: dir.to_owned(),
            found: entry_kind(meta_dir.mode()),
            expected: "a directory",
        }));
    }
    let Some(entry) = root
        .lookup_entry(META_PATH.split('/').map(str::as_bytes))
        .map_err(err("looking up a path"))?
    else {
        return Ok(Ok(None));
    };
    if !entry.mode().is_blob() {
        return Ok(Err(PlanError::NotInLayout {
            path: META_PATH.to_owned(),
            found: entry_kind(entry.mode()),
            expected: "a regular file",
        }));
    }
    let blob = repo
        .find_blob(entry.object_id())
        .map_err(err("reading a blob"))?;
    Ok(Ok(Some(blob.data.clone())))
}

/// Files only ToolJet's newer GitSync (2.0, "meta" era) writes into `.meta/`.
const NEWER_META_FILES: [&str; 4] = [
    "appMeta.json",
    "moduleMeta.json",
    "workflowMeta.json",
    "dataSourceMeta.json",
];
/// Resource folders of the newer layout, each holding `<name>/app/app.json` or
/// `<folder>/<name>/app/app.json`.
const NEWER_RESOURCE_FOLDERS: [&str; 3] = ["apps", "modules", "workflows"];

/// A path of `tree` that only ToolJet's newer GitSync layout has (see
/// tooljet-gitsync2-layout.md §4.1: `.meta/appMeta.json` and friends, `apps/<name>/app/app.json`
/// or `apps/<folder>/<name>/app/app.json`, `data-sources/<name>/data-source.json`), if any. A
/// legacy app folder holds version files only, so it never matches, whatever the app's name.
pub(crate) fn newer_layout(
    repo: &gix::Repository,
    tree: ObjectId,
) -> Result<Option<String>, MirrorError> {
    let root = repo.find_tree(tree).map_err(err("reading a tree"))?;
    for file in NEWER_META_FILES {
        let path = format!(".meta/{file}");
        if mode_at(&root, &path)?.is_some() {
            return Ok(Some(path));
        }
    }
    for folder in NEWER_RESOURCE_FOLDERS {
        for child in subtrees(repo, &root, folder)? {
            let direct = format!("{child}/app/app.json");
            if mode_at(&root, &direct)?.is_some() {
                return Ok(Some(direct));
            }
            for grandchild in subtrees(repo, &root, &child)? {
                let nested = format!("{grandchild}/app/app.json");
                if mode_at(&root, &nested)?.is_some() {
                    return Ok(Some(nested));
                }
            }
        }
    }
    for child in subtrees(repo, &root, "data-sources")? {
        let path = format!("{child}/data-source.json");
        if mode_at(&root, &path)?.is_some() {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// The mode of the entry at `path` below `root`, if there is one.
fn mode_at(
    root: &gix::Tree<'_>,
    path: &str,
) -> Result<Option<gix::object::tree::EntryMode>, MirrorError> {
    Ok(root
        .lookup_entry(path.split('/').map(str::as_bytes))
        .map_err(err("looking up a path"))?
        .map(|e| e.mode()))
}

/// The paths of the directories directly below the directory `path` of `root`.
fn subtrees(
    repo: &gix::Repository,
    root: &gix::Tree<'_>,
    path: &str,
) -> Result<Vec<String>, MirrorError> {
    let Some(entry) = root
        .lookup_entry(path.split('/').map(str::as_bytes))
        .map_err(err("looking up a path"))?
    else {
        return Ok(Vec::new());
    };
    if !entry.mode().is_tree() {
        return Ok(Vec::new());
    }
    let tree = repo
        .find_tree(entry.object_id())
        .map_err(err("reading a tree"))?;
    let decoded = tree.decode().map_err(err("decoding a tree"))?;
    Ok(decoded
        .entries
        .iter()
        .filter(|e| e.mode.is_tree())
        .map(|e| format!("{path}/{}", String::from_utf8_lossy(e.filename)))
        .collect())
}

/// The id of the entry at `path` in `tree` (any kind), if present.
fn entry_id(
    repo: &gix::Repository,
    tree: ObjectId,
    path: &str,
) -> Result<Option<ObjectId>, MirrorError> {
    let tree = repo.find_tree(tree).map_err(err("reading a tree"))?;
    Ok(tree
        .lookup_entry(path.split('/').map(|c| c.as_bytes()))
        .map_err(err("looking up a path"))?
        .map(|e| e.object_id()))
}

/// Every regular file below the folder `folder` of `tree`, keyed by repo-relative path.
pub(crate) fn read_folder(
    repo: &gix::Repository,
    tree: ObjectId,
    folder: &str,
    out: &mut BTreeMap<String, Vec<u8>>,
) -> Result<(), MirrorError> {
    let root = repo.find_tree(tree).map_err(err("reading a tree"))?;
    let Some(entry) = root
        .lookup_entry(folder.split('/').map(|c| c.as_bytes()))
        .map_err(err("looking up a folder"))?
    else {
        return Ok(());
    };
    if entry.mode().is_tree() {
        collect_files(repo, entry.object_id(), folder, out)?;
    }
    Ok(())
}

fn collect_files(
    repo: &gix::Repository,
    tree: ObjectId,
    prefix: &str,
    out: &mut BTreeMap<String, Vec<u8>>,
) -> Result<(), MirrorError> {
    let tree = repo.find_tree(tree).map_err(err("reading a tree"))?;
    let decoded = tree.decode().map_err(err("decoding a tree"))?;
    for entry in &decoded.entries {
        let name = String::from_utf8_lossy(entry.filename);
        let path = format!("{prefix}/{name}");
        if entry.mode.is_tree() {
            collect_files(repo, entry.oid.to_owned(), &path, out)?;
        } else if entry.mode.is_blob() {
            let blob = repo
                .find_blob(entry.oid.to_owned())
                .map_err(err("reading a blob"))?;
            out.insert(path, blob.data.clone());
        }
        // Symlinks and submodules are not ToolJet's; they are left alone.
    }
    Ok(())
}

/// What the push planner needs to know about `tree` for a push of `app_id`. The inner error is
/// the repository's content (an unreadable meta.json), the outer one the mirror.
pub(crate) fn repo_state(
    repo: &gix::Repository,
    tree: ObjectId,
    has_head: bool,
    app_id: &str,
) -> Result<Result<RepoState, PlanError>, MirrorError> {
    let root = repo.find_tree(tree).map_err(err("reading a tree"))?;
    let decoded = root.decode().map_err(err("decoding a tree"))?;
    let root_entries: BTreeSet<String> = decoded
        .entries
        .iter()
        .map(|e| String::from_utf8_lossy(e.filename).into_owned())
        .collect();
    let meta_json = match read_meta(repo, tree)? {
        Ok(meta) => meta,
        Err(refused) => return Ok(Err(refused)),
    };
    let folders = match folders_to_read(meta_json.as_deref(), app_id) {
        Ok(folders) => folders,
        Err(e) => return Ok(Err(e.into())),
    };
    let mut files = BTreeMap::new();
    for folder in folders {
        read_folder(repo, tree, &folder, &mut files)?;
    }
    Ok(Ok(RepoState {
        has_head,
        meta_json,
        root_entries,
        files,
    }))
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

/// Writes a commit object (no ref is touched) and returns its id.
pub(crate) fn write_commit(
    repo: &gix::Repository,
    tree: ObjectId,
    parent: Option<ObjectId>,
    message: &str,
    who: &Signature<'_>,
) -> Result<ObjectId, MirrorError> {
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
    let commit = gix::objs::Commit {
        tree,
        parents: parent.into_iter().collect(),
        author: signature.clone(),
        committer: signature,
        encoding: None,
        message: message.into(),
        extra_headers: Vec::new(),
    };
    Ok(repo
        .write_object(&commit)
        .map_err(err("writing a commit"))?
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

/// Whether `ancestor` is `descendant` or in its history.
pub(crate) fn is_ancestor(
    repo: &gix::Repository,
    ancestor: ObjectId,
    descendant: ObjectId,
) -> Result<bool, MirrorError> {
    if ancestor == descendant {
        return Ok(true);
    }
    let base = repo
        .merge_base(ancestor, descendant)
        .map_err(err("finding a merge base"))?;
    Ok(base.is_some_and(|b| b.detach() == ancestor))
}

/// What identifies the state of one app in a tree: its folder's tree id and the id of
/// `.meta/meta.json` (whose entry for the app is compared only when the file differs).
#[derive(Clone, PartialEq, Eq)]
struct AppFingerprint {
    folder: Option<ObjectId>,
    meta: Option<ObjectId>,
}

/// Finds the newest commit reachable from `tip` but not from `hidden` that changed the folder
/// `folder` or the meta.json entry `app_id`. A merge counts only when it differs from every
/// parent (like `git log -- <path>`): taking one side's version unchanged is not a change.
pub(crate) fn last_commit_touching(
    repo: &gix::Repository,
    tip: ObjectId,
    hidden: Option<ObjectId>,
    folder: &str,
    app_id: &str,
) -> Result<Option<ObjectId>, MirrorError> {
    use gix::revision::walk::Sorting;
    use gix::traverse::commit::simple::CommitTimeOrder;

    let mut fingerprints: HashMap<ObjectId, AppFingerprint> = HashMap::new();
    let mut entries: HashMap<ObjectId, Option<Value>> = HashMap::new();
    let mut fingerprint = |repo: &gix::Repository, commit: ObjectId| {
        if let Some(fp) = fingerprints.get(&commit) {
            return Ok::<_, MirrorError>(fp.clone());
        }
        let tree = tree_of(repo, commit)?;
        let fp = AppFingerprint {
            folder: entry_id(repo, tree, folder)?,
            meta: entry_id(repo, tree, META_PATH)?,
        };
        fingerprints.insert(commit, fp.clone());
        Ok(fp)
    };
    let mut entry_of = |repo: &gix::Repository, blob: Option<ObjectId>| {
        let Some(blob) = blob else {
            return Ok::<_, MirrorError>(None);
        };
        if let Some(v) = entries.get(&blob) {
            return Ok(v.clone());
        }
        let data = repo.find_blob(blob).map_err(err("reading meta.json"))?;
        let entry = serde_json::from_slice::<Value>(&data.data)
            .ok()
            .and_then(|v| v.get(app_id).cloned());
        entries.insert(blob, entry.clone());
        Ok(entry)
    };

    let walk = repo
        .rev_walk([tip])
        .sorting(Sorting::ByCommitTime(CommitTimeOrder::NewestFirst))
        .with_hidden(hidden)
        .all()
        .map_err(err("walking the history"))?;
    for info in walk {
        let info = info.map_err(err("walking the history"))?;
        let id = info.id;
        let mine = fingerprint(repo, id)?;
        let parents: Vec<ObjectId> = info.parent_ids().map(|p| p.detach()).collect();
        let touched = if parents.is_empty() {
            mine.folder.is_some() || entry_of(repo, mine.meta)?.is_some()
        } else {
            let mut differs_from_all = true;
            for parent in parents {
                let theirs = fingerprint(repo, parent)?;
                let same = theirs.folder == mine.folder
                    && (theirs.meta == mine.meta
                        || entry_of(repo, theirs.meta)? == entry_of(repo, mine.meta)?);
                if same {
                    differs_from_all = false;
                    break;
                }
            }
            differs_from_all
        };
        if touched {
            return Ok(Some(id));
        }
    }
    Ok(None)
}
