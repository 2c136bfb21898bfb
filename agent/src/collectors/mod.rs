//! Collectors: `fingerprint` (inventory, slow, reported on change), `host` (CPU, memory, disk,
//! network, load; every heartbeat) and `gpu` (NVML). One failing collector never stops the
//! others: its error travels in the inventory event's `collector_errors`.
//!
//! All of them block (they read `/proc`, `/sys`, NVML) and run on a blocking thread.

pub mod fingerprint;
pub mod gpu;
pub mod gpu_health;
pub mod host;

use nerve_schemas::{CollectorError, HeartbeatRecorded, InventoryReported};

/// Every collector of this agent.
pub struct Collectors {
    host: host::HostSampler,
    fingerprint: fingerprint::Fingerprinter,
    gpu: gpu::GpuCollector,
}

impl Collectors {
    /// Prepares the collectors; `gpu` false skips NVML entirely.
    pub fn new(gpu: bool) -> Self {
        Self {
            host: host::HostSampler::new(),
            fingerprint: fingerprint::Fingerprinter::new(),
            gpu: gpu::GpuCollector::new(gpu),
        }
    }

    /// A heartbeat body (the caller sets the envelope, seq and interval).
    pub fn sample(&mut self) -> HeartbeatRecorded {
        let mut hb = self.host.sample();
        // A GPU read failure shows up in the next inventory; the heartbeat goes out regardless.
        hb.gpus = self.gpu.sample().unwrap_or_default();
        hb
    }

    /// An inventory body (the caller sets the envelope).
    pub fn inventory(&mut self) -> InventoryReported {
        let mut inv = self.fingerprint.inventory();
        match self.gpu.inventory() {
            Ok(gpus) => inv.gpus = gpus,
            Err(message) => inv.collector_errors.push(CollectorError {
                collector: "gpu".into(),
                message,
            }),
        }
        inv
    }
}
