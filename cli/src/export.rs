//! `nerve export`: the events published between two times — from the archive, then the streams —
//! as Avro container files (one per stream, the archive's format) with `manifest.json` and
//! `SHA256SUMS` (`sha256sum -c SHA256SUMS` checks them), for an auditor to take away.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use nerve_ingest::archive::{FileWriter, Record, Sealed};
use nerve_platform::config::Config;
use nerve_projections::history::{self, Start};

/// What `nerve export` takes.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// First publish time included (RFC 3339, e.g. 2026-11-03T14:00:00Z).
    #[arg(long)]
    from: String,
    /// First publish time no longer included (RFC 3339).
    #[arg(long)]
    to: String,
    /// Only events whose subject names one of these nodes.
    #[arg(long, value_delimiter = ',')]
    node: Vec<String>,
    /// Only these streams (NERVE_TELEMETRY or telemetry, …); all when none is named.
    #[arg(long, value_delimiter = ',')]
    stream: Vec<String>,
    /// The archive to read before the streams (default: `archive.dir` when `archive.enabled`).
    #[arg(long)]
    archive: Option<PathBuf>,
    /// Where to write (created; must be empty).
    dir: PathBuf,
}

/// What `manifest.json` says.
struct Manifest {
    from: String,
    to: String,
    nodes: Vec<String>,
    events: u64,
    files: Vec<Sealed>,
}

pub async fn run(config: &Config, args: ExportArgs) -> anyhow::Result<()> {
    let from_ms = crate::replay::millis(&args.from, "--from")?;
    let to_ms = crate::replay::millis(&args.to, "--to")?;
    if from_ms >= to_ms {
        bail!("--from must be before --to");
    }
    let all: Vec<String> = nerve_ingest::stream_configs(&config.streams)
        .into_iter()
        .map(|s| s.name)
        .collect();
    let mut streams = Vec::new();
    for want in &args.stream {
        let name = format!("NERVE_{}", want.trim_start_matches("NERVE_").to_uppercase());
        if !all.contains(&name) {
            bail!("unknown stream {want:?} (streams: {})", all.join(", "));
        }
        streams.push(name);
    }
    if streams.is_empty() {
        streams = all;
    }
    prepare(&args.dir)?;
    let archive = crate::replay::archive(args.archive.clone(), config)?;
    let client =
        nerve_ingest::connect(&config.nats, nerve_ingest::Who::Role("export"), false).await?;
    let js = async_nats::jetstream::new(client);
    let mut manifest = Manifest {
        from: args.from.clone(),
        to: args.to.clone(),
        nodes: args.node.clone(),
        events: 0,
        files: Vec::new(),
    };
    for name in &streams {
        let mut stream = js
            .get_stream(name)
            .await
            .with_context(|| format!("stream {name}"))?;
        let state = stream.info().await?.state.clone();
        let archived_from = match &archive {
            Some(a) => a.manifest(name)?.first().map(|s| s.first_seq),
            None => None,
        };
        // Refuse to hand over less than was asked for without saying so.
        let earliest_ms = (state.first_timestamp.unix_timestamp_nanos() / 1_000_000) as i64;
        if state.first_sequence > 1 && archived_from != Some(1) && from_ms < earliest_ms {
            bail!(
                "{name}: events before {} are no longer in the stream and not in the archive \
                 (give --archive, or a later --from)",
                state.first_timestamp
            );
        }
        let path = args.dir.join(format!("{name}.avro"));
        let mut file = FileWriter::create(&path, name)?;
        let each = async |batch: &[nerve_projections::logged::Logged<'_>]| {
            for e in batch {
                let named = args.node.is_empty()
                    || nerve_schemas::subjects::node_id_of(e.subject)
                        .is_some_and(|n| args.node.iter().any(|want| want == n));
                if (from_ms..to_ms).contains(&e.published_ms) && named {
                    file.append(&Record {
                        stream_seq: e.stream_seq as i64,
                        published_ms: e.published_ms,
                        subject: e.subject.to_owned(),
                        msg_id: e.msg_id.to_owned(),
                        event: e.payload.to_vec(),
                    })?;
                }
            }
            Ok(())
        };
        let start = Start::Time(from_ms);
        let last = state.last_sequence;
        history::read(&stream, archive.as_ref(), start, last, 10_000, |_| {}, each).await?;
        let mut sealed = file.finish()?;
        sealed.file = PathBuf::from(format!("{name}.avro"));
        println!("{name}: {} events", sealed.count);
        manifest.events += sealed.count;
        manifest.files.push(sealed);
    }
    let text = serde_json::to_string_pretty(&serde_json::json!({
        "from": manifest.from,
        "to": manifest.to,
        "nodes": manifest.nodes,
        "events": manifest.events,
        "files": manifest.files,
    }))?;
    std::fs::write(args.dir.join("manifest.json"), &text)?;
    let (_, manifest_sha) = nerve_ingest::archive::digest(&args.dir.join("manifest.json"))?;
    let mut sums: String = manifest
        .files
        .iter()
        .map(|f| format!("{}  {}\n", f.sha256, f.file.display()))
        .collect();
    sums.push_str(&format!("{manifest_sha}  manifest.json\n"));
    std::fs::write(args.dir.join("SHA256SUMS"), sums)?;
    println!(
        "{} events in {} files under {} (check: cd {} && sha256sum -c SHA256SUMS)",
        manifest.events,
        manifest.files.len(),
        args.dir.display(),
        args.dir.display()
    );
    Ok(())
}

/// Creates `dir`, or accepts it empty.
fn prepare(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if std::fs::read_dir(dir)?.next().is_some() {
        bail!("{} is not empty", dir.display());
    }
    Ok(())
}
