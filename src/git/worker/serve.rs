//! The worker task's request loop: one request at a time, pushes batched (`push`), every other
//! request answered in turn, also while a batch lingers for more pushes.

use super::push::QueuedPush;
use super::{Request, Worker};

impl Worker {
    /// Serves requests one at a time until every handle is gone, dropping what it cached for
    /// transports nobody used for long (a deleted config's).
    pub(super) async fn run(mut self) {
        let _owner = self.lease.clone().lock_owned().await;
        // Sole owner now: what a killed process left locked is stale.
        let mirror = self.mirror.clone();
        let url = self.url.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let removed = mirror.clear_stale_locks();
            if removed > 0 {
                tracing::info!(repository = %url, removed, "removed stale lock files from the mirror");
            }
        })
        .await;
        while let Some(request) = self.next_request().await {
            self.handle(request).await;
            self.prune_records();
        }
    }

    /// The oldest request set aside while batching, else the next one from the channel.
    async fn next_request(&mut self) -> Option<Request> {
        match self.pending.pop_front() {
            Some(r) => Some(r),
            None => self.rx.recv().await,
        }
    }

    async fn handle(&mut self, request: Request) {
        match request {
            Request::Push { job, reply } => self.push_batch(QueuedPush { job, reply }).await,
            other => self.serve(other).await,
        }
    }

    /// Answers any request but a push (which [`Worker::handle`] batches; one handed here is
    /// set aside for the next batch); also called while a batch lingers for more pushes.
    pub(super) async fn serve(&mut self, request: Request) {
        match request {
            Request::Push { job, reply } => self.pending.push_back(Request::Push { job, reply }),
            Request::Snapshot {
                transport,
                revision,
                folders,
                max_age,
                reply,
            } => {
                let r = self.snapshot(&transport, &revision, folders, max_age).await;
                self.after_local_failure(&r).await;
                let _ = reply.send(r);
            }
            Request::AppAt {
                transport,
                revision,
                app,
                max_age,
                reply,
            } => {
                let r = self.app_at(&transport, &revision, &app, max_age).await;
                self.after_local_failure(&r).await;
                let _ = reply.send(r);
            }
            Request::RemoteHead {
                transport,
                branch,
                max_age,
                reply,
            } => {
                let r = self.remote_head(&transport, &branch, max_age).await;
                let _ = reply.send(r);
            }
            Request::LastCommit {
                transport,
                revision,
                since,
                folder,
                app_id,
                max_age,
                reply,
            } => {
                let r = self
                    .last_commit(
                        &transport,
                        &revision,
                        since.as_deref(),
                        &folder,
                        &app_id,
                        max_age,
                    )
                    .await;
                self.after_local_failure(&r).await;
                let _ = reply.send(r);
            }
            Request::Check {
                transport,
                branch,
                reply,
            } => {
                let outcome = self.check(&transport, &branch).await;
                let _ = reply.send(Ok(outcome));
            }
            Request::IsAncestor {
                transport,
                ancestor,
                descendant,
                max_age,
                reply,
            } => {
                let r = self
                    .is_ancestor(&transport, &ancestor, &descendant, max_age)
                    .await;
                self.after_local_failure(&r).await;
                let _ = reply.send(r);
            }
            Request::Refresh { transport, reply } => {
                let r = self.refresh(&transport).await;
                let _ = reply.send(r);
            }
        }
    }
}
