//! Tasks projection: the tasks stream → `tasks` (one row per request), `task_nodes` (the ledger:
//! each expected node's state, ReplacingMergeTree keyed by (task, node) and versioned by state
//! rank then stream sequence, so a later step never loses to an earlier one), `task_output`
//! (output chunks, readable per node in order; written before the ledger, so a final state in
//! the ledger means its output is readable) and `task_events` (every event, the history; also
//! the redelivery check, so it is written last).

use clickhouse::{Client, Row};
pub use nerve_schemas::TaskEvent;
use serde::{Deserialize, Serialize};

use crate::runner::{EventKey, Positioned, Projection, insert_rows, validate_envelope};

/// Durable consumer name.
pub const NAME: &str = "proj_tasks";

/// Table: One row per task request.
pub const TASKS: &str = "tasks";
/// Table: The ledger: each expected node's state per task.
pub const TASK_NODES: &str = "task_nodes";
/// Table: Output chunks per task and node.
pub const TASK_OUTPUT: &str = "task_output";
/// Table: Every task event (history).
pub const TASK_EVENTS: &str = "task_events";

pub fn ddl(db: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{TASKS} (
                task_id String,
                requested_at DateTime('UTC'),
                requested_at_ms UInt64,
                requested_by String,
                kind String,
                spec_json String,
                selector_json String,
                expected UInt32,
                batch_size UInt32,
                accept_deadline_secs UInt32,
                stream_seq UInt64
            ) ENGINE = ReplacingMergeTree(stream_seq)
            ORDER BY task_id"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{TASK_NODES} (
                task_id String,
                node_id String,
                state String,
                attempts UInt32,
                exit_code Nullable(Int32),
                signal Nullable(Int32),
                duration_ms UInt64,
                output_bytes UInt64,
                truncated UInt8,
                error String,
                updated_at_ms UInt64,
                version UInt64
            ) ENGINE = ReplacingMergeTree(version)
            ORDER BY (task_id, node_id)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{TASK_OUTPUT} (
                task_id String,
                node_id String,
                seq UInt64,
                stream String,
                data String,
                ts_ms UInt64,
                stream_seq UInt64
            ) ENGINE = MergeTree()
            ORDER BY (task_id, node_id, seq)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{TASK_EVENTS} (
                task_id String,
                node_id String,
                ts DateTime('UTC'),
                ts_ms UInt64,
                event_id UUID,
                kind String,
                stream_seq UInt64
            ) ENGINE = MergeTree()
            PARTITION BY toYYYYMM(ts)
            ORDER BY (task_id, node_id, ts)"
        ),
    ]
}

/// A validated task event.
#[derive(Debug)]
pub struct Decoded {
    pub event: TaskEvent,
    pub event_id: uuid::Uuid,
}

/// Folds task events.
#[derive(Debug, Clone, Copy, Default)]
pub struct TaskProjection;

impl Projection for TaskProjection {
    type Item = Decoded;

    fn name(&self) -> &'static str {
        NAME
    }

    fn stream(&self) -> &'static str {
        nerve_ingest::TASKS_STREAM
    }

    fn decode(&self, subject: &str, payload: &[u8], published_ms: i64) -> Result<Decoded, String> {
        let event = TaskEvent::decode(payload).map_err(|e| e.to_string())?;
        let on_request_subject = subject.starts_with("nerve.v1.tasks.request.");
        if event.is_request() != on_request_subject {
            return Err(format!("event does not belong on subject {subject}"));
        }
        if !nerve_schemas::subjects::is_valid_node_id(event.task_id()) {
            return Err(format!("invalid task_id {:?}", event.task_id()));
        }
        if event.is_request() && event.envelope().node_id != event.task_id() {
            return Err("a task request's envelope must name its task".into());
        }
        let event_id = validate_envelope(event.envelope(), subject, published_ms)?;
        Ok(Decoded { event, event_id })
    }

    fn key(item: &Decoded) -> EventKey<'_> {
        EventKey::of(item.event.envelope())
    }

    fn tables(&self) -> &'static [&'static str] {
        &[TASKS, TASK_NODES, TASK_OUTPUT, TASK_EVENTS]
    }

    fn append_only_table(&self) -> Option<&'static str> {
        Some(TASK_EVENTS)
    }

    async fn write(
        &self,
        ch: &Client,
        items: &[Positioned<Decoded>],
    ) -> Result<(), clickhouse::error::Error> {
        let mut tasks = Vec::new();
        let mut nodes = Vec::new();
        let mut output = Vec::new();
        for p in items {
            let seq = p.stream_seq;
            let env = p.item.event.envelope();
            let at = env.occurred_at_ms.max(0) as u64;
            let node = |state: &str, rank: u64| NodeRow {
                task_id: p.item.event.task_id().to_owned(),
                node_id: env.node_id.clone(),
                state: state.to_owned(),
                attempts: 0,
                exit_code: None,
                signal: None,
                duration_ms: 0,
                output_bytes: 0,
                truncated: 0,
                error: String::new(),
                updated_at_ms: at,
                version: (rank << 40) | (seq & ((1 << 40) - 1)),
            };
            match &p.item.event {
                TaskEvent::TaskRequested(t) => {
                    tasks.push(TaskRow {
                        task_id: t.task_id.clone(),
                        requested_at: (at / 1000).min(u64::from(u32::MAX)) as u32,
                        requested_at_ms: at,
                        requested_by: t.requested_by.clone(),
                        kind: t.spec.kind.clone(),
                        spec_json: serde_json::to_string(&t.spec).unwrap_or_default(),
                        selector_json: serde_json::to_string(&t.selector).unwrap_or_default(),
                        expected: t.expected_nodes.len().min(u32::MAX as usize) as u32,
                        batch_size: t.batch_size.max(0) as u32,
                        accept_deadline_secs: t.accept_deadline_secs.max(0) as u32,
                        stream_seq: seq,
                    });
                    for n in &t.expected_nodes {
                        nodes.push(NodeRow {
                            node_id: n.clone(),
                            ..node("expected", 0)
                        });
                    }
                }
                // A refused offer changes no node's state: the event itself (in `task_events`)
                // is the report.
                TaskEvent::TaskCancelRequested(_) | TaskEvent::TaskOfferRefused(_) => {}
                TaskEvent::TaskDispatched(d) => nodes.push(NodeRow {
                    attempts: d.attempt.max(0) as u32,
                    ..node("dispatched", 1)
                }),
                TaskEvent::TaskAccepted(_) => nodes.push(node("accepted", 2)),
                // The agent sends it after `TaskAccepted`, so at the same rank it wins by
                // sequence; `TaskStarted` outranks it.
                TaskEvent::TaskQueued(_) => nodes.push(node("queued", 2)),
                TaskEvent::TaskStarted(_) => nodes.push(node("running", 3)),
                TaskEvent::TaskOutputProduced(o) => output.push(OutputRow {
                    task_id: o.task_id.clone(),
                    node_id: env.node_id.clone(),
                    seq: o.seq.max(0) as u64,
                    stream: o.stream.clone(),
                    data: o.data.clone(),
                    ts_ms: at,
                    stream_seq: seq,
                }),
                TaskEvent::TaskFinished(f) => {
                    nodes.push(NodeRow {
                        exit_code: f.exit_code,
                        signal: f.signal,
                        duration_ms: f.duration_ms.max(0) as u64,
                        output_bytes: f.output_bytes.max(0) as u64,
                        truncated: u8::from(f.truncated),
                        error: f.error.clone(),
                        ..node(if f.succeeded() { "succeeded" } else { "failed" }, 4)
                    });
                }
                TaskEvent::TaskTimedOut(t) => nodes.push(NodeRow {
                    duration_ms: t.duration_ms.max(0) as u64,
                    output_bytes: t.output_bytes.max(0) as u64,
                    truncated: u8::from(t.truncated),
                    ..node("timed_out", 4)
                }),
                TaskEvent::TaskCancelled(c) => nodes.push(NodeRow {
                    duration_ms: c.duration_ms.max(0) as u64,
                    ..node("cancelled", 4)
                }),
                TaskEvent::TaskUnreachable(u) => nodes.push(NodeRow {
                    attempts: u.attempts.max(0) as u32,
                    error: u.reason.clone(),
                    ..node("unreachable", 4)
                }),
            }
        }
        insert_rows(ch, TASKS, &tasks).await?;
        insert_rows(ch, TASK_OUTPUT, &output).await?;
        insert_rows(ch, TASK_NODES, &nodes).await?;
        // Last: an event found here had everything above written.
        let mut insert = ch.insert::<EventRow>(TASK_EVENTS).await?;
        for p in items {
            let env = p.item.event.envelope();
            insert
                .write(&EventRow {
                    task_id: p.item.event.task_id().to_owned(),
                    node_id: env.node_id.clone(),
                    ts: (env.occurred_at_ms.max(0) / 1000).min(i64::from(u32::MAX)) as u32,
                    ts_ms: env.occurred_at_ms.max(0) as u64,
                    event_id: p.item.event_id,
                    kind: env.schema_name.clone(),
                    stream_seq: p.stream_seq,
                })
                .await?;
        }
        insert.end().await
    }
}

/// A row of `tasks`; the API reads tasks back as this too.
#[derive(Debug, Row, Serialize, Deserialize)]
pub struct TaskRow {
    pub task_id: String,
    pub requested_at: u32,
    pub requested_at_ms: u64,
    pub requested_by: String,
    pub kind: String,
    pub spec_json: String,
    pub selector_json: String,
    pub expected: u32,
    pub batch_size: u32,
    pub accept_deadline_secs: u32,
    pub stream_seq: u64,
}

/// A row of `task_nodes` (the ledger); the API reads it back as this too.
#[derive(Debug, Row, Serialize, Deserialize)]
pub struct NodeRow {
    pub task_id: String,
    pub node_id: String,
    pub state: String,
    pub attempts: u32,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub duration_ms: u64,
    pub output_bytes: u64,
    pub truncated: u8,
    pub error: String,
    pub updated_at_ms: u64,
    pub version: u64,
}

/// A row of `task_output`.
#[derive(Debug, Row, Serialize)]
pub struct OutputRow {
    pub task_id: String,
    pub node_id: String,
    pub seq: u64,
    pub stream: String,
    #[serde(with = "serde_bytes_as_string")]
    pub data: Vec<u8>,
    pub ts_ms: u64,
    pub stream_seq: u64,
}

/// ClickHouse `String` holds arbitrary bytes; RowBinary writes them as a length-prefixed blob.
mod serde_bytes_as_string {
    pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }
}

/// A row of `task_events`.
#[derive(Debug, Row, Serialize)]
pub struct EventRow {
    pub task_id: String,
    pub node_id: String,
    pub ts: u32,
    pub ts_ms: u64,
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: uuid::Uuid,
    pub kind: String,
    pub stream_seq: u64,
}
