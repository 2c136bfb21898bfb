//! The agent's outbox: events produced while NATS is down, and across an agent restart, arrive
//! in ClickHouse exactly once.

use std::time::Duration;

use nerve_agent::buffer::{Bounds, Outbox};
use nerve_platform::metrics::Registry;
use nerve_platform::testkit::eventually;
use nerve_schemas::HeartbeatRecorded;
use tokio_util::sync::CancellationToken;

use crate::support::{DEADLINE, Env, signal};

async fn sigterm(child: &mut tokio::process::Child) {
    let status = signal(child, "-TERM").await;
    assert!(status.success(), "agent exited with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_a_nats_outage_and_an_agent_restart_exactly_once() {
    let mut env = Env::start().await;
    let cancel = CancellationToken::new();
    let projectors = env.spawn_projectors(&Registry::new(), &cancel);
    let state = env.state_dir.path().join("agent");

    // Agent 1 reports while NATS is up…
    let mut agent = env.spawn_nerve(&["agent"]);
    let node = env
        .agent_node_with_heartbeats(2, "agent 1's first heartbeats stored")
        .await;

    // …then NATS goes away: heartbeats pile up in the outbox on disk.
    env.nats.server.stop(Duration::from_secs(10));
    let log = state.join("outbox/log");
    eventually(DEADLINE, "heartbeats buffered on disk", || async {
        let len = std::fs::metadata(&log).ok()?.len();
        (len > 1500).then_some(())
    })
    .await;
    // Agent 1 stops while NATS is still down: its outbox stays on disk.
    sigterm(&mut agent).await;
    let last_seq = tokio::task::spawn_blocking({
        let state = state.clone();
        move || {
            let bounds = Bounds {
                max_events: 1_000_000,
                max_bytes: 1 << 30,
                max_age_ms: i64::MAX,
            };
            // Read a copy: walking the outbox consumes it, and agent 2 must find it intact.
            let copy = tempfile::tempdir().expect("tmp");
            std::fs::create_dir_all(copy.path().join("outbox")).expect("mkdir");
            for f in ["log", "head"] {
                std::fs::copy(
                    state.join("outbox").join(f),
                    copy.path().join("outbox").join(f),
                )
                .expect("copy outbox");
            }
            let mut outbox = Outbox::open(copy.path(), bounds).expect("outbox");
            let mut last = None;
            while let Some(out) = outbox.front().expect("read") {
                let hb: HeartbeatRecorded = nerve_schemas::decode(&out.payload).expect("decode");
                last = Some(hb.seq);
                outbox.pop_front().expect("pop");
            }
            last
        }
    })
    .await
    .expect("join");
    let last_seq = last_seq.expect("agent 1 left heartbeats in its outbox");

    // NATS comes back; agent 2 starts and flushes agent 1's events with their original ids.
    env.nats.server.restart().expect("restart nats");
    let restarted_at = nerve_platform::now_ms();
    let mut agent2 = env.spawn_nerve(&["agent"]);
    let before = format!("node_id = '{node}' AND ts_ms < {restarted_at}");
    eventually(
        Duration::from_secs(60),
        "every heartbeat of agent 1 stored",
        || async {
            let n = env
                .count(&format!("SELECT count() FROM heartbeats WHERE {before}"))
                .await;
            (n > last_seq as u64).then_some(())
        },
    )
    .await;
    // Agent 2 reports too, so the projector has seen everything agent 1 sent.
    eventually(DEADLINE, "agent 2's heartbeats", || async {
        let n = env
            .count(&format!(
                "SELECT count() FROM heartbeats WHERE node_id = '{node}' AND ts_ms >= {restarted_at}"
            ))
            .await;
        (n >= 2).then_some(())
    })
    .await;
    assert_eq!(
        env.count(&format!("SELECT count() FROM heartbeats WHERE {before}"))
            .await,
        last_seq as u64 + 1,
        "agent 1 produced seq 0..={last_seq}: each must be stored exactly once"
    );
    assert_eq!(
        env.count(&format!(
            "SELECT uniqExact(seq) FROM heartbeats WHERE {before}"
        ))
        .await,
        last_seq as u64 + 1
    );
    assert_eq!(
        env.count(&format!(
            "SELECT toUInt64(max(seq)) FROM heartbeats WHERE {before}"
        ))
        .await,
        last_seq as u64
    );

    sigterm(&mut agent2).await;
    cancel.cancel();
    projectors.await.expect("join").expect("projectors");
}

/// One agent process rides through a nats-server stop/start: it reconnects by itself and every
/// heartbeat it produced, before, during and after the outage, is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_agent_reconnects_by_itself_and_loses_nothing() {
    let mut env = Env::start().await;
    let cancel = CancellationToken::new();
    let projectors = env.spawn_projectors(&Registry::new(), &cancel);
    let state = env.state_dir.path().join("agent");
    let mut agent = env.spawn_nerve(&["agent"]);
    let node = env
        .agent_node_with_heartbeats(2, "first heartbeats stored")
        .await;
    let stored =
        |extra: &'static str| format!("SELECT {extra} FROM heartbeats WHERE node_id = '{node}'");

    env.nats.server.stop(Duration::from_secs(10));
    let before_outage = env.count(&stored("count()")).await;
    let log = state.join("outbox/log");
    eventually(
        DEADLINE,
        "heartbeats buffered during the outage",
        || async { (std::fs::metadata(&log).ok()?.len() > 1000).then_some(()) },
    )
    .await;
    env.nats.server.restart().expect("restart nats");

    // The same process delivers its backlog and keeps reporting.
    eventually(
        Duration::from_secs(60),
        "backlog and new heartbeats stored",
        || async { (env.count(&stored("count()")).await >= before_outage + 6).then_some(()) },
    )
    .await;
    sigterm(&mut agent).await;
    // After a clean stop with NATS up, the outbox is empty: everything was acknowledged.
    assert_eq!(std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0), 0);
    let total = eventually(DEADLINE, "the last acked heartbeat projected", || async {
        let n = env.count(&stored("count()")).await;
        let max = env.count(&stored("toUInt64(max(seq))")).await;
        (n == max + 1).then_some(n)
    })
    .await;
    assert_eq!(env.count(&stored("uniqExact(seq)")).await, total);
    assert_eq!(env.count(&stored("uniqExact(event_id)")).await, total);

    cancel.cancel();
    projectors.await.expect("join").expect("projectors");
}
