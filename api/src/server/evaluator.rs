//! The alert evaluator, run inside `nerve project`: every `alerts.eval_interval_ms` it asks
//! ClickHouse which nodes in each enabled rule's scope meet its condition, folds that into
//! [`Book`] (pending → firing after `for_secs`; firing → resolved after the condition stayed
//! false for `resolve_after_secs`, which damps flapping), records every firing and resolution as
//! `AlertFired` / `AlertResolved` on the alerts stream, and tells the rules' channels — one
//! message per rule and change per evaluation, listing its alerts, unless a silence mutes them.
//!
//! One open alert per rule × node: the book is keyed by that pair, and at start it is restored
//! from the last event of every `nerve.v1.alerts.<rule>.<node>` subject. Alert and event ids are
//! derived from (rule, node, when the condition began), so an event re-published after a
//! failure is dropped by JetStream's duplicate window. Run one evaluator per deployment.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt as _;
use nerve_ingest::{Outgoing, PublishError};
use nerve_platform::config::AlertsConfig;
use nerve_platform::metrics::{Counter, Gauge, Registry};
use nerve_schemas::{AlertFired, AlertResolved, Envelope, subjects};
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::alerting::{RuleRow, SilenceRow};
use crate::error::ApiError;

/// (rule id, node id).
pub type Key = (String, String);

/// An open (firing) alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Open {
    pub alert_id: String,
    pub rule_id: String,
    pub node_id: String,
    pub rule_name: String,
    pub severity: String,
    pub threshold: f64,
    pub summary: String,
    pub pending_since_ms: i64,
    pub fired_at_ms: i64,
    pub silenced_by: String,
    /// Channels told when it fired (and to tell when it resolves).
    pub channels: Vec<String>,
    /// Whether its firing was delivered; a muted alert is delivered once its silence ends.
    pub notified: bool,
    pub last_value: Option<f64>,
}

/// A node whose condition holds now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Holding {
    pub value: f64,
    /// When the condition began, where the data says so (absence: when the node went silent);
    /// otherwise the first evaluation that saw it.
    pub since_ms: Option<i64>,
}

/// What one evaluation changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Fired(Open),
    Resolved {
        alert: Open,
        reason: &'static str,
        at_ms: i64,
    },
}

/// The evaluator's state: open alerts, conditions waiting out `for_secs`, alerts waiting out
/// `resolve_after_secs`. No I/O; times are passed in.
#[derive(Debug, Default, Clone)]
pub struct Book {
    open: HashMap<Key, Open>,
    pending: HashMap<Key, i64>,
    clearing: HashMap<Key, i64>,
}

/// The id of the alert of `rule` on `node` whose condition began at `since_ms`.
pub fn alert_id(rule_id: &str, node_id: &str, since_ms: i64) -> String {
    let key = format!("nerve-alert/{rule_id}/{node_id}/{since_ms}");
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, key.as_bytes()).to_string()
}

fn event_id(alert_id: &str, what: &str) -> String {
    let key = format!("nerve-alert-event/{alert_id}/{what}");
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, key.as_bytes()).to_string()
}

fn secs_text(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// One line for people: what crossed what.
pub fn summary(rule: &RuleRow, value: f64) -> String {
    match rule.kind.as_str() {
        "absence" => format!(
            "node {} for {}",
            rule.metric,
            secs_text(value.max(0.0) as u64)
        ),
        "event" => format!(
            "{} = {value:.1} over {} ({} {})",
            rule.metric,
            secs_text(rule.window_secs),
            rule.op,
            rule.threshold
        ),
        _ => format!(
            "{} {} over {} = {value:.1} ({} {})",
            rule.metric,
            rule.aggregate,
            secs_text(rule.window_secs),
            rule.op,
            rule.threshold
        ),
    }
}

impl Book {
    /// Takes an alert that was open when the evaluator last stopped.
    pub fn restore(&mut self, alert: Open) {
        self.open
            .insert((alert.rule_id.clone(), alert.node_id.clone()), alert);
    }

    /// Open alerts now.
    pub fn open(&self) -> impl Iterator<Item = &Open> {
        self.open.values()
    }

    /// One evaluation of `rule` at `now_ms`: `holding` are the in-scope nodes whose condition
    /// holds. `silenced` names the silence muting (rule, node), if one does.
    pub fn step(
        &mut self,
        rule: &RuleRow,
        holding: &HashMap<String, Holding>,
        now_ms: i64,
        silenced: &dyn Fn(&str, &str) -> Option<String>,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        let for_ms = (rule.for_secs as i64).saturating_mul(1000);
        let resolve_after_ms = (rule.resolve_after_secs as i64).saturating_mul(1000);
        for (node, h) in holding {
            let key = (rule.rule_id.clone(), node.clone());
            if let Some(open) = self.open.get_mut(&key) {
                self.clearing.remove(&key);
                open.last_value = Some(h.value);
                continue;
            }
            let since = match h.since_ms {
                Some(s) => {
                    self.pending.insert(key.clone(), s);
                    s
                }
                None => *self.pending.entry(key.clone()).or_insert(now_ms),
            };
            if now_ms.saturating_sub(since) < for_ms {
                continue;
            }
            self.pending.remove(&key);
            let alert = Open {
                alert_id: alert_id(&rule.rule_id, node, since),
                rule_id: rule.rule_id.clone(),
                node_id: node.clone(),
                rule_name: rule.name.clone(),
                severity: rule.severity.clone(),
                threshold: rule.threshold,
                summary: summary(rule, h.value),
                pending_since_ms: since,
                fired_at_ms: now_ms,
                silenced_by: silenced(&rule.rule_id, node).unwrap_or_default(),
                channels: rule.channels.clone(),
                notified: false,
                last_value: Some(h.value),
            };
            self.open.insert(key, alert.clone());
            changes.push(Change::Fired(alert));
        }
        self.pending
            .retain(|(r, n), _| r != &rule.rule_id || holding.contains_key(n));
        let quiet: Vec<Key> = self
            .open
            .keys()
            .filter(|(r, n)| r == &rule.rule_id && !holding.contains_key(n))
            .cloned()
            .collect();
        for key in quiet {
            let since = *self.clearing.entry(key.clone()).or_insert(now_ms);
            if now_ms.saturating_sub(since) >= resolve_after_ms {
                self.clearing.remove(&key);
                if let Some(mut alert) = self.open.remove(&key) {
                    alert.channels = rule.channels.clone();
                    changes.push(Change::Resolved {
                        alert,
                        reason: "recovered",
                        at_ms: now_ms,
                    });
                }
            }
        }
        // A rule whose channels changed tells the new ones from now on.
        for alert in self.open.values_mut() {
            if alert.rule_id == rule.rule_id {
                alert.channels = rule.channels.clone();
            }
        }
        changes
    }

    /// Resolves the open alerts of rules that are gone (deleted) or disabled; `rules` are
    /// every rule not deleted.
    pub fn retire(&mut self, rules: &[RuleRow], now_ms: i64) -> Vec<Change> {
        let state: HashMap<&str, bool> = rules
            .iter()
            .map(|r| (r.rule_id.as_str(), r.enabled != 0))
            .collect();
        let gone: Vec<(Key, &'static str)> = self
            .open
            .keys()
            .filter_map(|k| match state.get(k.0.as_str()) {
                None => Some((k.clone(), "rule_deleted")),
                Some(false) => Some((k.clone(), "rule_disabled")),
                Some(true) => None,
            })
            .collect();
        self.pending
            .retain(|(r, _), _| state.get(r.as_str()) == Some(&true));
        self.clearing
            .retain(|(r, _), _| state.get(r.as_str()) == Some(&true));
        gone.into_iter()
            .filter_map(|(key, reason)| {
                self.open.remove(&key).map(|alert| Change::Resolved {
                    alert,
                    reason,
                    at_ms: now_ms,
                })
            })
            .collect()
    }

    /// Open alerts whose firing is still to be delivered and that no silence mutes now; they
    /// count as delivered from here on.
    pub fn to_notify(&mut self, silenced: &dyn Fn(&str, &str) -> Option<String>) -> Vec<Open> {
        let mut out = Vec::new();
        for alert in self.open.values_mut() {
            if !alert.notified && silenced(&alert.rule_id, &alert.node_id).is_none() {
                alert.notified = true;
                out.push(alert.clone());
            }
        }
        out.sort_by(|a, b| (&a.rule_id, &a.node_id).cmp(&(&b.rule_id, &b.node_id)));
        out
    }
}

/// The event recording `change`, encoded; its id derives from the alert's.
fn outgoing(change: &Change) -> Result<Outgoing, PublishError> {
    match change {
        Change::Fired(a) => {
            let event = AlertFired {
                envelope: Envelope {
                    event_id: event_id(&a.alert_id, "fired"),
                    ..Envelope::new::<AlertFired>(a.node_id.clone(), a.fired_at_ms)
                },
                alert_id: a.alert_id.clone(),
                rule_id: a.rule_id.clone(),
                rule_name: a.rule_name.clone(),
                severity: a.severity.clone(),
                value: a.last_value.unwrap_or(0.0),
                threshold: a.threshold,
                summary: a.summary.clone(),
                pending_since_ms: a.pending_since_ms,
                silenced_by: a.silenced_by.clone(),
            };
            Outgoing::event(subjects::alert(&a.rule_id, &a.node_id), &event)
        }
        Change::Resolved {
            alert: a,
            reason,
            at_ms,
        } => {
            let event = AlertResolved {
                envelope: Envelope {
                    event_id: event_id(&a.alert_id, "resolved"),
                    ..Envelope::new::<AlertResolved>(a.node_id.clone(), *at_ms)
                },
                alert_id: a.alert_id.clone(),
                rule_id: a.rule_id.clone(),
                rule_name: a.rule_name.clone(),
                severity: a.severity.clone(),
                threshold: a.threshold,
                summary: a.summary.clone(),
                value: a.last_value,
                reason: (*reason).to_owned(),
                fired_at_ms: a.fired_at_ms,
                silenced_by: a.silenced_by.clone(),
            };
            Outgoing::event(subjects::alert(&a.rule_id, &a.node_id), &event)
        }
    }
}

/// The SQL expression of a threshold metric over one `heartbeats` row, and a condition the row
/// must meet for it to mean anything (GPU metrics: the node has GPUs).
fn metric_sql(metric: &str) -> Option<(&'static str, &'static str)> {
    Some(match metric {
        "cpu_pct" => ("cpu_pct", ""),
        "mem_used_pct" => (
            "100 * mem_used_bytes / mem_total_bytes",
            "mem_total_bytes > 0",
        ),
        "disk_used_pct" => (
            "100 * disk_used_bytes / disk_total_bytes",
            "disk_total_bytes > 0",
        ),
        "load1" => ("load1", ""),
        "gpu_temperature_c" => (
            "arrayReduce('max', gpu_temperature_c)",
            "notEmpty(gpu_temperature_c)",
        ),
        "gpu_util_pct" => ("arrayReduce('max', gpu_util_pct)", "notEmpty(gpu_util_pct)"),
        "gpu_mem_used_pct" => (
            "arrayReduce('max', arrayMap((u, t) -> if(t = 0, 0, 100 * u / t), \
             gpu_mem_used_bytes, gpu_mem_total_bytes))",
            "notEmpty(gpu_mem_total_bytes)",
        ),
        "gpu_power_w" => ("arrayReduce('max', gpu_power_w)", "notEmpty(gpu_power_w)"),
        _ => return None,
    })
}

/// The nodes in `rule`'s scope whose condition holds at `now_ms`.
pub async fn holding(
    state: &AppState,
    rule: &RuleRow,
    now_ms: i64,
) -> Result<HashMap<String, Holding>, ApiError> {
    let now = now_ms.max(0) as u64;
    let from_ms = now.saturating_sub(rule.window_secs.saturating_mul(1000));
    let op = match rule.op.as_str() {
        op @ (">" | ">=" | "<" | "<=") => op,
        other => return Err(ApiError::BadRequest(format!("op {other:?}"))),
    };
    let filter = crate::clusters::NodeFilter {
        node_ids: &rule.node_ids,
        clusters: &rule.clusters,
        labels: &rule.labels,
    };
    let mut clauses = filter.clauses();
    // What the SQL binds before the filter's conditions (the threshold comes after them).
    let mut binds: Vec<u64> = Vec::new();
    let sql = match rule.kind.as_str() {
        "threshold" => {
            let (expr, valid) = metric_sql(&rule.metric)
                .ok_or_else(|| ApiError::BadRequest(format!("metric {:?}", rule.metric)))?;
            let agg = match rule.aggregate.as_str() {
                "avg" => format!("avg({expr})"),
                "min" => format!("min({expr})"),
                "max" => format!("max({expr})"),
                "last" => format!("argMax({expr}, ts_ms)"),
                other => return Err(ApiError::BadRequest(format!("aggregate {other:?}"))),
            };
            clauses.insert(0, "ts >= toDateTime(?) AND ts_ms >= ?".to_owned());
            binds.extend([from_ms / 1000, from_ms]);
            if !valid.is_empty() {
                clauses.push(valid.to_owned());
            }
            format!(
                "SELECT node_id, toFloat64({agg}) AS value, toInt64(0) AS since \
                 FROM heartbeats WHERE {} GROUP BY node_id HAVING value {op} ?",
                clauses.join(" AND ")
            )
        }
        "absence" => {
            let states = match rule.metric.as_str() {
                "offline" => "('offline')",
                _ => "('suspect', 'offline')",
            };
            clauses.insert(0, format!("state IN {states}"));
            binds.push(now);
            format!(
                "SELECT node_id, (toFloat64(?) - changed_at_ms) / 1000 AS value, \
                 toInt64(changed_at_ms) AS since \
                 FROM node_liveness FINAL WHERE {}",
                clauses.join(" AND ")
            )
        }
        "event" if rule.metric == "task_failure_pct" => {
            clauses.insert(
                0,
                "state IN ('succeeded', 'failed', 'timed_out') AND updated_at_ms >= ?".to_owned(),
            );
            binds.push(from_ms);
            format!(
                "SELECT node_id, 100 * countIf(state != 'succeeded') / count() AS value, \
                 toInt64(0) AS since FROM task_nodes FINAL WHERE {} \
                 GROUP BY node_id HAVING value {op} ?",
                clauses.join(" AND ")
            )
        }
        "event" => {
            let critical = if rule.metric == "gpu_xid_critical" {
                " AND severity = 'critical'"
            } else {
                ""
            };
            clauses.insert(
                0,
                format!("kind = 'GpuXidOccurred'{critical} AND ts >= toDateTime(?) AND ts_ms >= ?"),
            );
            binds.extend([from_ms / 1000, from_ms]);
            format!(
                "SELECT node_id, toFloat64(count()) AS value, toInt64(0) AS since \
                 FROM node_events WHERE {} GROUP BY node_id HAVING value {op} ?",
                clauses.join(" AND ")
            )
        }
        other => return Err(ApiError::BadRequest(format!("kind {other:?}"))),
    };
    let mut q = state.ch().query(&sql);
    for b in binds {
        q = q.bind(b);
    }
    q = filter.bind(q);
    if rule.kind != "absence" {
        q = q.bind(rule.threshold);
    }
    let rows: Vec<(String, f64, i64)> = q.fetch_all().await?;
    Ok(rows
        .into_iter()
        .map(|(node, value, since)| {
            let since_ms = (rule.kind == "absence").then_some(since);
            (node, Holding { value, since_ms })
        })
        .collect())
}

/// One message to one channel.
#[derive(Debug)]
struct Notification {
    channel_id: String,
    alert_ids: String,
    message: String,
    details: serde_json::Value,
}

#[derive(Clone)]
struct Metrics {
    evaluations: Counter,
    rule_errors: Counter,
    publish_errors: Counter,
    fired: Counter,
    resolved: Counter,
    notifications: Counter,
    open: Gauge,
}

impl Metrics {
    fn new(r: &Registry) -> Self {
        Self {
            evaluations: r.counter(
                "nerve_alerts_evaluations_total",
                "Evaluation rounds over every rule.",
                &[],
            ),
            rule_errors: r.counter(
                "nerve_alerts_rule_errors_total",
                "Rule evaluations that failed (the rule is retried next round).",
                &[],
            ),
            publish_errors: r.counter(
                "nerve_alerts_publish_errors_total",
                "Alert events the event log did not take (kept and retried).",
                &[],
            ),
            fired: r.counter("nerve_alerts_fired_total", "Alerts fired.", &[]),
            resolved: r.counter("nerve_alerts_resolved_total", "Alerts resolved.", &[]),
            notifications: r.counter(
                "nerve_alerts_notifications_total",
                "Messages handed to channels.",
                &[],
            ),
            open: r.gauge("nerve_alerts_open", "Alerts firing now.", &[]),
        }
    }
}

/// Why the evaluator stopped.
#[derive(Debug, thiserror::Error)]
pub enum EvaluatorError {
    #[error("alert evaluator needs NATS")]
    NoNats,
    #[error("reading the alerts stream: {0}")]
    Stream(String),
}

/// Open alerts as of the last event of every rule × node subject.
async fn restore(js: &jetstream::Context, book: &mut Book) -> Result<usize, EvaluatorError> {
    let err = |e: String| EvaluatorError::Stream(e);
    let stream = js
        .get_stream(nerve_ingest::ALERTS_STREAM)
        .await
        .map_err(|e| err(e.to_string()))?;
    let mut consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: subjects::ALERTS_ALL.to_owned(),
            deliver_policy: consumer::DeliverPolicy::LastPerSubject,
            ..Default::default()
        })
        .await
        .map_err(|e| err(e.to_string()))?;
    let mut pending = consumer
        .info()
        .await
        .map_err(|e| err(e.to_string()))?
        .num_pending;
    let mut messages = consumer.messages().await.map_err(|e| err(e.to_string()))?;
    let mut restored = 0;
    while pending > 0 {
        let Some(msg) = messages.next().await else {
            break;
        };
        let msg = msg.map_err(|e| err(e.to_string()))?;
        pending = msg.info().map(|i| i.pending).unwrap_or(0);
        match nerve_schemas::AlertEvent::decode(&msg.payload) {
            Ok(nerve_schemas::AlertEvent::AlertFired(e)) => {
                restored += 1;
                book.restore(Open {
                    notified: e.silenced_by.is_empty(),
                    alert_id: e.alert_id,
                    rule_id: e.rule_id,
                    node_id: e.envelope.node_id,
                    rule_name: e.rule_name,
                    severity: e.severity,
                    threshold: e.threshold,
                    summary: e.summary,
                    pending_since_ms: e.pending_since_ms,
                    fired_at_ms: e.envelope.occurred_at_ms,
                    silenced_by: e.silenced_by,
                    channels: Vec::new(),
                    last_value: Some(e.value),
                });
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, subject = %msg.subject, "skipping a bad alert event")
            }
        }
    }
    Ok(restored)
}

/// Runs the evaluator until `cancel`.
pub async fn run(
    state: AppState,
    config: AlertsConfig,
    metrics: &Registry,
    cancel: CancellationToken,
) -> Result<(), EvaluatorError> {
    let m = Metrics::new(metrics);
    let client = state.nats().cloned().ok_or(EvaluatorError::NoNats)?;
    let js = jetstream::new(client);
    let mut book = Book::default();
    let restored = tokio::select! {
        _ = cancel.cancelled() => return Ok(()),
        r = restore(&js, &mut book) => r?,
    };
    tracing::info!(restored, "alert evaluator started");
    let (tx, rx) = tokio::sync::mpsc::channel::<Notification>(4096);
    let notifier = tokio::spawn(deliver_all(state.clone(), rx));
    let mut outbox: VecDeque<Outgoing> = VecDeque::new();
    let mut tick = tokio::time::interval(Duration::from_millis(config.eval_interval_ms.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let round = evaluate(&state, &js, &config, &m, &mut book, &mut outbox, &tx);
        tokio::select! {
            _ = cancel.cancelled() => break,
            r = round => if let Err(e) = r {
                tracing::warn!(error = %e, "alert evaluation failed; retrying next round");
            },
        }
    }
    drop(tx);
    // Messages already handed over are delivered (each is bounded by the retry schedule).
    let _ = tokio::time::timeout(Duration::from_secs(30), notifier).await;
    Ok(())
}

/// One round: every rule, then the events, then the messages.
async fn evaluate(
    state: &AppState,
    js: &jetstream::Context,
    config: &AlertsConfig,
    m: &Metrics,
    book: &mut Book,
    outbox: &mut VecDeque<Outgoing>,
    tx: &tokio::sync::mpsc::Sender<Notification>,
) -> Result<(), ApiError> {
    let now = nerve_platform::now_ms();
    let rules: Vec<RuleRow> = state.ch().query(crate::alerting::RULES).fetch_all().await?;
    let silences = crate::alerting::active_silences(state, now.max(0) as u64).await?;
    let members = silenced_members(state, &silences).await?;
    let silenced = |rule_id: &str, node_id: &str| muted_by(&silences, &members, rule_id, node_id);
    m.evaluations.inc();
    let mut changes = Vec::new();
    for rule in rules.iter().filter(|r| r.enabled != 0) {
        match holding(state, rule, now).await {
            Ok(h) => changes.extend(book.step(rule, &h, now, &silenced)),
            Err(e) => {
                m.rule_errors.inc();
                tracing::warn!(rule = %rule.name, error = %e, "rule evaluation failed");
            }
        }
    }
    changes.extend(book.retire(&rules, now));
    for change in &changes {
        match change {
            Change::Fired(_) => m.fired.inc(),
            Change::Resolved { .. } => m.resolved.inc(),
        }
        match outgoing(change) {
            Ok(out) => outbox.push_back(out),
            Err(e) => tracing::error!(error = %e, "cannot encode an alert event"),
        }
    }
    flush(js, m, outbox).await;
    m.open.set(book.open().count() as i64);

    // Messages: firings not yet delivered and not muted; resolutions of delivered firings.
    let mut groups: HashMap<(String, &'static str), Vec<Open>> = HashMap::new();
    for alert in book.to_notify(&silenced) {
        groups
            .entry((alert.rule_id.clone(), "firing"))
            .or_default()
            .push(alert);
    }
    for change in changes {
        if let Change::Resolved { alert, .. } = change
            && alert.notified
            && silenced(&alert.rule_id, &alert.node_id).is_none()
        {
            groups
                .entry((alert.rule_id.clone(), "resolved"))
                .or_default()
                .push(alert);
        }
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    for ((_, status), alerts) in groups {
        for n in notifications(&alerts, status, config.max_alerts_per_notification) {
            m.notifications.inc();
            if tx.try_send(n).is_err() {
                tracing::warn!("notification queue full; dropping a message");
            }
        }
    }
    Ok(())
}

/// The (cluster, node) memberships of the clusters `silences` name.
pub(crate) async fn silenced_members(
    state: &AppState,
    silences: &[SilenceRow],
) -> Result<HashSet<(String, String)>, ApiError> {
    let clusters: Vec<String> = silences
        .iter()
        .filter(|s| !s.match_cluster_id.is_empty())
        .map(|s| s.match_cluster_id.clone())
        .collect();
    if clusters.is_empty() {
        return Ok(HashSet::new());
    }
    Ok(state
        .ch()
        .query(&format!(
            "SELECT cluster_id, node_id FROM {} WHERE has(?, cluster_id)",
            crate::clusters::MEMBERS
        ))
        .bind(&clusters)
        .fetch_all::<(String, String)>()
        .await?
        .into_iter()
        .collect())
}

/// Which silence mutes (rule, node), if any.
pub(crate) fn muted_by(
    silences: &[SilenceRow],
    members: &HashSet<(String, String)>,
    rule_id: &str,
    node_id: &str,
) -> Option<String> {
    silences
        .iter()
        .find(|s| {
            (s.match_rule_id.is_empty() || s.match_rule_id == rule_id)
                && (s.match_node_id.is_empty() || s.match_node_id == node_id)
                && (s.match_cluster_id.is_empty()
                    || members.contains(&(s.match_cluster_id.clone(), node_id.to_owned())))
        })
        .map(|s| s.silence_id.clone())
}

/// Events published per pipelined burst.
const PUBLISH_BURST: usize = 4096;

/// Publishes queued events in order, pipelined (a burst in flight, then its acks in order);
/// stops at the first the event log refuses, keeping it and the rest for the next round
/// (events after it that did get stored are dropped as duplicates when re-published: their
/// ids are derived).
async fn flush(js: &jetstream::Context, m: &Metrics, outbox: &mut VecDeque<Outgoing>) {
    while !outbox.is_empty() {
        let burst = PUBLISH_BURST.min(outbox.len());
        let mut acks = Vec::with_capacity(burst);
        for out in outbox.iter().take(burst) {
            match out.send(js).await {
                Ok(ack) => acks.push(ack),
                Err(e) => {
                    tracing::warn!(error = %e, "alert event not sent");
                    break;
                }
            }
        }
        let mut stored = 0;
        for ack in acks {
            match ack.stored().await {
                Ok(_) => stored += 1,
                Err(e) => {
                    tracing::warn!(error = %e, "alert event not stored");
                    break;
                }
            }
        }
        outbox.drain(..stored);
        if stored < burst {
            m.publish_errors.inc();
            tracing::warn!(queued = outbox.len(), "alert events wait for the event log");
            return;
        }
    }
}

/// The messages telling `alerts` (one rule, one status) to their channels.
fn notifications(alerts: &[Open], status: &str, max_listed: usize) -> Vec<Notification> {
    let Some(first) = alerts.first() else {
        return Vec::new();
    };
    let listed = &alerts[..alerts.len().min(max_listed)];
    let names: Vec<String> = listed
        .iter()
        .take(5)
        .map(|a| match a.last_value {
            Some(v) => format!("{} ({v:.1})", a.node_id),
            None => a.node_id.clone(),
        })
        .collect();
    let more = alerts.len().saturating_sub(names.len());
    let message = format!(
        "[{}] {} {status} on {} node{}: {}{}",
        first.severity.to_uppercase(),
        first.rule_name,
        alerts.len(),
        if alerts.len() == 1 { "" } else { "s" },
        names.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    );
    let details = serde_json::json!({
        "status": status,
        "rule": { "rule_id": first.rule_id, "name": first.rule_name, "severity": first.severity },
        "total": alerts.len(),
        "alerts": listed.iter().map(|a| serde_json::json!({
            "alert_id": a.alert_id,
            "node_id": a.node_id,
            "value": a.last_value,
            "threshold": a.threshold,
            "summary": a.summary,
            "fired_at_ms": a.fired_at_ms,
        })).collect::<Vec<_>>(),
    });
    let ids = listed
        .iter()
        .map(|a| a.alert_id.as_str())
        .collect::<Vec<_>>()
        .join(",");
    first
        .channels
        .iter()
        .map(|c| Notification {
            channel_id: c.clone(),
            alert_ids: ids.clone(),
            message: message.clone(),
            details: details.clone(),
        })
        .collect()
}

/// Delivers messages one at a time, in the order the evaluator made them.
async fn deliver_all(state: AppState, mut rx: tokio::sync::mpsc::Receiver<Notification>) {
    while let Some(n) = rx.recv().await {
        let channel = match crate::notify::find(&state, &n.channel_id).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(channel = %n.channel_id, error = %e, "channel gone; message dropped");
                continue;
            }
        };
        match crate::notify::deliver(&state, &channel, &n.alert_ids, &n.message, n.details).await {
            Ok(r) if r.delivered => {}
            Ok(r) => tracing::warn!(
                channel = %channel.name,
                attempts = r.attempts.len(),
                "alert notification not delivered"
            ),
            Err(e) => {
                tracing::warn!(channel = %channel.name, error = %e, "alert notification failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(for_secs: u64, resolve_after_secs: u64) -> RuleRow {
        RuleRow {
            rule_id: "r1".into(),
            name: "cpu-hot".into(),
            description: String::new(),
            kind: "threshold".into(),
            metric: "cpu_pct".into(),
            aggregate: "avg".into(),
            op: ">".into(),
            threshold: 95.0,
            window_secs: 60,
            for_secs,
            resolve_after_secs,
            severity: "critical".into(),
            clusters: vec![],
            labels: vec![],
            node_ids: vec![],
            channels: vec!["c1".into()],
            enabled: 1,
            ..RuleRow::default()
        }
    }

    fn hot(nodes: &[&str]) -> HashMap<String, Holding> {
        nodes
            .iter()
            .map(|n| {
                (
                    (*n).to_owned(),
                    Holding {
                        value: 99.0,
                        since_ms: None,
                    },
                )
            })
            .collect()
    }

    fn none(_: &str, _: &str) -> Option<String> {
        None
    }

    fn kinds(changes: &[Change]) -> Vec<(&'static str, String)> {
        changes
            .iter()
            .map(|c| match c {
                Change::Fired(a) => ("fired", a.node_id.clone()),
                Change::Resolved { alert, .. } => ("resolved", alert.node_id.clone()),
            })
            .collect()
    }

    #[test]
    fn fires_after_the_for_duration_and_only_once_per_rule_and_node() {
        let r = rule(30, 0);
        let mut b = Book::default();
        assert!(b.step(&r, &hot(&["n1"]), 1_000, &none).is_empty());
        assert!(b.step(&r, &hot(&["n1"]), 30_999, &none).is_empty());
        let c = b.step(&r, &hot(&["n1"]), 31_000, &none);
        assert_eq!(kinds(&c), [("fired", "n1".to_owned())]);
        let Change::Fired(a) = &c[0] else {
            unreachable!()
        };
        assert_eq!(a.pending_since_ms, 1_000);
        assert_eq!(a.alert_id, alert_id("r1", "n1", 1_000));
        assert!(b.step(&r, &hot(&["n1"]), 60_000, &none).is_empty());
        assert_eq!(b.open().count(), 1);
    }

    #[test]
    fn a_condition_that_lapses_before_the_for_duration_starts_over() {
        let r = rule(30, 0);
        let mut b = Book::default();
        b.step(&r, &hot(&["n1"]), 0, &none);
        b.step(&r, &hot(&[]), 20_000, &none);
        assert!(b.step(&r, &hot(&["n1"]), 40_000, &none).is_empty());
        assert_eq!(kinds(&b.step(&r, &hot(&["n1"]), 70_000, &none)).len(), 1);
    }

    #[test]
    fn flapping_is_damped_until_the_condition_stays_false() {
        let r = rule(0, 60);
        let mut b = Book::default();
        assert_eq!(b.step(&r, &hot(&["n1"]), 0, &none).len(), 1);
        // Off and on again within the damping time: still the same one alert.
        for (t, nodes) in [
            (10_000, &[][..]),
            (50_000, &["n1"][..]),
            (60_000, &[][..]),
            (100_000, &["n1"][..]),
        ] {
            assert!(b.step(&r, &hot(nodes), t, &none).is_empty(), "at {t}");
        }
        assert!(b.step(&r, &hot(&[]), 110_000, &none).is_empty());
        let c = b.step(&r, &hot(&[]), 170_000, &none);
        assert_eq!(kinds(&c), [("resolved", "n1".to_owned())]);
        assert!(matches!(
            &c[0],
            Change::Resolved {
                reason: "recovered",
                ..
            }
        ));
    }

    #[test]
    fn absence_counts_from_when_the_node_went_silent() {
        let mut r = rule(120, 0);
        r.kind = "absence".into();
        let mut b = Book::default();
        let silent = |since| {
            HashMap::from([(
                "n1".to_owned(),
                Holding {
                    value: 0.0,
                    since_ms: Some(since),
                },
            )])
        };
        // First seen long after it went silent: fires at once.
        let c = b.step(&r, &silent(1_000), 200_000, &none);
        assert_eq!(kinds(&c), [("fired", "n1".to_owned())]);
    }

    #[test]
    fn deleted_and_disabled_rules_resolve_their_alerts() {
        let r = rule(0, 0);
        let mut r2 = rule(0, 0);
        r2.rule_id = "r2".into();
        let mut b = Book::default();
        b.step(&r, &hot(&["n1"]), 0, &none);
        b.step(&r2, &hot(&["n1"]), 0, &none);
        r2.enabled = 0;
        let c = b.retire(std::slice::from_ref(&r2), 5_000);
        let reasons: Vec<&str> = c
            .iter()
            .map(|c| match c {
                Change::Resolved { reason, .. } => *reason,
                Change::Fired(_) => "fired",
            })
            .collect();
        assert_eq!(reasons.len(), 2);
        assert!(reasons.contains(&"rule_deleted") && reasons.contains(&"rule_disabled"));
        assert_eq!(b.open().count(), 0);
    }

    #[test]
    fn silenced_alerts_are_told_once_their_silence_ends() {
        let r = rule(0, 0);
        let mut b = Book::default();
        let muted = |_: &str, n: &str| (n == "n1").then(|| "s1".to_owned());
        let c = b.step(&r, &hot(&["n1", "n2"]), 0, &muted);
        let Some(Change::Fired(a)) = c
            .iter()
            .find(|c| matches!(c, Change::Fired(a) if a.node_id == "n1"))
        else {
            unreachable!()
        };
        assert_eq!(a.silenced_by, "s1");
        let told: Vec<String> = b.to_notify(&muted).into_iter().map(|a| a.node_id).collect();
        assert_eq!(told, ["n2"]);
        assert!(b.to_notify(&muted).is_empty(), "told once");
        let told: Vec<String> = b.to_notify(&none).into_iter().map(|a| a.node_id).collect();
        assert_eq!(told, ["n1"], "the silence ended");
    }

    #[test]
    fn a_silence_mutes_what_all_its_matchers_match() {
        let silence = |rule: &str, node: &str, cluster: &str| SilenceRow {
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
        let muted = |s: SilenceRow, rule: &str, node: &str| {
            muted_by(std::slice::from_ref(&s), &members, rule, node).is_some()
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

    #[test]
    fn one_message_per_channel_lists_the_alerts_and_counts_the_rest() {
        let r = rule(0, 0);
        let mut b = Book::default();
        let nodes: Vec<String> = (0..8).map(|i| format!("n{i}")).collect();
        let refs: Vec<&str> = nodes.iter().map(String::as_str).collect();
        b.step(&r, &hot(&refs), 0, &none);
        let alerts = b.to_notify(&none);
        let n = notifications(&alerts, "firing", 6);
        assert_eq!(n.len(), 1);
        assert!(
            n[0].message
                .starts_with("[CRITICAL] cpu-hot firing on 8 nodes: n0 (99.0)"),
            "{}",
            n[0].message
        );
        assert!(n[0].message.ends_with("and 3 more"), "{}", n[0].message);
        assert_eq!(n[0].details["alerts"].as_array().map(Vec::len), Some(6));
        assert_eq!(n[0].alert_ids.split(',').count(), 6);
    }
}
