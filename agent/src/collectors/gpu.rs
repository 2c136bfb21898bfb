//! GPUs via NVML (the `gpu` feature, on by default), or AMD GPUs through ROCm's tools
//! ([`amd`]) on a node without the NVIDIA driver. A machine with neither has "no GPUs", which is
//! not an error; a driver that is present but fails is reported as a collector error.
//!
//! Layout: each backend reads each GPU into a [`GpuSnapshot`] (plain data, so recorded
//! snapshots are test fixtures); [`device_of`] and [`sample_of`] turn a snapshot into the
//! inventory and heartbeat records, with the health verdict from `gpu_health`. XIDs arrive on a
//! dedicated thread waiting on an NVML event set ([`XidWatcher`]) and are counted per GPU in an
//! [`XidLedger`] that the verdicts read. Every NVML call blocks and runs off the async runtime.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nerve_schemas::{GpuDevice, GpuHealthReason, GpuSample, MigDevice};
use serde::{Deserialize, Serialize};

use super::gpu_health::{self, GpuReading};

/// How long an XID keeps weighing on a GPU's verdict.
pub const XID_MEMORY: Duration = Duration::from_secs(3600);

/// Everything a backend (NVML, or ROCm's tools) says about one GPU at one moment; `None` where
/// this model or driver cannot say. Recorded snapshots (`tests/fixtures/gpu/snapshots/`) drive the tests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GpuSnapshot {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub pci_bus_id: String,
    pub serial: String,
    pub vbios_version: String,
    pub compute_capability: String,
    pub driver_version: String,
    pub cuda_version: String,
    pub memory_total_bytes: u64,
    pub memory_used_bytes: u64,
    pub util_gpu_pct: Option<u32>,
    pub util_memory_pct: Option<u32>,
    pub util_encoder_pct: Option<u32>,
    pub util_decoder_pct: Option<u32>,
    pub temperature_c: Option<u32>,
    pub temp_slowdown_c: Option<u32>,
    pub temp_shutdown_c: Option<u32>,
    pub power_mw: Option<u32>,
    pub power_limit_mw: Option<u32>,
    pub sm_clock_mhz: Option<u32>,
    pub mem_clock_mhz: Option<u32>,
    pub graphics_clock_mhz: Option<u32>,
    pub fan_pct: Option<u32>,
    pub ecc_enabled: Option<bool>,
    pub ecc_corrected: Option<u64>,
    pub ecc_uncorrected: Option<u64>,
    pub retired_pages_single_bit: Option<u64>,
    pub retired_pages_double_bit: Option<u64>,
    pub retired_pages_pending: Option<bool>,
    pub remapped_rows_correctable: Option<u32>,
    pub remapped_rows_uncorrectable: Option<u32>,
    pub remapped_rows_pending: Option<bool>,
    pub remapped_rows_failure: Option<bool>,
    /// `nvmlClocksEventReasons` bitmask.
    pub throttle_reasons: u64,
    pub nvlink_total: Option<u32>,
    pub nvlink_active: Option<u32>,
    /// `None`: MIG not supported.
    pub mig_enabled: Option<bool>,
    pub mig_devices: Vec<MigSnapshot>,
}

/// One MIG instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MigSnapshot {
    pub index: u32,
    pub uuid: String,
    pub memory_total_bytes: u64,
}

/// Names of the `nvmlClocksEventReasons` bits.
pub const THROTTLE_NAMES: &[(u64, &str)] = &[
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
];

/// The set bits of a throttle bitmask, by name (unknown bits as hex).
pub fn throttle_names(mask: u64) -> Vec<String> {
    let mut names: Vec<String> = THROTTLE_NAMES
        .iter()
        .filter(|(bit, _)| mask & bit != 0)
        .map(|(_, n)| (*n).to_owned())
        .collect();
    let known = THROTTLE_NAMES.iter().fold(0, |acc, (bit, _)| acc | bit);
    if mask & !known != 0 {
        names.push(format!("0x{:x}", mask & !known));
    }
    names
}

fn mig_mode(enabled: Option<bool>) -> String {
    match enabled {
        Some(true) => "enabled".into(),
        Some(false) => "disabled".into(),
        None => String::new(),
    }
}

fn clamp_i32(v: u32) -> i32 {
    v.min(i32::MAX as u32) as i32
}

fn clamp_i64(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

/// The inventory record of a GPU.
pub fn device_of(s: &GpuSnapshot) -> GpuDevice {
    GpuDevice {
        index: clamp_i32(s.index),
        uuid: s.uuid.clone(),
        name: s.name.clone(),
        pci_bus_id: s.pci_bus_id.clone(),
        memory_total_bytes: clamp_i64(s.memory_total_bytes),
        driver_version: s.driver_version.clone(),
        cuda_version: s.cuda_version.clone(),
        serial: s.serial.clone(),
        vbios_version: s.vbios_version.clone(),
        compute_capability: s.compute_capability.clone(),
        power_limit_w: s.power_limit_mw.map(|mw| mw as f32 / 1000.0),
        ecc_enabled: s.ecc_enabled,
        mig_mode: mig_mode(s.mig_enabled),
        mig_devices: s
            .mig_devices
            .iter()
            .map(|m| MigDevice {
                index: clamp_i32(m.index),
                uuid: m.uuid.clone(),
                memory_total_bytes: clamp_i64(m.memory_total_bytes),
            })
            .collect(),
        nvlink_count: s.nvlink_total.map(clamp_i32),
    }
}

/// The heartbeat record of a GPU, with its health verdict; `xids` is this GPU's XID history.
pub fn sample_of(s: &GpuSnapshot, xids: &GpuXids) -> GpuSample {
    let health = gpu_health::assess(&GpuReading {
        index: s.index,
        uuid: s.uuid.clone(),
        name: s.name.clone(),
        temperature_c: s.temperature_c,
        temp_slowdown_c: s.temp_slowdown_c,
        temp_shutdown_c: s.temp_shutdown_c,
        ecc_corrected: s.ecc_corrected,
        ecc_uncorrected: s.ecc_uncorrected,
        retired_pages_double_bit: s.retired_pages_double_bit,
        retired_pages_pending: s.retired_pages_pending,
        remapped_rows_uncorrectable: s.remapped_rows_uncorrectable,
        remapped_rows_pending: s.remapped_rows_pending,
        remapped_rows_failure: s.remapped_rows_failure,
        throttle_reasons: s.throttle_reasons,
        recent_xids: xids.recent.iter().map(|(_, code)| *code).collect(),
    });
    let verdict = |v: gpu_health::Verdict| {
        match v {
            gpu_health::Verdict::Ok => "ok",
            gpu_health::Verdict::Warning => "warning",
            gpu_health::Verdict::Critical => "critical",
        }
        .to_owned()
    };
    GpuSample {
        index: clamp_i32(s.index),
        uuid: s.uuid.clone(),
        util_pct: s.util_gpu_pct.unwrap_or(0) as f32,
        mem_util_pct: s.util_memory_pct.unwrap_or(0) as f32,
        mem_used_bytes: clamp_i64(s.memory_used_bytes),
        mem_total_bytes: clamp_i64(s.memory_total_bytes),
        temperature_c: s.temperature_c.unwrap_or(0) as f32,
        power_w: s.power_mw.unwrap_or(0) as f32 / 1000.0,
        power_limit_w: s.power_limit_mw.map(|mw| mw as f32 / 1000.0),
        enc_util_pct: s.util_encoder_pct.map(|u| u as f32),
        dec_util_pct: s.util_decoder_pct.map(|u| u as f32),
        sm_clock_mhz: s.sm_clock_mhz.map(clamp_i32),
        mem_clock_mhz: s.mem_clock_mhz.map(clamp_i32),
        graphics_clock_mhz: s.graphics_clock_mhz.map(clamp_i32),
        fan_pct: s.fan_pct.map(clamp_i32),
        temp_slowdown_c: s.temp_slowdown_c.map(clamp_i32),
        temp_shutdown_c: s.temp_shutdown_c.map(clamp_i32),
        ecc_corrected: s.ecc_corrected.map(clamp_i64),
        ecc_uncorrected: s.ecc_uncorrected.map(clamp_i64),
        retired_pages_single_bit: s.retired_pages_single_bit.map(clamp_i64),
        retired_pages_double_bit: s.retired_pages_double_bit.map(clamp_i64),
        retired_pages_pending: s.retired_pages_pending,
        remapped_rows_correctable: s.remapped_rows_correctable.map(clamp_i32),
        remapped_rows_uncorrectable: s.remapped_rows_uncorrectable.map(clamp_i32),
        remapped_rows_pending: s.remapped_rows_pending,
        remapped_rows_failure: s.remapped_rows_failure,
        throttle_reasons: clamp_i64(s.throttle_reasons),
        throttle_reason_names: throttle_names(s.throttle_reasons),
        nvlink_active: s.nvlink_active.map(clamp_i32),
        nvlink_total: s.nvlink_total.map(clamp_i32),
        mig_mode: mig_mode(s.mig_enabled),
        mig_instances: s
            .mig_enabled
            .filter(|&on| on)
            .map(|_| s.mig_devices.len() as i32),
        xid_total: clamp_i64(xids.total),
        health: verdict(health.verdict),
        health_reasons: health
            .reasons
            .into_iter()
            .map(|r| GpuHealthReason {
                severity: verdict(r.severity),
                code: r.code,
                message: r.message,
            })
            .collect(),
    }
}

/// One XID as the driver reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct XidEvent {
    pub gpu_index: u32,
    pub gpu_uuid: String,
    pub pci_bus_id: String,
    pub xid: u64,
    pub at_ms: i64,
    /// This GPU's XIDs since the agent started, this one included.
    pub gpu_total: u64,
}

/// One GPU's XIDs: the count since start and those within [`XID_MEMORY`].
#[derive(Debug, Clone, Default)]
pub struct GpuXids {
    pub total: u64,
    pub recent: Vec<(Instant, u32)>,
}

/// XIDs per GPU UUID, shared by the XID thread (writer) and the sampler (reader).
#[derive(Debug, Clone, Default)]
pub struct XidLedger(Arc<Mutex<HashMap<String, GpuXids>>>);

impl XidLedger {
    /// Records an XID; returns the GPU's new total.
    pub fn record(&self, uuid: &str, xid: u64, at: Instant) -> u64 {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(uuid.to_owned()).or_default();
        entry.total += 1;
        entry.recent.push((at, xid.min(u32::MAX as u64) as u32));
        entry.total
    }

    /// The GPU's XIDs as of `now` (older than [`XID_MEMORY`] are forgotten).
    pub fn of(&self, uuid: &str, now: Instant) -> GpuXids {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = map.get_mut(uuid) else {
            return GpuXids::default();
        };
        entry
            .recent
            .retain(|(at, _)| now.saturating_duration_since(*at) < XID_MEMORY);
        entry.clone()
    }
}

pub mod amd;
#[cfg(feature = "gpu")]
mod nvml;

/// GPU inventory and samples for this machine.
pub struct GpuCollector {
    #[cfg(feature = "gpu")]
    backend: Option<nvml::Backend>,
    /// ROCm's tool, on a node without NVML GPUs.
    amd: Option<amd::AmdTool>,
    init_error: Option<String>,
    ledger: XidLedger,
}

impl GpuCollector {
    /// Opens NVML if `enabled` and the feature is built, else (or without NVIDIA GPUs) looks
    /// for ROCm's tools; with neither the machine has no GPUs.
    pub fn new(enabled: bool, ledger: XidLedger) -> Self {
        let amd = |nvidia: bool| {
            let tool = (enabled && !nvidia).then(amd::AmdTool::detect).flatten();
            if let Some(t) = &tool {
                tracing::info!(tool = ?t, "AMD GPUs read through ROCm's tools");
            }
            tool
        };
        #[cfg(feature = "gpu")]
        {
            let (backend, init_error) = if !enabled {
                (None, None)
            } else {
                match nvml::open() {
                    Ok(backend) => {
                        if backend.is_none() {
                            tracing::info!("no NVIDIA driver found");
                        }
                        (backend, None)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "NVML present but failing");
                        (None, Some(e))
                    }
                }
            };
            Self {
                amd: amd(backend.is_some() || init_error.is_some()),
                backend,
                init_error,
                ledger,
            }
        }
        #[cfg(not(feature = "gpu"))]
        {
            Self {
                amd: amd(false),
                init_error: None,
                ledger,
            }
        }
    }

    /// What the backend reads for every GPU, before it becomes records (`nerve probe` prints
    /// these).
    pub fn snapshots(&self) -> Result<Vec<GpuSnapshot>, String> {
        if let Some(e) = &self.init_error {
            return Err(e.clone());
        }
        #[cfg(feature = "gpu")]
        if let Some(b) = &self.backend {
            return b.snapshots();
        }
        match &self.amd {
            Some(tool) => tool.snapshots(),
            None => Ok(Vec::new()),
        }
    }

    /// Whether NVML is open (there is something to watch for XIDs).
    pub fn has_nvml(&self) -> bool {
        #[cfg(feature = "gpu")]
        {
            self.backend.is_some()
        }
        #[cfg(not(feature = "gpu"))]
        {
            false
        }
    }

    /// The GPUs, or why they could not be read.
    pub fn inventory(&self) -> Result<Vec<GpuDevice>, String> {
        Ok(self.snapshots()?.iter().map(device_of).collect())
    }

    /// One sample per GPU, with health verdicts.
    pub fn sample(&self) -> Result<Vec<GpuSample>, String> {
        let now = Instant::now();
        Ok(self
            .snapshots()?
            .iter()
            .map(|s| sample_of(s, &self.ledger.of(&s.uuid, now)))
            .collect())
    }
}

/// Watches for XIDs on its own thread until `stop`; `emit` returning false ends it too.
#[cfg(feature = "gpu")]
pub struct XidWatcher;

#[cfg(feature = "gpu")]
impl XidWatcher {
    pub fn spawn(
        ledger: XidLedger,
        stop: Arc<std::sync::atomic::AtomicBool>,
        emit: impl FnMut(XidEvent) -> bool + Send + 'static,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("nerve-xid".into())
            .spawn(move || {
                if let Err(e) = nvml::watch_xids(ledger, stop, emit) {
                    tracing::warn!(error = %e, "XID watching unavailable");
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without the NVIDIA driver (CI, the build machines) NVML reads as "no GPUs", not an
    /// error. With it (the GPU machine check in `agent/GPU.md`) every GPU is read whole:
    /// identity, memory, utilisation, temperature, power and clocks, in both records.
    #[test]
    fn nvml_reads_every_gpu_or_none_without_a_driver() {
        let off = GpuCollector::new(false, XidLedger::default());
        assert_eq!((off.inventory(), off.has_nvml()), (Ok(vec![]), false));
        let c = GpuCollector::new(true, XidLedger::default());
        if !std::path::Path::new("/proc/driver/nvidia").exists() {
            assert_eq!(c.inventory(), Ok(vec![]));
            assert_eq!(c.sample(), Ok(vec![]));
            assert!(!c.has_nvml());
            return;
        }
        assert!(c.has_nvml(), "the driver is loaded but NVML did not open");
        let snapshots = c.snapshots().expect("NVML reads every GPU");
        assert!(
            !snapshots.is_empty(),
            "the driver is loaded but NVML lists no GPU"
        );
        for s in &snapshots {
            let what = format!("{s:#?}");
            assert!(s.uuid.starts_with("GPU-") && !s.name.is_empty(), "{what}");
            assert!(
                !s.pci_bus_id.is_empty() && !s.driver_version.is_empty(),
                "{what}"
            );
            assert!(!s.cuda_version.is_empty(), "{what}");
            let cc: Vec<&str> = s.compute_capability.split('.').collect();
            assert!(
                cc.len() == 2 && cc.iter().all(|p| p.parse::<u32>().is_ok()),
                "{what}"
            );
            assert!(s.memory_total_bytes > 0, "{what}");
            assert!(s.memory_used_bytes <= s.memory_total_bytes, "{what}");
            assert!(s.util_gpu_pct.is_some_and(|u| u <= 100), "{what}");
            assert!(
                s.temperature_c.is_some_and(|t| (1..=125).contains(&t)),
                "{what}"
            );
            assert!(s.power_mw.is_some_and(|p| p > 0), "{what}");
            assert!(s.power_limit_mw.is_some_and(|p| p > 0), "{what}");
            assert!(
                s.sm_clock_mhz.is_some() && s.mem_clock_mhz.is_some(),
                "{what}"
            );
        }
        let uuids: Vec<&str> = snapshots.iter().map(|s| s.uuid.as_str()).collect();
        let inventory = c.inventory().expect("inventory");
        let samples = c.sample().expect("samples");
        assert_eq!(
            inventory
                .iter()
                .map(|d| d.uuid.as_str())
                .collect::<Vec<_>>(),
            uuids
        );
        assert_eq!(
            samples.iter().map(|d| d.uuid.as_str()).collect::<Vec<_>>(),
            uuids
        );
    }

    /// The XID watcher opens its own NVML handle and registers every GPU that reports XIDs
    /// (a registration error is an `Err`); asked to stop before its first wait, it returns.
    #[cfg(feature = "gpu")]
    #[test]
    fn xid_watcher_registers_and_stops() {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let result = nvml::watch_xids(XidLedger::default(), stop, |_| true);
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn throttle_bits_are_named() {
        assert_eq!(throttle_names(0), Vec::<String>::new());
        assert_eq!(
            throttle_names(0x4 | 0x40),
            ["sw_power_cap", "hw_thermal_slowdown"]
        );
        assert_eq!(throttle_names(0x1000), ["0x1000"]);
    }

    #[test]
    fn xids_are_counted_per_gpu_and_forgotten_after_an_hour() {
        let ledger = XidLedger::default();
        let t0 = Instant::now();
        assert_eq!(ledger.record("GPU-a", 79, t0), 1);
        assert_eq!(ledger.record("GPU-a", 13, t0), 2);
        assert_eq!(ledger.of("GPU-a", t0).recent.len(), 2);
        assert_eq!(ledger.of("GPU-b", t0).total, 0);
        let later = ledger.of("GPU-a", t0 + XID_MEMORY);
        assert_eq!((later.total, later.recent.len()), (2, 0));
    }
}
