//! History questions answered in the mirror: ancestry, and the newest commit that touched an
//! app (update checks).

use std::collections::HashMap;

use gix::ObjectId;
use serde_json::Value;

use super::content::entry_id;
use super::{err, tree_of, MirrorError};
use crate::layout::META_PATH;

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
    let mut raw_entries: HashMap<ObjectId, Option<Box<str>>> = HashMap::new();
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
    // The app's entry as written, without building the whole file (every commit of a batch
    // changes meta.json, and a walk compares it at each): equal text is an equal entry.
    let mut raw_entry_of = |repo: &gix::Repository, blob: Option<ObjectId>| {
        let Some(blob) = blob else {
            return Ok::<_, MirrorError>(None);
        };
        if let Some(v) = raw_entries.get(&blob) {
            return Ok(v.clone());
        }
        let data = repo.find_blob(blob).map_err(err("reading meta.json"))?;
        let entry = raw_entry(&data.data, app_id);
        raw_entries.insert(blob, entry.clone());
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
                    && (theirs.meta == mine.meta || {
                        let (a, b) = (
                            raw_entry_of(repo, theirs.meta)?,
                            raw_entry_of(repo, mine.meta)?,
                        );
                        a == b
                            // Written differently (another writer's formatting): compare
                            // the entries' values.
                            || entry_of(repo, theirs.meta)? == entry_of(repo, mine.meta)?
                    });
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

/// The text of `app_id`'s entry in a meta.json, read without building the file's values;
/// `None` when the file is no JSON object or has no such entry.
fn raw_entry(data: &[u8], app_id: &str) -> Option<Box<str>> {
    let map: HashMap<std::borrow::Cow<'_, str>, &serde_json::value::RawValue> =
        serde_json::from_slice(data).ok()?;
    map.get(app_id).map(|v| v.get().into())
}
