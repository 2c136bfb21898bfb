//! The `nerve` binary refuses bad config with a message naming the problem.

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
