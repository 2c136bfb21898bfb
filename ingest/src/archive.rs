//! The archive: the log kept after the streams expire it. Every stream's events are sealed, in
//! stream order, into Avro Object Container Files — one per stream and hour of publish time,
//! deflate-compressed, every released event schema embedded in the file's metadata — and each
//! sealed file is listed in its stream's manifest (`<STREAM>/manifest.jsonl`: first and last
//! stream sequence, count, bytes and SHA-256). A record keeps what a replay needs to give the
//! same rows as the live projectors: the event bytes, subject, stream sequence, the time
//! JetStream stored it and its `Nats-Msg-Id`.
//!
//! The archive lives in a directory or an S3-compatible bucket ([`Archive::configured`]). Its
//! lag behind each stream ([`behind`]) is what the built-in `archive-lag` alert watches.
//!
//! The manifest is the archiver's checkpoint: it resumes after the last sealed sequence, so a
//! crash loses only an unsealed file that the stream still holds.

mod bucket;
mod file;
mod lag;
mod store;
mod writer;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use file::{FileWriter, digest};
pub use lag::{Behind, behind};
pub use store::Archive;
pub use writer::{Sealing, run};

/// The schema of one archived record (the file's own schema).
pub const RECORD_SCHEMA: &str = r#"{
  "type": "record", "name": "ArchivedEvent", "namespace": "nerve.archive.v1",
  "doc": "One event of a Nerve stream as JetStream held it.",
  "fields": [
    {"name": "stream_seq", "type": "long", "doc": "Sequence in its stream."},
    {"name": "published_ms", "type": "long", "doc": "When JetStream stored it (ms since the epoch)."},
    {"name": "subject", "type": "string"},
    {"name": "msg_id", "type": "string", "doc": "Its Nats-Msg-Id (the event id)."},
    {"name": "event", "type": "bytes", "doc": "The event: Avro single-object encoding; its schema is in the file's nerve.schemas metadata, by fingerprint."}
  ]
}"#;

/// File metadata key holding every released event schema (JSON: fingerprint in hex → schema).
pub const SCHEMAS_METADATA: &str = "nerve.schemas";

/// One archived event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub stream_seq: i64,
    pub published_ms: i64,
    pub subject: String,
    pub msg_id: String,
    #[serde(with = "serde_bytes")]
    pub event: Vec<u8>,
}

/// A sealed file, as its stream's manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    pub stream: String,
    /// Path below the archive's root.
    pub file: PathBuf,
    pub first_seq: u64,
    pub last_seq: u64,
    pub count: u64,
    pub first_published_ms: i64,
    pub last_published_ms: i64,
    pub bytes: u64,
    /// SHA-256 of the whole file, hex.
    pub sha256: String,
}

/// Why the archive could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("archive file {file}: SHA-256 is {actual}, the manifest says {expected}; refusing it")]
    Corrupt {
        file: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("archive {path}: {message}")]
    Format { path: PathBuf, message: String },
}

impl ArchiveError {
    fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_owned(),
            source,
        }
    }

    fn format(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        Self::Format {
            path: path.to_owned(),
            message: e.to_string(),
        }
    }
}
