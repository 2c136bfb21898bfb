//! Heartbeats projection: `HeartbeatRecorded` → `heartbeats` (time series, MergeTree by day,
//! ORDER BY (node_id, ts)) and `node_state` (latest sample per node, ReplacingMergeTree keyed by
//! node id with the sample time as version, and the heartbeat itself as the agent sent it — its
//! GPU samples with their verdicts are read from there — with the node's worst GPU verdict);
//! its roll-ups per minute and hour follow `heartbeats` through materialized views
//! ([`crate::rollups`]).

use clickhouse::{Client, Row};
use nerve_schemas::{HeartbeatRecorded, decode};
use serde::{Deserialize, Serialize};

use crate::WIDE_ROW_GRANULARITY;
use crate::runner::{EventKey, Positioned, Projection, validate_envelope};

/// Durable consumer name.
pub const NAME: &str = "proj_heartbeats";

/// Table: Every heartbeat (time series).
pub const HEARTBEATS: &str = "heartbeats";
/// Table: Each node's latest heartbeat.
pub const NODE_STATE: &str = "node_state";

pub fn ddl(db: &str) -> Vec<String> {
    let mut ddl = vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{HEARTBEATS} (
                node_id String,
                ts DateTime('UTC'),
                ts_ms UInt64,
                event_id UUID,
                seq UInt64,
                interval_secs UInt32,
                uptime_secs UInt64,
                cpu_pct Float32,
                cpu_count UInt16,
                load1 Float32,
                load5 Float32,
                load15 Float32,
                mem_total_bytes UInt64,
                mem_used_bytes UInt64,
                swap_total_bytes UInt64,
                swap_used_bytes UInt64,
                disk_total_bytes UInt64,
                disk_used_bytes UInt64,
                net_rx_bytes_per_sec Float64,
                net_tx_bytes_per_sec Float64,
                gpu_index Array(UInt16),
                gpu_uuid Array(String),
                gpu_util_pct Array(Float32),
                gpu_mem_used_bytes Array(UInt64),
                gpu_mem_total_bytes Array(UInt64),
                gpu_temperature_c Array(Float32),
                gpu_power_w Array(Float32),
                stream_seq UInt64,
                ingested_at DateTime('UTC'),
                gpu_health Array(String),
                gpu_ecc_corrected Array(Int64),
                gpu_ecc_uncorrected Array(Int64),
                gpu_remapped_rows_correctable Array(Int64),
                gpu_remapped_rows_uncorrectable Array(Int64),
                gpu_xid_total Array(Int64)
            ) ENGINE = MergeTree()
            PARTITION BY toDate(ts)
            ORDER BY (node_id, ts)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{NODE_STATE} (
                node_id String,
                last_seen DateTime('UTC'),
                last_seen_ms UInt64,
                interval_secs UInt32,
                uptime_secs UInt64,
                cpu_pct Float32,
                cpu_count UInt16,
                load1 Float32,
                mem_total_bytes UInt64,
                mem_used_bytes UInt64,
                disk_total_bytes UInt64,
                disk_used_bytes UInt64,
                net_rx_bytes_per_sec Float64,
                net_tx_bytes_per_sec Float64,
                gpu_count UInt16,
                gpu_util_pct_avg Float32,
                stream_seq UInt64,
                gpu_health String,
                heartbeat_avro String
            ) ENGINE = ReplacingMergeTree(last_seen_ms)
            ORDER BY node_id
            SETTINGS index_granularity = {WIDE_ROW_GRANULARITY}"
        ),
    ];
    ddl.extend(crate::rollups::ddl(db));
    ddl
}

/// Folds heartbeats.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeartbeatProjection;

/// A validated heartbeat.
#[derive(Debug)]
pub struct Heartbeat {
    pub event: HeartbeatRecorded,
    pub event_id: uuid::Uuid,
    /// The event as published (Avro single-object encoding), kept in `node_state`.
    pub payload: Vec<u8>,
}

/// Checks what the schema cannot: the envelope, a positive interval, CPU within 0..=100.
pub fn validate(
    event: HeartbeatRecorded,
    payload: &[u8],
    subject: &str,
    published_ms: i64,
) -> Result<Heartbeat, String> {
    let event_id = validate_envelope(&event.envelope, subject, published_ms)?;
    if event.interval_secs <= 0 {
        return Err(format!(
            "interval_secs {} must be positive",
            event.interval_secs
        ));
    }
    if !(0.0..=100.0).contains(&event.cpu_pct) {
        return Err(format!("cpu_pct {} is outside 0..=100", event.cpu_pct));
    }
    Ok(Heartbeat {
        event,
        event_id,
        payload: payload.to_vec(),
    })
}

impl Projection for HeartbeatProjection {
    type Item = Heartbeat;

    fn name(&self) -> &'static str {
        NAME
    }

    fn stream(&self) -> &'static str {
        nerve_ingest::TELEMETRY_STREAM
    }

    fn decode(
        &self,
        subject: &str,
        payload: &[u8],
        published_ms: i64,
    ) -> Result<Heartbeat, String> {
        let event = decode::<HeartbeatRecorded>(payload).map_err(|e| e.to_string())?;
        validate(event, payload, subject, published_ms)
    }

    fn key(item: &Heartbeat) -> EventKey<'_> {
        EventKey {
            node_id: &item.event.envelope.node_id,
            event_id: &item.event.envelope.event_id,
            occurred_at_ms: item.event.envelope.occurred_at_ms,
        }
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            NODE_STATE,
            HEARTBEATS,
            crate::rollups::HEARTBEATS_1M,
            crate::rollups::HEARTBEATS_1H,
        ]
    }

    fn append_only_table(&self) -> Option<&'static str> {
        Some(HEARTBEATS)
    }

    async fn write(
        &self,
        ch: &Client,
        items: &[Positioned<Heartbeat>],
    ) -> Result<(), clickhouse::error::Error> {
        // Only the newest sample per node matters for the current state.
        let mut latest: std::collections::HashMap<&str, &Positioned<Heartbeat>> =
            std::collections::HashMap::new();
        for p in items {
            let e = &p.item.event.envelope;
            latest
                .entry(e.node_id.as_str())
                .and_modify(|cur| {
                    if cur.item.event.envelope.occurred_at_ms <= e.occurred_at_ms {
                        *cur = p;
                    }
                })
                .or_insert(p);
        }
        let mut insert = ch.insert::<NodeStateRow>(NODE_STATE).await?;
        for p in latest.values() {
            insert.write(&NodeStateRow::new(p)).await?;
        }
        insert.end().await?;

        // Last: an event found here had everything above written.
        let mut insert = ch.insert::<HeartbeatRow>(HEARTBEATS).await?;
        for p in items {
            insert.write(&HeartbeatRow::new(p)).await?;
        }
        insert.end().await
    }
}

/// A row of `heartbeats`; the API reads past samples back as this too.
#[derive(Debug, Row, Serialize, Deserialize)]
pub struct HeartbeatRow {
    pub node_id: String,
    pub ts: u32,
    pub ts_ms: u64,
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: uuid::Uuid,
    pub seq: u64,
    pub interval_secs: u32,
    pub uptime_secs: u64,
    pub cpu_pct: f32,
    pub cpu_count: u16,
    pub load1: f32,
    pub load5: f32,
    pub load15: f32,
    pub mem_total_bytes: u64,
    pub mem_used_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_used_bytes: u64,
    pub disk_total_bytes: u64,
    pub disk_used_bytes: u64,
    pub net_rx_bytes_per_sec: f64,
    pub net_tx_bytes_per_sec: f64,
    pub gpu_index: Vec<u16>,
    pub gpu_uuid: Vec<String>,
    pub gpu_util_pct: Vec<f32>,
    pub gpu_mem_used_bytes: Vec<u64>,
    pub gpu_mem_total_bytes: Vec<u64>,
    pub gpu_temperature_c: Vec<f32>,
    pub gpu_power_w: Vec<f32>,
    pub stream_seq: u64,
    /// When JetStream stored the event (not when it was written here: a fold is pure).
    pub ingested_at: u32,
    pub gpu_health: Vec<String>,
    /// Per GPU, -1 where the driver does not say: ECC errors since the driver loaded, remapped
    /// rows (A100 and later), XIDs since the agent started.
    pub gpu_ecc_corrected: Vec<i64>,
    pub gpu_ecc_uncorrected: Vec<i64>,
    pub gpu_remapped_rows_correctable: Vec<i64>,
    pub gpu_remapped_rows_uncorrectable: Vec<i64>,
    pub gpu_xid_total: Vec<i64>,
}

fn u(v: i64) -> u64 {
    v.max(0) as u64
}

impl HeartbeatRow {
    pub fn new(p: &Positioned<Heartbeat>) -> Self {
        let e = &p.item.event;
        Self {
            node_id: e.envelope.node_id.clone(),
            ts: (e.envelope.occurred_at_ms / 1000) as u32,
            ts_ms: u(e.envelope.occurred_at_ms),
            event_id: p.item.event_id,
            seq: u(e.seq),
            interval_secs: e.interval_secs.max(0) as u32,
            uptime_secs: u(e.uptime_secs),
            cpu_pct: e.cpu_pct,
            cpu_count: e.cpu_count.clamp(0, u16::MAX as i32) as u16,
            load1: e.load1,
            load5: e.load5,
            load15: e.load15,
            mem_total_bytes: u(e.mem_total_bytes),
            mem_used_bytes: u(e.mem_used_bytes),
            swap_total_bytes: u(e.swap_total_bytes),
            swap_used_bytes: u(e.swap_used_bytes),
            disk_total_bytes: u(e.disk_total_bytes),
            disk_used_bytes: u(e.disk_used_bytes),
            net_rx_bytes_per_sec: e.net_rx_bytes_per_sec,
            net_tx_bytes_per_sec: e.net_tx_bytes_per_sec,
            gpu_index: e.gpus.iter().map(|g| g.index.max(0) as u16).collect(),
            gpu_uuid: e.gpus.iter().map(|g| g.uuid.clone()).collect(),
            gpu_util_pct: e.gpus.iter().map(|g| g.util_pct).collect(),
            gpu_mem_used_bytes: e.gpus.iter().map(|g| u(g.mem_used_bytes)).collect(),
            gpu_mem_total_bytes: e.gpus.iter().map(|g| u(g.mem_total_bytes)).collect(),
            gpu_temperature_c: e.gpus.iter().map(|g| g.temperature_c).collect(),
            gpu_power_w: e.gpus.iter().map(|g| g.power_w).collect(),
            stream_seq: p.stream_seq,
            ingested_at: (p.published_ms.max(0) / 1000) as u32,
            gpu_health: e.gpus.iter().map(|g| g.health.clone()).collect(),
            gpu_ecc_corrected: e
                .gpus
                .iter()
                .map(|g| g.ecc_corrected.unwrap_or(-1))
                .collect(),
            gpu_ecc_uncorrected: e
                .gpus
                .iter()
                .map(|g| g.ecc_uncorrected.unwrap_or(-1))
                .collect(),
            gpu_remapped_rows_correctable: e
                .gpus
                .iter()
                .map(|g| g.remapped_rows_correctable.map_or(-1, i64::from))
                .collect(),
            gpu_remapped_rows_uncorrectable: e
                .gpus
                .iter()
                .map(|g| g.remapped_rows_uncorrectable.map_or(-1, i64::from))
                .collect(),
            gpu_xid_total: e.gpus.iter().map(|g| g.xid_total).collect(),
        }
    }
}

/// A row of `node_state`.
#[derive(Debug, Row, Serialize)]
pub struct NodeStateRow {
    pub node_id: String,
    pub last_seen: u32,
    pub last_seen_ms: u64,
    pub interval_secs: u32,
    pub uptime_secs: u64,
    pub cpu_pct: f32,
    pub cpu_count: u16,
    pub load1: f32,
    pub mem_total_bytes: u64,
    pub mem_used_bytes: u64,
    pub disk_total_bytes: u64,
    pub disk_used_bytes: u64,
    pub net_rx_bytes_per_sec: f64,
    pub net_tx_bytes_per_sec: f64,
    pub gpu_count: u16,
    pub gpu_util_pct_avg: f32,
    pub stream_seq: u64,
    /// The worst GPU verdict (`critical`, `warning`, `ok`), empty without GPUs or verdicts.
    pub gpu_health: String,
    /// The heartbeat as the agent sent it: every GPU's sample for the node detail. Kept as the
    /// Avro bytes rather than JSON: far fewer bytes to insert and merge, and nothing to encode.
    #[serde(with = "serde_bytes")]
    pub heartbeat_avro: Vec<u8>,
}

impl NodeStateRow {
    fn new(p: &Positioned<Heartbeat>) -> Self {
        let e = &p.item.event;
        let gpu_util_pct_avg = if e.gpus.is_empty() {
            0.0
        } else {
            e.gpus.iter().map(|g| g.util_pct).sum::<f32>() / e.gpus.len() as f32
        };
        Self {
            node_id: e.envelope.node_id.clone(),
            last_seen: (e.envelope.occurred_at_ms / 1000) as u32,
            last_seen_ms: u(e.envelope.occurred_at_ms),
            interval_secs: e.interval_secs.max(0) as u32,
            uptime_secs: u(e.uptime_secs),
            cpu_pct: e.cpu_pct,
            cpu_count: e.cpu_count.clamp(0, u16::MAX as i32) as u16,
            load1: e.load1,
            mem_total_bytes: u(e.mem_total_bytes),
            mem_used_bytes: u(e.mem_used_bytes),
            disk_total_bytes: u(e.disk_total_bytes),
            disk_used_bytes: u(e.disk_used_bytes),
            net_rx_bytes_per_sec: e.net_rx_bytes_per_sec,
            net_tx_bytes_per_sec: e.net_tx_bytes_per_sec,
            gpu_count: e.gpus.len().min(u16::MAX as usize) as u16,
            gpu_util_pct_avg,
            stream_seq: p.stream_seq,
            gpu_health: worst_health(e.gpus.iter().map(|g| g.health.as_str())).to_owned(),
            heartbeat_avro: p.item.payload.clone(),
        }
    }
}

/// The worst of some GPU verdicts.
pub fn worst_health<'a>(verdicts: impl Iterator<Item = &'a str>) -> &'a str {
    let rank = |v: &str| match v {
        "critical" => 3,
        "warning" => 2,
        "ok" => 1,
        _ => 0,
    };
    verdicts
        .max_by_key(|v| rank(v))
        .filter(|v| rank(v) > 0)
        .unwrap_or("")
}
