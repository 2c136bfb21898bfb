//! The fleet read service: every query the API and the console make over ClickHouse.
//! A node's status (online / suspect / offline) is the liveness tracker's last judgement
//! (`node_liveness`, from `NodeBecameSuspect` / `NodeWentOffline` / `NodeCameBack`); a node it
//! never judged is online. The node list and the summary are answered from the fleet snapshot
//! ([`crate::snapshot`]); node detail queries ClickHouse per request for its inventory, latest
//! sample and events (its clusters and labels come from the snapshot), as metrics do.

use std::time::Duration;

use clickhouse::Row;
use nerve_projections::heartbeats::{HEARTBEATS, NODE_STATE};
use nerve_projections::inventory::{INVENTORY, InventoryRow};
use nerve_projections::node_events::{NODE_EVENTS, NODE_LIVENESS, NodeEventRow};
use nerve_schemas::subjects;
use serde::Deserialize;

use crate::AppState;
use crate::dto::fleet::*;
use crate::dto::{Check, Health};
use crate::error::ApiError;
use crate::snapshot::{Selection, status_from};
use crate::time::{parse_step, parse_time, rfc3339_ms, rfc3339_s};

/// Default page size of the node list.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Points the metrics series aims at when no step is given.
pub const DEFAULT_POINTS: u64 = 360;

fn check_node_id(id: &str) -> Result<(), ApiError> {
    if subjects::is_valid_node_id(id) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "invalid node id {id:?}: expected 1 to {} of [A-Za-z0-9_-]",
            subjects::NODE_ID_MAX_LEN
        )))
    }
}

/// Search text: trimmed, at most 128 characters, empty means none.
fn search_text(q: &Option<String>) -> Result<Option<&str>, ApiError> {
    match q.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) if t.chars().count() > 128 => Err(ApiError::BadRequest(
            "q must be at most 128 characters".into(),
        )),
        Some(t) => Ok(Some(t)),
    }
}

/// One page of nodes: filtered by status, search text, cluster and label, sorted and paginated
/// over the fleet snapshot.
pub async fn list_nodes(state: &AppState, query: NodeListQuery) -> Result<NodePage, ApiError> {
    let cfg = state.config();
    let limit = query
        .limit
        .unwrap_or(DEFAULT_PAGE_SIZE.min(cfg.max_page_size));
    if limit == 0 || limit > cfg.max_page_size {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {}",
            cfg.max_page_size
        )));
    }
    let offset = query.offset.unwrap_or(0);
    let label = match query.label.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(l) => Some(
            nerve_schemas::control::parse_label(l)
                .map(|l| format!("{}={}", l.key, l.value))
                .map_err(|e| ApiError::BadRequest(format!("label: {e}")))?,
        ),
    };
    let search = search_text(&query.q)?.map(str::to_owned);
    let fleet = state.snapshots().fleet().await?;
    // A cluster by id or name, as the snapshot knows them.
    let cluster = match query.cluster.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(key) => Some(
            fleet
                .cluster_id(key)
                .ok_or_else(|| ApiError::BadRequest(format!("unknown cluster {key:?}")))?
                .to_owned(),
        ),
    };
    let selection = Selection {
        status: query.status,
        not_online: false,
        search,
        cluster,
        label,
        sort: query.sort,
        order: query.order,
    };
    let (nodes, total) = fleet.page(&selection, offset, limit);
    Ok(NodePage {
        nodes,
        total,
        limit,
        offset,
    })
}

/// Status counts, utilisation distributions (of online nodes), nodes needing attention and the
/// latest inventory reports, all from the fleet snapshot.
pub async fn summary(state: &AppState) -> Result<FleetSummary, ApiError> {
    let fleet = state.snapshots().fleet().await?;
    let mut out = FleetSummary {
        total: fleet.len() as u64,
        online: 0,
        suspect: 0,
        offline: 0,
        gpus: 0,
        cpu_histogram: [0; 10],
        mem_histogram: [0; 10],
        gpu_histogram: [0; 10],
        recently_changed: Vec::new(),
        attention: Vec::new(),
    };
    // Tenths, 90 % and over in the last: as `least(floor(x / 10), 9)` did in SQL.
    let bucket = |pct: f64| (pct / 10.0).floor().clamp(0.0, 9.0) as usize;
    for n in fleet.nodes() {
        out.gpus += u64::from(n.gpu_count);
        match n.status {
            NodeStatus::Online => {
                out.online += 1;
                out.cpu_histogram[bucket(f64::from(n.cpu_pct))] += 1;
                let mem = 100.0 * n.mem_used_bytes as f64 / n.mem_total_bytes.max(1) as f64;
                out.mem_histogram[bucket(mem)] += 1;
                if n.gpu_count > 0 {
                    out.gpu_histogram[bucket(f64::from(n.gpu_util_pct_avg))] += 1;
                }
            }
            NodeStatus::Suspect => out.suspect += 1,
            NodeStatus::Offline => out.offline += 1,
        }
    }
    out.recently_changed = fleet.recently_reported(8);
    let attention = Selection {
        not_online: true,
        sort: Some(NodeSort::LastSeen),
        order: Some(SortOrder::Desc),
        ..Selection::default()
    };
    out.attention = fleet.page(&attention, 0, 8).0;
    Ok(out)
}

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

/// Inventory, latest metrics, GPU health, liveness and recent events of one node; 404 if the
/// node never reported anything.
pub async fn node_detail(state: &AppState, id: &str) -> Result<NodeDetail, ApiError> {
    check_node_id(id)?;
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
    let (inventory, latest, events, tags) = tokio::try_join!(
        async { inventory.await.map_err(ApiError::from) },
        async { latest.await.map_err(ApiError::from) },
        async { events.await.map_err(ApiError::from) },
        tags,
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
        events: events
            .into_iter()
            .map(|e| NodeEventItem {
                at: rfc3339_ms(e.ts_ms),
                at_ms: e.ts_ms,
                kind: e.kind,
                severity: e.severity,
                summary: e.summary,
            })
            .collect(),
        inventory: inventory.map(inventory_of),
        latest: latest.map(StateRow::latest),
    })
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

#[derive(Debug, Row, Deserialize)]
struct PointRow {
    bucket: u32,
    samples: u64,
    cpu_pct: f64,
    load1: f64,
    mem_used_bytes: f64,
    mem_total_bytes: u64,
    disk_used_bytes: f64,
    net_rx_bytes_per_sec: f64,
    net_tx_bytes_per_sec: f64,
    gpu_util_pct: f64,
}

/// A node's metrics averaged per `step` over `[from, to)`.
pub async fn node_metrics(
    state: &AppState,
    id: &str,
    query: MetricsQuery,
    now_ms: u64,
) -> Result<MetricsSeries, ApiError> {
    check_node_id(id)?;
    let to = match &query.to {
        Some(t) => parse_time("to", t)?,
        None => now_ms / 1000 + 1,
    };
    let from = match &query.from {
        Some(f) => parse_time("from", f)?,
        None => to.saturating_sub(3600),
    };
    if from >= to {
        return Err(ApiError::BadRequest(format!(
            "from ({from}) must be before to ({to})"
        )));
    }
    if to > u64::from(u32::MAX) {
        return Err(ApiError::BadRequest("to is past 2106".into()));
    }
    let step = match &query.step {
        Some(s) => parse_step(s)?,
        None => ((to - from) / DEFAULT_POINTS).max(1),
    };
    let max_points = u64::from(state.config().max_series_points);
    if (to - from).div_ceil(step) > max_points {
        return Err(ApiError::BadRequest(format!(
            "{} points requested; at most {max_points}: use a larger step",
            (to - from).div_ceil(step)
        )));
    }
    let known: u64 = state
        .ch()
        .query(&format!(
            "SELECT count() FROM {NODE_STATE} WHERE node_id = ?"
        ))
        .bind(id)
        .fetch_one()
        .await?;
    if known == 0 {
        return Err(ApiError::NotFound(format!("node {id} not found")));
    }
    let rows: Vec<PointRow> = state
        .ch()
        .query(&format!("SELECT toUInt32(intDiv(toUInt32(ts), ?) * ?) AS bucket, count() AS samples, \
                    avg(cpu_pct), avg(load1), avg(mem_used_bytes), max(mem_total_bytes), \
                    avg(disk_used_bytes), avg(net_rx_bytes_per_sec), avg(net_tx_bytes_per_sec), \
                    avg(if(length(gpu_util_pct) = 0, 0, arraySum(gpu_util_pct) / length(gpu_util_pct))) \
             FROM {HEARTBEATS} \
             WHERE node_id = ? AND ts >= toDateTime(?) AND ts < toDateTime(?) \
             GROUP BY bucket ORDER BY bucket"))
        .bind(step)
        .bind(step)
        .bind(id)
        .bind(from)
        .bind(to)
        .fetch_all()
        .await?;
    Ok(MetricsSeries {
        node_id: id.to_owned(),
        from: rfc3339_s(from),
        to: rfc3339_s(to),
        step_secs: step as u32,
        points: rows
            .into_iter()
            .map(|r| MetricsPoint {
                ts: r.bucket,
                samples: r.samples,
                cpu_pct: r.cpu_pct,
                load1: r.load1,
                mem_used_bytes: r.mem_used_bytes,
                mem_total_bytes: r.mem_total_bytes,
                disk_used_bytes: r.disk_used_bytes,
                net_rx_bytes_per_sec: r.net_rx_bytes_per_sec,
                net_tx_bytes_per_sec: r.net_tx_bytes_per_sec,
                gpu_util_pct: r.gpu_util_pct,
            })
            .collect(),
    })
}

/// Whether NATS and ClickHouse answer.
pub async fn health(state: &AppState) -> Health {
    let nats = match state.nats() {
        Some(c) => match c.connection_state() {
            async_nats::connection::State::Connected => Check {
                ok: true,
                error: None,
            },
            other => Check {
                ok: false,
                error: Some(format!("NATS connection {other}")),
            },
        },
        None => Check {
            ok: false,
            error: Some("NATS not configured for this server".into()),
        },
    };
    let probe = tokio::time::timeout(
        Duration::from_secs(2),
        state.ch().query("SELECT 1").fetch_one::<u8>(),
    )
    .await;
    let clickhouse = match probe {
        Ok(Ok(1)) => Check {
            ok: true,
            error: None,
        },
        Ok(Ok(other)) => Check {
            ok: false,
            error: Some(format!("unexpected answer {other}")),
        },
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "ClickHouse health probe failed");
            Check {
                ok: false,
                error: Some("ClickHouse query failed".into()),
            }
        }
        Err(_) => Check {
            ok: false,
            error: Some("ClickHouse did not answer within 2 s".into()),
        },
    };
    Health {
        status: if nats.ok && clickhouse.ok {
            "ok"
        } else {
            "degraded"
        }
        .into(),
        nats,
        clickhouse,
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
