//! `nerve-loadtest connections`: N simulated agents, each on its own real NATS connection
//! (opened by `nerve_ingest::connect`, as `nerve agent` does), heartbeating to JetStream every
//! `--interval-secs` with their slots spread over the interval, through the real projectors into
//! ClickHouse. Reports how long connecting took, how many connections stayed up (as each client
//! sees it and as nats-server's open descriptors show), heartbeat ack latency, memory of both
//! processes, and checks that every acked heartbeat of every node is stored.
//!
//! One client address reaches one server address:port through at most the ephemeral port range
//! (32768–60999 by default: 28,232 ports), so the agents are spread over several loopback
//! destinations (127.0.0.1, 127.0.0.2, …) and nats-server listens on all addresses for the run.
//! The open-files limit of this process (inherited by nats-server) is raised to what the run needs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use futures::StreamExt;
use nerve_platform::metrics::Registry;
use tokio::sync::Mutex;

use crate::services::{Services, Target};

#[derive(Debug, Clone, Args)]
pub struct ConnectionsArgs {
    /// Simulated agents, one NATS connection each.
    #[arg(long, default_value_t = 50_000)]
    pub agents: u32,
    /// Each agent's heartbeat interval.
    #[arg(long, default_value_t = 30)]
    pub interval_secs: u64,
    /// Heartbeat rounds to run once every agent is connected.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Connections opened at once while connecting.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Agents per loopback destination address (below the ephemeral port range's size).
    #[arg(long, default_value_t = 25_000)]
    pub agents_per_address: u32,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json_out: Option<std::path::PathBuf>,
}

#[derive(Debug, serde::Serialize)]
pub struct ConnectionsReport {
    pub agents: u32,
    pub destinations: u32,
    pub open_files_limit: u64,
    pub connect_secs: f64,
    pub connect_failures: u64,
    pub connected_after_rounds: u64,
    pub nats_server_open_fds: u64,
    pub heartbeats_acked: u64,
    pub heartbeat_errors: u64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub ack_max_ms: f64,
    pub heartbeats_stored: u64,
    pub nodes_stored: u64,
    pub nats_server_rss_mib: f64,
    pub loadtest_rss_mib: f64,
}

/// Raises this process's open-files limit (soft and hard) to at least `want`.
#[allow(unsafe_code)] // two libc calls on a local struct
fn raise_open_files(want: u64) -> anyhow::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct passed.
    unsafe {
        anyhow::ensure!(
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0,
            "getrlimit: {}",
            std::io::Error::last_os_error()
        );
        if lim.rlim_cur >= want {
            return Ok(lim.rlim_cur);
        }
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: lim.rlim_max.max(want),
        };
        anyhow::ensure!(
            libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0,
            "cannot raise the open-files limit from {} to {want} ({}); run as root or raise \
             `ulimit -Hn`",
            lim.rlim_cur,
            std::io::Error::last_os_error()
        );
    }
    Ok(want)
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

pub async fn run(args: ConnectionsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.agents > 0 && args.agents_per_address > 0,
        "nothing to run"
    );
    // One descriptor per connection here and one in nats-server (which inherits the limit),
    // plus headroom for ClickHouse connections, files and the store.
    let limit = raise_open_files(u64::from(args.agents) + 1_000)?;
    let mut services =
        Services::start_with_nats_on_all_addresses(Target::private(20_000, 200)).await?;
    services.start_projectors(&Registry::new());
    let port = services
        .config
        .nats
        .url
        .rsplit(':')
        .next()
        .context("nats url")?
        .to_owned();
    let nats_pid = services.nats_pid().context("private nats-server")?;
    let destinations = args.agents.div_ceil(args.agents_per_address);
    anyhow::ensure!(destinations < 255, "too many destinations");

    // Connect every agent.
    let started = Instant::now();
    let failures = AtomicU64::new(0);
    let mut clients: Vec<(String, async_nats::Client)> = futures::stream::iter(0..args.agents)
        .map(|i| {
            let mut nats = services.config.nats.clone();
            nats.url = format!("nats://127.0.0.{}:{port}", 1 + i / args.agents_per_address);
            let failures = &failures;
            async move {
                let id = format!("sim-{i:06}");
                match nerve_ingest::connect(&nats, &format!("nerve-agent {id}"), false).await {
                    Ok(c) => Some((id, c)),
                    Err(e) => {
                        if failures.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("connections: {id}: {e}");
                        }
                        None
                    }
                }
            }
        })
        .buffer_unordered(args.connect_concurrency.max(1))
        .filter_map(|c| async move { c })
        .collect()
        .await;
    let connect_secs = started.elapsed().as_secs_f64();
    clients.sort_by(|a, b| a.0.cmp(&b.0));
    eprintln!(
        "connections: {} agents connected in {connect_secs:.1} s ({} failed); nats-server has {} fds",
        clients.len(),
        failures.load(Ordering::Relaxed),
        open_fds(nats_pid)
    );

    // Heartbeat rounds: agent k of n beats at k/n of the interval, then every interval.
    let interval = Duration::from_secs(args.interval_secs.max(1));
    let acks = Arc::new(Mutex::new(Vec::<f64>::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let n = clients.len().max(1) as u32;
    let begin = tokio::time::Instant::now() + Duration::from_millis(100);
    let mut agents = Vec::with_capacity(clients.len());
    for (k, (id, client)) in clients.iter().enumerate() {
        let (id, client) = (id.clone(), client.clone());
        let (acks, errors) = (acks.clone(), errors.clone());
        let first = begin + interval * (k as u32) / n;
        let rounds = args.rounds;
        agents.push(tokio::spawn(async move {
            let js = async_nats::jetstream::new(client);
            let mut tick = tokio::time::interval_at(first, interval);
            let mut mine = Vec::with_capacity(rounds as usize);
            for seq in 0..rounds {
                tick.tick().await;
                let hb = crate::sim::heartbeat(&id, i64::from(seq), nerve_platform::now_ms());
                let t = Instant::now();
                let sent = async {
                    let payload = nerve_schemas::encode(&hb)?;
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("Nats-Msg-Id", hb.envelope.event_id.as_str());
                    js.publish_with_headers(
                        nerve_schemas::subjects::heartbeat(&id),
                        headers,
                        payload.into(),
                    )
                    .await?
                    .await?;
                    anyhow::Ok(())
                }
                .await;
                match sent {
                    Ok(()) => mine.push(t.elapsed().as_secs_f64() * 1000.0),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            acks.lock().await.extend(mine);
        }));
    }
    let mut peak_nats_rss: f64 = 0.0;
    let mut peak_own_rss: f64 = 0.0;
    let mut sampler = tokio::time::interval(Duration::from_secs(1));
    let mut all = futures::future::join_all(agents);
    loop {
        tokio::select! {
            _ = sampler.tick() => {
                peak_nats_rss = peak_nats_rss.max(rss_mib(nats_pid));
                peak_own_rss = peak_own_rss.max(rss_mib(std::process::id()));
            }
            done = &mut all => {
                for r in done {
                    r?;
                }
                break;
            }
        }
    }
    let connected = clients
        .iter()
        .filter(|(_, c)| c.connection_state() == async_nats::connection::State::Connected)
        .count() as u64;
    let server_fds = open_fds(nats_pid);

    // Every acked heartbeat stored, and every node.
    let mut acks = std::mem::take(&mut *acks.lock().await);
    acks.sort_by(f64::total_cmp);
    let acked = acks.len() as u64;
    let ch = services.ch.clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    let stored = loop {
        let stored: u64 = ch
            .query("SELECT count() FROM heartbeats")
            .fetch_one()
            .await?;
        if stored >= acked || Instant::now() > deadline {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let nodes: u64 = ch
        .query("SELECT uniqExact(node_id) FROM heartbeats")
        .fetch_one()
        .await?;
    let pct = |p: f64| {
        acks.get(((acks.len() as f64 * p).ceil() as usize).clamp(1, acks.len().max(1)) - 1)
            .copied()
            .unwrap_or(0.0)
    };
    let report = ConnectionsReport {
        agents: args.agents,
        destinations,
        open_files_limit: limit,
        connect_secs,
        connect_failures: failures.load(Ordering::Relaxed),
        connected_after_rounds: connected,
        nats_server_open_fds: server_fds,
        heartbeats_acked: acked,
        heartbeat_errors: errors.load(Ordering::Relaxed),
        ack_p50_ms: pct(0.5),
        ack_p99_ms: pct(0.99),
        ack_max_ms: acks.last().copied().unwrap_or(0.0),
        heartbeats_stored: stored,
        nodes_stored: nodes,
        nats_server_rss_mib: peak_nats_rss,
        loadtest_rss_mib: peak_own_rss,
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    drop(clients);
    services.stop().await?;
    anyhow::ensure!(
        report.connect_failures == 0
            && report.heartbeat_errors == 0
            && connected == u64::from(args.agents)
            && stored == acked
            && nodes == u64::from(args.agents),
        "not every agent stayed connected and stored: see the report"
    );
    Ok(())
}
