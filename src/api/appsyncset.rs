//! `AppSyncSet`: every (selected) app of a workspace or of a repository, as generated AppSyncs
//! (design §7), like Argo CD's ApplicationSet.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, ConfigRef, Direction, PullSpec, PushSpec};

/// Generates one AppSync per app of a workspace (Push) or of a repository (Pull).
#[allow(clippy::duplicated_attributes)] // printcolumn is repeated on purpose
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "gitsync.tooljet.io",
    version = "v1alpha1",
    kind = "AppSyncSet",
    namespaced,
    status = "AppSyncSetStatus",
    shortname = "apss",
    category = "tooljet",
    doc = "Keeps every selected app of a ToolJet workspace pushed to git (Push), or every selected app of a repository pulled into a workspace (Pull), by generating one AppSync per app.",
    printcolumn(name = "Direction", type_ = "string", json_path = ".spec.direction"),
    printcolumn(name = "Apps", type_ = "integer", json_path = ".status.apps.total"),
    printcolumn(
        name = "Ready Apps",
        type_ = "integer",
        json_path = ".status.apps.ready"
    ),
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
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AppSyncSetSpec {
    /// The GitSyncConfig (workspace + repository) every generated AppSync uses.
    pub git_sync_config_ref: ConfigRef,
    /// `Push`: one AppSync per app of the ToolJet workspace. `Pull`: one per app of the
    /// repository's `.meta/meta.json` at `template.pull.revision`. Cannot change once set.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "spec.direction cannot change once set: create a new AppSyncSet for the other direction"}]))]
    pub direction: Direction,
    /// Which apps, by name.
    #[serde(default)]
    pub apps: AppSelector,
    /// The settings of the generated AppSyncs.
    #[serde(default)]
    pub template: AppSyncTemplate,
    /// When true no AppSync is generated or deleted, and the generated ones are suspended.
    #[serde(default)]
    pub suspend: bool,
}

/// Apps selected by name: included by one of `include` and by none of `exclude`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppSelector {
    /// Glob patterns (`*`, `?`, `[abc]`) on app names; default: every app.
    #[serde(default = "all_apps")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 255)))]
    pub include: Vec<String>,
    /// Glob patterns of apps left out, even when included.
    #[serde(default)]
    #[schemars(length(max = 100), inner(length(min = 1, max = 255)))]
    pub exclude: Vec<String>,
}

impl Default for AppSelector {
    fn default() -> Self {
        AppSelector {
            include: all_apps(),
            exclude: Vec::new(),
        }
    }
}

fn all_apps() -> Vec<String> {
    vec!["*".into()]
}

/// What every generated AppSync gets, as an AppSync's `push`/`pull`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppSyncTemplate {
    /// Push settings of the generated AppSyncs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<PushSpec>,
    /// Pull settings of the generated AppSyncs; `revision` is also where the set reads the
    /// repository's apps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullSpec>,
}

/// Observed state of an AppSyncSet.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppSyncSetStatus {
    /// Generation the status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready (every selected app's AppSync is Ready), Reconciling, Stalled.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The selected apps and how their AppSyncs are doing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps: Option<AppsSummary>,
    /// Pull: the commit whose `.meta/meta.json` listed the apps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Pull: ToolJet apps imported by generated AppSyncs since deleted (their app left the
    /// repository or the selection), at most 100, newest first. If the app comes back, its
    /// new AppSync owns the app again instead of refusing it as someone else's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub released: Vec<ReleasedApp>,
}

/// A ToolJet app a deleted generated AppSync had imported.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReleasedApp {
    /// The git app id (meta.json key).
    pub git_app_id: String,
    /// The ToolJet app id it had imported.
    pub app_id: String,
    /// The commit it had imported last: a new AppSync finding git unchanged since then
    /// leaves the app as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_commit: Option<super::CommitInfo>,
}

/// Counts of the selected apps, for `kubectl get apss`: "is my backup complete?".
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppsSummary {
    /// Apps selected (generated AppSyncs plus apps covered by hand-written ones).
    pub total: u32,
    /// Apps whose AppSync is Ready.
    pub ready: u32,
    /// Apps whose AppSync reports a problem.
    pub failing: u32,
    /// The first failing apps (at most 20), with their reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failing_apps: Vec<AppEntry>,
    /// Apps an AppSync the set did not generate already covers (at most 20): that AppSync
    /// wins, and the set generates none for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overlapping: Vec<AppEntry>,
}

/// One app of the set and the AppSync covering it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppEntry {
    /// The app's name.
    pub name: String,
    /// The AppSync covering it.
    pub app_sync: String,
    /// Its Ready reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its Ready message (shortened).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
