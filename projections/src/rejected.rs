//! `rejected_events`: every event a projector could not decode or validate, with the reason and
//! the raw bytes (hex, first 64 KiB), so nothing is silently dropped and operators can inspect it.
//! Keyed by stream position, so a redelivered bad event is stored once.

use clickhouse::{Client, Row};
use serde::Serialize;

use crate::logged::Logged;

/// Bytes of payload kept per rejected event.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// Table: Events that did not decode or validate.
pub const REJECTED_EVENTS: &str = "rejected_events";

pub fn ddl(db: &str) -> Vec<String> {
    vec![format!(
        "CREATE TABLE IF NOT EXISTS {db}.{REJECTED_EVENTS} (
            received_at DateTime('UTC'),
            stream String,
            projector String,
            subject String,
            stream_seq UInt64,
            error String,
            payload_hex String,
            payload_bytes UInt64
        ) ENGINE = ReplacingMergeTree()
        PARTITION BY toYYYYMM(received_at)
        ORDER BY (stream, projector, stream_seq)"
    )]
}

/// One rejected event.
#[derive(Debug, Row, Serialize)]
pub struct RejectedRow {
    pub received_at: u32,
    pub stream: String,
    pub projector: String,
    pub subject: String,
    pub stream_seq: u64,
    pub error: String,
    pub payload_hex: String,
    pub payload_bytes: u64,
}

impl RejectedRow {
    /// The row for `message` of `stream`, which `projector` refused for `error`.
    /// `received_at` is when JetStream stored it, so a replay writes the same row.
    pub fn new(stream: &str, projector: &str, message: &Logged<'_>, error: &str) -> Self {
        let payload = message.payload;
        let kept = &payload[..payload.len().min(MAX_PAYLOAD_BYTES)];
        Self {
            received_at: (message.published_ms.max(0) / 1000) as u32,
            stream: stream.into(),
            projector: projector.into(),
            subject: message.subject.into(),
            stream_seq: message.stream_seq,
            error: error.into(),
            payload_hex: kept.iter().map(|b| format!("{b:02x}")).collect(),
            payload_bytes: payload.len() as u64,
        }
    }
}

pub async fn write(ch: &Client, rows: &[RejectedRow]) -> Result<(), clickhouse::error::Error> {
    let mut insert = ch.insert::<RejectedRow>(REJECTED_EVENTS).await?;
    for row in rows {
        insert.write(row).await?;
    }
    insert.end().await
}
