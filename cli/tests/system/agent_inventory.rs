//! The real agent's inventory: reported once while nothing changes, again when a value changes;
//! a collector that fails leaves its error in the event while the others report; and the agent
//! runs as an unprivileged user with what that user may read.
//!
//! The agent reads a prepared sysfs (`agent.sysfs_path`, as for an agent in a container that
//! sees the host's `/sys` elsewhere): it has one network interface and no `block` directory, so
//! the storage collector fails. `/proc` is the real one.

use std::path::Path;
use std::process::Stdio;

use nerve_platform::testkit::eventually;
use nerve_schemas::{InventoryReported, decode};

use crate::support::{DEADLINE, Env};

/// Every inventory report in the stream, oldest first.
async fn reports(env: &Env) -> Vec<InventoryReported> {
    let mut stream = env
        .js
        .get_stream(nerve_ingest::INVENTORY_STREAM)
        .await
        .expect("stream");
    let state = stream.info().await.expect("info").state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return out;
    }
    for seq in state.first_sequence..=state.last_sequence {
        let msg = stream.get_raw_message(seq).await.expect("message");
        out.push(decode(&msg.payload).expect("decode"));
    }
    out
}

async fn heartbeats(env: &Env) -> u64 {
    let mut stream = env
        .js
        .get_stream(nerve_ingest::TELEMETRY_STREAM)
        .await
        .expect("stream");
    stream.info().await.expect("info").state.messages
}

fn fake_sysfs(root: &Path, mtu: u32) {
    let eth = root.join("class/net/eth9");
    std::fs::create_dir_all(&eth).expect("mkdir");
    for (file, value) in [
        ("address", "52:54:00:00:00:09".to_owned()),
        ("mtu", mtu.to_string()),
        ("operstate", "up".to_owned()),
        ("speed", "25000".to_owned()),
    ] {
        std::fs::write(eth.join(file), format!("{value}\n")).expect("write");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_is_reported_on_change_only_and_a_failing_collector_is_reported() {
    let env = Env::start().await;
    let sysfs = tempfile::tempdir().expect("tmp");
    fake_sysfs(sysfs.path(), 1500);
    let sysfs_path = sysfs.path().display().to_string();
    let mut agent = env.spawn_nerve_with(
        &["agent"],
        &[
            ("NERVE_AGENT__SYSFS_PATH", &sysfs_path),
            ("NERVE_AGENT__INVENTORY_INTERVAL_SECS", "1"),
        ],
    );

    let first = eventually(DEADLINE, "the first inventory report", || async {
        reports(&env).await.into_iter().next()
    })
    .await;
    // One collector failed; its error travels in the event, the others reported.
    let failed: Vec<&str> = first
        .collector_errors
        .iter()
        .map(|e| e.collector.as_str())
        .collect();
    assert_eq!(failed, ["storage"], "{:?}", first.collector_errors);
    assert!(first.collector_errors[0].message.contains("block"));
    assert!(first.block_devices.is_empty());
    assert!(first.cpu.logical_cores >= 1, "cpu still reports");
    assert!(!first.cpu.model.is_empty() || !first.cpu.vendor.is_empty());
    assert!(first.memory_total_bytes > 0);
    assert!(first.system.is_some() && first.memory.is_some());
    let eth9 = first
        .interfaces
        .iter()
        .find(|i| i.name == "eth9")
        .expect("network still reports");
    assert_eq!((eth9.mtu, eth9.speed_mbps), (1500, Some(25_000)));

    // Nothing changes: several scans (one per second, paced like the heartbeats) send nothing.
    let beats = heartbeats(&env).await;
    eventually(DEADLINE, "five more heartbeats", || async {
        (heartbeats(&env).await >= beats + 5).then_some(())
    })
    .await;
    assert_eq!(reports(&env).await.len(), 1, "unchanged inventory re-sent");

    // One value changes: exactly one new report, carrying it.
    fake_sysfs(sysfs.path(), 9000);
    let second = eventually(DEADLINE, "a report of the changed MTU", || async {
        reports(&env).await.into_iter().nth(1)
    })
    .await;
    let eth9 = second
        .interfaces
        .iter()
        .find(|i| i.name == "eth9")
        .expect("eth9");
    assert_eq!(eth9.mtu, 9000);
    assert_ne!(second.envelope.event_id, first.envelope.event_id);
    let beats = heartbeats(&env).await;
    eventually(DEADLINE, "five more heartbeats", || async {
        (heartbeats(&env).await >= beats + 5).then_some(())
    })
    .await;
    assert_eq!(reports(&env).await.len(), 2);

    agent.kill().await.expect("kill");
}

/// The agent as `nobody`: no dmidecode/smartctl privileges, yet it runs and reports what an
/// unprivileged user may read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_runs_unprivileged_with_a_reduced_inventory() {
    // Only root can switch to another user; an unprivileged test run is already the case.
    let uid = std::fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .expect("uid");
    let env = Env::start().await;
    // The binary and the state dir must be reachable for `nobody` (the build dir may sit under
    // root's home).
    let dir = tempfile::tempdir().expect("tmp");
    let bin = dir.path().join("nerve");
    std::fs::copy(env!("CARGO_BIN_EXE_nerve"), &bin).expect("copy binary");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("mkdir");
    use std::os::unix::fs::PermissionsExt;
    for p in [dir.path(), state.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    }
    let mut cmd = if uid == "0" {
        let mut c = tokio::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin);
        c
    } else {
        tokio::process::Command::new(&bin) // already unprivileged
    };
    nerve_platform::services::die_with_parent(&mut cmd);
    let mut agent = cmd
        .arg("agent")
        .envs(env.child_env())
        .env("NERVE_AGENT__STATE_DIR", &state)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn unprivileged agent");
    let inv = eventually(DEADLINE, "the unprivileged agent's inventory", || async {
        reports(&env).await.into_iter().next()
    })
    .await;
    assert!(
        inv.collector_errors.is_empty(),
        "{:?}",
        inv.collector_errors
    );
    assert!(inv.cpu.logical_cores >= 1);
    assert!(!inv.interfaces.is_empty());
    let memory = inv.memory.expect("memory section");
    assert_ne!(memory.source, "dmidecode", "dmidecode needs root");
    for disk in &inv.block_devices {
        assert_ne!(disk.smart_health, "passed", "SMART needs root: {disk:?}");
    }
    eventually(DEADLINE, "its heartbeats", || async {
        (heartbeats(&env).await >= 2).then_some(())
    })
    .await;
    let owner = std::fs::metadata(state.join("node_id")).expect("node id");
    use std::os::unix::fs::MetadataExt;
    if uid == "0" {
        assert_eq!(owner.uid(), 65534, "the agent really ran as nobody");
    }
    agent.kill().await.expect("kill");
}
