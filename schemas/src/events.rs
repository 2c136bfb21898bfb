//! Rust types of the events; each mirrors its `.avsc` file field for field (checked by tests).

use serde::{Deserialize, Serialize};

/// An event type with a schema in `schemas/avro/`.
pub trait Event: Serialize + for<'de> Deserialize<'de> {
    /// The Avro record name, also `Envelope::schema_name`.
    const NAME: &'static str;
    /// The schema version this Rust type writes (and reads into).
    const VERSION: i32;
    /// The envelope every event carries.
    fn envelope(&self) -> &Envelope;
}

/// Fields every event carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// UUIDv7; also the JetStream `Nats-Msg-Id`.
    pub event_id: String,
    /// Stable id of the node the event is about.
    pub node_id: String,
    /// Milliseconds since the Unix epoch, UTC.
    pub occurred_at_ms: i64,
    /// The event name.
    pub schema_name: String,
    /// The schema version the writer used.
    pub schema_version: i32,
}

impl Envelope {
    /// A new envelope for event `E` with a fresh UUIDv7 id.
    pub fn new<E: Event>(node_id: impl Into<String>, occurred_at_ms: i64) -> Self {
        Self {
            event_id: uuid::Uuid::now_v7().to_string(),
            node_id: node_id.into(),
            occurred_at_ms,
            schema_name: E::NAME.to_owned(),
            schema_version: E::VERSION,
        }
    }
}

/// `HeartbeatRecorded` v1: a node's periodic health sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatRecorded {
    pub envelope: Envelope,
    pub seq: i64,
    pub interval_secs: i32,
    pub uptime_secs: i64,
    pub cpu_pct: f32,
    pub cpu_count: i32,
    pub load1: f32,
    pub load5: f32,
    pub load15: f32,
    pub mem_total_bytes: i64,
    pub mem_used_bytes: i64,
    pub swap_total_bytes: i64,
    pub swap_used_bytes: i64,
    pub disk_total_bytes: i64,
    pub disk_used_bytes: i64,
    pub net_rx_bytes_per_sec: f64,
    pub net_tx_bytes_per_sec: f64,
    pub gpus: Vec<GpuSample>,
}

impl Event for HeartbeatRecorded {
    const NAME: &'static str = "HeartbeatRecorded";
    const VERSION: i32 = 1;
    fn envelope(&self) -> &Envelope {
        &self.envelope
    }
}

/// One GPU's sample inside a heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuSample {
    pub index: i32,
    pub uuid: String,
    pub util_pct: f32,
    pub mem_util_pct: f32,
    pub mem_used_bytes: i64,
    pub mem_total_bytes: i64,
    pub temperature_c: f32,
    pub power_w: f32,
}

/// `InventoryReported` v1: a node's hardware and software inventory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InventoryReported {
    pub envelope: Envelope,
    pub hostname: String,
    pub os_name: String,
    pub os_version: String,
    pub kernel_version: String,
    pub arch: String,
    pub boot_time_ms: i64,
    pub agent_version: String,
    pub cpu: CpuInfo,
    pub memory_total_bytes: i64,
    pub swap_total_bytes: i64,
    pub disks: Vec<Disk>,
    pub interfaces: Vec<NetInterface>,
    pub gpus: Vec<GpuDevice>,
    pub collector_errors: Vec<CollectorError>,
}

impl Event for InventoryReported {
    const NAME: &'static str = "InventoryReported";
    const VERSION: i32 = 1;
    fn envelope(&self) -> &Envelope {
        &self.envelope
    }
}

/// CPU part of the inventory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuInfo {
    pub model: String,
    pub vendor: String,
    pub physical_cores: Option<i32>,
    pub logical_cores: i32,
    pub frequency_mhz: i64,
}

/// A mounted filesystem and the device behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    pub name: String,
    pub mount_point: String,
    pub file_system: String,
    /// `ssd`, `hdd` or `unknown`.
    pub kind: String,
    pub total_bytes: i64,
    pub removable: bool,
}

/// A network interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetInterface {
    pub name: String,
    pub mac: String,
    /// Addresses with prefix length, e.g. `10.0.0.5/24`.
    pub addresses: Vec<String>,
    pub mtu: i64,
}

/// A GPU as NVML describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuDevice {
    pub index: i32,
    pub uuid: String,
    pub name: String,
    pub pci_bus_id: String,
    pub memory_total_bytes: i64,
    pub driver_version: String,
    pub cuda_version: String,
}

/// A collector that failed; the event still carries what the others found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectorError {
    pub collector: String,
    pub message: String,
}
