//! The audit trail: every change made through the API and every refused call becomes an
//! `AuditRecorded` event on the audit stream, chained per instance (each entry holds the hash of
//! the one before), written *before* the change it describes, so a change the trail cannot
//! record is never made. Also: reading the trail back (`GET /api/v1/audit`) and [`verify`],
//! which checks every chain on the stream.

use std::collections::HashMap;

use futures::StreamExt;
use nerve_ingest::{EventLog, PublishError};
use nerve_projections::audit::{AUDIT_LOG, AuditRow};
use nerve_schemas::{AuditEvent, AuditRecorded, Envelope, subjects};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::dto::auth::{AuditEntry, AuditPage, AuditQuery, Identity};
use crate::error::ApiError;

/// Lowercase hex of `bytes` (the chain's hashes and body digests).
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a call's entry says, before the chain fields are added.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    pub actor: Option<Identity>,
    pub method: String,
    pub route: String,
    pub targets: Vec<String>,
    pub body_sha256: String,
    pub peer: String,
    pub user_agent: String,
    pub status: u16,
    pub outcome: Outcome,
}

/// How a call ended, as the trail records it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Outcome {
    /// A change follows this entry.
    Applied,
    /// The call changed nothing (it failed validation, say).
    #[default]
    Answered,
    /// Refused: 401 or 403.
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Answered => "answered",
            Outcome::Denied => "denied",
        }
    }
}

/// One instance's writer: entries are published one at a time, each awaiting JetStream's ack,
/// so the chain on the stream is exactly the chain written.
#[derive(Debug)]
pub struct Auditor {
    log: EventLog,
    chain: tokio::sync::Mutex<Link>,
}

#[derive(Debug)]
struct Link {
    instance_id: String,
    seq: i64,
    hash: String,
}

impl Link {
    fn fresh() -> Self {
        Self {
            instance_id: uuid::Uuid::now_v7().to_string(),
            seq: 0,
            hash: String::new(),
        }
    }
}

impl Auditor {
    pub fn new(log: EventLog) -> Self {
        Self {
            log,
            chain: tokio::sync::Mutex::new(Link::fresh()),
        }
    }

    /// Writes one entry and waits for JetStream's ack. If the outcome is unknown (no ack), the
    /// entry may or may not be stored: later entries start a new chain, so no chain forks.
    pub async fn record(&self, draft: Draft) -> Result<(), PublishError> {
        let js = self.log.jetstream()?;
        let mut link = self.chain.lock().await;
        let actor = draft.actor.unwrap_or(Identity {
            token_id: String::new(),
            name: String::new(),
            role: crate::dto::auth::Role::Viewer,
        });
        let mut entry = AuditRecorded {
            envelope: Envelope::new::<AuditRecorded>(
                &link.instance_id,
                crate::time::now_ms() as i64,
            ),
            instance_id: link.instance_id.clone(),
            seq: link.seq + 1,
            prev_hash: link.hash.clone(),
            hash: String::new(),
            actor_role: if actor.token_id.is_empty() {
                String::new()
            } else {
                actor.role.as_str().to_owned()
            },
            actor_token_id: actor.token_id,
            actor_name: actor.name,
            method: draft.method,
            route: draft.route,
            targets: draft.targets,
            body_sha256: draft.body_sha256,
            peer: draft.peer,
            user_agent: draft.user_agent,
            status: i32::from(draft.status),
            outcome: draft.outcome.as_str().to_owned(),
        };
        entry.hash = hex(&Sha256::digest(entry.chained_bytes()));
        // Not through `EventLog::publish`: that passes the change gate, which is this.
        match nerve_ingest::publish(js, subjects::audit(&link.instance_id), &entry).await {
            Ok(_) => {
                link.seq = entry.seq;
                link.hash = entry.hash;
                Ok(())
            }
            Err(e) => {
                *link = Link::fresh();
                Err(e)
            }
        }
    }
}

/// Keys whose values are secrets: left out of a body before it is digested.
const SECRET_KEYS: &[&str] = &["secret", "password", "token", "url"];

/// SHA-256 of a JSON body with every secret-bearing field removed (at any depth); of the raw
/// bytes when the body is not JSON. Empty for an empty body.
pub fn body_digest(body: &[u8]) -> String {
    if body.is_empty() {
        return String::new();
    }
    fn scrub(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                map.retain(|k, _| !SECRET_KEYS.contains(&k.as_str()));
                map.values_mut().for_each(scrub);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(scrub),
            _ => {}
        }
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(mut value) => {
            scrub(&mut value);
            hex(&Sha256::digest(value.to_string().as_bytes()))
        }
        Err(_) => hex(&Sha256::digest(body)),
    }
}

/// `GET /api/v1/audit`: entries matching every given filter, newest first.
pub async fn list(state: &AppState, query: AuditQuery) -> Result<AuditPage, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > state.config().max_page_size {
        return Err(ApiError::BadRequest(format!(
            "limit must be 1..={}",
            state.config().max_page_size
        )));
    }
    let offset = query.offset.unwrap_or(0);
    let mut filters = vec!["1".to_owned()];
    let mut binds: Vec<String> = Vec::new();
    if let Some(actor) = query.actor.filter(|a| !a.is_empty()) {
        filters.push("(actor_token_id = ? OR actor_name = ?)".into());
        binds.extend([actor.clone(), actor]);
    }
    if let Some(action) = query.action.filter(|a| !a.is_empty()) {
        match action.split_once(' ') {
            Some((method, route)) => {
                filters.push("method = ? AND route = ?".into());
                binds.extend([method.to_uppercase(), route.to_owned()]);
            }
            None => {
                filters.push("route = ?".into());
                binds.push(action);
            }
        }
    }
    if let Some(target) = query.target.filter(|t| !t.is_empty()) {
        filters.push("has(targets, ?)".into());
        binds.push(target);
    }
    if let Some(outcome) = query.outcome.filter(|o| !o.is_empty()) {
        if !["applied", "answered", "denied"].contains(&outcome.as_str()) {
            return Err(ApiError::BadRequest(
                "outcome must be applied, answered or denied".into(),
            ));
        }
        filters.push("outcome = ?".into());
        binds.push(outcome);
    }
    let mut times = Vec::new();
    if let Some(from) = &query.from {
        filters.push("ts_ms >= ?".into());
        times.push(crate::time::parse_time("from", from)? * 1000);
    }
    if let Some(to) = &query.to {
        filters.push("ts_ms < ?".into());
        times.push(crate::time::parse_time("to", to)? * 1000);
    }
    let filter = filters.join(" AND ");
    let bind_all = |mut q: clickhouse::query::Query| {
        for b in &binds {
            q = q.bind(b.as_str());
        }
        for t in &times {
            q = q.bind(*t);
        }
        q
    };
    let total: u64 = bind_all(
        state
            .ch()
            .query(&format!("SELECT count() FROM {AUDIT_LOG} WHERE {filter}")),
    )
    .fetch_one()
    .await?;
    let rows: Vec<AuditRow> = bind_all(state.ch().query(&format!(
        "SELECT ?fields FROM {AUDIT_LOG} WHERE {filter} \
         ORDER BY ts_ms DESC, node_id, seq DESC LIMIT {limit} OFFSET {offset}"
    )))
    .fetch_all()
    .await?;
    Ok(AuditPage {
        entries: rows.into_iter().map(entry_of).collect(),
        total,
        limit,
        offset,
    })
}

fn entry_of(r: AuditRow) -> AuditEntry {
    AuditEntry {
        at: crate::time::rfc3339_ms(r.ts_ms),
        instance_id: r.node_id,
        seq: r.seq,
        actor_token_id: r.actor_token_id,
        actor_name: r.actor_name,
        actor_role: r.actor_role,
        method: r.method,
        route: r.route,
        targets: r.targets,
        body_sha256: r.body_sha256,
        peer: r.peer,
        user_agent: r.user_agent,
        status: r.status,
        outcome: r.outcome,
    }
}

/// What [`verify`] found.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Verification {
    pub chains: usize,
    pub entries: u64,
    /// Each break: the stream sequence and what is wrong there.
    pub problems: Vec<String>,
}

/// Reads the whole audit stream and checks every chain: sequence numbers without gaps or
/// repeats from 1, each entry's `prev_hash` the hash of the one before, each hash recomputed.
pub async fn verify(js: &async_nats::jetstream::Context) -> Result<Verification, String> {
    let (end, mut messages) =
        nerve_ingest::read_stream(js, nerve_ingest::AUDIT_STREAM, "", 0).await?;
    let mut report = Verification::default();
    if end == 0 {
        return Ok(report);
    }
    // Per chain: the last seq and hash seen.
    let mut chains: HashMap<String, (i64, String)> = HashMap::new();
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| e.to_string())?;
        let at = message.info().map_err(|e| e.to_string())?.stream_sequence;
        report.entries += 1;
        match AuditEvent::decode(&message.payload) {
            Ok(AuditEvent::AuditRecorded(e)) => {
                let (last_seq, last_hash) = chains
                    .entry(e.instance_id.clone())
                    .or_insert((0, String::new()));
                let recomputed = hex(&Sha256::digest(e.chained_bytes()));
                if e.hash != recomputed {
                    report.problems.push(format!(
                        "#{at}: {} entry {}: hash does not match its content",
                        e.instance_id, e.seq
                    ));
                }
                if e.seq != *last_seq + 1 {
                    report.problems.push(format!(
                        "#{at}: {} entry {} follows entry {last_seq} (missing or repeated entries)",
                        e.instance_id, e.seq
                    ));
                } else if e.prev_hash != *last_hash {
                    report.problems.push(format!(
                        "#{at}: {} entry {}: prev_hash is not the hash of entry {last_seq}",
                        e.instance_id, e.seq
                    ));
                }
                *last_seq = e.seq;
                *last_hash = e.hash;
            }
            Err(err) => report
                .problems
                .push(format!("#{at}: not an audit entry: {err}")),
        }
        if at >= end {
            break;
        }
    }
    report.chains = chains.len();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_left_out_of_the_body_digest() {
        let a =
            body_digest(br#"{"name":"pager","kind":"webhook","url":"https://h/x","secret":"s1"}"#);
        let b =
            body_digest(br#"{"name":"pager","kind":"webhook","url":"https://h/y","secret":"s2"}"#);
        let c =
            body_digest(br#"{"name":"other","kind":"webhook","url":"https://h/x","secret":"s1"}"#);
        assert_eq!(a, b, "the digest does not depend on secrets");
        assert_ne!(a, c);
        assert_eq!(body_digest(b""), "");
        assert_eq!(body_digest(b"not json").len(), 64);
    }
}
