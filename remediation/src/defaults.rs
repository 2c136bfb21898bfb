//! The policies a deployment starts with, from NVIDIA's XID catalogue and its recommended
//! actions: a GPU that fell off the bus is drained and rebooted; an error NVIDIA resolves with a
//! GPU reset (double-bit and uncontained ECC errors, row-remap failures, NVLink, GSP and
//! micro-controller errors, a GPU that stopped responding) is drained, reset, and rebooted if the
//! reset fails. Both verify with the built-in `gpu` health check before the node returns to
//! service; whatever fails ends in `service_required`. Application XIDs (13, 31, 43, …) need the
//! application restarted, not the node: no default acts on them. The hooks (`drain`,
//! `gpu-reset`, `reboot`) are the operator's, in each agent's hooks directory; where one is
//! missing its step fails and the node waits for a person. Saved once, when no policy was ever
//! saved; operators edit or delete them like any policy.

use nerve_schemas::{Envelope, RemediationPolicySaved, RemediationStep, TaskSpec};

/// The default policies' ids (fixed, so an edit replaces the default).
pub const GPU_LOST_ID: &str = "00000000-0000-7000-8000-0000000d0079";
pub const GPU_RESET_ID: &str = "00000000-0000-7000-8000-0000000d0048";

/// XIDs NVIDIA resolves with a GPU reset (or a reboot where the reset fails).
pub const RESET_XIDS: [i32; 11] = [8, 38, 48, 62, 64, 74, 95, 119, 120, 121, 140];

fn hook(stage: &str, name: &str, timeout_secs: i32) -> RemediationStep {
    RemediationStep {
        stage: stage.to_owned(),
        action: "task".to_owned(),
        task: Some(TaskSpec {
            kind: "hook".to_owned(),
            hook: name.to_owned(),
            timeout_secs,
            max_output_bytes: 1 << 20,
            ..TaskSpec::default()
        }),
        ..RemediationStep::default()
    }
}

fn step(stage: &str, action: &str) -> RemediationStep {
    RemediationStep {
        stage: stage.to_owned(),
        action: action.to_owned(),
        ..RemediationStep::default()
    }
}

/// The built-in `gpu` health check as a verify step.
pub fn gpu_check() -> RemediationStep {
    RemediationStep {
        task: Some(TaskSpec {
            kind: "health".to_owned(),
            hook: "gpu".to_owned(),
            timeout_secs: 120,
            max_output_bytes: 1 << 20,
            ..TaskSpec::default()
        }),
        ..step("verify", "health_check")
    }
}

/// The default policies, saved by `by`.
pub fn policies(by: &str, now_ms: i64) -> Vec<RemediationPolicySaved> {
    let policy =
        |id: &str, name: &str, description: &str, codes: Vec<i32>, repair: Vec<RemediationStep>| {
            let mut steps = vec![step("prepare", "cordon"), hook("prepare", "drain", 900)];
            steps.extend(repair);
            steps.push(gpu_check());
            RemediationPolicySaved {
                envelope: Envelope::new::<RemediationPolicySaved>(id, now_ms),
                policy_id: id.to_owned(),
                name: name.to_owned(),
                description: description.to_owned(),
                enabled: true,
                dry_run: false,
                trigger: "xid".to_owned(),
                xid_codes: codes,
                severity: "critical".to_owned(),
                rule_ids: Vec::new(),
                checks: Vec::new(),
                clusters: Vec::new(),
                labels: Vec::new(),
                node_ids: Vec::new(),
                steps,
                requested_by: by.to_owned(),
            }
        };
    vec![
        policy(
            GPU_LOST_ID,
            "xid-gpu-lost",
            "XID 79, a GPU fell off the bus (NVIDIA: reboot; replace it if it recurs): cordon, \
             drain, reboot, verify the GPUs.",
            vec![79],
            vec![hook("repair", "reboot", 900)],
        ),
        policy(
            GPU_RESET_ID,
            "xid-gpu-reset",
            "XIDs NVIDIA resolves with a GPU reset (8, 38, 48, 62, 64, 74, 95, 119, 120, 121, \
             140): cordon, drain, reset the GPU, reboot if that fails, verify the GPUs.",
            RESET_XIDS.to_vec(),
            vec![
                hook("repair", "gpu-reset", 600),
                hook("repair", "reboot", 900),
            ],
        ),
    ]
}
