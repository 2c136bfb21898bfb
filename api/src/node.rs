//! Node detail: a node's inventory, latest sample with its GPUs, status, recent events,
//! clusters, labels, firing alerts, maintenance state and remediation journal — now (the current-state tables, clusters and labels from
//! the fleet snapshot) or as it was at a past time ([`crate::at::node`]).

use clickhouse::Row;
use nerve_projections::heartbeats::{NODE_STATE, worst_health};
use nerve_projections::inventory::{INVENTORY, InventoryRow};
use nerve_projections::node_events::{NODE_EVENTS, NODE_LIVENESS, NodeEventRow};
use serde::Deserialize;

use crate::AppState;
use crate::at;
use crate::dto::fleet::*;
use crate::error::ApiError;
use crate::fleet::check_node_id;
use crate::snapshot::status_from;
use crate::time::{rfc3339_exact, rfc3339_ms, rfc3339_s};

/// Events shown with a node.
const NODE_EVENTS_SHOWN: u32 = 50;

#[derive(Debug, Row, Deserialize)]
struct StateRow {
    last_seen_ms: u64,
    interval_secs: u32,
    uptime_secs: u64,
    cpu_pct: f32,
    cpu_count: u16,
    load1: f32,
    mem_used_bytes: u64,
    mem_total_bytes: u64,
    disk_used_bytes: u64,
    disk_total_bytes: u64,
    net_rx_bytes_per_sec: f64,
    net_tx_bytes_per_sec: f64,
    gpu_count: u16,
    gpu_util_pct_avg: f32,
    gpu_health: String,
    /// The latest heartbeat as the agent sent it (empty in rows written before it was kept).
    #[serde(with = "serde_bytes")]
    heartbeat_avro: Vec<u8>,
    /// The liveness tracker's state ('' if it has not judged the node yet) and since when.
    live_state: String,
    live_since_ms: u64,
}

fn json_doc(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

/// The GPU samples of a heartbeat kept in `node_state`, as JSON; none for an empty row (written
/// before the heartbeat was kept: the node's next heartbeat fills it) or one that does not
/// decode (logged).
fn gpu_samples(node_id: &str, heartbeat_avro: &[u8]) -> serde_json::Value {
    if heartbeat_avro.is_empty() {
        return serde_json::json!([]);
    }
    match nerve_schemas::decode::<nerve_schemas::HeartbeatRecorded>(heartbeat_avro) {
        Ok(hb) => serde_json::to_value(&hb.gpus).unwrap_or_else(|_| serde_json::json!([])),
        Err(e) => {
            tracing::warn!(node_id, error = %e, "node_state holds a heartbeat that does not decode");
            serde_json::json!([])
        }
    }
}

/// Inventory, latest metrics, GPU health, liveness, recent events, clusters, labels and firing
/// alerts of one node, now or as they were at `at_ms`; 404 if the node had reported nothing.
pub async fn node_detail(
    state: &AppState,
    id: &str,
    at_ms: Option<u64>,
) -> Result<NodeDetail, ApiError> {
    check_node_id(id)?;
    match at_ms {
        None => now(state, id).await,
        Some(at_ms) => past(state, id, at_ms).await,
    }
}

/// [`node_detail`] now.
async fn now(state: &AppState, id: &str) -> Result<NodeDetail, ApiError> {
    // Independent reads: asked of ClickHouse at once.
    let inventory = state
        .ch()
        .query(&format!(
            "SELECT ?fields FROM {INVENTORY} FINAL WHERE node_id = ? LIMIT 1"
        ))
        .bind(id)
        .fetch_optional::<InventoryRow>();
    // The latest sample with the liveness state joined in (none yet: '' and 0).
    let latest = state
        .ch()
        .query(&format!(
            "SELECT last_seen_ms, interval_secs, uptime_secs, cpu_pct, cpu_count, load1, \
                    mem_used_bytes, mem_total_bytes, disk_used_bytes, disk_total_bytes, \
                    net_rx_bytes_per_sec, net_tx_bytes_per_sec, gpu_count, gpu_util_pct_avg, \
                    gpu_health, heartbeat_avro, live_state, live_since_ms \
             FROM {NODE_STATE} FINAL \
             ANY LEFT JOIN (SELECT node_id, state AS live_state, changed_at_ms AS live_since_ms \
                            FROM {NODE_LIVENESS} FINAL WHERE node_id = ?) USING node_id \
             WHERE node_id = ? LIMIT 1"
        ))
        .bind(id)
        .bind(id)
        .fetch_optional::<StateRow>();
    let events = state
        .ch()
        .query(&format!(
            "SELECT ?fields FROM {NODE_EVENTS} WHERE node_id = ? \
             ORDER BY ts_ms DESC, stream_seq DESC LIMIT ?"
        ))
        .bind(id)
        .bind(NODE_EVENTS_SHOWN)
        .fetch_all::<NodeEventRow>();
    // Clusters and labels change rarely: from the fleet snapshot, as the node list filters them.
    let tags = async {
        let fleet = state.snapshots().fleet().await?;
        Ok::<_, ApiError>(fleet.tags(id).cloned().unwrap_or_default())
    };
    let (inventory, latest, events, tags, alerts, maintenance, remediation) = tokio::try_join!(
        async { inventory.await.map_err(ApiError::from) },
        async { latest.await.map_err(ApiError::from) },
        async { events.await.map_err(ApiError::from) },
        tags,
        at::firing(state.ch(), Some(id), None),
        crate::maintenance::info(state.ch(), id, None),
        crate::remediation::journal(state, id, None),
    )?;
    let crate::tags::Tags { clusters, labels } = tags;
    if inventory.is_none() && latest.is_none() {
        return Err(ApiError::NotFound(format!("node {id} not found")));
    }
    Ok(NodeDetail {
        clusters,
        labels,
        id: id.to_owned(),
        status: latest.as_ref().map(|l| status_from(&l.live_state)),
        status_since: latest
            .as_ref()
            .filter(|l| !l.live_state.is_empty())
            .map(|l| rfc3339_ms(l.live_since_ms)),
        gpu_health: latest
            .as_ref()
            .map(|l| l.gpu_health.clone())
            .unwrap_or_default(),
        gpus: latest.as_ref().map_or(serde_json::json!([]), |l| {
            gpu_samples(id, &l.heartbeat_avro)
        }),
        events: events.into_iter().map(event_item).collect(),
        inventory: inventory.map(inventory_of),
        latest: latest.map(StateRow::latest),
        alerts,
        maintenance,
        remediation,
        as_of: None,
    })
}

/// [`node_detail`] as it was at `at_ms`.
async fn past(state: &AppState, id: &str, at_ms: u64) -> Result<NodeDetail, ApiError> {
    let (n, maintenance, remediation) = tokio::try_join!(
        at::node(state.ch(), id, at_ms, NODE_EVENTS_SHOWN),
        crate::maintenance::info(state.ch(), id, Some(at_ms)),
        crate::remediation::journal(state, id, Some(at_ms)),
    )?;
    if n.inventory.is_none() && n.heartbeat.is_none() && n.judged.is_none() {
        return Err(ApiError::NotFound(format!(
            "node {id} had not reported at {}",
            rfc3339_exact(at_ms)
        )));
    }
    let judged = n.judged.as_ref();
    let hb = n.heartbeat.as_ref();
    Ok(NodeDetail {
        id: id.to_owned(),
        status: Some(status_from(judged.map_or("", |j| j.state.as_str()))),
        status_since: judged.map(|j| rfc3339_ms(j.changed_at_ms)),
        gpu_health: hb.map_or(String::new(), |h| {
            worst_health(h.gpu_health.iter().map(String::as_str)).to_owned()
        }),
        gpus: hb.map_or(serde_json::json!([]), at::gpus),
        events: n.events.into_iter().map(event_item).collect(),
        clusters: n.tags.clusters,
        labels: n.tags.labels,
        inventory: n.inventory.map(inventory_of),
        latest: n.heartbeat.map(|h| {
            let gpus = h.gpu_util_pct.len();
            LatestMetrics {
                last_seen: rfc3339_ms(h.ts_ms),
                last_seen_ms: h.ts_ms,
                heartbeat_interval_secs: h.interval_secs,
                uptime_secs: h.uptime_secs,
                cpu_pct: h.cpu_pct,
                cpu_count: h.cpu_count,
                load1: h.load1,
                mem_used_bytes: h.mem_used_bytes,
                mem_total_bytes: h.mem_total_bytes,
                disk_used_bytes: h.disk_used_bytes,
                disk_total_bytes: h.disk_total_bytes,
                net_rx_bytes_per_sec: h.net_rx_bytes_per_sec,
                net_tx_bytes_per_sec: h.net_tx_bytes_per_sec,
                gpu_count: gpus.min(usize::from(u16::MAX)) as u16,
                gpu_util_pct_avg: match gpus {
                    0 => 0.0,
                    _ => h.gpu_util_pct.iter().sum::<f32>() / gpus as f32,
                },
            }
        }),
        alerts: n.alerts,
        maintenance,
        remediation,
        as_of: Some(rfc3339_exact(at_ms)),
    })
}

fn event_item(e: NodeEventRow) -> NodeEventItem {
    NodeEventItem {
        at: rfc3339_ms(e.ts_ms),
        at_ms: e.ts_ms,
        kind: e.kind,
        severity: e.severity,
        summary: e.summary,
    }
}

/// The node's inventory as the API shows it (JSON sections parsed).
fn inventory_of(i: InventoryRow) -> Inventory {
    Inventory {
        reported_at: rfc3339_ms(i.reported_at_ms),
        hostname: i.hostname,
        os_name: i.os_name,
        os_version: i.os_version,
        kernel_version: i.kernel_version,
        arch: i.arch,
        boot_time: rfc3339_s(u64::from(i.boot_time)),
        agent_version: i.agent_version,
        cpu: Cpu {
            model: i.cpu_model,
            vendor: i.cpu_vendor,
            physical_cores: i.cpu_physical_cores,
            logical_cores: i.cpu_logical_cores,
            frequency_mhz: i.cpu_frequency_mhz,
        },
        memory_total_bytes: i.memory_total_bytes,
        swap_total_bytes: i.swap_total_bytes,
        disks: json_doc(&i.disks_json),
        interfaces: json_doc(&i.interfaces_json),
        gpus: json_doc(&i.gpus_json),
        collector_errors: json_doc(&i.collector_errors_json),
        detail: json_doc(&i.detail_json),
    }
}

impl StateRow {
    /// The latest sample as the API shows it.
    fn latest(self) -> LatestMetrics {
        let l = self;
        LatestMetrics {
            last_seen: rfc3339_ms(l.last_seen_ms),
            last_seen_ms: l.last_seen_ms,
            heartbeat_interval_secs: l.interval_secs,
            uptime_secs: l.uptime_secs,
            cpu_pct: l.cpu_pct,
            cpu_count: l.cpu_count,
            load1: l.load1,
            mem_used_bytes: l.mem_used_bytes,
            mem_total_bytes: l.mem_total_bytes,
            disk_used_bytes: l.disk_used_bytes,
            disk_total_bytes: l.disk_total_bytes,
            net_rx_bytes_per_sec: l.net_rx_bytes_per_sec,
            net_tx_bytes_per_sec: l.net_tx_bytes_per_sec,
            gpu_count: l.gpu_count,
            gpu_util_pct_avg: l.gpu_util_pct_avg,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The node detail's GPUs come from the heartbeat kept in `node_state`; a row from before
    /// it was kept, or bytes that do not decode, show no GPUs instead of failing the request.
    #[test]
    fn gpu_samples_come_from_the_kept_heartbeat() {
        let gpu = nerve_schemas::GpuSample {
            uuid: "GPU-1".into(),
            util_pct: 97.0,
            health: "ok".into(),
            ..Default::default()
        };
        let hb = nerve_schemas::HeartbeatRecorded::carrying("n1", 1, vec![gpu.clone()]);
        let bytes = nerve_schemas::encode(&hb).expect("encode");
        assert_eq!(
            gpu_samples("n1", &bytes),
            serde_json::to_value(vec![gpu]).expect("json")
        );
        assert_eq!(gpu_samples("n1", &[]), serde_json::json!([]));
        assert_eq!(gpu_samples("n1", b"not avro"), serde_json::json!([]));
    }
}
