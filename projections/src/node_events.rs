//! Node events projection: `GpuXidOccurred`, `HealthCheckCompleted`, `NodeBecameSuspect`,
//! `NodeWentOffline` and `NodeCameBack` (the events stream) → `node_events` (history, MergeTree by month, ORDER BY
//! (node_id, ts)) and `node_liveness` (each node's current liveness, ReplacingMergeTree keyed by
//! node id, versioned by stream sequence so the last judgement wins).

use clickhouse::{Client, Row};
use nerve_schemas::GpuXidOccurred;
use serde::{Deserialize, Serialize};

use crate::runner::{EventKey, Positioned, Projection, validate_envelope};

/// Durable consumer name.
pub const NAME: &str = "proj_node_events";

/// Table: Every XID and liveness change (history).
pub const NODE_EVENTS: &str = "node_events";
/// Table: Each node's current liveness.
pub const NODE_LIVENESS: &str = "node_liveness";

pub fn ddl(db: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{NODE_EVENTS} (
                node_id String,
                ts DateTime('UTC'),
                ts_ms UInt64,
                event_id UUID,
                kind String,
                severity String,
                summary String,
                gpu_index Int32,
                gpu_uuid String,
                xid Int64,
                liveness String,
                previous_liveness String,
                last_heartbeat_at_ms UInt64,
                silent_for_ms UInt64,
                detector String,
                stream_seq UInt64
            ) ENGINE = MergeTree()
            PARTITION BY toYYYYMM(ts)
            ORDER BY (node_id, ts)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{NODE_LIVENESS} (
                node_id String,
                state String,
                changed_at_ms UInt64,
                last_heartbeat_at_ms UInt64,
                stream_seq UInt64
            ) ENGINE = ReplacingMergeTree(stream_seq)
            ORDER BY node_id"
        ),
    ]
}

/// Folds node events.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeEventsProjection;

/// A validated node event.
#[derive(Debug)]
pub enum NodeEvent {
    Xid(GpuXidOccurred),
    Health(nerve_schemas::HealthCheckCompleted),
    Liveness {
        state: &'static str,
        change: nerve_schemas::LivenessChange,
    },
}

/// A decoded node event with its parsed id.
#[derive(Debug)]
pub struct Decoded {
    pub event: NodeEvent,
    pub event_id: uuid::Uuid,
}

impl NodeEvent {
    fn envelope(&self) -> &nerve_schemas::Envelope {
        match self {
            NodeEvent::Xid(x) => &x.envelope,
            NodeEvent::Health(h) => &h.envelope,
            NodeEvent::Liveness { change, .. } => &change.envelope,
        }
    }
}

fn decode_any(payload: &[u8]) -> Result<NodeEvent, String> {
    let event = nerve_schemas::NodeEvent::decode(payload).map_err(|e| e.to_string())?;
    if let Some((state, change)) = event.liveness() {
        let change = change.clone();
        return Ok(NodeEvent::Liveness { state, change });
    }
    match event {
        nerve_schemas::NodeEvent::GpuXidOccurred(x) => Ok(NodeEvent::Xid(x)),
        nerve_schemas::NodeEvent::HealthCheckCompleted(h) => Ok(NodeEvent::Health(h)),
        other => Err(format!(
            "{} is neither an XID nor a liveness change",
            other.name()
        )),
    }
}

impl Projection for NodeEventsProjection {
    type Item = Decoded;

    fn name(&self) -> &'static str {
        NAME
    }

    fn stream(&self) -> &'static str {
        nerve_ingest::EVENTS_STREAM
    }

    fn decode(&self, subject: &str, payload: &[u8], published_ms: i64) -> Result<Decoded, String> {
        let event = decode_any(payload)?;
        let kind_ok = match &event {
            NodeEvent::Xid(_) => subject.starts_with("nerve.v1.events.gpu_xid."),
            NodeEvent::Health(_) => subject.starts_with("nerve.v1.events.health."),
            NodeEvent::Liveness { .. } => subject.starts_with("nerve.v1.events.liveness."),
        };
        if !kind_ok {
            return Err(format!("event does not belong on subject {subject}"));
        }
        let event_id = validate_envelope(event.envelope(), subject, published_ms)?;
        Ok(Decoded { event, event_id })
    }

    fn key(item: &Decoded) -> EventKey<'_> {
        EventKey::of(item.event.envelope())
    }

    fn tables(&self) -> &'static [&'static str] {
        &[NODE_LIVENESS, NODE_EVENTS]
    }

    fn append_only_table(&self) -> Option<&'static str> {
        Some(NODE_EVENTS)
    }

    async fn write(
        &self,
        ch: &Client,
        items: &[Positioned<Decoded>],
    ) -> Result<(), clickhouse::error::Error> {
        let mut liveness = ch.insert::<LivenessRow>(NODE_LIVENESS).await?;
        let mut any = false;
        for p in items {
            if let NodeEvent::Liveness { state, change } = &p.item.event {
                any = true;
                liveness
                    .write(&LivenessRow {
                        node_id: change.envelope.node_id.clone(),
                        state: (*state).to_owned(),
                        changed_at_ms: change.envelope.occurred_at_ms.max(0) as u64,
                        last_heartbeat_at_ms: change.last_heartbeat_at_ms.max(0) as u64,
                        stream_seq: p.stream_seq,
                    })
                    .await?;
            }
        }
        if any {
            liveness.end().await?;
        }
        // Last: an event found here had everything above written.
        let mut insert = ch.insert::<NodeEventRow>(NODE_EVENTS).await?;
        for p in items {
            insert.write(&NodeEventRow::new(p)).await?;
        }
        insert.end().await
    }
}

/// A row of `node_events`.
#[derive(Debug, Row, Serialize, Deserialize)]
pub struct NodeEventRow {
    pub node_id: String,
    pub ts: u32,
    pub ts_ms: u64,
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: uuid::Uuid,
    pub kind: String,
    pub severity: String,
    pub summary: String,
    pub gpu_index: i32,
    pub gpu_uuid: String,
    pub xid: i64,
    pub liveness: String,
    pub previous_liveness: String,
    pub last_heartbeat_at_ms: u64,
    pub silent_for_ms: u64,
    pub detector: String,
    pub stream_seq: u64,
}

impl NodeEventRow {
    fn new(p: &Positioned<Decoded>) -> Self {
        let env = p.item.event.envelope();
        let base = Self {
            node_id: env.node_id.clone(),
            ts: (env.occurred_at_ms / 1000).clamp(0, u32::MAX as i64) as u32,
            ts_ms: env.occurred_at_ms.max(0) as u64,
            event_id: p.item.event_id,
            kind: env.schema_name.clone(),
            severity: String::new(),
            summary: String::new(),
            gpu_index: -1,
            gpu_uuid: String::new(),
            xid: 0,
            liveness: String::new(),
            previous_liveness: String::new(),
            last_heartbeat_at_ms: 0,
            silent_for_ms: 0,
            detector: String::new(),
            stream_seq: p.stream_seq,
        };
        match &p.item.event {
            NodeEvent::Xid(x) => Self {
                severity: x.severity.clone(),
                summary: format!("GPU {} XID {}: {}", x.gpu_index, x.xid, x.meaning),
                gpu_index: x.gpu_index,
                gpu_uuid: x.gpu_uuid.clone(),
                xid: x.xid,
                ..base
            },
            NodeEvent::Health(h) => Self {
                severity: match h.verdict.as_str() {
                    "fail" => "critical",
                    "warn" | "unavailable" => "warning",
                    _ => "info",
                }
                .to_owned(),
                summary: {
                    let reasons: Vec<&str> = h.reasons.iter().map(|r| r.message.as_str()).collect();
                    match reasons.is_empty() {
                        true => format!("health check {}: {}", h.check, h.verdict),
                        false => format!(
                            "health check {}: {}: {}",
                            h.check,
                            h.verdict,
                            reasons.join("; ")
                        ),
                    }
                },
                detector: h.check.clone(),
                ..base
            },
            NodeEvent::Liveness { state, change } => Self {
                severity: match *state {
                    "offline" => "critical",
                    "suspect" => "warning",
                    _ => "info",
                }
                .to_owned(),
                summary: match *state {
                    "online" => format!("back after being {}", change.previous_state),
                    _ => format!(
                        "{state}: no heartbeat for {} s ({} missed)",
                        change.silent_for_ms / 1000,
                        change.missed_heartbeats
                    ),
                },
                liveness: (*state).to_owned(),
                previous_liveness: change.previous_state.clone(),
                last_heartbeat_at_ms: change.last_heartbeat_at_ms.max(0) as u64,
                silent_for_ms: change.silent_for_ms.max(0) as u64,
                detector: change.detector.clone(),
                ..base
            },
        }
    }
}

/// A row of `node_liveness`.
#[derive(Debug, Row, Serialize)]
pub struct LivenessRow {
    pub node_id: String,
    pub state: String,
    pub changed_at_ms: u64,
    pub last_heartbeat_at_ms: u64,
    pub stream_seq: u64,
}
