//! Nodes' maintenance states: an operator cordons a node, marks it for service or returns it
//! (each change a `NodeMaintenanceChanged` on the node's maintenance subject, with who and why);
//! the state and its history are read from `maintenance_log`, now or as they were at a past
//! time. Remediating and verifying belong to remediation policies, not to operators.

use clickhouse::{Client, Row};
use nerve_projections::maintenance::{MAINTENANCE_LOG, MaintenanceRow};
use nerve_schemas::{Envelope, NodeMaintenanceChanged, subjects};
use serde::Deserialize;

use crate::AppState;
use crate::dto::Accepted;
use crate::dto::fleet::{Maintenance, MaintenanceChange, MaintenanceInfo, SetMaintenance};
use crate::error::ApiError;
use crate::time::rfc3339_ms;

/// Changes shown with a node.
const HISTORY_SHOWN: u32 = 50;
/// Longest reason kept.
pub const MAX_REASON_CHARS: usize = 500;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
}

/// Moves `node` to the state `req` names, on behalf of `by`.
pub async fn set(
    state: &AppState,
    node: &str,
    req: SetMaintenance,
    by: &str,
) -> Result<Accepted, ApiError> {
    if matches!(req.state, Maintenance::Remediating | Maintenance::Verifying) {
        return Err(bad(format!(
            "state {}: set by remediation policies; an operator cordons (cordoned), marks for \
             service (service_required) or returns a node (in_service)",
            req.state.as_str()
        )));
    }
    let reason = req.reason.trim();
    if reason.is_empty() {
        return Err(bad("reason is required: it is kept with the change"));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(bad(format!(
            "reason: at most {MAX_REASON_CHARS} characters"
        )));
    }
    crate::clusters::check_node(state, node).await?;
    let event = NodeMaintenanceChanged {
        envelope: Envelope::new::<NodeMaintenanceChanged>(node, nerve_platform::now_ms()),
        state: req.state.as_str().to_owned(),
        reason: reason.to_owned(),
        policy_id: String::new(),
        run_id: String::new(),
        requested_by: by.to_owned(),
    };
    state
        .publish(subjects::control_maintenance(node), &event)
        .await?;
    Ok(Accepted {
        event_id: event.envelope.event_id,
        cluster_id: None,
        id: None,
    })
}

/// Every node whose state ever changed, with its state now or at `at_ms` (changes that occurred
/// at or before it).
pub async fn states(
    ch: &Client,
    at_ms: Option<u64>,
) -> Result<Vec<(String, Maintenance)>, ApiError> {
    #[derive(Row, Deserialize)]
    struct Current {
        node_id: String,
        state: String,
    }
    let rows: Vec<Current> = ch
        .query(&format!(
            "SELECT node_id, argMax(state, stream_seq) AS state FROM {MAINTENANCE_LOG} \
             WHERE ts_ms <= ? GROUP BY node_id"
        ))
        .bind(at_ms.unwrap_or(u64::MAX))
        .fetch_all()
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.node_id, Maintenance::parse(&r.state).unwrap_or_default()))
        .collect())
}

/// A node's state and history, now or as they were at `at_ms`.
pub async fn info(
    ch: &Client,
    node: &str,
    at_ms: Option<u64>,
) -> Result<MaintenanceInfo, ApiError> {
    let rows: Vec<MaintenanceRow> = ch
        .query(&format!(
            "SELECT ?fields FROM {MAINTENANCE_LOG} FINAL WHERE node_id = ? AND ts_ms <= ? \
             ORDER BY stream_seq DESC LIMIT ?"
        ))
        .bind(node)
        .bind(at_ms.unwrap_or(u64::MAX))
        .bind(HISTORY_SHOWN)
        .fetch_all()
        .await?;
    let history: Vec<MaintenanceChange> = rows
        .into_iter()
        .map(|r| MaintenanceChange {
            at: rfc3339_ms(r.ts_ms),
            at_ms: r.ts_ms,
            state: Maintenance::parse(&r.state).unwrap_or_default(),
            reason: r.reason,
            policy_id: r.policy_id,
            run_id: r.run_id,
            requested_by: r.requested_by,
        })
        .collect();
    Ok(MaintenanceInfo {
        state: history.first().map(|c| c.state).unwrap_or_default(),
        since: history.first().map(|c| c.at.clone()),
        history,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The console's mirror of the event contract's states names the same states.
    #[test]
    fn the_states_mirror_the_event_contract() {
        let dto: Vec<&str> = Maintenance::ALL.iter().map(|s| s.as_str()).collect();
        let contract: Vec<&str> = nerve_schemas::MaintenanceState::ALL
            .iter()
            .map(|s| s.as_str())
            .collect();
        assert_eq!(dto, contract);
    }
}
