//! Archive rules: the archive's lag behind each stream ([`nerve_ingest::archive::behind`]), as a
//! percentage of the stream's `max_age`, against the rule's threshold; the alert's node is the
//! stream. The evaluator also runs the built-in `archive-lag` rule ([`builtin`]) wherever the
//! archive is configured, so an archive falling behind is told before events expire unsealed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use nerve_ingest::archive::Archive;
use nerve_platform::config::ArchiveConfig;
use nerve_projections::control::RuleRow;

use crate::AlertsError;
use crate::book::Holding;
use crate::rule::{Kind, Metric, Op, Severity};
use crate::rules::Rule;

/// The archive and the streams it keeps, as the evaluator watches them.
#[derive(Debug, Clone)]
pub struct Watch {
    pub archive: Archive,
    pub streams: Vec<String>,
    /// The built-in rule's threshold (0: none) and channels.
    pub alert_lag_pct: f64,
    pub alert_channels: Vec<String>,
    /// How long a manifest's last sequence is trusted before it is read again (a manifest
    /// grows by a line per file: reading it every round would cost more than it tells).
    pub refresh: Duration,
    sealed: Arc<Mutex<HashMap<String, (Instant, u64)>>>,
}

impl Watch {
    /// A watch over `streams` of `archive`, re-reading manifests after `refresh`.
    pub fn new(archive: Archive, streams: Vec<String>, refresh: Duration) -> Self {
        Self {
            archive,
            streams,
            alert_lag_pct: 0.0,
            alert_channels: Vec::new(),
            refresh,
            sealed: Arc::default(),
        }
    }

    /// The watch over `streams` of `archive` (the one `config` names), with its built-in rule.
    pub fn configured(archive: Archive, config: &ArchiveConfig, streams: Vec<String>) -> Self {
        Self {
            alert_lag_pct: config.alert_lag_pct,
            alert_channels: config.alert_channels.clone(),
            ..Self::new(archive, streams, Duration::from_secs(60))
        }
    }

    /// The last sequence of `stream` sealed, as the manifest said at most `refresh` ago.
    async fn sealed(&self, stream: &str) -> Result<u64, AlertsError> {
        let cached = self.sealed.lock().ok().and_then(|m| m.get(stream).copied());
        if let Some((at, seq)) = cached
            && at.elapsed() < self.refresh
        {
            return Ok(seq);
        }
        let (archive, name) = (self.archive.clone(), stream.to_owned());
        let seq = tokio::task::spawn_blocking(move || archive.last_seq(&name))
            .await
            .map_err(|e| AlertsError::Archive(e.to_string()))?
            .map_err(|e| AlertsError::Archive(e.to_string()))?;
        if let Ok(mut m) = self.sealed.lock() {
            m.insert(stream.to_owned(), (Instant::now(), seq));
        }
        Ok(seq)
    }
}

/// The built-in rule's id (fixed, so its alerts survive restarts).
pub const BUILTIN_RULE_ID: &str = "00000000-0000-7000-8000-00000000a1a9";

/// The built-in `archive-lag` rule, as a stored row, when `watch` asks for one.
pub fn builtin(watch: &Watch) -> Option<RuleRow> {
    (watch.alert_lag_pct > 0.0).then(|| RuleRow {
        rule_id: BUILTIN_RULE_ID.to_owned(),
        name: "archive-lag".to_owned(),
        description: "Built in (archive.alert_lag_pct): events near their stream's max_age are \
                      not archived yet."
            .to_owned(),
        kind: Kind::Archive.as_str().to_owned(),
        metric: Metric::ArchiveLagPct.as_str().to_owned(),
        aggregate: String::new(),
        op: Op::Ge.as_str().to_owned(),
        threshold: watch.alert_lag_pct,
        window_secs: 0,
        for_secs: 0,
        resolve_after_secs: 0,
        severity: Severity::Critical.as_str().to_owned(),
        clusters: Vec::new(),
        labels: Vec::new(),
        node_ids: Vec::new(),
        channels: watch.alert_channels.clone(),
        enabled: 1,
        deleted: 0,
        updated_at_ms: 0,
        updated_by: "nerve".to_owned(),
        stream_seq: 0,
    })
}

/// The streams whose archive lag meets `rule` at `now_ms`.
pub async fn holding(
    js: &jetstream::Context,
    watch: Option<&Watch>,
    rule: &Rule,
    now_ms: i64,
) -> Result<HashMap<String, Holding>, AlertsError> {
    let watch = watch.ok_or_else(|| {
        AlertsError::Archive("none is configured where the evaluator runs".into())
    })?;
    let mut held = HashMap::new();
    for stream in &watch.streams {
        let sealed = watch.sealed(stream).await?;
        let behind = nerve_ingest::archive::behind(js, stream, sealed, now_ms)
            .await
            .map_err(|e| AlertsError::Archive(format!("its lag behind {stream}: {e}")))?;
        let value = behind.pct();
        if rule.op.holds(value, rule.threshold) {
            held.insert(
                stream.clone(),
                Holding {
                    value,
                    since_ms: None,
                },
            );
        }
    }
    Ok(held)
}
