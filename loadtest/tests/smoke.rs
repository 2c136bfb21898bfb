//! The benchmarks run end to end against real services (short, low-rate runs; the numbers in
//! README.md come from release builds, never from these tests): the simulator reports no loss,
//! with the raw limits measured first in the same run; goose users browse a heartbeating fleet
//! through the API on its own runtime without a failed request; agents spread over leaf node
//! servers and worker processes get every heartbeat stored, and come back when those servers
//! restart; a stream leader killed under load loses nothing; the log is archived and replayed;
//! XIDs cordon their nodes and the remediation breaker holds a mass event at its limit; the
//! Kafka bridge mirrors every heartbeat into a Tansu broker.

use std::process::Command;

/// Runs `nerve-loadtest` with `args` and returns the report it wrote with `--json-out`.
fn run(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tmp");
    let report = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_nerve-loadtest"))
        .args(args)
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
    serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json")
}

#[test]
fn a_short_run_stores_every_acked_event_once() {
    let r = run(&[
        "ingest",
        "--nodes",
        "50",
        "--rate",
        "200",
        "--duration-secs",
        "2",
        "--raw-first",
        // Enough that ClickHouse's share of the raw insert spans several CPU clock ticks
        // (10 ms): at 2,000 rows it took ≈ 45 ms and could read as no CPU at all.
        "--raw-events",
        "20000",
    ]);
    let published = r["published"].as_u64().expect("published");
    assert!(published > 0, "{r}");
    assert_eq!(r["stored"].as_u64(), Some(published), "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["duplicates"], 0, "{r}");
    assert_eq!(r["probes_missing"], 0, "{r}");
    // The in-process heartbeat projector's batches were counted.
    assert!(r["heartbeat_batches"].as_u64().expect("batches") > 0, "{r}");
    // The raw limits were measured in the same run (on a scratch stream and table).
    assert_eq!(r["raw"]["jetstream_events"], 20000, "{r}");
    assert_eq!(r["raw"]["clickhouse_rows"], 20000, "{r}");
    assert!(
        r["ratio_to_raw_jetstream"].as_f64().expect("ratio") > 0.0,
        "{r}"
    );
    // Every process under test was read: CPU per event, end to end and raw.
    for (phase, key) in [
        (&r["cpu_per_event"], "nats_us"),
        (&r["cpu_per_event"], "loadtest_us"),
        (&r["raw"]["jetstream_cpu_per_event"], "nats_us"),
    ] {
        assert!(phase[key].as_f64().expect(key) > 0.0, "{key}: {r}");
    }
    // ClickHouse too, in at least one phase: on 2 cores busy with other test binaries one
    // phase's share can stay under a clock tick (10 ms) and read as none.
    let clickhouse: f64 = [
        &r["cpu_per_event"],
        &r["raw"]["clickhouse_cpu_per_row"],
        &r["raw"]["jetstream_cpu_per_event"],
    ]
    .iter()
    .map(|phase| phase["clickhouse_us"].as_f64().expect("clickhouse_us"))
    .sum();
    assert!(clickhouse > 0.0, "ClickHouse's CPU was never read: {r}");
    let last = r["timeline"]
        .as_array()
        .and_then(|t| t.last())
        .expect("timeline");
    assert!(last["cpu"]["nats_s"].as_f64().expect("cpu") > 0.0, "{r}");
}

#[test]
fn goose_users_browse_a_heartbeating_fleet_without_failures() {
    let r = run(&[
        "api",
        "--nodes",
        "300",
        "--users",
        "4",
        "--hatch-rate",
        "4",
        "--run-secs",
        "2",
        // A closed loop, so that every kind of request is drawn in two seconds.
        "--wait-min-ms",
        "0",
        "--wait-max-ms",
        "0",
        "--heartbeat-interval-secs",
        "5",
    ]);
    assert_eq!(r["nodes"], 300, "{r}");
    assert_eq!(r["all"]["failures"], 0, "{r}");
    let mut kinds: Vec<&str> = r["by_request"]
        .as_array()
        .expect("by_request")
        .iter()
        .filter(|t| t["requests"].as_u64() > Some(0))
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "fleet summary",
            "list: cluster",
            "list: first page",
            "list: label",
            "list: offline",
            "list: random page",
            "list: search",
            "list: sort by cpu",
            "node detail"
        ],
        "{r}"
    );
}

#[test]
fn agents_on_leaf_node_servers_and_worker_processes_get_every_heartbeat_stored() {
    // 300 agents, at most 120 per server and 100 per process: three leaf node servers relay to
    // the JetStream server, and three worker processes hold the connections.
    let r = run(&[
        "connections",
        "--agents",
        "300",
        "--agents-per-server",
        "120",
        "--agents-per-process",
        "100",
        "--interval-secs",
        "1",
        "--rounds",
        "2",
    ]);
    assert_eq!(r["agent_servers"], 3, "{r}");
    assert_eq!(r["agent_processes"], 3, "{r}");
    assert_eq!(r["connect_failures"], 0, "{r}");
    assert_eq!(r["connected_after_rounds"], 300, "{r}");
    assert_eq!(r["heartbeats_acked"], 600, "{r}");
    assert_eq!(r["heartbeats_stored"], 600, "{r}");
    assert_eq!(r["nodes_stored"], 300, "{r}");
    // Each leaf node holds its 100 agents (plus its link to the hub and its own files).
    for fds in r["nats_server_open_fds"].as_array().expect("fds") {
        assert!(fds.as_u64() >= Some(100), "{r}");
    }
}

#[test]
fn a_broker_restart_brings_every_agent_back_spread_out() {
    // 300 agents on three leaf node servers, all three killed and restarted at once.
    let r = run(&[
        "drill",
        "storm",
        "--agents",
        "300",
        "--agents-per-server",
        "120",
        "--spread-ms",
        "2000",
        "--interval-secs",
        "1",
    ]);
    let storm = &r["storm"];
    assert_eq!(storm["servers_restarted"], 3, "{r}");
    assert_eq!(storm["not_back"], 0, "{r}");
    assert!(storm["all_acked_secs"].as_f64() < Some(60.0), "{r}");
    // Spread over the window: no second takes them all.
    assert!(storm["busiest_second"].as_u64() < Some(300), "{r}");
    assert_eq!(r["heartbeats_acked"], r["heartbeats_stored"], "{r}");
}

#[test]
fn a_stream_leader_killed_under_load_loses_nothing() {
    let r = run(&[
        "drill",
        "nats-leader",
        "--rate",
        "200",
        "--nodes",
        "50",
        "--duration-secs",
        "12",
        "--fault-at-secs",
        "3",
        "--outage-secs",
        "3",
    ]);
    let o = &r[0];
    assert_eq!(o["lost"], 0, "{r}");
    assert_eq!(o["duplicates"], 0, "{r}");
    // How many were acked depends on the machine's load; none lost or doubled does not.
    assert!(o["acked"].as_u64() > Some(0), "{r}");
    assert!(o["recovery_secs"].as_f64().is_some(), "{r}");
}

#[test]
fn token_checks_are_timed_and_every_answer_is_right() {
    let r = run(&["auth", "--tokens", "100", "--checks", "2000"]);
    assert_eq!(r["tokens"], 100, "{r}");
    assert!(r["valid_ns_per_check"].as_f64().expect("ns") > 0.0, "{r}");
}

#[test]
fn the_log_is_archived_and_replayed_from_stream_and_archive_alike() {
    let r = run(&[
        "rebuild",
        "--events",
        "3000",
        "--nodes",
        "100",
        "--live-rate",
        "200",
    ]);
    assert!(r["live"]["probes"].as_u64() >= Some(1), "{r}");
    assert_eq!(r["events"], 3000, "{r}");
    assert!(r["archive_files"].as_u64() >= Some(1), "{r}");
    for replay in r["replays"].as_array().expect("replays") {
        assert_eq!(replay[1], 3000, "{r}");
    }
}

#[test]
fn the_fleet_list_and_the_fleet_at_a_past_time_answer_over_generated_history() {
    let r = run(&[
        "nodes-page",
        "--nodes",
        "60",
        "--requests",
        "2",
        "--as-of-requests",
        "2",
    ]);
    let views = r.as_array().expect("views");
    let as_of: Vec<&serde_json::Value> = views
        .iter()
        .filter(|v| v["path"].as_str().is_some_and(|p| p.contains("?at=")))
        .collect();
    assert_eq!(as_of.len(), 3, "{r}");
    for v in views {
        assert!(v["p50_ms"].as_f64().expect("p50") > 0.0, "{r}");
    }
}

#[test]
fn xids_cordon_their_nodes_and_the_breaker_holds_a_mass_event_at_its_limit() {
    let r = run(&[
        "remediation",
        "--nodes",
        "400",
        "--heartbeat-rate",
        "100",
        "--xids",
        "20",
        "--xid-rate",
        "50",
        "--mass",
        "100",
    ]);
    assert_eq!(r["xids"], 20, "{r}");
    assert!(
        r["detect_to_cordon_p99_ms"].as_f64().expect("p99") > 0.0,
        "{r}"
    );
    // 400 nodes in ten clusters of 40 (5 %: 2 each), the XIDs spread over them: the fleet-wide
    // limit of 10 binds first.
    assert_eq!(r["mass_limit"], 10, "{r}");
    assert_eq!(r["mass_started"], 10, "{r}");
    assert_eq!(r["mass_held"], 90, "{r}");
    assert_eq!(r["mass_trips"], 1, "{r}");
}

#[test]
fn the_kafka_bridge_mirrors_every_heartbeat() {
    let r = run(&[
        "bridge",
        "--events",
        "2000",
        "--nodes",
        "50",
        "--partitions",
        "2",
    ]);
    assert_eq!(r["events"], 2000, "{r}");
    assert!(r["events_per_sec"].as_f64().expect("rate") > 0.0, "{r}");
}
