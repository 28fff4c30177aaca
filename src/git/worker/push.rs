//! Push batching (design §3 rule 4): queued pushes are collected into one batch, grouped by
//! branch, transport and signing key, applied on one fresh fetch and pushed with one `git
//! push`. A push rejected as non-fast-forward is fetched, re-applied on the new head (its
//! commits signed again) and retried with backoff, never forced.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gix::ObjectId;

use super::apply::apply_batch;
use super::error::internal;
use super::{
    blocking, bump, transport_key, PushJob, PushResult, Reply, Request, TransportKey, Worker,
    WorkerError,
};
use crate::git::classify::{GitFailure, GitFailureKind};
use crate::git::cli::GitSession;
use crate::git::mirror;

/// At most this many pushes go into one batch (bounds memory and the blast radius of a failure).
const MAX_BATCH: usize = 500;
/// A batch waits this long for one more push before it starts, so the pushes of many AppSyncs
/// handed over one after another (a set's first backup, exported a few at a time) go out as
/// one push...
const LINGER: Duration = Duration::from_millis(300);
/// ...but at most this long in all. Reads are served meanwhile, so only the batch waits.
const MAX_LINGER: Duration = Duration::from_secs(20);
/// Push attempts per batch before giving up on a remote that keeps moving.
const MAX_PUSH_ATTEMPTS: u32 = 5;

/// A push waiting for its batch, with the caller's reply channel.
pub(super) struct QueuedPush {
    pub(super) job: Box<PushJob>,
    pub(super) reply: Reply<PushResult>,
}

/// What pushes may share one push: the same branch, transport and signing key. A job asking
/// for signing never shares a commit chain with an unsigned job or another key's job.
#[derive(Clone, PartialEq, Eq)]
struct Lane {
    branch: String,
    start_from: Option<String>,
    key: TransportKey,
    /// Fingerprint of the signing key, `None` for unsigned commits.
    signer: Option<String>,
}

impl Lane {
    fn of(job: &PushJob) -> Lane {
        Lane {
            branch: job.branch.clone(),
            start_from: job.start_from.clone(),
            key: transport_key(&job.transport),
            signer: job.signing.as_ref().map(|s| s.fingerprint().to_owned()),
        }
    }

    fn holds(&self, job: &PushJob) -> bool {
        job.branch == self.branch
            && job.start_from == self.start_from
            && transport_key(&job.transport) == self.key
            && job.signing.as_ref().map(|s| s.fingerprint()) == self.signer.as_deref()
    }
}

/// The jobs of one lane (branch, transport, signing key), frozen for all attempts of one push.
struct Group<'a> {
    branch: &'a str,
    start_from: Option<&'a str>,
    key: TransportKey,
    session: &'a GitSession,
    jobs: Arc<Vec<Box<PushJob>>>,
}

type Results = Vec<Result<PushResult, WorkerError>>;

impl Worker {
    /// Moves queued pushes into `batch` (up to [`MAX_BATCH`]), only those of `only`'s lane
    /// when given; other requests wait in `pending`, in order.
    fn drain_pushes(&mut self, batch: &mut Vec<QueuedPush>, only: Option<&Lane>) {
        let mut keep = VecDeque::new();
        let take = |request: Request, batch: &mut Vec<QueuedPush>, keep: &mut VecDeque<Request>| {
            match request {
                Request::Push { job, reply }
                    if batch.len() < MAX_BATCH && only.is_none_or(|lane| lane.holds(&job)) =>
                {
                    batch.push(QueuedPush { job, reply })
                }
                other => keep.push_back(other),
            }
        };
        while let Some(request) = self.pending.pop_front() {
            take(request, batch, &mut keep);
        }
        while batch.len() < MAX_BATCH {
            match self.rx.try_recv() {
                Ok(request) => take(request, batch, &mut keep),
                Err(_) => break,
            }
        }
        self.pending = keep;
    }

    /// Takes in pushes while they keep arriving ([`LINGER`] apart, [`MAX_LINGER`] in all);
    /// every other request, set aside before or arriving meanwhile, is served in turn, so
    /// none waits for a batch to fill (only what arrives once the batch is being pushed
    /// waits for that push).
    async fn linger(&mut self, batch: &mut Vec<QueuedPush>) {
        let start = Instant::now();
        if batch.len() < MAX_BATCH {
            for request in std::mem::take(&mut self.pending) {
                match request {
                    push @ Request::Push { .. } => self.pending.push_back(push),
                    other if start.elapsed() < MAX_LINGER => self.serve(other).await,
                    other => self.pending.push_back(other),
                }
            }
        }
        let mut last = Instant::now();
        while batch.len() < MAX_BATCH {
            let left = MAX_LINGER
                .saturating_sub(start.elapsed())
                .min(LINGER.saturating_sub(last.elapsed()));
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(Request::Push { job, reply })) => {
                    batch.push(QueuedPush { job, reply });
                    last = Instant::now();
                }
                Ok(Some(other)) => self.serve(other).await,
                Ok(None) | Err(_) => break,
            }
        }
    }

    /// Serves `first` and every push queued behind it, one group per lane (branch, transport,
    /// signing key).
    pub(super) async fn push_batch(&mut self, first: QueuedPush) {
        bump(&self.stats.batches, 1);
        let mut batch = vec![first];
        self.drain_pushes(&mut batch, None);
        self.linger(&mut batch).await;
        // What arrived while the last read was served.
        self.drain_pushes(&mut batch, None);
        // From here: a fetch made by a read served while the batch lingered is too old to
        // plan on (the batch would be pushed onto a stale head and rejected).
        let started = Instant::now();
        // One group per lane, in order of first appearance.
        let mut groups: Vec<(Lane, Vec<QueuedPush>)> = Vec::new();
        for queued in batch {
            match groups.iter_mut().find(|(lane, _)| lane.holds(&queued.job)) {
                Some((_, jobs)) => jobs.push(queued),
                None => groups.push((Lane::of(&queued.job), vec![queued])),
            }
        }
        for (lane, jobs) in groups {
            self.push_group(&lane, jobs, started).await;
        }
    }

    /// Fetches (unless this batch already did), takes in the pushes that arrived meanwhile,
    /// then applies and pushes the group and answers every job of it.
    async fn push_group(
        &mut self,
        lane: &Lane,
        mut queued: Vec<QueuedPush>,
        batch_started: Instant,
    ) {
        let (branch, key) = (lane.branch.as_str(), lane.key);
        let Some(transport) = queued.first().map(|q| q.job.transport.clone()) else {
            return;
        };
        let session = match self.cli.session(&transport) {
            Ok(s) => s,
            Err(f) => return fail_all(replies_of(queued), &WorkerError::Git(f)),
        };
        if gix::refs::FullName::try_from(format!("refs/heads/{branch}")).is_err() {
            let e = WorkerError::RevisionNotFound {
                revision: branch.to_owned(),
            };
            return fail_all(replies_of(queued), &e);
        }
        let fresh = self
            .fetches
            .get(&key)
            .is_some_and(|r| r.at >= batch_started);
        if !fresh {
            if let Err(e) = self.fetch(&session, key).await {
                return fail_all(replies_of(queued), &e);
            }
        }
        // Pushes that arrived during the fetch join this batch.
        self.drain_pushes(&mut queued, Some(lane));
        // A branch meant to start at its base (pull-request mode) never starts as a new root.
        if let Some(base) = lane.start_from.as_deref() {
            if self.fetched_head(key, branch).is_none() && self.fetched_head(key, base).is_none() {
                let e = WorkerError::RevisionNotFound {
                    revision: base.to_owned(),
                };
                return fail_all(replies_of(queued), &e);
            }
        }
        let (jobs, replies): (Vec<_>, Vec<_>) =
            queued.into_iter().map(|q| (q.job, q.reply)).unzip();
        let group = Group {
            branch,
            start_from: lane.start_from.as_deref(),
            key,
            session: &session,
            jobs: Arc::new(jobs),
        };
        match self.push_attempts(&group).await {
            Ok(results) => deliver(replies, results),
            Err(e) => fail_all(replies, &e),
        }
    }

    /// Applies the group on the fetched head and pushes it, re-fetching and re-applying after
    /// each rejection (up to [`MAX_PUSH_ATTEMPTS`]) and rebuilding a corrupt mirror once.
    async fn push_attempts(&mut self, g: &Group<'_>) -> Result<Results, WorkerError> {
        let mut rebuilt = false;
        let mut attempt = 1;
        loop {
            // A branch that does not exist yet starts at `start_from`'s head, if any.
            let base = self
                .fetched_head(g.key, g.branch)
                .or_else(|| g.start_from.and_then(|b| self.fetched_head(g.key, b)));
            let jobs = g.jobs.clone();
            let mirror = self.mirror.clone();
            let applied = match blocking(move || apply_batch(&mirror, base, &jobs)).await {
                Ok(a) => a,
                Err(e @ WorkerError::Internal(_)) if !rebuilt => {
                    if !self.repair_if_corrupt().await? {
                        return Err(e);
                    }
                    tracing::warn!(repository = %self.url, error = %e, "applying a batch failed in the corrupt mirror; retrying in the rebuilt one");
                    rebuilt = true;
                    attempt += 1;
                    self.fetch(g.session, g.key).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            bump(&self.stats.commits, applied.commits);
            let Some(tip) = applied.tip.filter(|tip| Some(*tip) != base) else {
                return Ok(applied.results);
            };
            match self.push_tip(g, tip).await {
                Ok(()) => {
                    bump(&self.stats.pushes, 1);
                    self.after_push(g.key, g.branch, tip, g.session).await;
                    tracing::info!(repository = %self.url, branch = g.branch, commit = %tip, commits = applied.commits, jobs = g.jobs.len(), "pushed");
                    return Ok(applied.results);
                }
                Err(f) if f.kind == GitFailureKind::NonFastForward => {
                    self.rejected(g.branch, attempt).await?;
                }
                Err(f) => return Err(WorkerError::Git(f)),
            }
            attempt += 1;
            self.fetch(g.session, g.key).await?;
        }
    }

    /// `git push` of `tip` to the group's branch, from the mirror.
    async fn push_tip(&self, g: &Group<'_>, tip: ObjectId) -> Result<(), GitFailure> {
        let refspec = format!("{tip}:refs/heads/{}", g.branch);
        let mirror_dir = self.mirror.dir().to_path_buf();
        // Not --porcelain: its ref status goes to stdout, and the rejection must be seen
        // on stderr to be classified as non-fast-forward.
        g.session
            .run(
                [
                    "push",
                    "--no-verify",
                    self.url.as_git_url(),
                    refspec.as_str(),
                ],
                Some(&mirror_dir),
                None,
                &[],
            )
            .await
            .map(|_| ())
    }

    /// Counts a non-fast-forward rejection of `attempt`; waits before the next attempt, or
    /// gives up after the last one.
    async fn rejected(&self, branch: &str, attempt: u32) -> Result<(), WorkerError> {
        bump(&self.stats.push_rejections, 1);
        if attempt >= MAX_PUSH_ATTEMPTS {
            tracing::warn!(repository = %self.url, branch, attempts = attempt, "push rejected every time; giving up for now");
            return Err(WorkerError::PushRejected { attempts: attempt });
        }
        tracing::info!(repository = %self.url, branch, attempt, "push rejected as non-fast-forward; fetching and re-applying");
        tokio::time::sleep(retry_backoff(attempt)).await;
        Ok(())
    }

    /// Records the pushed head (mirror ref, caches) and lets git pack loose objects when due.
    async fn after_push(
        &mut self,
        key: TransportKey,
        branch: &str,
        tip: ObjectId,
        session: &GitSession,
    ) {
        let refname = format!("refs/heads/{branch}");
        if let Some(record) = self.fetches.get_mut(&key) {
            record.refs.insert(refname.clone(), tip);
        }
        self.heads.record(key, branch, Some(tip.to_string()));
        self.saw(&refname, Some(tip));
        let mirror = self.mirror.clone();
        let branch = branch.to_owned();
        let set = blocking(move || {
            let (repo, _) = mirror.open().map_err(internal)?;
            mirror::set_branch(&repo, &branch, tip).map_err(internal)
        })
        .await;
        if let Err(e) = set {
            tracing::warn!(repository = %self.url, error = %e, "could not record the pushed head in the mirror");
        }
        let dir = self.mirror.dir().to_path_buf();
        if let Err(e) = session
            .run(
                ["-c", "gc.autoDetach=false", "gc", "--auto", "--quiet"],
                Some(&dir),
                None,
                &[],
            )
            .await
        {
            tracing::debug!(repository = %self.url, error = %e, "git gc --auto failed in the mirror");
        }
    }
}

/// Wait before push attempt `attempt + 1`: 100 ms doubling up to 1.6 s, plus jitter.
fn retry_backoff(attempt: u32) -> Duration {
    let jitter = rand::random::<u64>() % 100;
    Duration::from_millis(100u64 * (1 << (attempt - 1).min(4)) + jitter)
}

fn replies_of(queued: Vec<QueuedPush>) -> Vec<Reply<PushResult>> {
    queued.into_iter().map(|q| q.reply).collect()
}

fn fail_all(replies: Vec<Reply<PushResult>>, e: &WorkerError) {
    for reply in replies {
        let _ = reply.send(Err(e.clone()));
    }
}

fn deliver(replies: Vec<Reply<PushResult>>, results: Results) {
    for (reply, result) in replies.into_iter().zip(results) {
        let _ = reply.send(result);
    }
}
