//! The alert evaluator, run inside `nerve project`: every `alerts.eval_interval_ms` it asks
//! ClickHouse which nodes in each enabled rule's scope meet its condition ([`condition`]),
//! folds that into the [`Book`], records every firing and resolution as `AlertFired` /
//! `AlertResolved` on the alerts stream, and tells the rules' channels — one message per rule
//! and change per evaluation, listing its alerts, unless a silence mutes them.
//!
//! At start the book is restored from the last event of every `nerve.v1.alerts.<rule>.<node>`
//! subject. Archive rules, and the built-in `archive-lag` rule where the archive is configured,
//! are judged from the archive and the streams ([`crate::archive`]). Event ids are derived, so an event re-published after a failure is dropped by
//! JetStream's duplicate window. Run one evaluator per deployment.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt as _;
use nerve_ingest::{Outgoing, PublishError};
use nerve_platform::config::AlertsConfig;
use nerve_platform::metrics::{Counter, Gauge, Registry};
use nerve_schemas::{AlertFired, AlertResolved, Envelope, subjects};
use tokio_util::sync::CancellationToken;

use crate::archive::Watch;
use crate::book::{Book, Change, Open, event_id};
use crate::rule::Kind;
use crate::rules::Rule;
use crate::silences::Mutes;
use crate::{AlertsError, Context, condition, notify};

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
    ctx: Context,
    config: AlertsConfig,
    archive: Option<Watch>,
    metrics: &Registry,
    cancel: CancellationToken,
) -> Result<(), EvaluatorError> {
    let m = Metrics::new(metrics);
    let js = ctx
        .log()
        .jetstream()
        .map_err(|_| EvaluatorError::NoNats)?
        .clone();
    let mut book = Book::default();
    let restored = tokio::select! {
        _ = cancel.cancelled() => return Ok(()),
        r = restore(&js, &mut book) => r?,
    };
    tracing::info!(restored, "alert evaluator started");
    let (tx, rx) = tokio::sync::mpsc::channel::<Notification>(4096);
    let notifier = tokio::spawn(deliver_all(ctx.clone(), rx, metrics.clone()));
    let mut outbox: VecDeque<Outgoing> = VecDeque::new();
    let mut tick = tokio::time::interval(Duration::from_millis(config.eval_interval_ms.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let sources = Sources {
            ctx: &ctx,
            js: &js,
            archive: archive.as_ref(),
        };
        let round = evaluate(sources, &config, &m, &mut book, &mut outbox, &tx);
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

/// Where rules are judged from: ClickHouse, and for archive rules the archive and the streams.
struct Sources<'a> {
    ctx: &'a Context,
    js: &'a jetstream::Context,
    archive: Option<&'a Watch>,
}

/// One round: every rule, then the events, then the messages.
async fn evaluate(
    Sources { ctx, js, archive }: Sources<'_>,
    config: &AlertsConfig,
    m: &Metrics,
    book: &mut Book,
    outbox: &mut VecDeque<Outgoing>,
    tx: &tokio::sync::mpsc::Sender<Notification>,
) -> Result<(), AlertsError> {
    let now = nerve_platform::now_ms();
    let mut rules = crate::rules::stored(ctx, None).await?;
    rules.extend(archive.and_then(crate::archive::builtin));
    rules.push(crate::condition::breaker_builtin(
        &config.remediation_breaker_channels,
    ));
    let mutes = Mutes::at(ctx, now.max(0) as u64).await?;
    let silenced = |rule_id: &str, node_id: &str| mutes.muted_by(rule_id, node_id);
    m.evaluations.inc();
    let mut changes = Vec::new();
    for row in rules.iter().filter(|r| r.enabled != 0) {
        let held = match Rule::try_from(row) {
            Ok(rule) => match rule.kind {
                Kind::Archive => crate::archive::holding(js, archive, &rule, now).await,
                _ => condition::holding(ctx, &rule, now).await,
            }
            .map(|h| book.step(&rule, &h, now, &silenced)),
            Err(e) => Err(AlertsError::BadRequest(e)),
        };
        match held {
            Ok(c) => changes.extend(c),
            Err(e) => {
                m.rule_errors.inc();
                tracing::warn!(rule = %row.name, error = %e, "rule evaluation failed");
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

/// Delivers messages one at a time, in the order the evaluator made them; counts every
/// attempt by channel kind and outcome.
async fn deliver_all(
    ctx: Context,
    mut rx: tokio::sync::mpsc::Receiver<Notification>,
    metrics: Registry,
) {
    let attempts = |kind: &str, ok: bool| {
        metrics.counter(
            "nerve_alerts_notification_attempts_total",
            "Attempts to deliver an alert notification (retries included), by channel kind and outcome.",
            &[("kind", kind), ("outcome", if ok { "ok" } else { "error" })],
        )
    };
    while let Some(n) = rx.recv().await {
        let channel = match notify::find(&ctx, &n.channel_id).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(channel = %n.channel_id, error = %e, "channel gone; message dropped");
                continue;
            }
        };
        let report = notify::deliver(&ctx, &channel, &n.alert_ids, &n.message, n.details).await;
        if let Ok(r) = &report {
            for a in &r.attempts {
                attempts(&channel.kind, a.ok).inc();
            }
        }
        match report {
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
    use crate::book::tests::{hot, none, rule};

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
