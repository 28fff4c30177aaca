//! Applying a push batch inside the mirror, without any network: every job is planned on the
//! tree the previous one produced (design §3 rule 1, the ToolJet layout) and each change
//! becomes one commit. Blocking; the push side runs it on a blocking thread and may run it
//! again on a newer base after a rejected push.

use gix::ObjectId;

use super::error::{commit_failed, internal};
use super::{commit_info, PushJob, PushResult, WorkerError};
use crate::git::mirror::{self, Mirror};
use crate::layout::{plan_push, AppContent, PushOutcome, PushPlan, PushRequest};

/// The outcome of applying a batch on one base commit.
pub(super) struct Applied {
    /// The last commit made, or the base when nothing changed.
    pub(super) tip: Option<ObjectId>,
    /// One result per job, in order.
    pub(super) results: Vec<Result<PushResult, WorkerError>>,
    /// Commits made.
    pub(super) commits: u64,
}

/// Where the next job is planned: the head so far and its tree.
struct Cursor {
    head: Option<ObjectId>,
    tree: ObjectId,
    commits: u64,
}

/// A job's own result; the outer `Result` of [`apply_job`] is a mirror failure, which fails
/// the whole batch.
type JobResult = Result<PushResult, WorkerError>;

/// Plans every job on the tree the previous one produced and commits each change.
pub(super) fn apply_batch(
    mirror: &Mirror,
    base: Option<ObjectId>,
    jobs: &[Box<PushJob>],
) -> Result<Applied, WorkerError> {
    let (repo, _) = mirror.open().map_err(internal)?;
    let tree = match base {
        Some(commit) => mirror::tree_of(&repo, commit).map_err(internal)?,
        None => ObjectId::empty_tree(gix::hash::Kind::Sha1),
    };
    if let Some(evidence) = mirror::newer_layout(&repo, tree).map_err(internal)? {
        let refused = WorkerError::UnsupportedLayout { evidence };
        return Ok(Applied {
            tip: base,
            results: jobs.iter().map(|_| Err(refused.clone())).collect(),
            commits: 0,
        });
    }
    let mut at = Cursor {
        head: base,
        tree,
        commits: 0,
    };
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        results.push(apply_job(&repo, &mut at, job)?);
    }
    Ok(Applied {
        tip: at.head,
        results,
        commits: at.commits,
    })
}

/// Plans one job on `at` and, when it changes the tree, commits it and moves `at` on.
fn apply_job(
    repo: &gix::Repository,
    at: &mut Cursor,
    job: &PushJob,
) -> Result<JobResult, WorkerError> {
    let state = match mirror::repo_state(repo, at.tree, at.head.is_some(), &job.app_id)
        .map_err(internal)?
    {
        Ok(state) => state,
        Err(e) => return Ok(Err(WorkerError::Layout(e))),
    };
    let head = at.head.map(|h| h.to_string());
    let plan = match plan_push(&state, &push_request(job)) {
        Err(e) => return Ok(Err(WorkerError::Layout(e))),
        Ok(PushOutcome::NoChange { app_path }) => {
            return Ok(Ok(PushResult::NoChange { app_path, head }))
        }
        Ok(PushOutcome::Refused(refusal)) => return Ok(Ok(PushResult::Refused(refusal))),
        Ok(PushOutcome::Plan(plan)) => plan,
    };
    let new_tree =
        mirror::edit_tree(repo, at.tree, &plan.writes, &plan.deletes).map_err(internal)?;
    if new_tree == at.tree {
        // Never an empty commit, whatever the planner thought.
        return Ok(Ok(PushResult::NoChange {
            app_path: plan.app_path,
            head,
        }));
    }
    commit_plan(repo, at, job, plan, new_tree).map(Ok)
}

/// Commits `new_tree` on `at` for `job` and moves `at` to the new commit.
fn commit_plan(
    repo: &gix::Repository,
    at: &mut Cursor,
    job: &PushJob,
    plan: PushPlan,
    new_tree: ObjectId,
) -> Result<PushResult, WorkerError> {
    let who = mirror::Signature {
        name: &job.author_name,
        email: &job.author_email,
        time: job.date,
    };
    // Each commit is signed with its own job's key (a batch holds one signer only anyway).
    let signer = job.signing.as_deref();
    let commit = mirror::write_commit(repo, new_tree, at.head, &plan.commit_message, &who, signer)
        .map_err(commit_failed)?;
    let facts = mirror::commit_facts(repo, commit).map_err(internal)?;
    at.head = Some(commit);
    at.tree = new_tree;
    at.commits += 1;
    Ok(PushResult::Committed {
        commit: commit_info(commit, facts),
        app_path: plan.app_path,
        kind: plan.kind,
    })
}

fn push_request(job: &PushJob) -> PushRequest<'_> {
    PushRequest {
        app_id: &job.app_id,
        app_name: &job.app_name,
        version_id: &job.version_id,
        version_name: &job.version_name,
        content: AppContent::File(&job.file),
        message: &job.message,
        author: &job.author_name,
        date: job.date,
    }
}
