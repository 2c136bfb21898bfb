//! A node's output for a task: what ClickHouse has stored, and the live stream (stored chunks,
//! then chunks as the agent publishes them, then the final state).

use clickhouse::Row;
use nerve_schemas::subjects;
use serde::Deserialize;

use super::{bad, check_task_id, task_row};
use crate::AppState;
use crate::dto::tasks::TaskOutput;
use crate::error::ApiError;
use nerve_projections::tasks::{TASK_NODES, TASK_OUTPUT};

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
        .query(&format!(
            "SELECT stream, data FROM (SELECT seq, any(stream) AS stream, any(data) AS data \
             FROM {TASK_OUTPUT} WHERE task_id = ? AND node_id = ? GROUP BY seq) ORDER BY seq"
        ))
        .bind(id)
        .bind(node)
        .fetch_all()
        .await?;
    let truncated: u8 = state
        .ch()
        .query(&format!(
            "SELECT toUInt8(count() > 0) FROM {TASK_NODES} FINAL \
             WHERE task_id = ? AND node_id = ? AND truncated = 1"
        ))
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
        .query(&format!(
            "SELECT state FROM {TASK_NODES} FINAL WHERE task_id = ? AND node_id = ? LIMIT 1"
        ))
        .bind(id)
        .bind(node)
        .fetch_optional()
        .await?;
    Ok(s.filter(|s| FINAL_STATES.contains(&s.as_str())))
}

/// How long a task not stored yet may take to appear: a client may open the stream right after
/// creating the task, before the projector has stored it. Task ids are UUIDv7, which carry
/// the time they were minted: one minted in the last 5 s gets the rest of those 5 s; any other
/// id (older, from the future, not a UUIDv7) gets none, and its answer is 404 at once.
fn grace_ms(id: &str, now_ms: u64) -> u64 {
    let minted_ms = uuid::Uuid::parse_str(id)
        .ok()
        .and_then(|u| u.get_timestamp())
        .map(|t| {
            let (secs, nanos) = t.to_unix();
            secs.saturating_mul(1000) + u64::from(nanos) / 1_000_000
        });
    minted_ms
        // A second of clock skew allowed.
        .filter(|at| *at <= now_ms + 1_000)
        .map_or(0, |at| (at + 5_000).saturating_sub(now_ms).min(5_000))
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
    let grace = std::time::Duration::from_millis(grace_ms(id, crate::time::now_ms()));
    let appear_by = std::time::Instant::now() + grace;
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
        .query(&format!(
            "SELECT seq, stream, data FROM (SELECT seq, any(stream) AS stream, any(data) AS data \
             FROM {TASK_OUTPUT} WHERE task_id = ? AND node_id = ? AND seq >= ? GROUP BY seq) \
             ORDER BY seq"
        ))
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

#[cfg(test)]
mod tests {
    use super::grace_ms;

    #[test]
    fn only_a_task_id_minted_in_the_last_seconds_waits_for_its_task() {
        let now = crate::time::now_ms();
        let v7 = |at_ms: u64| {
            let ts = uuid::Timestamp::from_unix(
                uuid::NoContext,
                at_ms / 1000,
                (at_ms % 1000) as u32 * 1_000_000,
            );
            uuid::Uuid::new_v7(ts).to_string()
        };
        assert_eq!(grace_ms(&v7(now), now), 5_000);
        assert_eq!(grace_ms(&v7(now - 3_000), now), 2_000);
        assert_eq!(grace_ms(&v7(now - 60_000), now), 0);
        assert_eq!(grace_ms(&v7(now + 3_600_000), now), 0, "from the future");
        assert_eq!(
            grace_ms("4b3c2d1e-0f9a-4b8c-9d7e-6f5a4b3c2d1e", now),
            0,
            "a v4"
        );
        assert_eq!(grace_ms("not a uuid", now), 0);
    }
}
