//! A stream's history in order, as a rebuild reads it: the archive's sealed files first (each
//! checked against its manifest's SHA-256), then what JetStream still holds after them. A
//! history that cannot start where it must — events the stream dropped and no archive kept —
//! is an error, never a silently shorter rebuild.

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use futures::StreamExt;
use nerve_ingest::archive::{Archive, ArchiveError, Record};

use crate::logged::Logged;

/// Where to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The first event.
    All,
    /// The first event JetStream stored at or after this time (ms).
    Time(i64),
    /// The event after this sequence.
    After(u64),
}

/// Why a history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("JetStream stream {stream}: {message}")]
    Stream { stream: String, message: String },
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(
        "stream {stream}: events {from}..={to} are neither in the stream (expired) nor in the archive"
    )]
    Gap { stream: String, from: u64, to: u64 },
    #[error("ClickHouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("writing the folded rows failed: {0}")]
    Write(String),
}

fn stream_error(stream: &str, e: impl std::fmt::Display) -> HistoryError {
    HistoryError::Stream {
        stream: stream.into(),
        message: e.to_string(),
    }
}

/// Hands `stream`'s events from `start` through sequence `until` to `each`, in order, in
/// batches of at most `batch`; `total` first learns about how many there are.
pub async fn read(
    stream: &jetstream::stream::Stream,
    archive: Option<&Archive>,
    start: Start,
    until: u64,
    batch: usize,
    total: impl FnOnce(u64),
    mut each: impl AsyncFnMut(&[Logged<'_>]) -> Result<(), HistoryError>,
) -> Result<(), HistoryError> {
    let name = stream.cached_info().config.name.clone();
    let mut next = match start {
        Start::After(seq) => seq + 1,
        Start::All | Start::Time(_) => 1,
    };
    if next > until {
        total(0);
        return Ok(());
    }
    let files = match archive {
        Some(a) => {
            let (a, n) = (a.clone(), name.clone());
            blocking(move || a.manifest(&n)).await?
        }
        None => Vec::new(),
    };
    let files: Vec<_> = files
        .into_iter()
        .filter(|f| f.last_seq >= next && f.first_seq <= until)
        .filter(|f| !matches!(start, Start::Time(ms) if f.last_published_ms < ms))
        .collect();
    let from_archive = !files.is_empty();
    let stream_first = stream
        .clone()
        .info()
        .await
        .map_err(|e| stream_error(&name, e))?
        .state
        .first_sequence;
    let archived: u64 = files.iter().map(|f| f.count).sum();
    let after_archive = files.last().map_or(next, |f| f.last_seq + 1);
    let in_stream = until.saturating_sub(after_archive.max(stream_first).saturating_sub(1));
    total(archived + in_stream);

    for file in files {
        if file.first_seq > next && !matches!(start, Start::Time(_)) {
            return Err(gap(&name, next, file.first_seq - 1));
        }
        let (a, f) = (archive.cloned(), file.clone());
        let records: Vec<Record> = blocking(move || match a {
            Some(a) => a.read(&f),
            None => Ok(Vec::new()),
        })
        .await?;
        let records: Vec<&Record> = records
            .iter()
            .filter(|r| (next..=until).contains(&(r.stream_seq as u64)))
            .filter(|r| !matches!(start, Start::Time(ms) if r.published_ms < ms))
            .collect();
        for chunk in records.chunks(batch.max(1)) {
            let logged: Vec<Logged<'_>> = chunk.iter().map(|r| logged(r)).collect();
            each(&logged).await?;
        }
        next = file.last_seq + 1;
    }
    if next > until {
        return Ok(());
    }
    if stream_first > next && (from_archive || !matches!(start, Start::Time(_))) {
        return Err(gap(&name, next, (stream_first - 1).min(until)));
    }
    let deliver_policy = match start {
        Start::Time(ms) if !from_archive => DeliverPolicy::ByStartTime {
            start_time: time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
        },
        _ => DeliverPolicy::ByStartSequence {
            start_sequence: next,
        },
    };
    let mut consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| stream_error(&name, e))?;
    let pending = consumer
        .info()
        .await
        .map_err(|e| stream_error(&name, e))?
        .num_pending;
    if pending == 0 {
        return Ok(());
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| stream_error(&name, e))?;
    let mut held = Vec::with_capacity(batch);
    while let Some(msg) = messages.next().await {
        let msg = msg.map_err(|e| stream_error(&name, e))?;
        let (seq, left) = msg
            .info()
            .map(|i| (i.stream_sequence, i.pending))
            .map_err(|e| stream_error(&name, e))?;
        if seq > until {
            break;
        }
        held.push(msg);
        let last = seq >= until || left == 0;
        if held.len() >= batch || last {
            let logged: Vec<Logged<'_>> = held.iter().map(Logged::of).collect();
            each(&logged).await?;
            held.clear();
        }
        if last {
            break;
        }
    }
    Ok(())
}

fn gap(stream: &str, from: u64, to: u64) -> HistoryError {
    HistoryError::Gap {
        stream: stream.into(),
        from,
        to,
    }
}

/// An archived record as a fold reads it.
fn logged(r: &Record) -> Logged<'_> {
    Logged {
        subject: &r.subject,
        msg_id: &r.msg_id,
        payload: &r.event,
        stream_seq: r.stream_seq as u64,
        published_ms: r.published_ms,
        redelivered: false,
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ArchiveError> + Send + 'static,
) -> Result<T, HistoryError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => Ok(r?),
        Err(e) => Err(HistoryError::Archive(ArchiveError::Format {
            path: Default::default(),
            message: format!("archive reader failed: {e}"),
        })),
    }
}
