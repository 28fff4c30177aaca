//! Reading the repository's content as ToolJet's layout: `.meta/meta.json` (refused when it
//! is no regular file), the files of app folders, what the push planner needs, and the marks
//! of ToolJet's newer GitSync layout, which the operator refuses.

use std::collections::{BTreeMap, BTreeSet};

use gix::ObjectId;

use super::{err, MirrorError};
use crate::layout::{folders_to_read, PlanError, RepoState, META_PATH};

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
pub(super) fn entry_id(
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
