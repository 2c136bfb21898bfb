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

/// `HeartbeatRecorded` v2: a node's periodic health sample.
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

impl HeartbeatRecorded {
    /// A heartbeat of `node_id` that carries `gpus` and reads zero for everything else (a
    /// 10 s interval): for fixtures and tests that are about the GPUs.
    pub fn carrying(node_id: &str, occurred_at_ms: i64, gpus: Vec<GpuSample>) -> Self {
        Self {
            envelope: Envelope::new::<Self>(node_id, occurred_at_ms),
            seq: 0,
            interval_secs: 10,
            uptime_secs: 0,
            cpu_pct: 0.0,
            cpu_count: 1,
            load1: 0.0,
            load5: 0.0,
            load15: 0.0,
            mem_total_bytes: 0,
            mem_used_bytes: 0,
            swap_total_bytes: 0,
            swap_used_bytes: 0,
            disk_total_bytes: 0,
            disk_used_bytes: 0,
            net_rx_bytes_per_sec: 0.0,
            net_tx_bytes_per_sec: 0.0,
            gpus,
        }
    }
}

impl Event for HeartbeatRecorded {
    const NAME: &'static str = "HeartbeatRecorded";
    const VERSION: i32 = 2;
    fn envelope(&self) -> &Envelope {
        &self.envelope
    }
}

/// One GPU's sample inside a heartbeat. `None` where NVML cannot read a value on this model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuSample {
    pub index: i32,
    pub uuid: String,
    pub util_pct: f32,
    pub mem_util_pct: f32,
    pub mem_used_bytes: i64,
    pub mem_total_bytes: i64,
    pub temperature_c: f32,
    pub power_w: f32,
    pub power_limit_w: Option<f32>,
    pub enc_util_pct: Option<f32>,
    pub dec_util_pct: Option<f32>,
    pub sm_clock_mhz: Option<i32>,
    pub mem_clock_mhz: Option<i32>,
    pub graphics_clock_mhz: Option<i32>,
    pub fan_pct: Option<i32>,
    pub temp_slowdown_c: Option<i32>,
    pub temp_shutdown_c: Option<i32>,
    pub ecc_corrected: Option<i64>,
    pub ecc_uncorrected: Option<i64>,
    pub retired_pages_single_bit: Option<i64>,
    pub retired_pages_double_bit: Option<i64>,
    pub retired_pages_pending: Option<bool>,
    pub remapped_rows_correctable: Option<i32>,
    pub remapped_rows_uncorrectable: Option<i32>,
    pub remapped_rows_pending: Option<bool>,
    pub remapped_rows_failure: Option<bool>,
    /// `nvmlClocksEventReasons` bitmask, and its set bits by name.
    pub throttle_reasons: i64,
    pub throttle_reason_names: Vec<String>,
    pub nvlink_active: Option<i32>,
    pub nvlink_total: Option<i32>,
    /// `enabled`, `disabled`, or empty where MIG is not supported.
    pub mig_mode: String,
    pub mig_instances: Option<i32>,
    /// XIDs on this GPU since the agent started.
    pub xid_total: i64,
    /// `ok`, `warning` or `critical`; empty from v1 agents.
    pub health: String,
    pub health_reasons: Vec<GpuHealthReason>,
}

/// One reason behind a GPU's health verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuHealthReason {
    /// `warning` or `critical`.
    pub severity: String,
    /// Stable code, e.g. `ecc_uncorrected`, `xid_79`.
    pub code: String,
    pub message: String,
}

/// `InventoryReported` v3: a node's hardware and software inventory.
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
    /// DIMMs; `None` from v1 agents.
    pub memory: Option<MemoryInfo>,
    /// Whole disks with SMART health.
    pub block_devices: Vec<BlockDevice>,
    /// Virtualisation, container, BIOS and board; `None` from v1 agents.
    pub system: Option<SystemInfo>,
    /// Where the node is (`agent.region`, `agent.datacenter`); `None` when neither is set
    /// (and from v1 and v2 agents).
    pub location: Option<Location>,
    pub collector_errors: Vec<CollectorError>,
}

/// Where a node is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub region: String,
    pub datacenter: String,
}

impl Event for InventoryReported {
    const NAME: &'static str = "InventoryReported";
    const VERSION: i32 = 3;
    fn envelope(&self) -> &Envelope {
        &self.envelope
    }
}

/// CPU part of the inventory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuInfo {
    pub model: String,
    pub vendor: String,
    pub physical_cores: Option<i32>,
    pub logical_cores: i32,
    /// Maximum frequency where known, else the first reading.
    pub frequency_mhz: i64,
    pub sockets: Option<i32>,
    pub threads_per_core: Option<i32>,
    pub base_frequency_mhz: Option<i64>,
    pub max_frequency_mhz: Option<i64>,
    pub caches: Vec<CpuCache>,
    pub flags: Vec<String>,
}

/// One CPU cache level and kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuCache {
    pub level: i32,
    /// `Data`, `Instruction` or `Unified`.
    pub kind: String,
    /// Per instance.
    pub size_bytes: i64,
    pub instances: i32,
}

/// Memory modules, from `dmidecode` where permitted, else sysfs, else unknown.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryInfo {
    /// `dmidecode`, `sysfs` or `unknown`.
    pub source: String,
    /// The memory array's error correction, e.g. `Multi-bit ECC`, `None`, or `unknown`.
    pub ecc: String,
    pub slots: Option<i32>,
    pub dimms: Vec<Dimm>,
}

/// One installed memory module.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dimm {
    pub locator: String,
    pub size_bytes: i64,
    /// `DDR4`, `DDR5`, ... or `unknown`.
    pub kind: String,
    pub speed_mts: Option<i32>,
    pub configured_speed_mts: Option<i32>,
    pub ecc: Option<bool>,
    pub manufacturer: String,
    pub part_number: String,
    pub serial: String,
}

/// A whole disk (not a partition).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlockDevice {
    pub name: String,
    pub model: String,
    pub serial: String,
    pub size_bytes: i64,
    /// `nvme`, `ssd`, `hdd` or `unknown`.
    pub kind: String,
    pub removable: bool,
    /// `passed`, `failed` or `unknown`.
    pub smart_health: String,
    pub smart_temperature_c: Option<i32>,
    pub smart_power_on_hours: Option<i64>,
    /// Why SMART is unknown, when it is.
    pub smart_note: String,
}

/// What the machine is: virtualisation, container, DMI system/board/BIOS.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemInfo {
    pub virtualization: String,
    pub container: String,
    pub system_vendor: String,
    pub product_name: String,
    pub board_vendor: String,
    pub board_name: String,
    pub bios_vendor: String,
    pub bios_version: String,
    pub bios_date: String,
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetInterface {
    pub name: String,
    pub mac: String,
    /// Addresses with prefix length, e.g. `10.0.0.5/24`.
    pub addresses: Vec<String>,
    pub mtu: i64,
    /// `None` where the link does not say (down, virtual).
    pub speed_mbps: Option<i64>,
    /// Operational state: `up`, `down`, `unknown`, ...
    pub state: String,
    pub driver: String,
}

/// A GPU as NVML describes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuDevice {
    pub index: i32,
    pub uuid: String,
    pub name: String,
    pub pci_bus_id: String,
    pub memory_total_bytes: i64,
    pub driver_version: String,
    pub cuda_version: String,
    pub serial: String,
    pub vbios_version: String,
    pub compute_capability: String,
    pub power_limit_w: Option<f32>,
    pub ecc_enabled: Option<bool>,
    /// `enabled`, `disabled`, or empty where MIG is not supported.
    pub mig_mode: String,
    pub mig_devices: Vec<MigDevice>,
    pub nvlink_count: Option<i32>,
}

/// A MIG instance of a GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigDevice {
    pub index: i32,
    pub uuid: String,
    pub memory_total_bytes: i64,
}

/// A collector that failed; the event still carries what the others found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectorError {
    pub collector: String,
    pub message: String,
}

/// `GpuXidOccurred` v1: an XID error the driver reported for one GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuXidOccurred {
    pub envelope: Envelope,
    pub gpu_index: i32,
    pub gpu_uuid: String,
    pub pci_bus_id: String,
    pub xid: i64,
    pub meaning: String,
    /// `warning` or `critical`.
    pub severity: String,
    pub likely_application: bool,
    pub gpu_xid_total: i64,
}

impl GpuXidOccurred {
    /// An XID 79 ("GPU has fallen off the bus", critical) on GPU 0 of `node_id` at `at_ms`: a
    /// complete event for tests, drills and examples.
    pub fn example(node_id: &str, at_ms: i64) -> Self {
        Self {
            envelope: Envelope::new::<Self>(node_id, at_ms),
            gpu_index: 0,
            gpu_uuid: "GPU-0".into(),
            pci_bus_id: "00000000:3B:00.0".into(),
            xid: 79,
            meaning: "GPU has fallen off the bus".into(),
            severity: "critical".into(),
            likely_application: false,
            gpu_xid_total: 1,
        }
    }
}

impl Event for GpuXidOccurred {
    const NAME: &'static str = "GpuXidOccurred";
    const VERSION: i32 = 1;
    fn envelope(&self) -> &Envelope {
        &self.envelope
    }
}

/// The body every liveness event shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LivenessChange {
    pub envelope: Envelope,
    /// When the last heartbeat reached JetStream; 0 when none was seen.
    pub last_heartbeat_at_ms: i64,
    pub silent_for_ms: i64,
    pub heartbeat_interval_secs: i32,
    pub missed_heartbeats: i32,
    /// `online`, `suspect` or `offline`: the state the node left.
    pub previous_state: String,
    /// The tracker that judged.
    pub detector: String,
}

macro_rules! liveness_event {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub LivenessChange);

        impl Event for $name {
            const NAME: &'static str = stringify!($name);
            const VERSION: i32 = 1;
            fn envelope(&self) -> &Envelope {
                &self.0.envelope
            }
        }
    };
}

liveness_event!(
    /// `NodeBecameSuspect` v1: missed enough heartbeats to be suspect.
    NodeBecameSuspect
);
liveness_event!(
    /// `NodeWentOffline` v1: silent past the suspect threshold and its grace period.
    NodeWentOffline
);
liveness_event!(
    /// `NodeCameBack` v1: a suspect or offline node's heartbeat arrived again.
    NodeCameBack
);
