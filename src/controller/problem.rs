//! A user-facing problem: what becomes a condition reason, a message and an Event.

/// Something the user should know about, with what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// CamelCase condition reason.
    pub reason: String,
    /// What is wrong and what to do.
    pub message: String,
    /// True when only a change by the user can fix it (kstatus `Stalled`); false when retrying
    /// may (kstatus `Reconciling`).
    pub stalled: bool,
}

impl Problem {
    /// A problem that needs the user to change something.
    pub fn stalled(reason: &str, message: impl Into<String>) -> Self {
        Problem {
            reason: reason.into(),
            message: message.into(),
            stalled: true,
        }
    }

    /// A problem that retrying may fix (or that waits on an action outside Kubernetes).
    pub fn retrying(reason: &str, message: impl Into<String>) -> Self {
        Problem {
            reason: reason.into(),
            message: message.into(),
            stalled: false,
        }
    }
}
