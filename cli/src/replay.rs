//! `nerve replay`: rebuilds the read models from the log while the live projectors run, or with
//! `--check` only compares them, partition by partition.

use std::time::Duration;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use nerve_ingest::archive::Archive;
use nerve_platform::config::Config;
use nerve_projections::replay::{self, Options, ProjectionReport, Step};

/// What `nerve replay` takes.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Projections (heartbeats, inventory, node_events, tasks, control, alerts, audit) or
    /// tables to rebuild; all when none is named.
    #[arg(long, value_delimiter = ',')]
    tables: Vec<String>,
    /// Rebuild only the time-partitioned tables, from the start of this time's month
    /// (RFC 3339, e.g. 2026-11-03T14:03:00Z).
    #[arg(long)]
    from: Option<String>,
    /// Compare only: report every partition that differs, change nothing (exit 1 if any does).
    #[arg(long)]
    check: bool,
    /// Longest the live projector is held still during a cutover (seconds); it resumes by
    /// itself after that.
    #[arg(long, default_value_t = 60)]
    hold_secs: u64,
    /// The archive to read before the streams (default: `archive.dir` when `archive.enabled`).
    #[arg(long)]
    archive: Option<std::path::PathBuf>,
}

pub async fn run(config: &Config, args: ReplayArgs) -> anyhow::Result<()> {
    if !config.clickhouse.cluster.is_empty() {
        anyhow::bail!(
            "nerve replay rebuilds through shadow tables on one ClickHouse server; with \
             clickhouse.cluster = {:?} it does not run yet (docs/operations.md: rebuilding a \
             cluster's tables)",
            config.clickhouse.cluster
        );
    }
    let from_ms = args
        .from
        .as_deref()
        .map(|t| millis(t, "--from"))
        .transpose()?;
    let options = Options {
        only: args.tables,
        from_ms,
        check_only: args.check,
        hold_lease: Duration::from_secs(args.hold_secs.max(1)),
        archive: archive(args.archive, config)?,
        retention: config.retention.clone(),
        ..Options::default()
    };
    let client =
        nerve_ingest::connect(&config.nats, nerve_ingest::Who::Role("replay"), false).await?;
    let js = async_nats::jetstream::new(client);
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{prefix:>16} [{bar:30}] {human_pos}/{human_len} events {per_sec} eta {eta} {msg}",
        )?
        .progress_chars("=> "),
    );
    let progress = |step: Step<'_>| match step {
        Step::Started { projection, events } => {
            bar.set_prefix(projection.trim_start_matches("proj_").to_owned());
            bar.set_message("");
            bar.reset();
            bar.set_length(events);
        }
        Step::Folded { events } => bar.inc(events),
        Step::Holding { .. } => bar.set_message("holding live, comparing"),
    };
    let reports = replay::rebuild(&js, &config.clickhouse, &options, &progress).await?;
    bar.finish_and_clear();
    let mut differing = 0;
    for report in &reports {
        differing += print(report, args.check);
    }
    if args.check && differing > 0 {
        println!("{differing} partitions differ");
        std::process::exit(1);
    }
    Ok(())
}

/// An RFC 3339 time (`what` names the option) in ms since the epoch.
pub(crate) fn millis(t: &str, what: &str) -> anyhow::Result<i64> {
    Ok(humantime::parse_rfc3339_weak(t)
        .with_context(|| format!("{what} {t:?} is not an RFC 3339 time"))?
        .duration_since(std::time::UNIX_EPOCH)
        .with_context(|| format!("{what} is before 1970"))?
        .as_millis() as i64)
}

/// The archive to read: the directory given, else the configured one (its bucket or
/// directory) when archiving is on.
pub(crate) fn archive(
    given: Option<std::path::PathBuf>,
    config: &Config,
) -> anyhow::Result<Option<Archive>> {
    Ok(match given {
        Some(dir) => Some(Archive::open(dir)),
        None if config.archive.enabled => Some(Archive::configured(&config.archive)?),
        None => None,
    })
}

/// Prints one projection's outcome; returns how many partitions differed.
fn print(report: &ProjectionReport, check: bool) -> usize {
    println!(
        "{}: {} events folded ({} rejected) through stream sequence {}, live held {} ms",
        report.projection.trim_start_matches("proj_"),
        report.events,
        report.rejected,
        report.through_seq,
        report.held.as_millis()
    );
    let mut differing = 0;
    for t in &report.tables {
        if let Some(why) = t.skipped {
            println!("  {:<24} skipped: {why}", t.table);
            continue;
        }
        let verdict = match (t.differences.len(), check) {
            (0, _) => "identical".to_owned(),
            (n, true) => format!("{n} differ"),
            (n, false) => format!("{n} differed, {} replaced", t.replaced),
        };
        println!("  {:<24} {:>4} partitions {verdict}", t.table, t.partitions);
        for d in &t.differences {
            let show = |s: Option<replay::Sum>| {
                s.map_or("absent".to_owned(), |s| {
                    format!("{} rows #{:016x}", s.rows, s.hash)
                })
            };
            println!(
                "    partition {}: live {}, rebuilt {}",
                d.partition_id,
                show(d.live),
                show(d.rebuilt)
            );
        }
        differing += t.differences.len();
    }
    differing
}
