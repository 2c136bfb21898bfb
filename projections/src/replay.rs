//! Rebuilding read models from the log while the live projectors keep running.
//!
//! Each chosen projection is folded again, by the same code the live projector runs
//! ([`decode_all`] and [`Projection::write`]), into the same tables in a shadow database
//! (`<db>_shadow`): first up to what the live projector had acknowledged when the rebuild began,
//! then, with the live projector held still for a moment (its durable consumer paused, so no
//! instance of it is handed an event, until what it was handed is written and acknowledged),
//! up to exactly where it stopped. Live and shadow then hold the same events, so every partition of every table
//! can be compared exactly: row count and the sum of a hash of every column (order-independent;
//! current-state tables read `FINAL`). A partition that differs is reported and, unless only
//! checking, replaced atomically by the shadow's (`ALTER TABLE … REPLACE PARTITION … FROM`;
//! one the shadow lacks is dropped); then the projector is released. Readers never see a
//! missing table or a half-written partition, and ingest waits only for the hold.
//!
//! With a start time only the time-partitioned tables are rebuilt, from the start of that
//! time's month: current-state tables need the whole log.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::ConsumerInfoErrorKind};
use clickhouse::Client;
use nerve_platform::config::{ClickHouseConfig, RetentionConfig};

use crate::history::{self, HistoryError, Start};
use crate::partitions;
pub use crate::partitions::Sum;
use crate::rejected::{self, REJECTED_EVENTS};
use crate::runner::{Logged, Projection, decode_all};
use nerve_ingest::archive::Archive;

/// The shadow database of `db`.
pub fn shadow_database(db: &str) -> String {
    format!("{db}_shadow")
}

/// Why a rebuild stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("unknown projection or table {0:?} (projections: {1})")]
    Unknown(String, String),
    #[error("ClickHouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("JetStream stream {stream}: {message}")]
    Stream { stream: String, message: String },
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("cannot hold projector {projection}: {message}")]
    Hold { projection: String, message: String },
}

fn hold_error(projection: &str, e: impl std::fmt::Display) -> ReplayError {
    ReplayError::Hold {
        projection: projection.into(),
        message: e.to_string(),
    }
}

fn stream_error(stream: &str, e: impl std::fmt::Display) -> ReplayError {
    ReplayError::Stream {
        stream: stream.into(),
        message: e.to_string(),
    }
}

/// What to rebuild and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Projection names (`heartbeats` or `proj_heartbeats`) or table names; empty: all.
    pub only: Vec<String>,
    /// Rebuild only time-partitioned tables, from the start of this time's month (ms).
    pub from_ms: Option<i64>,
    /// Compare only; change nothing live.
    pub check_only: bool,
    /// Events per shadow insert.
    pub batch_events: usize,
    /// Longest a live projector is held; it resumes by itself after that.
    pub hold_lease: Duration,
    /// The archive to read first (what the streams expired is there).
    pub archive: Option<Archive>,
    /// What retention keeps: partitions it dropped are neither compared nor brought back.
    pub retention: RetentionConfig,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            only: Vec::new(),
            from_ms: None,
            check_only: false,
            batch_events: 20_000,
            hold_lease: Duration::from_secs(60),
            archive: None,
            retention: RetentionConfig::default(),
        }
    }
}

/// What a rebuild reports as it goes.
#[derive(Debug, Clone, Copy)]
pub enum Step<'a> {
    /// Folding `projection`'s stream: about `events` to go.
    Started { projection: &'a str, events: u64 },
    /// `events` more folded.
    Folded { events: u64 },
    /// The live projector is held; the tail is folded and the tables compared.
    Holding { projection: &'a str },
}

/// A partition whose live and rebuilt contents differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub partition_id: String,
    pub live: Option<Sum>,
    pub rebuilt: Option<Sum>,
}

/// One table's outcome.
#[derive(Debug, Clone)]
pub struct TableReport {
    pub table: &'static str,
    /// Partitions compared.
    pub partitions: usize,
    /// Partitions that differed before the cutover.
    pub differences: Vec<Difference>,
    /// Partitions replaced or dropped live.
    pub replaced: usize,
    /// Why the table was left alone, if it was.
    pub skipped: Option<&'static str>,
    /// Every compared partition's checksum after the rebuild, by partition id.
    pub sums: BTreeMap<String, Sum>,
}

/// One projection's outcome.
#[derive(Debug, Clone)]
pub struct ProjectionReport {
    pub projection: &'static str,
    pub events: u64,
    pub rejected: u64,
    /// Stream sequence both sides hold everything up to.
    pub through_seq: u64,
    /// How long the live projector was held.
    pub held: Duration,
    pub tables: Vec<TableReport>,
}

impl ProjectionReport {
    /// Whether every compared partition matched before any cutover.
    pub fn matched(&self) -> bool {
        self.tables.iter().all(|t| t.differences.is_empty())
    }
}

/// Short names of the projections, in rebuild order.
pub fn projection_names() -> Vec<&'static str> {
    crate::NAMES
        .iter()
        .map(|n| n.trim_start_matches("proj_"))
        .collect()
}

/// The projections `only` names (all when empty).
pub fn select(only: &[String]) -> Result<Vec<&'static str>, ReplayError> {
    if only.is_empty() {
        return Ok(crate::NAMES.to_vec());
    }
    let mut chosen = BTreeSet::new();
    for want in only {
        let found = crate::NAMES.iter().find(|name| {
            **name == want
                || name.trim_start_matches("proj_") == want
                || crate::with_projection!(**name, p => p.tables().contains(&want.as_str()))
                    .unwrap_or(false)
        });
        match found {
            Some(name) => chosen.insert(*name),
            None => {
                return Err(ReplayError::Unknown(
                    want.clone(),
                    projection_names().join(", "),
                ));
            }
        };
    }
    Ok(crate::NAMES
        .iter()
        .copied()
        .filter(|n| chosen.contains(n))
        .collect())
}

/// Rebuilds (or with [`Options::check_only`] compares) the chosen projections one at a time.
pub async fn rebuild(
    js: &jetstream::Context,
    live: &ClickHouseConfig,
    options: &Options,
    progress: &(dyn Fn(Step<'_>) + Sync),
) -> Result<Vec<ProjectionReport>, ReplayError> {
    let chosen = select(&options.only)?;
    crate::ensure_tables(live).await?;
    let mut shadow = live.clone();
    shadow.database = shadow_database(&live.database);
    nerve_platform::clickhouse::ensure_database(&shadow).await?;
    let server = nerve_platform::clickhouse::server_client(live);
    for name in &chosen {
        let tables = crate::with_projection!(*name, p => p.tables()).unwrap_or_default();
        // Views first: one left behind would write into the recreated tables twice over.
        let views = match *name == crate::heartbeats::NAME {
            true => &crate::rollups::VIEWS[..],
            false => &[],
        };
        for table in views.iter().chain(tables).chain([&REJECTED_EVENTS]) {
            server
                .query(&format!("DROP TABLE IF EXISTS {}.{table}", shadow.database))
                .execute()
                .await?;
        }
    }
    crate::ensure_tables(&shadow).await?;
    let ctx = Ctx {
        js,
        server,
        shadow: nerve_platform::clickhouse::client(&shadow),
        live_db: live.database.clone(),
        shadow_db: shadow.database,
        options,
        progress,
    };
    let mut reports = Vec::new();
    for name in chosen {
        let report =
            crate::with_projection!(name, p => ctx.projection(p).await).expect("a known name")?;
        reports.push(report);
    }
    Ok(reports)
}

struct Ctx<'a> {
    js: &'a jetstream::Context,
    /// Unqualified client, for SQL naming both databases.
    server: Client,
    shadow: Client,
    live_db: String,
    shadow_db: String,
    options: &'a Options,
    progress: &'a (dyn Fn(Step<'_>) + Sync),
}

impl Ctx<'_> {
    async fn projection<P: Projection + Copy>(
        &self,
        p: P,
    ) -> Result<ProjectionReport, ReplayError> {
        let name = p.name();
        let stream_name = p.stream();
        let mut stream = self
            .js
            .get_stream(stream_name)
            .await
            .map_err(|e| stream_error(stream_name, e))?;
        let start = match self.options.from_ms {
            // A day early: an event may claim a time up to a day past when it was stored.
            Some(ms) => Start::Time(month_start_ms(ms) - crate::runner::MAX_CLOCK_SKEW_MS),
            None => Start::All,
        };
        let mut report = ProjectionReport {
            projection: name,
            events: 0,
            rejected: 0,
            through_seq: self.written(&mut stream, name).await?,
            held: Duration::ZERO,
            tables: Vec::new(),
        };
        self.fold(&p, &stream, start, report.through_seq, &mut report)
            .await?;

        let held_at = Instant::now();
        let held = self.hold(&mut stream, name).await?;
        (self.progress)(Step::Holding { projection: name });
        let outcome = async {
            let through = match held {
                Some(seq) => seq,
                None => self.written(&mut stream, name).await?,
            };
            if through > report.through_seq {
                let from = report.through_seq + 1;
                self.fold(&p, &stream, Start::After(from - 1), through, &mut report)
                    .await?;
                report.through_seq = through;
            }
            // The pause ends by itself at the lease: no cutover after that.
            let until = held_at + self.options.hold_lease;
            for table in p.tables() {
                report.tables.push(self.compare(table, None, until).await?);
            }
            report
                .tables
                .push(self.compare(REJECTED_EVENTS, Some(name), until).await?);
            Ok::<_, ReplayError>(())
        }
        .await;
        if held.is_some() {
            stream
                .resume_consumer(name)
                .await
                .map_err(|e| hold_error(name, e))?;
        }
        report.held = held_at.elapsed();
        outcome?;
        Ok(report)
    }

    /// How far the live projector `name` has written: all it acknowledged, or without one
    /// (never started), the whole log.
    async fn written(
        &self,
        stream: &mut jetstream::stream::Stream,
        name: &str,
    ) -> Result<u64, ReplayError> {
        let stream_name = stream.cached_info().config.name.clone();
        match stream.consumer_info(name).await {
            Ok(info) => Ok(info.ack_floor.stream_sequence),
            Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => stream
                .info()
                .await
                .map(|i| i.state.last_sequence)
                .map_err(|e| stream_error(&stream_name, e)),
            Err(e) => Err(stream_error(&stream_name, e)),
        }
    }

    /// Holds the live projector `name` still: pauses its durable consumer (JetStream then hands
    /// no event to any of its instances) until the lease ends, and waits until everything it
    /// was handed is written and acknowledged. Returns how far it has written; `None` when it
    /// has no consumer (nothing to hold).
    async fn hold(
        &self,
        stream: &mut jetstream::stream::Stream,
        name: &str,
    ) -> Result<Option<u64>, ReplayError> {
        match stream.consumer_info(name).await {
            Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(hold_error(name, e)),
            Ok(_) => {}
        }
        let lease = self.options.hold_lease;
        let until = time::OffsetDateTime::now_utc() + lease;
        stream
            .pause_consumer(name, until)
            .await
            .map_err(|e| hold_error(name, e))?;
        let deadline = Instant::now() + lease / 2;
        loop {
            let info = stream
                .consumer_info(name)
                .await
                .map_err(|e| hold_error(name, e))?;
            if info.num_ack_pending == 0 {
                return Ok(Some(info.ack_floor.stream_sequence));
            }
            if Instant::now() > deadline {
                let _ = stream.resume_consumer(name).await;
                return Err(hold_error(
                    name,
                    format!(
                        "{} events still unacknowledged after {} s (is it retrying a failed \
                         write? see its log)",
                        info.num_ack_pending,
                        (lease / 2).as_secs()
                    ),
                ));
            }
            // Its last batch is being written (at most `projector.batch_max_wait_ms` plus one
            // insert away).
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Folds `p`'s history from `start` through sequence `until` into the shadow tables.
    async fn fold<P: Projection + Copy>(
        &self,
        p: &P,
        stream: &jetstream::stream::Stream,
        start: Start,
        until: u64,
        report: &mut ProjectionReport,
    ) -> Result<(), ReplayError> {
        let total = |events| {
            (self.progress)(Step::Started {
                projection: p.name(),
                events,
            })
        };
        // One batch is written while the next is read and decoded (in order: one write at a
        // time), so decoding and ClickHouse's inserts overlap.
        type Written = Result<(u64, u64), clickhouse::error::Error>;
        let mut writing: Option<tokio::task::JoinHandle<Written>> = None;
        let (mut events, mut rejected_n) = (0, 0);
        let mut finish = async |writing: Option<tokio::task::JoinHandle<Written>>| {
            if let Some(w) = writing {
                let (e, r) = w.await.map_err(|e| HistoryError::Write(e.to_string()))??;
                events += e;
                rejected_n += r;
            }
            Ok::<_, HistoryError>(())
        };
        let write = async |batch: &[Logged<'_>]| {
            let (items, rejected) = decode_all(p, batch.iter().copied());
            finish(writing.take()).await?;
            let (p, ch) = (*p, self.shadow.clone());
            writing = Some(tokio::spawn(async move {
                if !items.is_empty() {
                    p.write(&ch, &items).await?;
                }
                rejected::write(&ch, &rejected).await?;
                Ok((items.len() as u64, rejected.len() as u64))
            }));
            (self.progress)(Step::Folded {
                events: batch.len() as u64,
            });
            Ok(())
        };
        let archive = self.options.archive.as_ref();
        let batch = self.options.batch_events;
        let read = history::read(stream, archive, start, until, batch, total, write).await;
        finish(writing.take()).await?;
        read?;
        report.events += events;
        report.rejected += rejected_n;
        Ok(())
    }

    /// Compares `table` live and rebuilt, and cuts over the partitions in scope that differ.
    /// `projector`: only that projector's rows (of the shared `rejected_events`). `until`: when
    /// the live projector's hold ends.
    async fn compare(
        &self,
        table: &'static str,
        projector: Option<&str>,
        until: Instant,
    ) -> Result<TableReport, ReplayError> {
        let (ch, live_db, shadow_db) = (&self.server, &self.live_db, &self.shadow_db);
        let shape = partitions::shape(ch, shadow_db, table).await?;
        let mut report = TableReport {
            table,
            partitions: 0,
            differences: Vec::new(),
            replaced: 0,
            skipped: None,
            sums: BTreeMap::new(),
        };
        let from = match (self.options.from_ms, shape.by_time) {
            (None, _) => None,
            (Some(ms), Some(monthly)) => {
                Some(partitions::floor(time_of(month_start_ms(ms)), monthly))
            }
            (Some(_), None) => {
                report.skipped = Some("a current-state table needs the whole log");
                return Ok(report);
            }
        };
        // Retention dropped what lies before its floor: folding the log again must not
        // bring that back.
        let kept =
            crate::retention::kept_from(table, &self.options.retention, nerve_platform::now_ms());
        let from = match (from, kept) {
            (Some(f), Some(k)) => Some(f.max(k)),
            (f, k) => f.or(k),
        };
        let hash = partitions::row_hash(ch, shadow_db, table).await?;
        let sums = |db| partitions::sums(ch, db, table, shape, &hash, projector, from.as_deref());
        let live = sums(live_db).await?;
        let rebuilt = sums(shadow_db).await?;
        let ids: BTreeSet<&String> = live.keys().chain(rebuilt.keys()).collect();
        report.partitions = ids.len();
        for id in ids {
            let (l, r) = (live.get(id).copied(), rebuilt.get(id).copied());
            if l != r {
                report.differences.push(Difference {
                    partition_id: id.clone(),
                    live: l,
                    rebuilt: r,
                });
            }
        }
        report.sums = rebuilt;
        if self.options.check_only || report.differences.is_empty() {
            return Ok(report);
        }
        if Instant::now() >= until {
            return Err(ReplayError::Hold {
                projection: table.into(),
                message: "the hold's lease ran out before the cutover; nothing was replaced \
                          (give a longer --hold-secs)"
                    .into(),
            });
        }
        if let Some(p) = projector {
            // Shared with the other projectors: add what is missing (keyed, so no duplicate).
            ch.query(&format!(
                "INSERT INTO {live_db}.{table} SELECT * FROM {shadow_db}.{table} WHERE projector = ?"
            ))
            .bind(p)
            .execute()
            .await?;
            report.replaced = report.differences.len();
            return Ok(report);
        }
        for d in &report.differences {
            let present = d.rebuilt.is_some();
            if partitions::take(ch, live_db, shadow_db, table, &d.partition_id, present).await? {
                report.replaced += 1;
            }
        }
        Ok(report)
    }
}

/// The start (UTC) of the month holding `ms`.
fn month_start_ms(ms: i64) -> i64 {
    let t = time_of(ms);
    let start = t
        .replace_day(1)
        .map(|t| t.replace_time(time::Time::MIDNIGHT))
        .unwrap_or(t);
    (start.unix_timestamp_nanos() / 1_000_000) as i64
}

fn time_of(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_time_scopes_whole_months_of_partitions() {
        // 2026-12-03 10:00 UTC
        let ms = 1_796_292_000_000;
        let month = time_of(month_start_ms(ms));
        assert_eq!(partitions::floor(month, true), "202612");
        assert_eq!(partitions::floor(month, false), "20261201");
        assert_eq!(month_start_ms(ms), 1_796_083_200_000);
    }

    #[test]
    fn projections_are_chosen_by_name_short_name_or_table() {
        let all = select(&[]).unwrap();
        assert_eq!(all.len(), crate::NAMES.len());
        assert_eq!(
            select(&["node_state".into(), "proj_control".into(), "tasks".into()]).unwrap(),
            vec![
                crate::heartbeats::NAME,
                crate::tasks::NAME,
                crate::control::NAME
            ]
        );
        let e = select(&["nope".into()]).unwrap_err().to_string();
        assert!(e.contains("heartbeats, inventory"), "{e}");
    }
}
