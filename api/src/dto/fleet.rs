//! The fleet: the node list and its query, node detail with inventory and metrics, and the
//! dashboard summary.

use serde::{Deserialize, Serialize};

/// Liveness judged from the last heartbeat against the node's own interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// Where a node stands for scheduling and repair (the event contract's `MaintenanceState`,
/// mirrored here so the console needs no Avro): tasks skip every state but `in_service`
/// unless a request names the node or sets `include_cordoned`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Maintenance {
    #[default]
    InService,
    Cordoned,
    Remediating,
    Verifying,
    ServiceRequired,
}

impl Maintenance {
    pub const ALL: [Maintenance; 5] = [
        Maintenance::InService,
        Maintenance::Cordoned,
        Maintenance::Remediating,
        Maintenance::Verifying,
        Maintenance::ServiceRequired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Maintenance::InService => "in_service",
            Maintenance::Cordoned => "cordoned",
            Maintenance::Remediating => "remediating",
            Maintenance::Verifying => "verifying",
            Maintenance::ServiceRequired => "service_required",
        }
    }

    /// The state named `text`; empty (never changed) is in service.
    pub fn parse(text: &str) -> Option<Self> {
        if text.is_empty() {
            return Some(Maintenance::InService);
        }
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether untargeted work skips the node: every state but in service.
    pub fn held(self) -> bool {
        self != Maintenance::InService
    }

    /// How the console writes it.
    pub fn label(self) -> &'static str {
        match self {
            Maintenance::InService => "in service",
            Maintenance::Cordoned => "cordoned",
            Maintenance::Remediating => "remediating",
            Maintenance::Verifying => "verifying",
            Maintenance::ServiceRequired => "service required",
        }
    }
}

/// `PUT /api/v1/nodes/{id}/maintenance`: an operator moves a node to `cordoned`,
/// `service_required` or back to `in_service` (remediating and verifying belong to policies).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetMaintenance {
    pub state: Maintenance,
    /// Why, for the history (required, at most 500 characters).
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 500))]
    pub reason: String,
}

/// A node's maintenance state and how it got there.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MaintenanceInfo {
    pub state: Maintenance,
    /// When the state was entered (RFC 3339); `None`: never changed.
    pub since: Option<String>,
    /// Its changes, newest first (at most 50).
    pub history: Vec<MaintenanceChange>,
}

/// One change of a node's maintenance state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MaintenanceChange {
    /// RFC 3339, UTC.
    pub at: String,
    pub at_ms: u64,
    pub state: Maintenance,
    pub reason: String,
    /// The remediation policy and run that made it; empty for an operator's.
    pub policy_id: String,
    pub run_id: String,
    pub requested_by: String,
}

/// `GET /api/v1/nodes` query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
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
    /// Only nodes in this maintenance state.
    pub maintenance: Option<Maintenance>,
}

/// What the node list can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// Where it stands for scheduling and repair.
    #[serde(default)]
    pub maintenance: Maintenance,
}

/// A page of nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodePage {
    pub nodes: Vec<NodeSummary>,
    /// Nodes matching the filter, all pages.
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
}

/// `GET /api/v1/nodes/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// Its alerts firing, newest first.
    #[serde(default)]
    pub alerts: Vec<OpenAlert>,
    /// Its maintenance state with its history.
    #[serde(default)]
    pub maintenance: MaintenanceInfo,
    /// Its remediation journal (runs' steps, holds), newest first, at most 30 entries.
    #[serde(default)]
    pub remediation: Vec<crate::dto::remediation::RunEntry>,
    /// The past time this answers for (`?at=`, RFC 3339 to the millisecond); `None`: now.
    #[serde(default)]
    pub as_of: Option<String>,
}

/// `?at=T` of node detail and the fleet summary: the state as it was at T (Unix seconds or
/// RFC 3339, fractions of a second kept), every event that occurred at or before T counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct AsOfQuery {
    pub at: Option<String>,
}

/// An alert firing on a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OpenAlert {
    pub alert_id: String,
    pub rule_id: String,
    pub rule_name: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    pub summary: String,
    /// RFC 3339, UTC.
    pub fired_at: String,
}

/// A cluster as other objects mention it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterRef {
    pub cluster_id: String,
    pub name: String,
}

/// One event about a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cpu {
    pub model: String,
    pub vendor: String,
    pub physical_cores: Option<u16>,
    pub logical_cores: u16,
    pub frequency_mhz: u32,
}

/// The node's latest heartbeat values.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricsSeries {
    pub node_id: String,
    pub from: String,
    pub to: String,
    pub step_secs: u32,
    /// The table the points were read from: `heartbeats` (raw), or a roll-up —
    /// `heartbeats_1m` for a step of whole minutes, `heartbeats_1h` of whole hours — which
    /// reach back further than the raw rows' retention.
    #[serde(default)]
    pub source: String,
    pub points: Vec<MetricsPoint>,
}

/// Averages over one bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// `GET /api/v1/fleet/summary`: what the dashboard shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// Alerts firing, fleet-wide.
    #[serde(default)]
    pub alerts_firing: u64,
    /// Nodes out of service: cordoned, remediating, verifying, service required.
    #[serde(default)]
    pub cordoned: u64,
    #[serde(default)]
    pub remediating: u64,
    #[serde(default)]
    pub verifying: u64,
    #[serde(default)]
    pub service_required: u64,
    /// The past time this answers for (`?at=`, RFC 3339 to the millisecond); `None`: now.
    #[serde(default)]
    pub as_of: Option<String>,
}

/// A node whose inventory was reported recently.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeChange {
    pub id: String,
    pub hostname: String,
    pub reported_at: String,
    pub reported_at_ms: u64,
}
