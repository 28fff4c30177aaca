//! What every reconcile shares: the clients, the settings, the repository workers and the
//! short-lived caches that keep ToolJet and git calls per interval bounded.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};

use crate::api::Reason;
use crate::git::GitCli;

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

/// One shared app listing and when it was read; locked only while that listing is fetched.
pub type AppListSlot =
    tokio::sync::Mutex<Option<(std::time::Instant, Arc<Vec<crate::tooljet::AppSummary>>)>>;

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
    pub app_lists: std::sync::Mutex<std::collections::HashMap<String, Arc<AppListSlot>>>,
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
    pub async fn event<K>(&self, obj: &K, type_: EventType, reason: Reason, note: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        let ev = Event {
            type_,
            reason: reason.as_str().into(),
            note: Some(truncate(note, 1000)),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason = reason.as_str(), "could not publish event");
        }
    }

    /// The slot of one shared app listing (made on first use).
    pub fn app_list_slot(&self, key: &str) -> Arc<AppListSlot> {
        match self.app_lists.lock() {
            Ok(mut m) => m.entry(key.to_string()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    /// Drops a shared app listing (an app in it is gone).
    pub fn forget_app_list(&self, key: &str) {
        if let Ok(mut m) = self.app_lists.lock() {
            m.remove(key);
        }
    }

    /// Forgets what is cached for a deleted GitSyncConfig.
    pub fn forget_config(&self, ns: &str, name: &str) {
        let prefix = format!("{ns}/{name}|");
        if let Ok(mut m) = self.app_lists.lock() {
            m.retain(|k, _| !k.starts_with(&prefix));
        }
        if let Ok(mut m) = self.tooljet_clients.lock() {
            m.retain(|k, _| !k.starts_with(&prefix));
        }
        if let Ok(mut m) = self.tooljet_workspaces.lock() {
            m.retain(|k, _| !k.starts_with(&prefix));
        }
    }
}

/// At most `max` bytes of `s`, cut at a character boundary, with an ellipsis when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}

/// The first `n` characters of a commit sha (or any id), for messages.
pub fn short(sha: &str) -> &str {
    let mut end = sha.len().min(12);
    while !sha.is_char_boundary(end) {
        end -= 1;
    }
    &sha[..end]
}
