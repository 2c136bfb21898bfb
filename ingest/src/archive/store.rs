//! Where sealed files live: a directory, or an S3-compatible bucket below a prefix, with one
//! folder per stream, its manifest and its files by day
//! (`NERVE_TELEMETRY/2026-12-03/14-1001-5000.avro`). Files are written under the directory's
//! `.tmp/`, then renamed or uploaded into place once complete, then listed in the manifest.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use nerve_platform::config::ArchiveConfig;
use sha2::{Digest, Sha256};

use super::bucket::Bucket;
use super::{ArchiveError, Record, Sealed};

/// An archive: in a local directory, or in a bucket (the directory then holds only the files
/// being written).
#[derive(Debug, Clone)]
pub struct Archive {
    root: PathBuf,
    bucket: Option<Bucket>,
}

impl Archive {
    /// The archive in the directory `root` (created when first written).
    pub fn open(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            bucket: None,
        }
    }

    /// The archive `config` names: its bucket when `archive.s3.bucket` is set, else `dir`.
    pub fn configured(config: &ArchiveConfig) -> Result<Self, ArchiveError> {
        let bucket = match config.s3.enabled() {
            true => Some(Bucket::open(&config.s3)?),
            false => None,
        };
        Ok(Self {
            root: config.dir.clone(),
            bucket,
        })
    }

    /// Where it is, for messages: the directory, or `s3://bucket/prefix`.
    pub fn location(&self) -> PathBuf {
        match &self.bucket {
            Some(b) => b.url(Path::new("")),
            None => self.root.clone(),
        }
    }

    /// Where `rel` (a path below the archive's root) is, for messages.
    fn at(&self, rel: &Path) -> PathBuf {
        match &self.bucket {
            Some(b) => b.url(rel),
            None => self.root.join(rel),
        }
    }

    /// The object or file at `rel`; None when there is none.
    fn get(&self, rel: &Path) -> Result<Option<Vec<u8>>, ArchiveError> {
        if let Some(bucket) = &self.bucket {
            return bucket.get(rel);
        }
        let path = self.root.join(rel);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ArchiveError::io(&path)(e)),
        }
    }

    fn manifest_rel(stream: &str) -> PathBuf {
        Path::new(stream).join("manifest.jsonl")
    }

    /// Every sealed file of `stream`, in stream order.
    pub fn manifest(&self, stream: &str) -> Result<Vec<Sealed>, ArchiveError> {
        let rel = Self::manifest_rel(stream);
        let Some(bytes) = self.get(&rel)? else {
            return Ok(Vec::new());
        };
        let text = String::from_utf8_lossy(&bytes);
        let mut sealed = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let entry: Sealed = serde_json::from_str(line).map_err(|e| {
                ArchiveError::format(&self.at(&rel), format!("line {}: {e}", n + 1))
            })?;
            sealed.push(entry);
        }
        sealed.sort_by_key(|s| s.first_seq);
        Ok(sealed)
    }

    /// The last sequence of `stream` sealed here (0: none).
    pub fn last_seq(&self, stream: &str) -> Result<u64, ArchiveError> {
        Ok(self
            .manifest(stream)?
            .iter()
            .map(|s| s.last_seq)
            .max()
            .unwrap_or(0))
    }

    /// A new file to write, in the archive's scratch folder.
    pub(super) fn scratch(&self, stream: &str) -> Result<PathBuf, ArchiveError> {
        let dir = self.root.join(".tmp");
        fs::create_dir_all(&dir).map_err(ArchiveError::io(&dir))?;
        Ok(dir.join(format!("{stream}-{}.avro", uuid::Uuid::now_v7())))
    }

    /// Moves (or uploads) the finished `scratch` file into place as `sealed.file` and lists it
    /// in the manifest.
    pub(super) fn seal(&self, scratch: &Path, sealed: Sealed) -> Result<Sealed, ArchiveError> {
        let mut line =
            serde_json::to_string(&sealed).map_err(|e| ArchiveError::format(scratch, e))?;
        line.push('\n');
        let manifest = Self::manifest_rel(&sealed.stream);
        if let Some(bucket) = &self.bucket {
            bucket.upload(scratch, &sealed.file)?;
            let mut lines = bucket.get(&manifest)?.unwrap_or_default();
            lines.extend_from_slice(line.as_bytes());
            bucket.put(&manifest, lines)?;
            fs::remove_file(scratch).map_err(ArchiveError::io(scratch))?;
            return Ok(sealed);
        }
        let target = self.root.join(&sealed.file);
        if let Some(dir) = target.parent() {
            fs::create_dir_all(dir).map_err(ArchiveError::io(dir))?;
        }
        fs::rename(scratch, &target).map_err(ArchiveError::io(&target))?;
        let manifest = self.root.join(manifest);
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&manifest)
            .map_err(ArchiveError::io(&manifest))?;
        out.write_all(line.as_bytes())
            .and_then(|()| out.sync_all())
            .map_err(ArchiveError::io(&manifest))?;
        Ok(sealed)
    }

    /// Reads a sealed file's records, after checking its SHA-256 against the manifest's.
    pub fn read(&self, sealed: &Sealed) -> Result<Vec<Record>, ArchiveError> {
        let path = self.at(&sealed.file);
        let bytes = self
            .get(&sealed.file)?
            .ok_or_else(|| ArchiveError::format(&path, "listed in the manifest but missing"))?;
        let actual = hex(&Sha256::digest(&bytes));
        if actual != sealed.sha256 {
            return Err(ArchiveError::Corrupt {
                file: path,
                expected: sealed.sha256.clone(),
                actual,
            });
        }
        // Straight into `Record` (serde_avro_fast), not through apache-avro's `Value`s: a
        // replay decodes every archived event here.
        let mut reader =
            serde_avro_fast::object_container_file_encoding::Reader::from_slice(&bytes)
                .map_err(|e| ArchiveError::format(&path, e))?;
        let mut records = Vec::with_capacity(sealed.count as usize);
        for record in reader.deserialize::<Record>() {
            records.push(record.map_err(|e| ArchiveError::format(&path, e))?);
        }
        if records.len() as u64 != sealed.count {
            return Err(ArchiveError::format(
                &path,
                format!(
                    "holds {} records, the manifest says {}",
                    records.len(),
                    sealed.count
                ),
            ));
        }
        Ok(records)
    }
}

/// Bytes as lower-case hex.
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
