//! Nodes' maintenance states, folded by the control projection: `maintenance_log` keeps every
//! `NodeMaintenanceChanged` (the history, with who and why); a node's current state is its
//! newest entry ([`CURRENT`]), so there is no second table to keep in step. Changes are rare
//! (operators and remediation policies make them), so folding at query time stays cheap.

use clickhouse::Row;
use nerve_schemas::NodeMaintenanceChanged;
use serde::{Deserialize, Serialize};

/// Table: Every maintenance change (history and current state).
pub const MAINTENANCE_LOG: &str = "maintenance_log";

pub fn ddl(db: &str) -> String {
    // Keyed by the event, so a change written twice (a redelivered batch) is one row.
    format!(
        "CREATE TABLE IF NOT EXISTS {db}.{MAINTENANCE_LOG} (
            node_id String,
            state String,
            reason String,
            policy_id String,
            run_id String,
            requested_by String,
            ts_ms UInt64,
            stream_seq UInt64
        ) ENGINE = ReplacingMergeTree()
        ORDER BY (node_id, stream_seq)"
    )
}

/// (node_id, maintenance, maintenance_since_ms): every node whose state ever changed, with its
/// newest state and when it was entered. A node with no row is in service.
pub const CURRENT: &str = "(SELECT node_id, argMax(state, stream_seq) AS maintenance, \
        max(ts_ms) AS maintenance_since_ms \
    FROM maintenance_log GROUP BY node_id)";

/// A row of `maintenance_log`; the API reads a node's history back as this.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct MaintenanceRow {
    pub node_id: String,
    pub state: String,
    pub reason: String,
    pub policy_id: String,
    pub run_id: String,
    pub requested_by: String,
    pub ts_ms: u64,
    pub stream_seq: u64,
}

impl MaintenanceRow {
    pub fn of(e: &NodeMaintenanceChanged, stream_seq: u64) -> Self {
        Self {
            node_id: e.envelope.node_id.clone(),
            state: e.state.clone(),
            reason: e.reason.clone(),
            policy_id: e.policy_id.clone(),
            run_id: e.run_id.clone(),
            requested_by: e.requested_by.clone(),
            ts_ms: e.envelope.occurred_at_ms.max(0) as u64,
            stream_seq,
        }
    }
}

/// Checks what a fold may rely on: a known state, on the node's maintenance subject (no other
/// subject, and the node's own one least of all, may change it).
pub fn validate(e: &NodeMaintenanceChanged, subject: &str) -> Result<(), String> {
    if !subject.starts_with("nerve.v1.control.maintenance.") {
        return Err(format!("a maintenance change does not belong on {subject}"));
    }
    match nerve_schemas::MaintenanceState::parse(&e.state) {
        Some(_) if !e.state.is_empty() => Ok(()),
        _ => Err(format!("unknown maintenance state {:?}", e.state)),
    }
}
