//! The worker's error type: what callers match on and what conditions show, kept apart from
//! the git work so its reasons and messages can be read (and changed) in one place.

use crate::git::classify::{GitFailure, GitFailureKind};
use crate::git::mirror::{CommitError, MirrorError};
use crate::git::sign::SignError;
use crate::layout::PlanError;

/// Why a worker request failed; the message says what to do.
#[derive(Clone, Debug, thiserror::Error)]
pub enum WorkerError {
    /// git or ssh failed talking to the remote; the kind says why.
    #[error("{}", git_message(.0))]
    Git(GitFailure),
    /// The branch, tag or commit does not exist (or is not a valid name).
    #[error("revision {revision:?} was not found in the repository: check that the branch or tag exists (names are case-sensitive) or that the commit sha belongs to a branch or tag of the repository")]
    RevisionNotFound {
        /// The revision as given.
        revision: String,
    },
    /// The remote kept moving: every attempt was rejected as non-fast-forward.
    #[error("the push was rejected {attempts} times because other writers kept updating the branch at the same moment; nothing was forced or lost, and the push is retried on the next reconcile")]
    PushRejected {
        /// Attempts made.
        attempts: u32,
    },
    /// The repository's content cannot be planned on (e.g. an unreadable `.meta/meta.json`).
    #[error(transparent)]
    Layout(#[from] PlanError),
    /// The repository is in ToolJet's newer GitSync layout, which the operator neither reads
    /// nor writes.
    #[error("the repository is in ToolJet's newer GitSync layout (GitSync 2.0; it has {evidence}), which the operator does not support: it reads and writes ToolJet's legacy layout only (<App Name>/<version>.json and .meta/meta.json, ToolJet up to 3.16 LTS), so nothing was read or written. Point the GitSyncConfig at a repository or branch in the legacy layout")]
    UnsupportedLayout {
        /// A path only the newer layout has.
        evidence: String,
    },
    /// The worker did not answer within the caller's deadline: it is busy with a slow
    /// repository, or stuck. The request may still complete.
    #[error("the repository's worker did not answer within {}s: it is busy with a slow or unresponsive repository (or stuck); the request may still complete, and is retried with backoff", .after.as_secs())]
    Busy {
        /// The deadline that passed.
        after: std::time::Duration,
    },
    /// A commit could not be signed as the GitSyncConfig asks; nothing was committed or pushed.
    #[error("the commit could not be signed, so nothing was committed or pushed (never unsigned when spec.commitSigning is set): {0}")]
    Signing(SignError),
    /// A local failure (mirror, I/O, the worker itself).
    #[error("internal error in the repository worker: {0}. The local mirror is a cache and is rebuilt from the remote when damaged, so the request is retried with backoff")]
    Internal(String),
}

impl WorkerError {
    /// Condition reason.
    pub fn reason(&self) -> crate::api::Reason {
        match self {
            WorkerError::Git(f) => match f.kind {
                GitFailureKind::AuthenticationFailed => crate::api::Reason::AuthenticationFailed,
                GitFailureKind::ReadOnlyAccess => crate::api::Reason::ReadOnlyAccess,
                GitFailureKind::HostKeyMismatch => crate::api::Reason::HostKeyMismatch,
                GitFailureKind::Unreachable => crate::api::Reason::RepositoryUnreachable,
                GitFailureKind::CertificateUntrusted => crate::api::Reason::CertificateUntrusted,
                GitFailureKind::RepositoryNotFound => crate::api::Reason::RepositoryNotFound,
                GitFailureKind::NonFastForward => crate::api::Reason::PushRejected,
                GitFailureKind::Other => crate::api::Reason::GitError,
            },
            WorkerError::RevisionNotFound { .. } => crate::api::Reason::RevisionNotFound,
            WorkerError::PushRejected { .. } => crate::api::Reason::PushRejected,
            WorkerError::Layout(_) => crate::api::Reason::InvalidRepositoryContent,
            WorkerError::Busy { .. } => crate::api::Reason::RepositoryBusy,
            WorkerError::UnsupportedLayout { .. } => {
                crate::api::Reason::UnsupportedRepositoryLayout
            }
            WorkerError::Signing(_) => crate::api::Reason::SigningKeyInvalid,
            WorkerError::Internal(_) => crate::api::Reason::InternalError,
        }
    }

    /// The git failure class, when git or ssh failed.
    pub fn git_kind(&self) -> Option<GitFailureKind> {
        match self {
            WorkerError::Git(f) => Some(f.kind),
            _ => None,
        }
    }
}

fn git_message(f: &GitFailure) -> String {
    let d = &f.detail;
    match f.kind {
        GitFailureKind::AuthenticationFailed => format!("the repository refused the credentials: over SSH, add the GitSyncConfig's status.publicKey as a deploy key of the repository (with write access for pushes); over HTTPS, check the token or GitHub App in the Secret of spec.repository.auth (expired, revoked, or without access to this repository). Git said: {d}"),
        GitFailureKind::ReadOnlyAccess => format!("the credentials may read but not write: give the deploy key write access (GitHub: Allow write access; GitLab: Grant write permissions), or the token write scope (contents: write, write_repository), and check branch protection. Git said: {d}"),
        GitFailureKind::CertificateUntrusted => format!("the HTTPS server's certificate does not verify: for a private CA, put its PEM in the credentials Secret under caFile; otherwise check the host name in spec.repository.url and the certificate's expiry. Git said: {d}"),
        GitFailureKind::HostKeyMismatch => format!("the server's SSH host key is not the pinned or recorded one, so the connection was refused: verify the key out of band (ssh-keyscan) and update spec.repository.knownHosts. ssh said: {d}"),
        GitFailureKind::Unreachable => format!("cannot connect to the repository, or it does not answer: check the host name, port and network policies (egress to the git host), and that the git server works; retried with backoff. Detail: {d}"),
        GitFailureKind::RepositoryNotFound => format!("the repository does not exist or the credentials cannot see it: check spec.repository.url and that the deploy key, token or GitHub App is granted this repository. Detail: {d}"),
        GitFailureKind::NonFastForward => format!("the push was rejected because the branch moved; it is retried. Git said: {d}"),
        GitFailureKind::Other => format!("git failed: {d}"),
    }
}

/// A mirror failure, as callers see it.
pub(super) fn internal(e: MirrorError) -> WorkerError {
    WorkerError::Internal(e.0)
}

/// A commit that was not written, as callers see it.
pub(super) fn commit_failed(e: CommitError) -> WorkerError {
    match e {
        CommitError::Mirror(e) => internal(e),
        CommitError::Sign(e) => WorkerError::Signing(e),
    }
}

/// The worker task is gone (or dropped the request).
pub(super) fn stopped() -> WorkerError {
    WorkerError::Internal("the repository worker stopped".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_follow_the_failure_kind() {
        let git = |kind| {
            WorkerError::Git(GitFailure {
                kind,
                detail: "d".into(),
            })
        };
        assert_eq!(
            git(GitFailureKind::HostKeyMismatch).reason(),
            "HostKeyMismatch"
        );
        assert_eq!(
            git(GitFailureKind::AuthenticationFailed).reason(),
            "AuthenticationFailed"
        );
        assert_eq!(
            WorkerError::PushRejected { attempts: 5 }.reason(),
            "PushRejected"
        );
        assert!(git(GitFailureKind::HostKeyMismatch)
            .to_string()
            .contains("knownHosts"));
    }
}
