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
    /// Deadline of one git command; a fetch gets [`crate::git::cli::FETCH_TIMEOUT_FACTOR`]
    /// times it, and a caller of a repository's worker a few fetches.
    pub git_timeout: Duration,
    /// Restrict to one namespace.
    pub watch_namespace: Option<String>,
    /// Label selector for sharding.
    pub label_selector: Option<String>,
    /// Let AppSyncs reference GitSyncConfigs in other namespaces.
    pub allow_cross_namespace_refs: bool,
    /// Reconciles running at once per kind.
    pub concurrency: u16,
    /// Accept `file://` repository URLs (tests, local setups): anyone who may create a
    /// GitSyncConfig could otherwise make the operator read and write any repository on its
    /// filesystem. Never one inside [`Options::data_dir`], whatever this says.
    pub allow_file_urls: bool,
    /// Whether a webhook receiver runs (`--webhook-addr`): without one, configs asking for a
    /// webhook are told so.
    pub webhook_enabled: bool,
    /// The receiver's public base URL, to show full webhook URLs in status.
    pub webhook_url: Option<String>,
    /// How long after the controllers start unknown webhook paths are answered 503 (the
    /// configs are still registering) instead of 404.
    pub webhook_startup_grace: Duration,
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
            allow_file_urls: false,
            webhook_enabled: false,
            webhook_url: None,
            webhook_startup_grace: crate::webhook::hooks::STARTUP_GRACE,
        }
    }
}

/// Values keyed by a string, with the time each was stored.
pub type TimedCache<V> = std::collections::HashMap<String, (std::time::Instant, V)>;

/// One shared app listing and when it was read; locked only while that listing is fetched.
pub type AppListSlot =
    tokio::sync::Mutex<Option<(std::time::Instant, Arc<Vec<crate::tooljet::AppSummary>>)>>;

/// The AppSyncs pushing one app: (AppSync key, version, when last seen). Almost always one,
/// and there is one per pushed app, so a plain vector (a map costs ~700 bytes each).
pub type PushClaims = Vec<(String, String, std::time::Instant)>;

/// What an AppSyncSet listed: the apps, and the commit read (Pull).
pub type SetListing = Arc<super::appsyncset::plan::Listing>;

/// A channel of GitSyncConfigs to reconcile now; its receiver is taken once, by the
/// GitSyncConfig controller.
pub struct ConfigWakeups {
    tx: tokio::sync::mpsc::UnboundedSender<
        kube::runtime::reflector::ObjectRef<crate::api::GitSyncConfig>,
    >,
    rx: std::sync::Mutex<
        Option<
            tokio::sync::mpsc::UnboundedReceiver<
                kube::runtime::reflector::ObjectRef<crate::api::GitSyncConfig>,
            >,
        >,
    >,
}

impl Default for ConfigWakeups {
    fn default() -> Self {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        ConfigWakeups {
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
        }
    }
}

impl ConfigWakeups {
    /// Asks for a pass of `gsc` now (coalesced with any pending one by the controller).
    pub fn wake(&self, gsc: &crate::api::GitSyncConfig) {
        let _ = self
            .tx
            .send(kube::runtime::reflector::ObjectRef::from_obj(gsc));
    }

    /// The receiving end, once.
    pub fn take(
        &self,
    ) -> Option<
        tokio::sync::mpsc::UnboundedReceiver<
            kube::runtime::reflector::ObjectRef<crate::api::GitSyncConfig>,
        >,
    > {
        self.rx.lock().ok().and_then(|mut r| r.take())
    }
}

/// Shared state of the reconcilers.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Event recorder, when it last published and which series it holds: kube's recorder
    /// keeps every Event it published (for series, ~1.4 KiB each, in a table that never
    /// shrinks) until its next publish after they expire, so an initial sync of 1,000 apps
    /// would hold ~6 MiB for 6 minutes, and an idle operator forever. It is renewed once it
    /// holds [`RECORDER_MAX_SERIES`] series and by [`Context::housekeeping`] when idle.
    recorder: std::sync::Mutex<RecorderSlot>,
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
    /// Which Push AppSync exports which app at which version, per config and branch: two that
    /// disagree on the version would overwrite each other in turn.
    pub push_claims: std::sync::Mutex<std::collections::HashMap<String, PushClaims>>,
    /// The apps each AppSyncSet listed and when (one listing per set per interval, however
    /// often its AppSyncs re-run it), with the commit read for a Pull set.
    pub set_listings: std::sync::Mutex<TimedCache<SetListing>>,
    /// Per AppSyncSet, since when each app with a generated AppSync has been missing from
    /// its listings (its AppSync goes only after a grace).
    pub set_missing: std::sync::Mutex<
        std::collections::HashMap<String, std::collections::BTreeMap<String, std::time::Instant>>,
    >,
    /// Pushes handed to repository workers, answered by a later pass.
    pub handoff: super::handoff::Handoff,
    /// Which Pull AppSyncs and sets follow which refs (re-run when a ref moves).
    pub follows: super::follow::Follows,
    /// GitSyncConfigs to re-run now (an import made data sources whose credentials they keep).
    pub config_wakeups: ConfigWakeups,
    /// The webhook receiver's table, filled by the GitSyncConfig reconciler.
    pub hooks: crate::webhook::Hooks,
    /// Commit signing keys parsed, by Secret (`namespace/name@uid/resourceVersion`).
    pub signers: std::sync::Mutex<std::collections::HashMap<String, Arc<crate::git::CommitSigner>>>,
    /// GitHub App installation tokens of HTTPS repositories, cached until shortly before
    /// they expire.
    pub app_tokens: crate::forge::github_app::AppTokens,
    /// Per GitSyncConfig, the HTTPS credential its last successful write check used.
    pub verified_credentials: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// Consecutive failed reconciles per object, for exponential backoff.
    pub failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

/// Longer than kube's recorder keeps an Event for its series (6 minutes).
const RECORDER_IDLE: Duration = Duration::from_secs(7 * 60);

/// Distinct series (object, type, reason: kube's key for counting an Event up) one recorder
/// holds before it is renewed, which bounds its cache (~0.7 MiB). Repeats within a series do
/// not count. The cost: an Event repeated across a renewal starts a new Event object instead
/// of counting up the old one's series; that happens when more than this many objects report
/// between two repeats, e.g. when one outage fails every AppSync of a large workspace.
const RECORDER_MAX_SERIES: usize = 256;

/// The recorder, when it last published, and its series (hashed).
struct RecorderSlot {
    recorder: Recorder,
    last: std::time::Instant,
    series: std::collections::HashSet<u64>,
}

impl RecorderSlot {
    fn new(client: &Client) -> Self {
        RecorderSlot {
            recorder: new_recorder(client),
            last: std::time::Instant::now(),
            series: Default::default(),
        }
    }
}

/// The series an Event belongs to: the fields of kube's `EventKey` that vary here.
fn series_of(
    type_: EventType,
    reason: Reason,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    matches!(type_, EventType::Warning).hash(&mut h);
    reason.as_str().hash(&mut h);
    reference.api_version.hash(&mut h);
    reference.kind.hash(&mut h);
    reference.namespace.hash(&mut h);
    reference.name.hash(&mut h);
    reference.uid.hash(&mut h);
    h.finish()
}

fn new_recorder(client: &Client) -> Recorder {
    Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    )
}

impl Context {
    /// Builds the context; `data_dir` is created when missing, and key files an earlier (killed)
    /// process left in its scratch directory are removed.
    pub fn new(client: Client, options: Options) -> Self {
        let recorder = std::sync::Mutex::new(RecorderSlot::new(&client));
        let git = GitCli::new(options.data_dir.join("tmp"), options.git_timeout);
        match git.remove_stale_sessions() {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "removed key files left by an earlier process"),
            Err(e) => tracing::warn!(error = %e, "cannot clean the scratch directory"),
        }
        let workers =
            crate::git::worker::Workers::new(git.clone(), options.data_dir.join("mirrors"));
        let hooks = crate::webhook::Hooks::default();
        hooks.set_startup_grace(options.webhook_startup_grace);
        let app_tokens = crate::forge::github_app::AppTokens::new(
            options.git_timeout.min(Duration::from_secs(30)),
        );
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
            failures: Default::default(),
            set_listings: Default::default(),
            set_missing: Default::default(),
            handoff: Default::default(),
            follows: Default::default(),
            config_wakeups: Default::default(),
            hooks,
            signers: Default::default(),
            push_claims: Default::default(),
            app_tokens,
            verified_credentials: Default::default(),
        }
    }

    /// Records that the write check of config `key` passed with the HTTPS credential
    /// `identity`.
    pub fn remember_verified(&self, key: &str, identity: String) {
        if let Ok(mut m) = self.verified_credentials.lock() {
            m.insert(key.to_string(), identity);
        }
    }

    /// Whether the last passed write check of config `key` used `identity`.
    pub fn was_verified(&self, key: &str, identity: &str) -> bool {
        self.verified_credentials
            .lock()
            .is_ok_and(|m| m.get(key).is_some_and(|i| i == identity))
    }

    /// Records that `aps` pushes the app behind `claim` at `version`, and returns the other
    /// AppSyncs pushing it at another version within `ttl`.
    pub fn claim_push(
        &self,
        claim: &str,
        aps: &str,
        version: &str,
        ttl: Duration,
    ) -> Vec<(String, String)> {
        let Ok(mut m) = self.push_claims.lock() else {
            return Vec::new();
        };
        let claims = m.entry(claim.to_string()).or_default();
        claims.retain(|(_, _, at)| at.elapsed() < ttl);
        let now = std::time::Instant::now();
        match claims.iter_mut().find(|(k, _, _)| k == aps) {
            Some(mine) => {
                if mine.1 != version {
                    mine.1 = version.to_string();
                }
                mine.2 = now;
            }
            None => claims.push((aps.to_string(), version.to_string(), now)),
        }
        let mut others: Vec<(String, String)> = claims
            .iter()
            .filter(|(k, v, _)| k.as_str() != aps && v != version)
            .map(|(k, v, _)| (k.clone(), v.clone()))
            .collect();
        others.sort();
        others
    }

    /// Forgets the claims, the handed-over push and the followed ref of a deleted AppSync.
    pub fn release_claims(&self, aps: &str) {
        self.handoff.forget(aps);
        self.follows.unfollow(super::follow::Follower::AppSync, aps);
        if let Ok(mut m) = self.push_claims.lock() {
            for claims in m.values_mut() {
                claims.retain(|(k, _, _)| k != aps);
            }
            m.retain(|_, c| !c.is_empty());
        }
    }

    /// After a failed reconcile of `key`: the wait before the next try, doubling from
    /// `retry_min` with every failure in a row, at most `retry_max`.
    pub fn backoff(&self, key: &str) -> Duration {
        let n = match self.failures.lock() {
            Ok(mut m) => {
                let n = m.entry(key.to_string()).or_insert(0);
                *n = n.saturating_add(1);
                *n
            }
            Err(_) => 1,
        };
        backoff_after(n, self.options.retry_min, self.options.retry_max)
    }

    /// After a successful reconcile of `key`: the next failure starts the backoff afresh.
    pub fn succeeded(&self, key: &str) {
        if let Ok(mut m) = self.failures.lock() {
            m.remove(key);
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
        let reference = obj.object_ref(&());
        let series = series_of(type_, reason, &reference);
        let recorder = {
            let mut slot = self.recorder.lock().unwrap_or_else(|e| e.into_inner());
            if slot.series.len() >= RECORDER_MAX_SERIES && !slot.series.contains(&series) {
                *slot = RecorderSlot::new(&self.client);
            }
            slot.last = std::time::Instant::now();
            slot.series.insert(series);
            slot.recorder.clone()
        };
        if let Err(e) = recorder.publish(&ev, &reference).await {
            tracing::warn!(error = %e, reason = reason.as_str(), "could not publish event");
        }
    }

    /// Idle upkeep, run every minute: a recorder idle for longer than its Events' lifetime in
    /// its cache (6 minutes in kube) holds only expired Events, so a fresh one frees them (the
    /// binary's `malloc_trim` then hands the pages back). Returns whether it was renewed.
    pub fn housekeeping(&self) -> bool {
        let mut slot = self.recorder.lock().unwrap_or_else(|e| e.into_inner());
        let idle = slot.last.elapsed() > RECORDER_IDLE && !slot.series.is_empty();
        if idle {
            *slot = RecorderSlot::new(&self.client);
        }
        idle
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

    /// A set's listing stored under `key` within `max_age`.
    pub fn cached_set_listing(&self, key: &str, max_age: Duration) -> Option<SetListing> {
        let m = self.set_listings.lock().ok()?;
        m.get(key)
            .filter(|(at, _)| at.elapsed() < max_age)
            .map(|(_, v)| v.clone())
    }

    /// Stores a set's listing; older listings of the same set (`key` up to its first `|`)
    /// are dropped.
    pub fn store_set_listing(&self, key: &str, listing: SetListing) {
        if let Ok(mut m) = self.set_listings.lock() {
            let set = key.split('|').next().unwrap_or(key);
            m.retain(|k, _| k.split('|').next() != Some(set));
            m.insert(key.to_string(), (std::time::Instant::now(), listing));
        }
    }

    /// Forgets what is cached for a deleted AppSyncSet (`namespace/name`).
    pub fn forget_set(&self, set: &str) {
        self.follows
            .unfollow(super::follow::Follower::AppSyncSet, set);
        if let Ok(mut m) = self.set_listings.lock() {
            m.retain(|k, _| k.split('|').next() != Some(set));
        }
        if let Ok(mut m) = self.set_missing.lock() {
            m.remove(set);
        }
        self.succeeded(&format!("AppSyncSet/{set}"));
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
        if let Ok(mut m) = self.verified_credentials.lock() {
            m.remove(&format!("{ns}/{name}"));
        }
    }
}

/// The wait after `n` failures in a row: `min` doubled `n - 1` times, at most `max`. Pure,
/// never overflows.
pub fn backoff_after(n: u32, min: Duration, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(n.saturating_sub(1).min(31));
    min.saturating_mul(factor).min(max.max(min))
}

/// At most `max` bytes of `s`, cut at a character boundary, with an ellipsis when cut.
pub fn truncate(s: &str, max: usize) -> String {
    crate::api::bounded(s.to_string(), max)
}

/// The first `n` characters of a commit sha (or any id), for messages.
pub fn short(sha: &str) -> &str {
    let mut end = sha.len().min(12);
    while !sha.is_char_boundary(end) {
        end -= 1;
    }
    &sha[..end]
}

#[cfg(test)]
impl Context {
    /// A context whose Kubernetes API refuses every connection, for unit tests of what needs
    /// one but not a cluster; its data directory lives as long as the returned guard.
    pub(crate) fn offline() -> (Context, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        // A port just freed: connections are refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let config = kube::Config::new(url.parse().expect("url"));
        let client = Client::try_from(config).expect("client");
        let options = Options {
            data_dir: dir.path().to_path_buf(),
            ..Options::default()
        };
        (Context::new(client, options), dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_bounded() {
        let (min, max) = (Duration::from_secs(5), Duration::from_secs(300));
        let waits: Vec<u64> = (1..=8)
            .map(|n| backoff_after(n, min, max).as_secs())
            .collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff_after(u32::MAX, min, max), max);
        assert_eq!(backoff_after(0, min, max), min);
        assert_eq!(backoff_after(3, max, min), max, "odd options do not panic");
    }

    #[tokio::test]
    async fn push_claims_see_other_versions_and_are_released() {
        let (ctx, _dir) = Context::offline();
        let ttl = Duration::from_secs(60);
        assert!(ctx.claim_push("app", "ns/b", "v1", ttl).is_empty());
        assert!(
            ctx.claim_push("app", "ns/b", "v1", ttl).is_empty(),
            "a re-claim is no conflict"
        );
        assert!(
            ctx.claim_push("app", "ns/c", "v1", ttl).is_empty(),
            "same version"
        );
        assert_eq!(
            ctx.claim_push("app", "ns/a", "v2", ttl),
            [
                ("ns/b".to_string(), "v1".to_string()),
                ("ns/c".to_string(), "v1".to_string())
            ]
        );
        assert_eq!(
            ctx.claim_push("app", "ns/b", "v2", ttl),
            [("ns/c".to_string(), "v1".to_string())],
            "b moved to v2"
        );
        ctx.release_claims("ns/c");
        assert!(ctx.claim_push("app", "ns/a", "v2", ttl).is_empty());
        assert!(
            ctx.claim_push("other", "ns/a", "v9", ttl).is_empty(),
            "claims are per app"
        );
        assert!(
            ctx.claim_push("app", "ns/d", "v3", Duration::ZERO)
                .is_empty(),
            "expired claims are dropped"
        );
        ctx.release_claims("ns/a");
        ctx.release_claims("ns/b");
        ctx.release_claims("ns/d");
        assert!(ctx
            .push_claims
            .lock()
            .map(|m| m.is_empty())
            .unwrap_or(false));
    }

    #[tokio::test]
    async fn the_recorder_is_renewed_after_its_series_budget_and_when_idle() {
        let (ctx, _dir) = Context::offline();
        let held = |ctx: &Context| ctx.recorder.lock().map(|s| s.series.len()).unwrap_or(0);
        assert!(!ctx.housekeeping(), "a fresh recorder is not renewed");
        let obj = |i: usize| k8s_openapi::api::core::v1::ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(format!("c{i}")),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        for i in 0..RECORDER_MAX_SERIES {
            ctx.event(&obj(i), EventType::Normal, Reason::Ready, "n")
                .await;
        }
        assert_eq!(held(&ctx), RECORDER_MAX_SERIES);
        for _ in 0..3 {
            ctx.event(&obj(0), EventType::Normal, Reason::Ready, "again")
                .await;
        }
        assert_eq!(
            held(&ctx),
            RECORDER_MAX_SERIES,
            "repeats count up their series"
        );
        ctx.event(&obj(0), EventType::Warning, Reason::Ready, "n")
            .await;
        assert_eq!(
            held(&ctx),
            1,
            "a new series past the budget renews the recorder"
        );
        assert!(!ctx.housekeeping(), "not idle yet");
        if let Ok(mut slot) = ctx.recorder.lock() {
            slot.last = std::time::Instant::now()
                .checked_sub(RECORDER_IDLE + Duration::from_secs(1))
                .expect("monotonic clock far enough from its origin");
        }
        assert!(ctx.housekeeping(), "idle past the recorder's cache");
        assert_eq!(held(&ctx), 0);
        assert!(
            !ctx.housekeeping(),
            "a recorder that published nothing is kept"
        );
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(short("abcdef0123456789"), "abcdef012345");
        assert_eq!(short("ab"), "ab");
    }
}
