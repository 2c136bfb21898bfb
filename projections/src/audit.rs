//! Audit projection: the audit stream (`AuditRecorded`) → `audit_log`, one row per audited API
//! call, append-only (the runner drops redelivered entries by event id). `node_id` is the API
//! instance whose chain the entry belongs to; `nerve audit verify` checks the chains on the
//! stream itself, the table is for searching.

use clickhouse::{Client, Row};
use nerve_schemas::{AuditEvent, AuditRecorded};
use serde::{Deserialize, Serialize};

use crate::runner::{EventKey, Positioned, Projection, insert_rows, validate_envelope};

/// Durable consumer name.
pub const NAME: &str = "proj_audit";

/// Table: every audited API call.
pub const AUDIT_LOG: &str = "audit_log";

pub fn ddl(db: &str) -> Vec<String> {
    vec![format!(
        "CREATE TABLE IF NOT EXISTS {db}.{AUDIT_LOG} (
            node_id String,
            ts DateTime('UTC'),
            ts_ms UInt64,
            event_id UUID,
            seq UInt64,
            hash String,
            actor_token_id String,
            actor_name String,
            actor_role String,
            method String,
            route String,
            targets Array(String),
            body_sha256 String,
            peer String,
            user_agent String,
            status UInt16,
            outcome String,
            stream_seq UInt64
        ) ENGINE = MergeTree()
        PARTITION BY toYYYYMM(ts)
        ORDER BY (ts, node_id, seq)"
    )]
}

/// A validated audit entry.
#[derive(Debug)]
pub struct Decoded {
    pub entry: AuditRecorded,
    pub event_id: uuid::Uuid,
}

/// Folds audit entries.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditProjection;

impl Projection for AuditProjection {
    type Item = Decoded;

    fn name(&self) -> &'static str {
        NAME
    }

    fn stream(&self) -> &'static str {
        nerve_ingest::AUDIT_STREAM
    }

    fn decode(&self, subject: &str, payload: &[u8], published_ms: i64) -> Result<Decoded, String> {
        let AuditEvent::AuditRecorded(entry) =
            AuditEvent::decode(payload).map_err(|e| e.to_string())?;
        if entry.instance_id != entry.envelope.node_id {
            return Err("instance_id differs from the envelope's node_id".into());
        }
        if entry.seq < 1 || !(100..=599).contains(&entry.status) {
            return Err(format!(
                "implausible seq {} or status {}",
                entry.seq, entry.status
            ));
        }
        let event_id = validate_envelope(&entry.envelope, subject, published_ms)?;
        Ok(Decoded { entry, event_id })
    }

    fn key(item: &Decoded) -> EventKey<'_> {
        EventKey::of(&item.entry.envelope)
    }

    fn tables(&self) -> &'static [&'static str] {
        &[AUDIT_LOG]
    }

    fn append_only_table(&self) -> Option<&'static str> {
        Some(AUDIT_LOG)
    }

    async fn write(
        &self,
        ch: &Client,
        items: &[Positioned<Decoded>],
    ) -> Result<(), clickhouse::error::Error> {
        let rows: Vec<AuditRow> = items
            .iter()
            .map(|p| AuditRow::of(&p.item.entry, p.item.event_id, p.stream_seq))
            .collect();
        insert_rows(ch, AUDIT_LOG, &rows).await
    }
}

/// A row of `audit_log`; the API reads entries back as this.
#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct AuditRow {
    pub node_id: String,
    pub ts: u32,
    pub ts_ms: u64,
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: uuid::Uuid,
    pub seq: u64,
    pub hash: String,
    pub actor_token_id: String,
    pub actor_name: String,
    pub actor_role: String,
    pub method: String,
    pub route: String,
    pub targets: Vec<String>,
    pub body_sha256: String,
    pub peer: String,
    pub user_agent: String,
    pub status: u16,
    pub outcome: String,
    pub stream_seq: u64,
}

impl AuditRow {
    fn of(e: &AuditRecorded, event_id: uuid::Uuid, stream_seq: u64) -> Self {
        let at = e.envelope.occurred_at_ms.max(0) as u64;
        Self {
            node_id: e.instance_id.clone(),
            ts: (at / 1000).min(u64::from(u32::MAX)) as u32,
            ts_ms: at,
            event_id,
            seq: e.seq.max(0) as u64,
            hash: e.hash.clone(),
            actor_token_id: e.actor_token_id.clone(),
            actor_name: e.actor_name.clone(),
            actor_role: e.actor_role.clone(),
            method: e.method.clone(),
            route: e.route.clone(),
            targets: e.targets.clone(),
            body_sha256: e.body_sha256.clone(),
            peer: e.peer.clone(),
            user_agent: e.user_agent.clone(),
            status: e.status.clamp(0, i32::from(u16::MAX)) as u16,
            outcome: e.outcome.clone(),
            stream_seq,
        }
    }
}
