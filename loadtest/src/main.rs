//! `nerve-loadtest`: a fleet simulator and end-to-end benchmark. N simulated nodes (sharing a few
//! NATS connections) publish real `HeartbeatRecorded` events at a set rate with pipelined acks;
//! the projectors fold them into ClickHouse; the tool reports the sustained end-to-end rate,
//! whether every acked event arrived (exact count), and publish → queryable latency measured with
//! probe events whose arrival is polled in ClickHouse.
//!
//! By default it starts a private nats-server, ClickHouse and the projectors (in this process);
//! `--nats-url`/`--clickhouse-url` point it at a running system instead.

mod alerts_eval;
mod api_load;
mod auth_check;
mod bridge;
mod connections;
mod cpu;
mod drill;
mod enroll;
mod history;
mod live_lag;
mod nodes_page;
mod plot;
mod probe;
mod raw;
mod rebuild;
mod remediation;
mod services;
mod sim;
mod tasks_fanout;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use nerve_platform::metrics::Registry;
use nerve_projections::heartbeats::HEARTBEATS;

/// mimalloc, as `nerve`'s control-plane roles use: per-event allocations are a large share of
/// the projectors' and the simulator's work.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "nerve-loadtest", about = "Simulated fleets → Nerve benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Heartbeats at a set rate, end to end: throughput, loss, publish→queryable latency.
    Ingest(Args),
    /// N simulated nodes; server-side latency of the fleet list (API and /nodes page), and of
    /// the summary and node detail at a past time over generated history.
    NodesPage(nodes_page::NodesPageArgs),
    /// One task fanned out to N simulated nodes: time until every result is in the ledger.
    Tasks(tasks_fanout::TasksArgs),
    /// N simulated nodes: rule evaluation latency, and a mass firing end to end.
    Alerts(alerts_eval::AlertsArgs),
    /// N simulated nodes; the REST API under concurrent goose users (list, detail, summary).
    Api(api_load::ApiArgs),
    /// N simulated agents, one NATS connection each, heartbeating through to ClickHouse.
    Connections(connections::ConnectionsArgs),
    /// Fault drills under load: a JetStream leader, a ClickHouse replica or all of ClickHouse
    /// killed and restarted, R3 against R1 streams, a broker restart met by N agents.
    Drill(drill::DrillArgs),
    /// N simulated nodes, the remediation engine: XID → cordon latency, and a mass event held
    /// by the circuit breaker.
    Remediation(remediation::RemediationArgs),
    /// The raw limits: JetStream pipelined publish and ClickHouse bulk insert, same payloads.
    Raw(raw::RawArgs),
    /// N 8-GPU heartbeats archived, then replayed into shadow tables from the stream and from
    /// the archive: archive throughput and bytes per event, replay events per second; then a
    /// rebuild while live heartbeats arrive: the lag they see.
    Rebuild(rebuild::RebuildArgs),
    /// The Kafka bridge: N heartbeats mirrored from JetStream into a Kafka-protocol broker
    /// (Tansu), each acked after its delivery report.
    Bridge(bridge::BridgeArgs),
    /// What checking an operator token costs (a keyring of N tokens, no services).
    Auth(auth_check::AuthArgs),
    /// N nodes enrolling at once over HTTPS on NATS with JWT auth and TLS, then connecting
    /// with their own credentials.
    Enroll(enroll::EnrollArgs),
    /// One process's share of `connections` (started by it).
    #[command(hide = true)]
    ConnectionsWorker(connections::WorkerArgs),
}

/// `ingest` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Simulated nodes.
    #[arg(long, default_value_t = 6000)]
    pub nodes: u32,
    /// Each node's heartbeat interval; the offered rate is nodes / interval.
    #[arg(long, default_value_t = 30.0)]
    pub interval_secs: f64,
    /// Offered events per second in total (overrides --interval-secs).
    #[arg(long)]
    pub rate: Option<f64>,
    /// How long to publish.
    #[arg(long, default_value_t = 60)]
    pub duration_secs: u64,
    /// NATS connections shared by the simulated nodes.
    #[arg(long, default_value_t = 4)]
    pub connections: u32,
    /// Unacknowledged publishes allowed per connection.
    #[arg(long, default_value_t = 2048)]
    pub max_inflight: usize,
    /// Latency probes per second.
    #[arg(long, default_value_t = 10.0)]
    pub probes_per_sec: f64,
    /// Use this NATS instead of starting one.
    #[arg(long)]
    pub nats_url: Option<String>,
    /// Use this ClickHouse instead of starting one (the projectors must be running elsewhere
    /// when --nats-url is given too).
    #[arg(long)]
    pub clickhouse_url: Option<String>,
    /// Database for the run (default: a fresh `loadtest_<time>`).
    #[arg(long)]
    pub database: Option<String>,
    /// Projector batch size (in-process projectors only).
    #[arg(long, default_value_t = 20_000)]
    pub batch_max_events: usize,
    /// Projector batch wait in ms (in-process projectors only).
    #[arg(long, default_value_t = 200)]
    pub batch_max_wait_ms: u64,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json_out: Option<std::path::PathBuf>,
    /// Draw throughput, lag and latency over the run as an SVG here.
    #[arg(long)]
    pub plot: Option<std::path::PathBuf>,
    /// Cap the telemetry stream at this many bytes (oldest dropped), so a long run fits the
    /// disk; the projectors must keep up or events are lost (and counted as lost).
    #[arg(long)]
    pub telemetry_max_bytes: Option<i64>,
    /// Before the load, measure the raw limits on the same servers with the same payloads, as
    /// `raw` does (scratch stream and table), and report end to end as a share of them.
    #[arg(long)]
    pub raw_first: bool,
    /// Events published and rows inserted by --raw-first.
    #[arg(long, default_value_t = 600_000)]
    pub raw_events: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    nerve_platform::telemetry::init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Ingest(args) => run(args).await,
            Command::NodesPage(args) => nodes_page::run(args).await,
            Command::Tasks(args) => tasks_fanout::run(args).await,
            Command::Alerts(args) => alerts_eval::run(args).await,
            Command::Raw(args) => raw::run(args).await,
            Command::Remediation(args) => remediation::run(args).await,
            Command::Drill(args) => drill::run(args).await,
            Command::Rebuild(args) => rebuild::run(args).await,
            Command::Auth(args) => auth_check::run(args),
            Command::Enroll(args) => enroll::run(args).await,
            Command::Bridge(args) => bridge::run(args).await,
            Command::Api(args) => api_load::run(args).await,
            Command::Connections(args) => connections::run(args).await,
            Command::ConnectionsWorker(args) => connections::worker(args).await,
        }
    })
}

async fn run(args: Args) -> anyhow::Result<()> {
    let rate = args
        .rate
        .unwrap_or(f64::from(args.nodes) / args.interval_secs.max(0.001));
    anyhow::ensure!(rate > 0.0, "the offered rate must be positive");
    let mut services = services::Services::start(services::Target {
        nats_url: args.nats_url.as_deref(),
        clickhouse_url: args.clickhouse_url.as_deref(),
        database: args.database.as_deref(),
        batch_max_events: args.batch_max_events,
        batch_max_wait_ms: args.batch_max_wait_ms,
        nats_credentials: None,
        nats_tls_ca: None,
    })
    .await?;
    let raw = if args.raw_first {
        let raw_args = raw::RawArgs {
            events: args.raw_events,
            rows: args.raw_events,
            nodes: args.nodes,
            connections: args.connections,
            max_inflight: args.max_inflight,
            batch: args.batch_max_events,
            json_out: None,
        };
        let report = raw::measure(&services, &raw_args).await?;
        report.print(raw_args.batch);
        Some(report)
    } else {
        None
    };
    // Projectors in this process unless both services are external.
    let registry = Registry::new();
    let in_process = args.nats_url.is_none() || args.clickhouse_url.is_none();
    if in_process {
        services.start_projectors(&registry);
    }
    // Counted over the whole run, the raw phase apart (it writes no batches).
    let heartbeat_batches =
        nerve_projections::runner::batches_written(&registry, nerve_projections::heartbeats::NAME);
    let (js, ch) = (services.js.clone(), services.ch.clone());
    if let Some(max_bytes) = args.telemetry_max_bytes {
        let mut stream = js.get_stream(nerve_ingest::TELEMETRY_STREAM).await?;
        let mut config = stream.info().await?.config.clone();
        config.max_bytes = max_bytes;
        js.update_stream(config).await?;
    }
    let baseline: u64 = ch
        .query(&format!("SELECT count() FROM {HEARTBEATS}"))
        .fetch_one()
        .await?;

    eprintln!(
        "loadtest: {} nodes, offered {rate:.0} events/s for {} s over {} connections",
        args.nodes, args.duration_secs, args.connections
    );
    let started = Instant::now();
    let mut prober = probe::Prober::start(
        js.clone(),
        ch.clone(),
        args.probes_per_sec,
        Duration::from_secs(args.duration_secs),
    );
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let cpu = services.cpu();
    let cpu_at_start = cpu.read();
    let timeline = timeline(
        ch.clone(),
        baseline,
        acked.clone(),
        started,
        cpu,
        cpu_at_start,
    );
    let published = sim::run(&args, &services.config, rate, acked).await?;
    let publish_secs = started.elapsed().as_secs_f64();

    // Wait until every acked event is queryable (or the projectors stall).
    let expected = baseline + published.acked + prober.published_count().await?;
    let mut stored = 0;
    let mut last_progress = Instant::now();
    loop {
        let now = stored_rows(&ch).await?;
        if now != stored {
            last_progress = Instant::now();
        }
        stored = now;
        if stored >= expected || last_progress.elapsed() > Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained_secs = started.elapsed().as_secs_f64();
    let cpu_used = cpu.read().since(&cpu_at_start);
    let latency = prober.finish().await?;
    timeline.1.cancel();
    let samples = timeline.0.await??;
    // One query, so no row can land between the two counts.
    let (stored, unique): (u64, u64) = ch
        .query(&format!(
            "SELECT count(), uniqExact(event_id) FROM {HEARTBEATS}"
        ))
        .fetch_one()
        .await?;

    let mut report = Report {
        nodes: args.nodes,
        offered_rate: rate,
        duration_secs: args.duration_secs,
        connections: args.connections,
        published: published.acked,
        publish_errors: published.errors,
        publish_rate: published.acked as f64 / publish_secs,
        stored: stored - baseline - latency_probes_stored(&latency),
        duplicates: stored - unique,
        lost: expected.saturating_sub(stored),
        end_to_end_rate: (stored - baseline - latency_probes_stored(&latency)) as f64
            / drained_secs,
        drain_after_publish_secs: drained_secs - publish_secs,
        latency_p50_ms: latency.p50_ms,
        latency_p99_ms: latency.p99_ms,
        latency_max_ms: latency.max_ms,
        probes: latency.probes,
        probes_missing: latency.missing,
        timeline: samples,
        cpu_per_event: cpu_used.per_event_us(stored - baseline),
        ratio_to_raw_jetstream: None,
        raw,
        heartbeat_batches: in_process.then(|| heartbeat_batches.get()),
    };
    report.ratio_to_raw_jetstream = report
        .raw
        .as_ref()
        .map(|r| report.end_to_end_rate / r.jetstream_rate);
    report.print();
    if let Some(path) = &args.plot {
        let title = format!(
            "nerve-loadtest ingest: {} nodes, offered {rate:.0}/s for {} s; end to end {:.0}/s, p99 {:.0} ms",
            args.nodes, args.duration_secs, report.end_to_end_rate, report.latency_p99_ms
        );
        std::fs::write(path, plot::svg(&title, &report.timeline, &latency.points))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }

    services.stop().await?;
    anyhow::ensure!(
        report.lost == 0,
        "{} acked events never arrived",
        report.lost
    );
    anyhow::ensure!(
        report.duplicates == 0,
        "{} duplicate rows",
        report.duplicates
    );
    Ok(())
}

/// Samples acked and stored counts once a second until cancelled.
fn timeline(
    ch: clickhouse::Client,
    baseline: u64,
    acked: std::sync::Arc<std::sync::atomic::AtomicU64>,
    started: Instant,
    cpu: cpu::Processes,
    cpu_at_start: cpu::Cpu,
) -> (
    tokio::task::JoinHandle<anyhow::Result<Vec<plot::Sample>>>,
    tokio_util::sync::CancellationToken,
) {
    let stop = tokio_util::sync::CancellationToken::new();
    let task = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return Ok(samples),
                    _ = tick.tick() => {}
                }
                let acked = acked.load(std::sync::atomic::Ordering::Relaxed);
                let stored = stored_rows(&ch).await?;
                samples.push(plot::Sample {
                    t: started.elapsed().as_secs_f64(),
                    acked,
                    stored: stored.saturating_sub(baseline),
                    cpu: cpu.read().since(&cpu_at_start),
                });
            }
        })
    };
    (task, stop)
}

/// Rows in `heartbeats`, from the parts' metadata: ClickHouse 18.16 answers `count()` by reading
/// a column of every part, a cost that grows with the run and lands on the system measured.
async fn stored_rows(ch: &clickhouse::Client) -> clickhouse::error::Result<u64> {
    ch.query(
        "SELECT sum(rows) FROM system.parts \
         WHERE database = currentDatabase() AND table = 'heartbeats' AND active",
    )
    .fetch_one()
    .await
}

fn latency_probes_stored(l: &probe::Latency) -> u64 {
    (l.probes - l.missing) as u64
}

/// What a run measured (probe events excluded from the counts and rates).
#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub nodes: u32,
    pub offered_rate: f64,
    pub duration_secs: u64,
    pub connections: u32,
    pub published: u64,
    pub publish_errors: u64,
    pub publish_rate: f64,
    pub stored: u64,
    pub duplicates: u64,
    pub lost: u64,
    pub end_to_end_rate: f64,
    pub drain_after_publish_secs: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    pub probes: usize,
    pub probes_missing: usize,
    /// Acked and stored counts, and the CPU used so far, once a second.
    pub timeline: Vec<plot::Sample>,
    /// CPU per stored event from the first publish until every event was stored (probes
    /// included), by process.
    pub cpu_per_event: cpu::CpuPerEvent,
    /// The raw limits measured first in the same run (`--raw-first`).
    pub raw: Option<raw::RawReport>,
    /// End-to-end rate ÷ raw JetStream rate.
    pub ratio_to_raw_jetstream: Option<f64>,
    /// Batches the heartbeat projector wrote (one `heartbeats` insert each; in-process
    /// projectors only).
    pub heartbeat_batches: Option<u64>,
}

impl Report {
    fn print(&self) {
        println!("nodes                      {}", self.nodes);
        println!(
            "offered rate               {:.0} events/s",
            self.offered_rate
        );
        println!("duration                   {} s", self.duration_secs);
        println!("published (acked)          {}", self.published);
        println!("publish errors             {}", self.publish_errors);
        println!(
            "publish rate               {:.0} events/s",
            self.publish_rate
        );
        println!("stored in ClickHouse       {}", self.stored);
        println!(
            "lost / duplicate rows      {} / {}",
            self.lost, self.duplicates
        );
        println!(
            "end-to-end rate            {:.0} events/s",
            self.end_to_end_rate
        );
        println!(
            "drain after publishing     {:.2} s",
            self.drain_after_publish_secs
        );
        println!(
            "publish→queryable          p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} probes, {} missing)",
            self.latency_p50_ms,
            self.latency_p99_ms,
            self.latency_max_ms,
            self.probes,
            self.probes_missing
        );
        if let Some(batches) = self.heartbeat_batches {
            println!(
                "heartbeat batches          {batches} (mean {:.0} events)",
                self.stored as f64 / batches.max(1) as f64
            );
        }
        println!("CPU per event              {}", self.cpu_per_event);
        if let (Some(raw), Some(ratio)) = (&self.raw, self.ratio_to_raw_jetstream) {
            println!(
                "end to end ÷ raw JetStream {:.0} / {:.0} = {ratio:.2}",
                self.end_to_end_rate, raw.jetstream_rate
            );
        }
    }
}
