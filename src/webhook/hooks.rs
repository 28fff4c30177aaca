//! The receiver's table of GitSyncConfigs with a webhook (path → secret and what to check),
//! the delivery ids and bodies each has seen (replays are ignored), and the coalescing of a
//! burst of deliveries into one repository check. The GitSyncConfig reconciler fills the table;
//! the check itself is behind [`Checker`], so everything here is tested without servers.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::verify::{RefUpdate, ZERO_SHA};

/// Wait after the first delivery of a burst before checking: a push of several refs arrives
/// as several deliveries within milliseconds.
pub const DEBOUNCE: Duration = Duration::from_millis(50);
/// At most one check per config in this time, however many deliveries arrive.
pub const MIN_SPACING: Duration = Duration::from_secs(1);
/// Delivery ids and body digests remembered per config.
const SEEN: usize = 512;
/// Refs waiting for a check per config; past it, one more check covers whatever came.
const PENDING: usize = 256;
/// Tries of a check that failed (the repository or its worker did not answer) before the
/// deliveries it was for are left to the interval, with the back-off after each.
const RETRIES: [Duration; 3] = [
    Duration::from_secs(2),
    Duration::from_secs(8),
    Duration::from_secs(30),
];
/// Deliveries of one config read at once (the receiver's global limit is shared by all).
pub const PER_HOOK_IN_FLIGHT: usize = 2;

/// Runs a repository check now.
pub trait Checker: Send + Sync + 'static {
    /// Checks the repository; the refs it saw (full name → lowercase hex), or `None` when the
    /// check failed (the config's own reconcile reports why).
    fn check(&self) -> BoxFuture<'static, Option<BTreeMap<String, String>>>;
}

/// What a delivery to a config's path concerns; replaced on every reconcile of the config.
#[derive(Clone)]
pub struct HookTarget {
    /// `namespace/name` of the GitSyncConfig.
    pub config: String,
    /// Its namespace: only followers there count.
    pub namespace: String,
    /// The repository ([`crate::git::RepoUrl::identity`]).
    pub repository: String,
    /// The config's branch.
    pub branch: String,
    /// The check to run.
    pub checker: Arc<dyn Checker>,
}

/// One config's entry.
pub struct Hook {
    secret: Zeroizing<Vec<u8>>,
    target: Mutex<HookTarget>,
    seen: Mutex<Seen>,
    trigger: Mutex<Trigger>,
    /// This config's share of the receiver: one tenant's slow bodies never take every slot.
    pub reading: tokio::sync::Semaphore,
}

/// The guarded value even when a holder panicked: the state here stays consistent between
/// statements, and a poisoned lock must never stop deliveries for good.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
struct Seen {
    order: VecDeque<[u8; 32]>,
    set: HashSet<[u8; 32]>,
}

#[derive(Default)]
struct Trigger {
    running: bool,
    /// Refs delivered since the running check started (or, idle, since the last one), the
    /// newest commit per ref, at most [`PENDING`].
    pending: BTreeMap<String, Option<String>>,
    /// More refs came than `pending` holds: the next check is needed whatever it sees.
    overflow: bool,
    last_check: Option<Instant>,
    checks: u64,
}

impl Trigger {
    fn add(&mut self, updates: Vec<RefUpdate>) {
        for u in updates {
            if self.pending.len() >= PENDING && !self.pending.contains_key(&u.reference) {
                self.overflow = true;
                continue;
            }
            self.pending.insert(u.reference, u.after);
        }
    }
}

/// Resets `running` should the task end unexpectedly (a panic in a check), so that a later
/// delivery starts a new one instead of joining a task that is gone. Normal ends reset it
/// under the lock themselves and disarm this, so a task started right after is never undone.
struct Running<'a> {
    trigger: &'a Mutex<Trigger>,
    armed: bool,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if self.armed {
            lock(self.trigger).running = false;
        }
    }
}

/// Whether a delivery started a check or joined one already due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheduled {
    /// A check will run shortly.
    Started,
    /// A check is already due or running; it (or one right after it) covers this delivery.
    Joined,
}

impl Hook {
    /// The shared secret.
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// What the hook concerns now.
    pub fn target(&self) -> HookTarget {
        lock(&self.target).clone()
    }

    /// Records `keys` (delivery id, body digest); `false` when any was seen before: a replay
    /// or a redelivery of an event already acted on.
    pub fn first_sight(&self, keys: &[[u8; 32]]) -> bool {
        let mut seen = lock(&self.seen);
        if keys.iter().any(|k| seen.set.contains(k)) {
            return false;
        }
        for k in keys {
            seen.set.insert(*k);
            seen.order.push_back(*k);
            while seen.order.len() > SEEN {
                if let Some(old) = seen.order.pop_front() {
                    seen.set.remove(&old);
                }
            }
        }
        true
    }

    /// Checks completed so far.
    pub fn checks(&self) -> u64 {
        lock(&self.trigger).checks
    }

    /// Asks for a check covering `updates`. One task per config runs them: the first after
    /// [`DEBOUNCE`] (at least [`MIN_SPACING`] after the previous one), then one more only if a
    /// delivery arrived during a check and names a commit that check did not see. A check that
    /// fails keeps its deliveries and is tried again ([`RETRIES`]).
    pub fn schedule(self: &Arc<Self>, updates: Vec<RefUpdate>) -> Scheduled {
        let mut t = lock(&self.trigger);
        t.add(updates);
        if t.running {
            return Scheduled::Joined;
        }
        t.running = true;
        let first_at = t
            .last_check
            .map(|at| at + MIN_SPACING)
            .unwrap_or_else(Instant::now)
            .max(Instant::now() + DEBOUNCE);
        drop(t);
        tokio::spawn(self.clone().run(first_at));
        Scheduled::Started
    }

    async fn run(self: Arc<Self>, first_at: Instant) {
        let mut running = Running {
            trigger: &self.trigger,
            armed: true,
        };
        tokio::time::sleep_until(first_at).await;
        let mut failures = 0;
        loop {
            let checker = lock(&self.target).checker.clone();
            let taken = {
                let mut t = lock(&self.trigger);
                t.last_check = Some(Instant::now());
                t.overflow = false;
                std::mem::take(&mut t.pending)
            };
            let refs = checker.check().await;
            let wait = {
                let mut t = lock(&self.trigger);
                t.checks += 1;
                match &refs {
                    Some(refs) => {
                        failures = 0;
                        let overflow = t.overflow;
                        t.pending
                            .retain(|r, after| overflow || !covered(refs, r, after.as_deref()));
                    }
                    None => {
                        // Nothing was seen: what this check was for is still to be seen.
                        for (r, after) in taken {
                            t.pending.entry(r).or_insert(after);
                        }
                    }
                }
                let again = !t.pending.is_empty() || t.overflow;
                match (&refs, RETRIES.get(failures)) {
                    (_, _) if !again => {
                        t.running = false;
                        running.armed = false;
                        return;
                    }
                    (Some(_), _) => MIN_SPACING,
                    (None, Some(backoff)) => {
                        failures += 1;
                        *backoff
                    }
                    (None, None) => {
                        // Left to the interval; a new delivery starts afresh.
                        t.pending.clear();
                        t.overflow = false;
                        t.running = false;
                        running.armed = false;
                        return;
                    }
                }
            };
            let at = lock(&self.trigger).last_check.map(|at| at + wait);
            if let Some(at) = at {
                tokio::time::sleep_until(at).await;
            }
        }
    }
}

/// Whether a check that saw `refs` saw the commit `after` of `reference`.
fn covered(refs: &BTreeMap<String, String>, reference: &str, after: Option<&str>) -> bool {
    let Some(after) = after else {
        return false;
    };
    match refs.get(reference) {
        Some(head) => head.starts_with(after),
        None => after == ZERO_SHA,
    }
}

/// The receiver's path for a config: Flux's `/hook/sha256(token + name + namespace)`, so a path
/// names neither the config nor the token, and changes when the token does.
pub fn path_for(token: &[u8], name: &str, namespace: &str) -> String {
    let mut h = Sha256::new();
    h.update(token);
    h.update(name.as_bytes());
    h.update(namespace.as_bytes());
    let digest: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("/hook/{digest}")
}

/// After the controllers start, unknown paths are answered "starting" (503, the host retries
/// or shows a transient failure) this long: the configs register as their first passes run.
pub const STARTUP_GRACE: Duration = Duration::from_secs(60);

/// Every config's hook, by path.
#[derive(Default)]
pub struct Hooks {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_path: HashMap<String, Arc<Hook>>,
    path_of: HashMap<String, String>,
    /// Since when the controllers run here (the leader); `None`: a standby or stopped.
    active_since: Option<Instant>,
    /// [`STARTUP_GRACE`] unless set otherwise.
    grace: Option<Duration>,
}

impl Hooks {
    /// Registers (or refreshes) the hook of `target.config` under the path its token gives;
    /// returns the path, or the config that already has it (the same token with a name and
    /// namespace that concatenate alike). The seen deliveries and a running check survive a
    /// refresh with the same token.
    pub fn register(&self, token: &[u8], name: &str, target: HookTarget) -> Result<String, String> {
        let path = path_for(token, name, &target.namespace);
        let mut inner = lock(&self.inner);
        let config = target.config.clone();
        if let Some(hook) = inner.by_path.get(&path) {
            let owner = lock(&hook.target).config.clone();
            if owner != config {
                return Err(owner);
            }
            *lock(&hook.target) = target;
            return Ok(path);
        }
        if let Some(old) = inner.path_of.remove(&config) {
            inner.by_path.remove(&old);
        }
        inner.by_path.insert(
            path.clone(),
            Arc::new(Hook {
                secret: Zeroizing::new(token.to_vec()),
                target: Mutex::new(target),
                seen: Mutex::new(Seen::default()),
                trigger: Mutex::new(Trigger::default()),
                reading: tokio::sync::Semaphore::new(PER_HOOK_IN_FLIGHT),
            }),
        );
        inner.path_of.insert(config, path.clone());
        Ok(path)
    }

    /// Forgets the hook of `config` (`namespace/name`): deleted, disabled, or no webhook.
    pub fn unregister(&self, config: &str) {
        let mut inner = lock(&self.inner);
        if let Some(path) = inner.path_of.remove(config) {
            inner.by_path.remove(&path);
        }
    }

    /// The hook at `path`.
    pub fn lookup(&self, path: &str) -> Option<Arc<Hook>> {
        lock(&self.inner).by_path.get(path).cloned()
    }

    /// The hook of `config`, for tests and metrics.
    pub fn of_config(&self, config: &str) -> Option<Arc<Hook>> {
        let inner = lock(&self.inner);
        inner.by_path.get(inner.path_of.get(config)?).cloned()
    }

    /// Sets the time unknown paths are answered "starting" after [`Hooks::activate`].
    pub fn set_startup_grace(&self, grace: Duration) {
        lock(&self.inner).grace = Some(grace);
    }

    /// The controllers started here: configs register from now on.
    pub fn activate(&self) {
        lock(&self.inner).active_since = Some(Instant::now());
    }

    /// The controllers stopped (leadership lost, shutdown): no hook is acted on here any more.
    pub fn deactivate(&self) {
        let mut inner = lock(&self.inner);
        inner.active_since = None;
        inner.by_path.clear();
        inner.path_of.clear();
    }

    /// Whether an unknown path may just not be registered yet: the controllers do not run here,
    /// or started less than [`STARTUP_GRACE`] ago.
    pub fn starting(&self) -> bool {
        let inner = lock(&self.inner);
        let grace = inner.grace.unwrap_or(STARTUP_GRACE);
        inner.active_since.is_none_or(|at| at.elapsed() < grace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Counting {
        calls: Arc<AtomicU64>,
        took: Duration,
        refs: BTreeMap<String, String>,
    }

    impl Checker for Counting {
        fn check(&self) -> BoxFuture<'static, Option<BTreeMap<String, String>>> {
            let (calls, took, refs) = (self.calls.clone(), self.took, self.refs.clone());
            Box::pin(async move {
                tokio::time::sleep(took).await;
                calls.fetch_add(1, Ordering::SeqCst);
                Some(refs)
            })
        }
    }

    /// The hook of `ns/c`, registered with `checker`.
    fn registered(checker: Arc<dyn Checker>) -> Arc<Hook> {
        let hooks = Hooks::default();
        let _ = hooks.register(
            b"0123456789abcdef",
            "c",
            HookTarget {
                config: "ns/c".into(),
                namespace: "ns".into(),
                repository: "r".into(),
                branch: "main".into(),
                checker,
            },
        );
        hooks.of_config("ns/c").unwrap()
    }

    fn hook(took: Duration, head: &str) -> (Arc<Hook>, Arc<AtomicU64>) {
        let calls = Arc::new(AtomicU64::new(0));
        let checker = Arc::new(Counting {
            calls: calls.clone(),
            took,
            refs: BTreeMap::from([("refs/heads/main".to_string(), head.to_string())]),
        });
        (registered(checker), calls)
    }

    fn up(after: Option<&str>) -> RefUpdate {
        RefUpdate {
            reference: "refs/heads/main".into(),
            after: after.map(str::to_owned),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_one_check() {
        let (h, calls) = hook(Duration::from_millis(200), "aaaa");
        assert_eq!(h.schedule(vec![up(Some("aaaa"))]), Scheduled::Started);
        for _ in 0..20 {
            assert_eq!(h.schedule(vec![up(None)]), Scheduled::Joined);
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(h.checks(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_delivery_during_a_check_gets_another_only_when_the_check_missed_it() {
        let (h, calls) = hook(Duration::from_millis(300), "bbbb");
        h.schedule(vec![up(Some("aaaa"))]);
        // During the check: names what the check will see, so no second check.
        tokio::time::sleep(DEBOUNCE + Duration::from_millis(100)).await;
        assert_eq!(h.schedule(vec![up(Some("bbbb"))]), Scheduled::Joined);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // During the next check: a commit that check cannot have seen; one more, a second on.
        h.schedule(vec![up(Some("aaaa"))]);
        let started = Instant::now();
        tokio::time::sleep(DEBOUNCE + Duration::from_millis(100)).await;
        h.schedule(vec![up(Some("cccc"))]);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert!(started.elapsed() >= MIN_SPACING);
    }

    #[tokio::test(start_paused = true)]
    async fn checks_are_spaced() {
        let (h, calls) = hook(Duration::from_millis(10), "aaaa");
        h.schedule(vec![up(None)]);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let t0 = Instant::now();
        h.schedule(vec![up(None)]);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "not before a second has passed"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(t0.elapsed() >= Duration::from_millis(800));
    }

    /// Fails its first `fail` checks, then sees `head`.
    struct Flaky {
        calls: Arc<AtomicU64>,
        fail: u64,
    }

    impl Checker for Flaky {
        fn check(&self) -> BoxFuture<'static, Option<BTreeMap<String, String>>> {
            let (calls, fail) = (self.calls.clone(), self.fail);
            Box::pin(async move {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                (n >= fail).then(|| BTreeMap::from([("refs/heads/main".into(), "aaaa".into())]))
            })
        }
    }

    fn flaky(fail: u64) -> (Arc<Hook>, Arc<AtomicU64>) {
        let calls = Arc::new(AtomicU64::new(0));
        let checker = Arc::new(Flaky {
            calls: calls.clone(),
            fail,
        });
        (registered(checker), calls)
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_check_keeps_its_deliveries_and_is_retried() {
        let (h, calls) = flaky(2);
        h.schedule(vec![up(Some("aaaa"))]);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "two failures, then a check that sees it"
        );
        // Done: a new delivery starts a new task (not stuck "running").
        assert_eq!(h.schedule(vec![up(Some("aaaa"))]), Scheduled::Started);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_that_keeps_failing_gives_up_and_frees_the_hook() {
        let (h, calls) = flaky(u64::MAX);
        h.schedule(vec![up(Some("aaaa"))]);
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1 + RETRIES.len() as u64);
        assert_eq!(h.schedule(vec![up(None)]), Scheduled::Started);
    }

    #[tokio::test(start_paused = true)]
    async fn pending_refs_are_bounded() {
        let (h, calls) = hook(Duration::from_millis(500), "aaaa");
        h.schedule(vec![up(Some("aaaa"))]);
        tokio::time::sleep(DEBOUNCE + Duration::from_millis(100)).await;
        // During the check: far more refs than are kept.
        for i in 0..(PENDING * 4) {
            h.schedule(vec![RefUpdate {
                reference: format!("refs/heads/b{i}"),
                after: Some("aaaa".into()),
            }]);
        }
        assert!(lock(&h.trigger).pending.len() <= PENDING);
        assert!(lock(&h.trigger).overflow);
        tokio::time::sleep(Duration::from_secs(10)).await;
        // One more check for all of them, then idle.
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(!lock(&h.trigger).running);
    }

    #[test]
    fn unknown_paths_are_starting_until_the_grace_passed() {
        let hooks = Hooks::default();
        assert!(hooks.starting(), "no controllers here yet");
        hooks.activate();
        assert!(hooks.starting(), "just started");
        lock(&hooks.inner).active_since = Instant::now().checked_sub(STARTUP_GRACE * 2);
        assert!(!hooks.starting());
        hooks.deactivate();
        assert!(hooks.starting());
    }

    #[test]
    fn replays_are_seen() {
        let (h, _) = {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async { hook(Duration::ZERO, "a") })
        };
        let a = [1u8; 32];
        let b = [2u8; 32];
        assert!(h.first_sight(&[a, b]));
        assert!(!h.first_sight(&[a]));
        assert!(!h.first_sight(&[[3u8; 32], b]));
        // Bounded: the oldest are forgotten.
        for i in 0..SEEN as u32 + 10 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_le_bytes());
            k[31] = 9;
            h.first_sight(&[k]);
        }
        assert!(h.first_sight(&[a]));
    }

    #[test]
    fn paths_follow_flux_and_change_with_the_token() {
        let p = path_for(b"token", "name", "ns");
        let mut h = Sha256::new();
        h.update(b"tokennamens");
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(p, format!("/hook/{hex}"));
        assert_ne!(p, path_for(b"token2", "name", "ns"));
        assert_ne!(p, path_for(b"token", "name", "ns2"));
    }

    #[test]
    fn a_new_token_moves_the_hook() {
        let hooks = Hooks::default();
        struct Never;
        impl Checker for Never {
            fn check(&self) -> BoxFuture<'static, Option<BTreeMap<String, String>>> {
                Box::pin(async { None })
            }
        }
        let target = HookTarget {
            config: "ns/c".into(),
            namespace: "ns".into(),
            repository: "r".into(),
            branch: "main".into(),
            checker: Arc::new(Never),
        };
        let p1 = hooks
            .register(b"first-token-xxxxx", "c", target.clone())
            .unwrap();
        assert!(hooks.lookup(&p1).is_some());
        assert_eq!(
            hooks.register(b"first-token-xxxxx", "c", target.clone()),
            Ok(p1.clone())
        );
        // The same token, and a name and namespace that concatenate alike: refused, not taken.
        let mut other = target.clone();
        other.config = "n/cs".into();
        other.namespace = "n".into();
        let mut mine = target.clone();
        mine.config = "sn/c".into();
        mine.namespace = "sn".into();
        let q = hooks.register(b"first-token-xxxxx", "c", mine).unwrap();
        assert_eq!(
            hooks.register(b"first-token-xxxxx", "cs", other),
            Err("sn/c".to_string())
        );
        hooks.unregister("n/cs");
        assert!(hooks.lookup(&q).is_some(), "another config's hook stays");
        let p2 = hooks.register(b"second-token-xxxx", "c", target).unwrap();
        assert!(hooks.lookup(&p1).is_none());
        assert_eq!(hooks.lookup(&p2).unwrap().secret(), b"second-token-xxxx");
        hooks.unregister("ns/c");
        assert!(hooks.lookup(&p2).is_none());
    }
}
