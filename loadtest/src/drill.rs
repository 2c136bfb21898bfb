//! `nerve-loadtest drill KIND`: the fault drills of the system tests at scale, on real processes
//! started here. Heartbeats are published at `--rate` with pipelined acks through the
//! projectors (in this process) while one thing fails at `--fault-at-secs`:
//!
//! - `nats-leader`: a 3-server JetStream cluster with every stream on 3 replicas; the telemetry
//!   stream's leader is killed (SIGKILL) and restarted `--outage-secs` later;
//! - `clickhouse-replica`: the 2 × 2 ClickHouse cluster of `infra/clickhouse/cluster/`; one
//!   replica (the first server Nerve connects to) is killed and restarted;
//! - `clickhouse-down`: the only ClickHouse server is killed and restarted `--outage-secs` later;
//! - `project-leader`: two `nerve project` processes; the one running the singletons is
//!   killed ([`leader`]);
//! - `replicas`: no fault; the same load on one server with R1 streams, then on a 3-server
//!   cluster with R3 streams (the cost of replication);
//! - `storm`: `connections --restart-servers`: `--agents` agents, each on its own connection
//!   opened as `nerve agent` opens its own, heartbeat once; then every nats-server they connect
//!   to is killed and restarted: how long until every agent is connected and acked again, and
//!   the most connections that arrived in one second.
//!
//! Every drill but `storm` reports acked, stored, lost and duplicated heartbeats (exact counts
//! from ClickHouse), publish → queryable p99 over the run, and the recovery time: from the
//! restart until every heartbeat acked before it is stored and the restarted server has caught
//! up (a JetStream peer current, a ClickHouse replica's queue empty).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use nerve_platform::config::ClickHouseConfig;
use nerve_platform::metrics::Registry;
use nerve_projections::heartbeats::HEARTBEATS;
use tokio_util::sync::CancellationToken;

mod leader;
mod topology;

pub use topology::Topology;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    NatsLeader,
    ClickhouseReplica,
    ClickhouseDown,
    ProjectLeader,
    Replicas,
    Storm,
}

#[derive(Debug, Clone, Args)]
pub struct DrillArgs {
    #[arg(value_enum)]
    pub kind: Kind,
    /// Heartbeats per second offered.
    #[arg(long, default_value_t = 2_000.0)]
    pub rate: f64,
    /// Simulated nodes the heartbeats are spread over.
    #[arg(long, default_value_t = 6_000)]
    pub nodes: u32,
    /// How long to publish.
    #[arg(long, default_value_t = 90)]
    pub duration_secs: u64,
    /// When the fault happens, after publishing started.
    #[arg(long, default_value_t = 15)]
    pub fault_at_secs: u64,
    /// How long the failed part stays down before it is restarted.
    #[arg(long, default_value_t = 60)]
    pub outage_secs: u64,
    /// `storm`: agents, one connection each.
    #[arg(long, default_value_t = 6_000)]
    pub agents: u32,
    /// `storm`: the agents' `nats.reconnect_spread_ms`.
    #[arg(long, default_value_t = 5_000)]
    pub spread_ms: u64,
    /// `storm`: each agent's heartbeat interval.
    #[arg(long, default_value_t = 10)]
    pub interval_secs: u64,
    /// `storm`: agents per nats-server (past it, leaf node servers) and per process.
    #[arg(long, default_value_t = 18_000)]
    pub agents_per_server: u32,
    /// `project-leader`: the `nerve` binary (default: beside this tool).
    #[arg(long)]
    pub nerve_bin: Option<std::path::PathBuf>,
    /// `project-leader`: `singletons.lease_secs`.
    #[arg(long, default_value_t = 6)]
    pub lease_secs: u64,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json_out: Option<std::path::PathBuf>,
}

/// What one loaded run with a fault showed.
#[derive(Debug, serde::Serialize)]
pub struct Outcome {
    pub drill: String,
    pub offered_rate: f64,
    pub acked: u64,
    pub publish_errors: u64,
    pub stored: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub end_to_end_rate: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    /// From the restart until every heartbeat acked before it was stored and the restarted
    /// server caught up with its peers.
    pub recovery_secs: Option<f64>,
}

impl Outcome {
    fn print(&self) {
        println!(
            "{}: offered {:.0}/s; acked {}, stored {}, lost {}, duplicated {}; publish errors {}; \
             end to end {:.0}/s; publish→queryable p50 {:.0} ms p99 {:.0} ms max {:.0} ms; \
             recovery {}",
            self.drill,
            self.offered_rate,
            self.acked,
            self.stored,
            self.lost,
            self.duplicates,
            self.publish_errors,
            self.end_to_end_rate,
            self.latency_p50_ms,
            self.latency_p99_ms,
            self.latency_max_ms,
            self.recovery_secs.map_or("-".to_owned(), |s| format!(
                "{s:.1} s after the restart (for a \
                    killed leader: after its death)"
            )),
        );
    }
}

pub async fn run(args: DrillArgs) -> anyhow::Result<()> {
    let outcomes = match args.kind {
        Kind::Storm => {
            return crate::connections::run(crate::connections::ConnectionsArgs {
                agents: args.agents,
                interval_secs: args.interval_secs,
                rounds: 1,
                connect_concurrency: 256,
                agents_per_server: args.agents_per_server,
                agents_per_process: args.agents_per_server,
                secured: false,
                restart_servers: true,
                spread_ms: args.spread_ms,
                json_out: args.json_out,
            })
            .await;
        }
        Kind::Replicas => {
            let mut r1 = Topology::start(1, false).await?;
            let one = loaded(&args, &mut r1, "replicas-r1", None).await?;
            r1.stop().await;
            let mut r3 = Topology::start(3, false).await?;
            let three = loaded(&args, &mut r3, "replicas-r3", None).await?;
            r3.stop().await;
            vec![one, three]
        }
        Kind::NatsLeader => {
            let mut t = Topology::start(3, false).await?;
            let o = loaded(&args, &mut t, "nats-leader", Some(Fault::NatsLeader)).await?;
            t.stop().await;
            vec![o]
        }
        Kind::ClickhouseReplica => {
            let mut t = Topology::start(1, true).await?;
            let o = loaded(
                &args,
                &mut t,
                "clickhouse-replica",
                Some(Fault::ClickHouse(1)),
            )
            .await?;
            t.stop().await;
            vec![o]
        }
        Kind::ProjectLeader => {
            let mut t = Topology::start(1, false).await?;
            let pid = leader::start(&mut t, &args).await?;
            let o = loaded(
                &args,
                &mut t,
                "project-leader",
                Some(Fault::ProjectLeader(pid)),
            )
            .await?;
            let checks = leader::checks(&t, &args).await?;
            t.stop().await;
            o.print();
            println!(
                "project-leader: lease {} s; the open alert fired {} time(s); {} liveness \
                 judgement(s) of the fleet",
                checks.lease_secs, checks.hot_alert_firings, checks.fleet_judgements
            );
            write_json(&args, &(&o, &checks))?;
            anyhow::ensure!(
                o.lost == 0 && o.duplicates == 0,
                "project-leader: lost or duplicated"
            );
            anyhow::ensure!(
                checks.hot_alert_firings == 1 && checks.fleet_judgements == 0,
                "project-leader: an alert fired twice or a node was judged"
            );
            return Ok(());
        }
        Kind::ClickhouseDown => {
            let mut t = Topology::start(1, false).await?;
            let o = loaded(
                &args,
                &mut t,
                "clickhouse-down",
                Some(Fault::ClickHouse(usize::MAX)),
            )
            .await?;
            t.stop().await;
            vec![o]
        }
    };
    for o in &outcomes {
        o.print();
    }
    write_json(&args, &outcomes)?;
    for o in &outcomes {
        anyhow::ensure!(
            o.lost == 0 && o.duplicates == 0,
            "{}: lost or duplicated",
            o.drill
        );
    }
    Ok(())
}

fn write_json(args: &DrillArgs, report: &impl serde::Serialize) -> anyhow::Result<()> {
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_string_pretty(report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// What fails.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The telemetry stream's leader.
    NatsLeader,
    /// This many ClickHouse servers, the first ones (all of them: `usize::MAX`).
    ClickHouse(usize),
    /// The `nerve project` with this pid, holding the singletons (not restarted).
    ProjectLeader(u32),
}

impl Fault {
    fn describe(self) -> String {
        match self {
            Fault::NatsLeader => "the telemetry stream's leader".into(),
            Fault::ClickHouse(usize::MAX) => "every ClickHouse server".into(),
            Fault::ClickHouse(n) => format!("{n} ClickHouse replica(s)"),
            Fault::ProjectLeader(_) => "the nerve project running the singletons".into(),
        }
    }
}

/// Publishes at `args.rate` for `args.duration_secs` through the projectors with `fault`
/// injected at `args.fault_at_secs`; counts what arrived.
async fn loaded(
    args: &DrillArgs,
    t: &mut Topology,
    name: &str,
    fault: Option<Fault>,
) -> anyhow::Result<Outcome> {
    let config = &t.config.clone();
    let client =
        nerve_ingest::connect(&config.nats, nerve_ingest::Who::Role("drill"), false).await?;
    let js = async_nats::jetstream::new(client);
    let ch = nerve_platform::clickhouse::client(&config.clickhouse);
    let cancel = CancellationToken::new();
    // In this process, unless `nerve project`s run them.
    let projectors = t.projects.is_empty().then(|| {
        tokio::spawn(nerve_projections::run_all(
            js.clone(),
            config.clickhouse.clone(),
            config.projector.clone(),
            Registry::new(),
            None,
            cancel.clone(),
        ))
    });
    let ingest = crate::Args {
        nodes: args.nodes,
        interval_secs: 30.0,
        rate: Some(args.rate),
        duration_secs: args.duration_secs,
        connections: 4,
        max_inflight: 2048,
        probes_per_sec: 10.0,
        nats_url: None,
        clickhouse_url: None,
        database: None,
        batch_max_events: config.projector.batch_max_events,
        batch_max_wait_ms: config.projector.batch_max_wait_ms,
        json_out: None,
        plot: None,
        telemetry_max_bytes: None,
        raw_first: false,
        raw_events: 0,
    };
    eprintln!(
        "drill {name}: {} heartbeats/s for {} s{}",
        args.rate,
        args.duration_secs,
        fault.map_or(String::new(), |f| format!(
            ", {} down at {} s for {} s",
            f.describe(),
            args.fault_at_secs,
            args.outage_secs
        ))
    );
    let started = Instant::now();
    let mut prober = crate::probe::Prober::start(
        js.clone(),
        ch.clone(),
        10.0,
        Duration::from_secs(args.duration_secs),
    );
    let acked = Arc::new(AtomicU64::new(0));
    let publish = crate::sim::run(&ingest, config, args.rate, acked.clone());
    let inject = async {
        let Some(fault) = fault else {
            return anyhow::Ok(None);
        };
        tokio::time::sleep(Duration::from_secs(args.fault_at_secs)).await;
        let downed = down(t, &js, fault).await?;
        eprintln!("drill {name}: {downed} down");
        // A dead leader is not restarted: recovery counts from its death.
        if !matches!(fault, Fault::ProjectLeader(_)) {
            tokio::time::sleep(Duration::from_secs(args.outage_secs)).await;
        }
        let acked_before = acked.load(Ordering::Relaxed);
        up(t, fault).await?;
        let restarted = Instant::now();
        match fault {
            Fault::ProjectLeader(_) => eprintln!("drill {name}: waiting for the takeover"),
            _ => eprintln!("drill {name}: {downed} restarted"),
        }
        // Recovered once every heartbeat acked before the restart is stored and the restarted
        // server has caught up with its peers.
        loop {
            let stored: u64 = ch
                .query(&format!("SELECT count() FROM {HEARTBEATS}"))
                .fetch_one()
                .await
                .unwrap_or(0);
            if stored >= acked_before && caught_up(t, &js, fault).await {
                return Ok(Some(restarted.elapsed().as_secs_f64()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (published, recovery) = tokio::join!(publish, inject);
    let (published, recovery) = (published?, recovery?);
    let expected = published.acked + prober.published_count().await?;
    let mut stored = 0;
    let mut last_progress = Instant::now();
    while stored < expected && last_progress.elapsed() < Duration::from_secs(60) {
        let now: u64 = ch
            .query(&format!("SELECT count() FROM {HEARTBEATS}"))
            .fetch_one()
            .await
            .unwrap_or(stored);
        if now != stored {
            last_progress = Instant::now();
        }
        stored = now;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained = started.elapsed().as_secs_f64();
    let latency = prober.finish().await?;
    let (rows, unique): (u64, u64) = ch
        .query(&format!(
            "SELECT count(), uniqExact(event_id) FROM {HEARTBEATS}"
        ))
        .fetch_one()
        .await?;
    cancel.cancel();
    if let Some(p) = projectors {
        let _ = p.await;
    }
    let probes = latency.probes as u64;
    Ok(Outcome {
        drill: name.to_owned(),
        offered_rate: args.rate,
        acked: published.acked,
        publish_errors: published.errors,
        stored: unique.saturating_sub(probes),
        lost: expected.saturating_sub(unique),
        duplicates: rows - unique,
        end_to_end_rate: unique.saturating_sub(probes) as f64 / drained,
        latency_p50_ms: latency.p50_ms,
        latency_p99_ms: latency.p99_ms,
        latency_max_ms: latency.max_ms,
        recovery_secs: recovery,
    })
}

/// Makes `fault` happen; what went down.
async fn down(
    t: &mut Topology,
    js: &async_nats::jetstream::Context,
    fault: Fault,
) -> anyhow::Result<String> {
    match fault {
        Fault::NatsLeader => {
            let mut stream = js.get_stream(nerve_ingest::TELEMETRY_STREAM).await?;
            let leader = stream
                .info()
                .await?
                .cluster
                .as_ref()
                .and_then(|c| c.leader.clone())
                .context("the telemetry stream has no leader")?;
            let i: usize = leader.trim_start_matches('n').parse::<usize>()? - 1;
            t.nats[i].kill();
            t.killed_nats = Some(i);
            Ok(format!("NATS {leader} (the telemetry leader)"))
        }
        Fault::ClickHouse(n) => {
            let n = n.min(t.clickhouse.len());
            for s in &mut t.clickhouse[..n] {
                s.kill();
            }
            Ok(format!("{n} ClickHouse server(s)"))
        }
        Fault::ProjectLeader(pid) => {
            let p = t
                .projects
                .iter_mut()
                .find(|p| p.id() == Some(pid))
                .context("the leading nerve project")?;
            p.kill().await?;
            Ok(format!("nerve project {pid} (holding the singletons)"))
        }
    }
}

/// Whether the servers [`up`] restarted are in step again: a JetStream peer current with the
/// telemetry stream's leader, ClickHouse replicas with nothing left in their queues.
async fn caught_up(t: &Topology, js: &async_nats::jetstream::Context, fault: Fault) -> bool {
    match fault {
        Fault::NatsLeader => {
            let Ok(mut stream) = js.get_stream(nerve_ingest::TELEMETRY_STREAM).await else {
                return false;
            };
            let Ok(info) = stream.info().await else {
                return false;
            };
            info.cluster.as_ref().is_some_and(|c| {
                c.replicas
                    .iter()
                    .all(|p| p.current && !p.offline && p.lag.unwrap_or(0) == 0)
            })
        }
        Fault::ProjectLeader(pid) => match &t.leases {
            Some(leases) => leader::holders(leases)
                .await
                .iter()
                .all(|h| h.is_some_and(|h| h != pid)),
            None => false,
        },
        Fault::ClickHouse(_) if t.config.clickhouse.cluster.is_empty() => true,
        Fault::ClickHouse(n) => {
            for server in t.clickhouse.iter().take(n) {
                let config = ClickHouseConfig {
                    url: server.url.clone(),
                    ..t.config.clickhouse.clone()
                };
                let behind: Result<(u64, u64, u8), _> = nerve_platform::clickhouse::client(&config)
                    .query(
                        "SELECT toUInt64(max(absolute_delay)), toUInt64(sum(queue_size)), \
                         max(is_readonly) FROM system.replicas WHERE database = ?",
                    )
                    .bind(&t.config.clickhouse.database)
                    .fetch_one()
                    .await;
                if behind.ok() != Some((0, 0, 0)) {
                    return false;
                }
            }
            true
        }
    }
}

/// Restarts what [`down`] took down.
async fn up(t: &mut Topology, fault: Fault) -> anyhow::Result<()> {
    tokio::task::block_in_place(|| {
        match fault {
            Fault::NatsLeader => {
                if let Some(i) = t.killed_nats.take() {
                    t.nats[i].restart()?;
                }
            }
            Fault::ClickHouse(n) => {
                let n = n.min(t.clickhouse.len());
                for s in &mut t.clickhouse[..n] {
                    s.restart()?;
                }
            }
            // A dead leader is not brought back: the other takes over.
            Fault::ProjectLeader(_) => {}
        }
        anyhow::Ok(())
    })
}
