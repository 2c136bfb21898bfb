//! `nerve-loadtest raw`: the raw limits of Nerve's two services with the payloads `ingest` uses,
//! so the end-to-end rate can be read as a share of them. JetStream: pipelined publishes with
//! `Nats-Msg-Id` of simulated v2 heartbeats (encoded per event, as the simulator does) over the
//! same connections and in-flight window, no consumer attached; the rate counts acked events.
//! ClickHouse: the projection's own `heartbeats` rows, built beforehand, inserted in batches of
//! the projector's size, one insert at a time as one projector does. Both go to scratch copies
//! (a stream configured as the telemetry stream, a table made as `heartbeats`) that are removed
//! afterwards, so `ingest --raw-first` measures them in the same run as its end-to-end load.

use std::time::Instant;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use nerve_projections::heartbeats::{Heartbeat, HeartbeatRow};
use nerve_projections::runner::Positioned;

use crate::services::{Services, Target};

#[derive(Debug, Clone, clap::Args)]
pub struct RawArgs {
    /// Events published to JetStream.
    #[arg(long, default_value_t = 600_000)]
    pub events: u64,
    /// Rows inserted into ClickHouse.
    #[arg(long, default_value_t = 600_000)]
    pub rows: u64,
    /// Simulated nodes the events cycle through.
    #[arg(long, default_value_t = 6000)]
    pub nodes: u32,
    /// NATS connections publishing in parallel.
    #[arg(long, default_value_t = 4)]
    pub connections: u32,
    /// Unacknowledged publishes allowed per connection.
    #[arg(long, default_value_t = 2048)]
    pub max_inflight: usize,
    /// Rows per ClickHouse insert (the projector's batch).
    #[arg(long, default_value_t = 20_000)]
    pub batch: usize,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json_out: Option<std::path::PathBuf>,
}

/// What a run measured.
#[derive(Debug, serde::Serialize)]
pub struct RawReport {
    pub jetstream_events: u64,
    pub jetstream_errors: u64,
    pub jetstream_secs: f64,
    pub jetstream_rate: f64,
    pub payload_bytes: usize,
    pub clickhouse_rows: u64,
    pub clickhouse_secs: f64,
    pub clickhouse_rate: f64,
    /// CPU per acked event while publishing, by process (no ClickHouse work).
    pub jetstream_cpu_per_event: crate::cpu::CpuPerEvent,
    /// CPU per row while inserting, by process.
    pub clickhouse_cpu_per_row: crate::cpu::CpuPerEvent,
}

pub async fn run(args: RawArgs) -> anyhow::Result<()> {
    let services = Services::start(Target::private(args.batch, 200)).await?;
    let report = measure(&services, &args).await?;
    report.print(args.batch);
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    services.stop().await
}

/// Scratch stream and table the limits are measured on, removed afterwards: the telemetry
/// stream and `heartbeats` stay as they were, so `ingest --raw-first` can measure in the same
/// run, on the same servers, before its load starts.
const SCRATCH_STREAM: &str = "NERVE_RAW_LIMIT";
const SCRATCH_SUBJECTS: &str = "nerve-raw.>";
const SCRATCH_TABLE: &str = "raw_limit_heartbeats";

/// Measures both raw limits on `services`' servers with `args`' sizes.
pub async fn measure(services: &Services, args: &RawArgs) -> anyhow::Result<RawReport> {
    let payload_bytes = nerve_schemas::encode(&crate::sim::heartbeat(
        "sim-000000",
        0,
        nerve_platform::now_ms(),
    ))?
    .len();

    // JetStream: a stream configured as the telemetry stream (storage, duplicate window, limits).
    let js = &services.js;
    let mut scratch = js
        .get_stream(nerve_ingest::TELEMETRY_STREAM)
        .await?
        .info()
        .await?
        .config
        .clone();
    scratch.name = SCRATCH_STREAM.into();
    scratch.subjects = vec![SCRATCH_SUBJECTS.into()];
    scratch.description = Some("nerve-loadtest raw limit (scratch)".into());
    js.create_stream(scratch).await?;
    let conns = args.connections.max(1);
    let cpu = services.cpu();
    let cpu_before = cpu.read();
    let started = Instant::now();
    let (acked, errors) = publish_spread(
        services,
        conns,
        args.nodes,
        args.events,
        args.max_inflight,
        |node| format!("nerve-raw.heartbeat.{node}"),
    )
    .await?;
    let js_secs = started.elapsed().as_secs_f64();
    let js_cpu = cpu.read().since(&cpu_before);
    let held = js
        .get_stream(SCRATCH_STREAM)
        .await?
        .info()
        .await?
        .state
        .messages;
    js.delete_stream(SCRATCH_STREAM).await?;
    anyhow::ensure!(
        held == acked,
        "the scratch stream holds {held} of {acked} acked events"
    );

    // ClickHouse: a table made as `heartbeats` (same columns, engine, key, partitions).
    let ch = &services.ch;
    ch.query(&format!("DROP TABLE IF EXISTS {SCRATCH_TABLE}"))
        .execute()
        .await?;
    ch.query(&format!("CREATE TABLE {SCRATCH_TABLE} AS heartbeats"))
        .execute()
        .await?;
    let now = nerve_platform::now_ms();
    let rows: Vec<HeartbeatRow> = (0..args.rows)
        .map(|i| {
            let node = format!("sim-{:06}", i % u64::from(args.nodes.max(1)));
            let event = crate::sim::heartbeat(&node, i as i64, now - (i as i64 % 60_000));
            let event_id = uuid::Uuid::parse_str(&event.envelope.event_id)?;
            // `heartbeats` rows do not carry the payload (`node_state` does).
            let payload = Vec::new();
            let p = Positioned {
                item: Heartbeat {
                    event,
                    event_id,
                    payload,
                },
                stream_seq: i + 1,
                published_ms: now,
                redelivered: false,
            };
            Ok(HeartbeatRow::new(&p))
        })
        .collect::<anyhow::Result<_>>()?;
    let cpu_before = cpu.read();
    let started = Instant::now();
    for chunk in rows.chunks(args.batch.max(1)) {
        nerve_projections::runner::insert_rows(ch, SCRATCH_TABLE, chunk).await?;
    }
    let ch_secs = started.elapsed().as_secs_f64();
    let ch_cpu = cpu.read().since(&cpu_before);
    let stored: u64 = ch
        .query(&format!("SELECT count() FROM {SCRATCH_TABLE}"))
        .fetch_one()
        .await?;
    ch.query(&format!("DROP TABLE {SCRATCH_TABLE}"))
        .execute()
        .await?;
    anyhow::ensure!(stored == args.rows, "{stored} of {} rows stored", args.rows);

    Ok(RawReport {
        jetstream_events: acked,
        jetstream_errors: errors,
        jetstream_secs: js_secs,
        jetstream_rate: acked as f64 / js_secs,
        payload_bytes,
        clickhouse_rows: args.rows,
        clickhouse_secs: ch_secs,
        clickhouse_rate: args.rows as f64 / ch_secs,
        jetstream_cpu_per_event: js_cpu.per_event_us(acked),
        clickhouse_cpu_per_row: ch_cpu.per_event_us(args.rows),
    })
}

impl RawReport {
    pub fn print(&self, batch: usize) {
        println!(
            "raw JetStream: {} events ({} B each) acked in {:.1} s: {:.0} events/s ({} errors)",
            self.jetstream_events,
            self.payload_bytes,
            self.jetstream_secs,
            self.jetstream_rate,
            self.jetstream_errors
        );
        println!(
            "raw ClickHouse: {} heartbeat rows in batches of {batch} in {:.1} s: {:.0} rows/s",
            self.clickhouse_rows, self.clickhouse_secs, self.clickhouse_rate
        );
        println!(
            "raw JetStream CPU per event: {}",
            self.jetstream_cpu_per_event
        );
        println!(
            "raw ClickHouse CPU per row: {}",
            self.clickhouse_cpu_per_row
        );
    }
}

/// Publishes `count` heartbeats of `nodes` as fast as acks allow; (acked, errors).
/// Publishes `events` simulated heartbeats of `nodes` nodes (`sim-000000`, …) over `conns`
/// connections of their own, each node on `subject_of(node)`, at most `max_inflight`
/// unacknowledged per connection: (acked, failed).
pub async fn publish_spread(
    services: &Services,
    conns: u32,
    nodes: u32,
    events: u64,
    max_inflight: usize,
    subject_of: fn(&str) -> String,
) -> anyhow::Result<(u64, u64)> {
    let mut tasks = Vec::new();
    for c in 0..conns {
        let who = format!("publisher-{c}");
        let client =
            nerve_ingest::connect(&services.config.nats, nerve_ingest::Who::Role(&who), false)
                .await?;
        let mine: Vec<String> = (0..nodes)
            .filter(|n| n % conns == c)
            .map(|n| format!("sim-{n:06}"))
            .collect();
        let count = events / u64::from(conns);
        tasks.push(tokio::spawn(publish(
            client,
            mine,
            count,
            max_inflight.max(1),
            subject_of,
        )));
    }
    let (mut acked, mut errors) = (0, 0);
    for t in tasks {
        let (a, e) = t.await??;
        acked += a;
        errors += e;
    }
    Ok((acked, errors))
}

/// Publishes `count` simulated heartbeats of `nodes` in turn on `subject_of(node)`, at most
/// `max_inflight` unacknowledged: (acked, failed).
async fn publish(
    client: async_nats::Client,
    nodes: Vec<String>,
    count: u64,
    max_inflight: usize,
    subject_of: fn(&str) -> String,
) -> anyhow::Result<(u64, u64)> {
    let js = async_nats::jetstream::new(client);
    let (mut acked, mut errors) = (0, 0);
    let mut inflight = FuturesUnordered::new();
    let mut beats: Vec<crate::sim::Beats> =
        nodes.iter().map(|n| crate::sim::Beats::new(n)).collect();
    for sent in 0..count {
        while inflight.len() >= max_inflight {
            match inflight.next().await {
                Some(Ok(_)) => acked += 1,
                Some(Err(_)) => errors += 1,
                None => break,
            }
        }
        let i = (sent % nodes.len().max(1) as u64) as usize;
        let subject = subject_of(&nodes[i]);
        let out = beats[i].next_message(subject, nerve_platform::now_ms())?;
        match out.send(&js).await {
            Ok(ack) => inflight.push(ack.stored()),
            Err(_) => errors += 1,
        }
    }
    while let Some(r) = inflight.next().await {
        match r {
            Ok(_) => acked += 1,
            Err(_) => errors += 1,
        }
    }
    Ok((acked, errors))
}
