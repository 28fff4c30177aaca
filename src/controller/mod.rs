//! kube-rs reconcilers for both kinds: finalizers, Events, status by server-side apply.
//!
//! Each reconcile runs validate → dereference → observe → decide (pure) → apply → report.

pub mod appsync;
pub mod gitsyncconfig;
pub mod leader;
pub mod problem;
pub mod pull;

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{reflector, watcher, Controller, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};

use crate::api::{AppSync, GitSyncConfig};
use crate::git::GitCli;
use kube::runtime::reflector::ObjectRef;

pub use problem::Problem;

/// Field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "tooljet-gitsync-operator";

/// Errors that stop a reconcile (infrastructure, not user input: those become conditions).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Finalizer handling failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// Serialization of a status or object failed.
    #[error("serialization: {0}")]
    Serialize(#[from] serde_json::Error),
    /// A blocking task failed.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// Stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::Serialize(_) => "serialize",
            Error::Internal(_) => "internal",
        }
    }
}

/// Operator settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where mirrors and short-lived key files live.
    pub data_dir: PathBuf,
    /// Shortest wait before retrying a failing check.
    pub retry_min: Duration,
    /// Longest wait before retrying a failing check.
    pub retry_max: Duration,
    /// Timeout of one git command.
    pub git_timeout: Duration,
    /// Restrict to one namespace.
    pub watch_namespace: Option<String>,
    /// Label selector for sharding.
    pub label_selector: Option<String>,
    /// Let AppSyncs reference GitSyncConfigs in other namespaces.
    pub allow_cross_namespace_refs: bool,
    /// Reconciles running at once per kind.
    pub concurrency: u16,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            data_dir: PathBuf::from("/var/lib/tooljet-gitsync"),
            retry_min: Duration::from_secs(5),
            retry_max: Duration::from_secs(300),
            git_timeout: Duration::from_secs(120),
            watch_namespace: None,
            label_selector: None,
            allow_cross_namespace_refs: false,
            concurrency: 4,
        }
    }
}

/// Values keyed by a string, with the time each was stored.
pub type TimedCache<V> = std::collections::HashMap<String, (std::time::Instant, V)>;

/// Shared state of the reconcilers.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Event recorder.
    pub recorder: Recorder,
    /// Git subprocess runner.
    pub git: GitCli,
    /// Settings.
    pub options: Options,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// One git worker per repository.
    pub workers: crate::git::worker::Workers,
    /// Workspaces resolved by each GitSyncConfig's check, reused by its AppSyncs.
    pub tooljet_workspaces: std::sync::Mutex<TimedCache<crate::tooljet::Workspace>>,
    /// App listings per GitSyncConfig and workspace, shared by its Push AppSyncs for a short
    /// while instead of one full listing per reconcile.
    pub app_lists: tokio::sync::Mutex<TimedCache<Arc<Vec<crate::tooljet::AppSummary>>>>,
    /// ToolJet clients per GitSyncConfig, keyed by config, URL and Secret version, with the
    /// time they were made (they cache the server version, so they are renewed now and then).
    pub tooljet_clients: std::sync::Mutex<TimedCache<crate::tooljet::Client>>,
}

impl Context {
    /// Builds the context; `data_dir` is created when missing.
    pub fn new(client: Client, options: Options) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        let git = GitCli::new(options.data_dir.join("tmp"), options.git_timeout);
        let workers =
            crate::git::worker::Workers::new(git.clone(), options.data_dir.join("mirrors"));
        Context {
            client,
            recorder,
            git,
            options,
            workers,
            metrics: Arc::default(),
            tooljet_clients: Default::default(),
            app_lists: Default::default(),
            tooljet_workspaces: Default::default(),
        }
    }

    /// Publishes an Event; failures are logged, never fatal.
    pub async fn event<K>(&self, obj: &K, type_: EventType, reason: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(truncate(&note, 1000)),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not publish event");
        }
    }

    /// Publishes an Event when the Ready condition changes status or reason: Normal when it
    /// turns True or the reason is one of `normal_reasons`, Warning otherwise.
    pub async fn report_ready_transition<K>(
        &self,
        obj: &K,
        prev: &[crate::api::Condition],
        next: &[crate::api::Condition],
        normal_reasons: &[&str],
    ) where
        K: Resource<DynamicType = ()>,
    {
        let ready = crate::api::types::READY;
        let (Some(new), old) = (crate::api::find(next, ready), crate::api::find(prev, ready))
        else {
            return;
        };
        if old.is_some_and(|o| o.status == new.status && o.reason == new.reason) {
            return;
        }
        let t = if new.is_true() || normal_reasons.contains(&new.reason.as_str()) {
            EventType::Normal
        } else {
            EventType::Warning
        };
        self.event(obj, t, &new.reason, new.message.clone()).await;
    }

    fn watcher_config(&self) -> watcher::Config {
        let mut wc = watcher::Config::default();
        if let Some(sel) = &self.options.label_selector {
            wc = wc.labels(sel);
        }
        wc
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match &self.options.watch_namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
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
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let config = kube::runtime::controller::Config::default().concurrency(ctx.options.concurrency);

    let (reader, writer) = reflector::store::<GitSyncConfig>();
    let gsc_stream = watcher(ctx.api::<GitSyncConfig>(), ctx.watcher_config())
        .default_backoff()
        .modify(strip_managed_fields)
        .reflect(writer)
        .applied_objects()
        .predicate_filter(user_change, Default::default());
    let secrets: Api<Secret> = ctx.api();
    let owned = watcher::Config::default().labels(&format!(
        "{}={}",
        crate::api::MANAGED_BY_LABEL,
        crate::api::MANAGED_BY
    ));
    let gsc_controller = Controller::for_stream(gsc_stream, reader)
        .with_config(config.clone())
        .owns(secrets, owned)
        .graceful_shutdown_on(shutdown.clone())
        .run(
            |obj, ctx: Arc<Context>| async move {
                let start = std::time::Instant::now();
                let res = gitsyncconfig::reconcile(obj, ctx.clone()).await;
                let err = res.as_ref().err().map(Error::metric_label);
                ctx.metrics
                    .reconciled("GitSyncConfig", start.elapsed(), err);
                res
            },
            gitsyncconfig::error_policy,
            ctx.clone(),
        )
        .for_each(log_result);

    let (aps_reader, aps_writer) = reflector::store::<AppSync>();
    let aps_stream = watcher(ctx.api::<AppSync>(), ctx.watcher_config())
        .default_backoff()
        .modify(strip_managed_fields)
        .reflect(aps_writer)
        .applied_objects()
        .predicate_filter(user_change, Default::default());
    let store = aps_reader.clone();
    // An AppSync waits for its GitSyncConfig: any change of the config (e.g. turning Ready)
    // re-runs the AppSyncs that reference it.
    let referencing = move |gsc: GitSyncConfig| {
        let (name, ns) = (gsc.name_any(), gsc.namespace().unwrap_or_default());
        store
            .state()
            .into_iter()
            .filter(|a| {
                a.spec.git_sync_config_ref.name == name
                    && a.spec
                        .git_sync_config_ref
                        .namespace
                        .clone()
                        .or_else(|| a.namespace())
                        .as_deref()
                        == Some(ns.as_str())
            })
            .map(|a| ObjectRef::from_obj(a.as_ref()))
            .collect::<Vec<_>>()
    };
    let aps_controller = Controller::for_stream(aps_stream, aps_reader)
        .with_config(config)
        .watches_stream(
            watcher(ctx.api::<GitSyncConfig>(), ctx.watcher_config())
                .default_backoff()
                .touched_objects()
                .predicate_filter(config_state, Default::default()),
            referencing,
        )
        .graceful_shutdown_on(shutdown)
        .run(
            |obj, ctx: Arc<Context>| async move {
                let start = std::time::Instant::now();
                let res = appsync::reconcile(obj, ctx.clone()).await;
                let err = res.as_ref().err().map(Error::metric_label);
                ctx.metrics.reconciled("AppSync", start.elapsed(), err);
                res
            },
            appsync::error_policy,
            ctx.clone(),
        )
        .for_each(log_result);
    futures::join!(gsc_controller, aps_controller);
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

pub mod tooljet_check;
