//! The agent's outbox: events wait here, on disk, until JetStream acknowledged them, so nothing
//! is lost while NATS is unreachable or across an agent restart. Bounded by event count, bytes
//! and age; beyond a bound the oldest events are dropped and counted.
//!
//! Layout: `<state_dir>/outbox/log` is an append-only log of records
//! `[u32 len][u64 enqueued_ms][u16 subject len][subject][u16 id len][id][payload]`, and
//! `<state_dir>/outbox/head` holds the offset of the first unacknowledged record. Acks advance
//! the head; the log is rewritten without its consumed prefix once that prefix is large. A record
//! torn by a crash is cut off at the next open.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use nerve_ingest::Outgoing;

/// Limits of the outbox.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_events: usize,
    pub max_bytes: u64,
    pub max_age_ms: i64,
}

/// Why the outbox could not be used.
#[derive(Debug, thiserror::Error)]
#[error("agent outbox {path}: {source}")]
pub struct BufferError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: u64,
    len: u64,
    enqueued_ms: i64,
}

/// The on-disk queue of unacknowledged events.
pub struct Outbox {
    dir: PathBuf,
    log: File,
    head: u64,
    end: u64,
    entries: VecDeque<Entry>,
    bytes: u64,
    bounds: Bounds,
}

/// Rewrite the log once this much of it has been acknowledged.
const COMPACT_AFTER_BYTES: u64 = 1 << 20;

impl Outbox {
    /// Opens (or creates) the outbox in `state_dir`, recovering what a previous run left.
    pub fn open(state_dir: &Path, bounds: Bounds) -> Result<Self, BufferError> {
        let dir = state_dir.join("outbox");
        let err = |path: &Path| {
            let path = path.to_owned();
            move |source| BufferError { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(err(&dir))?;
        let log_path = dir.join("log");
        let mut log = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&log_path)
            .map_err(err(&log_path))?;
        let head = std::fs::read_to_string(dir.join("head"))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let mut data = Vec::new();
        log.seek(SeekFrom::Start(0)).map_err(err(&log_path))?;
        log.read_to_end(&mut data).map_err(err(&log_path))?;
        let head = head.min(data.len() as u64);
        let mut entries = VecDeque::new();
        let mut pos = head as usize;
        while let Some((len, enqueued_ms)) = record_at(&data, pos) {
            entries.push_back(Entry {
                offset: pos as u64,
                len: len as u64,
                enqueued_ms,
            });
            pos += len;
        }
        if pos < data.len() {
            tracing::warn!(
                bytes = data.len() - pos,
                "outbox log ends in a torn record; cutting it off"
            );
            log.set_len(pos as u64).map_err(err(&log_path))?;
        }
        let bytes = entries.iter().map(|e| e.len).sum();
        let outbox = Self {
            dir,
            log,
            head,
            end: pos as u64,
            entries,
            bytes,
            bounds,
        };
        if !outbox.entries.is_empty() {
            tracing::info!(
                events = outbox.entries.len(),
                "outbox holds events from a previous run"
            );
        }
        outbox.save_head()?;
        Ok(outbox)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends an event; returns how many old events were dropped to stay within bounds.
    pub fn push(&mut self, out: &Outgoing, now_ms: i64) -> Result<u64, BufferError> {
        let mut record =
            Vec::with_capacity(14 + out.subject.len() + out.msg_id.len() + out.payload.len());
        let body_len = 8 + 2 + out.subject.len() + 2 + out.msg_id.len() + out.payload.len();
        record.extend_from_slice(&((4 + body_len) as u32).to_le_bytes());
        record.extend_from_slice(&now_ms.to_le_bytes());
        record.extend_from_slice(&(out.subject.len() as u16).to_le_bytes());
        record.extend_from_slice(out.subject.as_bytes());
        record.extend_from_slice(&(out.msg_id.len() as u16).to_le_bytes());
        record.extend_from_slice(out.msg_id.as_bytes());
        record.extend_from_slice(&out.payload);
        self.log
            .write_all(&record)
            .and_then(|()| self.log.sync_data())
            .map_err(|source| self.error("log", source))?;
        self.entries.push_back(Entry {
            offset: self.end,
            len: record.len() as u64,
            enqueued_ms: now_ms,
        });
        self.end += record.len() as u64;
        self.bytes += record.len() as u64;
        self.enforce(now_ms)
    }

    /// Drops the oldest events beyond the bounds; returns how many.
    pub fn enforce(&mut self, now_ms: i64) -> Result<u64, BufferError> {
        let mut dropped = 0;
        while let Some(first) = self.entries.front().copied() {
            let too_many = self.entries.len() > self.bounds.max_events;
            let too_big = self.bytes > self.bounds.max_bytes;
            let too_old = now_ms - first.enqueued_ms > self.bounds.max_age_ms;
            if !(too_many || too_big || too_old) {
                break;
            }
            self.pop_front()?;
            dropped += 1;
        }
        Ok(dropped)
    }

    /// The oldest event, read back from disk.
    pub fn front(&mut self) -> Result<Option<Outgoing>, BufferError> {
        let Some(entry) = self.entries.front().copied() else {
            return Ok(None);
        };
        let mut buf = vec![0u8; entry.len as usize];
        let mut file = &self.log;
        file.seek(SeekFrom::Start(entry.offset))
            .and_then(|_| file.read_exact(&mut buf))
            .map_err(|source| self.error("log", source))?;
        Ok(decode_record(&buf))
    }

    /// Removes the oldest event (it was acknowledged, or dropped).
    pub fn pop_front(&mut self) -> Result<(), BufferError> {
        let Some(entry) = self.entries.pop_front() else {
            return Ok(());
        };
        self.bytes -= entry.len;
        self.head = entry.offset + entry.len;
        if self.entries.is_empty() || self.head >= COMPACT_AFTER_BYTES {
            self.compact()?;
        }
        self.save_head()
    }

    /// Rewrites the log without its acknowledged prefix.
    fn compact(&mut self) -> Result<(), BufferError> {
        let mut rest = vec![0u8; (self.end - self.head) as usize];
        let mut file = &self.log;
        file.seek(SeekFrom::Start(self.head))
            .and_then(|_| file.read_exact(&mut rest))
            .map_err(|source| self.error("log", source))?;
        let tmp = self.dir.join("log.tmp");
        std::fs::write(&tmp, &rest)
            .and_then(|()| File::open(&tmp)?.sync_all())
            .and_then(|()| std::fs::rename(&tmp, self.dir.join("log")))
            .map_err(|source| self.error("log.tmp", source))?;
        self.log = OpenOptions::new()
            .read(true)
            .append(true)
            .open(self.dir.join("log"))
            .map_err(|source| self.error("log", source))?;
        for e in &mut self.entries {
            e.offset -= self.head;
        }
        self.end -= self.head;
        self.head = 0;
        Ok(())
    }

    fn save_head(&self) -> Result<(), BufferError> {
        let tmp = self.dir.join("head.tmp");
        std::fs::write(&tmp, self.head.to_string())
            .and_then(|()| std::fs::rename(&tmp, self.dir.join("head")))
            .map_err(|source| self.error("head", source))
    }

    fn error(&self, file: &str, source: std::io::Error) -> BufferError {
        BufferError {
            path: self.dir.join(file),
            source,
        }
    }
}

/// Length and enqueue time of a complete record at `pos`, if there is one.
fn record_at(data: &[u8], pos: usize) -> Option<(usize, i64)> {
    let len = u32::from_le_bytes(data.get(pos..pos + 4)?.try_into().ok()?) as usize;
    let record = data.get(pos..pos.checked_add(len)?)?;
    decode_record(record)?;
    let ts = i64::from_le_bytes(record.get(4..12)?.try_into().ok()?);
    Some((len, ts))
}

fn decode_record(r: &[u8]) -> Option<Outgoing> {
    let mut pos = 12;
    let field = |pos: &mut usize| -> Option<String> {
        let n = u16::from_le_bytes(r.get(*pos..*pos + 2)?.try_into().ok()?) as usize;
        let s = std::str::from_utf8(r.get(*pos + 2..*pos + 2 + n)?)
            .ok()?
            .to_owned();
        *pos += 2 + n;
        Some(s)
    };
    let subject = field(&mut pos)?;
    let msg_id = field(&mut pos)?;
    let payload = Bytes::copy_from_slice(r.get(pos..)?);
    (r.len() >= 12).then_some(Outgoing {
        subject,
        msg_id,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(i: u32) -> Outgoing {
        Outgoing::new(format!("s.{i}"), format!("id-{i}"), vec![i as u8; 10])
    }

    const LOOSE: Bounds = Bounds {
        max_events: 1000,
        max_bytes: 1 << 20,
        max_age_ms: 3_600_000,
    };

    #[test]
    fn events_survive_a_restart_in_order_and_acks_are_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Outbox::open(dir.path(), LOOSE).unwrap();
        for i in 0..5 {
            q.push(&ev(i), 1000).unwrap();
        }
        q.pop_front().unwrap(); // event 0 acked
        drop(q);
        let mut q = Outbox::open(dir.path(), LOOSE).unwrap();
        assert_eq!(q.len(), 4);
        for i in 1..5 {
            let out = q.front().unwrap().unwrap();
            assert_eq!(
                (out.subject.as_str(), out.msg_id.as_str()),
                (format!("s.{i}").as_str(), format!("id-{i}").as_str())
            );
            assert_eq!(&out.payload[..], &[i as u8; 10]);
            q.pop_front().unwrap();
        }
        assert!(q.is_empty());
        drop(q);
        assert!(Outbox::open(dir.path(), LOOSE).unwrap().is_empty());
    }

    #[test]
    fn bounds_drop_the_oldest_and_count_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Outbox::open(
            dir.path(),
            Bounds {
                max_events: 3,
                ..LOOSE
            },
        )
        .unwrap();
        let dropped: u64 = (0..5).map(|i| q.push(&ev(i), 1000).unwrap()).sum();
        assert_eq!((dropped, q.len()), (2, 3));
        assert_eq!(q.front().unwrap().unwrap().msg_id, "id-2");

        let mut q2 = Outbox::open(
            &dir.path().join("age"),
            Bounds {
                max_age_ms: 100,
                ..LOOSE
            },
        )
        .unwrap();
        q2.push(&ev(0), 1000).unwrap();
        q2.push(&ev(1), 1050).unwrap();
        assert_eq!(q2.enforce(1120).unwrap(), 1);
        assert_eq!(q2.front().unwrap().unwrap().msg_id, "id-1");
    }

    #[test]
    fn a_torn_record_is_cut_off_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Outbox::open(dir.path(), LOOSE).unwrap();
        q.push(&ev(1), 1000).unwrap();
        q.push(&ev(2), 1000).unwrap();
        drop(q);
        let log = dir.path().join("outbox/log");
        let len = std::fs::metadata(&log).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let mut q = Outbox::open(dir.path(), LOOSE).unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(q.front().unwrap().unwrap().msg_id, "id-1");
        q.push(&ev(3), 1000).unwrap();
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn the_log_is_compacted_once_drained() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Outbox::open(dir.path(), LOOSE).unwrap();
        for i in 0..10 {
            q.push(&ev(i), 1000).unwrap();
        }
        for _ in 0..10 {
            q.pop_front().unwrap();
        }
        assert_eq!(
            std::fs::metadata(dir.path().join("outbox/log"))
                .unwrap()
                .len(),
            0
        );
    }
}
