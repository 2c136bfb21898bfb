//! The fleet as it was at a past time T, exact to the event: folded from the history tables over
//! every event that occurred at or before T (its `occurred_at`, to the millisecond). Inventory
//! from `inventory_log` (and `inventory`, the latest report, which outlives the log's
//! retention), status from the liveness tracker's judgements in `node_events` (a node it never
//! judged is online, as now), clusters and labels from `cluster_log` and `label_log`
//! ([`crate::tags::rows_at`]), maintenance states from `maintenance_log`
//! ([`crate::maintenance::states`]), firing alerts from `alert_log`, metrics from `heartbeats`.
//!
//! A node online at T heartbeated within the tracker's threshold before T, so the fleet's
//! latest samples are read from the [`RECENT_MS`] before T (one scan, bounded however long the
//! history); a suspect or offline node's last sample is the one its judgement names, read only
//! where it is shown (node detail, the summary's attention list). Reads past a table's retention
//! find nothing: the answer then has what is still kept (see `docs/analytics.md`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use clickhouse::{Client, Row};
use nerve_projections::alerts::{ALERT_LOG, ALERTS};
use nerve_projections::heartbeats::{HEARTBEATS, HeartbeatRow, worst_health};
use nerve_projections::inventory::{INVENTORY, INVENTORY_LOG, InventoryRow};
use nerve_projections::node_events::{NODE_EVENTS, NodeEventRow};
use serde::Deserialize;

use crate::dto::fleet::{NodeStatus, NodeSummary, OpenAlert};
use crate::error::ApiError;
use crate::snapshot::{Snapshot, status_from};
use crate::tags::{self, Tags};
use crate::time::rfc3339_ms;

/// How far before T the fleet's latest samples are looked for: longer than any online node's
/// silence (the tracker calls a node suspect after a few missed heartbeats).
pub const RECENT_MS: u64 = 15 * 60 * 1000;

/// A node's latest heartbeat in a window, as the node list shows it.
#[derive(Debug, Row, Deserialize)]
struct SampleRow {
    node_id: String,
    last_seen_ms: u64,
    interval_secs: u32,
    cpu_pct: f32,
    mem_used_bytes: u64,
    mem_total_bytes: u64,
    gpu_util_pct: Vec<f32>,
    gpu_health: Vec<String>,
}

impl SampleRow {
    /// Puts this sample into `n`, as the heartbeats projection folds `node_state`.
    fn apply(self, n: &mut NodeSummary) {
        let gpus = self.gpu_util_pct.len();
        n.last_seen_ms = self.last_seen_ms;
        n.last_seen = rfc3339_ms(self.last_seen_ms);
        n.heartbeat_interval_secs = self.interval_secs;
        n.cpu_pct = self.cpu_pct;
        n.mem_used_bytes = self.mem_used_bytes;
        n.mem_total_bytes = self.mem_total_bytes;
        n.gpu_count = gpus.min(usize::from(u16::MAX)) as u16;
        n.gpu_util_pct_avg = match gpus {
            0 => 0.0,
            _ => self.gpu_util_pct.iter().sum::<f32>() / gpus as f32,
        };
        n.gpu_health = worst_health(self.gpu_health.iter().map(String::as_str)).to_owned();
    }
}

/// Each node's (only `nodes`', when given) latest heartbeat in `(from_ms, to_ms]`.
async fn samples(
    ch: &Client,
    nodes: &[String],
    from_ms: u64,
    to_ms: u64,
) -> Result<Vec<SampleRow>, ApiError> {
    let only = match nodes.is_empty() {
        true => "",
        false => "AND node_id IN (SELECT arrayJoin(?))",
    };
    let mut q = ch
        .query(&format!(
            "SELECT node_id, max(ts_ms) AS last_seen_ms, \
                    argMax(interval_secs, ts_ms) AS interval_secs, \
                    argMax(cpu_pct, ts_ms) AS cpu_pct, \
                    argMax(mem_used_bytes, ts_ms) AS mem_used_bytes, \
                    argMax(mem_total_bytes, ts_ms) AS mem_total_bytes, \
                    argMax(gpu_util_pct, ts_ms) AS gpu_util_pct, \
                    argMax(gpu_health, ts_ms) AS gpu_health \
             FROM {HEARTBEATS} \
             WHERE ts >= toDateTime(?) AND ts <= toDateTime(?) AND ts_ms > ? AND ts_ms <= ? {only} \
             GROUP BY node_id"
        ))
        .bind(from_ms / 1000)
        .bind(to_ms / 1000)
        .bind(from_ms)
        .bind(to_ms);
    if !nodes.is_empty() {
        q = q.bind(nodes);
    }
    Ok(q.fetch_all().await?)
}

/// The liveness tracker's last judgement of a node at or before T.
#[derive(Debug, Row, Deserialize)]
pub struct Judged {
    pub node_id: String,
    /// `online`, `suspect` or `offline`.
    pub state: String,
    pub changed_at_ms: u64,
    pub last_heartbeat_at_ms: u64,
}

/// Every node's (or `node`'s) last liveness judgement at or before `at_ms`.
async fn judgements(ch: &Client, node: Option<&str>, at_ms: u64) -> Result<Vec<Judged>, ApiError> {
    let only = node.map_or("", |_| "AND node_id = ?");
    let mut q = ch
        .query(&format!(
            "SELECT node_id, argMax(liveness, stream_seq) AS state, \
                    argMax(ts_ms, stream_seq) AS changed_at_ms, \
                    argMax(last_heartbeat_at_ms, stream_seq) AS last_heartbeat_at_ms \
             FROM {NODE_EVENTS} \
             WHERE liveness != '' AND ts <= toDateTime(?) AND ts_ms <= ? {only} \
             GROUP BY node_id"
        ))
        .bind(at_ms / 1000)
        .bind(at_ms);
    if let Some(node) = node {
        q = q.bind(node);
    }
    Ok(q.fetch_all().await?)
}

/// Every node's hostname and time of its latest inventory report at or before `at_ms`.
async fn reports(ch: &Client, at_ms: u64) -> Result<Vec<(String, String, u64)>, ApiError> {
    Ok(ch
        .query(&format!(
            "SELECT node_id, argMax(hostname, reported_at_ms), max(reported_at_ms) FROM ( \
                 SELECT node_id, hostname, reported_at_ms FROM {INVENTORY_LOG} \
                 WHERE reported_at <= toDateTime(?) AND reported_at_ms <= ? \
                 UNION ALL \
                 SELECT node_id, hostname, reported_at_ms FROM {INVENTORY} FINAL \
                 WHERE reported_at_ms <= ?) \
             GROUP BY node_id"
        ))
        .bind(at_ms / 1000)
        .bind(at_ms)
        .bind(at_ms)
        .fetch_all()
        .await?)
}

/// A node listed with nothing known of it yet.
fn blank(id: String) -> NodeSummary {
    NodeSummary {
        id,
        hostname: String::new(),
        status: NodeStatus::Online,
        gpu_health: String::new(),
        last_seen: String::new(),
        last_seen_ms: 0,
        heartbeat_interval_secs: 0,
        cpu_pct: 0.0,
        mem_used_bytes: 0,
        mem_total_bytes: 0,
        gpu_count: 0,
        gpu_util_pct_avg: 0.0,
        maintenance: Default::default(),
    }
}

/// The fleet snapshot as it was at `at_ms`: every node that had reported by then (a heartbeat,
/// an inventory report, or a judgement of the tracker), its status, clusters and labels, and
/// the latest sample of every node that heartbeated in the [`RECENT_MS`] before.
pub async fn fleet(ch: &Client, at_ms: u64) -> Result<Snapshot, ApiError> {
    let taken = Instant::now();
    let (samples, judged, reports, tag_rows, held) = tokio::try_join!(
        samples(ch, &[], at_ms.saturating_sub(RECENT_MS), at_ms),
        judgements(ch, None, at_ms),
        reports(ch, at_ms),
        tags::rows_at(ch, at_ms),
        crate::maintenance::states(ch, Some(at_ms)),
    )?;
    tokio::task::spawn_blocking(move || {
        let mut nodes: HashMap<String, (NodeSummary, u64)> = HashMap::new();
        for (id, hostname, reported_at_ms) in reports {
            let entry = nodes.entry(id.clone()).or_insert_with(|| (blank(id), 0));
            entry.0.hostname = hostname;
            entry.1 = reported_at_ms;
        }
        for j in judged {
            let (n, _) = nodes
                .entry(j.node_id.clone())
                .or_insert_with(|| (blank(j.node_id), 0));
            n.status = status_from(&j.state);
            n.last_seen_ms = j.last_heartbeat_at_ms;
            n.last_seen = rfc3339_ms(j.last_heartbeat_at_ms);
        }
        for s in samples {
            let (n, _) = nodes
                .entry(s.node_id.clone())
                .or_insert_with(|| (blank(s.node_id.clone()), 0));
            s.apply(n);
        }
        for (id, state) in held {
            if let Some((n, _)) = nodes.get_mut(&id) {
                n.maintenance = state;
            }
        }
        Snapshot::new(
            taken,
            nodes.into_values().collect(),
            Arc::new(tag_rows.fold(0)),
        )
    })
    .await
    .map_err(|e| ApiError::Unavailable(format!("fleet snapshot build failed: {e}")))
}

/// Fills in the last sample before `at_ms` of listed nodes that had none in the recent window
/// (suspect and offline nodes: the one their judgement names).
pub async fn fill_last_samples(
    ch: &Client,
    nodes: &mut [NodeSummary],
    at_ms: u64,
) -> Result<(), ApiError> {
    let missing: Vec<&NodeSummary> = nodes
        .iter()
        .filter(|n| n.heartbeat_interval_secs == 0 && n.last_seen_ms > 0)
        .collect();
    let Some(from) = missing.iter().map(|n| n.last_seen_ms).min() else {
        return Ok(());
    };
    let ids: Vec<String> = missing.iter().map(|n| n.id.clone()).collect();
    let found = samples(ch, &ids, from - 1, at_ms).await?;
    for s in found {
        if let Some(n) = nodes.iter_mut().find(|n| n.id == s.node_id) {
            s.apply(n);
        }
    }
    Ok(())
}

/// A heartbeat's GPU samples as the heartbeats table keeps them, named as the agent's samples
/// are.
pub fn gpus(h: &HeartbeatRow) -> serde_json::Value {
    let at = |v: &[f32], i: usize| v.get(i).copied().unwrap_or_default();
    let at64 = |v: &[u64], i: usize| v.get(i).copied().unwrap_or_default();
    (0..h.gpu_index.len())
        .map(|i| {
            serde_json::json!({
                "index": h.gpu_index[i],
                "uuid": h.gpu_uuid.get(i).cloned().unwrap_or_default(),
                "util_pct": at(&h.gpu_util_pct, i),
                "mem_used_bytes": at64(&h.gpu_mem_used_bytes, i),
                "mem_total_bytes": at64(&h.gpu_mem_total_bytes, i),
                "temperature_c": at(&h.gpu_temperature_c, i),
                "power_w": at(&h.gpu_power_w, i),
                "health": h.gpu_health.get(i).cloned().unwrap_or_default(),
            })
        })
        .collect()
}

/// One node as it was at T (see [`node`]).
pub struct NodeAt {
    pub inventory: Option<InventoryRow>,
    pub heartbeat: Option<HeartbeatRow>,
    pub judged: Option<Judged>,
    /// Newest first.
    pub events: Vec<NodeEventRow>,
    pub tags: Tags,
    pub alerts: Vec<OpenAlert>,
}

/// Node `id` as it was at `at_ms`: its latest inventory report, heartbeat and judgement at or
/// before it, its newest `events` events, clusters, labels and firing alerts.
pub async fn node(ch: &Client, id: &str, at_ms: u64, events: u32) -> Result<NodeAt, ApiError> {
    let inventory = |table: &str| {
        ch.query(&format!(
            "SELECT ?fields FROM {table} WHERE node_id = ? AND reported_at_ms <= ? \
             ORDER BY reported_at_ms DESC LIMIT 1"
        ))
        .bind(id)
        .bind(at_ms)
        .fetch_optional::<InventoryRow>()
    };
    let ch_err = |e: clickhouse::error::Error| ApiError::from(e);
    let (logged, latest, heartbeat, judged, events, tag_rows, alerts) = tokio::try_join!(
        async { inventory(INVENTORY_LOG).await.map_err(ch_err) },
        async { inventory(INVENTORY).await.map_err(ch_err) },
        async {
            ch.query(&format!(
                "SELECT ?fields FROM {HEARTBEATS} WHERE node_id = ? \
                 AND ts <= toDateTime(?) AND ts_ms <= ? ORDER BY ts_ms DESC LIMIT 1"
            ))
            .bind(id)
            .bind(at_ms / 1000)
            .bind(at_ms)
            .fetch_optional::<HeartbeatRow>()
            .await
            .map_err(ch_err)
        },
        judgements(ch, Some(id), at_ms),
        async {
            ch.query(&format!(
                "SELECT ?fields FROM {NODE_EVENTS} \
                 WHERE node_id = ? AND ts <= toDateTime(?) AND ts_ms <= ? \
                 ORDER BY ts_ms DESC, stream_seq DESC LIMIT ?"
            ))
            .bind(id)
            .bind(at_ms / 1000)
            .bind(at_ms)
            .bind(events)
            .fetch_all::<NodeEventRow>()
            .await
            .map_err(ch_err)
        },
        tags::rows_at(ch, at_ms),
        firing(ch, Some(id), Some(at_ms)),
    )?;
    let inventory = match (logged, latest) {
        (Some(a), Some(b)) => Some(if a.reported_at_ms >= b.reported_at_ms {
            a
        } else {
            b
        }),
        (a, b) => a.or(b),
    };
    let tags = tag_rows
        .fold(0)
        .nodes
        .get(id)
        .map(|t| (**t).clone())
        .unwrap_or_default();
    Ok(NodeAt {
        inventory,
        heartbeat,
        judged: judged.into_iter().next(),
        events,
        tags,
        alerts,
    })
}

#[derive(Debug, Row, Deserialize)]
struct FiringRow {
    alert_id: String,
    rule_id: String,
    rule_name: String,
    severity: String,
    summary: String,
    fired_at_ms: u64,
}

/// Alerts firing (on `node`, when given), newest first: now (`at_ms` none, from `alerts`) or as
/// they were at `at_ms` (the last of each alert's firings and resolutions in `alert_log`).
pub async fn firing(
    ch: &Client,
    node: Option<&str>,
    at_ms: Option<u64>,
) -> Result<Vec<OpenAlert>, ApiError> {
    let only = node.map_or("", |_| "AND node_id = ?");
    let mut q = match at_ms {
        None => ch.query(&format!(
            "SELECT alert_id, rule_id, rule_name, severity, summary, fired_at_ms \
             FROM {ALERTS} FINAL WHERE state = 'firing' {only} ORDER BY fired_at_ms DESC"
        )),
        Some(at) => ch
            .query(&format!(
                "SELECT alert_id, argMax(rule_id, stream_seq) AS rule_id, \
                        argMax(rule_name, stream_seq) AS rule_name, \
                        argMax(severity, stream_seq) AS severity, \
                        argMax(summary, stream_seq) AS summary, \
                        maxIf(ts_ms, kind = 'AlertFired') AS fired_at_ms \
                 FROM {ALERT_LOG} WHERE ts <= toDateTime(?) AND ts_ms <= ? {only} \
                 GROUP BY alert_id HAVING argMax(kind, stream_seq) = 'AlertFired' \
                 ORDER BY fired_at_ms DESC"
            ))
            .bind(at / 1000)
            .bind(at),
    };
    if let Some(node) = node {
        q = q.bind(node);
    }
    let rows: Vec<FiringRow> = q.fetch_all().await?;
    Ok(rows
        .into_iter()
        .map(|r| OpenAlert {
            alert_id: r.alert_id,
            rule_id: r.rule_id,
            rule_name: r.rule_name,
            severity: r.severity,
            summary: r.summary,
            fired_at: rfc3339_ms(r.fired_at_ms),
        })
        .collect())
}

/// The time `?at=` asks for (none: now); 400 for one that does not parse or lies ahead of
/// `now_ms`.
pub fn parse(query: &crate::dto::fleet::AsOfQuery, now_ms: u64) -> Result<Option<u64>, ApiError> {
    let Some(text) = query.at.as_deref().map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let at_ms = crate::time::parse_time_ms("at", text)?;
    if at_ms > now_ms {
        return Err(ApiError::BadRequest(format!(
            "at={text:?} is in the future: the past is all there is to ask about"
        )));
    }
    Ok(Some(at_ms))
}
