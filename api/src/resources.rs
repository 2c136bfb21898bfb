//! The CNET agent's paths over the fleet: this server instance ([`server_node`]), the fleet's
//! capacity ([`resources`]) and its use ([`usage`]), from every node's newest heartbeat
//! (`node_state`) and the liveness tracker's verdict, in one ClickHouse query.

use clickhouse::Row;
use nerve_projections::heartbeats::NODE_STATE;
use nerve_projections::node_events::NODE_LIVENESS;
use serde::Deserialize;

use crate::AppState;
use crate::dto::resources::{
    Capacity, CnetHealth, FleetResources, FleetUsage, Network, NodeCounts, ServerNode, Usage,
};
use crate::error::ApiError;
use crate::time::rfc3339_ms;

/// One liveness state's sums over its nodes' newest heartbeats.
#[derive(Debug, Default, Row, Deserialize)]
struct StateRow {
    status: String,
    nodes: u64,
    cpu_cores: u64,
    cpu_cores_used: f64,
    mem_total: u64,
    mem_used: u64,
    disk_total: u64,
    disk_used: u64,
    gpus: u64,
    gpus_busy: f64,
    net_rx: f64,
    net_tx: f64,
}

/// Sums per liveness state (`online`, `suspect`, `offline`; a node never judged counts as
/// online, as in the node list).
async fn by_state(state: &AppState) -> Result<Vec<StateRow>, ApiError> {
    let sql = format!(
        "SELECT if(live = '', 'online', live) AS status, count() AS nodes, \
                sum(toUInt64(cpu_count)) AS cpu_cores, \
                sum(cpu_pct * cpu_count / 100) AS cpu_cores_used, \
                sum(mem_total_bytes) AS mem_total, sum(mem_used_bytes) AS mem_used, \
                sum(disk_total_bytes) AS disk_total, sum(disk_used_bytes) AS disk_used, \
                sum(toUInt64(gpu_count)) AS gpus, \
                sum(gpu_util_pct_avg * gpu_count / 100) AS gpus_busy, \
                sum(net_rx_bytes_per_sec) AS net_rx, sum(net_tx_bytes_per_sec) AS net_tx \
         FROM (SELECT node_id, cpu_count, cpu_pct, mem_total_bytes, mem_used_bytes, \
                      disk_total_bytes, disk_used_bytes, gpu_count, gpu_util_pct_avg, \
                      net_rx_bytes_per_sec, net_tx_bytes_per_sec \
               FROM {NODE_STATE} FINAL) \
         ANY LEFT JOIN (SELECT node_id, state AS live FROM {NODE_LIVENESS} FINAL) USING node_id \
         GROUP BY status"
    );
    Ok(state.ch().query(&sql).fetch_all().await?)
}

fn capacity(rows: &[&StateRow]) -> Capacity {
    rows.iter().fold(Capacity::default(), |c, r| Capacity {
        cpu_cores: c.cpu_cores + r.cpu_cores,
        memory_bytes: c.memory_bytes + r.mem_total,
        disk_bytes: c.disk_bytes + r.disk_total,
        gpus: c.gpus + r.gpus,
    })
}

/// What the fleet has: node counts by state, capacity of all and of the online ones.
pub async fn resources(state: &AppState) -> Result<FleetResources, ApiError> {
    let rows = by_state(state).await?;
    let mut nodes = NodeCounts::default();
    for r in &rows {
        nodes.total += r.nodes;
        match r.status.as_str() {
            "online" => nodes.online += r.nodes,
            "suspect" => nodes.suspect += r.nodes,
            _ => nodes.offline += r.nodes,
        }
    }
    let all: Vec<&StateRow> = rows.iter().collect();
    let online: Vec<&StateRow> = rows.iter().filter(|r| r.status == "online").collect();
    Ok(FleetResources {
        nodes,
        total: capacity(&all),
        online: capacity(&online),
    })
}

/// What the online nodes use now (a suspect or offline node's last heartbeat is not use).
pub async fn usage(state: &AppState) -> Result<FleetUsage, ApiError> {
    let rows = by_state(state).await?;
    let none = StateRow::default();
    let r = rows.iter().find(|r| r.status == "online").unwrap_or(&none);
    Ok(FleetUsage {
        nodes: r.nodes,
        cpu: Usage::of(r.cpu_cores_used, r.cpu_cores as f64),
        memory: Usage::of(r.mem_used as f64, r.mem_total as f64),
        disk: Usage::of(r.disk_used as f64, r.disk_total as f64),
        gpu: Usage::of(r.gpus_busy, r.gpus as f64),
        network: Network {
            rx_bytes_per_sec: r.net_rx,
            tx_bytes_per_sec: r.net_tx,
        },
        timestamp: rfc3339_ms(crate::time::now_ms()),
    })
}

/// The server instance answering.
pub fn server_node(state: &AppState) -> ServerNode {
    let host = nerve_platform::hostname();
    let started = state.started_ms();
    ServerNode {
        node_id: format!("{host}-{}", std::process::id()),
        node_name: host,
        address: state.config().listen_addr.to_string(),
        version: env!("CARGO_PKG_VERSION").into(),
        started_at: rfc3339_ms(started),
        uptime_secs: crate::time::now_ms().saturating_sub(started) / 1000,
        roles: vec!["api".into()],
    }
}

/// Liveness in the CNET agent's shape; healthy when NATS and ClickHouse answer.
pub async fn health(state: &AppState) -> CnetHealth {
    let h = crate::fleet::health(state).await;
    let now = crate::time::now_ms();
    let uptime_secs = now.saturating_sub(state.started_ms()) / 1000;
    CnetHealth {
        status: if h.status == "ok" {
            "healthy"
        } else {
            "unhealthy"
        }
        .into(),
        timestamp: rfc3339_ms(now),
        uptime: humantime::format_duration(std::time::Duration::from_secs(uptime_secs)).to_string(),
        uptime_secs,
        nats: h.nats,
        clickhouse: h.clickhouse,
    }
}
