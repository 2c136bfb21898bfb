//! AMD GPUs through ROCm's command-line tools, when a node has them: `amd-smi` (`static`,
//! `metric` and `list`, each `--json`), or the older `rocm-smi --showallinfo --json`. Their JSON
//! becomes the same [`GpuSnapshot`]s the NVML backend reads, so AMD GPUs get the same inventory
//! records, per-GPU samples and health verdicts. Values arrive as `{"value": v, "unit": u}`,
//! bare numbers, or `"N/A"` (read as unknown); memory units are amd-smi's binary MB/GB.
//!
//! What AMD names differently: `hotspot` is the temperature judged (edge when there is none);
//! `gfx_activity` / `umc_activity` are GPU and memory utilisation; the RAS totals are the ECC
//! counts; the violation statuses of MI300-class parts (`prochot`, `ppt`, socket / HBM
//! thermal) map to NVML's hardware slowdown, power cap and thermal slowdown reasons.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::GpuSnapshot;

/// How long one tool call may take before it is killed.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Where ROCm installs its tools when they are not on `PATH`.
const ROCM_BIN: &str = "/opt/rocm/bin";

/// Which tool this node has.
#[derive(Debug, Clone, PartialEq)]
pub enum AmdTool {
    AmdSmi(PathBuf),
    RocmSmi(PathBuf),
}

impl AmdTool {
    /// `amd-smi`, else `rocm-smi`, on `PATH` or in ROCm's bin directory; `None` without either.
    pub fn detect() -> Option<Self> {
        let find = |name: &str| crate::collectors::find_program(name, &[ROCM_BIN]);
        find("amd-smi")
            .map(AmdTool::AmdSmi)
            .or_else(|| find("rocm-smi").map(AmdTool::RocmSmi))
    }

    /// Every GPU as the tool reads it now.
    pub fn snapshots(&self) -> Result<Vec<GpuSnapshot>, String> {
        match self {
            AmdTool::AmdSmi(path) => {
                let static_json = run(path, &["static", "--json"])?;
                let metric_json = run(path, &["metric", "--json"])?;
                // Older releases have no UUID in `list`; the bus id then names the GPU.
                let list_json = run(path, &["list", "--json"]).ok();
                from_amd_smi(&static_json, &metric_json, list_json.as_deref())
            }
            AmdTool::RocmSmi(path) => from_rocm_smi(&run(path, &["--showallinfo", "--json"])?),
        }
    }
}

/// Runs `tool args`, killing it past [`CALL_TIMEOUT`]; its stdout.
fn run(tool: &Path, args: &[&str]) -> Result<String, String> {
    let what = format!("{} {}", tool.display(), args.join(" "));
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() > CALL_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what}: no answer within {CALL_TIMEOUT:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("{what}: {e}")),
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{what}: {}", out.status));
    }
    String::from_utf8(out.stdout).map_err(|_| format!("{what}: output is not UTF-8"))
}

/// The per-GPU objects of an amd-smi answer: a list, or `{"gpu_data": [...]}`; amd-smi may
/// print a warning line before the JSON.
fn gpu_list(text: &str) -> Result<Vec<Value>, String> {
    let start = text.find(['[', '{']).ok_or("amd-smi printed no JSON")?;
    let doc: Value =
        serde_json::from_str(&text[start..]).map_err(|e| format!("amd-smi JSON: {e}"))?;
    match doc {
        Value::Array(gpus) => Ok(gpus),
        Value::Object(mut o) => match o.remove("gpu_data") {
            Some(Value::Array(gpus)) => Ok(gpus),
            _ => Err("amd-smi JSON has no gpu_data list".into()),
        },
        _ => Err("amd-smi JSON is neither a list nor an object".into()),
    }
}

/// A number from `{"value": v}`, a bare number or a numeric string; `None` for "N/A".
fn num(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64(),
        Value::Object(o) => num(o.get("value")),
        Value::String(s) => s
            .trim()
            .trim_start_matches('(')
            .trim_end_matches(')')
            .trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == '%')
            .trim()
            .parse()
            .ok(),
        _ => None,
    }
}

/// Bytes from a `{"value": v, "unit": "MB"}` (amd-smi's MB and GB are binary).
fn bytes(v: Option<&Value>) -> Option<u64> {
    let n = num(v)?;
    let unit = v?.get("unit").and_then(Value::as_str).unwrap_or("MB");
    let scale = match unit {
        "B" => 1.0,
        "KB" | "KiB" => 1024.0,
        "GB" | "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => 1024.0 * 1024.0,
    };
    Some((n * scale) as u64)
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) if s != "N/A" => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn pick<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, key| v.get(key))
}

fn whole(v: Option<f64>) -> Option<u32> {
    v.filter(|n| n.is_finite() && *n >= 0.0)
        .map(|n| n.round().min(f64::from(u32::MAX)) as u32)
}

/// Whether a violation status says the limit is being hit now.
fn active(v: Option<&Value>) -> bool {
    match v {
        Some(Value::String(s)) => s.eq_ignore_ascii_case("active"),
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|n| n > 0.0),
        _ => false,
    }
}

/// GPUs from `amd-smi static --json`, `metric --json` and (optional) `list --json`, matched by
/// the `gpu` index.
pub fn from_amd_smi(
    static_json: &str,
    metric_json: &str,
    list_json: Option<&str>,
) -> Result<Vec<GpuSnapshot>, String> {
    let statics = gpu_list(static_json)?;
    let metrics = gpu_list(metric_json)?;
    let listed = list_json.map(gpu_list).transpose()?.unwrap_or_default();
    let index_of = |v: &Value| v.get("gpu").and_then(Value::as_u64);
    let mut out = Vec::new();
    for st in &statics {
        let Some(index) = index_of(st) else { continue };
        let metric = metrics.iter().find(|m| index_of(m) == Some(index));
        let m = |path: &str| metric.and_then(|m| pick(m, path));
        let listing = listed.iter().find(|l| index_of(l) == Some(index));
        let bus = text(pick(st, "bus.bdf"));
        let uuid = listing
            .map(|l| text(l.get("uuid")))
            .filter(|u| !u.is_empty())
            .or_else(|| Some(text(st.get("uuid"))).filter(|u| !u.is_empty()))
            .unwrap_or_else(|| format!("AMD-{bus}"));
        let throttle = [
            ("throttle.prochot_violation_status", 0x8),
            ("throttle.ppt_violation_status", 0x4),
            ("throttle.socket_thermal_violation_status", 0x40),
            ("throttle.hbm_thermal_violation_status", 0x40),
            ("throttle.vr_thermal_violation_status", 0x40),
        ]
        .iter()
        .filter(|(path, _)| active(m(path)))
        .fold(0u64, |acc, (_, bit)| acc | bit);
        let ecc_enabled = pick(st, "ras.ecc_block_state")
            .and_then(Value::as_object)
            .map(|blocks| blocks.values().any(|s| s.as_str() == Some("ENABLED")));
        let watts = |v: Option<&Value>| whole(num(v).map(|w| w * 1000.0));
        out.push(GpuSnapshot {
            index: index.min(u64::from(u32::MAX)) as u32,
            uuid,
            name: text(pick(st, "asic.market_name")),
            pci_bus_id: bus,
            serial: Some(text(pick(st, "asic.asic_serial")))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| text(pick(st, "board.product_serial"))),
            vbios_version: Some(text(pick(st, "vbios.version")))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| text(pick(st, "vbios.part_number"))),
            compute_capability: text(pick(st, "asic.target_graphics_version")),
            driver_version: text(pick(st, "driver.version")),
            memory_total_bytes: bytes(pick(st, "vram.size"))
                .or_else(|| bytes(m("mem_usage.total_vram")))
                .unwrap_or(0),
            memory_used_bytes: bytes(m("mem_usage.used_vram")).unwrap_or(0),
            util_gpu_pct: whole(num(m("usage.gfx_activity"))),
            util_memory_pct: whole(num(m("usage.umc_activity"))),
            temperature_c: whole(num(m("temperature.hotspot")).or(num(m("temperature.edge")))),
            temp_slowdown_c: whole(num(pick(st, "limit.slowdown_hotspot_temperature"))),
            temp_shutdown_c: whole(num(pick(st, "limit.shutdown_hotspot_temperature"))),
            power_mw: watts(m("power.socket_power")),
            power_limit_mw: watts(pick(st, "limit.socket_power"))
                .or_else(|| watts(pick(st, "limit.max_power"))),
            sm_clock_mhz: whole(num(m("clock.gfx_0.clk"))),
            graphics_clock_mhz: whole(num(m("clock.gfx_0.clk"))),
            mem_clock_mhz: whole(num(m("clock.mem_0.clk"))),
            fan_pct: whole(num(m("fan.usage"))),
            ecc_enabled,
            ecc_corrected: num(m("ecc.total_correctable_count")).map(|n| n as u64),
            ecc_uncorrected: num(m("ecc.total_uncorrectable_count")).map(|n| n as u64),
            throttle_reasons: throttle,
            ..GpuSnapshot::default()
        });
    }
    out.sort_by_key(|g| g.index);
    Ok(out)
}

/// GPUs from `rocm-smi --showallinfo --json`: one object per `cardN`, keys as rocm-smi words
/// them.
pub fn from_rocm_smi(json: &str) -> Result<Vec<GpuSnapshot>, String> {
    let start = json.find('{').ok_or("rocm-smi printed no JSON")?;
    let doc: Value =
        serde_json::from_str(&json[start..]).map_err(|e| format!("rocm-smi JSON: {e}"))?;
    let cards = doc.as_object().ok_or("rocm-smi JSON is not an object")?;
    let driver = text(pick(&doc, "system.Driver version"));
    let mut out = Vec::new();
    for (key, card) in cards {
        let Some(index) = key.strip_prefix("card").and_then(|i| i.parse::<u32>().ok()) else {
            continue;
        };
        let get = |k: &str| card.get(k);
        let first = |keys: &[&str]| keys.iter().find_map(|k| num(get(k)));
        let bus = text(get("PCI Bus"));
        let unique = text(get("Unique ID"));
        out.push(GpuSnapshot {
            index,
            uuid: if unique.is_empty() {
                format!("AMD-{bus}")
            } else {
                format!("AMD-{unique}")
            },
            name: [text(get("Card Series")), text(get("Card series"))]
                .into_iter()
                .find(|s| !s.is_empty())
                .unwrap_or_default(),
            pci_bus_id: bus,
            serial: text(get("Serial Number")),
            vbios_version: text(get("VBIOS version")),
            compute_capability: text(get("GFX Version")),
            driver_version: driver.clone(),
            memory_total_bytes: num(get("VRAM Total Memory (B)")).unwrap_or(0.0) as u64,
            memory_used_bytes: num(get("VRAM Total Used Memory (B)")).unwrap_or(0.0) as u64,
            util_gpu_pct: whole(num(get("GPU use (%)"))),
            util_memory_pct: whole(first(&[
                "GPU Memory Allocated (VRAM%)",
                "GPU memory use (%)",
            ])),
            temperature_c: whole(first(&[
                "Temperature (Sensor junction) (C)",
                "Temperature (Sensor edge) (C)",
            ])),
            power_mw: whole(
                first(&[
                    "Current Socket Graphics Package Power (W)",
                    "Average Graphics Package Power (W)",
                ])
                .map(|w| w * 1000.0),
            ),
            power_limit_mw: whole(num(get("Max Graphics Package Power (W)")).map(|w| w * 1000.0)),
            sm_clock_mhz: whole(num(get("sclk clock speed:"))),
            graphics_clock_mhz: whole(num(get("sclk clock speed:"))),
            mem_clock_mhz: whole(num(get("mclk clock speed:"))),
            fan_pct: whole(num(get("Fan speed (%)"))),
            ..GpuSnapshot::default()
        });
    }
    out.sort_by_key(|g| g.index);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_in_every_shape_amd_smi_prints() {
        let v: Value = serde_json::json!({
            "a": {"value": 42, "unit": "%"}, "b": 7, "c": "N/A", "d": "(1700Mhz)", "e": "61.0",
            "m": {"value": 2, "unit": "GB"}, "n": {"value": 196592, "unit": "MB"}
        });
        assert_eq!(num(v.get("a")), Some(42.0));
        assert_eq!(num(v.get("b")), Some(7.0));
        assert_eq!(num(v.get("c")), None);
        assert_eq!(num(v.get("d")), Some(1700.0));
        assert_eq!(num(v.get("e")), Some(61.0));
        assert_eq!(num(v.get("missing")), None);
        assert_eq!(bytes(v.get("m")), Some(2 << 30));
        assert_eq!(bytes(v.get("n")), Some(196_592 << 20));
        assert!(gpu_list("WARNING: not in render group\n[{\"gpu\": 0}]").is_ok());
        assert!(gpu_list("no json here").is_err());
        assert!(from_amd_smi("{\"gpu_data\": 3}", "[]", None).is_err());
    }
}
