//! What can start a run: an XID, a failed health check, an alert firing, a GPU verdict; and
//! whether a policy takes it.

use nerve_projections::remediation::PolicyRow;
use nerve_schemas::{AlertEvent, NodeEvent};

/// One thing that happened to a node.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    pub node: String,
    /// `xid`, `health_check`, `alert` or `gpu_health`.
    pub kind: &'static str,
    pub xid: i32,
    /// `warning` or `critical` (XIDs and verdicts).
    pub severity: String,
    pub rule_id: String,
    pub check: String,
    /// In words, for the journal and the maintenance history.
    pub cause: String,
    /// When it was stored.
    pub at_ms: i64,
}

/// How bad a severity is (`info` < `warning` < `critical`).
pub fn rank(severity: &str) -> u8 {
    match severity {
        "critical" => 2,
        "warning" => 1,
        _ => 0,
    }
}

impl Trigger {
    fn new(node: &str, kind: &'static str, cause: String, at_ms: i64) -> Self {
        Self {
            node: node.to_owned(),
            kind,
            xid: 0,
            severity: String::new(),
            rule_id: String::new(),
            check: String::new(),
            cause,
            at_ms,
        }
    }

    /// The trigger a stored event is, if any: an XID, a health check that did not pass, an
    /// alert firing.
    pub fn of(subject: &str, payload: &[u8], at_ms: i64) -> Option<Self> {
        if subject.starts_with("nerve.v1.alerts.") {
            return match AlertEvent::decode(payload).ok()? {
                AlertEvent::AlertFired(a) => Some(Self {
                    rule_id: a.rule_id.clone(),
                    severity: a.severity.clone(),
                    ..Self::new(
                        &a.envelope.node_id,
                        "alert",
                        format!("alert {}: {}", a.rule_name, a.summary),
                        at_ms,
                    )
                }),
                _ => None,
            };
        }
        match NodeEvent::decode(payload).ok()? {
            NodeEvent::GpuXidOccurred(x) if subject.starts_with("nerve.v1.events.gpu_xid.") => {
                Some(Self {
                    xid: i32::try_from(x.xid).unwrap_or(i32::MAX),
                    severity: x.severity.clone(),
                    ..Self::new(
                        &x.envelope.node_id,
                        "xid",
                        format!(
                            "XID {} on GPU {} ({}): {}",
                            x.xid, x.gpu_index, x.pci_bus_id, x.meaning
                        ),
                        at_ms,
                    )
                })
            }
            NodeEvent::HealthCheckCompleted(h)
                if subject.starts_with("nerve.v1.events.health.")
                    && matches!(h.verdict.as_str(), "fail" | "unavailable") =>
            {
                let reasons: Vec<&str> = h.reasons.iter().map(|r| r.message.as_str()).collect();
                Some(Self {
                    check: h.check.clone(),
                    ..Self::new(
                        &h.envelope.node_id,
                        "health_check",
                        format!(
                            "health check {} {}: {}",
                            h.check,
                            h.verdict,
                            reasons.join("; ")
                        ),
                        at_ms,
                    )
                })
            }
            _ => None,
        }
    }

    /// A node whose latest GPU verdict is `health`.
    pub fn verdict(node: String, health: String, at_ms: i64) -> Self {
        Self {
            cause: format!("GPU verdict {health}"),
            severity: health,
            ..Self::new(&node, "gpu_health", String::new(), at_ms)
        }
    }

    /// Whether `p` acts on this trigger (its scope aside).
    pub fn matches(&self, p: &PolicyRow) -> bool {
        if p.trigger != self.kind {
            return false;
        }
        let least = if p.severity.is_empty() {
            "critical"
        } else {
            &p.severity
        };
        match self.kind {
            "xid" if p.xid_codes.is_empty() => rank(&self.severity) >= rank(least),
            "xid" => p.xid_codes.contains(&self.xid),
            "gpu_health" => rank(&self.severity) >= rank(least),
            "alert" => p.rule_ids.is_empty() || p.rule_ids.contains(&self.rule_id),
            "health_check" => p.checks.is_empty() || p.checks.contains(&self.check),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(trigger: &str) -> PolicyRow {
        PolicyRow {
            trigger: trigger.into(),
            ..PolicyRow::default()
        }
    }

    #[test]
    fn policies_take_the_triggers_they_name() {
        let xid = |code: i32, severity: &str| Trigger {
            xid: code,
            severity: severity.into(),
            ..Trigger::new("n1", "xid", String::new(), 0)
        };
        let codes = PolicyRow {
            xid_codes: vec![79, 48],
            ..policy("xid")
        };
        assert!(xid(79, "critical").matches(&codes));
        assert!(!xid(13, "warning").matches(&codes));
        let any_critical = policy("xid");
        assert!(xid(95, "critical").matches(&any_critical));
        assert!(!xid(13, "warning").matches(&any_critical));
        let warnings = PolicyRow {
            severity: "warning".into(),
            ..policy("xid")
        };
        assert!(xid(13, "warning").matches(&warnings));
        assert!(!xid(79, "critical").matches(&policy("alert")));

        let verdict = Trigger::verdict("n1".into(), "warning".into(), 0);
        assert!(
            !verdict.matches(&policy("gpu_health")),
            "critical by default"
        );
        assert!(verdict.matches(&warnings_of("gpu_health")));

        let check = Trigger {
            check: "gpu".into(),
            ..Trigger::new("n1", "health_check", String::new(), 0)
        };
        assert!(check.matches(&policy("health_check")));
        let dcgm_only = PolicyRow {
            checks: vec!["dcgm".into()],
            ..policy("health_check")
        };
        assert!(!check.matches(&dcgm_only));
    }

    fn warnings_of(trigger: &str) -> PolicyRow {
        PolicyRow {
            severity: "warning".into(),
            ..policy(trigger)
        }
    }
}
