//! "Which event is this payload?", answered once: the fingerprint in the single-object header
//! names the released schema, and the matching Rust type decodes the body. [`AnyEvent`] holds
//! any event; the per-stream sets ([`ControlEvent`], [`TaskEvent`], [`AlertEvent`],
//! [`NodeEvent`], [`AuthEvent`], [`AuditEvent`]) hold only what belongs on one stream, so a consumer matches on variants instead
//! of event names. Each variant is named after its event type. What a set's events mean
//! together (a liveness change, a task's end) is answered here too.

use crate::codec::{DecodeError, decode, written_as};
use crate::events::{Envelope, Event, LivenessChange};
use crate::tasks::TaskEnd;
use crate::{
    AlertFired, AlertResolved, AlertRuleDeleted, AlertRuleSaved, ClusterCreated, ClusterDeleted,
    ClusterRenamed, GpuXidOccurred, HeartbeatRecorded, InventoryReported, NodeAssignedToCluster,
    NodeBecameSuspect, NodeCameBack, NodeLabelsSet, NodeMaintenanceChanged,
    NodeUnassignedFromCluster, NodeWentOffline, NotificationAttempted, NotificationChannelDeleted,
    NotificationChannelSaved, SilenceCreated, SilenceDeleted, TaskAccepted, TaskCancelRequested,
    TaskCancelled, TaskDispatched, TaskFinished, TaskOfferRefused, TaskOutputProduced, TaskQueued,
    TaskRequested, TaskStarted, TaskTimedOut, TaskUnreachable,
};
use crate::{
    AuditRecorded, EnrollmentIssued, EnrollmentRevoked, EnrollmentUsed, NodeCredentialsIssued,
    NodeRevoked, TokenIssued, TokenRevoked, TokenUsed,
};
use crate::{
    HealthCheckCompleted, RemediationPolicyDeleted, RemediationPolicySaved, RemediationRecorded,
};

/// Declares a set of events: the enum, its decoder and its accessors.
macro_rules! event_set {
    ($(#[$doc:meta])* $set:ident, $what:literal: $($ty:ident),+ $(,)?) => {
        $(#[$doc])*
        // Events are decoded one at a time and moved into a fold: boxing the large ones would
        // cost an allocation per event for nothing.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone)]
        pub enum $set {
            $($ty($ty),)+
        }

        impl $set {
            /// What the set is, for errors ("… does not belong on {WHAT}").
            pub const WHAT: &'static str = $what;

            /// Decodes `bytes` written with any released version of a member's schema.
            pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
                match written_as(bytes)?.0 {
                    $(<$ty as Event>::NAME => decode::<$ty>(bytes).map(Self::$ty),)+
                    other => Err(DecodeError::NotInSet {
                        name: other,
                        set: $what,
                    }),
                }
            }

            /// The event's name (its Avro record name).
            pub fn name(&self) -> &'static str {
                match self {
                    $(Self::$ty(_) => <$ty as Event>::NAME,)+
                }
            }

            /// The envelope the event carries.
            pub fn envelope(&self) -> &Envelope {
                match self {
                    $(Self::$ty(e) => e.envelope(),)+
                }
            }

            /// Every member's name.
            pub const NAMES: &'static [&'static str] = &[$(<$ty as Event>::NAME,)+];

            /// The member these bytes were written as, from the header alone: a consumer that
            /// wants only some members skips the others without decoding their bodies.
            pub fn member(bytes: &[u8]) -> Result<&'static str, DecodeError> {
                match written_as(bytes)?.0 {
                    name if Self::NAMES.contains(&name) => Ok(name),
                    other => Err(DecodeError::NotInSet {
                        name: other,
                        set: $what,
                    }),
                }
            }
        }

        $(
            impl From<$ty> for $set {
                fn from(e: $ty) -> Self {
                    Self::$ty(e)
                }
            }
        )+
    };
}

event_set!(
    /// Any released event.
    AnyEvent, "any stream":
    HeartbeatRecorded, InventoryReported, GpuXidOccurred, NodeBecameSuspect, NodeWentOffline,
    NodeCameBack, TaskRequested, TaskCancelRequested, TaskDispatched, TaskAccepted, TaskQueued,
    TaskStarted,
    TaskOutputProduced, TaskFinished, TaskTimedOut, TaskCancelled, TaskUnreachable,
    TaskOfferRefused,
    ClusterCreated, ClusterRenamed, ClusterDeleted, NodeAssignedToCluster,
    NodeUnassignedFromCluster, NodeLabelsSet, NodeMaintenanceChanged, NotificationChannelSaved,
    NotificationChannelDeleted, NotificationAttempted, AlertRuleSaved, AlertRuleDeleted,
    SilenceCreated, SilenceDeleted, AlertFired, AlertResolved, TokenIssued, TokenRevoked,
    TokenUsed, EnrollmentIssued, EnrollmentUsed, EnrollmentRevoked, NodeCredentialsIssued,
    NodeRevoked, AuditRecorded, RemediationPolicySaved, RemediationPolicyDeleted,
    RemediationRecorded, HealthCheckCompleted,
);

event_set!(
    /// The events stream: GPU XIDs and liveness changes.
    NodeEvent, "the events stream":
    GpuXidOccurred, NodeBecameSuspect, NodeWentOffline, NodeCameBack, HealthCheckCompleted,
);

event_set!(
    /// The tasks stream: requests, cancellations and every node's progress.
    TaskEvent, "the tasks stream":
    TaskRequested, TaskCancelRequested, TaskDispatched, TaskAccepted, TaskQueued, TaskStarted,
    TaskOutputProduced, TaskFinished, TaskTimedOut, TaskCancelled, TaskUnreachable,
    TaskOfferRefused,
);

event_set!(
    /// The control stream: clusters, membership, labels, channels, rules and silences.
    ControlEvent, "the control stream":
    ClusterCreated, ClusterRenamed, ClusterDeleted, NodeAssignedToCluster,
    NodeUnassignedFromCluster, NodeLabelsSet, NodeMaintenanceChanged, NotificationChannelSaved,
    NotificationChannelDeleted, NotificationAttempted, AlertRuleSaved, AlertRuleDeleted,
    SilenceCreated, SilenceDeleted, RemediationPolicySaved, RemediationPolicyDeleted,
    RemediationRecorded,
);

event_set!(
    /// The alerts stream: firings and resolutions.
    AlertEvent, "the alerts stream":
    AlertFired, AlertResolved,
);

event_set!(
    /// The auth stream: operator tokens issued, revoked and seen in use; enrollments and nodes'
    /// credentials.
    AuthEvent, "the auth stream":
    TokenIssued, TokenRevoked, TokenUsed, EnrollmentIssued, EnrollmentUsed, EnrollmentRevoked,
    NodeCredentialsIssued, NodeRevoked,
);

event_set!(
    /// The audit stream: every audited API call.
    AuditEvent, "the audit stream":
    AuditRecorded,
);

/// The state a liveness event sets (`suspect`, `offline`, `online`) and its body.
pub fn liveness_of(payload: &[u8]) -> Result<(&'static str, LivenessChange), String> {
    let event = NodeEvent::decode(payload).map_err(|e| e.to_string())?;
    event
        .liveness()
        .map(|(state, change)| (state, change.clone()))
        .ok_or_else(|| format!("{} is not a liveness event", event.name()))
}

impl NodeEvent {
    /// The state a liveness event sets (`suspect`, `offline`, `online`) and its body; `None`
    /// for an XID or a health check.
    pub fn liveness(&self) -> Option<(&'static str, &LivenessChange)> {
        use NodeEvent as N;
        match self {
            N::NodeBecameSuspect(e) => Some(("suspect", &e.0)),
            N::NodeWentOffline(e) => Some(("offline", &e.0)),
            N::NodeCameBack(e) => Some(("online", &e.0)),
            N::GpuXidOccurred(_) | N::HealthCheckCompleted(_) => None,
        }
    }
}

/// The end a final task event records; `None` for any other event (or bytes that do not decode).
pub fn task_end(payload: &[u8]) -> Option<TaskEnd> {
    // Most task events are progress and output: only a final one is worth decoding.
    const FINAL: [&str; 4] = [
        TaskFinished::NAME,
        TaskTimedOut::NAME,
        TaskCancelled::NAME,
        TaskUnreachable::NAME,
    ];
    if !FINAL.contains(&TaskEvent::member(payload).ok()?) {
        return None;
    }
    TaskEnd::of(TaskEvent::decode(payload).ok()?)
}

impl TaskEvent {
    /// The task the event is about.
    pub fn task_id(&self) -> &str {
        use TaskEvent as T;
        match self {
            T::TaskRequested(e) => &e.task_id,
            T::TaskCancelRequested(e) => &e.task_id,
            T::TaskDispatched(e) => &e.task_id,
            T::TaskAccepted(e) => &e.task_id,
            T::TaskQueued(e) => &e.task_id,
            T::TaskStarted(e) => &e.task_id,
            T::TaskOutputProduced(e) => &e.task_id,
            T::TaskFinished(e) => &e.task_id,
            T::TaskTimedOut(e) => &e.task_id,
            T::TaskCancelled(e) => &e.task_id,
            T::TaskUnreachable(e) => &e.task_id,
            T::TaskOfferRefused(e) => &e.task_id,
        }
    }

    /// Whether it is about the task (on a request subject) rather than one node.
    pub fn is_request(&self) -> bool {
        matches!(
            self,
            TaskEvent::TaskRequested(_) | TaskEvent::TaskCancelRequested(_)
        )
    }
}

impl TaskEnd {
    /// The end `event` records, if it is a final one.
    pub fn of(event: TaskEvent) -> Option<Self> {
        use TaskEvent as T;
        let end = |task_id: String, env: Envelope, state| TaskEnd {
            task_id,
            node_id: env.node_id,
            state,
        };
        match event {
            T::TaskFinished(e) => {
                let state = if e.succeeded() { "succeeded" } else { "failed" };
                Some(end(e.task_id, e.envelope, state))
            }
            T::TaskTimedOut(e) => Some(end(e.task_id, e.envelope, "timed_out")),
            T::TaskCancelled(e) => Some(end(e.task_id, e.envelope, "cancelled")),
            T::TaskUnreachable(e) => Some(end(e.task_id, e.envelope, "unreachable")),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::registry;

    #[test]
    fn every_released_schema_has_a_variant() {
        for r in registry().all() {
            assert!(
                AnyEvent::NAMES.contains(&r.file.name),
                "{} has no AnyEvent variant",
                r.file.name
            );
        }
    }

    #[test]
    fn the_stream_sets_partition_the_events_but_telemetry() {
        let mut seen: Vec<&str> = [
            NodeEvent::NAMES,
            TaskEvent::NAMES,
            ControlEvent::NAMES,
            AlertEvent::NAMES,
            AuthEvent::NAMES,
            AuditEvent::NAMES,
        ]
        .concat();
        seen.extend([HeartbeatRecorded::NAME, InventoryReported::NAME]);
        seen.sort_unstable();
        let mut all = AnyEvent::NAMES.to_vec();
        all.sort_unstable();
        assert_eq!(seen, all);
    }

    #[test]
    fn an_event_outside_the_set_is_named_in_the_error() {
        let hb = HeartbeatRecorded::carrying("n1", 1, vec![]);
        let bytes = crate::encode(&hb).expect("encode");
        let any = AnyEvent::decode(&bytes).expect("decode");
        assert_eq!(any.name(), "HeartbeatRecorded");
        assert_eq!(any.envelope().node_id, "n1");
        let err = ControlEvent::decode(&bytes).expect_err("not a control event");
        assert_eq!(
            err.to_string(),
            "HeartbeatRecorded does not belong on the control stream"
        );
        assert!(matches!(
            AnyEvent::decode(b"junk"),
            Err(DecodeError::TooShort(4))
        ));
        assert_eq!(AnyEvent::member(&bytes).ok(), Some("HeartbeatRecorded"));
        assert!(TaskEvent::member(&bytes).is_err());
    }
}
