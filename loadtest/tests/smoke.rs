//! The simulator runs end to end against real services and reports no loss, with the raw limits
//! measured first in the same run (a short, low-rate run; the numbers in README.md come from release builds, never from this test).

use std::process::Command;

#[test]
fn a_short_run_stores_every_acked_event_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let report = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_nerve-loadtest"))
        .args([
            "ingest",
            "--nodes",
            "50",
            "--rate",
            "200",
            "--duration-secs",
            "2",
            "--raw-first",
            "--raw-events",
            "2000",
        ])
        .arg("--json-out")
        .arg(&report)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run nerve-loadtest");
    assert!(
        out.status.success(),
        "loadtest failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    let published = r["published"].as_u64().expect("published");
    assert!(published > 0, "{r}");
    assert_eq!(r["stored"].as_u64(), Some(published), "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["duplicates"], 0, "{r}");
    assert_eq!(r["probes_missing"], 0, "{r}");
    // The raw limits were measured in the same run (on a scratch stream and table).
    assert_eq!(r["raw"]["jetstream_events"], 2000, "{r}");
    assert_eq!(r["raw"]["clickhouse_rows"], 2000, "{r}");
    assert!(
        r["ratio_to_raw_jetstream"].as_f64().expect("ratio") > 0.0,
        "{r}"
    );
}
