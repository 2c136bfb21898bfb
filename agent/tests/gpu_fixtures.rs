//! Health verdicts derived from recorded NVML-shaped readings (`tests/fixtures/gpu/*.json`).

use nerve_agent::collectors::gpu::{NvmlSnapshot, XidLedger, device_of, sample_of};
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
    snapshots: Vec<NvmlSnapshot>,
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
        let hb = nerve_schemas::HeartbeatRecorded {
            envelope: nerve_schemas::Envelope::new::<nerve_schemas::HeartbeatRecorded>("n1", 1),
            seq: 0,
            interval_secs: 10,
            uptime_secs: 0,
            cpu_pct: 0.0,
            cpu_count: 1,
            load1: 0.0,
            load5: 0.0,
            load15: 0.0,
            mem_total_bytes: 0,
            mem_used_bytes: 0,
            swap_total_bytes: 0,
            swap_used_bytes: 0,
            disk_total_bytes: 0,
            disk_used_bytes: 0,
            net_rx_bytes_per_sec: 0.0,
            net_tx_bytes_per_sec: 0.0,
            gpus: vec![s],
        };
        let bytes = nerve_schemas::encode(&hb).expect("encode");
        assert_eq!(
            nerve_schemas::decode::<nerve_schemas::HeartbeatRecorded>(&bytes).expect("decode"),
            hb
        );
    }
}
