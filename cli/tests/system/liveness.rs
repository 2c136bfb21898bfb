//! Liveness as events, end to end with real processes: a stopped agent becomes suspect, then
//! offline, and comes back when it restarts (one event each, no flapping); restarting the control
//! plane — the projector/tracker process and nats-server — turns no healthy node offline, while
//! a node that really died is still found.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use nerve_api::dto::{fleet::NodeListQuery, fleet::NodeStatus};
use nerve_platform::metrics::Registry;
use nerve_platform::testkit::eventually;
use nerve_schemas::subjects;

use crate::support::{DEADLINE, Env, heartbeat, signal};

/// The liveness event kinds recorded for `node`, oldest first.
async fn liveness_events(env: &Env, node: &str) -> Vec<String> {
    env.ch
        .query(
            "SELECT kind FROM node_events WHERE node_id = ? AND liveness != '' \
             ORDER BY stream_seq",
        )
        .bind(node)
        .fetch_all::<String>()
        .await
        .expect("events")
}

async fn api_status(env: &Env, node: &str) -> NodeStatus {
    let state = nerve_api::AppState::new(
        env.ch.clone(),
        None,
        env.config.api.clone(),
        env.config.alerts.clone(),
        Registry::new(),
    );
    let page = nerve_api::fleet::list_nodes(
        &state,
        NodeListQuery {
            q: Some(node.to_owned()),
            ..NodeListQuery::default()
        },
    )
    .await
    .expect("list");
    page.nodes
        .iter()
        .find(|n| n.id == node)
        .map(|n| n.status)
        .expect("node listed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_agent_goes_suspect_then_offline_and_comes_back() {
    let env = Env::start().await;
    let mut project = env.spawn_nerve(&["project"]);
    let mut agent = env.spawn_nerve(&["agent"]);
    let node = env
        .agent_node_with_heartbeats(2, "the agent's heartbeats")
        .await;
    assert_eq!(api_status(&env, &node).await, NodeStatus::Online);

    signal(&mut agent, "-TERM").await;
    eventually(
        DEADLINE,
        "NodeWentOffline for the stopped agent",
        || async {
            let kinds = liveness_events(&env, &node).await;
            kinds.contains(&"NodeWentOffline".to_owned()).then_some(())
        },
    )
    .await;
    assert_eq!(
        liveness_events(&env, &node).await,
        ["NodeBecameSuspect", "NodeWentOffline"],
        "suspect first, then offline"
    );
    eventually(DEADLINE, "the API says offline", || async {
        (api_status(&env, &node).await == NodeStatus::Offline).then_some(())
    })
    .await;

    // The same node (same state dir) starts again.
    let mut agent = env.spawn_nerve(&["agent"]);
    eventually(DEADLINE, "NodeCameBack", || async {
        let kinds = liveness_events(&env, &node).await;
        (kinds.len() == 3).then_some(())
    })
    .await;
    assert_eq!(
        liveness_events(&env, &node).await,
        ["NodeBecameSuspect", "NodeWentOffline", "NodeCameBack"]
    );
    eventually(DEADLINE, "the API says online", || async {
        (api_status(&env, &node).await == NodeStatus::Online).then_some(())
    })
    .await;
    let (why, previous): (String, String) = env
        .ch
        .query(
            "SELECT summary, previous_liveness FROM node_events \
             WHERE node_id = ? AND kind = 'NodeCameBack'",
        )
        .bind(&node)
        .fetch_one()
        .await
        .expect("came back row");
    assert_eq!(previous, "offline", "{why}");

    signal(&mut agent, "-TERM").await;
    signal(&mut project, "-TERM").await;
}

/// Simulated nodes beating every second on their own connection; a publish that fails (NATS
/// down) is a missed round, like an agent whose outbox holds it. `hold` skips rounds, as agents
/// do while they are still reconnecting after NATS came back.
struct Fleet {
    rounds_ok: Arc<AtomicU64>,
    rounds_failed: Arc<AtomicU64>,
    rounds_held: Arc<AtomicU64>,
    hold: Arc<AtomicBool>,
    doomed_alive: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

const HEALTHY: usize = 10;
const DOOMED: &str = "doomed-node";

impl Fleet {
    async fn start(env: &Env) -> Self {
        let client = async_nats::ConnectOptions::new()
            .max_reconnects(None)
            .connect(env.nats.url())
            .await
            .expect("connect");
        let js = async_nats::jetstream::new(client);
        let (rounds_ok, rounds_failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let rounds_held = Arc::new(AtomicU64::new(0));
        let hold = Arc::new(AtomicBool::new(false));
        let doomed_alive = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (ok, failed, held, hold) = (
                rounds_ok.clone(),
                rounds_failed.clone(),
                rounds_held.clone(),
                hold.clone(),
            );
            let (doomed, stop) = (doomed_alive.clone(), stop.clone());
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut seq = 0;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    if hold.load(Ordering::Relaxed) {
                        held.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let mut nodes: Vec<String> =
                        (0..HEALTHY).map(|i| format!("healthy-{i}")).collect();
                    if doomed.load(Ordering::Relaxed) {
                        nodes.push(DOOMED.to_owned());
                    }
                    let round = async {
                        for node in nodes {
                            let mut hb = heartbeat(&node, nerve_platform::now_ms(), seq);
                            hb.interval_secs = 1;
                            nerve_ingest::publish(&js, subjects::heartbeat(&node), &hb)
                                .await
                                .ok()?;
                        }
                        Some(())
                    };
                    let acked = tokio::time::timeout(Duration::from_millis(700), round).await;
                    seq += 1;
                    let counter = if matches!(acked, Ok(Some(()))) {
                        &ok
                    } else {
                        &failed
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Self {
            rounds_ok,
            rounds_failed,
            rounds_held,
            hold,
            doomed_alive,
            stop,
            task,
        }
    }

    async fn wait_rounds(&self, counter: &AtomicU64, more: u64, what: &str) {
        let target = counter.load(Ordering::Relaxed) + more;
        eventually(DEADLINE, what, || async {
            (counter.load(Ordering::Relaxed) >= target).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_control_plane_turns_no_healthy_node_offline() {
    let mut env = Env::start().await;
    let fleet = Fleet::start(&env).await;
    let mut project = env.spawn_nerve(&["project"]);
    eventually(DEADLINE, "every simulated node projected", || async {
        let n = env
            .count("SELECT count() FROM (SELECT node_id FROM node_state FINAL)")
            .await;
        (n == HEALTHY as u64 + 1).then_some(())
    })
    .await;

    // 1. NATS goes away under a running tracker for longer than suspect + grace (5 + 2 s at
    //    1 s heartbeats), and the nodes take a few seconds to reconnect after it is back.
    env.nats.server.stop(Duration::from_secs(10));
    fleet
        .wait_rounds(&fleet.rounds_failed, 9, "9 s of NATS outage")
        .await;
    fleet.hold.store(true, Ordering::Relaxed);
    env.nats.server.restart().expect("restart nats");
    fleet
        .wait_rounds(&fleet.rounds_held, 3, "nodes still reconnecting")
        .await;
    fleet.hold.store(false, Ordering::Relaxed);
    fleet
        .wait_rounds(&fleet.rounds_ok, 3, "heartbeats flowing again")
        .await;

    // 2. The whole control plane goes down hard: the projector/tracker process is killed and
    //    NATS stops; both come back together, before the nodes have reconnected. One node
    //    really dies meanwhile.
    signal(&mut project, "-KILL").await;
    env.nats.server.stop(Duration::from_secs(10));
    fleet
        .wait_rounds(&fleet.rounds_failed, 9, "another 9 s of NATS outage")
        .await;
    fleet.hold.store(true, Ordering::Relaxed);
    fleet.doomed_alive.store(false, Ordering::Relaxed);
    env.nats.server.restart().expect("restart nats");
    let mut project = env.spawn_nerve(&["project"]);
    fleet
        .wait_rounds(&fleet.rounds_held, 3, "nodes still reconnecting")
        .await;
    fleet.hold.store(false, Ordering::Relaxed);

    // The tracker is working: the dead node is found, a full window after the restart…
    eventually(
        Duration::from_secs(60),
        "the dead node judged offline",
        || async {
            let kinds = liveness_events(&env, DOOMED).await;
            kinds.contains(&"NodeWentOffline".to_owned()).then_some(())
        },
    )
    .await;
    // …and the same window has passed for every healthy node: none was judged anything.
    fleet
        .wait_rounds(&fleet.rounds_ok, 2, "two more rounds")
        .await;
    let judged: Vec<(String, String)> = env
        .ch
        .query("SELECT node_id, kind FROM node_events WHERE node_id != ? ORDER BY stream_seq")
        .bind(DOOMED)
        .fetch_all()
        .await
        .expect("events");
    assert!(
        judged.is_empty(),
        "healthy nodes were judged after the restart: {judged:?}"
    );
    assert_eq!(
        env.count("SELECT count() FROM node_liveness FINAL WHERE state != 'online'")
            .await,
        1
    );

    fleet.stop.store(true, Ordering::Relaxed);
    fleet.task.await.expect("fleet");
    signal(&mut project, "-TERM").await;
}
