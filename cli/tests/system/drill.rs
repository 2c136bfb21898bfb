//! Fault drills on real processes, with exact counts from ClickHouse: on a 3-server JetStream
//! cluster (streams replicated 3 times), the telemetry stream's leader is killed (SIGKILL)
//! while heartbeats are published and projected, then restarted; every heartbeat a publisher
//! got an ack for is in `heartbeats` exactly once. Of two `nerve project`s, the one running
//! the singletons is killed: the other takes them over, and an open alert fires no second
//! time. The cluster configs shipped in `infra/nats/cluster/` are valid for that nats-server.

use std::time::Duration;

use nerve_ingest::TELEMETRY_STREAM;
use nerve_platform::metrics::Registry;
use nerve_platform::testkit::eventually;
use nerve_schemas::subjects;
use tokio_util::sync::CancellationToken;

use crate::support::{DEADLINE, Env, heartbeat};

const DRILL_DEADLINE: Duration = Duration::from_secs(90);

/// Publishes `hb` until JetStream acks it (a publish lost with a dying server is sent again
/// with the same message id, so one that was stored after all is dropped as a duplicate);
/// returns how many tries it took.
async fn publish_until_acked(
    js: &async_nats::jetstream::Context,
    hb: &nerve_schemas::HeartbeatRecorded,
) -> u32 {
    let subject = subjects::heartbeat(&hb.envelope.node_id);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut tries = 0;
    loop {
        tries += 1;
        match nerve_ingest::publish(js, subject.clone(), hb).await {
            Ok(_) => return tries,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::info!(error = %e, "publish failed; sending it again");
                // A back-off between tries, not a wait for anything in particular.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("not acked within {DEADLINE:?}: {e}"),
        }
    }
}

/// The server leading `stream` now.
async fn leader(js: &async_nats::jetstream::Context, stream: &str) -> String {
    eventually(DEADLINE, "a stream leader", || async {
        let mut s = js.get_stream(stream).await.ok()?;
        s.info().await.ok()?.cluster.as_ref()?.leader.clone()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_telemetry_leader_killed_under_load_loses_and_duplicates_no_acked_heartbeat() {
    let mut env = Env::start_cluster().await;
    let metrics = Registry::new();
    let cancel = CancellationToken::new();
    let _projectors = env.spawn_projectors(&metrics, &cancel);

    let (before, during, after) = (300, 300, 300);
    let mut sent = 0i64;
    let mut retried = 0;
    let mut publish = async |env: &Env, n: i64| {
        for _ in 0..n {
            sent += 1;
            let hb = heartbeat(&format!("n-{}", sent % 20), nerve_platform::now_ms(), sent);
            retried += publish_until_acked(&env.js, &hb).await - 1;
        }
    };
    publish(&env, before).await;

    let killed = leader(&env.js, TELEMETRY_STREAM).await;
    env.nats
        .named(&killed)
        .expect("a server of the cluster")
        .kill();
    publish(&env, during).await;
    let new_leader = leader(&env.js, TELEMETRY_STREAM).await;
    assert_ne!(new_leader, killed, "a new leader took over");

    env.nats
        .named(&killed)
        .expect("a server of the cluster")
        .restart()
        .expect("restart");
    publish(&env, after).await;
    let acked = (before + during + after) as u64;

    // The projectors' consumers wait for the new cluster's groups at first: a longer deadline.
    let (count, unique) = eventually(
        DRILL_DEADLINE,
        "every acked heartbeat projected",
        || async {
            let count = env.count("SELECT count() FROM heartbeats").await;
            let unique = env
                .count("SELECT uniqExact(event_id) FROM heartbeats")
                .await;
            (count >= acked && unique == acked).then_some((count, unique))
        },
    )
    .await;
    assert_eq!((count, unique), (acked, acked), "none lost, none twice");
    tracing::info!(%killed, %new_leader, retried, "drill done");
    cancel.cancel();
}

/// The cluster configs shipped in `infra/nats/cluster/` are accepted by the nats-server the
/// drills run, name three distinct servers and route to the same three.
#[test]
fn the_shipped_cluster_configs_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/nats/cluster");
    let mut names = Vec::new();
    for n in 1..=3 {
        let file = dir.join(format!("n{n}.conf"));
        let out = std::process::Command::new(nerve_platform::services::nats_server_bin())
            .arg("-t")
            .arg("-c")
            .arg(&file)
            .output()
            .expect("nats-server");
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success() && said.contains("is valid"), "{said}");
        let text = std::fs::read_to_string(&file).expect("read");
        names.extend(
            text.lines()
                .filter_map(|l| l.strip_prefix("server_name: "))
                .map(str::to_owned),
        );
        for peer in 1..=3 {
            assert!(text.contains(&format!("nats-route://nats-{peer}.example:6222")));
        }
        assert!(text.contains("max_payload: 16MB"));
    }
    names.sort();
    assert_eq!(names, ["n1", "n2", "n3"]);
}

/// The pid in a lease holder's name (`host-pid-started_ms`).
fn holder_pid(holder: &str) -> Option<u32> {
    holder.rsplit('-').nth(1)?.parse().ok()
}

/// Two `nerve project`s; the one running the singletons is killed (SIGKILL) while a fleet
/// heartbeats: the other takes the leases over and evaluates (a second hot node fires), the
/// alert that was open fires no second time, and no node of the fleet is judged suspect or
/// offline by the new liveness tracker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_project_killed_hands_its_singletons_over_without_a_second_firing() {
    let env = Env::start().await;
    let fast = [
        ("NERVE_SINGLETONS__LEASE_SECS", "3"),
        ("NERVE_ALERTS__EVAL_INTERVAL_MS", "200"),
    ];
    // A fleet heartbeating every second throughout.
    let fleet = tokio::spawn({
        let js = env.js.clone();
        async move {
            let mut beat = tokio::time::interval(Duration::from_secs(1));
            for seq in 1.. {
                beat.tick().await;
                for n in 0..10 {
                    let hb = heartbeat(&format!("steady-{n}"), nerve_platform::now_ms(), seq);
                    let _ =
                        nerve_ingest::publish(&js, subjects::heartbeat(&hb.envelope.node_id), &hb)
                            .await;
                }
            }
        }
    });
    // The first holds every singleton before the second starts.
    let mut projects = vec![env.spawn_nerve_with(&["project"], &fast)];
    let first = projects[0].id();
    let leases = eventually(DEADLINE, "the leases bucket", || async {
        env.js
            .get_key_value(nerve_ingest::lease::LEASES_BUCKET)
            .await
            .ok()
    })
    .await;
    let holder = |leases: async_nats::jetstream::kv::Store, key: &'static str| async move {
        let value = leases.get(key).await.ok()??;
        holder_pid(&String::from_utf8_lossy(&value))
    };
    eventually(
        DEADLINE,
        "the first project holding the singletons",
        || async {
            let l = holder(leases.clone(), "liveness").await?;
            let a = holder(leases.clone(), "alerts").await?;
            (Some(l) == first && Some(a) == first).then_some(())
        },
    )
    .await;
    projects.push(env.spawn_nerve_with(&["project"], &fast));
    let app = env.app().await;
    let (status, body) = crate::support::call(
        &app,
        axum::http::Method::POST,
        "/api/v1/alerts/rules",
        serde_json::json!({
            "name": "cpu-hot", "kind": "threshold", "metric": "cpu_pct", "aggregate": "max",
            "op": ">", "threshold": 95.0, "window_secs": 600, "for_secs": 0,
            "resolve_after_secs": 600, "severity": "critical"
        }),
    )
    .await;
    assert_eq!(status, axum::http::StatusCode::ACCEPTED, "{body}");
    let hot = |node: &'static str| {
        let js = env.js.clone();
        async move {
            let mut hb = heartbeat(node, nerve_platform::now_ms(), 1);
            hb.cpu_pct = 99.0;
            crate::support::publish_heartbeat(&js, &hb).await;
        }
    };
    hot("hot-a").await;
    let fired = |node: &'static str| {
        format!("SELECT count() FROM alert_log WHERE kind = 'AlertFired' AND node_id = '{node}'")
    };
    eventually(DEADLINE, "hot-a firing", || async {
        (env.count(&fired("hot-a")).await == 1).then_some(())
    })
    .await;

    let leader = first.expect("pid");
    projects[0].start_kill().expect("kill");
    projects[0].wait().await.expect("reaped");
    let killed_ms = nerve_platform::now_ms();

    eventually(
        DRILL_DEADLINE,
        "the other project running the evaluator and the tracker",
        || async {
            let a = holder(leases.clone(), "alerts").await?;
            let l = holder(leases.clone(), "liveness").await?;
            (a != leader && l != leader).then_some(())
        },
    )
    .await;
    hot("hot-b").await;
    eventually(DEADLINE, "hot-b firing under the new evaluator", || async {
        (env.count(&fired("hot-b")).await == 1).then_some(())
    })
    .await;
    assert_eq!(env.count(&fired("hot-a")).await, 1, "hot-a fired once");
    // The new tracker has judged for a while (its resume grace is 8 s) — no steady node
    // judged anything.
    eventually(DRILL_DEADLINE, "the new tracker judging", || async {
        let newest = env
            .count("SELECT toUInt64(max(ts_ms)) FROM heartbeats WHERE node_id = 'steady-0'")
            .await;
        (newest as i64 > killed_ms + 12_000).then_some(())
    })
    .await;
    let judged = env
        .count("SELECT count() FROM node_events WHERE node_id LIKE 'steady-%' AND liveness != ''")
        .await;
    assert_eq!(judged, 0, "no false suspect or offline");
    fleet.abort();
    for p in &mut projects {
        let _ = p.start_kill();
    }
}
