//! `AppSync`: one ToolJet app, one direction, one desired version.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Author, Condition};

/// Keeps one ToolJet app in sync with git, in one direction.
#[allow(clippy::duplicated_attributes)] // printcolumn is repeated on purpose
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "gitsync.tooljet.io",
    version = "v1alpha1",
    kind = "AppSync",
    namespaced,
    status = "AppSyncStatus",
    shortname = "aps",
    category = "tooljet",
    doc = "Keeps one ToolJet app in sync with the git repository of a GitSyncConfig: Push exports it to git, Pull imports it from git.",
    printcolumn(name = "App", type_ = "string", json_path = ".spec.app"),
    printcolumn(name = "Direction", type_ = "string", json_path = ".spec.direction"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Last Commit",
        type_ = "string",
        json_path = ".status.lastCommit.sha"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AppSyncSpec {
    /// The GitSyncConfig (workspace + repository) to use.
    pub git_sync_config_ref: ConfigRef,
    /// The ToolJet app: its name, or `id:<uuid>`.
    #[schemars(length(min = 1, max = 255))]
    pub app: String,
    /// `Push`: ToolJet -> git. `Pull`: git -> ToolJet. Cannot change once set: create a new
    /// AppSync for the other direction.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "spec.direction cannot change once set: create a new AppSync for the other direction"}]))]
    pub direction: Direction,
    /// Settings for `Push`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<PushSpec>,
    /// Settings for `Pull`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullSpec>,
    /// When true nothing is written to git or ToolJet.
    #[serde(default)]
    pub suspend: bool,
}

/// Reference to a GitSyncConfig.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct ConfigRef {
    /// GitSyncConfig name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace; other namespaces only when the operator allows cross-namespace references.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Sync direction.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum Direction {
    /// ToolJet -> git.
    Push,
    /// git -> ToolJet.
    Pull,
}

/// How a Push is made.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PushSpec {
    /// Version name to export; default: the app's editing version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub version: Option<String>,
    /// Message of commits that change the app's content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub commit_message: Option<String>,
    /// Commit author; default: the GitSyncConfig's `commitAuthor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<Author>,
    /// Pull-request mode: commit to a branch of this AppSync's own and open a pull (merge)
    /// request against the base instead of pushing to the base. Needs an HTTPS GitSyncConfig:
    /// its token (or GitHub App) calls the host's API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<PullRequestSpec>,
}

/// Pull-request mode of a Push.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PullRequestSpec {
    /// Whose API opens the request.
    pub provider: ForgeProvider,
    /// Branch the request targets; default: the GitSyncConfig's branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub base_branch: Option<String>,
    /// Prefix of the branches the operator commits to, followed by the AppSync's namespace
    /// and name (and `-2`, `-3`, ... once a request was merged or closed); default
    /// `tooljet-gitsync/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100))]
    pub branch_prefix: Option<String>,
    /// A fixed branch instead of prefix and AppSync name: AppSyncs with the same branch (an
    /// AppSyncSet's, through its template) share one branch and one pull request per batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 200))]
    pub branch: Option<String>,
    /// Title; `{app}`, `{version}`, `{branch}` and `{base}` are replaced. Default
    /// `ToolJet: {app} {version}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub title: Option<String>,
    /// Description, with the same placeholders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16384))]
    pub body: Option<String>,
    /// API base URL; default from the repository's host (`https://api.github.com`,
    /// `https://<host>/api/v3` for GitHub Enterprise Server, `/api/v4` GitLab, `/api/v1` Gitea).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub api_url: Option<String>,
}

/// A git host API.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ForgeProvider {
    /// github.com or GitHub Enterprise Server.
    GitHub,
    /// gitlab.com or self-managed GitLab (merge requests).
    GitLab,
    /// Gitea or Forgejo.
    Gitea,
}

/// The pull request an AppSync's changes wait in.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PullRequestStatus {
    /// Number (GitLab: `iid`).
    pub number: u64,
    /// Web page of the request.
    pub url: String,
    /// `Open`, `Merged` or `Closed`.
    pub state: String,
    /// The branch the operator commits to.
    pub branch: String,
    /// The branch it targets.
    pub base_branch: String,
}

/// How a Pull is made.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PullSpec {
    /// Branch, tag or commit sha; default: the GitSyncConfig's branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub revision: Option<String>,
    /// `Manual`: report updates, pull only when asked. `Auto`: follow the revision.
    #[serde(default)]
    pub update_policy: UpdatePolicy,
    /// Promotion guard: the version in git must have this name, or nothing is imported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_version: Option<String>,
    /// Leave the imported app editable in ToolJet (default: made read-only, as ToolJet does).
    #[serde(default)]
    pub allow_editing: bool,
    /// Hold the import while the app references workspace constants or secrets that neither
    /// the target workspace has nor the GitSyncConfig's `spec.tooljet.constants` declares.
    #[serde(default)]
    pub require_constants: bool,
}

/// When pulled updates are applied.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum UpdatePolicy {
    /// Report updates; pull on a new revision or the pull-requested-at annotation.
    #[default]
    Manual,
    /// Pull every update of the revision.
    Auto,
}

/// Observed state of an AppSync.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppSyncStatus {
    /// Generation the status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Synced, UpdateAvailable, Reconciling, Stalled, WorkspaceConstantsMissing.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The app in ToolJet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<AppStatus>,
    /// The app in git.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitStatus>,
    /// The last commit written (Push) or imported (Pull).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_commit: Option<CommitInfo>,
    /// A newer commit touching the app, not yet pulled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_update: Option<CommitInfo>,
    /// The last `gitsync.tooljet.io/pull-requested-at` value handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_pull_requested_at: Option<String>,
    /// Pull: the generation whose spec was last acted on; a newer one (e.g. a new revision)
    /// is a pull request, retried until it succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pulled_generation: Option<i64>,
    /// What this AppSync owns, recorded on its first successful pass: the direction and the
    /// apps. A Pull only ever replaces the ToolJet app it imported itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owned: Option<Ownership>,
    /// The last `gitsync.tooljet.io/adopt` value handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_adopt: Option<String>,
    /// Pull: an import or replace in progress (the swap journal), so a pass killed part way is
    /// resumed or rolled back by the next one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<SwapJournal>,
    /// Pull: temporary app names of rolled-back imports that ToolJet may still be creating;
    /// apps of these names are deleted when they appear, for a while.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub abandoned: Vec<Abandoned>,
    /// Pull: the app's data sources whose credentials the GitSyncConfig does not declare
    /// (`spec.tooljet.dataSources`): an import leaves their secret options empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_sources_without_credentials: Vec<String>,
    /// Push in pull-request mode: the request the changes are in (the last one, once merged
    /// or closed, until a new change opens the next).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<PullRequestStatus>,
}

/// What an AppSync owns.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Ownership {
    /// The direction of the first successful pass.
    pub direction: Option<Direction>,
    /// Push: the ToolJet app exported. Pull: the ToolJet app this AppSync imported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// The app's key in `.meta/meta.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_app_id: Option<String>,
}

/// Where an import or replace stands.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum SwapStep {
    /// The new definition is being imported under the temporary name.
    Importing,
    /// The new app exists under the temporary name.
    Imported,
    /// The old app was moved to the parked name and slug.
    Parked,
    /// The new app carries the name and slug; the parked app is being deleted.
    Promoted,
    /// Undoing: the new app is removed and the old one gets its name and slug back.
    RollingBack,
}

/// The swap journal of an import or replace (design §8).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SwapJournal {
    /// The step reached.
    pub step: SwapStep,
    /// The commit being imported.
    pub commit: CommitInfo,
    /// The app name users know.
    pub name: String,
    /// The slug (URL) users know; none for a first import (ToolJet chooses it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    /// The app being replaced; none for a first import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_app_id: Option<String>,
    /// The app imported; known from `Imported` on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_app_id: Option<String>,
    /// Name the new definition is imported under.
    pub temp_name: String,
    /// Name the old app is parked under.
    pub parked_name: String,
    /// Slug the old app is parked under.
    pub parked_slug: String,
    /// The git app imported.
    pub git_app_id: String,
    /// Version name and id imported.
    pub version_name: String,
    /// Version id imported.
    pub version_id: String,
    /// When the swap started (RFC 3339).
    pub started_at: String,
}

/// A temporary name whose app may still appear.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Abandoned {
    /// The temporary app name.
    pub name: String,
    /// When the import was abandoned (RFC 3339).
    pub since: String,
}

/// The app as ToolJet knows it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    /// App id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// App name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Version id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// Version name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_name: Option<String>,
}

/// The app as git holds it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GitStatus {
    /// Path of the version file, e.g. `Sales Dashboard/v3.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Key of the app in `.meta/meta.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_app_id: Option<String>,
    /// Push: branch head at which git was last verified to hold the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// Push: digest of the normalized export, name and version last verified in git; while it
    /// and the branch head are unchanged, nothing is fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_digest: Option<String>,
}

/// A git commit, as the seed's "last commit details" shows it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CommitInfo {
    /// Commit sha.
    pub sha: String,
    /// Commit message.
    pub message: String,
    /// Author name.
    pub author: String,
    /// Commit date (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
}
