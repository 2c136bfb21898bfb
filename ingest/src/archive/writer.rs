//! The archiver: reads each stream in order from after its last sealed sequence (an ordered
//! consumer: no server-side state to keep) and writes the events of one span of publish time
//! (an hour by default) into one file, sealed when the next span's first event arrives or,
//! once caught up, when the span is over plus a grace. Files are written on a blocking thread per stream.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use futures::StreamExt;
use nerve_platform::metrics::{Counter, Gauge, Registry};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::file::FileWriter;
use super::{Archive, ArchiveError, Record};

/// When to seal a file.
#[derive(Debug, Clone, Copy)]
pub struct Sealing {
    /// Publish time one file spans (aligned to the epoch).
    pub span: Duration,
    /// How long after its span a file is sealed once caught up.
    pub grace: Duration,
}

/// Archives `streams` into `archive` until `cancel`.
pub async fn run(
    js: jetstream::Context,
    archive: Archive,
    streams: Vec<String>,
    sealing: Sealing,
    metrics: Registry,
    cancel: CancellationToken,
) {
    let tasks = streams.into_iter().map(|stream| {
        archive_stream(
            js.clone(),
            archive.clone(),
            stream,
            sealing,
            metrics.clone(),
            cancel.clone(),
        )
    });
    futures::future::join_all(tasks).await;
}

/// What the reading side tells the writing thread.
enum Cmd {
    Append(Record),
    /// The time now, and whether every event there was has been handed over.
    Tick {
        now_ms: i64,
        caught_up: bool,
    },
}

struct Meters {
    events: Counter,
    files: Counter,
    bytes: Counter,
    lag: Gauge,
    errors: Counter,
    gaps: Counter,
}

impl Meters {
    fn new(registry: &Registry, stream: &str) -> Self {
        let l = [("stream", stream)];
        Self {
            events: registry.counter("nerve_archive_events_total", "Events sealed into archive files.", &l),
            files: registry.counter("nerve_archive_files_total", "Archive files sealed.", &l),
            bytes: registry.counter("nerve_archive_bytes_total", "Bytes of sealed archive files.", &l),
            lag: registry.gauge(
                "nerve_archive_lag_seconds",
                "Age of the oldest event not yet sealed (0 when caught up): it must stay well under the stream's max_age.",
                &l,
            ),
            errors: registry.counter("nerve_archive_errors_total", "Failed reads or writes (retried).", &l),
            gaps: registry.counter(
                "nerve_archive_gap_events_total",
                "Events the stream dropped before they were archived (lost to the archive).",
                &l,
            ),
        }
    }
}

async fn archive_stream(
    js: jetstream::Context,
    archive: Archive,
    stream_name: String,
    sealing: Sealing,
    registry: Registry,
    cancel: CancellationToken,
) {
    let span = tracing::info_span!("archive", stream = %stream_name);
    async move {
        let meters = Meters::new(&registry, &stream_name);
        while !cancel.is_cancelled() {
            let (tx, rx) = tokio::sync::mpsc::channel::<Cmd>(4_096);
            let writer = {
                let (archive, stream, sealing) = (archive.clone(), stream_name.clone(), sealing);
                let meters = Meters::new(&registry, &stream_name);
                tokio::task::spawn_blocking(move || {
                    write_files(archive, stream, sealing, rx, meters)
                })
            };
            let read = read_stream(&js, &archive, &stream_name, &tx, &meters, &cancel).await;
            drop(tx);
            let written = writer.await;
            let failed = match (read, written) {
                (Ok(()), Ok(Ok(()))) => None,
                (Err(e), _) => Some(e),
                (_, Ok(Err(e))) => Some(e.to_string()),
                (_, Err(e)) => Some(e.to_string()),
            };
            if let Some(error) = failed {
                meters.errors.inc();
                tracing::warn!(%error, "archiving failed; resuming from the last sealed file");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    .instrument(span)
    .await;
}

/// Hands `stream`'s events after the last sealed one to the writer, with a tick every second,
/// until `cancel` or the writer stops.
async fn read_stream(
    js: &jetstream::Context,
    archive: &Archive,
    stream_name: &str,
    tx: &tokio::sync::mpsc::Sender<Cmd>,
    meters: &Meters,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let last = {
        let (archive, stream) = (archive.clone(), stream_name.to_owned());
        tokio::task::spawn_blocking(move || archive.last_seq(&stream))
    };
    let next = last
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?
        + 1;
    let mut stream = js
        .get_stream(stream_name)
        .await
        .map_err(|e| e.to_string())?;
    let first = stream
        .info()
        .await
        .map_err(|e| e.to_string())?
        .state
        .first_sequence;
    if first > next && next > 1 {
        meters.gaps.add(first - next);
        tracing::error!(
            missing_from = next,
            missing_to = first - 1,
            "the stream dropped events before they were archived"
        );
    }
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: next.max(first),
            },
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut caught_up = false;
    loop {
        let cmd = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tick.tick() => Cmd::Tick { now_ms: nerve_platform::now_ms(), caught_up },
            m = messages.next() => {
                let msg = match m {
                    None => return Err("the stream's consumer ended".into()),
                    Some(m) => m.map_err(|e| e.to_string())?,
                };
                let info = msg.info().map_err(|e| e.to_string())?;
                caught_up = info.pending == 0;
                Cmd::Append(Record {
                    stream_seq: info.stream_sequence as i64,
                    published_ms: crate::publish::published_ms(&info),
                    subject: msg.subject.to_string(),
                    msg_id: crate::publish::msg_id(&msg).to_owned(),
                    event: msg.payload.to_vec(),
                })
            }
        };
        if tx.send(cmd).await.is_err() {
            return Err("the archive writer stopped".into());
        }
    }
}

/// The file being written.
struct Open {
    scratch: PathBuf,
    file: FileWriter,
    /// Index of its span since the epoch.
    span: i64,
}

/// Writes and seals files from what `rx` hands over; the file not yet sealed when it ends is
/// dropped (its events are read again from the stream).
fn write_files(
    archive: Archive,
    stream: String,
    sealing: Sealing,
    mut rx: tokio::sync::mpsc::Receiver<Cmd>,
    meters: Meters,
) -> Result<(), ArchiveError> {
    let span_ms = (sealing.span.as_millis() as i64).max(1);
    let mut open: Option<Open> = None;
    let outcome = (|| {
        while let Some(cmd) = rx.blocking_recv() {
            match cmd {
                Cmd::Append(record) => {
                    let span = record.published_ms.div_euclid(span_ms);
                    if open.as_ref().is_some_and(|o| o.span != span) {
                        seal(&archive, open.take(), span_ms, &meters)?;
                    }
                    let file = match &mut open {
                        Some(f) => f,
                        None => open.insert(start(&archive, &stream, span)?),
                    };
                    file.file.append(&record)?;
                }
                Cmd::Tick { now_ms, caught_up } => {
                    let due = open.as_ref().is_some_and(|o| {
                        caught_up
                            && now_ms >= (o.span + 1) * span_ms + sealing.grace.as_millis() as i64
                    });
                    if due {
                        seal(&archive, open.take(), span_ms, &meters)?;
                    }
                    let oldest = open.as_ref().map(|o| o.file.contents().first_published_ms);
                    let lag_ms = oldest.map_or(0, |t| (now_ms - t).max(0));
                    meters.lag.set(lag_ms / 1000);
                }
            }
        }
        Ok(())
    })();
    if let Some(o) = open {
        let _ = std::fs::remove_file(&o.scratch);
    }
    outcome
}

/// A new file for span number `span`.
fn start(archive: &Archive, stream: &str, span: i64) -> Result<Open, ArchiveError> {
    let scratch = archive.scratch(stream)?;
    Ok(Open {
        file: FileWriter::create(&scratch, stream)?,
        scratch,
        span,
    })
}

/// Seals `open` (a span of `span_ms`) into the archive.
fn seal(
    archive: &Archive,
    open: Option<Open>,
    span_ms: i64,
    meters: &Meters,
) -> Result<(), ArchiveError> {
    let Some(Open {
        scratch,
        file,
        span,
        ..
    }) = open
    else {
        return Ok(());
    };
    let mut sealed = file.finish()?;
    let start = time::OffsetDateTime::from_unix_timestamp((span * span_ms).div_euclid(1000))
        .map_err(|e| ArchiveError::format(&scratch, e))?;
    sealed.file = PathBuf::from(format!(
        "{}/{}/{:02}-{}-{}.avro",
        sealed.stream,
        start.date(),
        start.hour(),
        sealed.first_seq,
        sealed.last_seq
    ));
    let sealed = archive.seal(&scratch, sealed)?;
    meters.events.add(sealed.count);
    meters.files.inc();
    meters.bytes.add(sealed.bytes);
    tracing::info!(file = %sealed.file.display(), events = sealed.count, bytes = sealed.bytes, "archive file sealed");
    Ok(())
}
