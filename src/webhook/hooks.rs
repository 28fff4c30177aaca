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
}

#[derive(Default)]
struct Seen {
    order: VecDeque<[u8; 32]>,
    set: HashSet<[u8; 32]>,
}

#[derive(Default)]
struct Trigger {
    running: bool,
    /// Refs delivered since the running check started (or, idle, since the last one).
    pending: Vec<RefUpdate>,
    last_check: Option<Instant>,
    checks: u64,
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
    pub fn target(&self) -> Option<HookTarget> {
        self.target.lock().ok().map(|t| t.clone())
    }

    /// Records `keys` (delivery id, body digest); `false` when any was seen before: a replay
    /// or a redelivery of an event already acted on.
    pub fn first_sight(&self, keys: &[[u8; 32]]) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
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
        self.trigger.lock().map(|t| t.checks).unwrap_or(0)
    }

    /// Asks for a check covering `updates`. One task per config runs them: the first after
    /// [`DEBOUNCE`] (at least [`MIN_SPACING`] after the previous one), then one more only if a
    /// delivery arrived during a check and names a commit that check did not see.
    pub fn schedule(self: &Arc<Self>, updates: Vec<RefUpdate>) -> Scheduled {
        let Ok(mut t) = self.trigger.lock() else {
            return Scheduled::Joined;
        };
        t.pending.extend(updates);
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
        tokio::time::sleep_until(first_at).await;
        loop {
            let checker = match self.target.lock() {
                Ok(t) => t.checker.clone(),
                Err(_) => return,
            };
            match self.trigger.lock() {
                Ok(mut t) => {
                    t.pending.clear();
                    t.last_check = Some(Instant::now());
                }
                Err(_) => return,
            }
            let refs = checker.check().await;
            let next = {
                let Ok(mut t) = self.trigger.lock() else {
                    return;
                };
                t.checks += 1;
                t.pending.retain(|u| !covered(refs.as_ref(), u));
                if t.pending.is_empty() {
                    t.running = false;
                    return;
                }
                t.last_check.map(|at| at + MIN_SPACING)
            };
            if let Some(at) = next {
                tokio::time::sleep_until(at).await;
            }
        }
    }
}

/// Whether a check that saw `refs` saw the commit `u` names.
fn covered(refs: Option<&BTreeMap<String, String>>, u: &RefUpdate) -> bool {
    let (Some(refs), Some(after)) = (refs, u.after.as_deref()) else {
        return false;
    };
    match refs.get(&u.reference) {
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

/// Every config's hook, by path.
#[derive(Default)]
pub struct Hooks {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_path: HashMap<String, Arc<Hook>>,
    path_of: BTreeMap<String, String>,
}

impl Hooks {
    /// Registers (or refreshes) the hook of `target.config` under the path its token gives;
    /// returns the path. The seen deliveries and a running check survive a refresh with the
    /// same token.
    pub fn register(&self, token: &[u8], name: &str, target: HookTarget) -> String {
        let path = path_for(token, name, &target.namespace);
        let Ok(mut inner) = self.inner.lock() else {
            return path;
        };
        let config = target.config.clone();
        if inner.path_of.get(&config) == Some(&path) {
            if let Some(hook) = inner.by_path.get(&path) {
                if let Ok(mut t) = hook.target.lock() {
                    *t = target;
                }
                return path;
            }
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
            }),
        );
        inner.path_of.insert(config, path.clone());
        path
    }

    /// Forgets the hook of `config` (`namespace/name`): deleted, disabled, or no webhook.
    pub fn unregister(&self, config: &str) {
        if let Ok(mut inner) = self.inner.lock() {
            if let Some(path) = inner.path_of.remove(config) {
                inner.by_path.remove(&path);
            }
        }
    }

    /// The hook at `path`.
    pub fn lookup(&self, path: &str) -> Option<Arc<Hook>> {
        self.inner.lock().ok()?.by_path.get(path).cloned()
    }

    /// The hook of `config`, for tests and metrics.
    pub fn of_config(&self, config: &str) -> Option<Arc<Hook>> {
        let inner = self.inner.lock().ok()?;
        inner.by_path.get(inner.path_of.get(config)?).cloned()
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

    fn hook(took: Duration, head: &str) -> (Arc<Hook>, Arc<AtomicU64>) {
        let calls = Arc::new(AtomicU64::new(0));
        let hooks = Hooks::default();
        let checker = Arc::new(Counting {
            calls: calls.clone(),
            took,
            refs: BTreeMap::from([("refs/heads/main".to_string(), head.to_string())]),
        });
        hooks.register(
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
        (hooks.of_config("ns/c").unwrap(), calls)
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
        let p1 = hooks.register(b"first-token-xxxxx", "c", target.clone());
        assert!(hooks.lookup(&p1).is_some());
        assert_eq!(
            hooks.register(b"first-token-xxxxx", "c", target.clone()),
            p1
        );
        let p2 = hooks.register(b"second-token-xxxx", "c", target);
        assert!(hooks.lookup(&p1).is_none());
        assert_eq!(hooks.lookup(&p2).unwrap().secret(), b"second-token-xxxx");
        hooks.unregister("ns/c");
        assert!(hooks.lookup(&p2).is_none());
    }
}
