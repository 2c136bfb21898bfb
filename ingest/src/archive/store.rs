//! Where sealed files live: a directory with one folder per stream, its manifest and its files
//! by day (`NERVE_TELEMETRY/2026-12-03/14-1001-5000.avro`). Files are written under `.tmp/`
//! and renamed into place once complete, then listed in the manifest.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use super::file::digest;
use super::{ArchiveError, Record, Sealed};

/// An archive in a local directory.
#[derive(Debug, Clone)]
pub struct Archive {
    root: PathBuf,
}

impl Archive {
    /// The archive under `root` (created when first written).
    pub fn open(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn manifest_path(&self, stream: &str) -> PathBuf {
        self.root.join(stream).join("manifest.jsonl")
    }

    /// Every sealed file of `stream`, in stream order.
    pub fn manifest(&self, stream: &str) -> Result<Vec<Sealed>, ArchiveError> {
        let path = self.manifest_path(stream);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ArchiveError::io(&path)(e)),
        };
        let mut sealed = Vec::new();
        for (n, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(ArchiveError::io(&path))?;
            if line.trim().is_empty() {
                continue;
            }
            let entry: Sealed = serde_json::from_str(&line)
                .map_err(|e| ArchiveError::format(&path, format!("line {}: {e}", n + 1)))?;
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

    /// Moves the finished `scratch` file into place as `sealed.file` and lists it in the
    /// manifest.
    pub(super) fn seal(&self, scratch: &Path, sealed: Sealed) -> Result<Sealed, ArchiveError> {
        let target = self.root.join(&sealed.file);
        if let Some(dir) = target.parent() {
            fs::create_dir_all(dir).map_err(ArchiveError::io(dir))?;
        }
        fs::rename(scratch, &target).map_err(ArchiveError::io(&target))?;
        let manifest = self.manifest_path(&sealed.stream);
        let mut line =
            serde_json::to_string(&sealed).map_err(|e| ArchiveError::format(&manifest, e))?;
        line.push('\n');
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
        let path = self.root.join(&sealed.file);
        let (_, actual) = digest(&path)?;
        if actual != sealed.sha256 {
            return Err(ArchiveError::Corrupt {
                file: path,
                expected: sealed.sha256.clone(),
                actual,
            });
        }
        let file = File::open(&path).map_err(ArchiveError::io(&path))?;
        let reader = apache_avro::Reader::new(BufReader::new(file))
            .map_err(|e| ArchiveError::format(&path, e))?;
        let mut records = Vec::with_capacity(sealed.count as usize);
        for value in reader {
            let value = value.map_err(|e| ArchiveError::format(&path, e))?;
            records.push(
                apache_avro::from_value::<Record>(&value)
                    .map_err(|e| ArchiveError::format(&path, e))?,
            );
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
