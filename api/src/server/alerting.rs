//! Alert rules, silences and alerts as the API serves them. Rules and silences are control
//! events (who, when, what); alerts are read from what the evaluator
//! ([`crate::evaluator`]) recorded. A rule is validated field by field, and every problem is
//! answered at once ([`ApiError::Invalid`]).

use clickhouse::Row;
use nerve_schemas::{
    AlertRuleDeleted, AlertRuleSaved, Envelope, SilenceCreated, SilenceDeleted, subjects,
};
use serde::Deserialize;

use crate::AppState;
use crate::dto::*;
use crate::error::{ApiError, Problems};
use crate::fleet::rfc3339_ms;

/// Longest window, for-duration and silence: 7 days.
pub const MAX_WINDOW_SECS: u64 = 7 * 24 * 3600;
/// Shortest window: a few heartbeats.
pub const MIN_WINDOW_SECS: u64 = 10;
/// Longest flap damping.
pub const MAX_RESOLVE_AFTER_SECS: u64 = 24 * 3600;
/// Longest silence.
pub const MAX_SILENCE_SECS: u64 = 90 * 24 * 3600;

pub use nerve_projections::control::RuleRow;

/// Every rule that is not deleted.
pub const RULES: &str = "SELECT * FROM alert_rules FINAL WHERE deleted = 0";

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn known(list: &[(&str, &str)], metric: &str) -> bool {
    list.iter().any(|(m, _)| *m == metric)
}

fn names(list: &[(&str, &str)]) -> String {
    list.iter().map(|(m, _)| *m).collect::<Vec<_>>().join(", ")
}

/// A rule's checks that need no storage; fills in defaults. Cluster and channel references are
/// checked by [`save`].
pub fn validate(req: &SaveRule, problems: &mut Problems) -> AlertRuleSaved {
    if !valid_name(&req.name) {
        problems.add("name", "1 to 64 of [A-Za-z0-9._-]");
    }
    if req.description.len() > 512 {
        problems.add("description", "at most 512 bytes");
    }
    let (metrics, needs_threshold, needs_window) = match req.kind.as_str() {
        "threshold" => (THRESHOLD_METRICS, true, true),
        "absence" => (ABSENCE_STATES, false, false),
        "event" => (EVENT_METRICS, true, true),
        other => {
            problems.add(
                "kind",
                format!("{other:?} is not threshold, absence or event"),
            );
            (&[][..], false, false)
        }
    };
    if !metrics.is_empty() && !known(metrics, &req.metric) {
        problems.add(
            "metric",
            format!(
                "{:?} is not a {} metric; one of {}",
                req.metric,
                req.kind,
                names(metrics)
            ),
        );
    }
    let aggregate = req.aggregate.clone().unwrap_or_else(|| "avg".into());
    if req.kind == "threshold" && !AGGREGATES.contains(&aggregate.as_str()) {
        problems.add(
            "aggregate",
            format!("{aggregate:?} is not one of {}", AGGREGATES.join(", ")),
        );
    }
    let op = req.op.clone().unwrap_or_else(|| ">".into());
    if !OPS.contains(&op.as_str()) {
        problems.add("op", format!("{op:?} is not one of {}", OPS.join(" ")));
    }
    let threshold = match req.threshold {
        Some(t) if !t.is_finite() => {
            problems.add("threshold", "must be a finite number");
            0.0
        }
        Some(t) => {
            if req.metric.ends_with("_pct") && !(0.0..=100.0).contains(&t) {
                problems.add("threshold", "a percentage: 0 to 100");
            }
            t
        }
        None if needs_threshold => {
            problems.add("threshold", "required for threshold and event rules");
            0.0
        }
        None => 0.0,
    };
    let window = req.window_secs.unwrap_or(300);
    if needs_window && !(MIN_WINDOW_SECS..=MAX_WINDOW_SECS).contains(&window) {
        problems.add(
            "window_secs",
            format!("{MIN_WINDOW_SECS} to {MAX_WINDOW_SECS} seconds"),
        );
    }
    if req.for_secs > MAX_WINDOW_SECS {
        problems.add("for_secs", format!("at most {MAX_WINDOW_SECS} seconds"));
    }
    let resolve_after = req.resolve_after_secs.unwrap_or(60);
    if resolve_after > MAX_RESOLVE_AFTER_SECS {
        problems.add(
            "resolve_after_secs",
            format!("at most {MAX_RESOLVE_AFTER_SECS} seconds"),
        );
    }
    let severity = req.severity.clone().unwrap_or_else(|| "warning".into());
    if !SEVERITIES.contains(&severity.as_str()) {
        problems.add(
            "severity",
            format!("{severity:?} is not one of {}", SEVERITIES.join(", ")),
        );
    }
    let mut labels = Vec::new();
    for l in &req.scope.labels {
        match nerve_schemas::control::parse_label(l) {
            Ok(l) => labels.push(format!("{}={}", l.key, l.value)),
            Err(e) => problems.add("scope.labels", e),
        }
    }
    for id in &req.scope.node_ids {
        if !subjects::is_valid_node_id(id) {
            problems.add("scope.node_ids", format!("{id:?} is not a node id"));
        }
    }
    if req.requested_by.len() > 128 {
        problems.add("requested_by", "at most 128 bytes");
    }
    AlertRuleSaved {
        envelope: Envelope::new::<AlertRuleSaved>(String::new(), 0),
        rule_id: String::new(),
        name: req.name.clone(),
        description: req.description.clone(),
        kind: req.kind.clone(),
        metric: req.metric.clone(),
        aggregate: if req.kind == "threshold" {
            aggregate
        } else {
            String::new()
        },
        op,
        threshold,
        window_secs: if needs_window { window as i64 } else { 0 },
        for_secs: req.for_secs.min(MAX_WINDOW_SECS) as i64,
        resolve_after_secs: resolve_after.min(MAX_RESOLVE_AFTER_SECS) as i64,
        severity,
        clusters: Vec::new(),
        labels,
        node_ids: req.scope.node_ids.clone(),
        channels: Vec::new(),
        enabled: req.enabled.unwrap_or(true),
        requested_by: if req.requested_by.is_empty() {
            "api".into()
        } else {
            req.requested_by.clone()
        },
    }
}

async fn rules(state: &AppState, only: Option<&str>) -> Result<Vec<RuleRow>, ApiError> {
    let mut sql = RULES.to_owned();
    if only.is_some() {
        sql.push_str(" AND (rule_id = ? OR name = ?)");
    }
    sql.push_str(" ORDER BY name");
    let mut q = state.ch().query(&sql);
    if let Some(key) = only {
        q = q.bind(key).bind(key);
    }
    Ok(q.fetch_all().await?)
}

async fn find_rule(state: &AppState, key: &str) -> Result<RuleRow, ApiError> {
    rules(state, Some(key))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::NotFound(format!("alert rule {key} not found")))
}

fn rule_dto(r: RuleRow, firing: u64) -> AlertRule {
    AlertRule {
        updated_at: rfc3339_ms(r.updated_at_ms),
        rule_id: r.rule_id,
        name: r.name,
        description: r.description,
        kind: r.kind,
        metric: r.metric,
        aggregate: r.aggregate,
        op: r.op,
        threshold: r.threshold,
        window_secs: r.window_secs,
        for_secs: r.for_secs,
        resolve_after_secs: r.resolve_after_secs,
        severity: r.severity,
        scope: RuleScope {
            clusters: r.clusters,
            labels: r.labels,
            node_ids: r.node_ids,
        },
        channels: r.channels,
        enabled: r.enabled != 0,
        updated_by: r.updated_by,
        firing,
    }
}

async fn firing_counts(state: &AppState) -> Result<Vec<(String, u64)>, ApiError> {
    Ok(state
        .ch()
        .query("SELECT rule_id, count() FROM alerts FINAL WHERE state = 'firing' GROUP BY rule_id")
        .fetch_all()
        .await?)
}

/// Every rule, by name, with how many of its alerts fire now.
pub async fn list_rules(state: &AppState) -> Result<RuleList, ApiError> {
    let counts: std::collections::HashMap<String, u64> =
        firing_counts(state).await?.into_iter().collect();
    Ok(RuleList {
        rules: rules(state, None)
            .await?
            .into_iter()
            .map(|r| {
                let n = counts.get(&r.rule_id).copied().unwrap_or(0);
                rule_dto(r, n)
            })
            .collect(),
    })
}

/// One rule, by id or name.
pub async fn rule(state: &AppState, key: &str) -> Result<AlertRule, ApiError> {
    let r = find_rule(state, key).await?;
    let firing: u64 = state
        .ch()
        .query("SELECT count() FROM alerts FINAL WHERE state = 'firing' AND rule_id = ?")
        .bind(&r.rule_id)
        .fetch_one()
        .await?;
    Ok(rule_dto(r, firing))
}

/// Creates a rule (`existing` None) or replaces one.
pub async fn save(
    state: &AppState,
    existing: Option<&str>,
    req: SaveRule,
) -> Result<Accepted, ApiError> {
    let current = match existing {
        Some(key) => Some(find_rule(state, key).await?),
        None => None,
    };
    let mut problems = Problems::default();
    let mut event = validate(&req, &mut problems);
    if valid_name(&req.name)
        && let Ok(other) = find_rule(state, &req.name).await
        && current.as_ref().is_none_or(|c| c.rule_id != other.rule_id)
    {
        problems.add("name", format!("a rule named {:?} exists", req.name));
    }
    for key in &req.scope.clusters {
        match crate::clusters::resolve_clusters(state, std::slice::from_ref(key)).await {
            Ok(ids) => event.clusters.extend(ids),
            Err(ApiError::BadRequest(m)) => problems.add("scope.clusters", m),
            Err(e) => return Err(e),
        }
    }
    for key in &req.channels {
        match crate::notify::find(state, key).await {
            Ok(c) => event.channels.push(c.channel_id),
            Err(ApiError::NotFound(_)) => {
                problems.add("channels", format!("unknown channel {key:?}"))
            }
            Err(e) => return Err(e),
        }
    }
    problems.finish()?;
    event.clusters.sort();
    event.clusters.dedup();
    event.channels.sort();
    event.channels.dedup();
    let id = current.map_or_else(|| uuid::Uuid::now_v7().to_string(), |c| c.rule_id);
    event.envelope = Envelope::new::<AlertRuleSaved>(id.clone(), nerve_platform::now_ms());
    event.rule_id = id.clone();
    crate::tasks::record_change(state, subjects::control_rule(&id), &event, id).await
}

/// Deletes a rule; the evaluator resolves its open alerts.
pub async fn delete_rule(state: &AppState, key: &str) -> Result<Accepted, ApiError> {
    let id = find_rule(state, key).await?.rule_id;
    let event = AlertRuleDeleted {
        envelope: Envelope::new::<AlertRuleDeleted>(id.clone(), nerve_platform::now_ms()),
        rule_id: id.clone(),
        requested_by: "api".into(),
    };
    crate::tasks::record_change(state, subjects::control_rule(&id), &event, id).await
}

#[derive(Debug, Row, Deserialize)]
struct AlertRow {
    alert_id: String,
    rule_id: String,
    rule_name: String,
    node_id: String,
    severity: String,
    state: String,
    value: Option<f64>,
    threshold: f64,
    summary: String,
    fired_at_ms: u64,
    resolved_at_ms: u64,
    resolve_reason: String,
    silenced_by: String,
}

/// The conditions of an alert query, with what they bind.
fn alert_filter(
    q: &AlertListQuery,
    rule_id: Option<&str>,
) -> Result<(String, Vec<String>), ApiError> {
    let mut clauses = Vec::new();
    let mut binds = Vec::new();
    if let Some(s) = &q.severity {
        if !SEVERITIES.contains(&s.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "severity {s:?} is not one of {}",
                SEVERITIES.join(", ")
            )));
        }
        clauses.push("severity = ?");
        binds.push(s.clone());
    }
    if let Some(id) = rule_id {
        clauses.push("rule_id = ?");
        binds.push(id.to_owned());
    }
    if let Some(node) = &q.node {
        if !subjects::is_valid_node_id(node) {
            return Err(ApiError::BadRequest(format!(
                "node {node:?} is not a node id"
            )));
        }
        clauses.push("node_id = ?");
        binds.push(node.clone());
    }
    let sql = if clauses.is_empty() {
        String::new()
    } else {
        clauses.join(" AND ")
    };
    Ok((sql, binds))
}

fn limit_of(q: &AlertListQuery) -> Result<u32, ApiError> {
    match q.limit {
        Some(0) | Some(1001..) => Err(ApiError::BadRequest("limit: 1 to 1000".into())),
        Some(n) => Ok(n),
        None => Ok(100),
    }
}

async fn rule_id_of(state: &AppState, q: &AlertListQuery) -> Result<Option<String>, ApiError> {
    match &q.rule {
        Some(key) => Ok(Some(find_rule(state, key).await?.rule_id)),
        None => Ok(None),
    }
}

/// Alerts, newest first: firing ones by default.
pub async fn list_alerts(state: &AppState, q: AlertListQuery) -> Result<AlertList, ApiError> {
    let limit = limit_of(&q)?;
    let wanted = match q.state.as_deref().unwrap_or("firing") {
        "firing" => Some("firing"),
        "resolved" => Some("resolved"),
        "all" => None,
        other => {
            return Err(ApiError::BadRequest(format!(
                "state {other:?} is not firing, resolved or all"
            )));
        }
    };
    let rule_id = rule_id_of(state, &q).await?;
    let (mut filter, mut binds) = alert_filter(&q, rule_id.as_deref())?;
    if let Some(s) = wanted {
        if !filter.is_empty() {
            filter.push_str(" AND ");
        }
        filter.push_str("state = ?");
        binds.push(s.to_owned());
    }
    let where_sql = if filter.is_empty() {
        String::new()
    } else {
        format!("WHERE {filter}")
    };
    let bind_all = |mut query: clickhouse::query::Query| {
        for b in &binds {
            query = query.bind(b);
        }
        query
    };
    let rows: Vec<AlertRow> = bind_all(state.ch().query(&format!(
        "SELECT alert_id, rule_id, rule_name, node_id, severity, state, value, threshold, \
         summary, fired_at_ms, resolved_at_ms, resolve_reason, silenced_by \
         FROM alerts FINAL {where_sql} ORDER BY fired_at_ms DESC, alert_id LIMIT ?"
    )))
    .bind(limit)
    .fetch_all()
    .await?;
    let total: u64 = bind_all(
        state
            .ch()
            .query(&format!("SELECT count() FROM alerts FINAL {where_sql}")),
    )
    .fetch_one()
    .await?;
    let now = nerve_platform::now_ms().max(0) as u64;
    let silences = active_silences(state, now).await?;
    let members = crate::evaluator::silenced_members(state, &silences).await?;
    Ok(AlertList {
        alerts: rows
            .into_iter()
            .map(|r| Alert {
                muted_by: if r.state == "firing" {
                    crate::evaluator::muted_by(&silences, &members, &r.rule_id, &r.node_id)
                        .unwrap_or_default()
                } else {
                    String::new()
                },
                fired_at: rfc3339_ms(r.fired_at_ms),
                resolved_at: (r.resolved_at_ms > 0).then(|| rfc3339_ms(r.resolved_at_ms)),
                alert_id: r.alert_id,
                rule_id: r.rule_id,
                rule_name: r.rule_name,
                node_id: r.node_id,
                severity: r.severity,
                state: r.state,
                value: r.value,
                threshold: r.threshold,
                summary: r.summary,
                resolve_reason: r.resolve_reason,
                silenced_by: r.silenced_by,
            })
            .collect(),
        total,
    })
}

#[derive(Debug, Row, Deserialize)]
struct LogRow {
    ts_ms: u64,
    kind: String,
    alert_id: String,
    rule_id: String,
    rule_name: String,
    node_id: String,
    severity: String,
    value: Option<f64>,
    summary: String,
    reason: String,
    silenced_by: String,
}

/// Every firing and resolution, newest first.
pub async fn history(state: &AppState, q: AlertListQuery) -> Result<AlertHistory, ApiError> {
    let limit = limit_of(&q)?;
    let rule_id = rule_id_of(state, &q).await?;
    let (filter, binds) = alert_filter(&q, rule_id.as_deref())?;
    let where_sql = if filter.is_empty() {
        String::new()
    } else {
        format!("WHERE {filter}")
    };
    let mut query = state.ch().query(&format!(
        "SELECT ts_ms, kind, alert_id, rule_id, rule_name, node_id, severity, value, summary, \
         reason, silenced_by FROM alert_log {where_sql} ORDER BY ts_ms DESC, stream_seq DESC \
         LIMIT ?"
    ));
    for b in &binds {
        query = query.bind(b);
    }
    let rows: Vec<LogRow> = query.bind(limit).fetch_all().await?;
    Ok(AlertHistory {
        events: rows
            .into_iter()
            .map(|r| AlertEvent {
                at: rfc3339_ms(r.ts_ms),
                kind: if r.kind == "AlertFired" {
                    "fired".into()
                } else {
                    "resolved".into()
                },
                alert_id: r.alert_id,
                rule_id: r.rule_id,
                rule_name: r.rule_name,
                node_id: r.node_id,
                severity: r.severity,
                value: r.value,
                summary: r.summary,
                reason: r.reason,
                silenced_by: r.silenced_by,
            })
            .collect(),
    })
}

/// A silence as stored, folded from its events.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct SilenceRow {
    pub silence_id: String,
    pub match_rule_id: String,
    pub match_node_id: String,
    pub match_cluster_id: String,
    pub starts_at_ms: u64,
    pub ends_at_ms: u64,
    pub reason: String,
    pub requested_by: String,
}

/// Every silence; one ended early ends when it was deleted.
pub const SILENCES: &str = "SELECT silence_id, \
        anyIf(match_rule_id, kind = 'SilenceCreated') AS match_rule_id, \
        anyIf(match_node_id, kind = 'SilenceCreated') AS match_node_id, \
        anyIf(match_cluster_id, kind = 'SilenceCreated') AS match_cluster_id, \
        maxIf(starts_at_ms, kind = 'SilenceCreated') AS starts_at_ms, \
        if(countIf(kind = 'SilenceDeleted') > 0, \
           least(maxIf(ends_at_ms, kind = 'SilenceCreated'), minIf(ends_at_ms, kind = 'SilenceDeleted')), \
           maxIf(ends_at_ms, kind = 'SilenceCreated')) AS ends_at_ms, \
        anyIf(reason, kind = 'SilenceCreated') AS reason, \
        anyIf(requested_by, kind = 'SilenceCreated') AS requested_by \
    FROM silence_log GROUP BY silence_id HAVING countIf(kind = 'SilenceCreated') > 0";

/// Silences in force at `now_ms`.
pub async fn active_silences(state: &AppState, now_ms: u64) -> Result<Vec<SilenceRow>, ApiError> {
    Ok(state
        .ch()
        .query(&format!(
            "SELECT * FROM ({SILENCES}) WHERE starts_at_ms <= ? AND ends_at_ms > ?"
        ))
        .bind(now_ms)
        .bind(now_ms)
        .fetch_all()
        .await?)
}

/// Active silences first (ending soonest first), then the 100 most recently ended.
pub async fn list_silences(state: &AppState) -> Result<SilenceList, ApiError> {
    let now = nerve_platform::now_ms().max(0) as u64;
    let rows: Vec<SilenceRow> = state
        .ch()
        .query(&format!(
            "SELECT * FROM ({SILENCES}) ORDER BY ends_at_ms <= ? ASC, \
             if(ends_at_ms > ?, ends_at_ms, 0) ASC, ends_at_ms DESC LIMIT 200"
        ))
        .bind(now)
        .bind(now)
        .fetch_all()
        .await?;
    Ok(SilenceList {
        silences: rows
            .into_iter()
            .map(|r| Silence {
                active: r.starts_at_ms <= now && r.ends_at_ms > now,
                starts_at: rfc3339_ms(r.starts_at_ms),
                ends_at: rfc3339_ms(r.ends_at_ms),
                silence_id: r.silence_id,
                rule_id: r.match_rule_id,
                node_id: r.match_node_id,
                cluster_id: r.match_cluster_id,
                reason: r.reason,
                created_by: r.requested_by,
            })
            .collect(),
    })
}

/// Creates a silence; every problem names its field.
pub async fn create_silence(state: &AppState, req: CreateSilence) -> Result<Accepted, ApiError> {
    let now = nerve_platform::now_ms();
    let mut problems = Problems::default();
    if req.rule.is_empty() && req.node_id.is_empty() && req.cluster.is_empty() {
        problems.add("rule", "name a rule, a node or a cluster (or several)");
    }
    let mut rule_id = String::new();
    if !req.rule.is_empty() {
        match find_rule(state, &req.rule).await {
            Ok(r) => rule_id = r.rule_id,
            Err(ApiError::NotFound(m)) => problems.add("rule", m),
            Err(e) => return Err(e),
        }
    }
    if !req.node_id.is_empty() && !subjects::is_valid_node_id(&req.node_id) {
        problems.add("node_id", format!("{:?} is not a node id", req.node_id));
    }
    let mut cluster_id = String::new();
    if !req.cluster.is_empty() {
        match crate::clusters::resolve_clusters(state, std::slice::from_ref(&req.cluster)).await {
            Ok(ids) => cluster_id = ids.into_iter().next().unwrap_or_default(),
            Err(ApiError::BadRequest(m)) => problems.add("cluster", m),
            Err(e) => return Err(e),
        }
    }
    let ends_at_ms = match (req.ends_at.is_empty(), req.duration.is_empty()) {
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
    };
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
        requested_by: if req.requested_by.is_empty() {
            "api".into()
        } else {
            req.requested_by
        },
    };
    crate::tasks::record_change(state, subjects::control_silence(&id), &event, id).await
}

/// Ends a silence now.
pub async fn delete_silence(state: &AppState, id: &str) -> Result<Accepted, ApiError> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(ApiError::NotFound(format!("silence {id} not found")));
    }
    let known: u64 = state
        .ch()
        .query("SELECT count() FROM silence_log WHERE silence_id = ? AND kind = 'SilenceCreated'")
        .bind(id)
        .fetch_one()
        .await?;
    if known == 0 {
        return Err(ApiError::NotFound(format!("silence {id} not found")));
    }
    let event = SilenceDeleted {
        envelope: Envelope::new::<SilenceDeleted>(id.to_owned(), nerve_platform::now_ms()),
        silence_id: id.to_owned(),
        requested_by: "api".into(),
    };
    crate::tasks::record_change(state, subjects::control_silence(id), &event, id.to_owned()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(req: &SaveRule) -> Vec<String> {
        let mut p = Problems::default();
        validate(req, &mut p);
        p.0.into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn a_good_rule_has_no_problems_and_gets_defaults() {
        let req = SaveRule {
            name: "cpu-hot".into(),
            kind: "threshold".into(),
            metric: "cpu_pct".into(),
            threshold: Some(95.0),
            ..SaveRule::default()
        };
        let mut p = Problems::default();
        let e = validate(&req, &mut p);
        assert!(p.0.is_empty(), "{:?}", p.0);
        assert_eq!(
            (e.aggregate.as_str(), e.op.as_str(), e.window_secs),
            ("avg", ">", 300)
        );
        assert_eq!((e.severity.as_str(), e.resolve_after_secs), ("warning", 60));
        assert!(e.enabled);
    }

    #[test]
    fn every_bad_field_is_named() {
        let req = SaveRule {
            name: "bad name".into(),
            kind: "threshold".into(),
            metric: "gpu_temp".into(),
            aggregate: Some("median".into()),
            op: Some("==".into()),
            threshold: None,
            window_secs: Some(1),
            severity: Some("page".into()),
            scope: RuleScope {
                labels: vec!["GPU".into()],
                node_ids: vec!["a b".into()],
                ..RuleScope::default()
            },
            ..SaveRule::default()
        };
        assert_eq!(
            fields(&req),
            [
                "name",
                "metric",
                "aggregate",
                "op",
                "threshold",
                "window_secs",
                "severity",
                "scope.labels",
                "scope.node_ids"
            ]
        );
        let pct = SaveRule {
            name: "x".into(),
            kind: "threshold".into(),
            metric: "disk_used_pct".into(),
            threshold: Some(120.0),
            ..SaveRule::default()
        };
        assert_eq!(fields(&pct), ["threshold"]);
        let absence = SaveRule {
            name: "gone".into(),
            kind: "absence".into(),
            metric: "offline".into(),
            ..SaveRule::default()
        };
        assert!(fields(&absence).is_empty());
        assert_eq!(
            fields(&SaveRule {
                name: "x".into(),
                kind: "nope".into(),
                ..SaveRule::default()
            }),
            ["kind"]
        );
    }
}
