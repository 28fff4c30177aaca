//! A user-facing problem: what becomes a condition reason, a message and an Event, and the
//! failure type every step of a pass returns.

use super::Error;
use crate::api::Reason;

/// Something the user should know about, with what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Condition reason.
    pub reason: Reason,
    /// What is wrong and what to do.
    pub message: String,
    /// True when only a change by the user can fix it (kstatus `Stalled`); false when retrying
    /// may (kstatus `Reconciling`).
    pub stalled: bool,
}

impl Problem {
    /// A problem that needs the user to change something.
    pub fn stalled(reason: Reason, message: impl Into<String>) -> Self {
        Problem {
            reason,
            message: message.into(),
            stalled: true,
        }
    }

    /// A problem that retrying may fix (or that waits on an action outside Kubernetes).
    pub fn retrying(reason: Reason, message: impl Into<String>) -> Self {
        Problem {
            reason,
            message: message.into(),
            stalled: false,
        }
    }

    /// The same problem with `prefix` before its message.
    pub fn context(mut self, prefix: impl std::fmt::Display) -> Self {
        self.message = format!("{prefix}{}", self.message);
        self
    }
}

impl From<&crate::tooljet::Error> for Problem {
    fn from(e: &crate::tooljet::Error) -> Self {
        Problem {
            reason: e.reason(),
            message: e.to_string(),
            stalled: !e.is_transient(),
        }
    }
}

impl From<&crate::git::worker::WorkerError> for Problem {
    fn from(e: &crate::git::worker::WorkerError) -> Self {
        let reason = e.reason();
        Problem {
            reason,
            message: e.to_string(),
            stalled: matches!(
                reason,
                Reason::HostKeyMismatch
                    | Reason::InvalidRepositoryContent
                    | Reason::UnsupportedRepositoryLayout
            ),
        }
    }
}

/// Why a step of a pass stopped: a problem the user is told about, or an infrastructure
/// failure (the Kubernetes API, the operator itself) that fails the reconcile and is retried.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Reported as conditions and an Event.
    #[error("{}: {}", .0.reason, .0.message)]
    Problem(Problem),
    /// Fails the reconcile; nothing is reported.
    #[error(transparent)]
    Infra(#[from] Error),
}

impl From<Problem> for Failure {
    fn from(p: Problem) -> Self {
        Failure::Problem(p)
    }
}

impl From<kube::Error> for Failure {
    /// Requests the API server refuses for what they are (RBAC, admission, a name too long,
    /// a quota) are reported as a condition, since retrying alone will not help; the rest
    /// (connection, 5xx, conflicts) fail the reconcile and are retried.
    fn from(e: kube::Error) -> Self {
        match &e {
            kube::Error::Api(s) if matches!(s.code, 400 | 403 | 422) => {
                Failure::Problem(Problem::retrying(
                    Reason::KubernetesAPIRefused,
                    format!(
                        "the Kubernetes API refused a request ({} {}: {}); check the operator's RBAC (see the chart's ClusterRoles), admission policies and quotas in this namespace, and names (at most 253 characters, DNS-style); retried with backoff",
                        s.code,
                        s.reason,
                        crate::api::bounded(s.message.clone(), 512)
                    ),
                ))
            }
            _ => Failure::Infra(Error::Kube(e)),
        }
    }
}

impl From<&crate::tooljet::Error> for Failure {
    fn from(e: &crate::tooljet::Error) -> Self {
        Failure::Problem(e.into())
    }
}

impl From<crate::tooljet::Error> for Failure {
    fn from(e: crate::tooljet::Error) -> Self {
        Failure::Problem((&e).into())
    }
}

impl From<crate::git::worker::WorkerError> for Failure {
    fn from(e: crate::git::worker::WorkerError) -> Self {
        Failure::Problem((&e).into())
    }
}
