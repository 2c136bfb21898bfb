//! The CNET agent's paths, answered for the fleet: `/api/health` (is this server alive),
//! `/api/node` (this server instance), `/api/resources` (what the fleet has) and
//! `/api/resources/usage` (how much of it is in use now).

use serde::{Deserialize, Serialize};

/// `GET /api/health`: liveness in the CNET agent's shape, with Nerve's dependency checks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CnetHealth {
    /// `healthy` when NATS and ClickHouse answer, else `unhealthy` (and HTTP 503).
    pub status: String,
    /// RFC 3339, UTC.
    pub timestamp: String,
    /// Since this server started, e.g. `3h 2m 5s`.
    pub uptime: String,
    pub uptime_secs: u64,
    pub nats: super::Check,
    pub clickhouse: super::Check,
}

/// `GET /api/node`: the server instance that answers (the CNET agent's "this node").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerNode {
    /// The host name and process: unique among running instances.
    pub node_id: String,
    /// The host name.
    pub node_name: String,
    /// Where the API listens.
    pub address: String,
    pub version: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub uptime_secs: u64,
    /// What this process serves: `api` (and the console).
    pub roles: Vec<String>,
}

/// Nodes by liveness state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeCounts {
    pub total: u64,
    pub online: u64,
    pub suspect: u64,
    pub offline: u64,
}

/// `GET /api/resources`: the capacity of every node that ever reported (its newest heartbeat),
/// and of those online.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FleetResources {
    pub nodes: NodeCounts,
    /// Every known node.
    pub total: Capacity,
    /// Nodes the liveness tracker holds online.
    pub online: Capacity,
}

/// What a set of nodes has.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Capacity {
    pub cpu_cores: u64,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    pub gpus: u64,
}

/// `GET /api/resources/usage`: what the online nodes use, from their newest heartbeats.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FleetUsage {
    /// Online nodes (the ones counted).
    pub nodes: u64,
    pub cpu: Usage,
    pub memory: Usage,
    pub disk: Usage,
    /// GPUs: `used` is busy GPUs' worth (utilisation × count), `total` the GPU count.
    pub gpu: Usage,
    pub network: Network,
    /// RFC 3339, UTC: when this was computed.
    pub timestamp: String,
}

/// Used of total, in the resource's unit (cores, bytes, GPUs), and the share in percent.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    pub used: f64,
    pub total: f64,
    pub used_pct: f64,
}

/// Traffic summed over the online nodes, bytes per second.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Network {
    pub rx_bytes_per_sec: f64,
    pub tx_bytes_per_sec: f64,
}

impl Usage {
    /// `used` of `total` (0 % of nothing).
    pub fn of(used: f64, total: f64) -> Self {
        let used_pct = if total > 0.0 {
            100.0 * used / total
        } else {
            0.0
        };
        Self {
            used,
            total,
            used_pct,
        }
    }
}
