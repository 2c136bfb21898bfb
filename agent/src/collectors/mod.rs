//! Collectors. Inventory (slow, reported on change): `cpu`, `memory`, `storage`, `network`,
//! `system`, assembled by `fingerprint`; every heartbeat: `host` (CPU, memory, disk, network,
//! load); both: `gpu` (NVML, with `gpu_health` verdicts). One failing collector never stops the
//! others: its error travels in the inventory event's `collector_errors`.
//!
//! All of them block (they read `/proc`, `/sys`, NVML, run `dmidecode`/`smartctl`) and run on a
//! blocking thread.

pub mod cpu;
pub mod fingerprint;
pub mod gpu;
pub mod gpu_health;
pub mod host;
pub mod memory;
pub mod network;
pub mod storage;
pub mod system;

use std::path::{Path, PathBuf};

use nerve_schemas::{CollectorError, HeartbeatRecorded, InventoryReported};

/// The executable `name` on `PATH`, else in one of `also` (where a vendor installs its tools).
pub fn find_program(name: &str, also: &[&str]) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(also.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Every collector of this agent.
pub struct Collectors {
    host: host::HostSampler,
    fingerprint: fingerprint::Fingerprinter,
    gpu: gpu::GpuCollector,
}

impl Collectors {
    /// Prepares the collectors; `gpu` false skips NVML entirely.
    pub fn new(gpu: bool, paths: fingerprint::HostPaths, xids: gpu::XidLedger) -> Self {
        Self {
            host: host::HostSampler::new(),
            fingerprint: fingerprint::Fingerprinter::new(paths),
            gpu: gpu::GpuCollector::new(gpu, xids),
        }
    }

    /// Whether NVML is open, so XIDs can be watched.
    pub fn has_nvml(&self) -> bool {
        self.gpu.has_nvml()
    }

    /// The raw NVML readings of every GPU.
    pub fn nvml_snapshots(&self) -> Result<Vec<gpu::GpuSnapshot>, String> {
        self.gpu.snapshots()
    }

    /// A heartbeat body (the caller sets the envelope, seq and interval).
    pub fn sample(&mut self) -> HeartbeatRecorded {
        let mut hb = self.host.sample();
        // A GPU read failure shows up in the next inventory; the heartbeat goes out regardless.
        hb.gpus = self.gpu.sample().unwrap_or_default();
        hb
    }

    /// An inventory body (the caller sets the envelope); `fresh` re-reads cached parts.
    pub fn inventory(&mut self, fresh: bool) -> InventoryReported {
        let mut inv = self.fingerprint.inventory(fresh);
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

/// A sysfs/procfs attribute, trimmed; `None` when unreadable.
pub(crate) fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// A recorded tool output from `tests/fixtures/host/`.
#[cfg(test)]
pub(crate) fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/host")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
