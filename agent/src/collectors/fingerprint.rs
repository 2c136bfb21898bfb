//! The inventory: every inventory collector (os, cpu, memory, storage, network, system) run in
//! isolation — one that fails or panics leaves its part empty and its error in
//! `collector_errors`, the others still report — and [`content_key`], which decides whether a
//! scan changed anything.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::Instant;

use nerve_schemas::{CollectorError, CpuInfo, Envelope, InventoryReported, MemoryInfo};
use sysinfo::System;

use super::{cpu, memory, network, storage, system};

/// Where the collectors read the host from: `/proc`, `/sys` and `/` normally; the host's
/// mounts when the agent runs in a container (`/host/proc`, ...).
#[derive(Debug, Clone)]
pub struct HostPaths {
    pub procfs: PathBuf,
    pub sysfs: PathBuf,
    pub rootfs: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        Self {
            procfs: "/proc".into(),
            sysfs: "/sys".into(),
            rootfs: "/".into(),
        }
    }
}

/// Runs one collector; an error or a panic becomes a [`CollectorError`] and `None`.
pub fn isolated<T>(
    name: &str,
    errors: &mut Vec<CollectorError>,
    f: impl FnOnce() -> Result<T, String>,
) -> Option<T> {
    let outcome = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(format!("collector panicked: {what}"))
    });
    match outcome {
        Ok(v) => Some(v),
        Err(message) => {
            tracing::debug!(collector = name, error = %message, "inventory collector failed");
            errors.push(CollectorError {
                collector: name.to_owned(),
                message,
            });
            None
        }
    }
}

/// Collects the inventory; keeps what is slow or static between scans (SMART, DIMMs).
pub struct Fingerprinter {
    paths: HostPaths,
    storage: storage::StorageCollector,
    memory: Option<(Instant, MemoryInfo)>,
    /// The previous scan's errors: a collector failing every scan is logged once.
    last_errors: Vec<CollectorError>,
}

impl Fingerprinter {
    pub fn new(paths: HostPaths) -> Self {
        Self {
            paths,
            storage: storage::StorageCollector::default(),
            memory: None,
            last_errors: Vec::new(),
        }
    }

    /// One scan. `fresh` re-reads what is otherwise cached (the daily refresh).
    pub fn inventory(&mut self, fresh: bool) -> InventoryReported {
        let p = self.paths.clone();
        let mut errors = Vec::new();
        let mut system = System::new();
        system.refresh_memory();

        let cpu = isolated("cpu", &mut errors, || cpu::collect(&p.procfs, &p.sysfs));
        let hypervisor = cpu
            .as_ref()
            .is_some_and(|c| c.flags.iter().any(|f| f == "hypervisor"));
        let memory = isolated("memory", &mut errors, || {
            if fresh || self.memory.is_none() {
                self.memory = Some((Instant::now(), memory::collect(&p.sysfs)));
            }
            Ok(self.memory.as_ref().map(|(_, m)| m.clone()))
        })
        .flatten();
        let block_devices = isolated("storage", &mut errors, || {
            self.storage.block_devices(&p.sysfs, fresh)
        })
        .unwrap_or_default();
        let disks =
            isolated("filesystems", &mut errors, || Ok(storage::filesystems())).unwrap_or_default();
        let interfaces = isolated("network", &mut errors, || {
            network::interfaces(&p.sysfs, &network::addresses())
        })
        .unwrap_or_default();
        let system_info = isolated("system", &mut errors, || {
            Ok(system::collect(&p.procfs, &p.sysfs, &p.rootfs, hypervisor))
        });

        for e in errors.iter().filter(|e| !self.last_errors.contains(e)) {
            tracing::warn!(collector = %e.collector, error = %e.message, "inventory collector failed");
        }
        for e in self
            .last_errors
            .iter()
            .filter(|e| !errors.iter().any(|n| n.collector == e.collector))
        {
            tracing::info!(collector = %e.collector, "inventory collector works again");
        }
        self.last_errors = errors.clone();
        InventoryReported {
            envelope: Envelope::new::<InventoryReported>("", 0),
            hostname: System::host_name().unwrap_or_default(),
            os_name: System::name().unwrap_or_default(),
            os_version: System::os_version().unwrap_or_default(),
            kernel_version: System::kernel_version().unwrap_or_default(),
            arch: System::cpu_arch(),
            boot_time_ms: (System::boot_time() as i64).saturating_mul(1000),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            cpu: cpu.unwrap_or_else(|| CpuInfo {
                logical_cores: System::new_all().cpus().len() as i32,
                ..CpuInfo::default()
            }),
            memory_total_bytes: system.total_memory() as i64,
            swap_total_bytes: system.total_swap() as i64,
            disks,
            interfaces,
            gpus: Vec::new(),
            memory,
            block_devices,
            system: system_info,
            location: None,
            collector_errors: errors,
        }
    }
}

/// What identifies the inventory's content: everything but the envelope and the readings that
/// move on their own (SMART temperature and power-on hours, refreshed with the next report).
pub fn content_key(inventory: &InventoryReported) -> String {
    let mut copy = inventory.clone();
    copy.envelope = Envelope {
        event_id: String::new(),
        node_id: String::new(),
        occurred_at_ms: 0,
        schema_name: String::new(),
        schema_version: 0,
    };
    for d in &mut copy.block_devices {
        d.smart_temperature_c = None;
        d.smart_power_on_hours = None;
    }
    format!("{copy:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_has_an_inventory_and_rescanning_is_stable() {
        let mut f = Fingerprinter::new(HostPaths::default());
        let a = f.inventory(true);
        assert!(a.collector_errors.is_empty(), "{:?}", a.collector_errors);
        assert!(!a.hostname.is_empty());
        assert!(a.cpu.logical_cores >= 1);
        assert!(!a.cpu.flags.is_empty() || a.arch != "x86_64");
        assert!(a.memory_total_bytes > 0);
        assert!(a.memory.is_some());
        assert!(a.system.is_some());
        assert!(!a.interfaces.is_empty());
        let b = f.inventory(false);
        assert_eq!(
            content_key(&a),
            content_key(&b),
            "rescan of an unchanged machine differs"
        );
    }

    #[test]
    fn content_key_ignores_the_envelope_and_smart_readings_but_not_the_content() {
        let mut f = Fingerprinter::new(HostPaths::default());
        let a = f.inventory(false);
        let mut b = a.clone();
        b.envelope.event_id = "other".into();
        b.block_devices.push(nerve_schemas::BlockDevice::default());
        let mut c = b.clone();
        c.block_devices.last_mut().expect("one").smart_temperature_c = Some(50);
        assert_eq!(content_key(&b), content_key(&c));
        b.memory_total_bytes += 1;
        assert_ne!(content_key(&b), content_key(&c));
    }

    #[test]
    fn a_failing_collector_leaves_the_others_reporting() {
        let missing = tempfile::tempdir().expect("tmp");
        let mut f = Fingerprinter::new(HostPaths {
            sysfs: missing.path().to_owned(),
            ..HostPaths::default()
        });
        let inv = f.inventory(true);
        let failed: Vec<&str> = inv
            .collector_errors
            .iter()
            .map(|e| e.collector.as_str())
            .collect();
        assert_eq!(failed, ["storage", "network"]);
        assert!(inv.collector_errors[0].message.contains("block"));
        assert!(inv.cpu.logical_cores >= 1, "cpu still reports");
        assert!(inv.memory_total_bytes > 0);
        assert!(!inv.disks.is_empty(), "filesystems still report");
    }

    #[test]
    fn a_panicking_collector_is_an_error_not_a_crash() {
        let mut errors = Vec::new();
        let got: Option<u8> = isolated("boom", &mut errors, || panic!("bad sysfs value"));
        assert_eq!(got, None);
        assert_eq!(errors[0].collector, "boom");
        assert!(errors[0].message.contains("bad sysfs value"));
    }
}
