//! kstatus-style conditions: `Ready` summarises, `Reconciling` and `Stalled` are present only
//! while abnormal, so `kubectl wait --for=condition=Ready` and Argo CD health checks work.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Reason;

/// One status condition, shaped like `metav1.Condition`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// CamelCase machine-readable reason.
    pub reason: String,
    /// Human-readable message saying what is wrong and what to do.
    pub message: String,
    /// When the status last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// Generation of the object this condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Condition type names.
pub mod types {
    pub const READY: &str = "Ready";
    pub const RECONCILING: &str = "Reconciling";
    pub const STALLED: &str = "Stalled";
    pub const DEPLOY_KEY_READY: &str = "DeployKeyReady";
    /// HTTPS repositories: the credentials Secret holds a usable token or GitHub App (there is
    /// no deploy key then).
    pub const CREDENTIALS_READY: &str = "CredentialsReady";
    pub const SIGNING_KEY_READY: &str = "SigningKeyReady";
    pub const REPOSITORY_REACHABLE: &str = "RepositoryReachable";
    pub const TOOLJET_REACHABLE: &str = "ToolJetReachable";
    pub const SYNCED: &str = "Synced";
    pub const UPDATE_AVAILABLE: &str = "UpdateAvailable";
    pub const CONSTANTS_MISSING: &str = "WorkspaceConstantsMissing";
}

/// Longest condition message: messages quote git, ssh and ToolJet, whose text is not ours to
/// bound, and every condition lands in the object etcd stores.
pub const MAX_MESSAGE: usize = 4096;

/// At most `max` bytes of `s`, cut at a character boundary, with an ellipsis when cut.
pub fn bounded(s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while cut > 0 && !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}

impl Condition {
    /// A condition with the given truth value.
    pub fn new(type_: &str, status: bool, reason: Reason, message: impl Into<String>) -> Self {
        Condition {
            type_: type_.to_string(),
            status: if status { "True" } else { "False" }.to_string(),
            reason: reason.as_str().to_string(),
            message: bounded(message.into(), MAX_MESSAGE),
            last_transition_time: None,
            observed_generation: None,
        }
    }

    /// The reason, when it is one this operator writes.
    pub fn reason(&self) -> Option<Reason> {
        Reason::parse(&self.reason)
    }

    /// Whether the condition's status is `True`.
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Merges freshly computed conditions into the previous ones: `lastTransitionTime` moves only
/// when the status flips, conditions not in `next` are dropped, order follows `next`.
pub fn merge(
    previous: &[Condition],
    next: Vec<Condition>,
    generation: Option<i64>,
    now: &str,
) -> Vec<Condition> {
    next.into_iter()
        .map(|mut c| {
            let kept = find(previous, &c.type_)
                .filter(|p| p.status == c.status)
                .and_then(|p| p.last_transition_time.clone());
            c.last_transition_time = Some(kept.unwrap_or_else(|| now.to_string()));
            c.observed_generation = generation;
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let prev = merge(
            &[],
            vec![Condition::new("Ready", false, Reason::Ready, "")],
            Some(1),
            "t1",
        );
        let same = merge(
            &prev,
            vec![Condition::new(
                "Ready",
                false,
                Reason::Connected,
                "other reason",
            )],
            Some(2),
            "t2",
        );
        assert_eq!(same[0].last_transition_time.as_deref(), Some("t1"));
        assert_eq!(same[0].observed_generation, Some(2));
        let flipped = merge(
            &same,
            vec![Condition::new("Ready", true, Reason::UpToDate, "")],
            Some(2),
            "t3",
        );
        assert_eq!(flipped[0].last_transition_time.as_deref(), Some("t3"));
    }

    #[test]
    fn messages_are_bounded_at_a_character_boundary() {
        let long = "é".repeat(MAX_MESSAGE);
        let c = Condition::new("Ready", false, Reason::GitError, long);
        assert!(c.message.len() <= MAX_MESSAGE + '…'.len_utf8());
        assert!(c.message.ends_with('…'));
        assert_eq!(bounded("short".into(), 3), "sho…");
        assert_eq!(bounded("ab".into(), 3), "ab");
    }

    #[test]
    fn absent_conditions_are_dropped() {
        let prev = merge(
            &[],
            vec![
                Condition::new("Ready", false, Reason::Ready, ""),
                Condition::new("Stalled", true, Reason::Ready, ""),
            ],
            None,
            "t1",
        );
        let next = merge(
            &prev,
            vec![Condition::new("Ready", true, Reason::Ready, "")],
            None,
            "t2",
        );
        assert_eq!(next.len(), 1);
        assert!(find(&next, "Stalled").is_none());
    }
}
