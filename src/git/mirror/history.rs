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
    // The entry's value, from its own text: another entry that serde_json cannot hold as a
    // value (say `1e400`) does not hide this one.
    let mut entry_of = |repo: &gix::Repository, blob: Option<ObjectId>| {
        let Some(blob) = blob else {
            return Ok::<_, MirrorError>(None);
        };
        if let Some(v) = entries.get(&blob) {
            return Ok(v.clone());
        }
        let data = repo.find_blob(blob).map_err(err("reading meta.json"))?;
        let entry = raw_entry(&data.data, app_id).and_then(|raw| value_of(Some(&raw)));
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

/// Most commits one [`HistoryIndex`] holds; an answer further back is walked for alone.
const MAX_INDEXED: usize = 20_000;
/// Most changed names (folders and entries) it holds: a history whose every commit rewrites
/// every entry costs memory per name, not per commit.
const MAX_NAMES: usize = 200_000;

/// What a commit changed against one parent (or, for a root commit, against nothing): the
/// top-level entries and the meta.json entries that differ. Sorted, for binary search.
struct Change {
    folders: Box<[Box<[u8]>]>,
    entries: Box<[Box<str>]>,
}

impl Change {
    fn touches(&self, folder: &str, app_id: &str) -> bool {
        self.folders
            .binary_search_by(|f| (**f).cmp(folder.as_bytes()))
            .is_ok()
            || self.entries.binary_search_by(|e| (**e).cmp(app_id)).is_ok()
    }
}

/// One commit of a walk, with what it changed against each parent.
struct Walked {
    id: ObjectId,
    changes: Vec<Change>,
}

impl Walked {
    fn names(&self) -> usize {
        self.changes
            .iter()
            .map(|c| c.folders.len() + c.entries.len())
            .sum()
    }
}

/// The commits reachable from `tip` but not from `hidden`, newest first, each with what it
/// changed: one walk answers [`last_commit_touching`] for every app, where a walk per app
/// would read the same history once per app (a first pull of a workspace is N apps over N
/// commits). Built as far back as the questions need, at most [`MAX_INDEXED`] commits.
pub(crate) struct HistoryIndex {
    tip: ObjectId,
    hidden: Option<ObjectId>,
    walked: Vec<Walked>,
    /// Changed names held in `walked`.
    names: usize,
    /// Whether `walked` holds the whole walk.
    complete: bool,
}

/// A meta.json's entries as written (app id → entry text); none when it is no JSON object.
type RawEntries = HashMap<Box<str>, Box<str>>;

impl HistoryIndex {
    pub(crate) fn new(tip: ObjectId, hidden: Option<ObjectId>) -> Self {
        HistoryIndex {
            tip,
            hidden,
            walked: Vec::new(),
            names: 0,
            complete: false,
        }
    }

    /// Whether it holds no commit (nothing walked, or nothing to walk: cheap to make again).
    pub(crate) fn is_empty(&self) -> bool {
        self.walked.is_empty()
    }

    /// Whether this index answers for the walk from `tip` hiding `hidden`.
    pub(crate) fn is_for(&self, tip: ObjectId, hidden: Option<ObjectId>) -> bool {
        self.tip == tip && self.hidden == hidden
    }

    /// [`last_commit_touching`] from the index, walking further when the answer is older than
    /// what is indexed. Same answers, same merge rule.
    pub(crate) fn last_touching(
        &mut self,
        repo: &gix::Repository,
        folder: &str,
        app_id: &str,
    ) -> Result<Option<ObjectId>, MirrorError> {
        // The index knows top-level entries only; a nested folder is walked for alone.
        if folder.contains('/') {
            return last_commit_touching(repo, self.tip, self.hidden, folder, app_id);
        }
        let mut from = 0;
        loop {
            if let Some(w) = self
                .walked
                .get(from..)
                .unwrap_or_default()
                .iter()
                .find(|w| w.changes.iter().all(|c| c.touches(folder, app_id)))
            {
                return Ok(Some(w.id));
            }
            if self.complete {
                return Ok(None);
            }
            if self.walked.len() >= MAX_INDEXED || self.names >= MAX_NAMES {
                return last_commit_touching(repo, self.tip, self.hidden, folder, app_id);
            }
            from = self.walked.len();
            let rewritten = self.extend(repo, (from * 2).clamp(8, MAX_INDEXED))?;
            from = from.min(rewritten);
        }
    }

    /// Walks until `until` commits are indexed or the walk ends; returns the first position
    /// it (re)wrote, which is below the old end only when the guard below started over.
    fn extend(&mut self, repo: &gix::Repository, until: usize) -> Result<usize, MirrorError> {
        use gix::revision::walk::Sorting;
        use gix::traverse::commit::simple::CommitTimeOrder;

        let walk = repo
            .rev_walk([self.tip])
            .sorting(Sorting::ByCommitTime(CommitTimeOrder::NewestFirst))
            .with_hidden(self.hidden)
            .all()
            .map_err(err("walking the history"))?;
        let mut metas: HashMap<ObjectId, std::rc::Rc<RawEntries>> = HashMap::new();
        let mut rewritten = self.walked.len();
        let mut seen = 0;
        for (n, info) in walk.enumerate() {
            let info = info.map_err(err("walking the history"))?;
            seen = n + 1;
            if let Some(known) = self.walked.get(n) {
                if known.id != info.id {
                    // Not the walk indexed before (it is deterministic; this is a guard):
                    // start over from here.
                    self.truncate(n);
                    rewritten = n;
                } else {
                    continue;
                }
            }
            if n >= until || self.names >= MAX_NAMES {
                return Ok(rewritten);
            }
            let mine = tree_of(repo, info.id)?;
            let parents: Vec<ObjectId> = info.parent_ids().map(|p| p.detach()).collect();
            let changes = if parents.is_empty() {
                vec![change(repo, None, mine, &mut metas)?]
            } else {
                let mut out = Vec::with_capacity(parents.len());
                for p in parents {
                    let theirs = tree_of(repo, p)?;
                    out.push(change(repo, Some(theirs), mine, &mut metas)?);
                }
                out
            };
            // Only the parsed files of the newest commits are asked for again.
            if metas.len() > 8 {
                metas.clear();
            }
            let walked = Walked {
                id: info.id,
                changes,
            };
            self.names += walked.names();
            self.walked.push(walked);
        }
        if seen < self.walked.len() {
            self.truncate(seen);
            rewritten = rewritten.min(seen);
        }
        self.complete = true;
        Ok(rewritten)
    }

    fn truncate(&mut self, len: usize) {
        self.walked.truncate(len);
        self.names = self.walked.iter().map(Walked::names).sum();
    }
}

/// What `mine` changed against `theirs` (or against nothing).
fn change(
    repo: &gix::Repository,
    theirs: Option<ObjectId>,
    mine: ObjectId,
    metas: &mut HashMap<ObjectId, std::rc::Rc<RawEntries>>,
) -> Result<Change, MirrorError> {
    let top = |tree: Option<ObjectId>| -> Result<HashMap<Box<[u8]>, ObjectId>, MirrorError> {
        let Some(tree) = tree else {
            return Ok(HashMap::new());
        };
        let tree = repo.find_tree(tree).map_err(err("reading a tree"))?;
        let mut out = HashMap::new();
        for entry in tree.iter() {
            let entry = entry.map_err(err("reading a tree"))?;
            out.insert(entry.filename().to_vec().into(), entry.object_id());
        }
        Ok(out)
    };
    let (a, b) = (top(theirs)?, top(Some(mine))?);
    let mut folders: Vec<Box<[u8]>> = a
        .iter()
        .filter(|(name, id)| b.get(*name) != Some(*id))
        .chain(b.iter().filter(|(name, _)| !a.contains_key(*name)))
        .map(|(name, _)| name.clone())
        .collect();
    folders.sort();
    let meta_a = match theirs {
        Some(t) => entry_id(repo, t, META_PATH)?,
        None => None,
    };
    let meta_b = entry_id(repo, mine, META_PATH)?;
    let mut entries = Vec::new();
    if meta_a != meta_b {
        let (ea, eb) = (
            raw_entries(repo, meta_a, metas)?,
            raw_entries(repo, meta_b, metas)?,
        );
        // As the walk per app compares: the same text, or written differently (another
        // writer's formatting) with the same value, is no change.
        let differs = |x: Option<&str>, y: Option<&str>| x != y && value_of(x) != value_of(y);
        for (key, x) in ea.iter() {
            if differs(Some(x), eb.get(key).map(|y| &**y)) {
                entries.push(key.clone());
            }
        }
        for (key, y) in eb.iter() {
            if !ea.contains_key(key) && differs(None, Some(&**y)) {
                entries.push(key.clone());
            }
        }
        entries.sort();
    }
    Ok(Change {
        folders: folders.into(),
        entries: entries.into(),
    })
}

/// The entries of the meta.json `blob` as written, parsed once per walk step.
fn raw_entries(
    repo: &gix::Repository,
    blob: Option<ObjectId>,
    metas: &mut HashMap<ObjectId, std::rc::Rc<RawEntries>>,
) -> Result<std::rc::Rc<RawEntries>, MirrorError> {
    let Some(blob) = blob else {
        return Ok(Default::default());
    };
    if let Some(m) = metas.get(&blob) {
        return Ok(m.clone());
    }
    let data = repo.find_blob(blob).map_err(err("reading meta.json"))?;
    let map: RawEntries = raw_map(&data.data)
        .map(|m| {
            m.into_iter()
                .map(|(k, v)| (k.into_owned().into(), v.get().into()))
                .collect()
        })
        .unwrap_or_default();
    let map = std::rc::Rc::new(map);
    metas.insert(blob, map.clone());
    Ok(map)
}

/// The value an entry's text holds; `None` for no entry, or text serde_json cannot hold.
fn value_of(raw: Option<&str>) -> Option<Value> {
    raw.and_then(|r| serde_json::from_str::<Value>(r).ok())
}

/// The text of `app_id`'s entry in a meta.json, read without building the file's values;
/// `None` when the file is no JSON object or has no such entry.
fn raw_entry(data: &[u8], app_id: &str) -> Option<Box<str>> {
    raw_map(data)?.get(app_id).map(|v| v.get().into())
}

/// A meta.json's entries as written, borrowed from `data`; `None` when it is no JSON object.
fn raw_map(
    data: &[u8],
) -> Option<HashMap<std::borrow::Cow<'_, str>, &serde_json::value::RawValue>> {
    serde_json::from_slice(data).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;
    use std::io::Write as _;

    /// A `git fast-import` stream, so a test history of hundreds of commits is one process.
    #[derive(Default)]
    struct Stream {
        text: String,
        marks: u32,
        time: u64,
    }

    enum Op<'a> {
        Write(&'a str, String),
        Delete(&'a str),
    }

    impl Stream {
        fn data(&mut self, body: &str) {
            let _ = write!(self.text, "data {}\n{body}\n", body.len());
        }

        /// A commit on `main` (after `from`, merging `merge`); returns its mark.
        fn commit(&mut self, from: Option<u32>, merge: Option<u32>, ops: &[Op<'_>]) -> u32 {
            self.marks += 1;
            self.time += 60;
            let mark = self.marks;
            let _ = write!(
                self.text,
                "commit refs/heads/main\nmark :{mark}\ncommitter T <t@example.com> {} +0000\n",
                1_700_000_000 + self.time
            );
            self.data(&format!("commit {mark}"));
            if let Some(f) = from {
                let _ = writeln!(self.text, "from :{f}");
            }
            if let Some(m) = merge {
                let _ = writeln!(self.text, "merge :{m}");
            }
            for op in ops {
                match op {
                    Op::Write(path, body) => {
                        let _ = writeln!(self.text, "M 100644 inline {path}");
                        self.data(body);
                    }
                    Op::Delete(path) => {
                        let _ = writeln!(self.text, "D {path}");
                    }
                }
            }
            mark
        }
    }

    fn meta(entries: &[(&str, &str)], pretty: bool) -> String {
        let map: serde_json::Map<String, Value> = entries
            .iter()
            .map(|(id, msg)| {
                (
                    (*id).to_string(),
                    serde_json::json!({"gitAppName": id.to_uppercase(), "lastCommitMessage": msg}),
                )
            })
            .collect();
        let v = Value::Object(map);
        if pretty {
            serde_json::to_string_pretty(&v).unwrap_or_default()
        } else {
            v.to_string()
        }
    }

    /// A history with every case of the rule: a root commit, file-only and entry-only changes,
    /// a reformatted meta.json (no change), a clean merge (no change for either side's app),
    /// an evil merge (a change of its own), a deletion, and a long tail of one-app commits so
    /// the index is extended more than once.
    fn history() -> anyhow::Result<(tempfile::TempDir, Vec<ObjectId>)> {
        let mut s = Stream::default();
        let root = s.commit(
            None,
            None,
            &[
                Op::Write("a/v1.json", "a1".into()),
                Op::Write(".meta/meta.json", meta(&[("a", "1")], false)),
            ],
        );
        let b = s.commit(
            None,
            None,
            &[
                Op::Write("b/v1.json", "b1".into()),
                Op::Write(".meta/meta.json", meta(&[("a", "1"), ("b", "1")], false)),
            ],
        );
        s.commit(None, None, &[Op::Write("a/v1.json", "a2".into())]);
        s.commit(
            None,
            None,
            &[Op::Write(
                ".meta/meta.json",
                meta(&[("a", "2"), ("b", "1")], false),
            )],
        );
        let reformatted = s.commit(
            None,
            None,
            &[Op::Write(
                ".meta/meta.json",
                meta(&[("a", "2"), ("b", "1")], true),
            )],
        );
        // A side branch from `b` changing b, merged cleanly, then an evil merge adding c.
        let side = s.commit(
            Some(b),
            None,
            &[
                Op::Write("b/v1.json", "b2".into()),
                Op::Write(".meta/meta.json", meta(&[("a", "1"), ("b", "2")], false)),
            ],
        );
        let both = meta(&[("a", "2"), ("b", "2")], false);
        let merged = s.commit(
            Some(reformatted),
            Some(side),
            &[
                Op::Write("b/v1.json", "b2".into()),
                Op::Write(".meta/meta.json", both.clone()),
            ],
        );
        let side2 = s.commit(Some(merged), None, &[Op::Write("x/f", "x".into())]);
        s.commit(
            Some(merged),
            Some(side2),
            &[
                Op::Write("x/f", "x".into()),
                Op::Write("c/v1.json", "c1".into()),
            ],
        );
        s.commit(
            None,
            None,
            &[
                Op::Delete("b"),
                Op::Write(".meta/meta.json", meta(&[("a", "2")], false)),
            ],
        );
        let mut entries = vec![("a", "2")];
        let names: Vec<String> = (0..150).map(|i| format!("n{i}")).collect();
        for name in &names {
            entries.push((name.as_str(), "1"));
            let path = format!("{name}/v1.json");
            let ops = [
                Op::Write(&path, name.clone()),
                Op::Write(".meta/meta.json", meta(&entries, false)),
            ];
            s.commit(None, None, &ops);
        }
        // An entry serde_json cannot hold as a value (`1e400`) added, rewritten and removed:
        // no change to any app, and it hides no other entry.
        let all = meta(&entries, false);
        let with_big = |n: &str| format!("{},\"big\":{{\"n\":{n}}}}}", &all[..all.len() - 1]);
        for text in [with_big("1e400"), with_big("2e400"), all.clone()] {
            s.commit(None, None, &[Op::Write(".meta/meta.json", text)]);
        }
        let _ = root;
        s.text.push_str("done\n");

        let dir = tempfile::tempdir()?;
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(dir.path())
                .output()
        };
        anyhow::ensure!(git(&["init", "-q", "--bare", "."])?.status.success());
        let mut child = std::process::Command::new("git")
            .args(["fast-import", "--quiet", "--done"])
            .current_dir(dir.path())
            .stdin(std::process::Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .ok_or_else(|| anyhow::anyhow!("stdin"))?
            .write_all(s.text.as_bytes())?;
        anyhow::ensure!(child.wait()?.success(), "fast-import failed");
        let out = git(&["rev-list", "main"])?;
        let commits = String::from_utf8(out.stdout)?
            .lines()
            .map(|l| ObjectId::from_hex(l.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((dir, commits))
    }

    #[test]
    fn the_index_answers_like_a_walk_per_app() -> anyhow::Result<()> {
        let (dir, commits) = history()?;
        let repo = gix::open(dir.path())?;
        let mut apps: Vec<(String, String)> =
            ["a", "b", "c", "x", "zzz", "n0", "n77", "n149", "big"]
                .iter()
                .map(|a| (a.to_string(), a.to_string()))
                .collect();
        apps.push(("a".into(), "b".into()));
        apps.push(("a/v1.json".into(), "none".into()));
        let tips = [
            commits[0],
            commits[40],
            commits[153],
            commits[158],
            commits[161],
        ];
        let hiddens = [
            None,
            Some(commits[6]),
            Some(commits[155]),
            Some(commits[162]),
        ];
        let mut asked = 0;
        for tip in tips {
            for hidden in hiddens {
                let mut index = HistoryIndex::new(tip, hidden);
                assert!(index.is_for(tip, hidden));
                // Oldest answers first and last, so the index is both extended and reused.
                for (folder, app) in apps.iter().chain(apps.iter().rev()) {
                    let want = last_commit_touching(&repo, tip, hidden, folder, app)?;
                    let got = index.last_touching(&repo, folder, app)?;
                    assert_eq!(got, want, "{folder} {app} from {tip} hiding {hidden:?}");
                    asked += 1;
                }
            }
        }
        assert_eq!(asked, tips.len() * hiddens.len() * apps.len() * 2);
        // The cases the history is built for.
        let mut index = HistoryIndex::new(commits[0], None);
        let found = |index: &mut HistoryIndex, f: &str, a: &str| {
            index
                .last_touching(&repo, f, a)
                .ok()
                .flatten()
                .and_then(|id| commits.iter().position(|c| *c == id))
        };
        // Newest first: the three `big` commits, 150 one-app commits, then the deletion of b,
        // the evil merge (c), its side (x), the clean merge, the side branch, the
        // reformatting, the entry change of a.
        assert_eq!(commits.len(), 163);
        assert_eq!(found(&mut index, "n149", "n149"), Some(3));
        assert_eq!(found(&mut index, "n0", "n0"), Some(152));
        assert_eq!(found(&mut index, "b", "b"), Some(153), "the deletion");
        assert_eq!(found(&mut index, "c", "c"), Some(154), "the evil merge");
        assert_eq!(found(&mut index, "zzz", "zzz"), None);
        assert_eq!(found(&mut index, "big", "big"), None, "no value, no change");
        let a = found(&mut index, "a", "a").and_then(|n| commits.get(n).copied());
        let facts = a.map(|a| crate::git::mirror::commit_facts(&repo, a));
        assert!(
            matches!(facts, Some(Ok(ref f)) if f.message.trim() == "commit 4"),
            "the entry change of a, not the reformatting or the merges"
        );
        Ok(())
    }
}
