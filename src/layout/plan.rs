//! Push planning: from the repository's current state and the app to push, the exact files to
//! write and delete and the commit message, following ToolJet's GitSync (reference §1a, §4).
//!
//! Decisions, beyond what ToolJet does:
//! * Identity is the git app id (the meta key). A folder is this app's only if `meta.json`
//!   records it for this id; any other folder of the same name (also differing only in case,
//!   trailing dots/spaces or HFS+-ignored code points, which macOS and Windows checkouts merge)
//!   is refused, never overwritten, including folders no entry claims. ToolJet overwrites.
//! * A folder recorded for another app id is refused even if it is also recorded for this one.
//! * Renames move the whole folder like ToolJet's `fs.rename` (other files in it are copied to
//!   the new folder), except when another app's entry also records the old folder: then only
//!   this app's own file is removed from it.
//! * Messages: creation `App creation`; a content change (normalized, names aside) uses the
//!   user's message, also when the app or version was renamed in the same push; without a
//!   content change a rename uses `App is renamed` (design §2; ToolJet's UI sends
//!   `App <old>  is renamed to <new>`), a new version `Version creation`, a renamed version
//!   `Version <old> of app <app> is renamed to <new>`. The git message is prefixed with
//!   `Version <version> Of <app>: ` except for the root commit of an empty repository.
//! * Nothing changed (normalized content, name and version) gives [`PushOutcome::NoChange`];
//!   there is never an empty commit.
//!
//! Each plan is one commit computed on one tree: a worker applying several plans in one push
//! must compute each on the tree the previous one produced (they all rewrite `meta.json`).

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

use super::json::to_tooljet_json;
use super::meta::{format_push_date, MetaEntry, MetaError, MetaFile, MetaRecord};
use super::names::{
    app_folder, collision_key, is_safe_relative_path, validate_name, version_file_name, NameError,
    NameKind, META_PATH,
};
use super::normalize::{digest_of, Identity};

/// Commit message ToolJet uses when an app is first pushed.
pub const CREATION_MESSAGE: &str = "App creation";
/// Commit message ToolJet uses when a new version replaces the pushed one.
pub const VERSION_CREATION_MESSAGE: &str = "Version creation";
/// Message of a push that only renames the app (design §2).
pub const RENAME_MESSAGE: &str = "App is renamed";

/// Commit message used when the user gave none (ToolJet's UI always asks for one).
pub const DEFAULT_UPDATE_MESSAGE: &str = "App update";

/// The repository as the git worker sees it on the branch's head.
#[derive(Debug, Clone, Default)]
pub struct RepoState {
    /// Whether the branch has a commit; ToolJet makes the first commit with the bare message.
    pub has_head: bool,
    /// Bytes of `.meta/meta.json`, if the file exists.
    pub meta_json: Option<Vec<u8>>,
    /// Names of all entries (folders and files) at the repository root.
    pub root_entries: BTreeSet<String>,
    /// Bytes of every file under the folders [`folders_to_read`] names (recursively), keyed by
    /// repo-relative path with `/`; files of other folders may be present and are ignored.
    pub files: BTreeMap<String, Vec<u8>>,
}

/// The app version to push and the commit details.
#[derive(Debug, Clone)]
pub struct PushRequest<'a> {
    /// The git app id: the meta key, the ToolJet app id of the instance that first pushed.
    pub app_id: &'a str,
    /// The app's current name, which becomes its folder.
    pub app_name: &'a str,
    /// The version's id (`gitVersionId`).
    pub version_id: &'a str,
    /// The version's name, which becomes its file name.
    pub version_name: &'a str,
    /// The export to write, as ToolJet returned it or as its file.
    pub content: AppContent<'a>,
    /// The user's commit message, without ToolJet's prefix.
    pub message: &'a str,
    /// Author name, recorded as `lastCommitUser` (`"<first> <last>"` in ToolJet).
    pub author: &'a str,
    /// Push time, recorded as `lastpushDate`.
    pub date: jiff::Timestamp,
}

/// The app version file to write: ToolJet's formatting of the export and the digest its
/// content is compared by. A queued push holds this rather than the parsed export, a fraction
/// of its memory: a first backup of a workspace queues every app of it at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppFile {
    /// The file's bytes (`to_tooljet_json`).
    pub content: Vec<u8>,
    /// `digest_of(export, Identity::Ignore)`.
    pub digest: String,
}

impl AppFile {
    /// The file of `export`.
    pub fn of(export: &Value) -> Result<AppFile, PlanError> {
        Ok(AppFile {
            content: to_tooljet_json(export).map_err(|e| PlanError::Serialize {
                message: e.to_string(),
            })?,
            digest: digest_of(export, Identity::Ignore),
        })
    }
}

/// What a push writes: the export, or its file made beforehand.
#[derive(Debug, Clone, Copy)]
pub enum AppContent<'a> {
    /// As ToolJet returned it.
    Export(&'a Value),
    /// As [`AppFile::of`] made it.
    File(&'a AppFile),
}

impl<'a> AppContent<'a> {
    fn file(self) -> Result<std::borrow::Cow<'a, AppFile>, PlanError> {
        Ok(match self {
            AppContent::Export(v) => std::borrow::Cow::Owned(AppFile::of(v)?),
            AppContent::File(f) => std::borrow::Cow::Borrowed(f),
        })
    }
}

/// What a push amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushKind {
    /// First push of the app: no meta entry (or none naming a folder) for its id.
    Creation,
    /// Same name and version, changed content.
    Update,
    /// The app's name changed: its folder moves.
    Rename,
    /// The version id or name changed: `<old>.json` is replaced by `<new>.json`.
    VersionChange,
}

/// One commit's worth of changes, for the git worker to apply onto the head tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushPlan {
    /// What kind of push this is.
    pub kind: PushKind,
    /// Files to create or replace: repo-relative path with `/`, and content.
    pub writes: Vec<(String, Vec<u8>)>,
    /// Files to remove: repo-relative paths with `/`, sorted.
    pub deletes: Vec<String>,
    /// The git commit message (with ToolJet's `Version … Of …: ` prefix unless root commit).
    pub commit_message: String,
    /// The bare message, as recorded in `lastCommitMessage`.
    pub meta_commit_message: String,
    /// Path of the app's version file after the commit.
    pub app_path: String,
    /// The meta entry written for the app.
    pub meta_record: MetaRecord,
}

/// The result of planning a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// Git already holds this content under this name and version: no commit.
    NoChange {
        /// Path of the app's version file.
        app_path: String,
    },
    /// The push would be unsafe or would overwrite another app.
    Refused(Refusal),
    /// The commit to make.
    Plan(PushPlan),
}

/// Why a push is refused; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The app or version name cannot be a path component.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The git app id is empty.
    #[error("the git app id is empty; it must be the ToolJet app id that keys .meta/meta.json")]
    EmptyAppId,
    /// Another app's meta entry records this folder (or one a checkout would merge with it).
    #[error(
        "the folder {folder:?} is already used by another app in {META_PATH} (git app id {other_app_id:?}, folder {other_folder:?}); pushing would overwrite it, so rename this app in ToolJet (names differing only in letter case count as the same, because macOS and Windows checkouts merge them)"
    )]
    FolderClaimed {
        /// This app's folder.
        folder: String,
        /// The other app's id.
        other_app_id: String,
        /// The other app's recorded folder.
        other_folder: String,
    },
    /// A root entry of that name (or one a checkout would merge with it) exists and
    /// `meta.json` does not record it for this app.
    #[error(
        "the repository already has {existing:?} at its top level, and {META_PATH} does not record it as this app's folder; rename the app in ToolJet, or move that folder out of the way in the repository (names differing only in letter case count as the same)"
    )]
    FolderExists {
        /// This app's folder.
        folder: String,
        /// The existing root entry.
        existing: String,
    },
    /// The folder or file name `meta.json` records for this app is not a safe path.
    #[error(
        "{META_PATH} records an unsafe folder or file name for git app id {app_id:?}: {source}; fix that entry in the repository"
    )]
    RecordedNameUnsafe {
        /// This app's id.
        app_id: String,
        /// What is wrong with the recorded name.
        source: NameError,
    },
}

/// Why a plan could not be computed: the inputs are damaged or incomplete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// `.meta/meta.json` is unreadable.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// A folder the plan needs is at the root but no file under it was provided.
    #[error("internal error: the repository listing holds no files under the folder {folder:?}, which the push must read (is it a file?)")]
    FolderNotListed {
        /// The folder.
        folder: String,
    },
    /// A listed path is not a safe relative path.
    #[error("the repository holds the unsafe path {path:?}; remove it from the repository")]
    UnsafeListing {
        /// The path.
        path: String,
    },
    /// A path of ToolJet's layout is another kind of entry in git (a symlink, a directory, a
    /// submodule): refused, never replaced.
    #[error("{path} in the repository is {found} where ToolJet's layout has {expected}; it is refused, never replaced, and nothing was read or written: make it {expected} in git, or remove it")]
    NotInLayout {
        /// The path.
        path: String,
        /// What git holds there ("a symbolic link", ...).
        found: &'static str,
        /// What the layout needs there.
        expected: &'static str,
    },
    /// The export could not be serialized.
    #[error("could not serialize the export: {message}")]
    Serialize {
        /// serde_json's description.
        message: String,
    },
}

/// Folders whose files [`RepoState::files`] must hold for a push of `app_id`: the folder
/// `meta.json` records for it, if any. Unsafe recorded names are left out (the plan refuses).
pub fn folders_to_read(meta_json: Option<&[u8]>, app_id: &str) -> Result<Vec<String>, MetaError> {
    let meta = MetaFile::parse_optional(meta_json)?;
    let Some(entry) = meta.entry(app_id).transpose()? else {
        return Ok(Vec::new());
    };
    Ok(entry
        .git_app_name
        .filter(|name| validate_name(NameKind::App, name).is_ok())
        .into_iter()
        .collect())
}

/// The git commit message ToolJet writes for a bare message.
pub fn git_commit_message(
    has_head: bool,
    version_name: &str,
    app_name: &str,
    message: &str,
) -> String {
    if has_head {
        format!("Version {version_name} Of {app_name}: {message}")
    } else {
        message.to_owned()
    }
}

/// Computes the commit a push makes, or why there is none.
pub fn plan_push(repo: &RepoState, request: &PushRequest<'_>) -> Result<PushOutcome, PlanError> {
    if request.app_id.is_empty() {
        return Ok(PushOutcome::Refused(Refusal::EmptyAppId));
    }
    let folder = match app_folder(request.app_name) {
        Ok(folder) => folder,
        Err(err) => return Ok(PushOutcome::Refused(err.into())),
    };
    let file_name = match version_file_name(request.version_name) {
        Ok(file) => file,
        Err(err) => return Ok(PushOutcome::Refused(err.into())),
    };
    let app_path = format!("{folder}/{file_name}");

    let mut meta = MetaFile::parse_optional(repo.meta_json.as_deref())?;
    let own: Option<MetaEntry> = meta.entry(request.app_id).transpose()?;

    let (recorded_folder, recorded_file) = match recorded_names(own.as_ref()) {
        Ok(names) => names,
        Err(source) => return Ok(refuse_recorded(request.app_id, source)),
    };

    if let Some(refusal) = check_collisions(&meta, repo, request.app_id, &folder, &recorded_folder)
    {
        return Ok(PushOutcome::Refused(refusal));
    }

    let old_files = recorded_files(repo, recorded_folder.as_deref())?;
    let file = request.content.file()?;
    let change = Change::of(
        own.as_ref(),
        request,
        &file.digest,
        &recorded_folder,
        &folder,
        &recorded_file,
        &old_files,
    );
    if change.is_none() {
        return Ok(PushOutcome::NoChange { app_path });
    }
    let old_version = own
        .as_ref()
        .and_then(|entry| entry.git_version_name.clone())
        .unwrap_or_default();
    let (kind, bare_message) = change.kind_and_message(request, &folder, &old_version);
    let old_folder = recorded_folder.clone().unwrap_or_default();
    let shared = change.renamed && meta_claims_folder_elsewhere(&meta, request.app_id, &old_folder);
    let (mut writes, deletes) = file_moves(
        &change,
        shared,
        &old_folder,
        &folder,
        &file_name,
        recorded_file.as_deref(),
        &old_files,
    );

    writes.push((app_path.clone(), file.into_owned().content));

    let meta_record = MetaRecord {
        git_app_name: request.app_name.to_owned(),
        last_commit_message: bare_message.clone(),
        git_version_id: request.version_id.to_owned(),
        last_push_date: format_push_date(request.date),
        git_version_name: request.version_name.to_owned(),
        last_commit_user: request.author.to_owned(),
    };
    meta.upsert(request.app_id, &meta_record)?;
    writes.push((META_PATH.to_owned(), meta.to_bytes()?));

    Ok(PushOutcome::Plan(PushPlan {
        kind,
        writes,
        deletes: deletes.into_iter().collect(),
        commit_message: git_commit_message(
            repo.has_head,
            request.version_name,
            request.app_name,
            &bare_message,
        ),
        meta_commit_message: bare_message,
        app_path,
        meta_record,
    }))
}

/// The folder and version file `meta.json` records for the app, validated before any path is
/// built from them.
fn recorded_names(own: Option<&MetaEntry>) -> Result<(Option<String>, Option<String>), NameError> {
    let folder = own.and_then(|entry| entry.git_app_name.clone());
    if let Some(name) = &folder {
        validate_name(NameKind::App, name)?;
    }
    let file = own
        .and_then(|entry| entry.git_version_name.as_deref())
        .map(version_file_name)
        .transpose()?;
    Ok((folder, file))
}

/// Files currently in the app's recorded folder, relative to it.
fn recorded_files<'r>(
    repo: &'r RepoState,
    recorded_folder: Option<&str>,
) -> Result<BTreeMap<String, &'r Vec<u8>>, PlanError> {
    let Some(old) = recorded_folder.filter(|old| repo.root_entries.contains(*old)) else {
        return Ok(BTreeMap::new());
    };
    let prefix = format!("{old}/");
    let mut found = BTreeMap::new();
    for (path, bytes) in repo.files.range(prefix.clone()..) {
        let Some(relative) = path.strip_prefix(&prefix) else {
            break;
        };
        if !is_safe_relative_path(relative) {
            return Err(PlanError::UnsafeListing { path: path.clone() });
        }
        found.insert(relative.to_owned(), bytes);
    }
    if found.is_empty() {
        return Err(PlanError::FolderNotListed {
            folder: old.to_owned(),
        });
    }
    Ok(found)
}

/// What differs between git and the request.
struct Change {
    creation: bool,
    renamed: bool,
    version_id_changed: bool,
    version_changed: bool,
    content_changed: bool,
}

impl Change {
    fn of(
        own: Option<&MetaEntry>,
        request: &PushRequest<'_>,
        digest: &str,
        recorded_folder: &Option<String>,
        folder: &str,
        recorded_file: &Option<String>,
        old_files: &BTreeMap<String, &Vec<u8>>,
    ) -> Change {
        let creation = recorded_folder.is_none();
        let renamed = !creation && recorded_folder.as_deref() != Some(folder);
        let version_id_changed =
            own.is_some_and(|entry| entry.git_version_id.as_deref() != Some(request.version_id));
        let version_name_changed = own
            .is_some_and(|entry| entry.git_version_name.as_deref() != Some(request.version_name));
        let content_changed = match recorded_file.as_ref().and_then(|file| old_files.get(file)) {
            None => true,
            Some(bytes) => match serde_json::from_slice::<Value>(bytes) {
                Ok(old_export) => digest_of(&old_export, Identity::Ignore) != digest,
                Err(_) => true,
            },
        };
        Change {
            creation,
            renamed,
            version_id_changed,
            version_changed: !creation && (version_id_changed || version_name_changed),
            content_changed,
        }
    }

    fn is_none(&self) -> bool {
        !self.creation && !self.renamed && !self.version_changed && !self.content_changed
    }

    /// The kind of push and ToolJet's commit message for it.
    fn kind_and_message(
        &self,
        request: &PushRequest<'_>,
        folder: &str,
        old_version: &str,
    ) -> (PushKind, String) {
        if self.creation {
            return (PushKind::Creation, CREATION_MESSAGE.to_owned());
        }
        let kind = if self.renamed {
            PushKind::Rename
        } else if self.version_changed {
            PushKind::VersionChange
        } else {
            PushKind::Update
        };
        let message = if self.content_changed {
            if request.message.trim().is_empty() {
                DEFAULT_UPDATE_MESSAGE.to_owned()
            } else {
                request.message.to_owned()
            }
        } else if self.renamed {
            RENAME_MESSAGE.to_owned()
        } else if self.version_id_changed {
            VERSION_CREATION_MESSAGE.to_owned()
        } else {
            format!(
                "Version {old_version} of app {folder} is renamed to {}",
                request.version_name
            )
        };
        (kind, message)
    }
}

/// Files to write and delete besides the new version file: a rename moves the folder's other
/// files (unless another app's entry shares the folder), a version change drops the old file.
fn file_moves(
    change: &Change,
    shared: bool,
    old_folder: &str,
    folder: &str,
    file_name: &str,
    recorded_file: Option<&str>,
    old_files: &BTreeMap<String, &Vec<u8>>,
) -> (Vec<(String, Vec<u8>)>, BTreeSet<String>) {
    let mut writes: Vec<(String, Vec<u8>)> = Vec::new();
    let mut deletes: BTreeSet<String> = BTreeSet::new();
    if change.renamed {
        for (relative, bytes) in old_files {
            let own_file = recorded_file == Some(relative.as_str());
            if shared && !own_file {
                continue;
            }
            deletes.insert(format!("{old_folder}/{relative}"));
            if !own_file && relative != file_name {
                writes.push((format!("{folder}/{relative}"), (*bytes).clone()));
            }
        }
    } else if let Some(old_file) = recorded_file {
        if old_file != file_name && old_files.contains_key(old_file) {
            deletes.insert(format!("{folder}/{old_file}"));
        }
    }
    (writes, deletes)
}

fn refuse_recorded(app_id: &str, source: NameError) -> PushOutcome {
    PushOutcome::Refused(Refusal::RecordedNameUnsafe {
        app_id: app_id.to_owned(),
        source,
    })
}

/// Refuses folders that belong to another app or exist without belonging to this one.
fn check_collisions(
    meta: &MetaFile,
    repo: &RepoState,
    app_id: &str,
    folder: &str,
    recorded_folder: &Option<String>,
) -> Option<Refusal> {
    let ours_already = recorded_folder.as_deref() == Some(folder);
    let key = collision_key(folder);
    for (other_id, entry) in meta.entries() {
        if other_id == app_id {
            continue;
        }
        // An unreadable entry records no folder; the root listing below still protects
        // whatever folder it might have meant.
        let Some(other_folder) = entry.ok().and_then(|entry| entry.git_app_name) else {
            continue;
        };
        let same = other_folder == folder;
        // A case variant is only refused when this push would create the folder: an app whose
        // folder already exists keeps working even if a variant was added next to it.
        if same || (!ours_already && collision_key(&other_folder) == key) {
            return Some(Refusal::FolderClaimed {
                folder: folder.to_owned(),
                other_app_id: other_id.to_owned(),
                other_folder,
            });
        }
    }
    if ours_already {
        return None;
    }
    for existing in &repo.root_entries {
        if recorded_folder.as_deref() == Some(existing.as_str()) {
            // This app's own old folder (a rename that only changes letter case).
            continue;
        }
        if existing == folder || collision_key(existing) == key {
            return Some(Refusal::FolderExists {
                folder: folder.to_owned(),
                existing: existing.clone(),
            });
        }
    }
    None
}

fn meta_claims_folder_elsewhere(meta: &MetaFile, app_id: &str, folder: &str) -> bool {
    meta.entries().any(|(id, entry)| {
        id != app_id
            && entry
                .ok()
                .and_then(|entry| entry.git_app_name)
                .is_some_and(|name| name == folder)
    })
}

#[cfg(test)]
mod tests;
