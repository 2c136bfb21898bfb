//! The rows the control projection writes; the API, the evaluator and the notifier read
//! channels, rules and labels back as these.

use clickhouse::Row;
use nerve_schemas::AlertRuleSaved;
use serde::{Deserialize, Serialize};

/// A row of `cluster_log` (every control event; the redelivery check).
#[derive(Debug, Row, Serialize)]
pub struct ClusterLogRow {
    pub node_id: String,
    pub ts: u32,
    pub ts_ms: u64,
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: uuid::Uuid,
    pub kind: String,
    pub cluster_id: String,
    pub name: String,
    pub description: String,
    pub requested_by: String,
    pub stream_seq: u64,
}

/// A row of `cluster_members`.
#[derive(Debug, Row, Serialize)]
pub struct MemberRow {
    pub cluster_id: String,
    pub node_id: String,
    pub assigned: u8,
    pub changed_at_ms: u64,
    pub requested_by: String,
    pub stream_seq: u64,
}

/// A row of `node_labels`.
#[derive(Debug, Row, Serialize, Deserialize)]
pub struct LabelsRow {
    pub node_id: String,
    pub source: String,
    pub keys: Vec<String>,
    pub labels: Vec<String>,
    pub changed_at_ms: u64,
    pub requested_by: String,
    pub stream_seq: u64,
}

/// A row of `channels`; the notifier reads channels back as this too.
#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct ChannelRow {
    pub channel_id: String,
    pub name: String,
    pub kind: String,
    pub url: String,
    pub secret: String,
    pub deleted: u8,
    pub updated_at_ms: u64,
    pub stream_seq: u64,
}

/// A row of `notification_attempts`.
#[derive(Debug, Row, Serialize)]
pub struct AttemptRow {
    pub channel_id: String,
    pub alert_id: String,
    pub attempt: u32,
    pub ok: u8,
    pub http_status: Option<i32>,
    pub error: String,
    pub latency_ms: u64,
    pub ts_ms: u64,
    pub stream_seq: u64,
}

/// A row of `alert_rules`; the API and the evaluator read rules back as this too.
#[derive(Debug, Clone, Default, PartialEq, Row, Serialize, Deserialize)]
pub struct RuleRow {
    pub rule_id: String,
    pub name: String,
    pub description: String,
    pub kind: String,
    pub metric: String,
    pub aggregate: String,
    pub op: String,
    pub threshold: f64,
    pub window_secs: u64,
    pub for_secs: u64,
    pub resolve_after_secs: u64,
    pub severity: String,
    pub clusters: Vec<String>,
    pub labels: Vec<String>,
    pub node_ids: Vec<String>,
    pub channels: Vec<String>,
    pub enabled: u8,
    pub deleted: u8,
    pub updated_at_ms: u64,
    pub updated_by: String,
    pub stream_seq: u64,
}

impl RuleRow {
    pub(super) fn saved(e: &AlertRuleSaved, at: u64, stream_seq: u64) -> Self {
        let secs = |v: i64| v.max(0) as u64;
        Self {
            rule_id: e.rule_id.clone(),
            name: e.name.clone(),
            description: e.description.clone(),
            kind: e.kind.clone(),
            metric: e.metric.clone(),
            aggregate: e.aggregate.clone(),
            op: e.op.clone(),
            threshold: e.threshold,
            window_secs: secs(e.window_secs),
            for_secs: secs(e.for_secs),
            resolve_after_secs: secs(e.resolve_after_secs),
            severity: e.severity.clone(),
            clusters: e.clusters.clone(),
            labels: e.labels.clone(),
            node_ids: e.node_ids.clone(),
            channels: e.channels.clone(),
            enabled: u8::from(e.enabled),
            deleted: 0,
            updated_at_ms: at,
            updated_by: e.requested_by.clone(),
            stream_seq,
        }
    }
}

/// A row of `silence_log`.
#[derive(Debug, Row, Serialize)]
pub struct SilenceRow {
    pub silence_id: String,
    pub kind: String,
    pub match_rule_id: String,
    pub match_node_id: String,
    pub match_cluster_id: String,
    pub starts_at_ms: u64,
    pub ends_at_ms: u64,
    pub reason: String,
    pub requested_by: String,
    pub ts_ms: u64,
    pub stream_seq: u64,
}
