//! Alerting events: rules and silences (control stream, kept forever) and each alert's firing
//! and resolution (alerts stream). Each mirrors its `.avsc` file field for field (checked by
//! tests).

use serde::{Deserialize, Serialize};

use crate::events::Envelope;

/// `AlertRuleSaved` v1: the whole rule. The envelope's `node_id` is the rule id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRuleSaved {
    pub envelope: Envelope,
    pub rule_id: String,
    pub name: String,
    pub description: String,
    /// `threshold`, `absence` or `event`.
    pub kind: String,
    pub metric: String,
    pub aggregate: String,
    pub op: String,
    pub threshold: f64,
    pub window_secs: i64,
    pub for_secs: i64,
    pub resolve_after_secs: i64,
    pub severity: String,
    pub clusters: Vec<String>,
    pub labels: Vec<String>,
    pub node_ids: Vec<String>,
    pub channels: Vec<String>,
    pub enabled: bool,
    pub requested_by: String,
}
event!(AlertRuleSaved, 1);

/// `AlertRuleDeleted` v1. The envelope's `node_id` is the rule id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRuleDeleted {
    pub envelope: Envelope,
    pub rule_id: String,
    pub requested_by: String,
}
event!(AlertRuleDeleted, 1);

/// `SilenceCreated` v1: every non-empty `match_*` must hold for an alert to be muted. The
/// envelope's `node_id` is the silence id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SilenceCreated {
    pub envelope: Envelope,
    pub silence_id: String,
    pub match_rule_id: String,
    pub match_node_id: String,
    pub match_cluster_id: String,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub reason: String,
    pub requested_by: String,
}
event!(SilenceCreated, 1);

/// `SilenceDeleted` v1: a silence ended early. The envelope's `node_id` is the silence id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SilenceDeleted {
    pub envelope: Envelope,
    pub silence_id: String,
    pub requested_by: String,
}
event!(SilenceDeleted, 1);

/// `AlertFired` v1. The envelope's `node_id` is the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertFired {
    pub envelope: Envelope,
    pub alert_id: String,
    pub rule_id: String,
    pub rule_name: String,
    pub severity: String,
    pub value: f64,
    pub threshold: f64,
    pub summary: String,
    pub pending_since_ms: i64,
    pub silenced_by: String,
}
event!(AlertFired, 1);

/// `AlertResolved` v1. The envelope's `node_id` is the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertResolved {
    pub envelope: Envelope,
    pub alert_id: String,
    pub rule_id: String,
    pub rule_name: String,
    pub severity: String,
    pub threshold: f64,
    /// The firing's summary.
    pub summary: String,
    pub value: Option<f64>,
    /// `recovered`, `rule_changed`, `rule_deleted` or `out_of_scope`.
    pub reason: String,
    pub fired_at_ms: i64,
    pub silenced_by: String,
}
event!(AlertResolved, 1);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Event;

    use crate::registry::assert_round_trips as check;

    #[test]
    fn every_alerting_event_follows_its_schema_and_round_trips() {
        let env = |name: &str| Envelope {
            schema_name: name.to_owned(),
            ..Envelope::new::<AlertFired>("n-1", 1_700_000_000_000)
        };
        let rule = "0192f0c4-7d1a-7c3e-9d51-1f2e3a4b5c6d".to_owned();
        check(&AlertRuleSaved {
            envelope: env(AlertRuleSaved::NAME),
            rule_id: rule.clone(),
            name: "gpu-hot".into(),
            description: "GPU above 85 °C".into(),
            kind: "threshold".into(),
            metric: "gpu_temperature_c".into(),
            aggregate: "min".into(),
            op: ">".into(),
            threshold: 85.0,
            window_secs: 300,
            for_secs: 0,
            resolve_after_secs: 60,
            severity: "critical".into(),
            clusters: vec!["c1".into()],
            labels: vec!["gpu=h100".into()],
            node_ids: vec![],
            channels: vec!["ch1".into()],
            enabled: true,
            requested_by: "ops".into(),
        });
        check(&AlertRuleDeleted {
            envelope: env(AlertRuleDeleted::NAME),
            rule_id: rule.clone(),
            requested_by: "ops".into(),
        });
        check(&SilenceCreated {
            envelope: env(SilenceCreated::NAME),
            silence_id: rule.clone(),
            match_rule_id: String::new(),
            match_node_id: "n-1".into(),
            match_cluster_id: String::new(),
            starts_at_ms: 1,
            ends_at_ms: 2,
            reason: "maintenance".into(),
            requested_by: "ops".into(),
        });
        check(&SilenceDeleted {
            envelope: env(SilenceDeleted::NAME),
            silence_id: rule.clone(),
            requested_by: "ops".into(),
        });
        check(&AlertFired {
            envelope: env(AlertFired::NAME),
            alert_id: "a".into(),
            rule_id: rule.clone(),
            rule_name: "gpu-hot".into(),
            severity: "critical".into(),
            value: 91.5,
            threshold: 85.0,
            summary: "GPU temperature 91.5 > 85".into(),
            pending_since_ms: 1,
            silenced_by: String::new(),
        });
        for value in [None, Some(12.0)] {
            check(&AlertResolved {
                envelope: env(AlertResolved::NAME),
                alert_id: "a".into(),
                rule_id: rule.clone(),
                rule_name: "gpu-hot".into(),
                severity: "critical".into(),
                threshold: 85.0,
                summary: "GPU temperature 91.5 > 85".into(),
                value,
                reason: "recovered".into(),
                fired_at_ms: 1,
                silenced_by: "s".into(),
            });
        }
    }
}
