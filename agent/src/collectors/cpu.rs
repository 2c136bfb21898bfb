//! CPU inventory from `/proc/cpuinfo` (model, vendor, sockets, cores, threads, flags) and sysfs
//! (cache sizes per level, base and maximum frequency from cpufreq). Parsers are pure functions
//! over the files' text so they are tested on recorded files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use nerve_schemas::{CpuCache, CpuInfo};

use super::read_trimmed;

/// What `/proc/cpuinfo` says.
#[derive(Debug, Default, PartialEq)]
pub struct ProcCpuinfo {
    pub model: String,
    pub vendor: String,
    pub logical: i32,
    pub sockets: Option<i32>,
    pub cores: Option<i32>,
    pub flags: Vec<String>,
    pub hypervisor: bool,
    pub mhz: Option<f64>,
}

/// Parses `/proc/cpuinfo` (x86 and ARM layouts).
pub fn parse_cpuinfo(text: &str) -> ProcCpuinfo {
    let mut out = ProcCpuinfo::default();
    let mut sockets = BTreeSet::new();
    let mut cores = BTreeSet::new();
    let mut physical_id: Option<String> = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" => {
                out.logical += 1;
                physical_id = None;
            }
            "model name" | "Model" if out.model.is_empty() => out.model = value.to_owned(),
            "vendor_id" | "CPU implementer" if out.vendor.is_empty() => {
                out.vendor = value.to_owned()
            }
            "physical id" => {
                sockets.insert(value.to_owned());
                physical_id = Some(value.to_owned());
            }
            "core id" => {
                cores.insert((physical_id.clone().unwrap_or_default(), value.to_owned()));
            }
            "flags" | "Features" if out.flags.is_empty() => {
                let mut flags: Vec<String> = value.split_whitespace().map(str::to_owned).collect();
                flags.sort();
                flags.dedup();
                out.hypervisor = flags.iter().any(|f| f == "hypervisor");
                out.flags = flags;
            }
            "cpu MHz" if out.mhz.is_none() => out.mhz = value.parse().ok(),
            _ => {}
        }
    }
    out.sockets = (!sockets.is_empty()).then_some(sockets.len() as i32);
    out.cores = (!cores.is_empty()).then_some(cores.len() as i32);
    out
}

/// Parses a sysfs cache size such as `32K`, `1024K` or `32M`.
pub fn parse_cache_size(text: &str) -> Option<i64> {
    let t = text.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: i64 = digits.parse().ok()?;
    let mult = match unit.trim() {
        "" => 1,
        "K" | "KB" | "KiB" => 1 << 10,
        "M" | "MB" | "MiB" => 1 << 20,
        "G" | "GB" | "GiB" => 1 << 30,
        _ => return None,
    };
    Some(n * mult)
}

/// Every distinct cache of the machine: `cpu*/cache/index*`, where caches shared by several CPUs
/// (same `shared_cpu_list`) count once.
pub fn caches(sysfs: &Path) -> Vec<CpuCache> {
    let cpu_dir = sysfs.join("devices/system/cpu");
    let Ok(cpus) = std::fs::read_dir(&cpu_dir) else {
        return Vec::new();
    };
    // (level, kind) -> (size, distinct shared_cpu_list values)
    let mut seen: BTreeMap<(i32, String), (i64, BTreeSet<String>)> = BTreeMap::new();
    for cpu in cpus.flatten() {
        let name = cpu.file_name().to_string_lossy().into_owned();
        if !name.starts_with("cpu") || !name[3..].bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(indexes) = std::fs::read_dir(cpu.path().join("cache")) else {
            continue;
        };
        for index in indexes.flatten() {
            let p = index.path();
            let level = read_trimmed(&p.join("level")).and_then(|l| l.parse::<i32>().ok());
            let kind = read_trimmed(&p.join("type"));
            let size = read_trimmed(&p.join("size")).and_then(|s| parse_cache_size(&s));
            let (Some(level), Some(kind), Some(size)) = (level, kind, size) else {
                continue;
            };
            let shared = read_trimmed(&p.join("shared_cpu_list")).unwrap_or_else(|| name.clone());
            seen.entry((level, kind))
                .or_insert_with(|| (size, BTreeSet::new()))
                .1
                .insert(shared);
        }
    }
    seen.into_iter()
        .map(|((level, kind), (size_bytes, shared))| CpuCache {
            level,
            kind,
            size_bytes,
            instances: shared.len() as i32,
        })
        .collect()
}

fn khz_file_mhz(path: &Path) -> Option<i64> {
    read_trimmed(path)?
        .parse::<i64>()
        .ok()
        .map(|khz| khz / 1000)
}

/// The CPU inventory; an unreadable `/proc/cpuinfo` is this collector's error.
pub fn collect(procfs: &Path, sysfs: &Path) -> Result<CpuInfo, String> {
    let path = procfs.join("cpuinfo");
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let info = parse_cpuinfo(&text);
    if info.logical == 0 {
        return Err(format!("{} lists no processors", path.display()));
    }
    let cpufreq = sysfs.join("devices/system/cpu/cpu0/cpufreq");
    let max_mhz = khz_file_mhz(&cpufreq.join("cpuinfo_max_freq"));
    let base_mhz = khz_file_mhz(&cpufreq.join("base_frequency"));
    let threads_per_core = info
        .cores
        .filter(|&c| c > 0)
        .map(|c| (info.logical / c).max(1));
    Ok(CpuInfo {
        model: info.model,
        vendor: info.vendor,
        physical_cores: info.cores,
        logical_cores: info.logical,
        // cpu MHz moves all the time: the stable maximum where known, else the first reading
        // rounded to 100 MHz so rescans do not look like changes.
        frequency_mhz: max_mhz
            .or(base_mhz)
            .or(info.mhz.map(|m| ((m / 100.0).round() * 100.0) as i64))
            .unwrap_or(0),
        sockets: info.sockets,
        threads_per_core,
        base_frequency_mhz: base_mhz,
        max_frequency_mhz: max_mhz,
        caches: caches(sysfs),
        flags: info.flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_SOCKETS: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n\
physical id\t: 0\ncore id\t\t: 0\ncpu MHz\t\t: 2000.012\nflags\t\t: fpu avx512f sse avx2\n\n\
processor\t: 1\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n\
physical id\t: 0\ncore id\t\t: 0\nflags\t\t: fpu avx512f sse avx2\n\n\
processor\t: 2\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n\
physical id\t: 1\ncore id\t\t: 0\nflags\t\t: fpu avx512f sse avx2\n\n\
processor\t: 3\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n\
physical id\t: 1\ncore id\t\t: 0\nflags\t\t: fpu avx512f sse avx2\n";

    #[test]
    fn sockets_cores_and_threads_come_from_physical_and_core_ids() {
        let c = parse_cpuinfo(TWO_SOCKETS);
        assert_eq!(c.logical, 4);
        assert_eq!(c.sockets, Some(2));
        assert_eq!(c.cores, Some(2), "core ids repeat per socket");
        assert_eq!(c.vendor, "GenuineIntel");
        assert_eq!(c.flags, ["avx2", "avx512f", "fpu", "sse"]);
        assert!(!c.hypervisor);
    }

    #[test]
    fn arm_cpuinfo_has_no_sockets_but_still_parses() {
        let c = parse_cpuinfo(
            "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm\nCPU implementer\t: 0x41\n\n\
processor\t: 1\nFeatures\t: fp asimd evtstrm\nCPU implementer\t: 0x41\n",
        );
        assert_eq!((c.logical, c.sockets, c.cores), (2, None, None));
        assert_eq!(c.vendor, "0x41");
        assert_eq!(c.flags, ["asimd", "evtstrm", "fp"]);
    }

    #[test]
    fn cache_sizes_parse_with_units() {
        assert_eq!(parse_cache_size("32K"), Some(32 << 10));
        assert_eq!(parse_cache_size("105M\n"), Some(105 << 20));
        assert_eq!(parse_cache_size("512"), Some(512));
        assert_eq!(parse_cache_size("lots"), None);
    }

    #[test]
    fn shared_caches_count_once() {
        let dir = tempfile::tempdir().expect("tmp");
        for cpu in 0..4 {
            for (i, level, kind, size, shared) in [
                (0, 1, "Data", "48K", format!("{cpu}")),
                (1, 2, "Unified", "2048K", format!("{cpu}")),
                (2, 3, "Unified", "105M", "0-3".to_owned()),
            ] {
                let p = dir
                    .path()
                    .join(format!("devices/system/cpu/cpu{cpu}/cache/index{i}"));
                std::fs::create_dir_all(&p).expect("mkdir");
                std::fs::write(p.join("level"), format!("{level}\n")).expect("w");
                std::fs::write(p.join("type"), format!("{kind}\n")).expect("w");
                std::fs::write(p.join("size"), format!("{size}\n")).expect("w");
                std::fs::write(p.join("shared_cpu_list"), format!("{shared}\n")).expect("w");
            }
        }
        let c = caches(dir.path());
        let got: Vec<(i32, &str, i64, i32)> = c
            .iter()
            .map(|c| (c.level, c.kind.as_str(), c.size_bytes, c.instances))
            .collect();
        assert_eq!(
            got,
            [
                (1, "Data", 48 << 10, 4),
                (2, "Unified", 2 << 20, 4),
                (3, "Unified", 105 << 20, 1)
            ]
        );
    }

    #[test]
    fn this_machine_has_a_cpu_inventory() {
        let c = collect(Path::new("/proc"), Path::new("/sys")).expect("cpu");
        assert!(c.logical_cores >= 1);
        assert!(!c.model.is_empty() || !c.vendor.is_empty());
    }

    #[test]
    fn a_missing_cpuinfo_is_this_collectors_error() {
        let dir = tempfile::tempdir().expect("tmp");
        let e = collect(dir.path(), dir.path()).expect_err("no cpuinfo");
        assert!(e.contains("cpuinfo"), "{e}");
    }
}
