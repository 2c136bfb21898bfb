//! `nerve-loadtest rebuild`: what keeping and replaying the log costs. N simulated 8-GPU
//! heartbeats are published to the telemetry stream; then the archiver seals them (catching
//! up, as after a restart: throughput, bytes per event); then `heartbeats` and `node_state` are
//! rebuilt into shadow tables from the stream and again from the archive (events per second).
//! No live projector runs, so each rebuild is the fold alone.

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
}

pub async fn run(args: RebuildArgs) -> anyhow::Result<()> {
    let services = Services::start(Target::private(args.batch, 200)).await?;
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
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    services.stop().await
}
