//! A broker restart met by a fleet: simulated agents (real NATS connections opened as `nerve
//! agent` opens its own) and one real agent, heartbeating through a `nerve project` (projectors,
//! liveness, dispatcher). The server is killed and restarted: every agent is back and
//! heartbeating within 60 s, spread over the reconnect window instead of all in one instant;
//! the projectors and the dispatcher resume by themselves, and no node is judged offline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use nerve_platform::testkit::eventually;
use nerve_schemas::subjects;
use serde_json::{Value, json};

use crate::support::{DEADLINE, Env, call, heartbeat, signal};

const AGENTS: usize = 200;
const SPREAD_MS: u64 = 3_000;

/// One simulated agent: heartbeats every second; notes when it is connected again after the
/// restart and when a heartbeat of it was acked after that.
struct Simulated {
    reconnected: std::sync::Mutex<Option<Instant>>,
    acked_after: AtomicBool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_broker_restart_the_fleet_comes_back_spread_out_and_the_control_plane_resumes() {
    let mut env = Env::start().await;
    env.config.nats.reconnect_spread_ms = SPREAD_MS;
    let spread = SPREAD_MS.to_string();
    let extra = [("NERVE_NATS__RECONNECT_SPREAD_MS", spread.as_str())];
    let mut project = env.spawn_nerve_with(&["project"], &extra);
    let mut agent = env.spawn_nerve_with(&["agent"], &extra);
    let real = env.node_of(&env.config.agent.state_dir).await;

    let restarted = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let mut fleet = Vec::new();
    for i in 0..AGENTS {
        let id = format!("sim-{i:03}");
        let client = nerve_ingest::connect(
            &env.config.nats,
            nerve_ingest::Who::Node { id: &id, key: None },
            false,
        )
        .await
        .expect("connect");
        let me = Arc::new(Simulated {
            reconnected: std::sync::Mutex::new(None),
            acked_after: AtomicBool::new(false),
        });
        fleet.push(me.clone());
        let restarted = restarted.clone();
        tokio::spawn(async move {
            let js = async_nats::jetstream::new(client.clone());
            let mut seq = 0;
            let mut beat = tokio::time::interval(Duration::from_secs(1));
            let mut look = tokio::time::interval(Duration::from_millis(10));
            loop {
                tokio::select! {
                    _ = look.tick() => {
                        let after = *restarted.lock().expect("lock");
                        let connected = client.connection_state()
                            == async_nats::connection::State::Connected;
                        let mut seen = me.reconnected.lock().expect("lock");
                        if after.is_some() && connected && seen.is_none() {
                            *seen = Some(Instant::now());
                        }
                    }
                    _ = beat.tick() => {
                        seq += 1;
                        let hb = heartbeat(&id, nerve_platform::now_ms(), seq);
                        let acked = tokio::time::timeout(
                            Duration::from_secs(2),
                            nerve_ingest::publish(&js, subjects::heartbeat(&id), &hb),
                        )
                        .await;
                        if matches!(acked, Ok(Ok(_))) && me.reconnected.lock().expect("lock").is_some() {
                            me.acked_after.store(true, Ordering::Relaxed);
                        }
                    }
                }
            }
        });
    }
    let everyone = AGENTS as u64 + 1;
    eventually(DEADLINE, "every agent's heartbeats stored", || async {
        let n = env.count("SELECT uniqExact(node_id) FROM node_state").await;
        (n == everyone).then_some(())
    })
    .await;

    // The broker dies and comes back on the same port with its store.
    env.nats.server.kill();
    let started = {
        let server = &mut env.nats.server;
        tokio::task::block_in_place(|| server.restart()).expect("restart nats");
        Instant::now()
    };
    let restart_ms = nerve_platform::now_ms();
    *restarted.lock().expect("lock") = Some(started);

    let back: Vec<Duration> = eventually(
        Duration::from_secs(60),
        "every simulated agent reconnected and acked",
        || async {
            let mut back = Vec::new();
            for a in &fleet {
                let at = (*a.reconnected.lock().expect("lock"))?;
                a.acked_after.load(Ordering::Relaxed).then_some(())?;
                back.push(at.saturating_duration_since(started));
            }
            Some(back)
        },
    )
    .await;
    let mut back = back;
    back.sort_unstable();
    // Connections arriving in the busiest half second: an unjittered fleet is all in one.
    let busiest = back
        .iter()
        .enumerate()
        .map(|(i, t)| {
            back[i..]
                .iter()
                .take_while(|u| **u < *t + Duration::from_millis(500))
                .count()
        })
        .max()
        .unwrap_or_default();
    let (first, last) = (back[0], back[back.len() - 1]);
    tracing::info!(?first, ?last, busiest, "reconnect storm");
    assert!(
        busiest <= AGENTS * 2 / 5,
        "{busiest} of {AGENTS} reconnected within one 500 ms window ({first:?}..{last:?})"
    );
    assert!(
        last - first >= Duration::from_millis(SPREAD_MS / 2),
        "{first:?}..{last:?}"
    );

    // The projectors resumed: every node's heartbeats after the restart are stored, the real
    // agent's included.
    eventually(
        Duration::from_secs(60),
        "heartbeats after the restart stored",
        || async {
            let n = env
                .count(&format!(
                    "SELECT uniqExact(node_id) FROM heartbeats WHERE ts_ms > {restart_ms}"
                ))
                .await;
            (n == everyone).then_some(())
        },
    )
    .await;

    // The dispatcher resumed: a task reaches the real agent and its result is recorded.
    let app = env.app().await;
    let (status, created) = call(
        &app,
        Method::POST,
        "/api/v1/tasks",
        json!({"kind": "command", "argv": ["true"], "targets": {"node_ids": [real]}}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let task = created["task_id"].as_str().expect("task id").to_owned();
    eventually(
        Duration::from_secs(60),
        "the task done on the real agent",
        || async {
            let (status, d) = call(
                &app,
                Method::GET,
                &format!("/api/v1/tasks/{task}"),
                Value::Null,
            )
            .await;
            (status == StatusCode::OK && d["summary"]["counts"]["succeeded"] == 1).then_some(())
        },
    )
    .await;

    // Nothing stored twice: a broker killed before it saved its consumers' state delivers
    // written events again, as new.
    let twice = env
        .count("SELECT count() - uniqExact(event_id) FROM heartbeats")
        .await;
    assert_eq!(twice, 0, "heartbeats stored twice");

    // No node was judged offline for the outage.
    let offline = env
        .count("SELECT count() FROM node_events WHERE kind = 'NodeWentOffline'")
        .await;
    assert_eq!(offline, 0, "no false offline");
    signal(&mut agent, "-TERM").await;
    signal(&mut project, "-TERM").await;
}
