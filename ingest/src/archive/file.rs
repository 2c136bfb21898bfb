//! One Avro Object Container File of archived records, as the archiver seals them and an
//! export writes them: deflate blocks of [`Record`], every released event schema in the
//! file's metadata.

use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use apache_avro::{Codec, DeflateSettings, Schema, Writer};
use sha2::{Digest, Sha256};

use super::{ArchiveError, RECORD_SCHEMA, Record, SCHEMAS_METADATA, Sealed};

static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    // A constant of this module, parsed by its tests.
    #[allow(clippy::expect_used)]
    Schema::parse_str(RECORD_SCHEMA).expect("archive record schema")
});

/// Every released event schema as the files' metadata holds it.
fn schemas_metadata() -> String {
    let map: serde_json::Map<String, serde_json::Value> = nerve_schemas::registry::registry()
        .all()
        .iter()
        .map(|r| {
            let hex: String = r.fingerprint.iter().map(|b| format!("{b:02x}")).collect();
            let schema = serde_json::from_str(r.file.text).unwrap_or_default();
            (hex, schema)
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// A file being written.
pub struct FileWriter {
    path: PathBuf,
    writer: Writer<'static, BufWriter<File>>,
    /// What the file holds so far (`file`, `bytes` and `sha256` are set by `finish`).
    sealed: Sealed,
}

impl FileWriter {
    /// Creates `path` for records of `stream`.
    pub fn create(path: &Path, stream: &str) -> Result<Self, ArchiveError> {
        let file = File::create(path).map_err(ArchiveError::io(path))?;
        let mut writer = Writer::with_codec(
            &SCHEMA,
            BufWriter::new(file),
            Codec::Deflate(DeflateSettings::default()),
        );
        writer
            .add_user_metadata(SCHEMAS_METADATA.to_owned(), schemas_metadata())
            .map_err(|e| ArchiveError::format(path, e))?;
        Ok(Self {
            path: path.to_owned(),
            writer,
            sealed: Sealed {
                stream: stream.to_owned(),
                file: PathBuf::new(),
                first_seq: 0,
                last_seq: 0,
                count: 0,
                first_published_ms: 0,
                last_published_ms: 0,
                bytes: 0,
                sha256: String::new(),
            },
        })
    }

    /// Appends one record (records come in stream order).
    pub fn append(&mut self, record: &Record) -> Result<(), ArchiveError> {
        self.writer
            .append_ser(record)
            .map_err(|e| ArchiveError::format(&self.path, e))?;
        let s = &mut self.sealed;
        if s.count == 0 {
            s.first_seq = record.stream_seq as u64;
            s.first_published_ms = record.published_ms;
        }
        s.last_seq = record.stream_seq as u64;
        s.last_published_ms = record.published_ms;
        s.count += 1;
        Ok(())
    }

    /// What it holds so far.
    pub fn contents(&self) -> &Sealed {
        &self.sealed
    }

    /// Flushes and syncs the file; returns what it holds with its size and SHA-256 (`file`
    /// left empty for the caller to name).
    pub fn finish(self) -> Result<Sealed, ArchiveError> {
        let path = self.path;
        let file = self
            .writer
            .into_inner()
            .map_err(|e| ArchiveError::format(&path, e))?
            .into_inner()
            .map_err(|e| ArchiveError::format(&path, e.error()))?;
        file.sync_all().map_err(ArchiveError::io(&path))?;
        let (bytes, sha256) = digest(&path)?;
        Ok(Sealed {
            bytes,
            sha256,
            ..self.sealed
        })
    }
}

/// Size and SHA-256 (hex) of a file.
pub fn digest(path: &Path) -> Result<(u64, String), ArchiveError> {
    let mut file = File::open(path).map_err(ArchiveError::io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(ArchiveError::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((bytes, super::store::hex(&hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_schema_parses_and_every_event_schema_is_embedded() {
        assert_eq!(
            SCHEMA.name().map(|n| n.name.as_str()),
            Some("ArchivedEvent")
        );
        let meta: serde_json::Value = serde_json::from_str(&schemas_metadata()).unwrap();
        let n = nerve_schemas::registry::registry().all().len();
        assert_eq!(meta.as_object().map(|m| m.len()), Some(n));
    }
}
