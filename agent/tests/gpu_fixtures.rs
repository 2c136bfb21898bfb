//! Health verdicts derived from recorded NVML-shaped readings (`tests/fixtures/gpu/*.json`).

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
