//! The fleet read service: the node list, the summary, a node's metrics and health.
//! A node's status (online / suspect / offline) is the liveness tracker's last judgement
//! (`node_liveness`, from `NodeBecameSuspect` / `NodeWentOffline` / `NodeCameBack`); a node it
//! never judged is online. The node list and the summary are answered from the fleet snapshot
//! ([`crate::snapshot`]), a past summary from one folded for that time ([`crate::at`]); metrics
//! query ClickHouse per request. Node detail is [`crate::node`].

use std::time::Duration;

use clickhouse::Row;
use nerve_projections::heartbeats::{HEARTBEATS, NODE_STATE};
use nerve_projections::rollups::{HEARTBEATS_1H, HEARTBEATS_1M};
use nerve_schemas::subjects;
use serde::Deserialize;

use crate::AppState;
use crate::at;
use crate::dto::fleet::*;
use crate::dto::{Check, Health};
use crate::error::ApiError;
use crate::snapshot::{Selection, Snapshot};
use crate::time::{parse_step, parse_time, rfc3339_exact, rfc3339_s};

/// Default page size of the node list.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Points the metrics series aims at when no step is given.
pub const DEFAULT_POINTS: u64 = 360;

pub(crate) fn check_node_id(id: &str) -> Result<(), ApiError> {
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

/// One page of nodes: filtered by status, search text, cluster, label and maintenance
/// state, sorted and paginated
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
        maintenance: query.maintenance,
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

/// Status counts, utilisation distributions (of online nodes), nodes needing attention, the
/// latest inventory reports and the alerts firing: now, from the fleet snapshot, or as they were
/// at `at_ms` ([`crate::at::fleet`]).
pub async fn summary(state: &AppState, at_ms: Option<u64>) -> Result<FleetSummary, ApiError> {
    let Some(at_ms) = at_ms else {
        let (fleet, alerts) = tokio::try_join!(
            state.snapshots().fleet(),
            at::firing(state.ch(), None, None)
        )?;
        return Ok(FleetSummary {
            alerts_firing: alerts.len() as u64,
            ..summarize(&fleet)
        });
    };
    let (fleet, alerts) = tokio::try_join!(
        at::fleet(state.ch(), at_ms),
        at::firing(state.ch(), None, Some(at_ms))
    )?;
    let mut out = summarize(&fleet);
    at::fill_last_samples(state.ch(), &mut out.attention, at_ms).await?;
    out.alerts_firing = alerts.len() as u64;
    out.as_of = Some(rfc3339_exact(at_ms));
    Ok(out)
}

/// The summary of one fleet snapshot (no alerts, no `as_of`).
fn summarize(fleet: &Snapshot) -> FleetSummary {
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
        alerts_firing: 0,
        cordoned: 0,
        remediating: 0,
        verifying: 0,
        service_required: 0,
        as_of: None,
    };
    // Tenths, 90 % and over in the last: as `least(floor(x / 10), 9)` did in SQL.
    let bucket = |pct: f64| (pct / 10.0).floor().clamp(0.0, 9.0) as usize;
    for n in fleet.nodes() {
        out.gpus += u64::from(n.gpu_count);
        match n.maintenance {
            Maintenance::InService => {}
            Maintenance::Cordoned => out.cordoned += 1,
            Maintenance::Remediating => out.remediating += 1,
            Maintenance::Verifying => out.verifying += 1,
            Maintenance::ServiceRequired => out.service_required += 1,
        }
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
    out
}

/// A point's columns (after its bucket) from `heartbeats`.
const RAW_POINT: &str = "count(), avg(cpu_pct), avg(load1), avg(mem_used_bytes), \
    max(mem_total_bytes), avg(disk_used_bytes), avg(net_rx_bytes_per_sec), \
    avg(net_tx_bytes_per_sec), \
    avg(if(length(gpu_util_pct) = 0, 0, arraySum(gpu_util_pct) / length(gpu_util_pct)))";

/// The same from a roll-up: sums over counts (see `nerve_projections::rollups`).
const ROLLUP_POINT: &str = "sum(samples), sum(cpu_pct_milli) / 1000 / sum(samples), \
    sum(load1_milli) / 1000 / sum(samples), sum(mem_used_bytes_sum) / sum(samples), \
    intDiv(sum(mem_total_bytes_sum), sum(samples)), sum(disk_used_bytes_sum) / sum(samples), \
    sum(net_rx_bytes) / sum(covered_secs), sum(net_tx_bytes) / sum(covered_secs), \
    if(sum(gpu_samples) = 0, 0, sum(gpu_util_milli) / 1000 / sum(gpu_samples))";

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

/// A node's metrics averaged per `step` over `[from, to)`: from the raw heartbeats, or for a
/// step of whole minutes or hours from their roll-up (kept far longer than the raw rows).
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
    // Whole hours or minutes: from a roll-up (sums and counts), which outlives the raw rows.
    let (source, columns) = match step {
        s if s % 3600 == 0 => (HEARTBEATS_1H, ROLLUP_POINT),
        s if s % 60 == 0 => (HEARTBEATS_1M, ROLLUP_POINT),
        _ => (HEARTBEATS, RAW_POINT),
    };
    let rows: Vec<PointRow> = state
        .ch()
        .query(&format!(
            "SELECT toUInt32(intDiv(toUInt32(ts), ?) * ?) AS bucket, {columns} \
             FROM {source} \
             WHERE node_id = ? AND ts >= toDateTime(?) AND ts < toDateTime(?) \
             GROUP BY bucket ORDER BY bucket"
        ))
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
        source: source.to_owned(),
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
