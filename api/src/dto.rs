//! Request and response types of `/api/v1` (the API contract), apart from storage rows.

use serde::{Deserialize, Serialize};

pub use nerve_alerts::contract::{
    CreateSilence, DeliveryAttempt, DeliveryReport, FieldError, RuleScope, SaveChannel, SaveRule,
};
pub use nerve_alerts::rule::{Aggregate, ChannelKind, Kind as RuleKind, Metric, Op, Severity};

/// Liveness judged from the last heartbeat against the node's own interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    Online,
    Suspect,
    Offline,
}

impl NodeStatus {
    pub const ALL: [NodeStatus; 3] = [NodeStatus::Online, NodeStatus::Suspect, NodeStatus::Offline];

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Online => "online",
            NodeStatus::Suspect => "suspect",
            NodeStatus::Offline => "offline",
        }
    }
}

/// `GET /api/v1/nodes` query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeListQuery {
    /// Page size, 1..=max_page_size (default 100).
    pub limit: Option<u32>,
    /// Nodes to skip (default 0).
    pub offset: Option<u64>,
    /// Only nodes with this status.
    pub status: Option<NodeStatus>,
    /// Case-insensitive substring of the hostname or node id.
    pub q: Option<String>,
    /// Sort key (default `id`).
    pub sort: Option<NodeSort>,
    /// Sort direction (default `asc`).
    pub order: Option<SortOrder>,
    /// Only nodes in this cluster (id or name).
    pub cluster: Option<String>,
    /// Only nodes with this label (`key=value`).
    pub label: Option<String>,
}

/// What the node list can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeSort {
    Id,
    Hostname,
    Status,
    Cpu,
    Mem,
    Gpu,
    LastSeen,
}

impl NodeSort {
    pub const ALL: [NodeSort; 7] = [
        NodeSort::Id,
        NodeSort::Hostname,
        NodeSort::Status,
        NodeSort::Cpu,
        NodeSort::Mem,
        NodeSort::Gpu,
        NodeSort::LastSeen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeSort::Id => "id",
            NodeSort::Hostname => "hostname",
            NodeSort::Status => "status",
            NodeSort::Cpu => "cpu",
            NodeSort::Mem => "mem",
            NodeSort::Gpu => "gpu",
            NodeSort::LastSeen => "last_seen",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    Asc,
    Desc,
}

impl SortOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            SortOrder::Asc => "asc",
            SortOrder::Desc => "desc",
        }
    }
}

/// One row of the node list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeSummary {
    pub id: String,
    /// Empty until the node's first inventory report is projected.
    pub hostname: String,
    pub status: NodeStatus,
    /// The worst GPU verdict (`ok`, `warning`, `critical`); empty without GPUs.
    pub gpu_health: String,
    /// RFC 3339, UTC.
    pub last_seen: String,
    pub last_seen_ms: u64,
    pub heartbeat_interval_secs: u32,
    pub cpu_pct: f32,
    pub mem_used_bytes: u64,
    pub mem_total_bytes: u64,
    pub gpu_count: u16,
    pub gpu_util_pct_avg: f32,
}

/// A page of nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodePage {
    pub nodes: Vec<NodeSummary>,
    /// Nodes matching the filter, all pages.
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
}

/// `GET /api/v1/nodes/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeDetail {
    pub id: String,
    /// The liveness tracker's judgement; `None` before the first heartbeat.
    pub status: Option<NodeStatus>,
    /// When the tracker last changed it (RFC 3339); `None` if it never judged the node.
    pub status_since: Option<String>,
    pub inventory: Option<Inventory>,
    pub latest: Option<LatestMetrics>,
    /// The worst GPU verdict of the latest heartbeat; empty without GPUs.
    pub gpu_health: String,
    /// The latest heartbeat's GPU samples: utilisation, memory, clocks, power, ECC, retired
    /// pages / remapped rows, throttling, NVLink, MIG, XID count, `health` and `health_reasons`.
    pub gpus: serde_json::Value,
    /// The node's newest events (GPU XIDs, liveness changes), newest first.
    pub events: Vec<NodeEventItem>,
    /// Clusters it belongs to.
    pub clusters: Vec<ClusterRef>,
    /// Its labels (`key=value`): the agent's, with the operator's overriding the same key.
    pub labels: Vec<String>,
}

/// A cluster as other objects mention it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterRef {
    pub cluster_id: String,
    pub name: String,
}

/// One event about a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeEventItem {
    /// RFC 3339, UTC.
    pub at: String,
    pub at_ms: u64,
    /// The event name, e.g. `GpuXidOccurred`, `NodeWentOffline`.
    pub kind: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    pub summary: String,
}

/// The node's last reported inventory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inventory {
    pub reported_at: String,
    pub hostname: String,
    pub os_name: String,
    pub os_version: String,
    pub kernel_version: String,
    pub arch: String,
    pub boot_time: String,
    pub agent_version: String,
    pub cpu: Cpu,
    pub memory_total_bytes: u64,
    pub swap_total_bytes: u64,
    pub disks: serde_json::Value,
    pub interfaces: serde_json::Value,
    pub gpus: serde_json::Value,
    pub collector_errors: serde_json::Value,
    /// CPU (sockets, threads, frequencies, caches, flags), memory (DIMMs, ECC, source), whole
    /// disks with SMART, and system identity (virtualisation, container, DMI); from v2 agents.
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cpu {
    pub model: String,
    pub vendor: String,
    pub physical_cores: Option<u16>,
    pub logical_cores: u16,
    pub frequency_mhz: u32,
}

/// The node's latest heartbeat values.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatestMetrics {
    pub last_seen: String,
    pub last_seen_ms: u64,
    pub heartbeat_interval_secs: u32,
    pub uptime_secs: u64,
    pub cpu_pct: f32,
    pub cpu_count: u16,
    pub load1: f32,
    pub mem_used_bytes: u64,
    pub mem_total_bytes: u64,
    pub disk_used_bytes: u64,
    pub disk_total_bytes: u64,
    pub net_rx_bytes_per_sec: f64,
    pub net_tx_bytes_per_sec: f64,
    pub gpu_count: u16,
    pub gpu_util_pct_avg: f32,
}

/// `GET /api/v1/nodes/{id}/metrics` query. Times are RFC 3339 or Unix seconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsQuery {
    /// Start (inclusive); default `to` − 1 h.
    pub from: Option<String>,
    /// End (exclusive); default now.
    pub to: Option<String>,
    /// Bucket width in seconds (or `30s`, `5m`, `1h`); default so that about 360 points come back.
    pub step: Option<String>,
}

/// A metrics series: one point per bucket that has data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricsSeries {
    pub node_id: String,
    pub from: String,
    pub to: String,
    pub step_secs: u32,
    pub points: Vec<MetricsPoint>,
}

/// Averages over one bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricsPoint {
    /// Bucket start, Unix seconds.
    pub ts: u32,
    pub samples: u64,
    pub cpu_pct: f64,
    pub load1: f64,
    pub mem_used_bytes: f64,
    pub mem_total_bytes: u64,
    pub disk_used_bytes: f64,
    pub net_rx_bytes_per_sec: f64,
    pub net_tx_bytes_per_sec: f64,
    pub gpu_util_pct: f64,
}

/// `GET /api/v1/health`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Health {
    /// `ok` when every dependency answers, else `degraded`.
    pub status: String,
    pub nats: Check,
    pub clickhouse: Check,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Check {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /api/v1/fleet/summary`: what the dashboard shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetSummary {
    pub total: u64,
    pub online: u64,
    pub suspect: u64,
    pub offline: u64,
    pub gpus: u64,
    /// Nodes per 10 %-wide CPU busy bucket (0–10 %, …, 90–100 %), online nodes only.
    pub cpu_histogram: [u64; 10],
    /// Nodes per 10 %-wide memory-used bucket, online nodes only.
    pub mem_histogram: [u64; 10],
    /// Nodes per 10 %-wide average GPU utilisation bucket, online nodes with GPUs only.
    pub gpu_histogram: [u64; 10],
    /// Newest inventory reports: nodes that joined or changed.
    pub recently_changed: Vec<NodeChange>,
    /// Suspect and offline nodes, most recently seen first.
    pub attention: Vec<NodeSummary>,
}

/// A node whose inventory was reported recently.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeChange {
    pub id: String,
    pub hostname: String,
    pub reported_at: String,
    pub reported_at_ms: u64,
}

/// `POST /api/v1/tasks`: what to run where. Unknown fields are rejected.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CreateTask {
    /// `command`, `script` or `hook`.
    pub kind: String,
    /// `command`: program and arguments.
    pub argv: Vec<String>,
    /// `script`: the body, run by `interpreter` (default `/bin/sh`).
    pub script: String,
    pub interpreter: String,
    /// `hook`: an executable's name in the agent's hooks directory, and its arguments.
    pub hook: String,
    pub args: Vec<String>,
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
    /// Who asks (recorded in the event); default `api`.
    pub requested_by: String,
}

/// Which nodes a task runs on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskTargets {
    /// Explicit node ids; empty: every node (that passes the other filters).
    pub node_ids: Vec<String>,
    /// `key=value`; reserved for the clusters-and-labels issue (rejected until then).
    pub labels: Vec<String>,
    /// Cluster names; reserved for the clusters-and-labels issue (rejected until then).
    pub clusters: Vec<String>,
    /// Liveness states allowed; default `["online"]`.
    pub status: Vec<NodeStatus>,
}

/// The answer to a task request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskCreated {
    pub task_id: String,
    pub expected_nodes: Vec<String>,
}

/// Nodes of a task per ledger state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskCounts {
    pub expected: u64,
    pub dispatched: u64,
    pub accepted: u64,
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
pub struct TaskPage {
    pub tasks: Vec<TaskSummary>,
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
}

/// `GET /api/v1/tasks` query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskListQuery {
    pub limit: Option<u32>,
    pub offset: Option<u64>,
}

/// One node's line in a task's ledger.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskNode {
    pub node_id: String,
    /// expected, dispatched, accepted, running, succeeded, failed, timed_out, cancelled,
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
pub struct TaskDetail {
    pub summary: TaskSummary,
    pub spec: serde_json::Value,
    pub selector: serde_json::Value,
    pub cancel_requested: bool,
    pub nodes: Vec<TaskNode>,
}

/// `GET /api/v1/tasks/{id}/nodes/{node}/output`: the output kept, per stream, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskOutput {
    pub task_id: String,
    pub node_id: String,
    /// Output as UTF-8 (invalid bytes replaced).
    pub stdout: String,
    pub stderr: String,
    pub chunks: u64,
    pub truncated: bool,
}

/// A cluster: a named group of nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cluster {
    pub cluster_id: String,
    pub name: String,
    pub description: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Nodes assigned to it.
    pub nodes: u64,
}

/// `GET /api/v1/clusters`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterList {
    pub clusters: Vec<Cluster>,
}

/// `GET /api/v1/clusters/{id}`: the cluster and its nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterDetail {
    pub cluster: Cluster,
    pub node_ids: Vec<String>,
}

/// `POST /api/v1/clusters`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CreateCluster {
    pub name: String,
    pub description: String,
    pub requested_by: String,
}

/// `PATCH /api/v1/clusters/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RenameCluster {
    pub name: String,
    pub requested_by: String,
}

/// `PUT /api/v1/nodes/{id}/labels`: the operator's labels of a node (`key=value`), replacing
/// the operator's earlier set; an operator label overrides the agent's label of the same key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SetLabels {
    pub labels: Vec<String>,
    pub requested_by: String,
}

/// A change the control plane accepted; it is visible once projected (typically well under a
/// second).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Accepted {
    pub event_id: String,
    /// The cluster the change is about, where there is one.
    pub cluster_id: Option<String>,
    /// The rule, silence or channel the change is about, where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// A notification channel as the API shows it (the secret is never returned).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Channel {
    pub channel_id: String,
    pub name: String,
    /// `webhook` or `slack`.
    pub kind: String,
    pub url: String,
    pub has_secret: bool,
}

/// `GET /api/v1/channels`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChannelList {
    pub channels: Vec<Channel>,
}

/// An alert rule as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRule {
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
    /// Cluster ids, labels, node ids.
    pub scope: RuleScope,
    /// Channel ids.
    pub channels: Vec<String>,
    pub enabled: bool,
    pub updated_at: String,
    pub updated_by: String,
    /// Alerts of this rule firing now.
    pub firing: u64,
}

/// `GET /api/v1/alerts/rules`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleList {
    pub rules: Vec<AlertRule>,
}

/// One alert: a rule's condition on one node, from firing to resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub alert_id: String,
    pub rule_id: String,
    pub rule_name: String,
    pub node_id: String,
    pub severity: String,
    /// `firing` or `resolved`.
    pub state: String,
    pub value: Option<f64>,
    pub threshold: f64,
    pub summary: String,
    pub fired_at: String,
    pub resolved_at: Option<String>,
    /// `recovered`, `rule_changed`, `rule_deleted` or `out_of_scope`; empty while firing.
    pub resolve_reason: String,
    /// The silence that muted it when it fired; empty when none.
    pub silenced_by: String,
    /// The silence muting it now (firing alerts); empty when none.
    pub muted_by: String,
}

/// `GET /api/v1/alerts` query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertListQuery {
    /// `firing` (default), `resolved` or `all`.
    pub state: Option<String>,
    pub severity: Option<String>,
    /// Rule id or name.
    pub rule: Option<String>,
    pub node: Option<String>,
    /// Default 100, at most 1000.
    pub limit: Option<u32>,
}

/// `GET /api/v1/alerts` (also `/api/v1/alerts/list`): newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertList {
    pub alerts: Vec<Alert>,
    /// All alerts the query matches, beyond `limit` too.
    pub total: u64,
}

/// One firing or resolution in the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub at: String,
    /// `fired` or `resolved`.
    pub kind: String,
    pub alert_id: String,
    pub rule_id: String,
    pub rule_name: String,
    pub node_id: String,
    pub severity: String,
    pub value: Option<f64>,
    pub summary: String,
    /// Resolutions: why.
    pub reason: String,
    pub silenced_by: String,
}

/// `GET /api/v1/alerts/history` (query as [`AlertListQuery`]; `state` ignored): newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertHistory {
    pub events: Vec<AlertEvent>,
}

/// A silence as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub silence_id: String,
    pub rule_id: String,
    pub node_id: String,
    pub cluster_id: String,
    pub starts_at: String,
    pub ends_at: String,
    pub reason: String,
    pub created_by: String,
    /// In force now.
    pub active: bool,
}

/// `GET /api/v1/silences`: active first, then the most recently ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SilenceList {
    pub silences: Vec<Silence>,
}
