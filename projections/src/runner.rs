//! The consume → decode → write → ack loop every projection shares.
//!
//! A batch is due at `batch_max_events` or `batch_max_wait` after its first event and closes once
//! due and the writer is free: it is collected while the one before it is written (one write in
//! flight, in order), and grows while writes are slow. Undecodable
//! events are stored in `rejected_events`, counted, and acked, so one bad event never blocks the
//! stream nor loses the good events around it. A failed ClickHouse write is retried with backoff
//! while the batch's ack deadline is extended; nothing is acked before the write succeeded.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, Message, consumer::PullConsumer};
use clickhouse::Client;
use futures::StreamExt;
use nerve_platform::config::ProjectorConfig;
use nerve_platform::metrics::{Counter, Registry};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Redelivered events checked against the table per query (≈ 40 bytes of SQL each for the id,
/// up to as much again for its node).
const DEDUP_CHUNK: usize = 2_000;
use tracing::Instrument;

pub use crate::logged::Logged;
use crate::rejected::{self, RejectedRow};

mod metrics;

use metrics::RunnerMetrics;

/// Why a projector stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error("cannot prepare ClickHouse tables: {0}")]
    Setup(#[source] clickhouse::error::Error),
    #[error(transparent)]
    Nats(#[from] nerve_ingest::IngestError),
    #[error("cannot read from consumer {consumer}: {message}")]
    Consume { consumer: String, message: String },
}

/// Test-only crash points, to prove the ack protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failpoint {
    /// Exit the process (code 86) right after the first batch was written, before acking it.
    ExitAfterWrite,
}

/// Exit code of [`Failpoint::ExitAfterWrite`].
pub const FAILPOINT_EXIT_CODE: i32 = 86;

/// How a runner batches and retries.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    pub batch_max_events: usize,
    pub batch_max_wait: Duration,
    pub retry_max_backoff: Duration,
    pub failpoint: Option<Failpoint>,
}

impl RunnerOptions {
    pub fn from_config(config: &ProjectorConfig, failpoint: Option<Failpoint>) -> Self {
        Self {
            batch_max_events: config.batch_max_events,
            batch_max_wait: Duration::from_millis(config.batch_max_wait_ms),
            retry_max_backoff: Duration::from_millis(config.retry_max_backoff_ms.max(1)),
            failpoint,
        }
    }
}

/// An event with where it came from.
#[derive(Debug)]
pub struct Positioned<T> {
    pub item: T,
    /// JetStream stream sequence: the projection's checkpoint, written with the row.
    pub stream_seq: u64,
    /// When JetStream stored it (ms since the epoch): the log's own time, the only clock a fold
    /// may read, so that replaying the log gives the same rows.
    pub published_ms: i64,
    /// Whether JetStream delivered it before (the previous attempt may have been written).
    pub redelivered: bool,
}

/// Decodes and validates `messages` for `projection`: the good events, in order, and a
/// `rejected_events` row for each bad one (logged).
pub fn decode_all<'a, P: Projection>(
    projection: &P,
    messages: impl IntoIterator<Item = Logged<'a>>,
) -> (Vec<Positioned<P::Item>>, Vec<RejectedRow>) {
    let mut items = Vec::new();
    let mut rejected_rows = Vec::new();
    for m in messages {
        match projection.decode(m.subject, m.payload, m.published_ms) {
            Ok(item) => items.push(Positioned {
                item,
                stream_seq: m.stream_seq,
                published_ms: m.published_ms,
                redelivered: m.redelivered,
            }),
            Err(error) => {
                tracing::warn!(
                    projection = projection.name(),
                    subject = m.subject,
                    stream_seq = m.stream_seq,
                    %error,
                    "rejected event"
                );
                rejected_rows.push(RejectedRow::new(
                    projection.stream(),
                    projection.name(),
                    &m,
                    &error,
                ));
            }
        }
    }
    (items, rejected_rows)
}

/// Earliest accepted event time (2001-01-01): older means a broken clock.
pub const MIN_OCCURRED_AT_MS: i64 = 978_307_200_000;
/// How far past the time JetStream stored it an event may claim to have happened.
pub const MAX_CLOCK_SKEW_MS: i64 = 24 * 3600 * 1000;

/// Checks what the schema cannot about any event's envelope: the node id is valid and is the one
/// in the subject (an agent may speak only for itself), the event id is a UUID, and the time is
/// plausible relative to when JetStream stored the event. Returns the parsed event id.
pub fn validate_envelope(
    env: &nerve_schemas::Envelope,
    subject: &str,
    published_ms: i64,
) -> Result<uuid::Uuid, String> {
    if !nerve_schemas::subjects::is_valid_node_id(&env.node_id) {
        return Err(format!("invalid node_id {:?}", env.node_id));
    }
    if nerve_schemas::subjects::node_id_of(subject) != Some(env.node_id.as_str()) {
        return Err(format!(
            "node_id {:?} does not match subject {subject}",
            env.node_id
        ));
    }
    let event_id = uuid::Uuid::parse_str(&env.event_id)
        .map_err(|_| format!("event_id {:?} is not a UUID", env.event_id))?;
    if env.occurred_at_ms < MIN_OCCURRED_AT_MS
        || env.occurred_at_ms > published_ms.saturating_add(MAX_CLOCK_SKEW_MS)
    {
        return Err(format!(
            "occurred_at_ms {} is implausible (stored at {published_ms})",
            env.occurred_at_ms
        ));
    }
    Ok(event_id)
}

/// The identity of a decoded event, for the redelivery check.
#[derive(Debug)]
pub struct EventKey<'a> {
    pub node_id: &'a str,
    pub event_id: &'a str,
    pub occurred_at_ms: i64,
}

impl<'a> EventKey<'a> {
    /// The key of an event with this envelope.
    pub fn of(env: &'a nerve_schemas::Envelope) -> Self {
        Self {
            node_id: &env.node_id,
            event_id: &env.event_id,
            occurred_at_ms: env.occurred_at_ms,
        }
    }
}

/// Inserts `rows` into `table` in one INSERT; nothing when there are none.
pub async fn insert_rows<R>(
    ch: &Client,
    table: &str,
    rows: &[R],
) -> Result<(), clickhouse::error::Error>
where
    R: clickhouse::RowOwned + clickhouse::RowWrite,
{
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = ch.insert::<R>(table).await?;
    for r in rows {
        insert.write(r).await?;
    }
    insert.end().await
}

/// One read model fed from one stream.
pub trait Projection: Send + Sync + 'static {
    type Item: Send + Sync + 'static;

    /// Durable consumer name, also the `projection` metric label.
    fn name(&self) -> &'static str;
    /// The stream it reads.
    fn stream(&self) -> &'static str;
    /// Decodes and validates one message; `published_ms` is when JetStream stored it.
    fn decode(
        &self,
        subject: &str,
        payload: &[u8],
        published_ms: i64,
    ) -> Result<Self::Item, String>;
    /// The event's identity.
    fn key(item: &Self::Item) -> EventKey<'_>;
    /// Every table it writes (not `rejected_events`, which all projections share).
    fn tables(&self) -> &'static [&'static str];
    /// A MergeTree table with `node_id`, `ts` (DateTime) and `event_id` (UUID) columns whose rows
    /// would be duplicated by writing an event twice; `None` when writes are idempotent anyway
    /// (ReplacingMergeTree keyed by the entity). [`Projection::write`] must write it last: an
    /// event found there is taken as fully written and left out when its batch is written again.
    fn append_only_table(&self) -> Option<&'static str>;
    /// Writes the batch. Must not return before ClickHouse accepted it.
    fn write(
        &self,
        ch: &Client,
        items: &[Positioned<Self::Item>],
    ) -> impl Future<Output = Result<(), clickhouse::error::Error>> + Send;
}

/// The counter of batches `projection` wrote (one append-only insert each), for readers beside
/// the runner such as the load test.
pub fn batches_written(registry: &Registry, projection: &'static str) -> Counter {
    registry.counter(
        "nerve_projector_batches_total",
        "Batches written.",
        &[("projection", projection)],
    )
}

/// Runs one projection.
pub struct Runner<P: Projection> {
    projection: P,
    consumer: PullConsumer,
    ch: Client,
    options: RunnerOptions,
    metrics: RunnerMetrics,
    /// The consumer's: a message unacked this long is delivered again.
    ack_wait: Duration,
    /// The highest stream sequence this runner has written.
    written_up_to: AtomicU64,
}

impl<P: Projection> Runner<P> {
    /// Binds `projection` to its durable consumer (created or updated).
    pub async fn new(
        projection: P,
        js: &jetstream::Context,
        ch: Client,
        ack_wait: Duration,
        options: RunnerOptions,
        registry: &Registry,
    ) -> Result<Self, ProjectorError> {
        // On a JetStream cluster that has just started (or lost a server) a stream's group may
        // not take a consumer yet: tried again for a minute, with a growing pause.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut pause = Duration::from_millis(250);
        let consumer = loop {
            let (stream, name) = (projection.stream(), projection.name());
            match nerve_ingest::ensure_projector_consumer(js, stream, name, ack_wait).await {
                Ok(c) => break c,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(projection = name, error = %e, "consumer not ready; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let metrics = RunnerMetrics::new(registry, projection.name());
        Ok(Self {
            projection,
            consumer,
            ch,
            options,
            metrics,
            ack_wait,
            written_up_to: AtomicU64::new(0),
        })
    }

    /// Consumes until `cancel`; the batch in hand is written and acked before returning.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), ProjectorError> {
        let span = tracing::info_span!("projector", projection = self.projection.name());
        self.consume(cancel).instrument(span).await
    }

    async fn consume(self, cancel: CancellationToken) -> Result<(), ProjectorError> {
        let name = self.projection.name();
        tracing::info!(
            projection = name,
            stream = self.projection.stream(),
            "projector started"
        );
        // The next batch is collected while one is written, and closes once it is due (full, or
        // `batch_max_wait` old) and the writer is free: an event waits for its batch to close
        // or for the write before it, not for both in turn, and while writes are slow the
        // batches grow instead of queueing (fewer, larger inserts when ClickHouse is busy).
        let (batches, mut to_write) = tokio::sync::mpsc::channel::<Vec<Message>>(1);
        let (writer_idle, idle) = tokio::sync::watch::channel(true);
        let write = async {
            loop {
                writer_idle.send_replace(true);
                let Some(batch) = to_write.recv().await else {
                    break;
                };
                writer_idle.send_replace(false);
                if !self.process(batch, &cancel).await {
                    break;
                }
            }
            // Dropped here, so a collector waiting to hand over its batch stops too.
            drop((to_write, writer_idle));
        };
        tokio::join!(self.collect(batches, idle, &cancel), write);
        tracing::info!(projection = name, "projector stopped");
        Ok(())
    }

    /// Pulls messages and hands them over in batches until `cancel` (the batch in hand is handed
    /// over first) or until the writer stopped. `idle`: whether the writer waits for a batch.
    async fn collect(
        &self,
        batches: tokio::sync::mpsc::Sender<Vec<Message>>,
        mut idle: tokio::sync::watch::Receiver<bool>,
        cancel: &CancellationToken,
    ) {
        let name = self.projection.name();
        let pull = (self.options.batch_max_events * 2).clamp(100, 20_000);
        'reconnect: loop {
            let mut messages = match self
                .consumer
                .stream()
                .max_messages_per_batch(pull)
                // Short pulls with frequent idle heartbeats: after a hold (a rebuild pauses the
                // consumer for its cutover) a pull made while paused is renewed within a second
                // or two, not after the 10 s a missed-heartbeat check would take.
                .expires(Duration::from_secs(5))
                .heartbeat(Duration::from_secs(1))
                .messages()
                .await
            {
                Ok(m) => m,
                Err(e) => {
                    self.metrics.consume_errors.inc();
                    tracing::warn!(projection = name, error = %e, "cannot pull; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue 'reconnect,
                    }
                }
            };
            loop {
                let first = tokio::select! {
                    _ = cancel.cancelled() => return,
                    m = messages.next() => m,
                };
                let mut batch = Vec::with_capacity(self.options.batch_max_events.min(10_000));
                match first {
                    None => continue 'reconnect,
                    Some(Err(e)) => {
                        self.metrics.consume_errors.inc();
                        tracing::warn!(projection = name, error = %e, "consumer error");
                        continue;
                    }
                    Some(Ok(m)) => batch.push(m),
                }
                let deadline = Instant::now() + self.options.batch_max_wait;
                let (mut due, mut ended) = (false, false);
                // While the writer is busy (ClickHouse slow or down) the batch in hand is kept
                // ours, as the one being written is: not delivered again meanwhile.
                let hold = (self.ack_wait / 2).max(Duration::from_millis(100));
                let mut keep = tokio::time::interval_at(Instant::now() + hold, hold);
                loop {
                    let full = batch.len() >= self.options.batch_max_events;
                    if (due || full || ended) && *idle.borrow_and_update() {
                        break;
                    }
                    tokio::select! {
                        _ = keep.tick() => {
                            for m in &batch {
                                let _ = m.ack_with(AckKind::Progress).await;
                            }
                        }
                        _ = tokio::time::sleep_until(deadline), if !due => due = true,
                        changed = idle.changed(), if due || full || ended => {
                            if changed.is_err() {
                                return;
                            }
                        }
                        m = messages.next(), if !full && !ended => match m {
                            Some(Ok(m)) => batch.push(m),
                            Some(Err(e)) => {
                                self.metrics.consume_errors.inc();
                                tracing::warn!(projection = name, error = %e, "consumer error");
                            }
                            None => ended = true,
                        },
                    }
                }
                if batches.send(batch).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Writes and acks one batch. Returns false if cancelled before the write succeeded (the
    /// batch stays unacked and is redelivered to the next projector).
    async fn process(&self, batch: Vec<Message>, cancel: &CancellationToken) -> bool {
        let name = self.projection.name();
        // Each message's delivery info is parsed once, here: JetStream's redeliveries are
        // counted before `distinct` marks more (repeats within the batch) as redelivered.
        let all: Vec<Logged> = batch.iter().map(Logged::of).collect();
        let redelivered = all.iter().filter(|m| m.redelivered).count();
        self.metrics.redeliveries.add(redelivered as u64);
        let logged =
            crate::logged::distinct(all.into_iter(), self.written_up_to.load(Ordering::Relaxed));
        let top = logged.iter().map(|m| m.stream_seq).max();
        let published: Vec<i64> = logged.iter().map(|m| m.published_ms).collect();
        let started = std::time::Instant::now();
        let (mut items, rejected_rows) = decode_all(&self.projection, logged);

        let mut backoff = Duration::from_millis(100);
        loop {
            match self.write(&mut items, &rejected_rows).await {
                Ok(()) => break,
                Err(e) => {
                    self.metrics.write_errors.inc();
                    // A failed write may have stored part of the batch (an insert whose reply
                    // was lost): the retry checks, as for a redelivery.
                    for p in &mut items {
                        p.redelivered = true;
                    }
                    tracing::warn!(projection = name, error = %e, retry_in_ms = backoff.as_millis() as u64, "ClickHouse write failed");
                    // Keep the batch ours while we retry.
                    for msg in &batch {
                        let _ = msg.ack_with(AckKind::Progress).await;
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => return false,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.options.retry_max_backoff);
                }
            }
        }
        if let Some(top) = top {
            self.written_up_to.fetch_max(top, Ordering::Relaxed);
        }
        self.metrics.write_time.observe(started.elapsed());
        let stored = nerve_platform::now_ms();
        for at in published.into_iter().filter(|&at| at > 0) {
            self.metrics
                .publish_to_store
                .observe_secs((stored - at).max(0) as f64 / 1000.0);
        }
        self.metrics.batches.inc();
        self.metrics.events.add(items.len() as u64);
        self.metrics.rejected.add(rejected_rows.len() as u64);

        if self.options.failpoint == Some(Failpoint::ExitAfterWrite) {
            tracing::warn!(
                projection = name,
                "failpoint exit-after-write: exiting before ack"
            );
            std::process::exit(FAILPOINT_EXIT_CODE);
        }
        for msg in &batch {
            if let Err(e) = msg.ack().await {
                tracing::warn!(projection = name, error = %e, "ack failed; the event will be redelivered and deduplicated");
            }
        }
        true
    }

    async fn write(
        &self,
        items: &mut Vec<Positioned<P::Item>>,
        rejected_rows: &[RejectedRow],
    ) -> Result<(), clickhouse::error::Error> {
        if let Some(table) = self.projection.append_only_table()
            && items.iter().any(|p| p.redelivered)
        {
            let existing = self.already_written(table, items).await?;
            if !existing.is_empty() {
                let before = items.len();
                items.retain(|p| !existing.contains(P::key(&p.item).event_id));
                self.metrics.duplicates.add((before - items.len()) as u64);
                tracing::info!(
                    projection = self.projection.name(),
                    skipped = before - items.len(),
                    "redelivered events already written"
                );
            }
        }
        if !items.is_empty() {
            self.projection.write(&self.ch, items).await?;
        }
        if !rejected_rows.is_empty() {
            rejected::write(&self.ch, rejected_rows).await?;
        }
        Ok(())
    }

    /// Event ids among the redelivered `items` that `table` already holds. Asked in chunks of
    /// [`DEDUP_CHUNK`] keys: the ids travel in the SQL text, which ClickHouse caps
    /// (`max_query_size`, 256 KiB), and a whole redelivered batch can be 20,000 events.
    async fn already_written(
        &self,
        table: &str,
        items: &[Positioned<P::Item>],
    ) -> Result<HashSet<String>, clickhouse::error::Error> {
        let keys: Vec<EventKey<'_>> = items
            .iter()
            .filter(|p| p.redelivered)
            .map(|p| P::key(&p.item))
            .collect();
        let mut found = HashSet::new();
        for chunk in keys.chunks(DEDUP_CHUNK) {
            let min_s = chunk.iter().map(|k| k.occurred_at_ms).min().unwrap_or(0) / 1000;
            let max_s = chunk.iter().map(|k| k.occurred_at_ms).max().unwrap_or(0) / 1000;
            let nodes: HashSet<&str> = chunk.iter().map(|k| k.node_id).collect();
            let nodes: Vec<&str> = nodes.into_iter().collect();
            let ids: Vec<&str> = chunk.iter().map(|k| k.event_id).collect();
            let rows: Vec<String> = self
                .ch
                .query(&format!(
                    "SELECT toString(event_id) FROM {table} \
                     WHERE ts >= toDateTime(?) AND ts <= toDateTime(?) \
                     AND node_id IN (SELECT arrayJoin(?)) \
                     AND toString(event_id) IN (SELECT arrayJoin(?))"
                ))
                .bind(min_s)
                .bind(max_s)
                .bind(nodes)
                .bind(ids)
                .fetch_all()
                .await?;
            found.extend(rows);
        }
        Ok(found)
    }
}
