//! One run: a policy's ladder on one node. `prepare` steps run in order (a failed task ends in
//! `service_required`; a notification that did not go out does not stop the ladder);
//! `repair` steps are tried in order until one succeeds (none succeeding ends in
//! `service_required`); `verify` steps must all pass. The node moves `cordoned` (a cordon step)
//! → `remediating` (the first repair) → `verifying` (the first check) → `in_service`, or
//! `service_required`, each change a `NodeMaintenanceChanged` naming the policy and the run.
//! A step's outcome is read from the task ledger. Every step is a journal entry; a dry run
//! records what it would do and changes nothing.

use std::time::Duration;

use nerve_projections::remediation::PolicyRow;
use nerve_projections::tasks::TASK_NODES;
use nerve_schemas::{
    EnvVar, Envelope, NodeMaintenanceChanged, RemediationRecorded, RemediationStep, TaskRequested,
    TaskSelector, subjects,
};

use crate::shared::Shared;

/// Who the journal and the tasks name as having acted.
pub const ACTOR: &str = "remediation";

/// A run to do.
#[derive(Debug, Clone)]
pub struct Run {
    pub run_id: String,
    pub node: String,
    pub policy: PolicyRow,
    pub steps: Vec<RemediationStep>,
    /// What started it, in words.
    pub cause: String,
}

/// How a step went.
struct Outcome {
    ok: bool,
    task_id: String,
    detail: String,
}

impl Outcome {
    fn done(detail: impl Into<String>) -> Self {
        Self {
            ok: true,
            task_id: String::new(),
            detail: detail.into(),
        }
    }
}

impl Run {
    fn entry(&self, kind: &str) -> RemediationRecorded {
        RemediationRecorded {
            envelope: Envelope::new::<RemediationRecorded>(&*self.node, nerve_platform::now_ms()),
            run_id: self.run_id.clone(),
            policy_id: self.policy.policy_id.clone(),
            policy_name: self.policy.name.clone(),
            kind: kind.to_owned(),
            step: -1,
            action: String::new(),
            stage: String::new(),
            outcome: String::new(),
            task_id: String::new(),
            cause: self.cause.clone(),
            detail: String::new(),
            dry_run: self.policy.dry_run != 0,
            requested_by: ACTOR.to_owned(),
        }
    }

    async fn journal(&self, shared: &Shared, entry: RemediationRecorded) {
        shared
            .publish(subjects::control_remediation(&self.node), &entry)
            .await;
    }

    async fn step_entry(&self, shared: &Shared, i: usize, step: &RemediationStep, o: &Outcome) {
        let outcome = match (self.policy.dry_run != 0, o.ok) {
            (true, _) => "would_run",
            (false, true) => "succeeded",
            (false, false) => "failed",
        };
        let entry = RemediationRecorded {
            step: i as i32,
            action: step.action.clone(),
            stage: step.stage.clone(),
            outcome: outcome.to_owned(),
            task_id: o.task_id.clone(),
            detail: o.detail.clone(),
            ..self.entry("step_finished")
        };
        self.journal(shared, entry).await;
    }

    async fn maintain(&self, shared: &Shared, state: &str, reason: String) {
        let change = NodeMaintenanceChanged {
            envelope: Envelope::new::<NodeMaintenanceChanged>(
                &*self.node,
                nerve_platform::now_ms(),
            ),
            state: state.to_owned(),
            reason,
            policy_id: self.policy.policy_id.clone(),
            run_id: self.run_id.clone(),
            requested_by: ACTOR.to_owned(),
        };
        shared
            .publish(subjects::control_maintenance(&self.node), &change)
            .await;
    }

    /// Records that the circuit breaker kept this run from starting, and that it tripped when
    /// this start tripped it (`tripped`: the nodes that would have started, the limit).
    pub async fn held(&self, shared: &Shared, tripped: Option<(usize, usize)>) {
        let entry = |kind: &str, detail: String| RemediationRecorded {
            run_id: String::new(),
            dry_run: false,
            detail,
            ..self.entry(kind)
        };
        if let Some((started, limit)) = tripped {
            let window = shared.config.breaker_window_secs;
            tracing::warn!(node = %self.node, started, limit, "remediation circuit breaker tripped");
            let detail = format!(
                "{started} nodes would have entered remediation within {window} s; the limit is \
                 {limit}: policies act on nothing until an admin resets the breaker"
            );
            self.journal(shared, entry("breaker_tripped", detail)).await;
        }
        let detail = "held by the circuit breaker: nothing was done".to_owned();
        self.journal(shared, entry("held", detail)).await;
    }

    /// Ends a run a stopped engine left unfinished: journal and (unless a dry run) the node
    /// marked for service, since no ladder vouches for it.
    pub async fn interrupted(&self, shared: &Shared) {
        if self.policy.dry_run == 0 {
            self.maintain(
                shared,
                "service_required",
                format!(
                    "policy {}: the run was interrupted (the remediation engine stopped); \
                     check the node",
                    self.policy.name
                ),
            )
            .await;
        }
        let entry = RemediationRecorded {
            outcome: "interrupted".to_owned(),
            ..self.entry("run_ended")
        };
        self.journal(shared, entry).await;
    }

    /// Runs the ladder to its end; the run's outcome.
    pub async fn execute(&self, shared: &Shared) -> &'static str {
        self.journal(shared, self.entry("run_started")).await;
        let outcome = if self.policy.dry_run != 0 {
            for (i, step) in self.steps.iter().enumerate() {
                let o = Outcome::done(describe(step));
                self.step_entry(shared, i, step, &o).await;
            }
            "dry_run"
        } else {
            self.climb(shared).await
        };
        let entry = RemediationRecorded {
            outcome: outcome.to_owned(),
            ..self.entry("run_ended")
        };
        self.journal(shared, entry).await;
        outcome
    }

    async fn climb(&self, shared: &Shared) -> &'static str {
        let name = &self.policy.name;
        let mut moved = false;
        let mut failure: Option<String> = None;
        let staged = |stage: &'static str| {
            self.steps
                .iter()
                .enumerate()
                .filter(move |(_, s)| s.stage == stage)
        };
        for (i, step) in staged("prepare") {
            let o = self.step(shared, step).await;
            self.step_entry(shared, i, step, &o).await;
            moved |= step.action == "cordon";
            if !o.ok && step.action != "notify" {
                failure = Some(format!("step {i} ({}) failed: {}", step.action, o.detail));
                break;
            }
        }
        if failure.is_none() && staged("repair").next().is_some() {
            self.maintain(
                shared,
                "remediating",
                format!("policy {name}: repairing ({})", self.cause),
            )
            .await;
            moved = true;
            let mut repaired = false;
            let mut last = String::new();
            for (i, step) in staged("repair") {
                let o = self.step(shared, step).await;
                self.step_entry(shared, i, step, &o).await;
                if o.ok {
                    repaired = true;
                    break;
                }
                last = format!("step {i} ({}) failed: {}", step.action, o.detail);
            }
            if !repaired {
                failure = Some(format!("every repair failed; the last: {last}"));
            }
        }
        if failure.is_none() && staged("verify").next().is_some() {
            self.maintain(shared, "verifying", format!("policy {name}: verifying"))
                .await;
            moved = true;
            for (i, step) in staged("verify") {
                let o = self.step(shared, step).await;
                self.step_entry(shared, i, step, &o).await;
                if !o.ok && step.action != "notify" {
                    failure = Some(format!("step {i} ({}) failed: {}", step.action, o.detail));
                    break;
                }
            }
        }
        match failure {
            Some(why) => {
                self.maintain(shared, "service_required", format!("policy {name}: {why}"))
                    .await;
                "service_required"
            }
            None if moved => {
                self.maintain(
                    shared,
                    "in_service",
                    format!("policy {name}: repaired and verified ({})", self.cause),
                )
                .await;
                "in_service"
            }
            None => "completed",
        }
    }

    /// Does one step.
    async fn step(&self, shared: &Shared, step: &RemediationStep) -> Outcome {
        match step.action.as_str() {
            "cordon" => {
                self.maintain(
                    shared,
                    "cordoned",
                    format!("policy {}: {}", self.policy.name, self.cause),
                )
                .await;
                Outcome::done("cordoned")
            }
            "wait" => {
                let secs = u64::try_from(step.wait_secs).unwrap_or(0);
                tokio::time::sleep(Duration::from_secs(secs)).await;
                Outcome::done(format!("waited {secs} s"))
            }
            "notify" => {
                let message = format!(
                    "Nerve remediation: policy {} on node {}: {}",
                    self.policy.name, self.node, self.cause
                );
                let (sent, detail) = shared.notify(&step.channels, &message, &self.node).await;
                Outcome {
                    ok: sent,
                    task_id: String::new(),
                    detail,
                }
            }
            "task" | "health_check" => match &step.task {
                Some(spec) => self.task(shared, spec.clone()).await,
                None => Outcome {
                    ok: false,
                    task_id: String::new(),
                    detail: "the step names no task".into(),
                },
            },
            other => Outcome {
                ok: false,
                task_id: String::new(),
                detail: format!("unknown action {other:?}"),
            },
        }
    }

    /// Requests `spec` on the node (named, so it runs although the node is out of service) and
    /// waits for its line in the ledger to end.
    async fn task(&self, shared: &Shared, mut spec: nerve_schemas::TaskSpec) -> Outcome {
        let task_id = uuid::Uuid::now_v7().to_string();
        for (name, value) in [
            ("NERVE_REMEDIATION_RUN", self.run_id.as_str()),
            ("NERVE_REMEDIATION_POLICY", self.policy.name.as_str()),
            ("NERVE_REMEDIATION_CAUSE", self.cause.as_str()),
        ] {
            spec.env.push(EnvVar {
                name: name.to_owned(),
                value: value.to_owned(),
            });
        }
        let accept = shared.config.task_accept_deadline_secs.max(1);
        let run_for = u64::try_from(spec.timeout_secs.max(1)).unwrap_or(1);
        let request = TaskRequested {
            envelope: Envelope::new::<TaskRequested>(&*task_id, nerve_platform::now_ms()),
            task_id: task_id.clone(),
            requested_by: format!("{ACTOR}:{}", self.policy.name),
            spec,
            selector: TaskSelector {
                node_ids: vec![self.node.clone()],
                ..TaskSelector::default()
            },
            expected_nodes: vec![self.node.clone()],
            batch_size: 0,
            accept_deadline_secs: i32::try_from(accept).unwrap_or(i32::MAX),
        };
        if !shared
            .publish(subjects::task_request(&task_id), &request)
            .await
        {
            return Outcome {
                ok: false,
                task_id,
                detail: "the task could not be requested".into(),
            };
        }
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(u64::from(accept) + run_for + 60);
        loop {
            let line: Option<(String, Option<i32>, String)> = shared
                .ch
                .query(&format!(
                    "SELECT state, exit_code, error FROM {TASK_NODES} FINAL \
                     WHERE task_id = ? AND node_id = ?"
                ))
                .bind(&task_id)
                .bind(&self.node)
                .fetch_optional()
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "reading the task ledger failed");
                    None
                });
            if let Some((state, code, error)) = line
                && matches!(
                    state.as_str(),
                    "succeeded" | "failed" | "timed_out" | "cancelled" | "unreachable"
                )
            {
                let detail = match (code, error.is_empty()) {
                    (_, false) => format!("{state}: {error}"),
                    (Some(c), true) => format!("{state} (exit code {c})"),
                    (None, true) => state.clone(),
                };
                return Outcome {
                    ok: state == "succeeded",
                    task_id,
                    detail,
                };
            }
            if tokio::time::Instant::now() >= deadline {
                return Outcome {
                    ok: false,
                    task_id,
                    detail: "no result before the deadline".into(),
                };
            }
            tokio::time::sleep(shared.ledger_poll).await;
        }
    }
}

/// What a step does, in words (a dry run's journal).
pub fn describe(step: &RemediationStep) -> String {
    match (step.action.as_str(), &step.task) {
        ("cordon", _) => "cordon the node".into(),
        ("wait", _) => format!("wait {} s", step.wait_secs),
        ("notify", _) => format!("notify {}", step.channels.join(", ")),
        ("health_check", Some(t)) => format!("health check {} {}", t.hook, t.args.join(" ")),
        (_, Some(t)) => match t.kind.as_str() {
            "hook" => format!("run hook {} {}", t.hook, t.args.join(" ")),
            "command" => format!("run {}", t.argv.join(" ")),
            "health" => format!("health check {}", t.hook),
            other => format!("run a {other} task"),
        },
        (other, None) => other.to_owned(),
    }
    .trim_end()
    .to_owned()
}
