//! kube-rs controllers for both kinds: the watches, the mappers between them and the
//! predicates that decide what starts a reconcile. Each reconcile runs validate →
//! dereference → observe → plan → apply → report; see `gitsyncconfig/` and `appsync/`.

pub mod appsync;
pub mod appsyncset;
pub mod config_ref;
pub mod connection;
pub mod context;
pub mod follow;
pub mod gitsyncconfig;
pub mod handoff;
pub mod https;
pub mod problem;
pub mod report;
pub mod values;

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{reflector, watcher, Controller, WatchStreamExt};
use kube::{Api, Resource, ResourceExt};

pub use context::{short, truncate, Context, Error, Options, TimedCache, FIELD_MANAGER};
pub use problem::{Failure, Problem};

use crate::api::{AppSync, AppSyncSet, GitSyncConfig};

fn watcher_config(ctx: &Context) -> watcher::Config {
    let mut wc = watcher::Config::default();
    if let Some(sel) = &ctx.options.label_selector {
        wc = wc.labels(sel);
    }
    wc
}

fn api<K>(ctx: &Context) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match &ctx.options.watch_namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    }
}

/// Reconcile on what users change (spec, annotations, deletion), not on our own status writes.
fn user_change<K: Resource>(obj: &K) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let m = obj.meta();
    m.generation.hash(&mut h);
    m.annotations.hash(&mut h);
    m.labels.hash(&mut h);
    m.deletion_timestamp.is_some().hash(&mut h);
    m.finalizers.hash(&mut h);
    Some(h.finish())
}

/// Cached objects do not need `managedFields` (often the largest part of an object): at
/// thousands of AppSyncs this is most of the store's memory.
fn strip_managed_fields<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// What AppSyncs care about in their GitSyncConfig: its spec and whether it is Ready (not the
/// `lastCheckedAt` of every periodic check, which would re-run every AppSync each interval).
fn config_state(gsc: &GitSyncConfig) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    gsc.metadata.generation.hash(&mut h);
    gsc.metadata.deletion_timestamp.is_some().hash(&mut h);
    if let Some(ready) = gsc
        .status
        .as_ref()
        .and_then(|s| crate::api::find(&s.conditions, crate::api::types::READY))
    {
        ready.status.hash(&mut h);
        ready.reason.hash(&mut h);
    }
    Some(h.finish())
}

/// Runs the controllers until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let boxed: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + Sync>> =
        Box::pin(shutdown);
    let shutdown = futures::FutureExt::shared(boxed);
    // Configs register their webhooks from their first pass; none is acted on after the end.
    ctx.hooks.activate();
    struct Deactivate<'a>(&'a crate::webhook::Hooks);
    impl Drop for Deactivate<'_> {
        fn drop(&mut self) {
            self.0.deactivate();
        }
    }
    let _deactivate = Deactivate(&ctx.hooks);
    let config = kube::runtime::controller::Config::default().concurrency(ctx.options.concurrency);
    // One watch and one store of AppSyncs, shared by the AppSync and AppSyncSet controllers.
    let (reader, writer) = reflector::store_shared::<AppSync>(SHARED_BUFFER);
    let subscribed = (writer.subscribe(), writer.subscribe(), writer.subscribe());
    let (for_appsyncs, for_sets, for_overlaps) = match subscribed {
        (Some(a), Some(b), Some(c)) => (a, b, c),
        _ => {
            tracing::error!("cannot subscribe to the AppSync watch");
            return;
        }
    };
    let root = watcher(api::<AppSync>(&ctx), watcher_config(&ctx))
        .default_backoff()
        .modify(strip_managed_fields)
        .reflect_shared(writer)
        .for_each(|_| std::future::ready(()));
    let sets_installed = crd_installed::<AppSyncSet>(&ctx).await;
    let sets = async {
        if sets_installed {
            let streams = (for_sets, for_overlaps);
            appsyncsets(ctx.clone(), reader.clone(), streams, shutdown.clone()).await;
        } else {
            drop((for_sets, for_overlaps));
            tracing::warn!("the AppSyncSet CRD is not installed, so AppSyncSets are not reconciled: apply crds/appsyncsets.gitsync.tooljet.io.yaml (helm upgrade does not update CRDs) and restart the operator");
        }
    };
    let controllers = async {
        futures::join!(
            gitsyncconfigs(ctx.clone(), config.clone(), shutdown.clone()),
            appsyncs(
                ctx.clone(),
                config,
                reader.clone(),
                for_appsyncs,
                shutdown.clone()
            ),
            sets,
        )
    };
    let upkeep = async {
        let mut tick = tokio::time::interval(HOUSEKEEPING);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if ctx.housekeeping() {
                tracing::debug!("renewed the idle event recorder");
            }
        }
    };
    // The root watch and the upkeep end with the controllers (they never end by themselves).
    tokio::select! {
        _ = controllers => {},
        _ = root => {},
        _ = upkeep => {},
    }
}

/// How often [`Context::housekeeping`] runs.
const HOUSEKEEPING: Duration = Duration::from_secs(60);

/// Buffer of the shared AppSync watch: events a slow subscriber may lag behind by.
const SHARED_BUFFER: usize = 1024;

/// Whether the kind's CRD is served (an upgrade may have brought a new kind whose CRD was not
/// applied: the other controllers still run).
async fn crd_installed<K>(ctx: &Context) -> bool
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    match api::<K>(ctx)
        .list_metadata(&kube::api::ListParams::default().limit(1))
        .await
    {
        Ok(_) => true,
        Err(kube::Error::Api(s)) if s.code == 404 => false,
        Err(e) => {
            tracing::warn!(error = %e, kind = %K::kind(&()), "cannot tell whether the CRD is installed; assuming it is");
            true
        }
    }
}

/// Passes on objects whose user-facing state ([`user_change`]) changed, like
/// `predicate_filter` for a shared stream of `Arc`s. Remembers one hash per object; the memory
/// is reset when it grows past twice the objects seen recently (one extra reconcile each).
fn changed_by_users<K: Resource>(
    stream: impl futures::Stream<Item = Arc<K>>,
) -> impl futures::Stream<Item = Arc<K>> {
    let mut seen: std::collections::HashMap<String, u64> = Default::default();
    stream.filter(move |obj| {
        let m = obj.meta();
        let key = m.uid.clone().unwrap_or_default();
        let h = user_change(obj.as_ref()).unwrap_or_default();
        let changed = seen.get(&key) != Some(&h);
        if seen.len() > 65_536 {
            seen.clear();
        }
        seen.insert(key, h);
        std::future::ready(changed)
    })
}

type Shutdown =
    futures::future::Shared<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + Sync>>>;

/// GitSyncConfigs, on user changes and on changes of the key Secrets the operator owns.
async fn gitsyncconfigs(
    ctx: Arc<Context>,
    config: kube::runtime::controller::Config,
    shutdown: Shutdown,
) {
    let (reader, writer) = reflector::store::<GitSyncConfig>();
    let stream = watcher(api::<GitSyncConfig>(&ctx), watcher_config(&ctx))
        .default_backoff()
        .modify(strip_managed_fields)
        .reflect(writer)
        .applied_objects()
        .predicate_filter(user_change, Default::default());
    let secrets: Api<Secret> = api(&ctx);
    let owned = watcher::Config::default().labels(&format!(
        "{}={}",
        crate::api::MANAGED_BY_LABEL,
        crate::api::MANAGED_BY
    ));
    // The Secrets and ConfigMaps constants and credentials come from (metadata only: their
    // values are read when a config needs them), so a rotated Secret is applied at once.
    let store = reader.clone();
    let reading = move |secret: bool| {
        let store = store.clone();
        move |obj: kube::core::PartialObjectMeta<k8s_openapi::api::core::v1::Secret>| {
            configs_reading(&store, secret, obj.namespace(), &obj.name_any())
        }
    };
    let store = reader.clone();
    let reading_maps = move |obj: kube::core::PartialObjectMeta<
        k8s_openapi::api::core::v1::ConfigMap,
    >| { configs_reading(&store, false, obj.namespace(), &obj.name_any()) };
    let source_secrets = watcher(
        api::<kube::core::PartialObjectMeta<Secret>>(&ctx),
        watcher::Config::default(),
    )
    .default_backoff()
    .touched_objects();
    let source_maps = watcher(
        api::<kube::core::PartialObjectMeta<k8s_openapi::api::core::v1::ConfigMap>>(&ctx),
        watcher::Config::default(),
    )
    .default_backoff()
    .touched_objects();
    let woken = futures::stream::unfold(ctx.config_wakeups.take(), |rx| async move {
        let mut rx = rx?;
        let next = rx.recv().await?;
        Some((next, Some(rx)))
    });
    Controller::for_stream(stream, reader)
        .with_config(config)
        .owns(secrets, owned)
        .watches_stream(source_secrets, reading(true))
        .watches_stream(source_maps, reading_maps)
        .reconcile_on(woken)
        .graceful_shutdown_on(shutdown)
        .run(
            |obj, ctx: Arc<Context>| async move {
                let start = std::time::Instant::now();
                let key = format!("GitSyncConfig/{}", key_of(obj.as_ref()));
                let res = gitsyncconfig::reconcile(obj, ctx.clone()).await;
                if res.is_ok() {
                    ctx.succeeded(&key);
                }
                let err = res.as_ref().err().map(Error::metric_label);
                ctx.metrics
                    .reconciled("GitSyncConfig", start.elapsed(), err);
                res
            },
            gitsyncconfig::error_policy,
            ctx.clone(),
        )
        .for_each(log_result)
        .await;
}

/// AppSyncs, on user changes and when their GitSyncConfig's spec or Ready state changes.
async fn appsyncs(
    ctx: Arc<Context>,
    config: kube::runtime::controller::Config,
    reader: reflector::Store<AppSync>,
    subscribed: impl futures::Stream<Item = Arc<AppSync>> + Send + 'static,
    shutdown: Shutdown,
) {
    let stream = changed_by_users(subscribed);
    let store = reader.clone();
    // An AppSync waits for its GitSyncConfig: any change of the config (e.g. turning Ready)
    // re-runs the AppSyncs that reference it.
    let referencing = move |gsc: GitSyncConfig| {
        let (name, ns) = (gsc.name_any(), gsc.namespace().unwrap_or_default());
        store
            .state()
            .into_iter()
            .filter(|a| references(a, &ns, &name))
            .map(|a| ObjectRef::from_obj(a.as_ref()))
            .collect::<Vec<_>>()
    };
    let configs = watcher(api::<GitSyncConfig>(&ctx), watcher_config(&ctx))
        .default_backoff()
        .touched_objects()
        .predicate_filter(config_state, Default::default());
    // A push handed to a repository worker re-runs its AppSync when answered.
    let answered = futures::stream::unfold(ctx.handoff.answered(), |rx| async move {
        let mut rx = rx?;
        let next = rx.recv().await?;
        Some((next, Some(rx)))
    });
    Controller::for_shared_stream(stream, reader)
        .with_config(config)
        .watches_stream(configs, referencing)
        .reconcile_on(answered)
        .reconcile_on(moved_followers(&ctx, follow::Follower::AppSync))
        .graceful_shutdown_on(shutdown)
        .run(
            |obj, ctx: Arc<Context>| async move {
                let start = std::time::Instant::now();
                let key = format!("AppSync/{}", key_of(obj.as_ref()));
                let res = appsync::reconcile(obj, ctx.clone()).await;
                if res.is_ok() {
                    ctx.succeeded(&key);
                }
                let err = res.as_ref().err().map(Error::metric_label);
                ctx.metrics.reconciled("AppSync", start.elapsed(), err);
                res
            },
            appsync::error_policy,
            ctx.clone(),
        )
        .for_each(log_result)
        .await;
}

/// What an AppSyncSet cares about in its AppSyncs: their spec and Ready state (counted in its
/// status), not every status write.
fn child_state(aps: &AppSync) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    aps.metadata.generation.hash(&mut h);
    aps.metadata.labels.hash(&mut h);
    aps.metadata.deletion_timestamp.is_some().hash(&mut h);
    if let Some(s) = aps.status.as_ref() {
        s.observed_generation.hash(&mut h);
        if let Some(ready) = crate::api::find(&s.conditions, crate::api::types::READY) {
            ready.status.hash(&mut h);
            ready.reason.hash(&mut h);
        }
    }
    h.finish()
}

/// AppSyncSets, on user changes, when an AppSync they generated changes its spec or Ready
/// state (debounced: AppSyncs turning Ready one by one re-run the set once), and every
/// interval.
async fn appsyncsets(
    ctx: Arc<Context>,
    app_syncs: reflector::Store<AppSync>,
    (children, others): (
        impl futures::Stream<Item = Arc<AppSync>> + Send + 'static,
        impl futures::Stream<Item = Arc<AppSync>> + Send + 'static,
    ),
    shutdown: Shutdown,
) {
    let (reader, writer) = reflector::store::<AppSyncSet>();
    let stream = watcher(api::<AppSyncSet>(&ctx), watcher_config(&ctx))
        .default_backoff()
        .modify(strip_managed_fields)
        .reflect(writer)
        .applied_objects()
        .predicate_filter(user_change, Default::default());
    let mut seen: std::collections::HashMap<String, u64> = Default::default();
    let children = children.filter(move |a| {
        let key = a.metadata.uid.clone().unwrap_or_default();
        let h = child_state(a);
        let changed = seen.get(&key) != Some(&h);
        if seen.len() > 65_536 {
            seen.clear();
        }
        seen.insert(key, h);
        std::future::ready(changed)
    });
    // Overlaps: a new or changed AppSync the set did not generate re-runs the sets of its
    // namespace, so a hand-written one takes over its app at once.
    let sets = reader.clone();
    let same_namespace = move |a: Arc<AppSync>| {
        let ns = a.namespace();
        sets.state()
            .into_iter()
            .filter(|s| s.namespace() == ns && !appsyncset::plan::is_child(&a, s))
            .map(|s| ObjectRef::from_obj(s.as_ref()))
            .collect::<Vec<_>>()
    };
    let others = changed_by_users(others.filter(|a| {
        std::future::ready(!a.owner_references().iter().any(|o| o.kind == "AppSyncSet"))
    }));
    let config = kube::runtime::controller::Config::default()
        .concurrency(ctx.options.concurrency)
        .debounce(std::time::Duration::from_secs(1));
    let sc = Arc::new(appsyncset::SetContext {
        ctx: ctx.clone(),
        app_syncs,
    });
    Controller::for_stream(stream, reader)
        .with_config(config)
        .owns_shared_stream(children)
        .watches_shared_stream(others, same_namespace)
        .reconcile_on(moved_followers(&ctx, follow::Follower::AppSyncSet))
        .graceful_shutdown_on(shutdown)
        .run(
            |obj, sc: Arc<appsyncset::SetContext>| async move {
                let start = std::time::Instant::now();
                let key = format!("AppSyncSet/{}", key_of(obj.as_ref()));
                let res = appsyncset::reconcile(obj, sc.clone()).await;
                if res.is_ok() {
                    sc.ctx.succeeded(&key);
                }
                let err = res.as_ref().err().map(Error::metric_label);
                sc.ctx
                    .metrics
                    .reconciled("AppSyncSet", start.elapsed(), err);
                res
            },
            appsyncset::error_policy,
            sc,
        )
        .for_each(log_result)
        .await;
}

/// The objects of one kind that follow a ref the repository workers saw move, as they move.
/// A receiver that fell behind skips what it missed (those re-check at their interval).
fn moved_followers<K>(
    ctx: &Arc<Context>,
    kind: follow::Follower,
) -> impl futures::Stream<Item = ObjectRef<K>> + Send + 'static
where
    K: Resource<DynamicType = ()> + 'static,
{
    let ctx = ctx.clone();
    let rx = ctx.workers.moves();
    futures::stream::unfold((rx, ctx), move |(mut rx, ctx)| async move {
        loop {
            match rx.recv().await {
                Ok(moved) => {
                    let refs: Vec<ObjectRef<K>> = ctx
                        .follows
                        .concerned(kind, &moved)
                        .into_iter()
                        .map(|(ns, name)| ObjectRef::new(&name).within(&ns))
                        .collect();
                    return Some((futures::stream::iter(refs), (rx, ctx)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "ref moves missed");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .flatten()
}

/// The GitSyncConfigs of `ns` whose constants, data sources, webhook, signing key or HTTPS
/// credentials read Secret (or
/// ConfigMap) `name`.
fn configs_reading(
    store: &reflector::Store<GitSyncConfig>,
    secret: bool,
    ns: Option<String>,
    name: &str,
) -> Vec<ObjectRef<GitSyncConfig>> {
    store
        .state()
        .into_iter()
        .filter(|g| {
            g.namespace() == ns
                && (values::references(g, secret, name)
                    || (secret
                        && (gitsyncconfig::webhook_references(g, name)
                            || gitsyncconfig::signs_with(g, name)
                            || https::references(g, name))))
        })
        .map(|g| ObjectRef::from_obj(g.as_ref()))
        .collect()
}

/// Whether an AppSync references the GitSyncConfig `ns/name`.
fn references(a: &AppSync, ns: &str, name: &str) -> bool {
    let r = &a.spec.git_sync_config_ref;
    r.name == name && r.namespace.clone().or_else(|| a.namespace()).as_deref() == Some(ns)
}

async fn log_result<K, E>(res: Result<(ObjectRef<K>, kube::runtime::controller::Action), E>)
where
    K: Resource + std::fmt::Debug,
    E: std::fmt::Display,
{
    match res {
        Ok((obj, _)) => tracing::debug!(name = %obj.name, ns = ?obj.namespace, "reconciled"),
        Err(e) => tracing::warn!(error = %e, "reconcile failed"),
    }
}

/// Convenience for objects' namespace/name in logs and messages.
pub fn key_of<K: ResourceExt>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}
