//! Remediation, folded by the control projection: `remediation_policies` (each policy, last save
//! wins, deletion kept as a flag, its steps as JSON) and `remediation_log` (every journal entry
//! of every run and of the circuit breaker: the history the API and the engine read).

use clickhouse::Row;
use nerve_schemas::{RemediationPolicySaved, RemediationRecorded};
use serde::{Deserialize, Serialize};

/// Table: Remediation policies.
pub const REMEDIATION_POLICIES: &str = "remediation_policies";
/// Table: Every run's journal and the breaker's.
pub const REMEDIATION_LOG: &str = "remediation_log";

pub fn ddl(db: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{REMEDIATION_POLICIES} (
                policy_id String,
                name String,
                description String,
                enabled UInt8,
                dry_run UInt8,
                trigger String,
                xid_codes Array(Int32),
                severity String,
                rule_ids Array(String),
                checks Array(String),
                clusters Array(String),
                labels Array(String),
                node_ids Array(String),
                steps_json String,
                deleted UInt8,
                updated_at_ms UInt64,
                updated_by String,
                stream_seq UInt64
            ) ENGINE = ReplacingMergeTree(stream_seq)
            ORDER BY policy_id"
        ),
        // Keyed by the event, so an entry written twice (a redelivered batch) is one row.
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{REMEDIATION_LOG} (
                node_id String,
                ts_ms UInt64,
                run_id String,
                policy_id String,
                policy_name String,
                kind String,
                step Int32,
                action String,
                stage String,
                outcome String,
                task_id String,
                cause String,
                detail String,
                dry_run UInt8,
                requested_by String,
                stream_seq UInt64
            ) ENGINE = ReplacingMergeTree()
            ORDER BY (node_id, stream_seq)"
        ),
    ]
}

/// A row of `remediation_policies`; the API and the engine read policies back as this.
#[derive(Debug, Clone, Default, PartialEq, Row, Serialize, Deserialize)]
pub struct PolicyRow {
    pub policy_id: String,
    pub name: String,
    pub description: String,
    pub enabled: u8,
    pub dry_run: u8,
    pub trigger: String,
    pub xid_codes: Vec<i32>,
    pub severity: String,
    pub rule_ids: Vec<String>,
    pub checks: Vec<String>,
    pub clusters: Vec<String>,
    pub labels: Vec<String>,
    pub node_ids: Vec<String>,
    /// The ladder, `Vec<RemediationStep>` as JSON.
    pub steps_json: String,
    pub deleted: u8,
    pub updated_at_ms: u64,
    pub updated_by: String,
    pub stream_seq: u64,
}

impl PolicyRow {
    pub fn saved(e: &RemediationPolicySaved, at: u64, stream_seq: u64) -> Self {
        Self {
            policy_id: e.policy_id.clone(),
            name: e.name.clone(),
            description: e.description.clone(),
            enabled: u8::from(e.enabled),
            dry_run: u8::from(e.dry_run),
            trigger: e.trigger.clone(),
            xid_codes: e.xid_codes.clone(),
            severity: e.severity.clone(),
            rule_ids: e.rule_ids.clone(),
            checks: e.checks.clone(),
            clusters: e.clusters.clone(),
            labels: e.labels.clone(),
            node_ids: e.node_ids.clone(),
            steps_json: serde_json::to_string(&e.steps).unwrap_or_default(),
            deleted: 0,
            updated_at_ms: at,
            updated_by: e.requested_by.clone(),
            stream_seq,
        }
    }

    pub fn deleted(policy_id: &str, by: &str, at: u64, stream_seq: u64) -> Self {
        Self {
            policy_id: policy_id.to_owned(),
            deleted: 1,
            updated_at_ms: at,
            updated_by: by.to_owned(),
            stream_seq,
            ..Self::default()
        }
    }

    /// The ladder.
    pub fn steps(&self) -> Vec<nerve_schemas::RemediationStep> {
        serde_json::from_str(&self.steps_json).unwrap_or_default()
    }
}

/// A row of `remediation_log`; the API and the engine read the journal back as this.
#[derive(Debug, Clone, Default, PartialEq, Row, Serialize, Deserialize)]
pub struct JournalRow {
    pub node_id: String,
    pub ts_ms: u64,
    pub run_id: String,
    pub policy_id: String,
    pub policy_name: String,
    pub kind: String,
    pub step: i32,
    pub action: String,
    pub stage: String,
    pub outcome: String,
    pub task_id: String,
    pub cause: String,
    pub detail: String,
    pub dry_run: u8,
    pub requested_by: String,
    pub stream_seq: u64,
}

impl JournalRow {
    pub fn of(e: &RemediationRecorded, stream_seq: u64) -> Self {
        Self {
            node_id: e.envelope.node_id.clone(),
            ts_ms: e.envelope.occurred_at_ms.max(0) as u64,
            run_id: e.run_id.clone(),
            policy_id: e.policy_id.clone(),
            policy_name: e.policy_name.clone(),
            kind: e.kind.clone(),
            step: e.step,
            action: e.action.clone(),
            stage: e.stage.clone(),
            outcome: e.outcome.clone(),
            task_id: e.task_id.clone(),
            cause: e.cause.clone(),
            detail: e.detail.clone(),
            dry_run: u8::from(e.dry_run),
            requested_by: e.requested_by.clone(),
            stream_seq,
        }
    }
}

/// Checks a journal entry: on the remediation subject (no node may write its own journal), of
/// a known kind.
pub fn validate(e: &RemediationRecorded, subject: &str) -> Result<(), String> {
    if !subject.starts_with("nerve.v1.control.remediation.") {
        return Err(format!("a remediation entry does not belong on {subject}"));
    }
    const KINDS: [&str; 6] = [
        "run_started",
        "step_finished",
        "run_ended",
        "held",
        "breaker_tripped",
        "breaker_reset",
    ];
    if !KINDS.contains(&e.kind.as_str()) {
        return Err(format!("unknown remediation entry kind {:?}", e.kind));
    }
    Ok(())
}

/// The breaker's state from the journal: `(open, since_ms)` of its newest trip or reset.
pub const BREAKER: &str = "(SELECT argMax(kind, stream_seq) = 'breaker_tripped' AS open, \
        max(ts_ms) AS since_ms \
    FROM remediation_log WHERE kind IN ('breaker_tripped', 'breaker_reset'))";
