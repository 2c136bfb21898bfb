//! The NVML backend: opens the driver, reads each GPU into an `GpuSnapshot`, and waits on an
//! NVML event set for XIDs. Every call blocks; callers run it off the async runtime.

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

use super::{GpuSnapshot, MigSnapshot, XidEvent, XidLedger};

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
    pub fn snapshots(&self) -> Result<Vec<GpuSnapshot>, String> {
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

fn snapshot(index: u32, d: &Device, driver: &str, cuda: &str) -> GpuSnapshot {
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
    GpuSnapshot {
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
