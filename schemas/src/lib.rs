//! Nerve's event contract: the Avro schemas in `schemas/avro/`, the Rust types that follow them,
//! every NATS subject, and the single-object codec that turns one into the other.
//!
//! The `.avsc` files are the source of truth. A released schema file is never edited: a change is a
//! new `<event>.v<N+1>.avsc`, registered in [`registry`], and the compatibility test proves that old
//! readers can read new events and new readers can read old ones. This crate has no async runtime
//! and compiles to wasm, so the console can decode events too.

/// `impl Event` for an event type whose envelope is its `envelope` field.
macro_rules! event {
    ($name:ident, $version:literal) => {
        impl $crate::events::Event for $name {
            const NAME: &'static str = stringify!($name);
            const VERSION: i32 = $version;
            fn envelope(&self) -> &$crate::events::Envelope {
                &self.envelope
            }
        }
    };
}

pub mod alerts;
pub mod any;
pub mod codec;
pub mod control;
pub mod events;
pub mod registry;
pub mod remediation;
pub mod subjects;
pub mod tasks;
pub mod trust;

pub use alerts::{
    AlertFired, AlertResolved, AlertRuleDeleted, AlertRuleSaved, SilenceCreated, SilenceDeleted,
};
pub use any::{
    AlertEvent, AnyEvent, AuditEvent, AuthEvent, ControlEvent, NodeEvent, TaskEvent, liveness_of,
    task_end,
};
pub use codec::{DecodeError, EncodeError, decode, encode, envelope_of, written_as};
pub use control::{
    ClusterCreated, ClusterDeleted, ClusterRenamed, Label, MaintenanceState, NodeAssignedToCluster,
    NodeLabelsSet, NodeMaintenanceChanged, NodeUnassignedFromCluster, NotificationAttempted,
    NotificationChannelDeleted, NotificationChannelSaved,
};
pub use events::{
    BlockDevice, CollectorError, CpuCache, CpuInfo, Dimm, Disk, Envelope, Event, GpuDevice,
    GpuHealthReason, GpuSample, GpuXidOccurred, HeartbeatRecorded, InventoryReported,
    LivenessChange, Location, MemoryInfo, MigDevice, NetInterface, NodeBecameSuspect, NodeCameBack,
    NodeWentOffline, SystemInfo,
};
pub use remediation::{
    HealthCheckCompleted, HealthCheckReason, RemediationPolicyDeleted, RemediationPolicySaved,
    RemediationRecorded, RemediationStep,
};
pub use tasks::{
    EnvVar, TaskAccepted, TaskCancelRequested, TaskCancelled, TaskDispatched, TaskEnd,
    TaskFinished, TaskOfferRefused, TaskOutputProduced, TaskQueued, TaskRequested, TaskSelector,
    TaskSpec, TaskStarted, TaskTimedOut, TaskUnreachable,
};
pub use trust::{
    AuditRecorded, EnrollmentIssued, EnrollmentRevoked, EnrollmentUsed, NodeCredentialsIssued,
    NodeRevoked, TokenIssued, TokenRevoked, TokenUsed,
};
