//! The task service: validates a request, resolves its targets to the expected node set, and
//! records it as `TaskRequested` in the event log (the dispatcher takes it from there); reads the
//! ledger, the task list and per-node output from ClickHouse; cancels by recording
//! `TaskCancelRequested` and telling the nodes still working on it.

use clickhouse::Row;
use nerve_projections::tasks::{NodeRow, TASK_EVENTS, TASK_NODES, TASKS, TaskRow};
use nerve_schemas::{Envelope, TaskCancelRequested, TaskRequested, TaskSelector, subjects};
use serde::Deserialize;

use crate::AppState;
use crate::dto::fleet::{Maintenance, NodeStatus};
use crate::dto::tasks::*;
use crate::error::ApiError;
use crate::time::rfc3339_ms;

mod output;
mod spec;

pub use output::{Live, live_output, output};
pub use spec::validate;
use spec::{DEFAULT_ACCEPT_DEADLINE_SECS, MAX_NODES};

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
}

/// The nodes a request targets, as of now, and how many matched but were skipped as out of
/// service (every maintenance state but in service, unless the request names its nodes or
/// sets `include_cordoned`).
pub async fn resolve(
    state: &AppState,
    targets: &TaskTargets,
) -> Result<(Vec<String>, u64), ApiError> {
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
        maintenance: String,
    }
    let filter = nerve_projections::scope::NodeFilter {
        node_ids: &targets.node_ids,
        clusters: &clusters,
        labels: &labels,
    };
    let mut sql = format!(
        "SELECT node_id, status, maintenance FROM {}",
        crate::snapshot::nodes_sql()
    );
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
    let skip_held = targets.node_ids.is_empty() && !targets.include_cordoned;
    let mut skipped = 0;
    let mut nodes: Vec<String> = found
        .into_iter()
        .filter(|f| statuses.contains(&f.status.as_str()))
        .filter(|f| {
            let held =
                skip_held && Maintenance::parse(&f.maintenance).is_none_or(Maintenance::held);
            skipped += u64::from(held);
            !held
        })
        .map(|f| f.node_id)
        .collect();
    nodes.sort();
    nodes.dedup();
    if nodes.is_empty() {
        return Err(bad(format!(
            "no node matches the targets (status {}{})",
            statuses.join(", "),
            match skipped {
                0 => String::new(),
                n => format!("; {n} out of service skipped: name them or set include_cordoned"),
            }
        )));
    }
    if nodes.len() > MAX_NODES {
        return Err(bad(format!(
            "{} nodes match; at most {MAX_NODES}",
            nodes.len()
        )));
    }
    Ok((nodes, skipped))
}

/// Validates, resolves and records a task request on behalf of `by`.
pub async fn create(state: &AppState, req: CreateTask, by: &str) -> Result<TaskCreated, ApiError> {
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
    let (expected, skipped_maintenance) = resolve(state, &req.targets).await?;
    let batch_size = match (req.batch_size, req.batch_percent) {
        (Some(n), _) => n,
        (None, Some(p)) => ((expected.len() as u64 * u64::from(p)).div_ceil(100)).max(1) as u32,
        (None, None) => 0,
    };
    let task_id = uuid::Uuid::now_v7().to_string();
    let event = TaskRequested {
        envelope: Envelope::new::<TaskRequested>(task_id.clone(), nerve_platform::now_ms()),
        task_id: task_id.clone(),
        requested_by: by.to_owned(),
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
        skipped_maintenance,
    })
}

pub(crate) fn check_task_id(id: &str) -> Result<(), ApiError> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(bad(format!("invalid task id {id:?}")));
    }
    Ok(())
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
            "queued" => &mut c.queued,
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
    // `has([], …)` is a type error on ClickHouse 18.16 (an empty array has no element type).
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(state
        .ch()
        .query(&format!(
            "SELECT task_id, state, count() AS nodes FROM {TASK_NODES} FINAL \
             WHERE has(?, task_id) GROUP BY task_id, state"
        ))
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
        .query(&format!(
            "SELECT ?fields FROM {TASKS} FINAL \
             ORDER BY requested_at_ms DESC, task_id DESC LIMIT ?, ?"
        ))
        .bind(offset)
        .bind(limit)
        .fetch_all()
        .await?;
    let total: u64 = state
        .ch()
        .query(&format!(
            "SELECT count() FROM (SELECT task_id FROM {TASKS} FINAL)"
        ))
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

pub(crate) async fn task_row(state: &AppState, id: &str) -> Result<TaskRow, ApiError> {
    check_task_id(id)?;
    state
        .ch()
        .query(&format!(
            "SELECT ?fields FROM {TASKS} FINAL WHERE task_id = ? LIMIT 1"
        ))
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
        .query(&format!(
            "SELECT ?fields FROM {TASK_NODES} FINAL WHERE task_id = ? ORDER BY node_id"
        ))
        .bind(id)
        .fetch_all()
        .await?;
    let cancel_requested: u64 = state
        .ch()
        .query(&format!(
            "SELECT count() FROM {TASK_EVENTS} WHERE task_id = ? AND kind = 'TaskCancelRequested'"
        ))
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

/// Records the cancellation and tells every node not yet done to stop.
pub async fn cancel(state: &AppState, id: &str, by: &str) -> Result<TaskDetail, ApiError> {
    let detail = detail(state, id).await?;
    let event = TaskCancelRequested {
        envelope: Envelope::new::<TaskCancelRequested>(id.to_owned(), nerve_platform::now_ms()),
        task_id: id.to_owned(),
        requested_by: by.to_owned(),
    };
    state.publish(subjects::task_request(id), &event).await?;
    if let Some(client) = state.nats()
        && nerve_ingest::gate::pass().await.is_ok()
    {
        let working = ["expected", "dispatched", "accepted", "queued", "running"];
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
