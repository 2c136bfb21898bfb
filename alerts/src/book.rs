//! The alert state machine, with no I/O and explicit times: pending → firing once a rule's
//! condition has held for `for_secs`; firing → resolved once it has stayed false for
//! `resolve_after_secs` (flap damping), or when its rule is deleted or disabled. One open alert
//! per rule × node. Alert and event ids derive from (rule, node, when the condition began), so
//! a re-published event is a duplicate JetStream drops.

use std::collections::HashMap;
use std::time::Duration;

use nerve_projections::control::RuleRow;

use crate::rule::Kind;
use crate::rules::Rule;

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

/// The id of the event recording `what` (`fired`, `resolved`) of an alert.
pub(crate) fn event_id(alert_id: &str, what: &str) -> String {
    let key = format!("nerve-alert-event/{alert_id}/{what}");
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, key.as_bytes()).to_string()
}

fn secs_text(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// One line for people: what crossed what.
pub fn summary(rule: &Rule, value: f64) -> String {
    match rule.kind {
        Kind::Absence => format!(
            "node {} for {}",
            rule.metric,
            secs_text(value.max(0.0) as u64)
        ),
        Kind::Event => format!(
            "{} = {value:.1} over {} ({} {})",
            rule.metric,
            secs_text(rule.window_secs),
            rule.op,
            rule.threshold
        ),
        Kind::Archive => format!(
            "the oldest event not archived is {value:.1}% of the stream's max_age old ({} {})",
            rule.op, rule.threshold
        ),
        Kind::Threshold => format!(
            "{} {} over {} = {value:.1} ({} {})",
            rule.metric,
            rule.aggregate.map_or("", |a| a.as_str()),
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
        rule: &Rule,
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
                severity: rule.severity.as_str().to_owned(),
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn rule(for_secs: u64, resolve_after_secs: u64) -> Rule {
        Rule::try_from(&RuleRow {
            rule_id: "r1".into(),
            name: "cpu-hot".into(),
            kind: "threshold".into(),
            metric: "cpu_pct".into(),
            aggregate: "avg".into(),
            op: ">".into(),
            threshold: 95.0,
            window_secs: 60,
            for_secs,
            resolve_after_secs,
            severity: "critical".into(),
            channels: vec!["c1".into()],
            enabled: 1,
            ..RuleRow::default()
        })
        .expect("a valid rule")
    }

    pub(crate) fn hot(nodes: &[&str]) -> HashMap<String, Holding> {
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

    pub(crate) fn none(_: &str, _: &str) -> Option<String> {
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
        r.kind = Kind::Absence;
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
        let stored = RuleRow {
            rule_id: "r2".into(),
            enabled: 0,
            ..RuleRow::default()
        };
        let c = b.retire(std::slice::from_ref(&stored), 5_000);
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
}
