//! ToolJet's GitSync repository layout (legacy layout, `tooljet-reference.md` §1a), pure:
//! no filesystem, network or clock access. Repositories written by ToolJet are read and
//! written here unchanged, and the other way round (design §3 rule 1).
//!
//! ```text
//! .meta/meta.json            one entry per app, keyed by git app id
//! <App Name>/<version>.json  the export of the last pushed version
//! ```
//!
//! * [`names`]: app and version names as path components (verbatim or refused).
//! * [`meta`]: `.meta/meta.json`, read-modify-write preserving other apps' entries.
//! * [`normalize`]: the normalized form of an export on which "changed" is decided.
//! * [`export`]: the app, version and workspace references an export holds.
//! * [`plan`]: the files, deletions and commit message of a push.

pub mod export;
pub mod json;
pub mod meta;
pub mod names;
pub mod normalize;
pub mod plan;

pub use export::{app_from_export, workspace_references, ExportError, ExportedApp, Ref};
pub use json::to_tooljet_json;
pub use meta::{
    format_push_date, locate_app, AppLookup, LocateError, Located, MetaEntry, MetaError, MetaFile,
    MetaRecord, META_KEYS,
};
pub use names::{
    app_file_path, app_folder, collision_key, validate_name, version_file_name, NameError,
    NameKind, MAX_COMPONENT_BYTES, META_PATH,
};
pub use normalize::{content_digest, normalized_text, same_content};
pub use plan::{
    folders_to_read, git_commit_message, plan_push, AppContent, AppFile, PlanError, PushKind,
    PushOutcome, PushPlan, PushRequest, Refusal, RepoState,
};
