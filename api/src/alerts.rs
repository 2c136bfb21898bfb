//! Alert rules, silences, channels and alerts as the API serves them: the reads it shows, and
//! the changes it hands to [`nerve_alerts`] (validation, control events, delivery). Alerts are
//! read from what the evaluator recorded.

use std::collections::HashMap;

use nerve_alerts::rule::Severity;
use nerve_projections::alerts::{ALERT_LOG, ALERTS, AlertRow, LogRow};
use nerve_projections::control::RuleRow;
use nerve_schemas::subjects;

use crate::AppState;
use crate::dto::Accepted;
use crate::dto::alerts::*;
use crate::error::ApiError;
use crate::time::rfc3339_ms;

/// What the API answers for a recorded change.
fn accepted(r: nerve_alerts::Recorded) -> Accepted {
    Accepted {
        event_id: r.event_id,
        cluster_id: None,
        id: Some(r.id),
    }
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
        .query(&format!(
            "SELECT rule_id, count() FROM {ALERTS} FINAL WHERE state = 'firing' GROUP BY rule_id"
        ))
        .fetch_all()
        .await?)
}

/// Every rule, by name, with how many of its alerts fire now.
pub async fn list_rules(state: &AppState) -> Result<RuleList, ApiError> {
    let counts: HashMap<String, u64> = firing_counts(state).await?.into_iter().collect();
    Ok(RuleList {
        rules: nerve_alerts::rules::stored(state.alerts(), None)
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
    let r = nerve_alerts::rules::find(state.alerts(), key).await?;
    let firing: u64 = state
        .ch()
        .query(&format!(
            "SELECT count() FROM {ALERTS} FINAL WHERE state = 'firing' AND rule_id = ?"
        ))
        .bind(&r.rule_id)
        .fetch_one()
        .await?;
    Ok(rule_dto(r, firing))
}

/// Creates a rule (`existing` None) or replaces one, on behalf of `by`.
pub async fn save(
    state: &AppState,
    existing: Option<&str>,
    req: SaveRule,
    by: &str,
) -> Result<Accepted, ApiError> {
    Ok(accepted(
        nerve_alerts::rules::save(state.alerts(), existing, req, by).await?,
    ))
}

/// Deletes a rule on behalf of `by`; the evaluator resolves its open alerts.
pub async fn delete_rule(state: &AppState, key: &str, by: &str) -> Result<Accepted, ApiError> {
    Ok(accepted(
        nerve_alerts::rules::delete(state.alerts(), key, by).await?,
    ))
}

/// The conditions of an alert query, with what they bind.
fn alert_filter(
    q: &AlertListQuery,
    rule_id: Option<&str>,
) -> Result<(String, Vec<String>), ApiError> {
    let mut clauses = Vec::new();
    let mut binds = Vec::new();
    if let Some(s) = &q.severity {
        if Severity::parse(s).is_none() {
            return Err(ApiError::BadRequest(format!(
                "severity {s:?} is not one of {}",
                Severity::names()
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
        Some(key) => Ok(Some(
            nerve_alerts::rules::find(state.alerts(), key)
                .await?
                .rule_id,
        )),
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
        "SELECT ?fields FROM {ALERTS} FINAL {where_sql} \
         ORDER BY fired_at_ms DESC, alert_id LIMIT ?"
    )))
    .bind(limit)
    .fetch_all()
    .await?;
    let total: u64 = bind_all(
        state
            .ch()
            .query(&format!("SELECT count() FROM {ALERTS} FINAL {where_sql}")),
    )
    .fetch_one()
    .await?;
    let now = nerve_platform::now_ms().max(0) as u64;
    let mutes = nerve_alerts::silences::Mutes::at(state.alerts(), now).await?;
    Ok(AlertList {
        alerts: rows
            .into_iter()
            .map(|r| Alert {
                muted_by: if r.state == "firing" {
                    mutes.muted_by(&r.rule_id, &r.node_id).unwrap_or_default()
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
        "SELECT ?fields FROM {ALERT_LOG} {where_sql} ORDER BY ts_ms DESC, stream_seq DESC LIMIT ?"
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

/// Active silences first (ending soonest first), then the 100 most recently ended.
pub async fn list_silences(state: &AppState) -> Result<SilenceList, ApiError> {
    let now = nerve_platform::now_ms().max(0) as u64;
    let rows = nerve_alerts::silences::listed(state.alerts(), now).await?;
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

/// Creates a silence on behalf of `by`; every problem names its field.
pub async fn create_silence(
    state: &AppState,
    req: CreateSilence,
    by: &str,
) -> Result<Accepted, ApiError> {
    Ok(accepted(
        nerve_alerts::silences::create(state.alerts(), req, by).await?,
    ))
}

/// Ends a silence now, on behalf of `by`.
pub async fn delete_silence(state: &AppState, id: &str, by: &str) -> Result<Accepted, ApiError> {
    Ok(accepted(
        nerve_alerts::silences::delete(state.alerts(), id, by).await?,
    ))
}

/// Every channel, by name (the secret is never answered, only whether there is one).
pub async fn list_channels(state: &AppState) -> Result<ChannelList, ApiError> {
    let ctx = state.alerts();
    Ok(ChannelList {
        channels: nerve_alerts::notify::stored(ctx)
            .await?
            .into_iter()
            .map(|r| Channel {
                has_secret: !r.secret.is_empty(),
                url: nerve_alerts::notify::opened(ctx, &r).map_or_else(
                    |_| "(sealed with another key)".into(),
                    |o| shown_url(&o.url),
                ),
                channel_id: r.channel_id,
                name: r.name,
                kind: r.kind,
            })
            .collect(),
    })
}

/// A channel's URL as listed: scheme and host only, since a webhook's path often is its secret
/// (Slack's are); email addresses as given.
fn shown_url(url: &str) -> String {
    if url.starts_with("mailto:") {
        return url.to_owned();
    }
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let host = rest[..end].rsplit('@').next().unwrap_or_default();
            if end < rest.len() {
                format!("{scheme}://{host}/…")
            } else {
                format!("{scheme}://{host}")
            }
        }
        None => "…".into(),
    }
}

/// Creates a channel on behalf of `by`.
pub async fn create_channel(
    state: &AppState,
    req: SaveChannel,
    by: &str,
) -> Result<Accepted, ApiError> {
    Ok(accepted(
        nerve_alerts::notify::create(state.alerts(), req, by).await?,
    ))
}

/// Deletes a channel on behalf of `by`.
pub async fn delete_channel(state: &AppState, key: &str, by: &str) -> Result<Accepted, ApiError> {
    Ok(accepted(
        nerve_alerts::notify::delete(state.alerts(), key, by).await?,
    ))
}

/// Sends a test message through a channel now (a change: it passes the change gate, so it is
/// audited before anything is sent).
pub async fn test_channel(state: &AppState, key: &str) -> Result<DeliveryReport, ApiError> {
    nerve_alerts::notify::find(state.alerts(), key).await?;
    nerve_ingest::gate::pass().await?;
    Ok(nerve_alerts::notify::test_send(state.alerts(), key).await?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn listed_urls_keep_only_scheme_and_host() {
        use super::shown_url;
        assert_eq!(
            shown_url("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(shown_url("https://user:pw@h.example"), "https://h.example");
        assert_eq!(shown_url("http://h.example/"), "http://h.example/…");
        assert_eq!(shown_url("mailto:a@x.example"), "mailto:a@x.example");
    }
}
