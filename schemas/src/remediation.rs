//! Remediation events: policies (what node condition a policy acts on, where, and its ladder
//! of steps), each run's journal and the circuit breaker (on the control stream), and health
//! checks' verdicts (on the events stream). Each mirrors its `.avsc` file field for field.

use serde::{Deserialize, Serialize};

use crate::events::Envelope;
use crate::tasks::TaskSpec;

/// One rung of a policy's ladder.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RemediationStep {
    /// `prepare`, `repair` or `verify`.
    pub stage: String,
    /// `notify`, `cordon`, `task`, `health_check` or `wait`.
    pub action: String,
    pub channels: Vec<String>,
    pub task: Option<TaskSpec>,
    pub wait_secs: i32,
}

/// `RemediationPolicySaved` v1. The envelope's `node_id` is the policy id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemediationPolicySaved {
    pub envelope: Envelope,
    pub policy_id: String,
    pub name: String,
    pub description: String,
    pub enabled: bool,
    pub dry_run: bool,
    /// `xid`, `gpu_health`, `alert` or `health_check`.
    pub trigger: String,
    pub xid_codes: Vec<i32>,
    pub severity: String,
    pub rule_ids: Vec<String>,
    pub checks: Vec<String>,
    pub clusters: Vec<String>,
    pub labels: Vec<String>,
    pub node_ids: Vec<String>,
    pub steps: Vec<RemediationStep>,
    pub requested_by: String,
}
event!(RemediationPolicySaved, 1);

/// `RemediationPolicyDeleted` v1. The envelope's `node_id` is the policy id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemediationPolicyDeleted {
    pub envelope: Envelope,
    pub policy_id: String,
    pub requested_by: String,
}
event!(RemediationPolicyDeleted, 1);

/// `RemediationRecorded` v1: one journal entry of a run or of the breaker. The envelope's
/// `node_id` is the node (`breaker` for a reset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemediationRecorded {
    pub envelope: Envelope,
    pub run_id: String,
    pub policy_id: String,
    pub policy_name: String,
    /// `run_started`, `step_finished`, `run_ended`, `held`, `breaker_tripped`, `breaker_reset`.
    pub kind: String,
    pub step: i32,
    pub action: String,
    pub stage: String,
    pub outcome: String,
    pub task_id: String,
    pub cause: String,
    pub detail: String,
    pub dry_run: bool,
    pub requested_by: String,
}
event!(RemediationRecorded, 1);

/// One reason a health check gives for its verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthCheckReason {
    /// `warning` or `critical`.
    pub severity: String,
    pub code: String,
    pub message: String,
}

/// `HealthCheckCompleted` v1: a health check's verdict. The envelope's `node_id` is the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthCheckCompleted {
    pub envelope: Envelope,
    pub task_id: String,
    pub check: String,
    /// `pass`, `warn`, `fail` or `unavailable`.
    pub verdict: String,
    pub reasons: Vec<HealthCheckReason>,
    pub duration_ms: i64,
}
event!(HealthCheckCompleted, 1);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Event;
    use crate::registry::assert_round_trips as check;

    #[test]
    fn every_remediation_event_follows_its_schema_and_round_trips() {
        let env = |name: &str| Envelope {
            schema_name: name.to_owned(),
            ..Envelope::new::<RemediationRecorded>("node-1", 1_700_000_000_000)
        };
        let policy = "0192f0c4-7d1a-7c3e-9d51-1f2e3a4b5c6d".to_owned();
        check(&RemediationPolicySaved {
            envelope: env(RemediationPolicySaved::NAME),
            policy_id: policy.clone(),
            name: "xid-79".into(),
            description: "fallen off the bus".into(),
            enabled: true,
            dry_run: false,
            trigger: "xid".into(),
            xid_codes: vec![79],
            severity: "critical".into(),
            clusters: vec!["c1".into()],
            labels: vec!["gpu=h100".into()],
            steps: vec![
                RemediationStep {
                    stage: "prepare".into(),
                    action: "cordon".into(),
                    ..RemediationStep::default()
                },
                RemediationStep {
                    stage: "repair".into(),
                    action: "task".into(),
                    task: Some(TaskSpec {
                        kind: "hook".into(),
                        hook: "reboot".into(),
                        timeout_secs: 600,
                        ..TaskSpec::default()
                    }),
                    ..RemediationStep::default()
                },
            ],
            requested_by: "ops".into(),
            rule_ids: vec![],
            checks: vec![],
            node_ids: vec![],
        });
        check(&RemediationPolicyDeleted {
            envelope: env(RemediationPolicyDeleted::NAME),
            policy_id: policy.clone(),
            requested_by: "ops".into(),
        });
        check(&RemediationRecorded {
            envelope: env(RemediationRecorded::NAME),
            run_id: "0192f0c4-7d1a-7c3e-9d51-1f2e3a4b5c6e".into(),
            policy_id: policy,
            policy_name: "xid-79".into(),
            kind: "step_finished".into(),
            step: 1,
            action: "task".into(),
            stage: "repair".into(),
            outcome: "failed".into(),
            task_id: "0192f0c4-7d1a-7c3e-9d51-1f2e3a4b5c6f".into(),
            cause: "XID 79 on GPU 0000:3b:00.0".into(),
            detail: "exit code 1".into(),
            dry_run: false,
            requested_by: "remediation".into(),
        });
        check(&HealthCheckCompleted {
            envelope: env(HealthCheckCompleted::NAME),
            task_id: "t".into(),
            check: "gpu".into(),
            verdict: "fail".into(),
            reasons: vec![HealthCheckReason {
                severity: "critical".into(),
                code: "gpu_missing".into(),
                message: "0000:3b:00.0 is in the inventory but not on the bus".into(),
            }],
            duration_ms: 120,
        });
    }
}
