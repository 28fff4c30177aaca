//! AppSyncSet reconciler (design §7): list the apps (the workspace for Push, `.meta/meta.json`
//! at the revision for Pull) at most once per interval, select them, then create, revert and
//! delete the generated AppSyncs, and report how they are doing. Nothing in git or ToolJet is
//! touched here: deleting a generated AppSync deletes nothing either.

pub mod plan;
pub mod status;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::reflector::Store;
use kube::{Api, ResourceExt};

use super::config_ref::{self, ResolvedConfig};
use super::report;
use super::{context, key_of, Context, Error, Failure, Problem};
use crate::api::{self, AppSync, AppSyncSet, Direction, Reason};
use crate::layout::MetaFile;
use plan::FoundApp;
use status::SetEnded;

/// Requests to the Kubernetes API in flight at once while creating or deleting AppSyncs.
const PARALLEL_WRITES: usize = 8;

/// What the set reconciler shares: the operator's context and the AppSync store it shares
/// with the AppSync controller.
pub struct SetContext {
    /// The operator's context.
    pub ctx: Arc<Context>,
    /// Every AppSync the operator watches.
    pub app_syncs: Store<AppSync>,
}

/// Entry point for the controller.
pub async fn reconcile(set: Arc<AppSyncSet>, sc: Arc<SetContext>) -> Result<Action, Error> {
    let api: Api<AppSyncSet> =
        Api::namespaced(sc.ctx.client.clone(), &set.namespace().unwrap_or_default());
    finalizer(&api, api::FINALIZER, set, |event| async {
        match event {
            Finalizer::Apply(s) => apply(s, &sc).await,
            Finalizer::Cleanup(s) => cleanup(s, &sc).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(e.to_string()))
}

/// Requeue after infrastructure errors, backing off exponentially per object.
pub fn error_policy(set: Arc<AppSyncSet>, err: &Error, sc: Arc<SetContext>) -> Action {
    tracing::warn!(appsyncset = %key_of(set.as_ref()), error = %err, "reconcile error");
    Action::requeue(
        sc.ctx
            .backoff(&format!("AppSyncSet/{}", key_of(set.as_ref()))),
    )
}

/// The AppSyncs the set generated, as the store holds them.
fn children(set: &AppSyncSet, sc: &SetContext) -> Vec<Arc<AppSync>> {
    let ns = set.namespace();
    sc.app_syncs
        .state()
        .into_iter()
        .filter(|a| a.namespace() == ns && plan::is_child(a, set))
        // Going already: not deleted again, and an app back meanwhile waits for it to go.
        .filter(|a| a.metadata.deletion_timestamp.is_none())
        .collect()
}

/// Deleting a set deletes the AppSyncs it generated (each finishes what it has in progress
/// and deletes nothing in git or ToolJet), whether or not a garbage collector runs.
async fn cleanup(set: Arc<AppSyncSet>, sc: &SetContext) -> Result<Action, Error> {
    let ns = set.namespace().unwrap_or_default();
    // `kubectl delete --cascade=orphan`: the AppSyncs stay (the garbage collector drops
    // their owner reference), as with any owner.
    if set.finalizers().iter().any(|f| f == "orphan") {
        sc.ctx.forget_set(&key_of(set.as_ref()));
        tracing::info!(appsyncset = %key_of(set.as_ref()), "AppSyncSet deleted with --cascade=orphan: its AppSyncs stay");
        return Ok(Action::await_change());
    }
    let api: Api<AppSync> = Api::namespaced(sc.ctx.client.clone(), &ns);
    let selector = format!(
        "{}={}",
        api::APP_SYNC_SET_LABEL,
        plan::label_value(&set.name_any())
    );
    let listed = api.list(&ListParams::default().labels(&selector)).await?;
    let names: Vec<String> = listed
        .items
        .iter()
        .filter(|a| plan::is_child(a, &set))
        .map(ResourceExt::name_any)
        .collect();
    delete_all(&api, &names).await?;
    sc.ctx.forget_set(&key_of(set.as_ref()));
    tracing::info!(appsyncset = %key_of(set.as_ref()), deleted = names.len(), "AppSyncSet deleted with its AppSyncs; git and ToolJet left untouched");
    Ok(Action::await_change())
}

async fn delete_all(api: &Api<AppSync>, names: &[String]) -> Result<(), kube::Error> {
    let calls: Vec<_> = names
        .iter()
        .cloned()
        .map(|n| {
            let api = api.clone();
            async move { delete_one(&api, &n).await }
        })
        .collect();
    futures::stream::iter(calls)
        .buffer_unordered(PARALLEL_WRITES)
        .try_collect::<Vec<()>>()
        .await
        .map(|_| ())
}

async fn delete_one(api: &Api<AppSync>, n: &str) -> Result<(), kube::Error> {
    {
        match api.delete(n, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

async fn apply(set: Arc<AppSyncSet>, sc: &SetContext) -> Result<Action, Error> {
    let ctx = &sc.ctx;
    let ns = set.namespace().unwrap_or_default();
    // The cached object may predate the last status write: compared with a stale status, an
    // unchanged one would be written again and its Events repeated.
    let api: Api<AppSyncSet> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(set) = api.get_opt(&set.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let prev = set.status.clone().unwrap_or_default();
    let (interval, ended, changes) = match run(&set, sc, &ns).await {
        Ok((iv, ended, changes)) => (iv, ended, changes),
        Err((iv, Failure::Problem(p))) => (iv, SetEnded::Failed(p), Changes::default()),
        Err((_, Failure::Infra(e))) => return Err(e),
    };
    let next = status::next_status(&set, &prev, &ended, &report::now_rfc3339());
    let notes = status::notes(&prev, &next, &changes.created, &changes.deleted);
    // Written only when it changed: AppSyncs turning Ready one by one re-run the set, and a
    // thousand unchanged passes are a thousand writes saved.
    if next != prev || !notes.is_empty() {
        report::write(ctx, &set, &next, &notes).await?;
    }
    let problem = match &ended {
        SetEnded::Failed(p) => Some(p),
        _ => None,
    };
    Ok(Action::requeue(report::next_check(
        problem,
        report::failing_for(&next.conditions),
        interval,
        ctx.options.retry_min,
        ctx.options.retry_max,
    )))
}

/// What a pass changed, for its Events.
#[derive(Default)]
struct Changes {
    created: Vec<String>,
    deleted: Vec<String>,
}

type Ran = Result<(Duration, SetEnded, Changes), (Duration, Failure)>;

async fn run(set: &AppSyncSet, sc: &SetContext, ns: &str) -> Ran {
    let ctx = &sc.ctx;
    let default = super::gitsyncconfig::DEFAULT_INTERVAL;
    let sel = plan::selector(&set.spec.apps).map_err(|p| (default, p.into()))?;
    let api: Api<AppSync> = Api::namespaced(ctx.client.clone(), ns);
    let kids = children(set, sc);
    let kid_refs: Vec<&AppSync> = kids.iter().map(AsRef::as_ref).collect();
    if set.spec.suspend {
        let p = plan::plan(set, None, &kid_refs, &[], &Default::default());
        revert_all(&api, &p.revert)
            .await
            .map_err(|e| (default, e))?;
        let (apps, _) = status::summarize(&p.covered, |n| lookup(&kids, n));
        return Ok((default, SetEnded::Suspended(apps), Changes::default()));
    }
    let (interval, resolved) =
        config_ref::dereference_ref(ns, &set.spec.git_sync_config_ref, ctx).await;
    let cfg = resolved.map_err(|f| (interval, f))?;
    let listed = listing(set, ctx, &cfg, &sel)
        .await
        .map_err(|f| (interval, f))?;
    let selected = listed.apps.clone();
    if selected.len() > plan::MAX_APPS {
        return Err((
            interval,
            Problem::stalled(
                Reason::TooManyApps,
                format!("spec.apps selects {} apps, more than the {} one AppSyncSet generates AppSyncs for; narrow spec.apps.include, or split the apps over several sets (nothing was created or deleted)", selected.len(), plan::MAX_APPS),
            )
            .into(),
        ));
    }
    let all = sc.app_syncs.state();
    let cfg_ns = cfg.gsc.namespace().unwrap_or_default();
    let others: Vec<&AppSync> = all
        .iter()
        .map(AsRef::as_ref)
        .filter(|a| a.namespace().as_deref() == Some(ns) && !plan::is_child(a, set))
        .filter(|a| uses_config(a, &cfg_ns, &cfg.gsc.name_any(), ctx))
        .collect();
    let mut keep = match ctx.set_missing.lock() {
        Ok(mut m) => {
            let missing = m.entry(key_of(set)).or_default();
            plan::within_grace(&selected, &kid_refs, missing, Instant::now(), interval)
        }
        Err(_) => kid_refs.iter().filter_map(|c| plan::child_key(c)).collect(),
    };
    keep.extend(listed.unreadable.iter().map(|id| plan::identity_hash(id)));
    let p = plan::plan(set, Some(&selected), &kid_refs, &others, &keep);
    let fail = |e| (interval, e);
    let created = create_all(&api, set, &p.create).await.map_err(fail)?;
    let released = if set.spec.direction == Direction::Pull {
        let prev = set.status.as_ref().map(|s| s.released.clone());
        hand_back(&api, &p, &kid_refs, prev.unwrap_or_default()).await
    } else {
        Vec::new()
    };
    revert_all(&api, &p.revert).await.map_err(fail)?;
    let names: Vec<String> = p.delete.iter().map(|(n, _)| n.clone()).collect();
    delete_all(&api, &names)
        .await
        .map_err(|e| (interval, e.into()))?;
    let deleted: Vec<String> = p
        .delete
        .iter()
        .map(|(n, app)| {
            if app.is_empty() {
                n.clone()
            } else {
                app.clone()
            }
        })
        .collect();
    let (apps, pending) = status::summarize(&p.covered, |n| {
        lookup(&kids, n).or_else(|| {
            all.iter()
                .map(AsRef::as_ref)
                .find(|a| a.namespace().as_deref() == Some(ns) && a.name_any() == n)
        })
    });
    Ok((
        interval,
        SetEnded::Listed {
            apps,
            pending,
            revision: listed.revision.clone(),
            released,
        },
        Changes { created, deleted },
    ))
}

fn lookup<'a>(list: &'a [Arc<AppSync>], name: &str) -> Option<&'a AppSync> {
    list.iter()
        .map(AsRef::as_ref)
        .find(|a| a.name_any() == name)
}

/// At most this many released apps are remembered.
const MAX_RELEASED: usize = 100;
/// Field manager of the ownership a set hands back to a new AppSync (not the AppSync
/// controller's own, so its status writes neither drop nor fight it).
const HANDBACK_MANAGER: &str = "tooljet-gitsync-operator-appsyncset";

/// Pull: the apps that AppSyncs deleted in this pass had imported are remembered; a new
/// AppSync for an app remembered gets that app as its own (written into its status, which
/// only the operator may write), so it replaces it later instead of refusing it as someone
/// else's. Returns the apps still remembered.
async fn hand_back(
    api: &Api<AppSync>,
    p: &plan::SetPlan,
    kids: &[&AppSync],
    mut released: Vec<api::ReleasedApp>,
) -> Vec<api::ReleasedApp> {
    for (name, _) in &p.delete {
        let status = kids
            .iter()
            .find(|k| k.name_any() == *name)
            .and_then(|k| k.status.as_ref());
        let owned = status.and_then(|s| s.owned.as_ref());
        let last_commit = status.and_then(|s| s.last_commit.clone());
        let pulled = owned.filter(|o| o.direction == Some(Direction::Pull));
        if let Some((git_app_id, app_id)) =
            pulled.and_then(|o| Some((o.git_app_id.clone()?, o.app_id.clone()?)))
        {
            released.retain(|r| r.git_app_id != git_app_id);
            released.insert(
                0,
                api::ReleasedApp {
                    git_app_id,
                    app_id,
                    last_commit,
                },
            );
        }
    }
    // The new AppSyncs of this pass, and those of an earlier pass killed between creating an
    // AppSync and handing it its app (still owning nothing): the hand-back resumes.
    let unowned = kids
        .iter()
        .copied()
        .filter(|k| k.status.as_ref().and_then(|s| s.owned.as_ref()).is_none());
    for want in p.create.iter().chain(unowned) {
        let Some(id) = want.annotations().get(plan::APP_ID_ANNOTATION) else {
            continue;
        };
        let Some(at) = released.iter().position(|r| r.git_app_id == *id) else {
            continue;
        };
        let r = &released[at];
        let patch = serde_json::json!({"status": {
            "owned": {"direction": "Pull", "appId": r.app_id, "gitAppId": r.git_app_id},
            "lastCommit": r.last_commit,
        }});
        let params = kube::api::PatchParams {
            field_manager: Some(HANDBACK_MANAGER.into()),
            ..Default::default()
        };
        match api
            .patch_status(&want.name_any(), &params, &kube::api::Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                tracing::info!(appsync = %want.name_any(), app_id = %r.app_id, "handed the app its deleted predecessor imported to the new AppSync");
                released.remove(at);
            }
            Err(e) => {
                tracing::warn!(appsync = %want.name_any(), error = %e, "could not hand the app back yet; retried next pass")
            }
        }
    }
    released.truncate(MAX_RELEASED);
    released
}

/// Whether an AppSync uses the GitSyncConfig `cfg_ns/cfg_name`.
fn uses_config(a: &AppSync, cfg_ns: &str, cfg_name: &str, ctx: &Context) -> bool {
    a.spec.git_sync_config_ref.name == cfg_name
        && config_ref::config_namespace(a, ctx.options.allow_cross_namespace_refs)
            .is_ok_and(|n| n == cfg_ns)
}

/// Creates the new AppSyncs; returns the names of the apps they are for. A name taken by an
/// AppSync the set did not generate is left alone and a longer name used instead.
async fn create_all(
    api: &Api<AppSync>,
    set: &AppSyncSet,
    want: &[AppSync],
) -> Result<Vec<String>, Failure> {
    let set = Arc::new(set.clone());
    let calls: Vec<_> = want
        .iter()
        .cloned()
        .map(|w| {
            let (api, set) = (api.clone(), set.clone());
            async move { create_one(&api, &set, &w).await }
        })
        .collect();
    let made = futures::stream::iter(calls)
        .buffer_unordered(PARALLEL_WRITES)
        .try_collect::<Vec<Option<String>>>()
        .await?;
    Ok(made.into_iter().flatten().collect())
}

/// Creates one AppSync; the app's name when it was created now.
async fn create_one(
    api: &Api<AppSync>,
    set: &AppSyncSet,
    w: &AppSync,
) -> Result<Option<String>, Failure> {
    {
        let app = w
            .annotations()
            .get(api::APP_NAME_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        match api.create(&PostParams::default(), w).await {
            Ok(_) => return Ok(Some(app)),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(Failure::from(e)),
        }
        // Ours already (the store had not seen it yet), or someone else's name.
        if let Some(existing) = api.get_opt(&w.name_any()).await? {
            if plan::is_child(&existing, set) {
                return Ok(None);
            }
        }
        let mut alt = w.clone();
        let hash = w
            .labels()
            .get(api::APP_IDENTITY_LABEL)
            .cloned()
            .unwrap_or_default();
        let identity = w
            .annotations()
            .get(plan::APP_ID_ANNOTATION)
            .cloned()
            .unwrap_or(hash);
        alt.metadata.name = Some(plan::fallback_name(set, &identity));
        match api.create(&PostParams::default(), &alt).await {
            Ok(_) => Ok(Some(app)),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
            Err(e) => Err(Failure::from(e)),
        }
    }
}

/// Puts drifted generated AppSyncs back: their spec replaced whole (fields added by hand
/// removed too), the set's labels and annotations restored, the user's others kept.
async fn revert_all(api: &Api<AppSync>, want: &[AppSync]) -> Result<(), Failure> {
    for w in want {
        let Some(current) = api.get_opt(&w.name_any()).await? else {
            continue;
        };
        let mut next = current.clone();
        next.spec = w.spec.clone();
        next.labels_mut().extend(w.labels().clone());
        next.annotations_mut().extend(w.annotations().clone());
        // The set's reference restored; other owners' references kept.
        let mut owners: Vec<_> = next
            .owner_references()
            .iter()
            .filter(|o| o.kind != "AppSyncSet")
            .cloned()
            .collect();
        owners.extend(w.owner_references().iter().cloned());
        next.metadata.owner_references = Some(owners);
        next.metadata.managed_fields = None;
        next.status = None;
        // The replace carries the resourceVersion read: a change meanwhile is a conflict, and
        // the next pass looks again.
        match api
            .replace(&w.name_any(), &PostParams::default(), &next)
            .await
        {
            Ok(_) => {
                tracing::info!(appsync = %w.name_any(), "reverted a hand edit of a generated AppSync")
            }
            Err(kube::Error::Api(s)) if matches!(s.code, 404 | 409) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The set's selected apps, listed at most once per interval (and again when the set's spec
/// changed). Only the selected apps are kept: a workspace may hold many more.
async fn listing(
    set: &AppSyncSet,
    ctx: &Context,
    cfg: &ResolvedConfig,
    sel: &plan::Selector,
) -> Result<context::SetListing, Failure> {
    let key = format!(
        "{}|{}|{}",
        key_of(set),
        set.metadata.generation.unwrap_or_default(),
        cfg.key()
    );
    // A Pull set re-reads meta.json every pass: it comes from the mirror, which is checked
    // against the remote at most once per interval, and is re-run when its revision moves.
    if set.spec.direction == Direction::Push {
        if let Some(hit) = ctx.cached_set_listing(&key, cfg.valid.interval) {
            return Ok(hit);
        }
    }
    let start = Instant::now();
    let listed = match set.spec.direction {
        Direction::Push => {
            let apps = cfg
                .tooljet
                .client
                .list_app_rows(&cfg.tooljet.workspace)
                .await;
            ctx.metrics
                .tooljet_call("list_apps", start.elapsed(), apps.is_ok());
            let apps = apps.map_err(|e| Failure::from(&e))?;
            let found = apps
                .into_iter()
                .map(|a| FoundApp {
                    identity: a.id,
                    name: a.name,
                })
                .collect();
            Arc::new(plan::Listing {
                apps: plan::select(found, sel),
                ..Default::default()
            })
        }
        Direction::Pull => {
            let mut listed = Arc::unwrap_or_clone(repository_apps(set, ctx, cfg).await?);
            listed.apps = plan::select(std::mem::take(&mut listed.apps), sel);
            Arc::new(listed)
        }
    };
    ctx.store_set_listing(&key, listed.clone());
    Ok(listed)
}

/// The apps of `.meta/meta.json` at the template's revision. A revision without a readable
/// meta.json is a problem, never "no apps": that would delete every generated AppSync.
async fn repository_apps(
    set: &AppSyncSet,
    ctx: &Context,
    cfg: &ResolvedConfig,
) -> Result<context::SetListing, Failure> {
    let revision = set
        .spec
        .template
        .pull
        .as_ref()
        .and_then(|p| p.revision.clone())
        .unwrap_or_else(|| cfg.branch().to_string());
    super::appsync::check_revision(&revision)
        .map_err(|p| p.context("spec.template.pull.revision"))?;
    ctx.follows.follow(
        super::follow::Follower::AppSyncSet,
        &key_of(set),
        &cfg.url().identity(),
        &revision,
    );
    let start = Instant::now();
    let snap = ctx
        .workers
        .get(cfg.url())
        .snapshot(
            cfg.transport.clone(),
            &revision,
            Vec::new(),
            cfg.valid.interval,
        )
        .await;
    ctx.metrics
        .git_op("snapshot", start.elapsed(), snap.is_ok());
    let snap = snap?;
    let Some(bytes) = snap.meta_json.as_deref() else {
        return Err(Problem::retrying(
            Reason::AppNotInGit,
            format!("revision {revision} has no .meta/meta.json, so it holds no app pushed by ToolJet GitSync; push apps to it first (no AppSync was created or deleted)"),
        )
        .into());
    };
    let meta = MetaFile::parse(bytes).map_err(|e| {
        Problem::stalled(
            Reason::InvalidRepositoryContent,
            format!("revision {revision}: {e}; no AppSync was created or deleted"),
        )
    })?;
    let mut listing = plan::Listing {
        revision: snap.commit.map(|c| c.sha),
        ..Default::default()
    };
    for (id, entry) in meta.entries() {
        match entry {
            Ok(e) => listing.apps.push(FoundApp {
                identity: id.to_string(),
                name: e.git_app_name.unwrap_or_else(|| id.to_string()),
            }),
            // Not "gone": an AppSync it has stays; none is made for it.
            Err(e) => {
                tracing::warn!(appsyncset = %key_of(set), git_app_id = %id, error = %e, "unreadable meta.json entry: its AppSync, if any, is kept");
                listing.unreadable.push(id.to_string());
            }
        }
    }
    Ok(Arc::new(listing))
}
