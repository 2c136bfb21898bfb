//! The `nerve` binary refuses bad config with a message naming the problem, and `nerve probe`
//! prints what the agent sees without NATS.

use std::process::Command;

#[test]
fn an_unknown_config_key_is_rejected_by_the_binary() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("nerve.toml");
    std::fs::write(&path, "[api]\nlisten_adress = \"127.0.0.1:1\"\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_nerve"))
        .arg("--config")
        .arg(&path)
        .arg("config")
        .output()
        .expect("run nerve");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("listen_adress"), "{stderr}");

    let out = Command::new(env!("CARGO_BIN_EXE_nerve"))
        .arg("config")
        .env("NERVE_AGENT__HEARTBEAT_INTERVAL_SECS", "often")
        .output()
        .expect("run nerve");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("heartbeat_interval_secs"));
}

#[test]
fn the_example_config_is_accepted_by_the_binary() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/nerve.example.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_nerve"))
        .args(["--config", example, "config"])
        .output()
        .expect("run nerve");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `nerve probe` needs no NATS (the config points at a port nothing listens on), writes no
/// state, and prints the agent's view as JSON that reads back as a probe.
#[test]
fn probe_prints_the_agents_view_as_json_without_nats() {
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("agent");
    let out = Command::new(env!("CARGO_BIN_EXE_nerve"))
        .args(["probe", "--interval-secs", "0"])
        .env("NERVE_NATS__URL", "nats://127.0.0.1:1")
        .env("NERVE_AGENT__STATE_DIR", &state)
        .output()
        .expect("run nerve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let probe: nerve_agent::probe::Probe = serde_json::from_slice(&out.stdout).expect("probe JSON");
    assert!(!probe.inventory.hostname.is_empty());
    assert!(probe.heartbeat.cpu_count > 0);
    assert!(!state.exists(), "the probe wrote {}", state.display());

    let out = Command::new(env!("CARGO_BIN_EXE_nerve"))
        .args(["probe", "--interval-secs", "soon"])
        .output()
        .expect("run nerve");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--interval-secs"));
}
