//! The end of every pass: conditions computed and merged without IO, one server-side-apply
//! status patch with one field manager, then the Events for what changed; and when to look
//! again.

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;

use super::{Context, Error, Problem, FIELD_MANAGER};
use crate::api::{self, types, Condition, Reason};

/// An Event to publish once the status is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Normal or Warning.
    pub type_: EventType,
    /// Event reason.
    pub reason: Reason,
    /// Event note.
    pub message: String,
}

impl Note {
    /// A Normal Event.
    pub fn normal(reason: Reason, message: impl Into<String>) -> Self {
        Note {
            type_: EventType::Normal,
            reason,
            message: message.into(),
        }
    }

    /// A Warning Event.
    pub fn warning(reason: Reason, message: impl Into<String>) -> Self {
        Note {
            type_: EventType::Warning,
            reason,
            message: message.into(),
        }
    }
}

/// Reasons that are a resting state the user chose, not something going wrong: no
/// `Reconciling`/`Stalled` condition, and the interval (not a backoff) until the next look.
pub fn is_resting(reason: Reason) -> bool {
    matches!(reason, Reason::Disabled | Reason::GitSyncConfigDisabled)
}

/// The kstatus condition of a problem: `Stalled` when only the user can fix it,
/// `Reconciling` when retrying may, none for a resting state.
pub fn abnormal(p: &Problem) -> Option<Condition> {
    if is_resting(p.reason) {
        return None;
    }
    let type_ = if p.stalled {
        types::STALLED
    } else {
        types::RECONCILING
    };
    Some(Condition::new(type_, true, p.reason, &p.message))
}

/// The Event for a change of the Ready condition's status or reason: Normal when it turns
/// True or the reason is one of `normal`, Warning otherwise.
pub fn ready_transition(prev: &[Condition], next: &[Condition], normal: &[Reason]) -> Option<Note> {
    let new = api::find(next, types::READY)?;
    let old = api::find(prev, types::READY);
    if old.is_some_and(|o| o.status == new.status && o.reason == new.reason) {
        return None;
    }
    let reason = new.reason().unwrap_or(Reason::InternalError);
    let type_ = if new.is_true() || normal.contains(&reason) {
        EventType::Normal
    } else {
        EventType::Warning
    };
    Some(Note {
        type_,
        reason,
        message: new.message.clone(),
    })
}

/// The one write of a pass: the status by server-side apply, then the Events.
pub async fn write<K>(
    ctx: &Context,
    obj: &K,
    status: &impl Serialize,
    notes: &[Note],
) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    write_removing(ctx, obj, status, notes, &[]).await
}

/// [`write`], first removing the status objects named in `remove`. Server-side apply on
/// Kubernetes 1.20 leaves an object the manager stops applying behind as a husk that fails
/// the schema (its required fields removed, the object itself kept), so an object that goes
/// away is removed by a merge patch first.
pub async fn write_removing<K>(
    ctx: &Context,
    obj: &K,
    status: &impl Serialize,
    notes: &[Note],
    remove: &[&str],
) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    if !remove.is_empty() {
        let nulls: serde_json::Map<String, serde_json::Value> = remove
            .iter()
            .map(|k| (k.to_string(), serde_json::Value::Null))
            .collect();
        let patch = serde_json::json!({ "status": nulls });
        api.patch_status(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    for n in notes {
        ctx.event(obj, n.type_, n.reason, &n.message).await;
    }
    Ok(())
}

/// When to look again: the interval when healthy, stalled or resting, a backoff that doubles
/// with the time already spent failing otherwise. Derived from the Ready condition, so no
/// state is kept.
pub fn next_check(
    problem: Option<&Problem>,
    failing_for: Duration,
    interval: Duration,
    min: Duration,
    max: Duration,
) -> Duration {
    match problem {
        None => interval,
        Some(p) if p.stalled || is_resting(p.reason) => interval,
        // Never panics: `clamp` needs lower <= upper, whatever the options say.
        Some(_) => failing_for.clamp(min, max.min(interval.max(min)).max(min)),
    }
}

/// Now, RFC 3339 in UTC, second precision.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// How long the Ready condition has been False.
pub fn failing_for(prev: &[Condition]) -> Duration {
    api::find(prev, types::READY)
        .filter(|c| !c.is_true())
        .and_then(|c| c.last_transition_time.as_deref())
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| {
            let secs = jiff::Timestamp::now().duration_since(t).as_secs();
            Duration::from_secs(u64::try_from(secs).unwrap_or(0))
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_time_failing_and_is_bounded() {
        let p = Problem::retrying(Reason::AwaitingDeployKey, "");
        let (min, max, iv) = (
            Duration::from_secs(5),
            Duration::from_secs(300),
            Duration::from_secs(600),
        );
        assert_eq!(next_check(Some(&p), Duration::ZERO, iv, min, max), min);
        assert_eq!(
            next_check(Some(&p), Duration::from_secs(40), iv, min, max),
            Duration::from_secs(40)
        );
        assert_eq!(
            next_check(Some(&p), Duration::from_secs(4000), iv, min, max),
            max
        );
        assert_eq!(next_check(None, Duration::ZERO, iv, min, max), iv);
        let s = Problem::stalled(Reason::InvalidURL, "");
        assert_eq!(next_check(Some(&s), Duration::ZERO, iv, min, max), iv);
        let d = Problem::retrying(Reason::GitSyncConfigDisabled, "");
        assert_eq!(next_check(Some(&d), Duration::ZERO, iv, min, max), iv);
        // Options with min above max, and extreme times, do not panic.
        assert_eq!(next_check(Some(&p), Duration::MAX, iv, max, min), max);
        assert_eq!(
            next_check(Some(&p), Duration::MAX, Duration::MAX, min, max),
            max
        );
    }

    #[test]
    fn ready_transitions_make_one_event() {
        let before = vec![Condition::new(
            types::READY,
            false,
            Reason::AwaitingDeployKey,
            "add it",
        )];
        let after = vec![Condition::new(types::READY, true, Reason::Ready, "ok")];
        let n = ready_transition(&before, &after, &[]).unwrap();
        assert_eq!((n.type_, n.reason), (EventType::Normal, Reason::Ready));
        assert_eq!(ready_transition(&after, &after, &[]), None);
        let n = ready_transition(&[], &before, &[]).unwrap();
        assert_eq!(n.type_, EventType::Warning);
        let n = ready_transition(&[], &before, &[Reason::AwaitingDeployKey]).unwrap();
        assert_eq!(n.type_, EventType::Normal);
    }

    #[test]
    fn resting_states_are_neither_stalled_nor_reconciling() {
        assert!(abnormal(&Problem::retrying(Reason::Disabled, "")).is_none());
        let c = abnormal(&Problem::stalled(Reason::InvalidURL, "m")).unwrap();
        assert_eq!(c.type_, types::STALLED);
        let c = abnormal(&Problem::retrying(Reason::AwaitingDeployKey, "m")).unwrap();
        assert_eq!(c.type_, types::RECONCILING);
    }
}
