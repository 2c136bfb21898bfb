//! Per-GPU health verdicts (ok / warning / critical, with reasons) derived from NVML-shaped
//! readings: ECC errors, retired pages and remapped rows, temperature against the GPU's own
//! slowdown/shutdown thresholds, hardware throttling, and recent XID errors, which are decoded to
//! their meaning here. Pure functions: the agent feeds them live NVML readings, the tests feed
//! them recorded ones (`agent/tests/fixtures/gpu/`).

use serde::{Deserialize, Serialize};

/// What NVML says about one GPU at one moment (fields NVML cannot read on a model are `None`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuReading {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub temperature_c: Option<u32>,
    /// `NVML_TEMPERATURE_THRESHOLD_SLOWDOWN`.
    pub temp_slowdown_c: Option<u32>,
    /// `NVML_TEMPERATURE_THRESHOLD_SHUTDOWN`.
    pub temp_shutdown_c: Option<u32>,
    /// Volatile (since driver load) ECC counts.
    pub ecc_corrected: Option<u64>,
    pub ecc_uncorrected: Option<u64>,
    /// Pages retired for double-bit errors, and whether a retirement awaits a reboot
    /// (pre-Ampere GPUs).
    pub retired_pages_double_bit: Option<u64>,
    pub retired_pages_pending: Option<bool>,
    /// Row remapping (Ampere and later).
    pub remapped_rows_uncorrectable: Option<u32>,
    pub remapped_rows_pending: Option<bool>,
    pub remapped_rows_failure: Option<bool>,
    /// `nvmlClocksEventReasons` bitmask.
    pub throttle_reasons: u64,
    /// XID codes seen since the previous reading.
    pub recent_xids: Vec<u32>,
}

/// Overall verdict, ordered by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Warning,
    Critical,
}

/// One reason behind a verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub severity: Verdict,
    /// Stable machine-readable code, e.g. `ecc_uncorrected`, `xid_79`.
    pub code: String,
    pub message: String,
}

/// A GPU's health: the worst reason's severity, and every reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub verdict: Verdict,
    pub reasons: Vec<Reason>,
}

/// Hardware throttle reasons that mean something is wrong (power capping under load is normal).
pub const THROTTLE_HW_SLOWDOWN: u64 = 0x8;
pub const THROTTLE_SW_THERMAL: u64 = 0x20;
pub const THROTTLE_HW_THERMAL: u64 = 0x40;
pub const THROTTLE_HW_POWER_BRAKE: u64 = 0x80;

/// Double-bit retired pages at which NVIDIA considers a board for replacement.
pub const RETIRED_PAGES_RMA: u64 = 60;
/// Corrected ECC errors since driver load that are worth a look.
pub const ECC_CORRECTED_WARN: u64 = 1000;
/// How close to its shutdown temperature a GPU is critical.
pub const SHUTDOWN_MARGIN_C: u32 = 3;
/// Temperature that is a warning when NVML does not report the GPU's own thresholds.
pub const DEFAULT_HOT_C: u32 = 85;

/// What an XID means and how bad it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XidInfo {
    pub code: u32,
    pub meaning: &'static str,
    pub severity: Verdict,
    /// Whether it usually points at the application rather than the hardware.
    pub likely_application: bool,
}

/// Decodes an XID (NVIDIA's XID catalogue; unknown codes are warnings).
pub fn decode_xid(code: u32) -> XidInfo {
    use Verdict::*;
    let (meaning, severity, app) = match code {
        8 => ("GPU stopped responding (timeout)", Critical, false),
        13 => ("Graphics engine exception", Warning, true),
        31 => ("GPU memory page fault", Warning, true),
        32 => ("Invalid or corrupted push buffer stream", Warning, true),
        38 => ("Driver firmware error", Critical, false),
        43 => ("GPU stopped processing (application fault)", Warning, true),
        45 => ("Preemptive cleanup after a previous error", Warning, true),
        48 => ("Double-bit ECC error", Critical, false),
        61 => (
            "Internal micro-controller breakpoint/warning",
            Warning,
            false,
        ),
        62 => ("Internal micro-controller halt", Critical, false),
        63 => (
            "ECC page retirement or row remapping recorded",
            Warning,
            false,
        ),
        64 => (
            "ECC page retirement or row remapping recording failure",
            Critical,
            false,
        ),
        68 => ("Video processor exception", Warning, false),
        69 => ("Graphics engine class error", Warning, true),
        74 => ("NVLink error", Critical, false),
        79 => ("GPU has fallen off the bus", Critical, false),
        92 => ("High single-bit ECC error rate", Warning, false),
        94 => (
            "Contained ECC error (application terminated)",
            Warning,
            false,
        ),
        95 => ("Uncontained ECC error", Critical, false),
        109 => ("Context switch timeout", Warning, true),
        119 => ("GSP RPC timeout", Critical, false),
        120 => ("GSP error", Critical, false),
        121 => ("C2C link error", Critical, false),
        140 => ("Unrecovered ECC error", Critical, false),
        _ => ("Unknown XID (see NVIDIA's XID catalogue)", Warning, false),
    };
    XidInfo {
        code,
        meaning,
        severity,
        likely_application: app,
    }
}

fn reason(severity: Verdict, code: impl Into<String>, message: impl Into<String>) -> Reason {
    Reason {
        severity,
        code: code.into(),
        message: message.into(),
    }
}

/// Derives the verdict of one reading.
pub fn assess(r: &GpuReading) -> Health {
    use Verdict::*;
    let mut reasons = Vec::new();

    if let Some(n) = r.ecc_uncorrected.filter(|&n| n > 0) {
        reasons.push(reason(
            Critical,
            "ecc_uncorrected",
            format!("{n} uncorrected ECC errors since driver load"),
        ));
    }
    if let Some(n) = r.ecc_corrected.filter(|&n| n >= ECC_CORRECTED_WARN) {
        reasons.push(reason(
            Warning,
            "ecc_corrected",
            format!("{n} corrected ECC errors since driver load"),
        ));
    }
    match r.retired_pages_double_bit {
        Some(n) if n >= RETIRED_PAGES_RMA => reasons.push(reason(
            Critical,
            "retired_pages",
            format!("{n} pages retired for double-bit errors (replacement threshold {RETIRED_PAGES_RMA})"),
        )),
        Some(n) if n > 0 => reasons.push(reason(
            Warning,
            "retired_pages",
            format!("{n} pages retired for double-bit errors"),
        )),
        _ => {}
    }
    if r.retired_pages_pending == Some(true) {
        reasons.push(reason(
            Warning,
            "retired_pages_pending",
            "a page retirement is pending: reset the GPU or reboot",
        ));
    }
    if r.remapped_rows_failure == Some(true) {
        reasons.push(reason(
            Critical,
            "row_remap_failure",
            "row remapping failed: the GPU needs service",
        ));
    }
    if r.remapped_rows_pending == Some(true) {
        reasons.push(reason(
            Warning,
            "row_remap_pending",
            "a row remapping is pending: reset the GPU or reboot",
        ));
    }
    if let Some(n) = r.remapped_rows_uncorrectable.filter(|&n| n > 0) {
        reasons.push(reason(
            Warning,
            "rows_remapped",
            format!("{n} rows remapped for uncorrectable errors"),
        ));
    }

    if let Some(t) = r.temperature_c {
        match (r.temp_slowdown_c, r.temp_shutdown_c) {
            (_, Some(shutdown)) if t + SHUTDOWN_MARGIN_C >= shutdown => reasons.push(reason(
                Critical,
                "temperature",
                format!(
                    "{t} °C, within {SHUTDOWN_MARGIN_C} °C of the {shutdown} °C shutdown threshold"
                ),
            )),
            (Some(slowdown), _) if t >= slowdown => reasons.push(reason(
                Warning,
                "temperature",
                format!("{t} °C, at or above the {slowdown} °C slowdown threshold"),
            )),
            (None, None) if t >= DEFAULT_HOT_C => reasons.push(reason(
                Warning,
                "temperature",
                format!("{t} °C (thresholds unknown; warning at {DEFAULT_HOT_C} °C)"),
            )),
            _ => {}
        }
    }

    for (bit, code, what) in [
        (
            THROTTLE_HW_SLOWDOWN,
            "throttle_hw_slowdown",
            "hardware slowdown",
        ),
        (
            THROTTLE_HW_THERMAL,
            "throttle_hw_thermal",
            "hardware thermal slowdown",
        ),
        (
            THROTTLE_SW_THERMAL,
            "throttle_sw_thermal",
            "software thermal slowdown",
        ),
        (
            THROTTLE_HW_POWER_BRAKE,
            "throttle_power_brake",
            "power brake slowdown",
        ),
    ] {
        if r.throttle_reasons & bit != 0 {
            reasons.push(reason(Warning, code, format!("clocks throttled: {what}")));
        }
    }

    let mut xids = r.recent_xids.clone();
    xids.sort_unstable();
    xids.dedup();
    for code in xids {
        let x = decode_xid(code);
        let hint = if x.likely_application {
            " (usually the application)"
        } else {
            ""
        };
        reasons.push(reason(
            x.severity,
            format!("xid_{code}"),
            format!("XID {code}: {}{hint}", x.meaning),
        ));
    }

    reasons.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.code.cmp(&b.code)));
    Health {
        verdict: reasons.first().map_or(Ok, |r| r.severity),
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> GpuReading {
        GpuReading {
            index: 0,
            uuid: "GPU-0".into(),
            name: "H100".into(),
            temperature_c: Some(55),
            temp_slowdown_c: Some(87),
            temp_shutdown_c: Some(92),
            ecc_corrected: Some(0),
            ecc_uncorrected: Some(0),
            remapped_rows_uncorrectable: Some(0),
            remapped_rows_pending: Some(false),
            remapped_rows_failure: Some(false),
            throttle_reasons: 0x4, // software power cap under load: normal
            ..GpuReading::default()
        }
    }

    #[test]
    fn a_busy_healthy_gpu_is_ok() {
        let h = assess(&healthy());
        assert_eq!(h.verdict, Verdict::Ok, "{h:?}");
        assert!(h.reasons.is_empty());
    }

    #[test]
    fn temperature_is_judged_against_the_gpus_own_thresholds() {
        let at = |t, slow, shut| {
            assess(&GpuReading {
                temperature_c: Some(t),
                temp_slowdown_c: slow,
                temp_shutdown_c: shut,
                ..healthy()
            })
            .verdict
        };
        assert_eq!(at(86, Some(87), Some(92)), Verdict::Ok);
        assert_eq!(at(87, Some(87), Some(92)), Verdict::Warning);
        assert_eq!(at(88, Some(87), Some(92)), Verdict::Warning);
        assert_eq!(at(89, Some(87), Some(92)), Verdict::Critical);
        assert_eq!(at(84, None, None), Verdict::Ok);
        assert_eq!(at(85, None, None), Verdict::Warning);
    }

    #[test]
    fn the_worst_reason_wins_and_every_reason_is_listed() {
        let h = assess(&GpuReading {
            recent_xids: vec![31, 79, 31],
            throttle_reasons: THROTTLE_HW_THERMAL,
            ..healthy()
        });
        assert_eq!(h.verdict, Verdict::Critical);
        let codes: Vec<&str> = h.reasons.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(codes, ["xid_79", "throttle_hw_thermal", "xid_31"]);
        assert!(h.reasons[2].message.contains("usually the application"));
    }

    #[test]
    fn xids_decode_to_meaning_and_unknown_ones_are_warnings() {
        assert_eq!(decode_xid(48).severity, Verdict::Critical);
        assert!(decode_xid(79).meaning.contains("fallen off the bus"));
        assert!(decode_xid(13).likely_application);
        assert_eq!(decode_xid(9999).severity, Verdict::Warning);
    }
}
