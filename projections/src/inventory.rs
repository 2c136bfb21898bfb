//! Inventory projection: `InventoryReported` → `inventory`, the latest report per node
//! (ReplacingMergeTree keyed by node id, versioned by report time), and `inventory_log`, every
//! report (partitioned by day, so retention drops whole days; what a node looked like at a past
//! time is read from it). Lists (disks, interfaces, GPUs, collector errors) are stored as JSON
//! documents, and so are the v2 and v3 sections (CPU caches and flags, DIMMs, whole disks with
//! SMART, system identity, location) in `detail_json`.

use clickhouse::{Client, Row};
use nerve_schemas::{InventoryReported, decode};
use serde::{Deserialize, Serialize};

use crate::WIDE_ROW_GRANULARITY;
use crate::runner::{EventKey, Positioned, Projection, insert_rows, validate_envelope};

/// Durable consumer name.
pub const NAME: &str = "proj_inventory";

/// Table: Each node's latest inventory report.
pub const INVENTORY: &str = "inventory";
/// Table: Every inventory report (history).
pub const INVENTORY_LOG: &str = "inventory_log";

/// The columns of `inventory` and `inventory_log`.
const COLUMNS: &str = "(
            node_id String,
            reported_at DateTime('UTC'),
            reported_at_ms UInt64,
            event_id UUID,
            hostname String,
            os_name String,
            os_version String,
            kernel_version String,
            arch String,
            boot_time DateTime('UTC'),
            agent_version String,
            cpu_model String,
            cpu_vendor String,
            cpu_physical_cores Nullable(UInt16),
            cpu_logical_cores UInt16,
            cpu_frequency_mhz UInt32,
            memory_total_bytes UInt64,
            swap_total_bytes UInt64,
            gpu_count UInt16,
            disks_json String,
            interfaces_json String,
            gpus_json String,
            collector_errors_json String,
            stream_seq UInt64,
            detail_json String
        )";

pub fn ddl(db: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{INVENTORY} {COLUMNS}
            ENGINE = ReplacingMergeTree(reported_at_ms)
            ORDER BY node_id
            SETTINGS index_granularity = {WIDE_ROW_GRANULARITY}"
        ),
        // Keyed by the report, so a report written twice (a redelivered batch) is one row.
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{INVENTORY_LOG} {COLUMNS}
            ENGINE = ReplacingMergeTree()
            PARTITION BY toDate(reported_at)
            ORDER BY (node_id, reported_at_ms, event_id)
            SETTINGS index_granularity = {WIDE_ROW_GRANULARITY}"
        ),
    ]
}

/// Folds inventory reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct InventoryProjection;

/// A validated inventory report.
#[derive(Debug)]
pub struct Inventory {
    pub event: InventoryReported,
    pub event_id: uuid::Uuid,
}

impl Projection for InventoryProjection {
    type Item = Inventory;

    fn name(&self) -> &'static str {
        NAME
    }

    fn stream(&self) -> &'static str {
        nerve_ingest::INVENTORY_STREAM
    }

    fn decode(
        &self,
        subject: &str,
        payload: &[u8],
        published_ms: i64,
    ) -> Result<Inventory, String> {
        let event = decode::<InventoryReported>(payload).map_err(|e| e.to_string())?;
        let event_id = validate_envelope(&event.envelope, subject, published_ms)?;
        Ok(Inventory { event, event_id })
    }

    fn key(item: &Inventory) -> EventKey<'_> {
        EventKey {
            node_id: &item.event.envelope.node_id,
            event_id: &item.event.envelope.event_id,
            occurred_at_ms: item.event.envelope.occurred_at_ms,
        }
    }

    fn tables(&self) -> &'static [&'static str] {
        &[INVENTORY, INVENTORY_LOG]
    }

    fn append_only_table(&self) -> Option<&'static str> {
        None
    }

    async fn write(
        &self,
        ch: &Client,
        items: &[Positioned<Inventory>],
    ) -> Result<(), clickhouse::error::Error> {
        let rows: Vec<InventoryRow> = items.iter().map(InventoryRow::new).collect();
        insert_rows(ch, INVENTORY, &rows).await?;
        insert_rows(ch, INVENTORY_LOG, &rows).await
    }
}

/// A row of `inventory` and of `inventory_log`.
#[derive(Debug, Row, Serialize, Deserialize)]
pub struct InventoryRow {
    pub node_id: String,
    pub reported_at: u32,
    pub reported_at_ms: u64,
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: uuid::Uuid,
    pub hostname: String,
    pub os_name: String,
    pub os_version: String,
    pub kernel_version: String,
    pub arch: String,
    pub boot_time: u32,
    pub agent_version: String,
    pub cpu_model: String,
    pub cpu_vendor: String,
    pub cpu_physical_cores: Option<u16>,
    pub cpu_logical_cores: u16,
    pub cpu_frequency_mhz: u32,
    pub memory_total_bytes: u64,
    pub swap_total_bytes: u64,
    pub gpu_count: u16,
    pub disks_json: String,
    pub interfaces_json: String,
    pub gpus_json: String,
    pub collector_errors_json: String,
    pub stream_seq: u64,
    pub detail_json: String,
}

impl InventoryRow {
    fn new(p: &Positioned<Inventory>) -> Self {
        let e = &p.item.event;
        Self {
            node_id: e.envelope.node_id.clone(),
            reported_at: (e.envelope.occurred_at_ms / 1000) as u32,
            reported_at_ms: e.envelope.occurred_at_ms.max(0) as u64,
            event_id: p.item.event_id,
            hostname: e.hostname.clone(),
            os_name: e.os_name.clone(),
            os_version: e.os_version.clone(),
            kernel_version: e.kernel_version.clone(),
            arch: e.arch.clone(),
            boot_time: (e.boot_time_ms.max(0) / 1000).min(u32::MAX as i64) as u32,
            agent_version: e.agent_version.clone(),
            cpu_model: e.cpu.model.clone(),
            cpu_vendor: e.cpu.vendor.clone(),
            cpu_physical_cores: e
                .cpu
                .physical_cores
                .map(|c| c.clamp(0, u16::MAX as i32) as u16),
            cpu_logical_cores: e.cpu.logical_cores.clamp(0, u16::MAX as i32) as u16,
            cpu_frequency_mhz: e.cpu.frequency_mhz.clamp(0, u32::MAX as i64) as u32,
            memory_total_bytes: e.memory_total_bytes.max(0) as u64,
            swap_total_bytes: e.swap_total_bytes.max(0) as u64,
            gpu_count: e.gpus.len().min(u16::MAX as usize) as u16,
            disks_json: json(&e.disks),
            interfaces_json: json(&e.interfaces),
            gpus_json: json(&e.gpus),
            collector_errors_json: json(&e.collector_errors),
            stream_seq: p.stream_seq,
            detail_json: json(&Detail {
                cpu: &e.cpu,
                memory: e.memory.as_ref(),
                block_devices: &e.block_devices,
                system: e.system.as_ref(),
                location: e.location.as_ref(),
            }),
        }
    }
}

/// Lists as JSON documents; the event types are plain data, so this does not fail in practice.
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".to_owned())
}

/// The parts of an inventory report kept whole in `detail_json`.
#[derive(Serialize)]
struct Detail<'a> {
    cpu: &'a nerve_schemas::CpuInfo,
    memory: Option<&'a nerve_schemas::MemoryInfo>,
    block_devices: &'a [nerve_schemas::BlockDevice],
    system: Option<&'a nerve_schemas::SystemInfo>,
    location: Option<&'a nerve_schemas::Location>,
}
