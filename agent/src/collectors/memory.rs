//! Memory modules: `dmidecode -t 16 -t 17` when it is installed and permitted (root), else the
//! kernel's EDAC view in sysfs, else `unknown` (total memory is in the inventory either way).
//! DIMMs do not change while a machine runs, so the result is kept until the daily refresh.

use std::path::Path;
use std::process::Command;

use nerve_schemas::{Dimm, MemoryInfo};

use super::read_trimmed;

/// Parses `dmidecode -t 16 -t 17` text. Empty slots are skipped.
pub fn parse_dmidecode(text: &str) -> MemoryInfo {
    let mut info = MemoryInfo {
        source: "dmidecode".into(),
        ecc: "unknown".into(),
        slots: None,
        dimms: Vec::new(),
    };
    for block in text.split("\n\n") {
        let mut lines = block.lines().map(str::trim).filter(|l| !l.is_empty());
        let Some(mut title) = lines.next() else {
            continue;
        };
        if title.starts_with("Handle ") {
            let Some(t) = lines.next() else { continue };
            title = t;
        }
        let fields: Vec<(&str, &str)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let get = |key: &str| {
            fields
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| *v)
                .filter(|v| !matches!(*v, "" | "Unknown" | "Not Specified" | "Not Provided"))
        };
        match title {
            "Physical Memory Array" => {
                if let Some(ecc) = get("Error Correction Type") {
                    info.ecc = ecc.to_owned();
                }
                if let Some(n) = get("Number Of Devices").and_then(|n| n.parse::<i32>().ok()) {
                    info.slots = Some(info.slots.unwrap_or(0) + n);
                }
            }
            "Memory Device" => {
                let Some(size_bytes) = get("Size").and_then(parse_size) else {
                    continue; // "No Module Installed"
                };
                let width = |k| {
                    get(k)
                        .and_then(|w| w.split_whitespace().next())
                        .and_then(|n| n.parse::<u32>().ok())
                };
                let ecc = match (width("Total Width"), width("Data Width")) {
                    (Some(total), Some(data)) => Some(total > data),
                    _ => None,
                };
                info.dimms.push(Dimm {
                    locator: get("Locator").unwrap_or("").to_owned(),
                    size_bytes,
                    kind: get("Type").unwrap_or("unknown").to_owned(),
                    speed_mts: get("Speed").and_then(parse_speed),
                    configured_speed_mts: get("Configured Memory Speed")
                        .or(get("Configured Clock Speed"))
                        .and_then(parse_speed),
                    ecc,
                    manufacturer: get("Manufacturer").unwrap_or("").to_owned(),
                    part_number: get("Part Number").unwrap_or("").to_owned(),
                    serial: get("Serial Number").unwrap_or("").to_owned(),
                });
            }
            _ => {}
        }
    }
    info
}

/// `32 GB`, `16384 MB`, `1 TB` → bytes; `No Module Installed` → None.
fn parse_size(text: &str) -> Option<i64> {
    let mut parts = text.split_whitespace();
    let n: i64 = parts.next()?.parse().ok()?;
    let mult: i64 = match parts.next()? {
        "kB" | "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        _ => return None,
    };
    (n > 0).then_some(n * mult)
}

/// `3200 MT/s` or `3200 MHz` → 3200.
fn parse_speed(text: &str) -> Option<i32> {
    text.split_whitespace().next()?.parse().ok()
}

/// DIMMs as the kernel's EDAC driver lists them (`devices/system/edac/mc/mc*/dimm*`); readable
/// without root, present on servers with an EDAC driver loaded.
pub fn from_edac(sysfs: &Path) -> Option<MemoryInfo> {
    let mc = sysfs.join("devices/system/edac/mc");
    let mut dimms = Vec::new();
    let mut controllers: Vec<_> = std::fs::read_dir(mc).ok()?.flatten().collect();
    controllers.sort_by_key(|e| e.file_name());
    for controller in controllers {
        let Ok(entries) = std::fs::read_dir(controller.path()) else {
            continue;
        };
        let mut entries: Vec<_> = entries
            .flatten()
            .filter(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.starts_with("dimm") || n.starts_with("rank")
            })
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let file = |f: &str| {
                read_trimmed(&p.join(f)).or_else(|| read_trimmed(&p.join(f.replace("dimm_", ""))))
            };
            let Some(mib) = file("size").and_then(|s| s.parse::<i64>().ok()) else {
                continue;
            };
            if mib == 0 {
                continue;
            }
            let edac_mode = file("dimm_edac_mode").unwrap_or_default();
            dimms.push(Dimm {
                locator: file("dimm_label")
                    .filter(|l| !l.is_empty())
                    .or_else(|| file("dimm_location"))
                    .unwrap_or_else(|| e.file_name().to_string_lossy().into_owned()),
                size_bytes: mib << 20,
                kind: file("dimm_mem_type")
                    .map(|t| {
                        t.trim_start_matches("Registered-")
                            .trim_start_matches("Unbuffered-")
                            .to_owned()
                    })
                    .unwrap_or_else(|| "unknown".into()),
                ecc: (!edac_mode.is_empty()).then(|| edac_mode != "None" && edac_mode != "Unknown"),
                ..Dimm::default()
            });
        }
    }
    if dimms.is_empty() {
        return None;
    }
    let ecc = match dimms.iter().map(|d| d.ecc).collect::<Vec<_>>().as_slice() {
        all if all.iter().all(|e| *e == Some(true)) => "ECC",
        all if all.iter().all(|e| *e == Some(false)) => "None",
        _ => "unknown",
    };
    Some(MemoryInfo {
        source: "sysfs".into(),
        ecc: ecc.into(),
        slots: None,
        dimms,
    })
}

/// Runs `dmidecode` if installed; `None` when it is missing, not permitted or finds nothing
/// (VMs without SMBIOS tables).
fn from_dmidecode() -> Option<MemoryInfo> {
    let out = Command::new("dmidecode")
        .args(["-t", "16", "-t", "17"])
        .output()
        .ok()?;
    if !out.status.success() {
        tracing::debug!(
            stderr = %String::from_utf8_lossy(&out.stderr).trim(),
            "dmidecode unavailable (not root?); DIMMs from sysfs if it has them"
        );
        return None;
    }
    let info = parse_dmidecode(&String::from_utf8_lossy(&out.stdout));
    (!info.dimms.is_empty()).then_some(info)
}

/// The memory modules, from the best source this process may read; never an error (a machine
/// whose DIMMs cannot be read says `unknown`).
pub fn collect(sysfs: &Path) -> MemoryInfo {
    from_dmidecode()
        .or_else(|| from_edac(sysfs))
        .unwrap_or_else(|| MemoryInfo {
            source: "unknown".into(),
            ecc: "unknown".into(),
            slots: None,
            dimms: Vec::new(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::fixture;

    #[test]
    fn dmidecode_lists_installed_dimms_with_speed_type_and_ecc() {
        let m = parse_dmidecode(&fixture("dmidecode_t16_t17.txt"));
        assert_eq!(m.source, "dmidecode");
        assert_eq!(m.ecc, "Multi-bit ECC");
        assert_eq!(m.slots, Some(4));
        assert_eq!(m.dimms.len(), 2, "empty slots are skipped");
        let d = &m.dimms[0];
        assert_eq!(d.locator, "DIMM_A1");
        assert_eq!(d.size_bytes, 64 << 30);
        assert_eq!(d.kind, "DDR5");
        assert_eq!(d.speed_mts, Some(4800));
        assert_eq!(d.configured_speed_mts, Some(4400));
        assert_eq!(d.ecc, Some(true), "72-bit total over 64-bit data");
        assert_eq!(d.manufacturer, "Samsung");
        assert_eq!(d.part_number, "M321R8GA0BB0-CQKZJ");
        assert_eq!(m.dimms[1].size_bytes, 16384 << 20);
        assert_eq!(m.dimms[1].ecc, Some(false));
    }

    #[test]
    fn edac_sysfs_is_the_fallback_without_root() {
        let dir = tempfile::tempdir().expect("tmp");
        for (i, label) in [
            "CPU_SrcID#0_Ha#0_Chan#0_DIMM#0",
            "CPU_SrcID#0_Ha#0_Chan#1_DIMM#0",
        ]
        .iter()
        .enumerate()
        {
            let p = dir
                .path()
                .join(format!("devices/system/edac/mc/mc0/dimm{i}"));
            std::fs::create_dir_all(&p).expect("mkdir");
            std::fs::write(p.join("size"), "32768\n").expect("w");
            std::fs::write(p.join("dimm_mem_type"), "Registered-DDR4\n").expect("w");
            std::fs::write(p.join("dimm_edac_mode"), "SECDED\n").expect("w");
            std::fs::write(p.join("dimm_label"), format!("{label}\n")).expect("w");
        }
        let m = from_edac(dir.path()).expect("edac");
        assert_eq!(m.source, "sysfs");
        assert_eq!(m.ecc, "ECC");
        assert_eq!(m.dimms.len(), 2);
        assert_eq!(m.dimms[0].size_bytes, 32 << 30);
        assert_eq!(m.dimms[0].kind, "DDR4");
        assert_eq!(m.dimms[1].locator, "CPU_SrcID#0_Ha#0_Chan#1_DIMM#0");
    }

    #[test]
    fn nothing_readable_is_unknown_not_an_error() {
        let dir = tempfile::tempdir().expect("tmp");
        assert_eq!(from_edac(dir.path()), None);
        let m = collect(dir.path());
        assert!(m.source == "unknown" || m.source == "dmidecode", "{m:?}");
    }
}
