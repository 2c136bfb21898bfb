//! `drill storm`: a broker restart met by a fleet. `--agents` agents, each on its own
//! connection opened by `nerve_ingest::connect` as `nerve agent` opens its own (with
//! `--spread-ms` as its reconnect spread), heartbeat to JetStream every `--interval-secs`; the
//! nats-server is killed at `--fault-at-secs` and restarted at once on the same port with its
//! store. Measured: how long until every agent is connected again and has a heartbeat acked,
//! and how many connections arrived in the busiest second (a herd arrives in one).

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;
use nerve_platform::config::Config;
use nerve_schemas::subjects;

use super::DrillArgs;

#[derive(Debug, serde::Serialize)]
pub struct StormReport {
    pub agents: u32,
    pub spread_ms: u64,
    pub connect_secs: f64,
    /// From the restart until every agent was connected again.
    pub all_reconnected_secs: f64,
    /// From the restart until every agent had a heartbeat acked again.
    pub all_acked_secs: f64,
    pub reconnect_p50_secs: f64,
    pub reconnect_p99_secs: f64,
    /// Most reconnections that arrived within one second.
    pub busiest_second: usize,
}

impl StormReport {
    pub fn print(&self) {
        println!(
            "storm: {} agents (spread {} ms) connected in {:.1} s; after the broker restart all \
             reconnected in {:.1} s (p50 {:.1} s, p99 {:.1} s) and all heartbeating in {:.1} s; \
             busiest second {} connections",
            self.agents,
            self.spread_ms,
            self.connect_secs,
            self.all_reconnected_secs,
            self.reconnect_p50_secs,
            self.reconnect_p99_secs,
            self.all_acked_secs,
            self.busiest_second
        );
    }
}

/// One agent's view after the restart: when it was connected again, when acked again.
#[derive(Default)]
struct Back {
    connected: Option<Instant>,
    acked: Option<Instant>,
}

pub async fn run(args: &DrillArgs) -> anyhow::Result<StormReport> {
    crate::connections::raise_open_files(u64::from(args.agents) + 2_048)?;
    let dir = tempfile::Builder::new()
        .prefix("nerve-drill-storm-")
        .tempdir()?;
    let root = dir.path().to_owned();
    let mut server = tokio::task::spawn_blocking(move || super::start_nats(&root, 1))
        .await??
        .remove(0);
    let mut config = Config::default();
    config.nats.url = server.url.clone();
    config.nats.reconnect_spread_ms = args.spread_ms;
    let admin =
        nerve_ingest::connect(&config.nats, nerve_ingest::Who::Role("drill"), false).await?;
    nerve_ingest::ensure_streams(&async_nats::jetstream::new(admin), &config.streams).await?;

    let started = Instant::now();
    let restarted: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let clients: Vec<async_nats::Client> = futures::stream::iter(0..args.agents)
        .map(|i| {
            let config = config.clone();
            async move {
                let id = format!("storm-{i:06}");
                nerve_ingest::connect(
                    &config.nats,
                    nerve_ingest::Who::Node { id: &id, key: None },
                    false,
                )
                .await
            }
        })
        .buffered(256)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let connect_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "storm: {} agents connected in {connect_secs:.1} s",
        args.agents
    );

    let interval = Duration::from_secs(args.interval_secs.max(1));
    let backs: Vec<Arc<Mutex<Back>>> = (0..args.agents).map(|_| Arc::default()).collect();
    let mut tasks = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        let back = backs[i].clone();
        let restarted = restarted.clone();
        // Each agent's slot in the interval, as real agents' start times spread them.
        let offset = interval.mul_f64(i as f64 / f64::from(args.agents));
        tasks.push(tokio::spawn(async move {
            let id = format!("storm-{i:06}");
            let js = async_nats::jetstream::new(client.clone());
            let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + offset, interval);
            let mut look = tokio::time::interval(Duration::from_millis(50));
            let mut seq = 0;
            loop {
                tokio::select! {
                    _ = look.tick() => {
                        let after = *restarted.lock().unwrap_or_else(|p| p.into_inner());
                        let mut b = back.lock().unwrap_or_else(|p| p.into_inner());
                        if after.is_some() && b.connected.is_none()
                            && client.connection_state() == async_nats::connection::State::Connected
                        {
                            b.connected = Some(Instant::now());
                            // A reconnected agent sends at once what it could not meanwhile.
                            beat.reset_immediately();
                        }
                    }
                    _ = beat.tick() => {
                        seq += 1;
                        let hb = crate::sim::heartbeat(&id, seq, nerve_platform::now_ms());
                        let ack = tokio::time::timeout(
                            Duration::from_secs(5),
                            nerve_ingest::publish(&js, subjects::heartbeat(&id), &hb),
                        )
                        .await;
                        let mut b = back.lock().unwrap_or_else(|p| p.into_inner());
                        if matches!(ack, Ok(Ok(_))) && b.connected.is_some() && b.acked.is_none() {
                            b.acked = Some(Instant::now());
                        }
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.fault_at_secs)).await;
    server.kill();
    let at = tokio::task::block_in_place(|| {
        server.restart()?;
        anyhow::Ok(Instant::now())
    })?;
    *restarted.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
    eprintln!("storm: broker killed and restarted");
    let deadline = at + Duration::from_secs(300);
    let (mut connected, mut acked) = loop {
        let mut connected = Vec::new();
        let mut acked = Vec::new();
        for b in &backs {
            let b = b.lock().unwrap_or_else(|p| p.into_inner());
            connected.extend(b.connected.map(|t| t.saturating_duration_since(at)));
            acked.extend(b.acked.map(|t| t.saturating_duration_since(at)));
        }
        if acked.len() == backs.len() || Instant::now() > deadline {
            break (connected, acked);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for t in tasks {
        t.abort();
    }
    anyhow::ensure!(
        acked.len() == backs.len(),
        "{} of {} agents not back within 300 s",
        backs.len() - acked.len(),
        backs.len()
    );
    connected.sort_unstable();
    acked.sort_unstable();
    let busiest = connected
        .iter()
        .enumerate()
        .map(|(i, t)| {
            connected[i..]
                .iter()
                .take_while(|u| **u < *t + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or_default();
    let q = |v: &[Duration], p: f64| v[((v.len() - 1) as f64 * p) as usize].as_secs_f64();
    let report = StormReport {
        agents: args.agents,
        spread_ms: args.spread_ms,
        connect_secs,
        all_reconnected_secs: q(&connected, 1.0),
        all_acked_secs: q(&acked, 1.0),
        reconnect_p50_secs: q(&connected, 0.5),
        reconnect_p99_secs: q(&connected, 0.99),
        busiest_second: busiest,
    };
    tokio::task::block_in_place(|| server.stop(Duration::from_secs(10)));
    Ok(report)
}
