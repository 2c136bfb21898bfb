//! `nerve-loadtest api`: the REST API under many concurrent users, driven by goose. Fills a
//! private system with N simulated nodes (as `nodes-page` does), optionally keeps the whole fleet
//! heartbeating through the real projectors meanwhile, serves the real HTTP app on loopback and
//! lets goose users browse: the fleet list (first page, deep pages, search, status, cluster and
//! label filters, sort by CPU), node detail of random nodes and the fleet summary, with a think
//! time between requests.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use goose::config::GooseConfiguration;
use goose::prelude::*;
use nerve_platform::metrics::Registry;

use crate::services::{Services, Target};

#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// Simulated nodes.
    #[arg(long, default_value_t = 100_000)]
    pub nodes: u32,
    /// Concurrent goose users.
    #[arg(long, default_value_t = 200)]
    pub users: usize,
    /// Users started per second.
    #[arg(long, default_value_t = 50)]
    pub hatch_rate: usize,
    /// Seconds measured after every user has started.
    #[arg(long, default_value_t = 60)]
    pub run_secs: u64,
    /// Each user's think time between requests: uniformly between these (ms); 0 and 0 for a
    /// closed loop that measures the saturation throughput.
    #[arg(long, default_value_t = 1000)]
    pub wait_min_ms: u64,
    #[arg(long, default_value_t = 3000)]
    pub wait_max_ms: u64,
    /// Keep every node heartbeating at this interval while users browse (0: a still fleet).
    #[arg(long, default_value_t = 30.0)]
    pub heartbeat_interval_secs: f64,
    /// The API's `api.fleet_snapshot_max_age_ms` (default: the configuration's default).
    #[arg(long)]
    pub snapshot_max_age_ms: Option<u64>,
    /// GPUs per simulated node (0: CPU-only nodes, to see what the per-GPU data costs).
    #[arg(long, default_value_t = 8)]
    pub gpus_per_node: u32,
    /// Serve the API and run the goose users on the fleet's runtime (one process, as `nerve
    /// dev` runs), instead of a runtime each (the API as its own `nerve serve` process, the
    /// users as clients elsewhere).
    #[arg(long)]
    pub shared_runtime: bool,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json_out: Option<std::path::PathBuf>,
}

/// Latency of one kind of request, from goose's metrics.
#[derive(Debug, serde::Serialize)]
pub struct RequestTiming {
    pub name: String,
    pub requests: usize,
    pub failures: usize,
    pub p50_ms: usize,
    pub p99_ms: usize,
    pub max_ms: usize,
}

#[derive(Debug, serde::Serialize)]
pub struct ApiReport {
    pub nodes: u32,
    pub users: usize,
    pub wait_ms: (u64, u64),
    pub heartbeats_per_sec: f64,
    pub measured_secs: usize,
    pub requests_per_sec: f64,
    pub all: RequestTiming,
    pub by_request: Vec<RequestTiming>,
}

/// How many nodes the users pick from (goose transactions are plain functions).
static NODES: AtomicU32 = AtomicU32::new(1);
/// The viewer token every user calls the API with (auth is on, as in production).
static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Each user's first transaction: every later request carries the token.
async fn authenticate(user: &mut GooseUser) -> TransactionResult {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = format!("Bearer {}", TOKEN.get().map_or("", String::as_str));
    headers.insert(
        reqwest::header::AUTHORIZATION,
        value.parse().expect("a token is a header value"),
    );
    user.set_client_builder(reqwest::Client::builder().default_headers(headers))
        .await?;
    Ok(())
}
static DRAW: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);

/// A pseudo-random number below `n` (splitmix64 over a shared counter).
fn below(n: u64) -> u64 {
    let mut z = DRAW.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) % n.max(1)
}

fn random_node() -> u64 {
    below(u64::from(NODES.load(Ordering::Relaxed)))
}

async fn first_page(user: &mut GooseUser) -> TransactionResult {
    user.get_named("/api/v1/nodes?limit=50", "list: first page")
        .await?;
    Ok(())
}

async fn deep_page(user: &mut GooseUser) -> TransactionResult {
    let offset = random_node() / 50 * 50;
    let path = format!("/api/v1/nodes?limit=50&offset={offset}");
    user.get_named(&path, "list: random page").await?;
    Ok(())
}

async fn search(user: &mut GooseUser) -> TransactionResult {
    // Four digits of a hostname: matches about ten nodes per 100,000.
    let path = format!("/api/v1/nodes?limit=50&q=host-{:04}", random_node() / 100);
    user.get_named(&path, "list: search").await?;
    Ok(())
}

async fn offline(user: &mut GooseUser) -> TransactionResult {
    user.get_named("/api/v1/nodes?limit=50&status=offline", "list: offline")
        .await?;
    Ok(())
}

async fn in_cluster(user: &mut GooseUser) -> TransactionResult {
    let pool = below(u64::from(crate::nodes_page::POOLS));
    let path = format!("/api/v1/nodes?limit=50&cluster=pool-{pool}");
    user.get_named(&path, "list: cluster").await?;
    Ok(())
}

async fn in_rack(user: &mut GooseUser) -> TransactionResult {
    let rack = random_node() / u64::from(crate::nodes_page::RACK_SIZE);
    let path = format!("/api/v1/nodes?limit=50&label=rack%3Dr{rack}");
    user.get_named(&path, "list: label").await?;
    Ok(())
}

async fn busiest(user: &mut GooseUser) -> TransactionResult {
    user.get_named(
        "/api/v1/nodes?limit=50&sort=cpu&order=desc",
        "list: sort by cpu",
    )
    .await?;
    Ok(())
}

async fn node_detail(user: &mut GooseUser) -> TransactionResult {
    let path = format!("/api/v1/nodes/sim-{:06}", random_node());
    user.get_named(&path, "node detail").await?;
    Ok(())
}

async fn summary(user: &mut GooseUser) -> TransactionResult {
    user.get_named("/api/v1/fleet/summary", "fleet summary")
        .await?;
    Ok(())
}

/// p50, p99 and max from goose's response-time histogram (ms; exact to 100 ms, then rounded
/// to 10 ms up to 500 ms, as goose stores them).
fn percentiles(
    times: &std::collections::BTreeMap<usize, usize>,
    max: usize,
) -> (usize, usize, usize) {
    let total: usize = times.values().sum();
    let at = |p: f64| {
        let rank = ((total as f64) * p).ceil().max(1.0) as usize;
        let mut seen = 0;
        for (&ms, &n) in times {
            seen += n;
            if seen >= rank {
                return ms;
            }
        }
        max
    };
    (at(0.50), at(0.99), max)
}

/// Runs `work` on a new thread with a two-worker runtime of its own, so that CPU work on the
/// caller's runtime (the simulated fleet, the projectors) cannot hold its tasks; the handle
/// gives its result.
fn on_own_runtime<T, F>(
    name: &str,
    work: impl FnOnce() -> F + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<T>>>
where
    T: Send + 'static,
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(format!("{name}-worker"))
        .enable_all()
        .build()?;
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = done.send(runtime.block_on(work()));
        })?;
    let name = name.to_owned();
    Ok(tokio::spawn(async move {
        result
            .await
            .with_context(|| format!("the {name} runtime's thread ended without a result"))?
    }))
}

pub async fn run(args: ApiArgs) -> anyhow::Result<()> {
    crate::sim::GPUS_PER_NODE.store(args.gpus_per_node, Ordering::Relaxed);
    let mut services = Services::start(Target::private(20_000, 200)).await?;
    let metrics = Registry::new();
    services.start_projectors(&metrics);
    let started = Instant::now();
    crate::nodes_page::fill(&services, args.nodes).await?;
    eprintln!(
        "api: {} nodes projected in {:.1} s",
        args.nodes,
        started.elapsed().as_secs_f64()
    );
    NODES.store(args.nodes, Ordering::Relaxed);

    let mut api_config = services.config.api.clone();
    if let Some(ms) = args.snapshot_max_age_ms {
        api_config.fleet_snapshot_max_age_ms = ms;
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let (ch_config, nats) = (services.config.clickhouse.clone(), services.client.clone());
    // A viewer token, issued through the event log like any other; the API instance below
    // reads it from the auth stream at start.
    let token = crate::services::issue_token(&ch_config, &nats, &api_config, "viewer").await?;
    let _ = TOKEN.set(token);
    let serve = {
        let stop = stop.clone();
        move |listener: std::net::TcpListener| async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            // A ClickHouse client of the API's own: its connections live on the API's runtime.
            let ch = nerve_platform::clickhouse::client(&ch_config);
            let state =
                nerve_api::AppState::new(ch, Some(nats), api_config, Default::default(), metrics);
            // Serve once the tokens are loaded, as `nerve serve` does (before, a call is 503).
            state.keyring().ready().await;
            let site = tempfile::tempdir()?; // the API only: no bundle needed
            let app = nerve_ui::server::app(state, site.path());
            nerve_api::serve(listener, app, stop).await?;
            anyhow::Ok(())
        }
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let host = format!("http://{}", listener.local_addr()?);
    let server = if args.shared_runtime {
        tokio::spawn(serve(listener))
    } else {
        on_own_runtime("api", move || serve(listener))?
    };

    // The fleet keeps beating while users browse: ramp-up plus the measured time, plus slack.
    let ramp_secs = (args.users / args.hatch_rate.max(1)) as u64 + 1;
    let heartbeats_per_sec = if args.heartbeat_interval_secs > 0.0 {
        f64::from(args.nodes) / args.heartbeat_interval_secs
    } else {
        0.0
    };
    let fleet = (heartbeats_per_sec > 0.0).then(|| {
        let sim = crate::Args {
            nodes: args.nodes,
            interval_secs: args.heartbeat_interval_secs,
            rate: None,
            duration_secs: ramp_secs + args.run_secs + 5,
            connections: 4,
            max_inflight: 2048,
            probes_per_sec: 0.0,
            nats_url: None,
            clickhouse_url: None,
            database: None,
            batch_max_events: 20_000,
            batch_max_wait_ms: 200,
            json_out: None,
            plot: None,
            telemetry_max_bytes: None,
            raw_first: false,
            raw_events: 0,
        };
        let config = services.config.clone();
        tokio::spawn(async move {
            crate::sim::run(&sim, &config, heartbeats_per_sec, Default::default()).await
        })
    });

    let mut config = GooseConfiguration::default();
    config.host = host;
    config.users = Some(args.users);
    config.hatch_rate = Some(args.hatch_rate.to_string());
    config.run_time = format!("{}s", args.run_secs);
    config.no_telnet = true; // no fixed ports
    config.no_websocket = true;
    config.quiet = 1;
    config.no_print_metrics = true;
    let wait = (
        Duration::from_millis(args.wait_min_ms),
        Duration::from_millis(args.wait_max_ms.max(args.wait_min_ms)),
    );
    let mut operator = scenario!("operator")
        .register_transaction(transaction!(authenticate).set_on_start())
        .register_transaction(transaction!(first_page).set_weight(3)?)
        .register_transaction(transaction!(deep_page).set_weight(1)?)
        .register_transaction(transaction!(search).set_weight(2)?)
        .register_transaction(transaction!(offline).set_weight(1)?)
        .register_transaction(transaction!(in_cluster).set_weight(1)?)
        .register_transaction(transaction!(in_rack).set_weight(1)?)
        .register_transaction(transaction!(busiest).set_weight(1)?)
        .register_transaction(transaction!(node_detail).set_weight(4)?)
        .register_transaction(transaction!(summary).set_weight(1)?);
    if !wait.1.is_zero() {
        operator = operator.set_wait_time(wait.0, wait.1)?;
    }
    let attack = GooseAttack::initialize_with_config(config)?.register_scenario(operator);
    let goose = if args.shared_runtime {
        attack.execute().await.context("goose")?
    } else {
        on_own_runtime("goose", move || async move { Ok(attack.execute().await?) })?
            .await
            .context("goose")??
    };

    stop.cancel();
    server.await.context("api server")??;
    if let Some(fleet) = fleet {
        let published = fleet.await??;
        eprintln!(
            "api: the fleet published {} heartbeats meanwhile ({} errors)",
            published.acked, published.errors
        );
    }

    let mut by_request = Vec::new();
    let mut all_times = std::collections::BTreeMap::new();
    let (mut all_fail, mut all_max) = (0, 0);
    for (_, m) in goose.requests.iter() {
        let d = &m.raw_data;
        let (p50, p99, max) = percentiles(&d.times, d.maximum_time);
        for (&ms, &n) in &d.times {
            *all_times.entry(ms).or_insert(0) += n;
        }
        all_fail += m.fail_count;
        all_max = all_max.max(d.maximum_time);
        by_request.push(RequestTiming {
            name: m.path.clone(),
            requests: d.counter,
            failures: m.fail_count,
            p50_ms: p50,
            p99_ms: p99,
            max_ms: max,
        });
    }
    by_request.sort_by(|a, b| a.name.cmp(&b.name));
    let total: usize = by_request.iter().map(|r| r.requests).sum();
    let (p50, p99, max) = percentiles(&all_times, all_max);
    let measured_secs = goose.duration.max(1);
    let report = ApiReport {
        nodes: args.nodes,
        users: args.users,
        wait_ms: (args.wait_min_ms, args.wait_max_ms),
        heartbeats_per_sec,
        measured_secs,
        requests_per_sec: total as f64 / measured_secs as f64,
        all: RequestTiming {
            name: "all".into(),
            requests: total,
            failures: all_fail,
            p50_ms: p50,
            p99_ms: p99,
            max_ms: max,
        },
        by_request,
    };
    println!(
        "{} nodes, {} users, think time {}–{} ms, fleet heartbeats {:.0}/s; {} s measured, {:.1} requests/s",
        report.nodes,
        report.users,
        args.wait_min_ms,
        args.wait_max_ms,
        report.heartbeats_per_sec,
        report.measured_secs,
        report.requests_per_sec
    );
    println!(
        "{:<20} {:>9} {:>6} {:>7} {:>7} {:>7}",
        "request", "count", "fail", "p50 ms", "p99 ms", "max ms"
    );
    for t in report.by_request.iter().chain([&report.all]) {
        println!(
            "{:<20} {:>9} {:>6} {:>7} {:>7} {:>7}",
            t.name, t.requests, t.failures, t.p50_ms, t.p99_ms, t.max_ms
        );
    }
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    services.stop().await?;
    anyhow::ensure!(all_fail == 0, "{all_fail} requests failed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_walk_the_histogram() {
        let times = std::collections::BTreeMap::from([(5, 50), (8, 49), (120, 1)]);
        assert_eq!(percentiles(&times, 123), (5, 8, 123));
        let times = std::collections::BTreeMap::from([(5, 98), (120, 2)]);
        assert_eq!(percentiles(&times, 125), (5, 120, 125));
        assert!(below(10) < 10);
    }
}
