//! GPUs via NVML (the `gpu` feature, on by default). A machine without the NVIDIA driver has
//! "no GPUs", which is not an error; a driver that is present but fails is reported as a
//! collector error.
//!
//! Layout: the NVML backend reads each GPU into an [`NvmlSnapshot`] (plain data, so recorded
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

/// Everything NVML says about one GPU at one moment; `None` where this model or driver cannot
/// say. Recorded snapshots (`tests/fixtures/gpu/snapshots/`) drive the tests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NvmlSnapshot {
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
pub fn device_of(s: &NvmlSnapshot) -> GpuDevice {
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
pub fn sample_of(s: &NvmlSnapshot, xids: &GpuXids) -> GpuSample {
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

#[cfg(feature = "gpu")]
mod nvml {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    use nvml_wrapper::bitmasks::event::EventTypes;
    use nvml_wrapper::enum_wrappers::device::{
        Clock, EccCounter, MemoryError, RetirementCause, TemperatureSensor, TemperatureThreshold,
    };
    use nvml_wrapper::enums::device::SampleValue;
    use nvml_wrapper::enums::event::XidError;
    use nvml_wrapper::error::NvmlError;
    use nvml_wrapper::struct_wrappers::device::FieldValueSample;
    use nvml_wrapper::structs::device::FieldId;
    use nvml_wrapper::{Device, Nvml};

    use super::{MigSnapshot, NvmlSnapshot, XidEvent, XidLedger};

    // NVML field ids (nvml.h) for values nvml-wrapper has no method for.
    const FI_NVLINK_LINK_COUNT: u32 = 91;
    const FI_REMAPPED_COR: u32 = 142;
    const FI_REMAPPED_UNC: u32 = 143;
    const FI_REMAPPED_PENDING: u32 = 144;
    const FI_REMAPPED_FAILURE: u32 = 145;

    pub struct Backend {
        nvml: Nvml,
    }

    /// `Ok(None)`: no NVIDIA driver on this machine.
    pub fn open() -> Result<Option<Backend>, String> {
        match Nvml::init() {
            Ok(nvml) => Ok(Some(Backend { nvml })),
            Err(NvmlError::LibloadingError(_)) | Err(NvmlError::DriverNotLoaded) => Ok(None),
            Err(e) => Err(format!("NVML init: {e}")),
        }
    }

    fn field(values: &[Result<FieldValueSample, NvmlError>], id: u32) -> Option<u64> {
        values
            .iter()
            .flatten()
            .find(|v| v.field.0 == id)
            .and_then(|v| match v.value.as_ref().ok()? {
                SampleValue::U32(n) => Some(u64::from(*n)),
                SampleValue::U64(n) => Some(*n),
                SampleValue::I64(n) => u64::try_from(*n).ok(),
                SampleValue::F64(n) => Some(*n as u64),
            })
    }

    impl Backend {
        /// Every GPU's snapshot, in index order; a GPU NVML cannot open is an error.
        pub fn snapshots(&self) -> Result<Vec<NvmlSnapshot>, String> {
            let n = &self.nvml;
            let driver = n.sys_driver_version().unwrap_or_default();
            let cuda = n
                .sys_cuda_driver_version()
                .map(|v| format!("{}.{}", v / 1000, (v % 1000) / 10))
                .unwrap_or_default();
            let count = n.device_count().map_err(|e| format!("device count: {e}"))?;
            (0..count)
                .map(|index| {
                    let d = n
                        .device_by_index(index)
                        .map_err(|e| format!("GPU {index}: {e}"))?;
                    Ok(snapshot(index, &d, &driver, &cuda))
                })
                .collect()
        }
    }

    fn snapshot(index: u32, d: &Device, driver: &str, cuda: &str) -> NvmlSnapshot {
        let util = d.utilization_rates().ok();
        let mem = d.memory_info().ok();
        let ecc_enabled = d.is_ecc_enabled().ok().map(|e| e.currently_enabled);
        let ecc = |kind| {
            ecc_enabled
                .filter(|&on| on)
                .and_then(|_| d.total_ecc_errors(kind, EccCounter::Volatile).ok())
        };
        let fields = d
            .field_values_for(&[
                FieldId(FI_NVLINK_LINK_COUNT),
                FieldId(FI_REMAPPED_COR),
                FieldId(FI_REMAPPED_UNC),
                FieldId(FI_REMAPPED_PENDING),
                FieldId(FI_REMAPPED_FAILURE),
            ])
            .unwrap_or_default();
        let nvlink_total = field(&fields, FI_NVLINK_LINK_COUNT)
            .map(|n| n as u32)
            .filter(|&n| n > 0);
        let nvlink_active = nvlink_total.map(|total| {
            (0..total)
                .filter(|&l| d.link_wrapper_for(l).is_active().unwrap_or(false))
                .count() as u32
        });
        let mig_enabled = d.mig_mode().ok().map(|m| m.current == 1);
        let mig_devices = if mig_enabled == Some(true) {
            let count = d.mig_device_count().unwrap_or(0);
            (0..count)
                .filter_map(|i| d.mig_device_by_index(i).ok().map(|m| (i, m)))
                .map(|(i, m)| MigSnapshot {
                    index: i,
                    uuid: m.uuid().unwrap_or_default(),
                    memory_total_bytes: m.memory_info().map(|x| x.total).unwrap_or(0),
                })
                .collect()
        } else {
            Vec::new()
        };
        NvmlSnapshot {
            index,
            uuid: d.uuid().unwrap_or_default(),
            name: d.name().unwrap_or_default(),
            pci_bus_id: d.pci_info().map(|p| p.bus_id).unwrap_or_default(),
            serial: d.serial().unwrap_or_default(),
            vbios_version: d.vbios_version().unwrap_or_default(),
            compute_capability: d
                .cuda_compute_capability()
                .map(|c| format!("{}.{}", c.major, c.minor))
                .unwrap_or_default(),
            driver_version: driver.to_owned(),
            cuda_version: cuda.to_owned(),
            memory_total_bytes: mem.as_ref().map_or(0, |m| m.total),
            memory_used_bytes: mem.as_ref().map_or(0, |m| m.used),
            util_gpu_pct: util.as_ref().map(|u| u.gpu),
            util_memory_pct: util.as_ref().map(|u| u.memory),
            util_encoder_pct: d.encoder_utilization().ok().map(|u| u.utilization),
            util_decoder_pct: d.decoder_utilization().ok().map(|u| u.utilization),
            temperature_c: d.temperature(TemperatureSensor::Gpu).ok(),
            temp_slowdown_c: d.temperature_threshold(TemperatureThreshold::Slowdown).ok(),
            temp_shutdown_c: d.temperature_threshold(TemperatureThreshold::Shutdown).ok(),
            power_mw: d.power_usage().ok(),
            power_limit_mw: d.enforced_power_limit().ok(),
            sm_clock_mhz: d.clock_info(Clock::SM).ok(),
            mem_clock_mhz: d.clock_info(Clock::Memory).ok(),
            graphics_clock_mhz: d.clock_info(Clock::Graphics).ok(),
            fan_pct: d
                .num_fans()
                .ok()
                .filter(|&n| n > 0)
                .and_then(|_| d.fan_speed(0).ok()),
            ecc_enabled,
            ecc_corrected: ecc(MemoryError::Corrected),
            ecc_uncorrected: ecc(MemoryError::Uncorrected),
            retired_pages_single_bit: d
                .retired_pages(RetirementCause::MultipleSingleBitEccErrors)
                .ok()
                .map(|p| p.len() as u64),
            retired_pages_double_bit: d
                .retired_pages(RetirementCause::DoubleBitEccError)
                .ok()
                .map(|p| p.len() as u64),
            retired_pages_pending: d.are_pages_pending_retired().ok(),
            remapped_rows_correctable: field(&fields, FI_REMAPPED_COR).map(|n| n as u32),
            remapped_rows_uncorrectable: field(&fields, FI_REMAPPED_UNC).map(|n| n as u32),
            remapped_rows_pending: field(&fields, FI_REMAPPED_PENDING).map(|n| n != 0),
            remapped_rows_failure: field(&fields, FI_REMAPPED_FAILURE).map(|n| n != 0),
            throttle_reasons: d.current_throttle_reasons().map_or(0, |r| r.bits()),
            nvlink_total,
            nvlink_active,
            mig_enabled,
            mig_devices,
        }
    }

    /// Waits on an NVML event set for critical XID errors of every GPU until `stop`; each one
    /// is recorded in `ledger` and handed to `emit`. Runs on its own thread with its own NVML
    /// handle (the wait blocks for up to a second).
    pub fn watch_xids(
        ledger: XidLedger,
        stop: Arc<AtomicBool>,
        mut emit: impl FnMut(XidEvent) -> bool,
    ) -> Result<(), String> {
        let nvml = match Nvml::init() {
            Ok(n) => n,
            Err(NvmlError::LibloadingError(_)) | Err(NvmlError::DriverNotLoaded) => return Ok(()),
            Err(e) => return Err(format!("NVML init: {e}")),
        };
        let count = nvml
            .device_count()
            .map_err(|e| format!("device count: {e}"))?;
        let mut set = nvml
            .create_event_set()
            .map_err(|e| format!("event set: {e}"))?;
        let mut watched = 0;
        for index in 0..count {
            let Ok(d) = nvml.device_by_index(index) else {
                continue;
            };
            let supported = d
                .supported_event_types()
                .map(|t| t.contains(EventTypes::CRITICAL_XID_ERROR))
                .unwrap_or(false);
            if !supported {
                tracing::warn!(gpu = index, "GPU does not report XID events");
                continue;
            }
            set = d
                .register_events(EventTypes::CRITICAL_XID_ERROR, set)
                .map_err(|e| format!("GPU {index}: register XID events: {}", e.error))?;
            watched += 1;
        }
        tracing::info!(gpus = watched, "watching for XID errors");
        if watched == 0 {
            return Ok(());
        }
        while !stop.load(Ordering::Relaxed) {
            match set.wait(1000) {
                Ok(event) => {
                    let Some(XidError::Value(xid)) = event.event_data else {
                        continue;
                    };
                    let uuid = event.device.uuid().unwrap_or_default();
                    let gpu_total = ledger.record(&uuid, xid, Instant::now());
                    let e = XidEvent {
                        gpu_index: event.device.index().unwrap_or(u32::MAX),
                        pci_bus_id: event
                            .device
                            .pci_info()
                            .map(|p| p.bus_id)
                            .unwrap_or_default(),
                        gpu_uuid: uuid,
                        xid,
                        at_ms: nerve_platform::now_ms(),
                        gpu_total,
                    };
                    tracing::warn!(gpu = e.gpu_index, xid, "GPU XID error");
                    if !emit(e) {
                        return Ok(());
                    }
                }
                Err(NvmlError::Timeout) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "XID event wait failed");
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            }
        }
        Ok(())
    }
}

/// GPU inventory and samples for this machine.
pub struct GpuCollector {
    #[cfg(feature = "gpu")]
    backend: Option<nvml::Backend>,
    init_error: Option<String>,
    ledger: XidLedger,
}

impl GpuCollector {
    /// Opens NVML if `enabled` and the feature is built; otherwise the machine has no GPUs.
    pub fn new(enabled: bool, ledger: XidLedger) -> Self {
        #[cfg(feature = "gpu")]
        {
            let (backend, init_error) = if !enabled {
                (None, None)
            } else {
                match nvml::open() {
                    Ok(backend) => {
                        if backend.is_none() {
                            tracing::info!("no NVIDIA driver found: reporting no GPUs");
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
                backend,
                init_error,
                ledger,
            }
        }
        #[cfg(not(feature = "gpu"))]
        {
            let _ = enabled;
            Self {
                init_error: None,
                ledger,
            }
        }
    }

    /// What NVML reads for every GPU, before it becomes records (`nerve probe` prints these).
    pub fn snapshots(&self) -> Result<Vec<NvmlSnapshot>, String> {
        if let Some(e) = &self.init_error {
            return Err(e.clone());
        }
        #[cfg(feature = "gpu")]
        if let Some(b) = &self.backend {
            return b.snapshots();
        }
        Ok(Vec::new())
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
