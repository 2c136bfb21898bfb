//! Tasks: a request to run something on nodes, and the per-node ledger and output it produces.

use serde::{Deserialize, Serialize};

use crate::dto::fleet::NodeStatus;

/// `POST /api/v1/tasks`: what to run where. Unknown fields are rejected.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct CreateTask {
    /// `command`, `script`, `hook` or `health`.
    #[cfg_attr(
        feature = "openapi",
        schema(required = true, pattern = "^(command|script|hook|health)$")
    )]
    pub kind: String,
    /// `command`: program and arguments.
    pub argv: Vec<String>,
    /// `script`: the body, run by `interpreter` (default `/bin/sh`).
    pub script: String,
    pub interpreter: String,
    /// `hook`: an executable's name in the agent's hooks directory, and its arguments.
    pub hook: String,
    pub args: Vec<String>,
    /// `health`: the check — `gpu` (built in), `dcgm` (`dcgmi diag`, level in `args`) or
    /// `hook:<name>` (an operator's script) — with its options in `args`.
    pub check: String,
    pub env: std::collections::BTreeMap<String, String>,
    pub working_dir: String,
    /// Run as this user (the agent must be root).
    pub run_as: String,
    /// Default 300, at most 86,400.
    pub timeout_secs: Option<u32>,
    /// Output kept per node; default 1 MiB, at most 64 MiB.
    pub max_output_bytes: Option<u64>,
    pub cpu_limit_secs: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    /// How long nodes have to accept; default 30 s (per batch in a rollout).
    pub accept_deadline_secs: Option<u32>,
    /// Rollout: this many nodes at a time, the next batch once the current one is done.
    pub batch_size: Option<u32>,
    /// Rollout: this percentage of the nodes at a time (1–100); instead of `batch_size`.
    pub batch_percent: Option<u32>,
    pub targets: TaskTargets,
}

/// Which nodes a task runs on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct TaskTargets {
    /// Explicit node ids; empty: every node (that passes the other filters).
    pub node_ids: Vec<String>,
    /// Labels (`key=value`) a node must all have.
    pub labels: Vec<String>,
    /// Clusters (ids or names) a node must be in one of.
    pub clusters: Vec<String>,
    /// Liveness states allowed; default `["online"]`.
    pub status: Vec<NodeStatus>,
    /// Also nodes out of service (cordoned, remediating, verifying, service required), which
    /// an untargeted request skips; nodes named in `node_ids` are never skipped.
    pub include_cordoned: bool,
}

/// The answer to a task request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskCreated {
    pub task_id: String,
    pub expected_nodes: Vec<String>,
    /// Nodes that matched but were skipped as out of service.
    #[serde(default)]
    pub skipped_maintenance: u64,
}

/// Nodes of a task per ledger state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskCounts {
    pub expected: u64,
    pub dispatched: u64,
    pub accepted: u64,
    /// Accepted, waiting for one of the node's task slots (`agent.max_concurrent_tasks`).
    #[serde(default)]
    pub queued: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub cancelled: u64,
    pub unreachable: u64,
}

impl TaskCounts {
    /// Nodes in a final state.
    pub fn done(&self) -> u64 {
        self.succeeded + self.failed + self.timed_out + self.cancelled + self.unreachable
    }
}

/// One task in the list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskSummary {
    pub task_id: String,
    /// RFC 3339, UTC.
    pub requested_at: String,
    pub requested_by: String,
    pub kind: String,
    /// Nodes expected when it was requested.
    pub expected: u64,
    pub counts: TaskCounts,
}

/// `GET /api/v1/tasks`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskPage {
    pub tasks: Vec<TaskSummary>,
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
}

/// `GET /api/v1/tasks` query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct TaskListQuery {
    pub limit: Option<u32>,
    pub offset: Option<u64>,
}

/// One node's line in a task's ledger.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskNode {
    pub node_id: String,
    /// expected, dispatched, accepted, queued, running, succeeded, failed, timed_out, cancelled,
    /// unreachable.
    pub state: String,
    pub attempts: u32,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub duration_ms: u64,
    pub output_bytes: u64,
    pub truncated: bool,
    /// Why it failed to run, or why it was unreachable (`offline`, `no_accept`).
    pub error: String,
}

/// `GET /api/v1/tasks/{id}`: the request, the counts, and every expected node's line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskDetail {
    pub summary: TaskSummary,
    pub spec: serde_json::Value,
    pub selector: serde_json::Value,
    pub cancel_requested: bool,
    pub nodes: Vec<TaskNode>,
}

/// `GET /api/v1/tasks/{id}/nodes/{node}/output`: the output kept, per stream, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskOutput {
    pub task_id: String,
    pub node_id: String,
    /// Output as UTF-8 (invalid bytes replaced).
    pub stdout: String,
    pub stderr: String,
    pub chunks: u64,
    pub truncated: bool,
}
