//! Slow inventory: OS, CPU, memory, disks, network interfaces. Reported at start and when its
//! content changes (compared by [`content_key`], which ignores the envelope).

use nerve_schemas::{CpuInfo, Disk, Envelope, InventoryReported, NetInterface};
use sysinfo::{DiskKind, Disks, Networks, System};

/// Collects the inventory; keeps the CPU frequency seen first (the current frequency changes
/// all the time and would make every scan look like a change).
pub struct Fingerprinter {
    cpu_frequency_mhz: Option<u64>,
}

impl Default for Fingerprinter {
    fn default() -> Self {
        Self::new()
    }
}

impl Fingerprinter {
    pub fn new() -> Self {
        Self {
            cpu_frequency_mhz: None,
        }
    }

    pub fn inventory(&mut self) -> InventoryReported {
        let mut system = System::new();
        system.refresh_cpu_all();
        system.refresh_memory();
        let first_cpu = system.cpus().first();
        let frequency = *self.cpu_frequency_mhz.get_or_insert_with(|| {
            max_cpu_frequency_mhz()
                .or(first_cpu.map(|c| c.frequency()))
                .unwrap_or(0)
        });
        let cpu = CpuInfo {
            model: first_cpu
                .map(|c| c.brand().trim().to_owned())
                .unwrap_or_default(),
            vendor: first_cpu
                .map(|c| c.vendor_id().to_owned())
                .unwrap_or_default(),
            physical_cores: System::physical_core_count().map(|n| n as i32),
            logical_cores: system.cpus().len() as i32,
            frequency_mhz: frequency as i64,
        };
        InventoryReported {
            envelope: Envelope::new::<InventoryReported>("", 0),
            hostname: System::host_name().unwrap_or_default(),
            os_name: System::name().unwrap_or_default(),
            os_version: System::os_version().unwrap_or_default(),
            kernel_version: System::kernel_version().unwrap_or_default(),
            arch: System::cpu_arch(),
            boot_time_ms: (System::boot_time() as i64).saturating_mul(1000),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            cpu,
            memory_total_bytes: system.total_memory() as i64,
            swap_total_bytes: system.total_swap() as i64,
            disks: disks(),
            interfaces: interfaces(),
            gpus: Vec::new(),
            collector_errors: Vec::new(),
        }
    }
}

/// The CPU's maximum frequency from cpufreq, where the kernel exposes it.
fn max_cpu_frequency_mhz() -> Option<u64> {
    let khz: u64 = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(khz / 1000)
}

fn disks() -> Vec<Disk> {
    let disks = Disks::new_with_refreshed_list();
    let mut out: Vec<Disk> = disks
        .list()
        .iter()
        .map(|d| Disk {
            name: d.name().to_string_lossy().into_owned(),
            mount_point: d.mount_point().to_string_lossy().into_owned(),
            file_system: d.file_system().to_string_lossy().into_owned(),
            kind: match d.kind() {
                DiskKind::SSD => "ssd",
                DiskKind::HDD => "hdd",
                _ => "unknown",
            }
            .to_owned(),
            total_bytes: d.total_space() as i64,
            removable: d.is_removable(),
        })
        .collect();
    out.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
    out
}

fn interfaces() -> Vec<NetInterface> {
    let networks = Networks::new_with_refreshed_list();
    let mut out: Vec<NetInterface> = networks
        .iter()
        .map(|(name, data)| {
            let mut addresses: Vec<String> = data
                .ip_networks()
                .iter()
                .map(|n| format!("{}/{}", n.addr, n.prefix))
                .collect();
            addresses.sort();
            NetInterface {
                name: name.clone(),
                mac: data.mac_address().to_string(),
                addresses,
                mtu: data.mtu() as i64,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// What identifies the inventory's content: everything but the envelope.
pub fn content_key(inventory: &InventoryReported) -> String {
    let mut copy = inventory.clone();
    copy.envelope = Envelope {
        event_id: String::new(),
        node_id: String::new(),
        occurred_at_ms: 0,
        schema_name: String::new(),
        schema_version: 0,
    };
    format!("{copy:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_has_an_inventory_and_rescanning_is_stable() {
        let mut f = Fingerprinter::new();
        let a = f.inventory();
        assert!(!a.hostname.is_empty());
        assert!(a.cpu.logical_cores >= 1);
        assert!(a.memory_total_bytes > 0);
        assert!(!a.interfaces.is_empty());
        let b = f.inventory();
        assert_eq!(
            content_key(&a),
            content_key(&b),
            "rescan of an unchanged machine differs"
        );
    }

    #[test]
    fn content_key_ignores_the_envelope_but_not_the_content() {
        let mut f = Fingerprinter::new();
        let a = f.inventory();
        let mut b = a.clone();
        b.envelope.event_id = "other".into();
        assert_eq!(content_key(&a), content_key(&b));
        b.memory_total_bytes += 1;
        assert_ne!(content_key(&a), content_key(&b));
    }
}
