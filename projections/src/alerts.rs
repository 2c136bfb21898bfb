//! Alerts projection: the alerts stream (`AlertFired`, `AlertResolved`) → `alert_log` (every
//! firing and resolution, the history) and `alerts` (each alert's current state,
//! ReplacingMergeTree keyed by alert id, last event wins; a resolution carries the firing's
//! fields, so the row stays whole).

use clickhouse::{Client, Row};
pub use nerve_schemas::AlertEvent;
use serde::{Deserialize, Serialize};

use crate::runner::{EventKey, Positioned, Projection, insert_rows, validate_envelope};

/// Durable consumer name.
pub const NAME: &str = "proj_alerts";

/// Table: Every firing and resolution (history).
pub const ALERT_LOG: &str = "alert_log";
/// Table: Each alert's current state.
pub const ALERTS: &str = "alerts";

pub fn ddl(db: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{ALERT_LOG} (
                node_id String,
                ts DateTime('UTC'),
                ts_ms UInt64,
                event_id UUID,
                kind String,
                alert_id String,
                rule_id String,
                rule_name String,
                severity String,
                value Nullable(Float64),
                threshold Float64,
                summary String,
                reason String,
                silenced_by String,
                stream_seq UInt64
            ) ENGINE = MergeTree()
            PARTITION BY toYYYYMM(ts)
            ORDER BY (ts, node_id)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{ALERTS} (
                alert_id String,
                rule_id String,
                node_id String,
                rule_name String,
                severity String,
                state String,
                value Nullable(Float64),
                threshold Float64,
                summary String,
                pending_since_ms UInt64,
                fired_at_ms UInt64,
                resolved_at_ms UInt64,
                resolve_reason String,
                silenced_by String,
                stream_seq UInt64
            ) ENGINE = ReplacingMergeTree(stream_seq)
            ORDER BY alert_id"
        ),
    ]
}

/// The alert and rule an alert event is about.
fn ids(event: &AlertEvent) -> (&str, &str) {
    match event {
        AlertEvent::AlertFired(e) => (&e.alert_id, &e.rule_id),
        AlertEvent::AlertResolved(e) => (&e.alert_id, &e.rule_id),
    }
}

/// A validated alert event.
#[derive(Debug)]
pub struct Decoded {
    pub event: AlertEvent,
    pub event_id: uuid::Uuid,
}

/// Folds alert events.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlertsProjection;

impl Projection for AlertsProjection {
    type Item = Decoded;

    fn name(&self) -> &'static str {
        NAME
    }

    fn stream(&self) -> &'static str {
        nerve_ingest::ALERTS_STREAM
    }

    fn decode(&self, subject: &str, payload: &[u8], published_ms: i64) -> Result<Decoded, String> {
        let event = AlertEvent::decode(payload).map_err(|e| e.to_string())?;
        let (alert_id, rule_id) = ids(&event);
        if uuid::Uuid::parse_str(alert_id).is_err() || uuid::Uuid::parse_str(rule_id).is_err() {
            return Err("alert_id and rule_id must be UUIDs".into());
        }
        let expected = nerve_schemas::subjects::alert(rule_id, &event.envelope().node_id);
        if subject != expected {
            return Err(format!("event does not belong on subject {subject}"));
        }
        let event_id = validate_envelope(event.envelope(), subject, published_ms)?;
        Ok(Decoded { event, event_id })
    }

    fn key(item: &Decoded) -> EventKey<'_> {
        EventKey::of(item.event.envelope())
    }

    fn tables(&self) -> &'static [&'static str] {
        &[ALERTS, ALERT_LOG]
    }

    fn append_only_table(&self) -> Option<&'static str> {
        Some(ALERT_LOG)
    }

    async fn write(
        &self,
        ch: &Client,
        items: &[Positioned<Decoded>],
    ) -> Result<(), clickhouse::error::Error> {
        let mut log = Vec::with_capacity(items.len());
        let mut current = Vec::with_capacity(items.len());
        for p in items {
            let env = p.item.event.envelope();
            let at = env.occurred_at_ms.max(0) as u64;
            let ms = |v: i64| v.max(0) as u64;
            let (row, reason) = match &p.item.event {
                AlertEvent::AlertFired(e) => (
                    AlertRow {
                        state: "firing".into(),
                        value: Some(e.value),
                        pending_since_ms: ms(e.pending_since_ms),
                        fired_at_ms: at,
                        ..AlertRow::of(&env.node_id, e.alert_id.as_str(), &e.rule_id, p.stream_seq)
                    }
                    .named(
                        &e.rule_name,
                        &e.severity,
                        e.threshold,
                        &e.summary,
                        &e.silenced_by,
                    ),
                    "",
                ),
                AlertEvent::AlertResolved(e) => (
                    AlertRow {
                        state: "resolved".into(),
                        value: e.value,
                        fired_at_ms: ms(e.fired_at_ms),
                        resolved_at_ms: at,
                        resolve_reason: e.reason.clone(),
                        ..AlertRow::of(&env.node_id, e.alert_id.as_str(), &e.rule_id, p.stream_seq)
                    }
                    .named(
                        &e.rule_name,
                        &e.severity,
                        e.threshold,
                        &e.summary,
                        &e.silenced_by,
                    ),
                    e.reason.as_str(),
                ),
            };
            log.push(LogRow {
                node_id: env.node_id.clone(),
                ts: (at / 1000).min(u64::from(u32::MAX)) as u32,
                ts_ms: at,
                event_id: p.item.event_id,
                kind: env.schema_name.clone(),
                alert_id: row.alert_id.clone(),
                rule_id: row.rule_id.clone(),
                rule_name: row.rule_name.clone(),
                severity: row.severity.clone(),
                value: row.value,
                threshold: row.threshold,
                summary: row.summary.clone(),
                reason: reason.to_owned(),
                silenced_by: row.silenced_by.clone(),
                stream_seq: p.stream_seq,
            });
            current.push(row);
        }
        insert_rows(ch, ALERTS, &current).await?;
        // Last: an event found here had everything above written.
        insert_rows(ch, ALERT_LOG, &log).await
    }
}

/// A row of `alert_log`; the API reads the history back as this too.
#[derive(Debug, Row, Serialize, Deserialize)]
pub struct LogRow {
    pub node_id: String,
    pub ts: u32,
    pub ts_ms: u64,
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: uuid::Uuid,
    pub kind: String,
    pub alert_id: String,
    pub rule_id: String,
    pub rule_name: String,
    pub severity: String,
    pub value: Option<f64>,
    pub threshold: f64,
    pub summary: String,
    pub reason: String,
    pub silenced_by: String,
    pub stream_seq: u64,
}

/// A row of `alerts`; the API reads alerts back as this too.
#[derive(Debug, Default, Row, Serialize, Deserialize)]
pub struct AlertRow {
    pub alert_id: String,
    pub rule_id: String,
    pub node_id: String,
    pub rule_name: String,
    pub severity: String,
    pub state: String,
    pub value: Option<f64>,
    pub threshold: f64,
    pub summary: String,
    pub pending_since_ms: u64,
    pub fired_at_ms: u64,
    pub resolved_at_ms: u64,
    pub resolve_reason: String,
    pub silenced_by: String,
    pub stream_seq: u64,
}

impl AlertRow {
    fn of(node_id: &str, alert_id: &str, rule_id: &str, stream_seq: u64) -> Self {
        Self {
            alert_id: alert_id.to_owned(),
            rule_id: rule_id.to_owned(),
            node_id: node_id.to_owned(),
            stream_seq,
            ..Self::default()
        }
    }

    fn named(
        self,
        rule_name: &str,
        severity: &str,
        threshold: f64,
        summary: &str,
        silenced_by: &str,
    ) -> Self {
        Self {
            rule_name: rule_name.to_owned(),
            severity: severity.to_owned(),
            threshold,
            summary: summary.to_owned(),
            silenced_by: silenced_by.to_owned(),
            ..self
        }
    }
}
