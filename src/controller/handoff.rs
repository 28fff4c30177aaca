//! Pushes handed to a repository worker without holding a reconcile slot. A Push pass that has
//! something to commit queues it and ends; when the worker answers, the AppSync is reconciled
//! again and that pass reports the answer. So however few reconciles run at once, every
//! AppSync with a change is queued at the worker together, and a first backup of a whole
//! workspace is one fetch and one push (design §3.4, §7).
//!
//! Only memory: a process killed meanwhile loses nothing that matters, since a push is
//! idempotent (the next pass finds git already holding the export, or pushes it again).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc;

use crate::api::AppSync;
use crate::git::worker::{PushResult, WorkerError};
use crate::layout::ExportedApp;
use crate::tooljet::AppSummary;

/// What a pass knew when it handed a push over, to report its answer.
#[derive(Clone, Debug)]
pub struct Handed {
    /// The AppSync's generation then: an answer for an older spec is not reported.
    pub generation: Option<i64>,
    /// The app as exported.
    pub app: AppSummary,
    /// What the export said.
    pub exported: ExportedApp,
    /// The export's digest.
    pub digest: String,
    /// The branch pushed to.
    pub branch: String,
    /// When it was handed over.
    pub started: Instant,
    /// The size of the app file it pushes, held in memory until the worker answers.
    pub bytes: usize,
}

/// A push handed over, and the worker's answer once it came.
struct Entry {
    handed: Handed,
    /// Tells this hand-over from a later one under the same key (an AppSync deleted and made
    /// again under its name): an answer fills only its own entry.
    token: u64,
    answer: Option<Result<PushResult, WorkerError>>,
}

/// At most this many pushes are in workers' hands at once (each holds an export in memory);
/// beyond it a pass waits for its push in its reconcile slot, as before hand-overs.
pub const MAX_HANDED: usize = 256;
/// ...and at most this many bytes of app files: a workspace of large apps is pushed in
/// several batches rather than held in memory whole.
pub const MAX_HANDED_BYTES: usize = 64 << 20;

/// What [`Handoff::take`] found for an AppSync.
pub enum Taken {
    /// Nothing handed over (or an answer that no longer applies): a normal pass.
    Nothing,
    /// Handed over, no answer yet: the pass ends without writing anything.
    Waiting,
    /// The answer, with what the pass that handed it over knew.
    Answered(Box<Handed>, Result<PushResult, WorkerError>),
}

/// The pushes in the hands of repository workers, per AppSync (`namespace/name`).
pub struct Handoff {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    tokens: std::sync::atomic::AtomicU64,
    wake: mpsc::UnboundedSender<ObjectRef<AppSync>>,
    woken: Mutex<Option<mpsc::UnboundedReceiver<ObjectRef<AppSync>>>>,
}

impl Default for Handoff {
    fn default() -> Self {
        let (wake, woken) = mpsc::unbounded_channel();
        Handoff {
            entries: Arc::default(),
            tokens: Default::default(),
            wake,
            woken: Mutex::new(Some(woken)),
        }
    }
}

impl Handoff {
    /// Whether another push may be handed over ([`MAX_HANDED`], [`MAX_HANDED_BYTES`]).
    pub fn has_room(&self) -> bool {
        self.entries
            .lock()
            .map(|m| {
                let waiting = m.values().filter(|e| e.answer.is_none());
                let (count, bytes) = waiting.fold((0, 0), |(n, b), e| (n + 1, b + e.handed.bytes));
                count < MAX_HANDED && bytes < MAX_HANDED_BYTES
            })
            .unwrap_or(false)
    }

    /// The AppSyncs to reconcile because their push was answered (taken once, by the
    /// AppSync controller).
    pub fn answered(&self) -> Option<mpsc::UnboundedReceiver<ObjectRef<AppSync>>> {
        self.woken.lock().ok().and_then(|mut w| w.take())
    }

    /// What is handed over for `key`. An answer is taken out (reported once); one for another
    /// generation is dropped; a push unanswered after `max_wait` (its worker call has its own
    /// deadline, so this only guards against a lost task) is forgotten.
    pub fn take(&self, key: &str, generation: Option<i64>, max_wait: Duration) -> Taken {
        let Ok(mut m) = self.entries.lock() else {
            return Taken::Nothing;
        };
        let Some(e) = m.get(key) else {
            return Taken::Nothing;
        };
        if e.answer.is_none() {
            if e.handed.started.elapsed() < max_wait {
                return Taken::Waiting;
            }
            m.remove(key);
            return Taken::Nothing;
        }
        match m.remove(key) {
            Some(Entry {
                handed,
                answer: Some(answer),
                ..
            }) if handed.generation == generation => Taken::Answered(Box::new(handed), answer),
            _ => Taken::Nothing,
        }
    }

    /// Hands `push` (the worker call) over for `key`; when it answers, `obj` is reconciled.
    pub fn hand_over(
        &self,
        key: String,
        obj: ObjectRef<AppSync>,
        handed: Handed,
        push: impl Future<Output = Result<PushResult, WorkerError>> + Send + 'static,
    ) {
        let token = self
            .tokens
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut m) = self.entries.lock() {
            m.insert(
                key.clone(),
                Entry {
                    handed,
                    token,
                    answer: None,
                },
            );
        }
        let (entries, wake) = (self.entries.clone(), self.wake.clone());
        tokio::spawn(async move {
            let answer = push.await;
            let kept = match entries.lock() {
                Ok(mut m) => match m.get_mut(&key).filter(|e| e.token == token) {
                    Some(e) => {
                        e.answer = Some(answer);
                        true
                    }
                    None => false,
                },
                Err(_) => false,
            };
            if kept {
                // The controller may be gone (shutdown): then nobody needs the answer.
                let _ = wake.send(obj);
            }
        });
    }

    /// Forgets a deleted AppSync's push (a late answer is dropped).
    pub fn forget(&self, key: &str) {
        if let Ok(mut m) = self.entries.lock() {
            m.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handed(generation: i64) -> Handed {
        Handed {
            generation: Some(generation),
            app: AppSummary {
                id: "a".into(),
                name: "A".into(),
                slug: None,
                versions: Vec::new(),
            },
            exported: ExportedApp {
                id: "a".into(),
                name: "A".into(),
                version_id: "v".into(),
                version_name: "v1".into(),
                tooljet_version: None,
            },
            digest: "d".into(),
            branch: "main".into(),
            started: Instant::now(),
            bytes: 100_000,
        }
    }

    #[tokio::test]
    async fn room_is_bounded_by_count_and_by_bytes() {
        let h = Handoff::default();
        let hold = |h: &Handoff, key: &str, bytes: usize| {
            let obj = ObjectRef::new(key).within("ns");
            let handed = Handed { bytes, ..handed(1) };
            h.hand_over(key.into(), obj, handed, std::future::pending());
        };
        for i in 0..MAX_HANDED - 1 {
            hold(&h, &format!("small-{i}"), 10);
        }
        assert!(h.has_room(), "one more by count");
        hold(&h, "last", 10);
        assert!(!h.has_room(), "full by count");

        let h = Handoff::default();
        hold(&h, "big-1", MAX_HANDED_BYTES / 2);
        assert!(h.has_room());
        hold(&h, "big-2", MAX_HANDED_BYTES / 2);
        assert!(!h.has_room(), "full by bytes, with two pushes");
        h.forget("big-2");
        assert!(h.has_room(), "a forgotten push frees its bytes");
    }

    #[tokio::test]
    async fn an_answer_is_reported_once_and_wakes_the_appsync() {
        let h = Handoff::default();
        let mut woken = h.answered().unwrap();
        assert!(h.answered().is_none(), "taken once");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let obj = ObjectRef::new("x").within("ns");
        h.hand_over("ns/x".into(), obj.clone(), handed(1), async move {
            let _ = rx.await;
            Ok(PushResult::NoChange {
                app_path: "A/v1.json".into(),
                head: None,
            })
        });
        let wait = Duration::from_secs(60);
        assert!(matches!(h.take("ns/x", Some(1), wait), Taken::Waiting));
        assert!(matches!(h.take("ns/other", Some(1), wait), Taken::Nothing));
        let _ = tx.send(());
        assert_eq!(woken.recv().await, Some(obj));
        assert!(matches!(
            h.take("ns/x", Some(1), wait),
            Taken::Answered(_, Ok(PushResult::NoChange { .. }))
        ));
        assert!(matches!(h.take("ns/x", Some(1), wait), Taken::Nothing));
    }

    #[tokio::test]
    async fn answers_for_another_spec_or_a_deleted_appsync_are_dropped() {
        let h = Handoff::default();
        let mut woken = h.answered().unwrap();
        let obj = ObjectRef::new("x").within("ns");
        let answer = || async {
            Err(WorkerError::Busy {
                after: Duration::from_secs(1),
            })
        };
        h.hand_over("ns/x".into(), obj.clone(), handed(1), answer());
        woken.recv().await;
        assert!(matches!(
            h.take("ns/x", Some(2), Duration::MAX),
            Taken::Nothing
        ));
        h.hand_over("ns/x".into(), obj.clone(), handed(2), answer());
        h.forget("ns/x");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(matches!(
            h.take("ns/x", Some(2), Duration::MAX),
            Taken::Nothing
        ));
        // Deleted and made again under its name: the old push's answer is not the new one's.
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        h.hand_over("ns/x".into(), obj.clone(), handed(1), async move {
            let _ = rx.await;
            Ok(PushResult::NoChange {
                app_path: "old".into(),
                head: None,
            })
        });
        h.forget("ns/x");
        h.hand_over("ns/x".into(), obj, handed(1), std::future::pending());
        let _ = tx.send(());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(matches!(
            h.take("ns/x", Some(1), Duration::MAX),
            Taken::Waiting
        ));
        assert!(h.has_room());
        // Unanswered for too long: forgotten, a normal pass runs.
        h.hand_over(
            "ns/y".into(),
            ObjectRef::new("y").within("ns"),
            handed(1),
            std::future::pending(),
        );
        assert!(matches!(
            h.take("ns/y", Some(1), Duration::ZERO),
            Taken::Nothing
        ));
    }
}
