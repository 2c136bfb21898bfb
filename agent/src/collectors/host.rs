//! Fast periodic host stats via sysinfo: CPU busy %, load, memory, swap, disk use, network rates.

use std::time::{Duration, Instant};

use nerve_schemas::{Envelope, HeartbeatRecorded};
use sysinfo::{Disks, Networks, System};

/// Keeps the previous readings so CPU % and network rates cover the interval between samples.
pub struct HostSampler {
    system: System,
    networks: Networks,
    disks: Disks,
    last: Instant,
}

impl Default for HostSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl HostSampler {
    pub fn new() -> Self {
        let mut system = System::new();
        system.refresh_cpu_usage();
        Self {
            system,
            networks: Networks::new_with_refreshed_list(),
            disks: Disks::new_with_refreshed_list(),
            last: Instant::now(),
        }
    }

    /// One sample. The first one waits until sysinfo's minimum CPU measuring window has passed.
    pub fn sample(&mut self) -> HeartbeatRecorded {
        let since = self.last.elapsed();
        if since < sysinfo::MINIMUM_CPU_UPDATE_INTERVAL {
            std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL - since);
        }
        let elapsed = self
            .last
            .elapsed()
            .max(Duration::from_millis(1))
            .as_secs_f64();
        self.last = Instant::now();
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        self.networks.refresh(true);
        self.disks.refresh(true);

        let (rx, tx) = self
            .networks
            .iter()
            .filter(|(name, _)| name.as_str() != "lo")
            .fold((0u64, 0u64), |(rx, tx), (_, d)| {
                (rx + d.received(), tx + d.transmitted())
            });
        let (disk_total, disk_used) = local_disk_usage(&self.disks);
        let load = System::load_average();
        HeartbeatRecorded {
            envelope: Envelope::new::<HeartbeatRecorded>("", 0),
            seq: 0,
            interval_secs: 0,
            uptime_secs: System::uptime() as i64,
            cpu_pct: self.system.global_cpu_usage().clamp(0.0, 100.0),
            cpu_count: self.system.cpus().len() as i32,
            load1: load.one as f32,
            load5: load.five as f32,
            load15: load.fifteen as f32,
            mem_total_bytes: self.system.total_memory() as i64,
            mem_used_bytes: self.system.used_memory() as i64,
            swap_total_bytes: self.system.total_swap() as i64,
            swap_used_bytes: self.system.used_swap() as i64,
            disk_total_bytes: disk_total as i64,
            disk_used_bytes: disk_used as i64,
            net_rx_bytes_per_sec: rx as f64 / elapsed,
            net_tx_bytes_per_sec: tx as f64 / elapsed,
            gpus: Vec::new(),
        }
    }
}

/// Total and used bytes over local, non-removable filesystems, counting each device once (the
/// same device is often mounted several times, e.g. bind mounts in containers).
pub fn local_disk_usage(disks: &Disks) -> (u64, u64) {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut used = 0u64;
    for disk in disks.list() {
        if disk.is_removable() || !seen.insert(disk.name().to_owned()) {
            continue;
        }
        total += disk.total_space();
        used += disk.total_space().saturating_sub(disk.available_space());
    }
    (total, used)
}
