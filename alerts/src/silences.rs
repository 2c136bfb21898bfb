//! Silences: mute the notifications of a rule, a node or a cluster (every matcher given must
//! hold) until a time. Created and ended as control events (`SilenceCreated` / `SilenceDeleted`)
//! and folded from `silence_log` at query time.

use std::collections::HashSet;

use clickhouse::Row;
use nerve_projections::scope;
use nerve_schemas::{Envelope, SilenceCreated, SilenceDeleted, subjects};
use serde::Deserialize;

use crate::contract::CreateSilence;
use crate::{AlertsError, Context, Problems, Recorded};
use nerve_projections::control::SILENCE_LOG;

/// Longest silence.
pub const MAX_SILENCE_SECS: u64 = 90 * 24 * 3600;

/// A silence folded from its events; one ended early ends when it was deleted.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct Silence {
    pub silence_id: String,
    pub match_rule_id: String,
    pub match_node_id: String,
    pub match_cluster_id: String,
    pub starts_at_ms: u64,
    pub ends_at_ms: u64,
    pub reason: String,
    pub requested_by: String,
}

/// Every silence as a [`Silence`] row.
pub fn silences_sql() -> String {
    format!(
        "SELECT silence_id, \
        anyIf(match_rule_id, kind = 'SilenceCreated') AS match_rule_id, \
        anyIf(match_node_id, kind = 'SilenceCreated') AS match_node_id, \
        anyIf(match_cluster_id, kind = 'SilenceCreated') AS match_cluster_id, \
        maxIf(starts_at_ms, kind = 'SilenceCreated') AS starts_at_ms, \
        if(countIf(kind = 'SilenceDeleted') > 0, \
           least(maxIf(ends_at_ms, kind = 'SilenceCreated'), minIf(ends_at_ms, kind = 'SilenceDeleted')), \
           maxIf(ends_at_ms, kind = 'SilenceCreated')) AS ends_at_ms, \
        anyIf(reason, kind = 'SilenceCreated') AS reason, \
        anyIf(requested_by, kind = 'SilenceCreated') AS requested_by \
    FROM {SILENCE_LOG} GROUP BY silence_id HAVING countIf(kind = 'SilenceCreated') > 0"
    )
}

/// The silences in force at one time, with the memberships of the clusters they name: answers
/// which silence mutes (rule, node).
#[derive(Debug, Clone, Default)]
pub struct Mutes {
    silences: Vec<Silence>,
    members: HashSet<(String, String)>,
}

impl Mutes {
    /// The silences in force at `now_ms`.
    pub async fn at(ctx: &Context, now_ms: u64) -> Result<Self, AlertsError> {
        let silences: Vec<Silence> = ctx
            .ch()
            .query(&format!(
                "SELECT * FROM ({}) WHERE starts_at_ms <= ? AND ends_at_ms > ?",
                silences_sql()
            ))
            .bind(now_ms)
            .bind(now_ms)
            .fetch_all()
            .await?;
        let clusters: Vec<String> = silences
            .iter()
            .filter(|s| !s.match_cluster_id.is_empty())
            .map(|s| s.match_cluster_id.clone())
            .collect();
        let members = if clusters.is_empty() {
            HashSet::new()
        } else {
            ctx.ch()
                .query(&format!(
                    "SELECT cluster_id, node_id FROM {} WHERE has(?, cluster_id)",
                    scope::MEMBERS
                ))
                .bind(&clusters)
                .fetch_all::<(String, String)>()
                .await?
                .into_iter()
                .collect()
        };
        Ok(Self { silences, members })
    }

    /// Which silence mutes (rule, node), if any.
    pub fn muted_by(&self, rule_id: &str, node_id: &str) -> Option<String> {
        self.silences
            .iter()
            .find(|s| {
                (s.match_rule_id.is_empty() || s.match_rule_id == rule_id)
                    && (s.match_node_id.is_empty() || s.match_node_id == node_id)
                    && (s.match_cluster_id.is_empty()
                        || self
                            .members
                            .contains(&(s.match_cluster_id.clone(), node_id.to_owned())))
            })
            .map(|s| s.silence_id.clone())
    }
}

/// Active silences first (ending soonest first), then the most recently ended; 200 at most.
pub async fn listed(ctx: &Context, now_ms: u64) -> Result<Vec<Silence>, AlertsError> {
    Ok(ctx
        .ch()
        .query(&format!(
            "SELECT * FROM ({}) ORDER BY ends_at_ms <= ? ASC, \
             if(ends_at_ms > ?, ends_at_ms, 0) ASC, ends_at_ms DESC LIMIT 200",
            silences_sql()
        ))
        .bind(now_ms)
        .bind(now_ms)
        .fetch_all()
        .await?)
}

/// When a silence asked for with `ends_at` (RFC 3339) or `duration` ends.
fn ends_at(req: &CreateSilence, now: i64, problems: &mut Problems) -> i64 {
    match (req.ends_at.is_empty(), req.duration.is_empty()) {
        (false, true) => match humantime::parse_rfc3339_weak(&req.ends_at) {
            Ok(t) => t
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            Err(e) => {
                problems.add("ends_at", format!("not an RFC 3339 time: {e}"));
                now
            }
        },
        (true, false) => match humantime::parse_duration(&req.duration) {
            Ok(d) => now.saturating_add(d.as_millis().min(i64::MAX as u128) as i64),
            Err(e) => {
                problems.add("duration", format!("not a duration like 2h or 30m: {e}"));
                now
            }
        },
        _ => {
            problems.add("ends_at", "give exactly one of ends_at and duration");
            now
        }
    }
}

/// Creates a silence on behalf of `by`; every problem names its field.
pub async fn create(ctx: &Context, req: CreateSilence, by: &str) -> Result<Recorded, AlertsError> {
    let now = nerve_platform::now_ms();
    let mut problems = Problems::default();
    if req.rule.is_empty() && req.node_id.is_empty() && req.cluster.is_empty() {
        problems.add("rule", "name a rule, a node or a cluster (or several)");
    }
    let mut rule_id = String::new();
    if !req.rule.is_empty() {
        match crate::rules::find(ctx, &req.rule).await {
            Ok(r) => rule_id = r.rule_id,
            Err(AlertsError::NotFound(m)) => problems.add("rule", m),
            Err(e) => return Err(e),
        }
    }
    if !req.node_id.is_empty() && !subjects::is_valid_node_id(&req.node_id) {
        problems.add("node_id", format!("{:?} is not a node id", req.node_id));
    }
    let mut cluster_id = String::new();
    if !req.cluster.is_empty() {
        match scope::cluster_ids(ctx.ch(), std::slice::from_ref(&req.cluster)).await? {
            Ok(ids) => cluster_id = ids.into_iter().next().unwrap_or_default(),
            Err(m) => problems.add("cluster", m),
        }
    }
    let ends_at_ms = ends_at(&req, now, &mut problems);
    if problems.0.is_empty() {
        if ends_at_ms <= now {
            problems.add("ends_at", "must be in the future");
        } else if ends_at_ms - now > (MAX_SILENCE_SECS as i64) * 1000 {
            problems.add(
                "ends_at",
                format!("at most {} days ahead", MAX_SILENCE_SECS / 86400),
            );
        }
    }
    if req.reason.trim().is_empty() || req.reason.len() > 512 {
        problems.add("reason", "1 to 512 bytes: why notifications are muted");
    }
    problems.finish()?;
    let id = uuid::Uuid::now_v7().to_string();
    let event = SilenceCreated {
        envelope: Envelope::new::<SilenceCreated>(id.clone(), now),
        silence_id: id.clone(),
        match_rule_id: rule_id,
        match_node_id: req.node_id,
        match_cluster_id: cluster_id,
        starts_at_ms: now,
        ends_at_ms,
        reason: req.reason,
        requested_by: by.to_owned(),
    };
    ctx.record(subjects::control_silence(&id), &event, id).await
}

/// Ends a silence now, on behalf of `by`.
pub async fn delete(ctx: &Context, id: &str, by: &str) -> Result<Recorded, AlertsError> {
    let gone = || AlertsError::NotFound(format!("silence {id} not found"));
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(gone());
    }
    let known: u64 = ctx
        .ch()
        .query(&format!(
            "SELECT count() FROM {SILENCE_LOG} WHERE silence_id = ? AND kind = 'SilenceCreated'"
        ))
        .bind(id)
        .fetch_one()
        .await?;
    if known == 0 {
        return Err(gone());
    }
    let event = SilenceDeleted {
        envelope: Envelope::new::<SilenceDeleted>(id.to_owned(), nerve_platform::now_ms()),
        silence_id: id.to_owned(),
        requested_by: by.to_owned(),
    };
    ctx.record(subjects::control_silence(id), &event, id.to_owned())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silence_mutes_what_all_its_matchers_match() {
        let silence = |rule: &str, node: &str, cluster: &str| Silence {
            silence_id: format!("{rule}/{node}/{cluster}"),
            match_rule_id: rule.into(),
            match_node_id: node.into(),
            match_cluster_id: cluster.into(),
            starts_at_ms: 0,
            ends_at_ms: 1,
            reason: "r".into(),
            requested_by: "t".into(),
        };
        let members = HashSet::from([("c1".to_owned(), "n1".to_owned())]);
        let muted = |s: Silence, rule: &str, node: &str| {
            Mutes {
                silences: vec![s],
                members: members.clone(),
            }
            .muted_by(rule, node)
            .is_some()
        };
        assert!(muted(silence("r1", "", ""), "r1", "n9"));
        assert!(!muted(silence("r1", "", ""), "r2", "n1"));
        assert!(muted(silence("", "n1", ""), "r2", "n1"));
        assert!(muted(silence("", "", "c1"), "r2", "n1"));
        assert!(!muted(silence("", "", "c1"), "r2", "n2"), "not a member");
        assert!(muted(silence("r1", "", "c1"), "r1", "n1"));
        assert!(
            !muted(silence("r1", "", "c1"), "r2", "n1"),
            "every matcher must hold"
        );
    }
}
