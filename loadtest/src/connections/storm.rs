//! The broker restart of `connections --restart-servers` (and `drill storm`): once the rounds
//! are done, every nats-server the agents connect to is killed and restarted at once. Each
//! worker watches its agents from before the kill: when one is connected again after having
//! been cut off, and when a heartbeat of it is acked after that. The coordinator turns the
//! times into how long until the whole fleet was back, and how many connections arrived in the
//! busiest second (a fleet without jitter arrives in one).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

/// One worker's agents after the restart: Unix ms of each agent's reconnection and of its
/// first ack after it; `missing`: agents not back within the limit.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Back {
    pub reconnected_ms: Vec<i64>,
    pub acked_ms: Vec<i64>,
    pub missing: u64,
}

/// The fleet's figures.
#[derive(Debug, serde::Serialize)]
pub struct StormFigures {
    pub spread_ms: u64,
    pub servers_restarted: usize,
    /// From the restart until every agent was connected again.
    pub all_reconnected_secs: f64,
    /// From the restart until every agent had a heartbeat acked again.
    pub all_acked_secs: f64,
    pub reconnect_p50_secs: f64,
    pub reconnect_p99_secs: f64,
    /// Most reconnections within one second.
    pub busiest_second: usize,
    pub not_back: u64,
}

/// How long a worker waits for its agents after the first is cut off.
const LIMIT: Duration = Duration::from_secs(300);

/// Watches `clients` (id, connection) from now on, in one loop for all of them, ten times a
/// second (so a reconnection's time is known to about 0.1 s); returns once every agent is back
/// with a heartbeat acked, or [`LIMIT`] after the first was cut off.
pub fn watch(clients: Vec<(u32, async_nats::Client)>) -> JoinHandle<Back> {
    tokio::spawn(async move {
        let n = clients.len();
        // A reconnection is a connect more than the client had now: seen however short the
        // agent was cut off (between two looks at its state it may have been down and back).
        let stats: Vec<_> = clients.iter().map(|(_, c)| c.statistics()).collect();
        let base: Vec<u64> = stats
            .iter()
            .map(|s| s.connects.load(Ordering::Relaxed))
            .collect();
        let mut cut = vec![false; n];
        let mut reconnected: Vec<Option<i64>> = vec![None; n];
        let acked: Arc<Mutex<Vec<Option<i64>>>> = Arc::new(Mutex::new(vec![None; n]));
        let mut first_cut = None;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            for (k, (i, client)) in clients.iter().enumerate() {
                let up = client.connection_state() == async_nats::connection::State::Connected;
                let again = stats[k].connects.load(Ordering::Relaxed) > base[k];
                if !up || again {
                    cut[k] = true;
                    first_cut.get_or_insert_with(tokio::time::Instant::now);
                }
                if up && again && reconnected[k].is_none() {
                    reconnected[k] = Some(nerve_platform::now_ms());
                    tokio::spawn(beat_until_acked(*i, client.clone(), k, acked.clone()));
                }
            }
            let done = {
                let acked = acked.lock().unwrap_or_else(|p| p.into_inner());
                // Every server was restarted: every agent has to come back.
                first_cut.is_some() && (0..n).all(|k| acked[k].is_some())
            };
            if done || first_cut.is_some_and(|t| t.elapsed() > LIMIT) {
                break;
            }
        }
        let acked = acked.lock().unwrap_or_else(|p| p.into_inner());
        Back {
            reconnected_ms: reconnected.iter().flatten().copied().collect(),
            acked_ms: acked.iter().flatten().copied().collect(),
            missing: (0..n).filter(|&k| acked[k].is_none()).count() as u64,
        }
    })
}

/// Publishes agent `i`'s next heartbeat until it is acked; notes when.
async fn beat_until_acked(
    i: u32,
    client: async_nats::Client,
    k: usize,
    acked: Arc<Mutex<Vec<Option<i64>>>>,
) {
    let id = format!("sim-{i:06}");
    let js = async_nats::jetstream::new(client);
    let subject = nerve_schemas::subjects::heartbeat(&id);
    // One event, sent again until acked: JetStream drops the copies of one that was stored
    // although its ack was lost.
    let hb = crate::sim::heartbeat(&id, 1_000_000, nerve_platform::now_ms());
    loop {
        let sent = tokio::time::timeout(
            Duration::from_secs(5),
            nerve_ingest::publish(&js, subject.clone(), &hb),
        )
        .await;
        if matches!(sent, Ok(Ok(_))) {
            acked.lock().unwrap_or_else(|p| p.into_inner())[k] = Some(nerve_platform::now_ms());
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The fleet's figures from every worker's [`Back`], against the restart at `restarted_ms`.
pub fn figures(backs: &[Back], restarted_ms: i64, spread_ms: u64, servers: usize) -> StormFigures {
    let secs = |ms: i64| (ms - restarted_ms).max(0) as f64 / 1000.0;
    let mut reconnected: Vec<i64> = backs
        .iter()
        .flat_map(|b| b.reconnected_ms.iter().copied())
        .collect();
    let acked: Vec<i64> = backs
        .iter()
        .flat_map(|b| b.acked_ms.iter().copied())
        .collect();
    reconnected.sort_unstable();
    let busiest = reconnected
        .iter()
        .enumerate()
        .map(|(i, t)| {
            reconnected[i..]
                .iter()
                .take_while(|u| **u < t + 1_000)
                .count()
        })
        .max()
        .unwrap_or_default();
    let at = |p: f64| {
        reconnected
            .get(((reconnected.len().saturating_sub(1)) as f64 * p) as usize)
            .map_or(0.0, |&t| secs(t))
    };
    StormFigures {
        spread_ms,
        servers_restarted: servers,
        all_reconnected_secs: reconnected.last().map_or(0.0, |&t| secs(t)),
        all_acked_secs: acked.iter().max().map_or(0.0, |&t| secs(t)),
        reconnect_p50_secs: at(0.5),
        reconnect_p99_secs: at(0.99),
        busiest_second: busiest,
        not_back: backs.iter().map(|b| b.missing).sum(),
    }
}
