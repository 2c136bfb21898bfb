//! `nerve-loadtest connections`: N simulated agents, each on its own real NATS connection
//! (opened by `nerve_ingest::connect`, as `nerve agent` does), heartbeating to JetStream every
//! `--interval-secs` with their slots spread over the interval, through the real projectors into
//! ClickHouse. Reports how long connecting took, how many connections stayed up (as each client
//! sees it and as the nats-servers' open descriptors show), heartbeat ack latency, memory of the
//! servers and of the agents' processes, and checks that every acked heartbeat of every node is
//! stored.
//!
//! A process holds one descriptor per connection, and the open-files limit is per process (hard
//! limit 20,000 on the machine measured, not raisable without `CAP_SYS_RESOURCE`). So past
//! `--agents-per-server` the agents connect to leaf node servers of the JetStream server — each
//! a nats-server of its own, relaying its clients' publishes and acks to the hub's streams, as a
//! site or rack relay would in production — and past `--agents-per-process` they live in several
//! worker processes (this binary's hidden `connections-worker`), which connect, report, wait for
//! a common start time, beat, report their ack latencies on stdout and stay connected until the
//! coordinator has counted the servers' descriptors.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use futures::StreamExt;
use nerve_platform::config::NatsConfig;
use nerve_platform::metrics::Registry;
use nerve_platform::services::{NatsOptions, NatsServer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

mod procfs;
mod secured;
mod storm;

pub(crate) use procfs::raise_open_files;
use procfs::{open_fds, rss_mib};

use crate::probe::quantile;
use crate::services::{Services, Target};
use nerve_projections::heartbeats::HEARTBEATS;

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
    /// Connections each agent process opens at once while connecting.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Agents one nats-server takes (below the open-files limit); more agents than this connect
    /// to leaf node servers of the JetStream server, this many at most each.
    #[arg(long, default_value_t = 18_000)]
    pub agents_per_server: u32,
    /// Agents one process of this tool holds (below the open-files limit).
    #[arg(long, default_value_t = 18_000)]
    pub agents_per_process: u32,
    /// Run as production does: NATS with decentralized JWT auth and TLS (a local CA), every
    /// agent on TLS with a JWT of its own for a key of its own (limited to its own subjects),
    /// leaf nodes signing in to the hub.
    #[arg(long)]
    pub secured: bool,
    /// After the rounds, kill every nats-server the agents connect to and restart it at once
    /// (a broker restart met by the whole fleet): how long until every agent is back.
    #[arg(long)]
    pub restart_servers: bool,
    /// The agents' `nats.reconnect_spread_ms`.
    #[arg(long, default_value_t = 5_000)]
    pub spread_ms: u64,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json_out: Option<std::path::PathBuf>,
}

/// `connections-worker`: agents `first..first + count` of `total`, in a process of their own.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Server URLs; agent i connects to `urls[i % len]`.
    #[arg(long, value_delimiter = ',', required = true)]
    pub urls: Vec<String>,
    #[arg(long)]
    pub first: u32,
    #[arg(long)]
    pub count: u32,
    #[arg(long)]
    pub total: u32,
    #[arg(long)]
    pub interval_secs: u64,
    #[arg(long)]
    pub rounds: u32,
    #[arg(long)]
    pub connect_concurrency: usize,
    #[arg(long, default_value_t = 5_000)]
    pub spread_ms: u64,
    /// The NATS authority (secured runs): each agent gets a JWT of its own from it.
    #[arg(long)]
    pub authority_dir: Option<std::path::PathBuf>,
    /// The CA of the servers' certificate (secured runs).
    #[arg(long)]
    pub ca_file: Option<std::path::PathBuf>,
}

/// A worker's first line: its agents are connected.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Connected {
    connected: u64,
    failures: u64,
}

/// A worker's last line: how its agents' heartbeats went.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Beaten {
    acks_ms: Vec<f64>,
    errors: u64,
    connected_after: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct ConnectionsReport {
    pub agents: u32,
    /// nats-servers the agents connect to (1: the JetStream server itself; more: leaf nodes).
    pub agent_servers: u32,
    pub agent_processes: u32,
    pub open_files_limit: u64,
    pub connect_secs: f64,
    pub connect_failures: u64,
    pub connected_after_rounds: u64,
    /// Open descriptors of each nats-server the agents connect to, after the rounds.
    pub nats_server_open_fds: Vec<u64>,
    pub heartbeats_acked: u64,
    pub heartbeat_errors: u64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub ack_max_ms: f64,
    pub heartbeats_stored: u64,
    pub nodes_stored: u64,
    /// Peak of the nats-servers' resident memory together (hub and leaf nodes).
    pub nats_servers_rss_mib: f64,
    /// Peak of this tool's processes' resident memory together (coordinator and workers).
    pub loadtest_rss_mib: f64,
    /// `--restart-servers`: the fleet coming back.
    pub storm: Option<storm::StormFigures>,
}

/// Waits until `leaf`, a client of the leaf node at `leaf_url`, reaches a responder on the hub,
/// i.e. the leaf node connection is up and carries interest both ways.
async fn until_relayed(
    hub: &async_nats::Client,
    leaf: &async_nats::Client,
    leaf_url: &str,
) -> anyhow::Result<()> {
    let subject = format!("nerve.loadtest.relay.{}", nerve_platform::now_ms());
    let mut responder = hub.subscribe(subject.clone()).await?;
    hub.flush().await?;
    let answer = tokio::spawn({
        let hub = hub.clone();
        async move {
            while let Some(m) = responder.next().await {
                if let Some(reply) = m.reply {
                    let _ = hub.publish(reply, "ok".into()).await;
                }
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let relayed = loop {
        // "No responders" until the leaf node has the hub's interest: asked again.
        match tokio::time::timeout(
            Duration::from_secs(1),
            leaf.request(subject.clone(), "?".into()),
        )
        .await
        {
            Ok(Ok(_)) => break Ok(()),
            _ if Instant::now() > deadline => {
                break Err(anyhow::anyhow!(
                    "leaf node {leaf_url} did not relay to the hub in 30 s"
                ));
            }
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(20)).await, // poll interval
            Err(_) => {}
        }
    };
    answer.abort();
    relayed
}

pub async fn run(args: ConnectionsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.agents > 0 && args.agents_per_server > 0 && args.agents_per_process > 0,
        "nothing to run"
    );
    let agent_servers = args.agents.div_ceil(args.agents_per_server);
    let processes = args.agents.div_ceil(args.agents_per_process);
    // One descriptor per connection in a server and in a worker, plus headroom for the rest
    // (leaf node links, ClickHouse connections, files, the store).
    let limit = raise_open_files(
        u64::from(args.agents_per_server.max(args.agents_per_process)).min(u64::from(args.agents))
            + 1_000,
    )?;
    let leafnode_port = (agent_servers > 1)
        .then(nerve_platform::services::free_port)
        .transpose()?;
    let secured = args.secured.then(secured::Secured::new).transpose()?;
    let secure = |options: NatsOptions, name: &str| match &secured {
        Some(s) => s.options(options, name),
        None => Ok(options),
    };
    let target = Target {
        nats_credentials: secured.as_ref().map(|s| s.creds.clone()),
        nats_tls_ca: secured.as_ref().map(|s| s.tls.ca_file.clone()),
        ..Target::private(20_000, 200)
    };
    let hub = secure(
        NatsOptions {
            leafnode_port,
            ..NatsOptions::default()
        },
        "hub-jwt",
    )?;
    let mut services = Services::start_with(target, hub).await?;
    services.start_projectors(&Registry::new());
    let hub_pid = services.nats_pid().context("private nats-server")?;

    // The servers the agents connect to: the hub, or leaf nodes of it.
    let mut leaves = Vec::new();
    if let Some(port) = leafnode_port {
        for k in 0..agent_servers {
            let dir = services.dir().join(format!("leaf-{k}"));
            let options = secure(
                NatsOptions {
                    jetstream: false,
                    hub_leafnode_port: Some(port),
                    ..NatsOptions::default()
                },
                &format!("leaf-{k}-jwt"),
            )?;
            let leaf =
                tokio::task::spawn_blocking(move || NatsServer::start_with(&dir, None, &options))
                    .await??;
            let leaf_client = nerve_ingest::connect(
                &NatsConfig {
                    url: leaf.url.clone(),
                    ..services.config.nats.clone()
                },
                nerve_ingest::Who::Role("loadtest-relay"),
                false,
            )
            .await?;
            until_relayed(&services.client, &leaf_client, &leaf.url).await?;
            leaves.push(leaf);
        }
    }
    let (urls, agent_pids): (Vec<String>, Vec<u32>) = if leaves.is_empty() {
        (vec![services.config.nats.url.clone()], vec![hub_pid])
    } else {
        leaves.iter().map(|l| (l.url.clone(), l.pid())).unzip()
    };
    let server_pids: Vec<u32> = std::iter::once(hub_pid)
        .chain(leaves.iter().map(NatsServer::pid))
        .collect();

    // Start the workers; each connects its agents and says so.
    let started = Instant::now();
    let exe = std::env::current_exe()?;
    let mut workers = Vec::new();
    for p in 0..processes {
        let first = p * args.agents_per_process;
        let count = args.agents_per_process.min(args.agents - first);
        let mut child = tokio::process::Command::new(&exe)
            .arg("connections-worker")
            .arg(format!("--urls={}", urls.join(",")))
            .arg(format!("--first={first}"))
            .arg(format!("--count={count}"))
            .arg(format!("--total={}", args.agents))
            .arg(format!("--interval-secs={}", args.interval_secs))
            .arg(format!("--rounds={}", args.rounds))
            .arg(format!(
                "--connect-concurrency={}",
                args.connect_concurrency
            ))
            .arg(format!("--spread-ms={}", args.spread_ms))
            .args(secured.iter().flat_map(|s| {
                [
                    format!("--authority-dir={}", s.authority_dir.display()),
                    format!("--ca-file={}", s.tls.ca_file.display()),
                ]
            }))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting a connections worker")?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let lines = BufReader::new(child.stdout.take().context("worker stdout")?).lines();
        workers.push((child, stdin, lines));
    }
    let mut connect_failures = 0;
    for (_, _, lines) in &mut workers {
        let line = lines
            .next_line()
            .await?
            .context("a worker ended before connecting")?;
        let c: Connected = serde_json::from_str(&line).context("a worker's connect report")?;
        connect_failures += c.failures;
    }
    let connect_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "connections: {} agents in {processes} processes connected to {} servers in \
         {connect_secs:.1} s ({connect_failures} failed); server fds {:?}",
        args.agents,
        urls.len(),
        agent_pids.iter().map(|&p| open_fds(p)).collect::<Vec<_>>()
    );

    // One start time for all: agent k of n beats at k/n of the interval after it.
    let begin_ms = nerve_platform::now_ms() + 500;
    for (_, stdin, _) in &mut workers {
        stdin.write_all(format!("{begin_ms}\n").as_bytes()).await?;
        stdin.flush().await?;
    }
    let worker_pids: Vec<u32> = workers.iter().filter_map(|w| w.0.id()).collect();
    let (mut peak_nats_rss, mut peak_own_rss) = (0.0_f64, 0.0_f64);
    let results = {
        let reports =
            futures::future::try_join_all(workers.iter_mut().map(|(_, _, lines)| async {
                let line = lines
                    .next_line()
                    .await?
                    .context("a worker ended before reporting")?;
                anyhow::Ok(serde_json::from_str::<Beaten>(&line).context("a worker's report")?)
            }));
        tokio::pin!(reports);
        let mut sampler = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = sampler.tick() => {
                    let servers: f64 = server_pids.iter().map(|&p| rss_mib(p)).sum();
                    let own = rss_mib(std::process::id())
                        + worker_pids.iter().map(|&p| rss_mib(p)).sum::<f64>();
                    peak_nats_rss = peak_nats_rss.max(servers);
                    peak_own_rss = peak_own_rss.max(own);
                }
                done = &mut reports => break done?,
            }
        }
    };
    let server_fds: Vec<u64> = agent_pids.iter().map(|&p| open_fds(p)).collect();
    let storm = if args.restart_servers {
        tokio::task::block_in_place(|| {
            if leaves.is_empty() {
                services.restart_nats()
            } else {
                leaves.iter_mut().for_each(NatsServer::kill);
                leaves
                    .iter_mut()
                    .try_for_each(NatsServer::restart)
                    .map_err(anyhow::Error::from)
            }
        })?;
        let restarted_ms = nerve_platform::now_ms();
        eprintln!(
            "connections: {} agent-facing server(s) killed and restarted",
            urls.len()
        );
        let mut backs = Vec::new();
        for (_, stdin, lines) in &mut workers {
            stdin.write_all(b"report\n").await?;
            stdin.flush().await?;
            let line = lines
                .next_line()
                .await?
                .context("a worker ended in the storm")?;
            backs.push(serde_json::from_str::<storm::Back>(&line)?);
        }
        Some((
            storm::figures(&backs, restarted_ms, args.spread_ms, urls.len()),
            backs.iter().map(|b| b.acked_ms.len() as u64).sum::<u64>(),
        ))
    } else {
        None
    };
    for (mut child, stdin, _) in workers {
        drop(stdin);
        let status = child.wait().await?;
        anyhow::ensure!(status.success(), "a connections worker failed: {status}");
    }

    // Every acked heartbeat stored, and every node.
    let mut acks: Vec<f64> = results
        .iter()
        .flat_map(|r| r.acks_ms.iter().copied())
        .collect();
    acks.sort_by(f64::total_cmp);
    let storm_acked = storm.as_ref().map_or(0, |s| s.1);
    let acked = acks.len() as u64 + storm_acked;
    let ch = services.ch.clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    let stored = loop {
        let stored: u64 = ch
            .query(&format!("SELECT count() FROM {HEARTBEATS}"))
            .fetch_one()
            .await?;
        if stored >= acked || Instant::now() > deadline {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let nodes: u64 = ch
        .query(&format!("SELECT uniqExact(node_id) FROM {HEARTBEATS}"))
        .fetch_one()
        .await?;
    let connected: u64 = results.iter().map(|r| r.connected_after).sum();
    let report = ConnectionsReport {
        agents: args.agents,
        agent_servers: urls.len() as u32,
        agent_processes: processes,
        open_files_limit: limit,
        connect_secs,
        connect_failures,
        connected_after_rounds: connected,
        nats_server_open_fds: server_fds,
        heartbeats_acked: acked,
        heartbeat_errors: results.iter().map(|r| r.errors).sum(),
        ack_p50_ms: quantile(&acks, 0.5).unwrap_or(0.0),
        ack_p99_ms: quantile(&acks, 0.99).unwrap_or(0.0),
        ack_max_ms: acks.last().copied().unwrap_or(0.0),
        heartbeats_stored: stored,
        nodes_stored: nodes,
        nats_servers_rss_mib: peak_nats_rss,
        loadtest_rss_mib: peak_own_rss,
        storm: storm.map(|s| s.0),
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    for mut leaf in leaves {
        tokio::task::spawn_blocking(move || leaf.stop(Duration::from_secs(10))).await?;
    }
    services.stop().await?;
    anyhow::ensure!(
        report.connect_failures == 0
            && report.heartbeat_errors == 0
            && connected == u64::from(args.agents)
            && stored == acked
            && acked == u64::from(args.agents) * u64::from(args.rounds) + storm_acked
            && nodes == u64::from(args.agents)
            && report.storm.as_ref().is_none_or(|s| s.not_back == 0),
        "not every agent stayed connected and stored: see the report"
    );
    Ok(())
}

/// The worker: connects its agents, prints [`Connected`], reads the common start time (Unix ms)
/// from stdin, runs the rounds, prints [`Beaten`], and stays connected until stdin closes.
pub async fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    let failures = AtomicU64::new(0);
    let authority = args
        .authority_dir
        .as_deref()
        .map(nerve_ingest::authority::Authority::load_or_create)
        .transpose()?;
    let (authority, ca) = (authority.as_ref(), args.ca_file.clone());
    let mut clients: Vec<(u32, async_nats::Client)> =
        futures::stream::iter(args.first..args.first + args.count)
            .map(|i| {
                let nats = nerve_platform::config::NatsConfig {
                    url: args.urls[i as usize % args.urls.len()].clone(),
                    reconnect_spread_ms: args.spread_ms,
                    ..Default::default()
                };
                let (failures, ca) = (&failures, ca.clone());
                async move {
                    let id = format!("sim-{i:06}");
                    let connected = match authority {
                        Some(a) => secured::connect_enrolled(a, &id, &nats.url, ca).await,
                        None => {
                            let who = nerve_ingest::Who::Node { id: &id, key: None };
                            nerve_ingest::connect(&nats, who, false)
                                .await
                                .map_err(anyhow::Error::from)
                        }
                    };
                    match connected {
                        Ok(c) => Some((i, c)),
                        Err(e) => {
                            if failures.fetch_add(1, Ordering::Relaxed) < 5 {
                                eprintln!("connections-worker: agent {i}: {e}");
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
    clients.sort_by_key(|c| c.0);
    let connected = Connected {
        connected: clients.len() as u64,
        failures: failures.load(Ordering::Relaxed),
    };
    println!("{}", serde_json::to_string(&connected)?);

    let line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await??;
    let begin_ms: i64 = line
        .trim()
        .parse()
        .context("start time from the coordinator")?;
    let begin = tokio::time::Instant::now()
        + Duration::from_millis(begin_ms.saturating_sub(nerve_platform::now_ms()).max(0) as u64);

    let interval = Duration::from_secs(args.interval_secs.max(1));
    let errors = Arc::new(AtomicU64::new(0));
    let total = args.total.max(1);
    let mut agents = Vec::with_capacity(clients.len());
    for (i, client) in &clients {
        let (id, client) = (format!("sim-{i:06}"), client.clone());
        let errors = errors.clone();
        let first = begin + interval * *i / total;
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
                    nerve_ingest::publish(&js, nerve_schemas::subjects::heartbeat(&id), &hb)
                        .await?;
                    anyhow::Ok(())
                }
                .await;
                match sent {
                    Ok(()) => mine.push(t.elapsed().as_secs_f64() * 1000.0),
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("connections-worker: {id}: {e}");
                        }
                    }
                }
            }
            mine
        }));
    }
    let mut acks_ms = Vec::new();
    for agent in futures::future::join_all(agents).await {
        acks_ms.extend(agent?);
    }
    let beaten = Beaten {
        acks_ms,
        errors: errors.load(Ordering::Relaxed),
        connected_after: clients
            .iter()
            .filter(|(_, c)| c.connection_state() == async_nats::connection::State::Connected)
            .count() as u64,
    };
    println!("{}", serde_json::to_string(&beaten)?);
    // Watched from now on: the coordinator may restart the servers and ask how it went.
    let watcher = storm::watch(clients.clone());
    let line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await??;
    if line.trim() == "report" {
        let back = watcher.await?;
        println!("{}", serde_json::to_string(&back)?);
    }
    // Connected until the coordinator has counted the servers' descriptors and closes stdin.
    tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
        .await??;
    Ok(())
}
