//! What an AppSyncSet should hold, without IO: the apps it selects, the AppSync each gets
//! (named once, then kept), which generated AppSyncs to create, revert or delete, and which
//! apps an AppSync the set did not generate already covers.

use std::collections::{BTreeMap, BTreeSet};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use super::super::Problem;
use crate::api::{
    self, AppSelector, AppSync, AppSyncSet, AppSyncSpec, Direction, Reason, APP_IDENTITY_LABEL,
    APP_NAME_ANNOTATION, APP_SYNC_SET_LABEL, MANAGED_BY, MANAGED_BY_LABEL,
    PULL_REQUESTED_ANNOTATION,
};

/// Annotation on a generated AppSync: the app's full identity (the label holds its hash).
pub const APP_ID_ANNOTATION: &str = "gitsync.tooljet.io/app-id";

/// An app the set found: in the workspace (Push) or in `.meta/meta.json` (Pull).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundApp {
    /// ToolJet app id (Push) or git app id (Pull): what stays when the app is renamed.
    pub identity: String,
    /// The app's name now.
    pub name: String,
}

/// What a set's listing found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// The apps.
    pub apps: Vec<FoundApp>,
    /// Pull: `meta.json` keys whose entries could not be read; their AppSyncs are kept.
    pub unreadable: Vec<String>,
    /// Pull: the commit read.
    pub revision: Option<String>,
}

/// `spec.apps`, compiled.
pub struct Selector {
    include: GlobSet,
    exclude: GlobSet,
}

impl Selector {
    /// Whether the app of this name is selected.
    pub fn selects(&self, name: &str) -> bool {
        self.include.is_match(name) && !self.exclude.is_match(name)
    }
}

/// Compiles `spec.apps`; a pattern that is no glob is a spec error naming it.
pub fn selector(sel: &AppSelector) -> Result<Selector, Problem> {
    let build = |field: &str, patterns: &[String]| {
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            let glob = GlobBuilder::new(p)
                .literal_separator(false)
                .backslash_escape(true)
                .build()
                .map_err(|e| {
                    Problem::stalled(
                        Reason::InvalidAppSelector,
                        format!("spec.apps.{field} pattern {p:?} is no glob ({e}); use *, ? and [abc] on app names"),
                    )
                })?;
            b.add(glob);
        }
        b.build().map_err(|e| {
            Problem::stalled(
                Reason::InvalidAppSelector,
                format!("spec.apps.{field}: {e}"),
            )
        })
    };
    Ok(Selector {
        include: build("include", &sel.include)?,
        exclude: build("exclude", &sel.exclude)?,
    })
}

/// Longest app identity an AppSync can name (`spec.app` is `id:<identity>`, at most 255).
pub const MAX_IDENTITY: usize = 200;

/// Whether an identity can be an AppSync's `spec.app` (`id:<identity>`): bounded, no control
/// characters. A `meta.json` key that is not is left out (and logged), not a failing set.
pub fn usable_identity(id: &str) -> bool {
    !id.trim().is_empty() && id.len() <= MAX_IDENTITY && !id.chars().any(char::is_control)
}

/// The selected apps, each identity once, in name order.
pub fn select(apps: Vec<FoundApp>, sel: &Selector) -> Vec<FoundApp> {
    let mut seen = BTreeSet::new();
    let mut out: Vec<FoundApp> = apps
        .into_iter()
        .filter(|a| usable_identity(&a.identity))
        .filter(|a| sel.selects(&a.name) && seen.insert(a.identity.to_ascii_lowercase()))
        .map(|a| FoundApp {
            name: api::bounded(a.name, 253),
            ..a
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.identity.cmp(&b.identity)));
    out
}

/// A short stable hash of an app's identity (case-insensitive, as ToolJet's UUIDs are): the
/// value of [`APP_IDENTITY_LABEL`] and the tail of the generated name.
pub fn identity_hash(identity: &str) -> String {
    let d = Sha256::digest(identity.to_ascii_lowercase().as_bytes());
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The name of a new generated AppSync: `<set>-<app>-<hash>`, a DNS label (at most 63
/// characters, lower-case letters, digits and `-`), readable where the app name allows.
pub fn child_name(set: &str, app_name: &str, hash: &str) -> String {
    let slug = |s: &str, max: usize| {
        let mut out = String::new();
        for c in s.chars().flat_map(char::to_lowercase) {
            let c = if c.is_ascii_alphanumeric() { c } else { '-' };
            if c == '-' && (out.is_empty() || out.ends_with('-')) {
                continue;
            }
            out.push(c);
            if out.len() >= max {
                break;
            }
        }
        out.trim_matches('-').to_string()
    };
    let short_hash = &hash[..hash.len().min(8)];
    let set = slug(set, 30);
    let room = 63usize.saturating_sub(set.len() + short_hash.len() + 2);
    let app = slug(app_name, room);
    [set.as_str(), app.as_str(), short_hash]
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("-")
}

/// The name used when [`child_name`] is taken by an AppSync the set did not generate: the
/// set and a hash of the set's uid and the app's identity (two sets whose names are cut to the
/// same prefix still differ).
pub fn fallback_name(set: &AppSyncSet, identity: &str) -> String {
    let uid = set.meta().uid.as_deref().unwrap_or_default();
    let hash = identity_hash(&format!("{uid}/{identity}"));
    format!("{}-{hash}", child_name(&set.name_any(), "", ""))
}

/// At most this many apps per set: a workspace or a `meta.json` (which anyone who can push to
/// the repository writes) listing more does not become that many objects in etcd.
pub const MAX_APPS: usize = 5000;

/// Labels of the set that are not copied to its AppSyncs: GitOps tools track what they
/// applied by these, and would report generated AppSyncs as their own (and prune them).
const NOT_COPIED: &[&str] = &[
    "app.kubernetes.io/instance",
    "argocd.argoproj.io/",
    "kustomize.toolkit.fluxcd.io/",
    "helm.toolkit.fluxcd.io/",
    "helm.sh/",
    "gitsync.tooljet.io/",
];

/// Whether `child` was generated by `set`: it names the set as its controlling owner (a
/// label alone could be copied onto any AppSync).
pub fn is_child(child: &AppSync, set: &AppSyncSet) -> bool {
    let Some(uid) = set.meta().uid.as_deref() else {
        return false;
    };
    child
        .owner_references()
        .iter()
        .any(|o| o.uid == uid && o.controller == Some(true) && o.kind == "AppSyncSet")
}

/// Whether some AppSync set generated `aps` (any set).
fn generated_by_a_set(aps: &AppSync) -> bool {
    aps.owner_references()
        .iter()
        .any(|o| o.kind == "AppSyncSet" && o.controller == Some(true))
}

/// Whether an AppSync (hand-written, or another set's) already handles `app`: it names the
/// app by name or id, or records it as the app it owns.
pub fn covers(aps: &AppSync, app: &FoundApp, direction: Direction) -> bool {
    let s = aps.spec.app.as_str();
    let id_matches = |id: &str| id.eq_ignore_ascii_case(&app.identity);
    if s == app.name || s.strip_prefix("id:").is_some_and(id_matches) || id_matches(s) {
        return true;
    }
    let owned = aps.status.as_ref().and_then(|st| st.owned.as_ref());
    owned.is_some_and(|o| {
        let id = match direction {
            Direction::Push => o.app_id.as_deref(),
            Direction::Pull => o.git_app_id.as_deref(),
        };
        id.is_some_and(id_matches)
    })
}

/// The AppSync the set wants for `app`, named `name`.
pub fn desired(set: &AppSyncSet, app: &FoundApp, name: &str) -> AppSync {
    let spec = AppSyncSpec {
        git_sync_config_ref: set.spec.git_sync_config_ref.clone(),
        app: format!("id:{}", app.identity),
        direction: set.spec.direction,
        push: match set.spec.direction {
            Direction::Push => set.spec.template.push.clone(),
            Direction::Pull => None,
        },
        pull: match set.spec.direction {
            Direction::Pull => set.spec.template.pull.clone(),
            Direction::Push => None,
        },
        suspend: set.spec.suspend,
    };
    let mut child = AppSync::new(name, spec);
    child.metadata.namespace = set.namespace();
    child.metadata.labels = Some(child_labels(set, app));
    child.metadata.annotations = Some(child_annotations(set, app));
    // Created with the AppSync controller's finalizer: its first reconcile goes straight to
    // work instead of spending a pass (and a write) on adding it, hundreds at once.
    child.metadata.finalizers = Some(vec![api::FINALIZER.to_string()]);
    child.metadata.owner_references = Some(vec![OwnerReference {
        api_version: AppSyncSet::api_version(&()).into_owned(),
        kind: AppSyncSet::kind(&()).into_owned(),
        name: set.name_any(),
        uid: set.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    child
}

/// The set's own labels (so a sharded operator reconciles its AppSyncs too), plus ours.
fn child_labels(set: &AppSyncSet, app: &FoundApp) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = set
        .labels()
        .iter()
        .filter(|(k, _)| {
            k.as_str() != MANAGED_BY_LABEL && !NOT_COPIED.iter().any(|p| k.starts_with(p))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    labels.insert(APP_SYNC_SET_LABEL.into(), label_value(&set.name_any()));
    labels.insert(APP_IDENTITY_LABEL.into(), identity_hash(&app.identity));
    labels
}

/// A set name as a label value (at most 63 characters; names longer are hashed).
pub fn label_value(name: &str) -> String {
    if name.len() <= 63 {
        name.to_string()
    } else {
        format!("{}-{}", &name[..50], &identity_hash(name)[..12])
    }
}

fn child_annotations(set: &AppSyncSet, app: &FoundApp) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert(
        APP_NAME_ANNOTATION.to_string(),
        api::bounded(app.name.clone(), 253),
    );
    a.insert(APP_ID_ANNOTATION.to_string(), app.identity.clone());
    if let Some(v) = set.annotations().get(PULL_REQUESTED_ANNOTATION) {
        a.insert(PULL_REQUESTED_ANNOTATION.to_string(), v.clone());
    }
    a
}

/// Whether a generated AppSync drifted from what the set wants: its spec, or the labels and
/// annotations the set manages (other labels and annotations are the user's).
pub fn drifted(current: &AppSync, want: &AppSync) -> bool {
    let spec = serde_json::to_value(&current.spec).ok() != serde_json::to_value(&want.spec).ok();
    let missing = |have: &BTreeMap<String, String>, need: Option<&BTreeMap<String, String>>| {
        need.into_iter()
            .flatten()
            .any(|(k, v)| have.get(k) != Some(v))
    };
    spec || missing(current.labels(), want.metadata.labels.as_ref())
        || missing(current.annotations(), want.metadata.annotations.as_ref())
}

/// The app an AppSync of the set is for, from what the set wrote on it.
pub fn app_of_child(child: &AppSync) -> Option<FoundApp> {
    let identity = child.annotations().get(APP_ID_ANNOTATION)?.clone();
    let name = child
        .annotations()
        .get(APP_NAME_ANNOTATION)
        .cloned()
        .unwrap_or_else(|| identity.clone());
    Some(FoundApp { identity, name })
}

/// Who handles one selected app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Covered {
    /// The app.
    pub app: FoundApp,
    /// The AppSync handling it.
    pub app_sync: String,
    /// Whether the set generated that AppSync.
    pub generated: bool,
}

/// What a pass changes.
#[derive(Debug, Default)]
pub struct SetPlan {
    /// AppSyncs to create.
    pub create: Vec<AppSync>,
    /// Generated AppSyncs that drifted, as the set wants them.
    pub revert: Vec<AppSync>,
    /// Generated AppSyncs to delete, with the app each was for.
    pub delete: Vec<(String, String)>,
    /// Every selected app and its AppSync.
    pub covered: Vec<Covered>,
}

/// The identity hash a generated AppSync is for: from the set's app-id annotation (a hand edit
/// of the label is reverted, not taken for another app), else the label.
pub fn child_key(c: &AppSync) -> Option<String> {
    match c.annotations().get(APP_ID_ANNOTATION) {
        Some(id) => Some(identity_hash(id)),
        None => c.labels().get(APP_IDENTITY_LABEL).cloned(),
    }
}

/// Plans a pass. `apps` are the selected apps (`None` while suspended: nothing is created or
/// deleted, the generated AppSyncs are only kept as the set wants them); `children` the
/// AppSyncs the set generated (none terminating), `others` the other AppSyncs of the namespace
/// that use the same GitSyncConfig; `keep` the identity hashes whose AppSyncs stay although
/// their app was not listed this time (not missing long enough yet, or unreadable). Pure.
pub fn plan(
    set: &AppSyncSet,
    apps: Option<&[FoundApp]>,
    children: &[&AppSync],
    others: &[&AppSync],
    keep: &BTreeSet<String>,
) -> SetPlan {
    let mut out = SetPlan::default();
    // One AppSync per app: of copies (made by hand, or by a pass that did not see the
    // other yet), the oldest stays.
    let mut by_hash: BTreeMap<String, &AppSync> = BTreeMap::new();
    for c in children {
        let Some(key) = child_key(c) else {
            // Generated AppSyncs without an identity are not the set's doing: removed.
            out.delete.push((c.name_any(), String::new()));
            continue;
        };
        match by_hash.get(&key) {
            Some(kept) if older(kept, c) => out.delete.push((c.name_any(), String::new())),
            Some(kept) => {
                out.delete.push((kept.name_any(), String::new()));
                by_hash.insert(key, c);
            }
            None => {
                by_hash.insert(key, c);
            }
        }
    }
    let copies = out.delete.len();
    let from_children: Vec<FoundApp>;
    let (apps, suspended) = match apps {
        Some(a) => (a, false),
        None => {
            from_children = by_hash.values().filter_map(|c| app_of_child(c)).collect();
            (from_children.as_slice(), true)
        }
    };
    let mut kept = BTreeSet::new();
    for app in apps {
        let hash = identity_hash(&app.identity);
        let ours = by_hash.get(&hash).copied();
        let other = others
            .iter()
            .filter(|o| covers(o, app, set.spec.direction))
            .find(|o| ours.is_none_or(|c| !generated_by_a_set(o) || older(o, c)));
        if let (Some(o), false) = (other, suspended) {
            // An AppSync the set did not generate handles the app: it wins.
            if let Some(c) = ours {
                out.delete.push((c.name_any(), app.name.clone()));
            }
            out.covered.push(Covered {
                app: app.clone(),
                app_sync: o.name_any(),
                generated: false,
            });
            continue;
        }
        let name = match ours {
            Some(c) => c.name_any(),
            None => child_name(&set.name_any(), &app.name, &hash),
        };
        let want = desired(set, app, &name);
        match ours {
            Some(c) => {
                kept.insert(hash);
                if drifted(c, &want) {
                    out.revert.push(want);
                }
            }
            None if !suspended => out.create.push(want),
            None => continue,
        }
        out.covered.push(Covered {
            app: app.clone(),
            app_sync: name,
            generated: true,
        });
    }
    if suspended {
        out.delete.truncate(copies);
        return out;
    }
    for (hash, c) in &by_hash {
        let deleting = out.delete.iter().any(|(n, _)| *n == c.name_any());
        if kept.contains(hash) || deleting {
            continue;
        }
        if keep.contains(hash) {
            if let Some(app) = app_of_child(c) {
                out.covered.push(Covered {
                    app,
                    app_sync: c.name_any(),
                    generated: true,
                });
            }
            continue;
        }
        let name = app_of_child(c).map(|a| a.name).unwrap_or_default();
        out.delete.push((c.name_any(), name));
    }
    out
}

/// Which generated AppSyncs of apps not listed now stay for this pass: an app must be missing
/// for `grace` (two listings) before its AppSync goes, so one odd listing (a page skipped
/// while apps were created, a bad commit fixed soon after) deletes nothing. `missing_since`
/// is updated: apps listed again are forgotten, newly missing ones recorded at `now`. Pure.
pub fn within_grace(
    listed: &[FoundApp],
    children: &[&AppSync],
    missing_since: &mut BTreeMap<String, std::time::Instant>,
    now: std::time::Instant,
    grace: std::time::Duration,
) -> BTreeSet<String> {
    let listed: BTreeSet<String> = listed.iter().map(|a| identity_hash(&a.identity)).collect();
    let mut keep = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for key in children.iter().filter_map(|c| child_key(c)) {
        seen.insert(key.clone());
        if listed.contains(&key) {
            missing_since.remove(&key);
            continue;
        }
        let since = *missing_since.entry(key.clone()).or_insert(now);
        if now.saturating_duration_since(since) < grace {
            keep.insert(key);
        }
    }
    missing_since.retain(|k, _| seen.contains(k));
    keep
}

/// Of two AppSyncs generated for the same app by two sets, the older one wins (then the name).
fn older(a: &AppSync, b: &AppSync) -> bool {
    let t = |x: &AppSync| x.meta().creation_timestamp.clone().map(|t| t.0);
    match (t(a), t(b)) {
        (Some(x), Some(y)) if x != y => x < y,
        _ => a.name_any() < b.name_any(),
    }
}

#[cfg(test)]
mod tests;
