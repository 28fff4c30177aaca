//! Custom resource types (`gitsync.tooljet.io/v1alpha1`) and their status helpers.
//!
//! The field names follow `design.md` §1 exactly: users copy manifests from the docs, and the
//! generated CRDs in `crds/` are checked against these types by a test.

mod appsync;
mod appsyncset;
mod conditions;
mod gitsyncconfig;
mod reason;

pub use appsync::*;
pub use appsyncset::*;
pub use conditions::*;
pub use gitsyncconfig::*;
pub use reason::Reason;

/// API group of every kind.
pub const GROUP: &str = "gitsync.tooljet.io";

/// Label put on every object the operator creates, so they can be found and told apart from
/// objects users bring.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "tooljet-gitsync-operator";
/// Label naming the GitSyncConfig a generated object belongs to.
pub const CONFIG_LABEL: &str = "gitsync.tooljet.io/config";
/// Annotation on a GitSyncConfig: any new value rotates a generated deploy key.
pub const ROTATE_KEY_ANNOTATION: &str = "gitsync.tooljet.io/rotate-key";
/// Annotation on an AppSync: any new value requests a pull (like Flux's `requestedAt`).
pub const PULL_REQUESTED_ANNOTATION: &str = "gitsync.tooljet.io/pull-requested-at";
/// Annotation on an AppSync: any new value lets a Pull adopt a different git app behind its
/// name (or a changed `spec.app`) and replace the app it owns with it.
pub const ADOPT_ANNOTATION: &str = "gitsync.tooljet.io/adopt";
/// Annotation on a generated key Secret recording its key type.
pub const KEY_TYPE_ANNOTATION: &str = "gitsync.tooljet.io/key-type";
/// Annotation on a generated key Secret recording the rotate-key value it was made for.
pub const ROTATED_FOR_ANNOTATION: &str = "gitsync.tooljet.io/rotated-for";
/// Finalizer of every kind.
pub const FINALIZER: &str = "gitsync.tooljet.io/finalizer";

/// Label on every AppSync an AppSyncSet generated: the set's name.
pub const APP_SYNC_SET_LABEL: &str = "gitsync.tooljet.io/app-sync-set";
/// Label on a generated AppSync: a short hash of the app's identity (ToolJet app id for Push,
/// git app id for Pull), so the set finds an app's AppSync whatever the app is called now.
pub const APP_IDENTITY_LABEL: &str = "gitsync.tooljet.io/app-identity";
/// Annotation on a generated AppSync: the app's name when the set last listed it.
pub const APP_NAME_ANNOTATION: &str = "gitsync.tooljet.io/app-name";

/// Returns the CRDs as one multi-document YAML stream, the output of `tooljet-gitsync-operator crd`.
pub fn crds_yaml() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    use kube::CustomResourceExt;
    let mut out = Vec::new();
    for crd in [GitSyncConfig::crd(), AppSync::crd(), AppSyncSet::crd()] {
        let name = crd.metadata.name.clone().unwrap_or_default();
        out.push((name, serde_yaml::to_string(&crd)?));
    }
    Ok(out)
}
