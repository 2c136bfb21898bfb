//! Health verdicts derived from recorded NVML-shaped readings (`tests/fixtures/gpu/*.json`).

use nerve_agent::collectors::gpu::{GpuSnapshot, XidLedger, device_of, sample_of};
use nerve_agent::collectors::gpu_health::{GpuReading, Verdict, assess};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    reading: GpuReading,
    expect: Expect,
}

#[derive(Deserialize)]
struct Expect {
    verdict: Verdict,
    codes: Vec<String>,
}

#[test]
fn every_fixture_gets_its_expected_verdict_and_reasons() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpu");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("fixtures dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let fixture: Fixture =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let health = assess(&fixture.reading);
        let codes: Vec<&str> = health.reasons.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(
            health.verdict,
            fixture.expect.verdict,
            "{}: {health:?}",
            path.display()
        );
        assert_eq!(codes, fixture.expect.codes, "{}", path.display());
        checked += 1;
    }
    assert!(
        checked >= 4,
        "only {checked} fixtures found in {}",
        dir.display()
    );
}

#[derive(Deserialize)]
struct SnapshotFixture {
    xids: std::collections::HashMap<String, Vec<u64>>,
    snapshots: Vec<GpuSnapshot>,
}

/// The whole NVML path after the driver: recorded snapshots → inventory and heartbeat records
/// with verdicts, as the agent publishes them.
#[test]
fn nvml_snapshots_become_inventory_and_samples_with_verdicts() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gpu/snapshots/h100_pair_one_remap_pending.json");
    let fixture: SnapshotFixture =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("parse");
    let ledger = XidLedger::default();
    let now = std::time::Instant::now();
    for (uuid, codes) in &fixture.xids {
        for &code in codes {
            ledger.record(uuid, code, now);
        }
    }
    let devices: Vec<_> = fixture.snapshots.iter().map(device_of).collect();
    let samples: Vec<_> = fixture
        .snapshots
        .iter()
        .map(|s| sample_of(s, &ledger.of(&s.uuid, now)))
        .collect();

    assert_eq!(devices[0].compute_capability, "9.0");
    assert_eq!(devices[0].power_limit_w, Some(700.0));
    assert_eq!(devices[0].nvlink_count, Some(18));
    assert_eq!(devices[0].mig_mode, "disabled");
    assert_eq!(devices[1].mig_mode, "enabled");
    assert_eq!(devices[1].mig_devices.len(), 2);

    let healthy = &samples[0];
    assert_eq!(healthy.health, "ok", "{:?}", healthy.health_reasons);
    assert_eq!(healthy.util_pct, 97.0);
    assert!((healthy.power_w - 612.345).abs() < 1e-3);
    assert_eq!(healthy.throttle_reason_names, ["sw_power_cap"]);
    assert_eq!(healthy.nvlink_active, Some(18));
    assert_eq!(healthy.mig_instances, None);
    assert_eq!(healthy.xid_total, 0);

    let sick = &samples[1];
    assert_eq!(sick.health, "critical");
    let codes: Vec<&str> = sick
        .health_reasons
        .iter()
        .map(|r| r.code.as_str())
        .collect();
    assert_eq!(
        codes,
        [
            "xid_79",
            "row_remap_pending",
            "rows_remapped",
            "temperature",
            "throttle_hw_slowdown",
            "throttle_hw_thermal"
        ]
    );
    assert_eq!(sick.xid_total, 1);
    assert_eq!(sick.remapped_rows_pending, Some(true));
    assert_eq!(sick.nvlink_active, Some(16));
    assert_eq!(sick.mig_instances, Some(2));
    assert_eq!(
        sick.throttle_reason_names,
        ["hw_slowdown", "hw_thermal_slowdown"]
    );

    // What the agent publishes must encode under the released schema.
    for s in samples {
        let hb = nerve_schemas::HeartbeatRecorded::carrying("n1", 1, vec![s]);
        let bytes = nerve_schemas::encode(&hb).expect("encode");
        assert_eq!(
            nerve_schemas::decode::<nerve_schemas::HeartbeatRecorded>(&bytes).expect("decode"),
            hb
        );
    }
}

/// `nerve probe` on a real H100 (`captured/`, recorded by `agent/gpu-check.sh`; see
/// `agent/GPU.md`), idle and under a bf16 matrix-product load.
fn captured(name: &str) -> nerve_agent::probe::Probe {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gpu/captured")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What NVML read on the H100 becomes the same inventory record the probe reported, samples
/// with the verdict a healthy GPU deserves, and events that survive the Avro round trip.
#[test]
fn a_real_h100s_readings_become_its_records() {
    for (name, util, throttled) in [
        ("probe-idle.json", 0.0, "gpu_idle"),
        ("probe-busy.json", 62.0, "sw_power_cap"),
    ] {
        let probe = captured(name);
        assert_eq!(probe.nvml.error, None, "{name}");
        let [s] = probe.nvml.snapshots.as_slice() else {
            panic!("{name}: one GPU expected, got {:?}", probe.nvml.snapshots);
        };
        assert_eq!(s.name, "NVIDIA H100 80GB HBM3");
        // NVML's readings that an H100 SXM in a pass-through VM does not have stay absent.
        assert_eq!((s.fan_pct, s.nvlink_total), (None, None), "{name}");
        assert_eq!(
            s.retired_pages_double_bit, None,
            "{name}: Hopper remaps rows"
        );

        assert_eq!(probe.inventory.gpus, vec![device_of(s)], "{name}");
        let d = &probe.inventory.gpus[0];
        assert_eq!(
            (
                d.compute_capability.as_str(),
                d.memory_total_bytes,
                d.power_limit_w
            ),
            ("9.0", 81_559 * 1024 * 1024, Some(700.0)),
            "{name}: nvidia-smi said 81559 MiB, 700.00 W"
        );
        assert_eq!(
            (d.ecc_enabled, d.mig_mode.as_str()),
            (Some(true), "disabled")
        );

        let sample = sample_of(s, &Default::default());
        assert_eq!(sample.util_pct, util, "{name}");
        assert_eq!(sample.throttle_reason_names, [throttled], "{name}");
        assert_eq!(sample.health, "ok", "{name}: {:?}", sample.health_reasons);
        assert_eq!(sample.remapped_rows_pending, Some(false), "{name}");
        assert_eq!(sample.ecc_uncorrected, Some(0), "{name}");

        let hb = &probe.heartbeat;
        assert_eq!(hb.gpus.len(), 1, "{name}");
        assert_eq!(hb.gpus[0].health, "ok", "{name}");
        let bytes = nerve_schemas::encode(hb).expect("encode");
        let back =
            nerve_schemas::decode::<nerve_schemas::HeartbeatRecorded>(&bytes).expect("decode");
        assert_eq!(&back, hb, "{name}");
        let bytes = nerve_schemas::encode(&probe.inventory).expect("encode");
        let back =
            nerve_schemas::decode::<nerve_schemas::InventoryReported>(&bytes).expect("decode");
        assert_eq!(back, probe.inventory, "{name}");
    }
    // Under load the heartbeat (two seconds after the snapshot) saw the GPU at its power cap.
    let busy = captured("probe-busy.json").heartbeat.gpus.remove(0);
    assert_eq!(busy.util_pct, 100.0);
    assert!(
        busy.power_w > 690.0 && busy.power_limit_w == Some(700.0),
        "{busy:?}"
    );
    assert!(busy.sm_clock_mhz.is_some_and(|mhz| mhz > 345), "{busy:?}");
}

/// AMD GPUs: amd-smi's `static`, `metric` and `list` JSON of an MI300X pair (one healthy under
/// load, one with uncorrectable ECC errors, hot and HBM-thermal throttled), and rocm-smi's JSON
/// of an MI250X, become the same inventory records, samples and verdicts as NVIDIA GPUs.
#[test]
fn amd_tool_output_becomes_inventory_and_samples_with_verdicts() {
    use nerve_agent::collectors::gpu::amd;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpu/amd");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect("fixture");
    let snapshots = amd::from_amd_smi(
        &read("mi300x_amd_smi_static.json"),
        &read("mi300x_amd_smi_metric.json"),
        Some(&read("mi300x_amd_smi_list.json")),
    )
    .expect("amd-smi JSON");
    assert_eq!(snapshots.len(), 2);
    let ledger = XidLedger::default();
    let now = std::time::Instant::now();
    let devices: Vec<_> = snapshots.iter().map(device_of).collect();
    let samples: Vec<_> = snapshots
        .iter()
        .map(|s| sample_of(s, &ledger.of(&s.uuid, now)))
        .collect();

    let d = &devices[0];
    assert_eq!(d.name, "AMD Instinct MI300X");
    assert_eq!(d.uuid, "6cff74a1-0000-1000-80e9-3b2f1c0d4a12");
    assert_eq!(d.pci_bus_id, "0000:05:00.0");
    assert_eq!(d.memory_total_bytes, 196_592 << 20);
    assert_eq!(d.compute_capability, "gfx942");
    assert_eq!(d.driver_version, "6.8.5");
    assert_eq!(d.power_limit_w, Some(750.0));
    assert_eq!(d.ecc_enabled, Some(true));

    let healthy = &samples[0];
    assert_eq!(healthy.health, "ok", "{:?}", healthy.health_reasons);
    assert_eq!(healthy.util_pct, 97.0);
    assert_eq!(healthy.mem_util_pct, 63.0);
    assert_eq!(healthy.mem_used_bytes, 152_380 << 20);
    assert_eq!(healthy.temperature_c, 84.0);
    assert_eq!(healthy.power_w, 688.0);
    assert_eq!(healthy.sm_clock_mhz, Some(2089));
    assert_eq!(healthy.mem_clock_mhz, Some(1300));
    assert_eq!(healthy.temp_slowdown_c, Some(100));
    assert_eq!(healthy.ecc_uncorrected, Some(0));

    let sick = &samples[1];
    assert_eq!(sick.health, "critical");
    let codes: Vec<&str> = sick
        .health_reasons
        .iter()
        .map(|r| r.code.as_str())
        .collect();
    assert_eq!(
        codes,
        ["ecc_uncorrected", "temperature", "throttle_hw_thermal"]
    );
    assert_eq!(sick.throttle_reason_names, ["hw_thermal_slowdown"]);

    let older = amd::from_rocm_smi(&read("mi250x_rocm_smi.json")).expect("rocm-smi JSON");
    assert_eq!(older.len(), 1);
    let device = device_of(&older[0]);
    let sample = sample_of(&older[0], &ledger.of(&older[0].uuid, now));
    assert_eq!(device.name, "AMD Instinct MI250X");
    assert_eq!(device.uuid, "AMD-0x4a1c2e0f9b6d3e21");
    assert_eq!(device.driver_version, "6.3.6");
    assert_eq!(device.power_limit_w, Some(560.0));
    assert_eq!(device.memory_total_bytes, 68_702_699_520);
    assert_eq!(sample.health, "ok", "{:?}", sample.health_reasons);
    assert_eq!(sample.util_pct, 64.0);
    assert_eq!(sample.temperature_c, 44.0);
    assert_eq!(sample.power_w, 187.0);
    assert_eq!(sample.sm_clock_mhz, Some(1700));
    assert_eq!(sample.mem_used_bytes, 28_168_724_480);
}

/// The tool is run as the agent runs it: `amd-smi static|metric|list --json` (here a script
/// that prints the MI300X fixtures), its answers read whole; a tool that fails is an error.
#[test]
fn the_agent_runs_amd_smi_and_reads_its_answers() {
    use nerve_agent::collectors::gpu::amd::AmdTool;
    use std::os::unix::fs::PermissionsExt;
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpu/amd");
    let bin = tempfile::tempdir().expect("tmp");
    let tool = bin.path().join("amd-smi");
    std::fs::write(
        &tool,
        format!(
            "#!/bin/sh\n[ \"$2\" = --json ] || exit 2\nexec cat {}/mi300x_amd_smi_\"$1\".json\n",
            fixtures.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let read = AmdTool::AmdSmi(tool.clone())
        .snapshots()
        .expect("snapshots");
    assert_eq!(read.len(), 2);
    assert_eq!(read[1].ecc_uncorrected, Some(2));
    assert_eq!(read[0].uuid, "6cff74a1-0000-1000-80e9-3b2f1c0d4a12");
    std::fs::write(&tool, "#!/bin/sh\nexit 3\n").expect("script");
    let err = AmdTool::AmdSmi(tool).snapshots().unwrap_err();
    assert!(err.contains("static --json"), "{err}");
}
