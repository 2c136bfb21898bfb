//! Storage: whole disks from sysfs (`block/*`: model, serial, size, NVMe/SSD/HDD, removable) with
//! SMART health from `smartctl --json` when it is installed and permitted, and the mounted
//! filesystems (sysinfo). SMART is re-read at most every [`SMART_EVERY`]; its temperature and
//! power-on hours are kept out of change detection (they move all the time).

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nerve_schemas::{BlockDevice, Disk};
use sysinfo::{DiskKind, Disks};

use super::read_trimmed;

/// How long a SMART reading is reused.
pub const SMART_EVERY: Duration = Duration::from_secs(3600);

/// SMART as `smartctl --json -H -A` reports it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Smart {
    pub health: String,
    pub temperature_c: Option<i32>,
    pub power_on_hours: Option<i64>,
    pub note: String,
}

/// Parses `smartctl --json -H -A` output. smartctl exits non-zero for many reasons (bit flags),
/// so the JSON, not the exit code, decides.
pub fn parse_smartctl(json: &str) -> Smart {
    let v: serde_json::Value = match serde_json::from_str(json) {
        Ok(v) => v,
        Err(e) => {
            return Smart {
                health: "unknown".into(),
                note: format!("smartctl output is not JSON: {e}"),
                ..Smart::default()
            };
        }
    };
    let health = match v.pointer("/smart_status/passed").and_then(|p| p.as_bool()) {
        Some(true) => "passed",
        Some(false) => "failed",
        None => "unknown",
    };
    let note = if health == "unknown" {
        v.pointer("/smartctl/messages")
            .and_then(|m| m.as_array())
            .map(|m| {
                m.iter()
                    .filter_map(|m| m.get("string").and_then(|s| s.as_str()))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "no SMART health in smartctl output".into())
    } else {
        String::new()
    };
    Smart {
        health: health.into(),
        temperature_c: v
            .pointer("/temperature/current")
            .and_then(|t| t.as_i64())
            .map(|t| t as i32),
        power_on_hours: v.pointer("/power_on_time/hours").and_then(|h| h.as_i64()),
        note,
    }
}

/// Reads SMART for `/dev/<name>`; "unknown" with the reason when smartctl is missing or refused.
fn smartctl(name: &str) -> Smart {
    let unknown = |note: String| Smart {
        health: "unknown".into(),
        note,
        ..Smart::default()
    };
    match Command::new("smartctl")
        .args(["--json=c", "-H", "-A"])
        .arg(format!("/dev/{name}"))
        .output()
    {
        Ok(out) if !out.stdout.is_empty() => parse_smartctl(&String::from_utf8_lossy(&out.stdout)),
        Ok(out) => unknown(format!(
            "smartctl failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            unknown("smartctl not installed".into())
        }
        Err(e) => unknown(format!("smartctl: {e}")),
    }
}

/// Whether a `block/<name>` entry is a real disk: virtual devices (loop, ram, zram, device
/// mapper, md) have no `device` link.
fn is_disk(block: &Path, name: &str) -> bool {
    !["loop", "ram", "zram", "dm-", "md", "nbd"]
        .iter()
        .any(|p| name.starts_with(p))
        && block.join(name).join("device").exists()
}

/// Whole disks from `<sysfs>/block`, without SMART (pure sysfs reads).
pub fn block_devices(sysfs: &Path) -> Result<Vec<BlockDevice>, String> {
    let block = sysfs.join("block");
    let entries =
        std::fs::read_dir(&block).map_err(|e| format!("read {}: {e}", block.display()))?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_disk(&block, &name) {
            continue;
        }
        let dev = block.join(&name);
        let attr = |f: &str| read_trimmed(&dev.join(f)).filter(|s| !s.is_empty());
        let sectors: i64 = attr("size").and_then(|s| s.parse().ok()).unwrap_or(0);
        let kind = if name.starts_with("nvme") {
            "nvme"
        } else {
            match attr("queue/rotational").as_deref() {
                Some("0") => "ssd",
                Some("1") => "hdd",
                _ => "unknown",
            }
        };
        out.push(BlockDevice {
            model: attr("device/model").unwrap_or_default(),
            serial: attr("device/serial")
                .or_else(|| attr("serial"))
                .or_else(|| attr("device/wwid"))
                .unwrap_or_default(),
            size_bytes: sectors.saturating_mul(512),
            kind: kind.into(),
            removable: attr("removable").as_deref() == Some("1"),
            smart_health: "unknown".into(),
            name,
            ..BlockDevice::default()
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Mounted filesystems, each device once per mount point.
pub fn filesystems() -> Vec<Disk> {
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

/// Keeps SMART readings between scans.
#[derive(Default)]
pub struct StorageCollector {
    smart: HashMap<String, (Instant, Smart)>,
}

impl StorageCollector {
    /// Disks with SMART (cached for [`SMART_EVERY`] unless `fresh`).
    pub fn block_devices(&mut self, sysfs: &Path, fresh: bool) -> Result<Vec<BlockDevice>, String> {
        let mut devices = block_devices(sysfs)?;
        for d in &mut devices {
            let smart = match self.smart.get(&d.name) {
                Some((at, s)) if !fresh && at.elapsed() < SMART_EVERY => s.clone(),
                _ => {
                    let s = smartctl(&d.name);
                    self.smart
                        .insert(d.name.clone(), (Instant::now(), s.clone()));
                    s
                }
            };
            d.smart_health = smart.health;
            d.smart_temperature_c = smart.temperature_c;
            d.smart_power_on_hours = smart.power_on_hours;
            d.smart_note = smart.note;
        }
        Ok(devices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::fixture;

    #[test]
    fn smartctl_json_gives_health_temperature_and_hours() {
        let s = parse_smartctl(&fixture("smartctl_nvme.json"));
        assert_eq!(s.health, "passed");
        assert_eq!(s.temperature_c, Some(41));
        assert_eq!(s.power_on_hours, Some(8123));
        assert!(s.note.is_empty());

        let failing = parse_smartctl(&fixture("smartctl_sata_failing.json"));
        assert_eq!(failing.health, "failed");
        assert_eq!(failing.power_on_hours, Some(43_800));
    }

    #[test]
    fn smartctl_refusals_are_unknown_with_the_reason() {
        let s = parse_smartctl(&fixture("smartctl_permission_denied.json"));
        assert_eq!(s.health, "unknown");
        assert!(s.note.contains("Permission denied"), "{}", s.note);
        assert_eq!(parse_smartctl("garbage").health, "unknown");
        // Captured on the CI machine: a virtio disk smartctl cannot talk to.
        let s = parse_smartctl(&fixture("smartctl_virtio_captured.json"));
        assert_eq!(s.health, "unknown");
        assert!(
            s.note.contains("Unable to detect device type"),
            "{}",
            s.note
        );
    }

    #[test]
    fn sysfs_block_devices_skip_virtual_ones_and_classify_kinds() {
        let dir = tempfile::tempdir().expect("tmp");
        let dev = |name: &str, files: &[(&str, &str)], device: bool| {
            let p = dir.path().join("block").join(name);
            std::fs::create_dir_all(p.join("queue")).expect("mkdir");
            if device {
                std::fs::create_dir_all(p.join("device")).expect("mkdir");
            }
            for (f, v) in files {
                std::fs::write(p.join(f), format!("{v}\n")).expect("w");
            }
        };
        dev(
            "nvme0n1",
            &[
                ("size", "7501476528"),
                ("device/model", "SAMSUNG MZQL27T6HBLA"),
                ("device/serial", "S6CKNG0T1"),
            ],
            true,
        );
        dev(
            "sda",
            &[
                ("size", "100"),
                ("queue/rotational", "1"),
                ("removable", "0"),
            ],
            true,
        );
        dev(
            "sdb",
            &[
                ("size", "100"),
                ("queue/rotational", "0"),
                ("removable", "1"),
            ],
            true,
        );
        dev("loop0", &[("size", "0")], false);
        dev("zram0", &[("size", "8")], false);
        let d = block_devices(dir.path()).expect("block");
        let got: Vec<(&str, &str, i64, bool)> = d
            .iter()
            .map(|d| (d.name.as_str(), d.kind.as_str(), d.size_bytes, d.removable))
            .collect();
        assert_eq!(
            got,
            [
                ("nvme0n1", "nvme", 7_501_476_528 * 512, false),
                ("sda", "hdd", 51_200, false),
                ("sdb", "ssd", 51_200, true)
            ]
        );
        assert_eq!(d[0].model, "SAMSUNG MZQL27T6HBLA");
        assert_eq!(d[0].serial, "S6CKNG0T1");
    }

    #[test]
    fn a_missing_block_dir_is_this_collectors_error() {
        let dir = tempfile::tempdir().expect("tmp");
        assert!(block_devices(dir.path()).is_err());
    }
}
