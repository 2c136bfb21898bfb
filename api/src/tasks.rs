//! The task service: validates a request, resolves its targets to the expected node set, and
//! records it as `TaskRequested` in the event log (the dispatcher takes it from there); reads the
//! ledger, the task list and per-node output from ClickHouse; cancels by recording
//! `TaskCancelRequested` and telling the nodes still working on it.

use clickhouse::Row;
use nerve_schemas::{
    EnvVar, Envelope, TaskCancelRequested, TaskRequested, TaskSelector, TaskSpec, subjects,
};
use serde::Deserialize;

use crate::AppState;
use crate::dto::tasks::*;
use crate::error::ApiError;
use crate::time::rfc3339_ms;

/// Default and largest timeout.
pub const DEFAULT_TIMEOUT_SECS: u32 = 300;
pub const MAX_TIMEOUT_SECS: u32 = 86_400;
/// Default and largest output kept per node.
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 1 << 20;
pub const MAX_OUTPUT_BYTES: u64 = 64 << 20;
/// Default time nodes have to accept.
pub const DEFAULT_ACCEPT_DEADLINE_SECS: u32 = 30;
/// Most nodes one task may target (the request lists them: ≈ 7.4 MB at this count, within the
/// event log's 16 MB message limit).
pub const MAX_NODES: usize = 200_000;
/// Largest script body (it travels to every node with each offer).
pub const MAX_SCRIPT_BYTES: usize = 256 << 10;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
}

/// Checks a request and turns it into the spec the agents run.
pub fn validate(req: &CreateTask) -> Result<TaskSpec, ApiError> {
    let mut spec = TaskSpec {
        kind: req.kind.clone(),
        working_dir: req.working_dir.clone(),
        run_as: req.run_as.clone(),
        ..TaskSpec::default()
    };
    match req.kind.as_str() {
        "command" => {
            if req.argv.is_empty() || req.argv[0].is_empty() {
                return Err(bad("command: argv must name a program"));
            }
            spec.argv = req.argv.clone();
        }
        "script" => {
            if req.script.trim().is_empty() {
                return Err(bad("script: the body is empty"));
            }
            if req.script.len() > MAX_SCRIPT_BYTES {
                return Err(bad(format!("script: at most {MAX_SCRIPT_BYTES} bytes")));
            }
            spec.script = req.script.clone();
            spec.interpreter = if req.interpreter.is_empty() {
                "/bin/sh".into()
            } else {
                req.interpreter.clone()
            };
        }
        "hook" => {
            let valid = !req.hook.is_empty()
                && !req.hook.starts_with('.')
                && req
                    .hook
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !valid {
                return Err(bad(format!(
                    "hook: {:?} is not a hook name ([A-Za-z0-9._-], not starting with '.')",
                    req.hook
                )));
            }
            spec.hook = req.hook.clone();
            spec.args = req.args.clone();
        }
        "" => return Err(bad("kind is required: command, script or hook")),
        other => {
            return Err(bad(format!(
                "unknown kind {other:?}: expected command, script or hook"
            )));
        }
    }
    if req.kind != "command" && !req.argv.is_empty() {
        return Err(bad("argv belongs to kind command"));
    }
    if req.kind != "hook" && !req.args.is_empty() {
        return Err(bad("args belong to kind hook"));
    }
    for name in req.env.keys() {
        let valid = !name.is_empty()
            && !name.as_bytes()[0].is_ascii_digit()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(bad(format!("env: {name:?} is not a variable name")));
        }
    }
    spec.env = req
        .env
        .iter()
        .map(|(name, value)| EnvVar {
            name: name.clone(),
            value: value.clone(),
        })
        .collect();
    let timeout = req.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS);
    if timeout == 0 || timeout > MAX_TIMEOUT_SECS {
        return Err(bad(format!(
            "timeout_secs must be between 1 and {MAX_TIMEOUT_SECS}"
        )));
    }
    spec.timeout_secs = timeout as i32;
    let max_output = req.max_output_bytes.unwrap_or(DEFAULT_MAX_OUTPUT_BYTES);
    if max_output > MAX_OUTPUT_BYTES {
        return Err(bad(format!(
            "max_output_bytes must be at most {MAX_OUTPUT_BYTES}"
        )));
    }
    spec.max_output_bytes = max_output as i64;
    let positive = |name: &str, v: Option<u64>| match v {
        Some(0) => Err(bad(format!("{name} must be positive"))),
        Some(v) => i64::try_from(v)
            .map(Some)
            .map_err(|_| bad(format!("{name} is too large"))),
        None => Ok(None),
    };
    spec.cpu_limit_secs = positive("cpu_limit_secs", req.cpu_limit_secs)?;
    spec.memory_limit_bytes = positive("memory_limit_bytes", req.memory_limit_bytes)?;
    Ok(spec)
}

/// The nodes a request targets, as of now.
pub async fn resolve(state: &AppState, targets: &TaskTargets) -> Result<Vec<String>, ApiError> {
    let labels = targets
        .labels
        .iter()
        .map(|l| {
            nerve_schemas::control::parse_label(l)
                .map(|l| format!("{}={}", l.key, l.value))
                .map_err(|e| bad(format!("targets.labels: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let clusters = crate::clusters::resolve_clusters(state, &targets.clusters)
        .await
        .map_err(|e| match e {
            ApiError::BadRequest(m) => bad(format!("targets.clusters: {m}")),
            other => other,
        })?;
    for id in &targets.node_ids {
        if !subjects::is_valid_node_id(id) {
            return Err(bad(format!("targets.node_ids: invalid node id {id:?}")));
        }
    }
    let statuses: Vec<&str> = if targets.status.is_empty() {
        vec![NodeStatus::Online.as_str()]
    } else {
        targets.status.iter().map(|s| s.as_str()).collect()
    };
    #[derive(Row, Deserialize)]
    struct Found {
        node_id: String,
        status: String,
    }
    let filter = nerve_projections::scope::NodeFilter {
        node_ids: &targets.node_ids,
        clusters: &clusters,
        labels: &labels,
    };
    let mut sql = format!("SELECT node_id, status FROM {}", crate::snapshot::NODES);
    let clauses = filter.clauses();
    if !clauses.is_empty() {
        sql.push_str(&format!(" WHERE {}", clauses.join(" AND ")));
    }
    let found: Vec<Found> = filter.bind(state.ch().query(&sql)).fetch_all().await?;
    if !targets.node_ids.is_empty() {
        let known: std::collections::HashSet<&str> =
            found.iter().map(|f| f.node_id.as_str()).collect();
        let unknown: Vec<&str> = targets
            .node_ids
            .iter()
            .map(String::as_str)
            .filter(|id| !known.contains(id))
            .collect();
        if !unknown.is_empty() {
            return Err(bad(format!("unknown nodes: {}", unknown.join(", "))));
        }
    }
    let mut nodes: Vec<String> = found
        .into_iter()
        .filter(|f| statuses.contains(&f.status.as_str()))
        .map(|f| f.node_id)
        .collect();
    nodes.sort();
    nodes.dedup();
    if nodes.is_empty() {
        return Err(bad(format!(
            "no node matches the targets (status {})",
            statuses.join(", ")
        )));
    }
    if nodes.len() > MAX_NODES {
        return Err(bad(format!(
            "{} nodes match; at most {MAX_NODES}",
            nodes.len()
        )));
    }
    Ok(nodes)
}

/// Validates, resolves and records a task request.
pub async fn create(state: &AppState, req: CreateTask) -> Result<TaskCreated, ApiError> {
    let spec = validate(&req)?;
    match (req.batch_size, req.batch_percent) {
        (Some(_), Some(_)) => return Err(bad("give batch_size or batch_percent, not both")),
        (Some(0), _) => return Err(bad("batch_size must be at least 1")),
        (None, Some(p)) if !(1..=100).contains(&p) => {
            return Err(bad("batch_percent must be between 1 and 100"));
        }
        _ => {}
    }
    let accept_deadline = req
        .accept_deadline_secs
        .unwrap_or(DEFAULT_ACCEPT_DEADLINE_SECS);
    if accept_deadline == 0 || accept_deadline > 3600 {
        return Err(bad("accept_deadline_secs must be between 1 and 3600"));
    }
    let expected = resolve(state, &req.targets).await?;
    let batch_size = match (req.batch_size, req.batch_percent) {
        (Some(n), _) => n,
        (None, Some(p)) => ((expected.len() as u64 * u64::from(p)).div_ceil(100)).max(1) as u32,
        (None, None) => 0,
    };
    let task_id = uuid::Uuid::now_v7().to_string();
    let event = TaskRequested {
        envelope: Envelope::new::<TaskRequested>(task_id.clone(), nerve_platform::now_ms()),
        task_id: task_id.clone(),
        requested_by: if req.requested_by.is_empty() {
            "api".into()
        } else {
            req.requested_by.clone()
        },
        spec,
        selector: TaskSelector {
            node_ids: req.targets.node_ids.clone(),
            labels: req.targets.labels.clone(),
            clusters: req.targets.clusters.clone(),
            statuses: if req.targets.status.is_empty() {
                vec!["online".into()]
            } else {
                req.targets
                    .status
                    .iter()
                    .map(|s| s.as_str().to_owned())
                    .collect()
            },
        },
        expected_nodes: expected.clone(),
        batch_size: batch_size.min(i32::MAX as u32) as i32,
        accept_deadline_secs: accept_deadline as i32,
    };
    state
        .publish(subjects::task_request(&task_id), &event)
        .await?;
    Ok(TaskCreated {
        task_id,
        expected_nodes: expected,
    })
}

fn check_task_id(id: &str) -> Result<(), ApiError> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(bad(format!("invalid task id {id:?}")));
    }
    Ok(())
}

#[derive(Debug, Row, Deserialize)]
struct TaskRow {
    task_id: String,
    requested_at_ms: u64,
    requested_by: String,
    kind: String,
    expected: u32,
    spec_json: String,
    selector_json: String,
}

#[derive(Debug, Row, Deserialize)]
struct CountRow {
    task_id: String,
    state: String,
    nodes: u64,
}

fn counts_of<'a>(rows: impl Iterator<Item = &'a CountRow>) -> TaskCounts {
    let mut c = TaskCounts::default();
    for r in rows {
        let slot = match r.state.as_str() {
            "expected" => &mut c.expected,
            "dispatched" => &mut c.dispatched,
            "accepted" => &mut c.accepted,
            "running" => &mut c.running,
            "succeeded" => &mut c.succeeded,
            "failed" => &mut c.failed,
            "timed_out" => &mut c.timed_out,
            "cancelled" => &mut c.cancelled,
            "unreachable" => &mut c.unreachable,
            _ => continue,
        };
        *slot += r.nodes;
    }
    c
}

fn summary_of(t: &TaskRow, counts: TaskCounts) -> TaskSummary {
    TaskSummary {
        task_id: t.task_id.clone(),
        requested_at: rfc3339_ms(t.requested_at_ms),
        requested_by: t.requested_by.clone(),
        kind: t.kind.clone(),
        expected: u64::from(t.expected),
        counts,
    }
}

async fn counts(state: &AppState, ids: &[String]) -> Result<Vec<CountRow>, ApiError> {
    Ok(state
        .ch()
        .query(
            "SELECT task_id, state, count() AS nodes FROM task_nodes FINAL \
             WHERE has(?, task_id) GROUP BY task_id, state",
        )
        .bind(ids)
        .fetch_all()
        .await?)
}

/// Newest tasks first.
pub async fn list(state: &AppState, query: TaskListQuery) -> Result<TaskPage, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if limit == 0 || limit > 500 {
        return Err(bad("limit must be between 1 and 500"));
    }
    let offset = query.offset.unwrap_or(0);
    let rows: Vec<TaskRow> = state
        .ch()
        .query(
            "SELECT task_id, requested_at_ms, requested_by, kind, expected, spec_json, \
                    selector_json \
             FROM tasks FINAL ORDER BY requested_at_ms DESC, task_id DESC LIMIT ?, ?",
        )
        .bind(offset)
        .bind(limit)
        .fetch_all()
        .await?;
    let total: u64 = state
        .ch()
        .query("SELECT count() FROM (SELECT task_id FROM tasks FINAL)")
        .fetch_one()
        .await?;
    let ids: Vec<String> = rows.iter().map(|r| r.task_id.clone()).collect();
    let counts = counts(state, &ids).await?;
    Ok(TaskPage {
        tasks: rows
            .iter()
            .map(|t| {
                summary_of(
                    t,
                    counts_of(counts.iter().filter(|c| c.task_id == t.task_id)),
                )
            })
            .collect(),
        total,
        limit,
        offset,
    })
}

#[derive(Debug, Row, Deserialize)]
struct NodeRow {
    node_id: String,
    state: String,
    attempts: u32,
    exit_code: Option<i32>,
    signal: Option<i32>,
    duration_ms: u64,
    output_bytes: u64,
    truncated: u8,
    error: String,
}

async fn task_row(state: &AppState, id: &str) -> Result<TaskRow, ApiError> {
    check_task_id(id)?;
    state
        .ch()
        .query(
            "SELECT task_id, requested_at_ms, requested_by, kind, expected, spec_json, \
                    selector_json FROM tasks FINAL WHERE task_id = ? LIMIT 1",
        )
        .bind(id)
        .fetch_optional()
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("task {id} not found")))
}

/// The request, its counts and every expected node's line of the ledger.
pub async fn detail(state: &AppState, id: &str) -> Result<TaskDetail, ApiError> {
    let t = task_row(state, id).await?;
    let nodes: Vec<NodeRow> = state
        .ch()
        .query(
            "SELECT node_id, state, attempts, exit_code, signal, duration_ms, output_bytes, \
                    truncated, error \
             FROM task_nodes FINAL WHERE task_id = ? ORDER BY node_id",
        )
        .bind(id)
        .fetch_all()
        .await?;
    let cancel_requested: u64 = state
        .ch()
        .query("SELECT count() FROM task_events WHERE task_id = ? AND kind = 'TaskCancelRequested'")
        .bind(id)
        .fetch_one()
        .await?;
    let count_rows: Vec<CountRow> = nodes
        .iter()
        .map(|n| CountRow {
            task_id: t.task_id.clone(),
            state: n.state.clone(),
            nodes: 1,
        })
        .collect();
    Ok(TaskDetail {
        summary: summary_of(&t, counts_of(count_rows.iter())),
        spec: serde_json::from_str(&t.spec_json).unwrap_or(serde_json::Value::Null),
        selector: serde_json::from_str(&t.selector_json).unwrap_or(serde_json::Value::Null),
        cancel_requested: cancel_requested > 0,
        nodes: nodes
            .into_iter()
            .map(|n| TaskNode {
                node_id: n.node_id,
                state: n.state,
                attempts: n.attempts,
                exit_code: n.exit_code,
                signal: n.signal,
                duration_ms: n.duration_ms,
                output_bytes: n.output_bytes,
                truncated: n.truncated != 0,
                error: n.error,
            })
            .collect(),
    })
}

#[derive(Debug, Row, Deserialize)]
struct ChunkRow {
    stream: String,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

/// The output one node kept for a task, stdout and stderr apart, in order.
pub async fn output(state: &AppState, id: &str, node: &str) -> Result<TaskOutput, ApiError> {
    check_task_id(id)?;
    if !subjects::is_valid_node_id(node) {
        return Err(bad(format!("invalid node id {node:?}")));
    }
    let chunks: Vec<ChunkRow> = state
        .ch()
        .query(
            "SELECT stream, data FROM (SELECT seq, any(stream) AS stream, any(data) AS data \
             FROM task_output WHERE task_id = ? AND node_id = ? GROUP BY seq) ORDER BY seq",
        )
        .bind(id)
        .bind(node)
        .fetch_all()
        .await?;
    let truncated: u8 = state
        .ch()
        .query(
            "SELECT toUInt8(count() > 0) FROM task_nodes FINAL \
             WHERE task_id = ? AND node_id = ? AND truncated = 1",
        )
        .bind(id)
        .bind(node)
        .fetch_one()
        .await?;
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    for c in &chunks {
        if c.stream == "stderr" {
            &mut stderr
        } else {
            &mut stdout
        }
        .extend_from_slice(&c.data);
    }
    if chunks.is_empty() {
        task_row(state, id).await?; // 404 for an unknown task
    }
    Ok(TaskOutput {
        task_id: id.to_owned(),
        node_id: node.to_owned(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        chunks: chunks.len() as u64,
        truncated: truncated != 0,
    })
}

/// Records the cancellation and tells every node not yet done to stop.
pub async fn cancel(state: &AppState, id: &str, by: &str) -> Result<TaskDetail, ApiError> {
    let detail = detail(state, id).await?;
    let event = TaskCancelRequested {
        envelope: Envelope::new::<TaskCancelRequested>(id.to_owned(), nerve_platform::now_ms()),
        task_id: id.to_owned(),
        requested_by: by.to_owned(),
    };
    state.publish(subjects::task_request(id), &event).await?;
    if let Some(client) = state.nats() {
        let working = ["expected", "dispatched", "accepted", "running"];
        for n in detail
            .nodes
            .iter()
            .filter(|n| working.contains(&n.state.as_str()))
        {
            let _ = client
                .publish(subjects::cancel(&n.node_id), id.to_owned().into())
                .await;
        }
        let _ = client.flush().await;
    }
    Ok(detail)
}

/// One item of a live output stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Live {
    /// An output chunk, in order.
    Output {
        seq: u64,
        stream: String,
        data: String,
    },
    /// The node's line reached a final state; the stream ends.
    End { state: String },
}

const FINAL_STATES: [&str; 5] = [
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
    "unreachable",
];

async fn final_state(state: &AppState, id: &str, node: &str) -> Result<Option<String>, ApiError> {
    let s: Option<String> = state
        .ch()
        .query("SELECT state FROM task_nodes FINAL WHERE task_id = ? AND node_id = ? LIMIT 1")
        .bind(id)
        .bind(node)
        .fetch_optional()
        .await?;
    Ok(s.filter(|s| FINAL_STATES.contains(&s.as_str())))
}

/// A node's output as it is produced: what ClickHouse already has, then chunks as the agent
/// publishes them (a core subscription on the node's task subject, taken before the history is
/// read, so nothing falls between), ending with the final state. The ledger is re-checked every
/// 2 s in case the end was published before the subscription started.
pub async fn live_output(
    state: &AppState,
    id: &str,
    node: &str,
) -> Result<tokio::sync::mpsc::Receiver<Live>, ApiError> {
    check_task_id(id)?;
    if !subjects::is_valid_node_id(node) {
        return Err(bad(format!("invalid node id {node:?}")));
    }
    // A client may open the stream right after creating the task, before the projector has
    // stored it: give the projection a moment before answering 404.
    let appear_by = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match task_row(state, id).await {
            Err(ApiError::NotFound(_)) if std::time::Instant::now() < appear_by => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            other => {
                other?;
                break;
            }
        }
    }
    let client = state
        .nats()
        .ok_or_else(|| ApiError::Unavailable("no event log configured".into()))?
        .clone();
    let mut live = client
        .subscribe(subjects::task_node(node))
        .await
        .map_err(|e| ApiError::Unavailable(format!("cannot follow the node: {e}")))?;
    let history = stored_chunks(state, id, node, 0).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let (state, id, node) = (state.clone(), id.to_owned(), node.to_owned());
    tokio::spawn(async move {
        use futures::StreamExt;
        let mut next_seq = 0u64;
        if !send_chunks(&tx, history, &mut next_seq).await {
            return;
        }
        let mut recheck = tokio::time::interval(std::time::Duration::from_secs(2));
        loop {
            let ended = tokio::select! {
                _ = tx.closed() => return,
                _ = recheck.tick() => matches!(final_state(&state, &id, &node).await, Ok(Some(_))),
                msg = live.next() => {
                    let Some(msg) = msg else { return };
                    match live_item(&msg.payload, &id) {
                        Some(Live::End { .. }) => true,
                        Some(Live::Output { seq, stream, data }) => {
                            if seq > next_seq {
                                // Chunks published before the subscription: from ClickHouse.
                                let gap = wait_for_chunks(&state, &id, &node, next_seq, seq).await;
                                if !send_chunks(&tx, gap, &mut next_seq).await {
                                    return;
                                }
                            }
                            if seq == next_seq {
                                next_seq += 1;
                                let item = Live::Output { seq, stream, data };
                                if tx.send(item).await.is_err() {
                                    return;
                                }
                            }
                            false
                        }
                        None => false,
                    }
                }
            };
            if ended {
                // The ledger's final state is written after the output: once it shows, every
                // chunk is readable; send what is left, then the end.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                let final_state = loop {
                    match final_state(&state, &id, &node).await {
                        Ok(Some(s)) => break s,
                        _ if std::time::Instant::now() < deadline => {
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                        _ => break "unknown".to_owned(),
                    }
                };
                if let Ok(rest) = stored_chunks(&state, &id, &node, next_seq).await
                    && !send_chunks(&tx, rest, &mut next_seq).await
                {
                    return;
                }
                let _ = tx.send(Live::End { state: final_state }).await;
                return;
            }
        }
    });
    Ok(rx)
}

/// Stored chunks of a node's output from sequence `from`, in order.
async fn stored_chunks(
    state: &AppState,
    id: &str,
    node: &str,
    from: u64,
) -> Result<Vec<SeqChunkRow>, ApiError> {
    Ok(state
        .ch()
        .query(
            "SELECT seq, stream, data FROM (SELECT seq, any(stream) AS stream, any(data) AS data \
             FROM task_output WHERE task_id = ? AND node_id = ? AND seq >= ? GROUP BY seq) \
             ORDER BY seq",
        )
        .bind(id)
        .bind(node)
        .bind(from)
        .fetch_all()
        .await?)
}

/// Chunks `from..to` once the projector has stored them (up to 5 s).
async fn wait_for_chunks(
    state: &AppState,
    id: &str,
    node: &str,
    from: u64,
    to: u64,
) -> Vec<SeqChunkRow> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let chunks: Vec<SeqChunkRow> = stored_chunks(state, id, node, from)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.seq < to)
            .collect();
        if chunks.len() as u64 >= to - from || std::time::Instant::now() >= deadline {
            return chunks;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Sends the chunks that continue the sequence; false once the client is gone.
async fn send_chunks(
    tx: &tokio::sync::mpsc::Sender<Live>,
    chunks: Vec<SeqChunkRow>,
    next_seq: &mut u64,
) -> bool {
    for c in chunks {
        if c.seq < *next_seq {
            continue;
        }
        *next_seq = c.seq + 1;
        let item = Live::Output {
            seq: c.seq,
            stream: c.stream,
            data: String::from_utf8_lossy(&c.data).into_owned(),
        };
        if tx.send(item).await.is_err() {
            return false;
        }
    }
    true
}

#[derive(Debug, Row, Deserialize)]
struct SeqChunkRow {
    seq: u64,
    stream: String,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

/// What a task event on the node's subject means for a live stream of task `id`.
fn live_item(payload: &[u8], id: &str) -> Option<Live> {
    match nerve_schemas::TaskEvent::decode(payload).ok()? {
        nerve_schemas::TaskEvent::TaskOutputProduced(o) => {
            let seq = u64::try_from(o.seq).ok()?;
            (o.task_id == id).then(|| Live::Output {
                seq,
                stream: o.stream,
                data: String::from_utf8_lossy(&o.data).into_owned(),
            })
        }
        other => {
            let end = nerve_schemas::TaskEnd::of(other)?;
            (end.task_id == id).then(|| Live::End {
                state: end.state.to_owned(),
            })
        }
    }
}
