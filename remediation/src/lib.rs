//! Remediation: policies that act on what the agents see. A policy matches a node condition —
//! XID codes or severity, a GPU verdict, an alert rule firing, a failed health check — within a
//! scope (clusters, labels, nodes) and runs a ladder of steps on the node: notify, cordon, run a
//! task (the operator's drain hook, a GPU reset, a reboot), run a health check, wait
//! ([`ladder`]). Each step's outcome comes from the task ledger; a failed repair escalates to
//! the next, and the last rung is `service_required`. The circuit breaker ([`breaker`]) bounds
//! how many nodes enter remediation per window; a dry run records what a policy would do.
//! Policies, runs and the breaker are control events (`RemediationPolicySaved`,
//! `RemediationRecorded`); nodes' states are `NodeMaintenanceChanged`. The engine ([`run`])
//! runs in the `nerve project` holding its lease; [`defaults`] are the policies it starts with.

pub mod breaker;
pub mod defaults;
mod engine;
pub mod ladder;
mod shared;
pub mod trigger;

pub use engine::{RemediationError, run};
pub use shared::Shared;
