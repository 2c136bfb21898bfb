//! `nerve-loadtest rebuild`: what keeping and replaying the log costs. N simulated 8-GPU
//! heartbeats are published to the telemetry stream; then the archiver seals them (catching
//! up, as after a restart: throughput, bytes per event); then `heartbeats` and `node_state` are
//! rebuilt into shadow tables from the stream and again from the archive (events per second;
//! no live projector runs, so each is the fold alone). Last, with the live projectors running
//! and heartbeats still arriving, the telemetry projection is rebuilt and cut over, and a probe
//! times publish → queryable throughout ([`crate::live_lag`]).

use std::time::{Duration, Instant};

use nerve_ingest::archive::{self, Archive};
use nerve_platform::metrics::Registry;
use nerve_projections::replay::{self, Options};
use tokio_util::sync::CancellationToken;

use crate::services::{Services, Target};

#[derive(Debug, Clone, clap::Args)]
pub struct RebuildArgs {
    /// Heartbeats published, then archived and replayed.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Simulated nodes the heartbeats cycle through.
    #[arg(long, default_value_t = 6000)]
    pub nodes: u32,
    /// NATS connections publishing in parallel.
    #[arg(long, default_value_t = 4)]
    pub connections: u32,
    /// Events per shadow insert.
    #[arg(long, default_value_t = 20_000)]
    pub batch: usize,
    /// Heartbeats a second arriving while the last rebuild runs with the live projectors
    /// (0: no live run).
    #[arg(long, default_value_t = 2000)]
    pub live_rate: u32,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json_out: Option<std::path::PathBuf>,
}

/// What a run measured.
#[derive(Debug, Default, serde::Serialize)]
pub struct RebuildReport {
    pub events: u64,
    pub archive_files: usize,
    pub archive_secs: f64,
    pub archive_bytes: u64,
    pub archive_bytes_per_event: f64,
    pub payload_bytes: usize,
    /// (source, events folded, seconds, events per second)
    pub replays: Vec<(String, u64, f64, f64)>,
    /// The rebuild with live projectors and heartbeats arriving: how long the live projector
    /// was held for the cutover, and publish → queryable of a probe heartbeat (ms).
    pub live: Option<LiveReport>,
}

/// A rebuild while the system runs.
#[derive(Debug, Default, serde::Serialize)]
pub struct LiveReport {
    pub rate: u32,
    pub rebuild_secs: f64,
    pub held_secs: f64,
    pub probes: usize,
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
    pub lag_max_ms: f64,
    pub heartbeat_bytes_per_row: f64,
}

pub async fn run(args: RebuildArgs) -> anyhow::Result<()> {
    let mut services = Services::start(Target::private(args.batch, 200)).await?;
    let conns = args.connections.max(1);
    let started = Instant::now();
    let (events, errors) = crate::raw::publish_spread(
        &services,
        conns,
        args.nodes,
        args.events,
        2048,
        nerve_schemas::subjects::heartbeat,
    )
    .await?;
    anyhow::ensure!(errors == 0, "{errors} publishes failed");
    let mut report = RebuildReport::default();
    println!(
        "published {events} heartbeats ({} GPUs each) in {:.1} s",
        crate::sim::GPUS_PER_NODE.load(std::sync::atomic::Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );

    // The archiver catching up: 1 s files, sealed as soon as the next second's event comes.
    let root = services.dir().join("archive");
    let archive = Archive::open(&root);
    let cancel = CancellationToken::new();
    let sealing = archive::Sealing {
        span: Duration::from_secs(1),
        grace: Duration::ZERO,
    };
    let stream = nerve_ingest::TELEMETRY_STREAM.to_owned();
    let started = Instant::now();
    let archiver = tokio::spawn(archive::run(
        services.js.clone(),
        archive.clone(),
        vec![stream.clone()],
        sealing,
        Registry::new(),
        cancel.clone(),
    ));
    let files = loop {
        let files = archive.manifest(&stream)?;
        if files.last().map(|f| f.last_seq) == Some(events) {
            break files;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let archive_secs = started.elapsed().as_secs_f64();
    cancel.cancel();
    archiver.await?;
    let bytes: u64 = files.iter().map(|f| f.bytes).sum();
    let payload = nerve_schemas::encode(&crate::sim::heartbeat("sim-000000", 0, 0))?.len();
    report.events = events;
    report.archive_files = files.len();
    report.archive_secs = archive_secs;
    report.archive_bytes = bytes;
    report.archive_bytes_per_event = bytes as f64 / events as f64;
    report.payload_bytes = payload;
    println!(
        "archive: {events} events in {} files, {:.1} s ({:.0} events/s, last file sealed ≤ 1 s after the last event), {bytes} bytes: {:.1} bytes/event (event payload {payload} bytes)",
        files.len(),
        archive_secs,
        events as f64 / archive_secs,
        bytes as f64 / events as f64
    );

    for (what, archive) in [("stream", None), ("archive", Some(archive))] {
        let options = Options {
            only: vec!["heartbeats".into()],
            check_only: true,
            batch_events: args.batch,
            archive,
            ..Options::default()
        };
        let started = Instant::now();
        let reports =
            replay::rebuild(&services.js, &services.config.clickhouse, &options, &|_| {}).await?;
        let secs = started.elapsed().as_secs_f64();
        let folded: u64 = reports.iter().map(|r| r.events).sum();
        anyhow::ensure!(folded == events, "folded {folded} of {events}");
        let rows: u64 = services
            .ch
            .query(&format!(
                "SELECT count() FROM {}.heartbeats",
                replay::shadow_database(&services.config.clickhouse.database)
            ))
            .fetch_one()
            .await?;
        anyhow::ensure!(rows == events, "{rows} shadow rows of {events}");
        report
            .replays
            .push((what.into(), folded, secs, folded as f64 / secs));
        println!(
            "replay from the {what}: {folded} events into heartbeats + node_state in {secs:.1} s: {:.0} events/s (compare included)",
            folded as f64 / secs
        );
    }
    if args.live_rate > 0 {
        report.live = Some(live(&mut services, &args, events).await?);
    }
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    services.stop().await
}

/// The live projectors catch up on the `events` published, then heartbeats keep arriving at
/// `--live-rate` while the telemetry projection is rebuilt from the stream and cut over.
async fn live(
    services: &mut Services,
    args: &RebuildArgs,
    events: u64,
) -> anyhow::Result<LiveReport> {
    services.start_projectors(&Registry::new());
    loop {
        let rows: u64 = services
            .ch
            .query("SELECT count() FROM heartbeats")
            .fetch_one()
            .await?;
        if rows >= events {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stop = CancellationToken::new();
    let feeder = tokio::spawn(crate::live_lag::feed(
        services.js.clone(),
        "live-",
        args.nodes,
        args.live_rate,
        stop.clone(),
    ));
    let options = Options {
        only: vec!["heartbeats".into()],
        batch_events: args.batch,
        ..Options::default()
    };
    let started = Instant::now();
    // `nerve replay` is a process of its own: the rebuild runs on a runtime and a NATS
    // connection of its own, so the live projectors' tasks are not queued behind its decoding.
    let rebuild = {
        let (nats, ch, stop) = (
            services.config.nats.clone(),
            services.config.clickhouse.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let r = rt.block_on(async {
                let client =
                    nerve_ingest::connect(&nats, nerve_ingest::Who::Role("replay"), false).await?;
                let js = async_nats::jetstream::new(client);
                anyhow::Ok(replay::rebuild(&js, &ch, &options, &|_| {}).await?)
            });
            stop.cancel();
            r
        })
    };
    let waits = crate::live_lag::probe(services, stop.clone()).await;
    let reports = tokio::task::spawn_blocking(move || rebuild.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the rebuild thread panicked"))??;
    let rebuild_secs = started.elapsed().as_secs_f64();
    let fed = feeder.await??;
    let waits = waits?;
    // What the heartbeats the projector wrote take on disk, per row (sim values move from beat
    // to beat, unlike the generated history of `nodes-page`).
    let (bytes, rows): (u64, u64) = services
        .ch
        .query(
            "SELECT sum(bytes_on_disk), sum(rows) FROM system.parts \
             WHERE database = currentDatabase() AND table = 'heartbeats' AND active",
        )
        .fetch_one()
        .await?;
    let bytes_per_row = bytes as f64 / rows.max(1) as f64;
    println!(
        "heartbeats on disk: {bytes_per_row:.1} bytes/row ({rows} rows): {:.0} bytes per node per day at one heartbeat every 10 s",
        bytes_per_row * 8640.0
    );
    let (p50, p99, max) = crate::live_lag::percentiles(waits.clone());
    let held = reports.iter().map(|r| r.held.as_secs_f64()).sum();
    println!(
        "rebuild while live ({fed} heartbeats at {}/s arrived meanwhile): {rebuild_secs:.1} s, live projector held {held:.2} s for the cutover; probe publish → queryable over {} probes: p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms",
        args.live_rate,
        waits.len()
    );
    Ok(LiveReport {
        rate: args.live_rate,
        rebuild_secs,
        held_secs: held,
        probes: waits.len(),
        lag_p50_ms: p50,
        lag_p99_ms: p99,
        lag_max_ms: max,
        heartbeat_bytes_per_row: bytes_per_row,
    })
}
