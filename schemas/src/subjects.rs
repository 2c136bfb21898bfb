//! Every NATS subject Nerve uses, built in this one module.
//!
//! Layout: `nerve.v1.<domain>.<kind>.<node_id>`. Node ids are single subject tokens, so an agent's
//! permissions can be limited to its own subjects with one wildcard-free pattern per kind.

/// Prefix of every Nerve subject.
pub const PREFIX: &str = "nerve.v1";

/// All telemetry (heartbeats) of all nodes.
pub const TELEMETRY_ALL: &str = "nerve.v1.telemetry.>";
/// All heartbeats of all nodes.
pub const HEARTBEATS_ALL: &str = "nerve.v1.telemetry.heartbeat.*";
/// All inventory reports of all nodes.
pub const INVENTORY_ALL: &str = "nerve.v1.inventory.>";

/// Node events: GPU XIDs (from agents) and liveness changes (from the liveness tracker).
pub const EVENTS_ALL: &str = "nerve.v1.events.>";
/// Every node's GPU XID events.
pub const GPU_XID_ALL: &str = "nerve.v1.events.gpu_xid.*";
/// Every node's liveness events (`NodeBecameSuspect`, `NodeWentOffline`, `NodeCameBack`).
pub const LIVENESS_ALL: &str = "nerve.v1.events.liveness.*";

/// Subject a node's GPU XID events are published on.
pub fn gpu_xid(node_id: &str) -> String {
    format!("{PREFIX}.events.gpu_xid.{node_id}")
}

/// Subject the liveness events about a node are published on; the last message on it is the
/// node's current liveness.
pub fn liveness(node_id: &str) -> String {
    format!("{PREFIX}.events.liveness.{node_id}")
}

/// Every task event (stream `NERVE_TASKS`).
pub const TASKS_ALL: &str = "nerve.v1.tasks.>";
/// Task requests and cancellations (about a task, not a node).
pub const TASK_REQUESTS_ALL: &str = "nerve.v1.tasks.request.>";
/// Every node's task progress (dispatched, accepted, started, output, result).
pub const TASK_NODES_ALL: &str = "nerve.v1.tasks.node.*";

/// Subject of a task's `TaskRequested` / `TaskCancelRequested` (its last token is the task id).
pub fn task_request(task_id: &str) -> String {
    format!("{PREFIX}.tasks.request.{task_id}")
}

/// Subject of a node's task progress events, written by its agent and the dispatcher.
pub fn task_node(node_id: &str) -> String {
    format!("{PREFIX}.tasks.node.{node_id}")
}

/// Core NATS subject a node's agent answers task dispatch requests on. Outside every stream:
/// a stream listening here would answer the request itself.
pub fn dispatch(node_id: &str) -> String {
    format!("{PREFIX}.dispatch.{node_id}")
}

/// Core NATS subject a node's agent hears task cancellations on.
pub fn cancel(node_id: &str) -> String {
    format!("{PREFIX}.cancel.{node_id}")
}

/// Every control event (stream `NERVE_CONTROL`): clusters, membership, labels.
pub const CONTROL_ALL: &str = "nerve.v1.control.>";

/// Subject of a cluster's events (created, renamed, deleted); last token the cluster id.
pub fn control_cluster(cluster_id: &str) -> String {
    format!("{PREFIX}.control.cluster.{cluster_id}")
}

/// Subject of a node's organisation events (membership, labels); last token the node id.
pub fn control_node(node_id: &str) -> String {
    format!("{PREFIX}.control.node.{node_id}")
}

/// Every node's maintenance changes.
pub const MAINTENANCE_ALL: &str = "nerve.v1.control.maintenance.*";

/// Subject of a node's maintenance changes (operators' and remediation's; never a node's own,
/// so an agent cannot take itself out of or back into service); last token the node id.
pub fn control_maintenance(node_id: &str) -> String {
    format!("{PREFIX}.control.maintenance.{node_id}")
}

/// Subject of a remediation policy's events (saved, deleted); last token the policy id.
pub fn control_policy(policy_id: &str) -> String {
    format!("{PREFIX}.control.policy.{policy_id}")
}

/// Subject of the remediation journal about a node (its runs, a hold, a breaker trip); last
/// token the node id (`breaker` for a reset).
pub fn control_remediation(node_id: &str) -> String {
    format!("{PREFIX}.control.remediation.{node_id}")
}

/// Every node's health check verdicts.
pub const HEALTH_CHECKS_ALL: &str = "nerve.v1.events.health.*";

/// Subject a node's health check verdicts are published on (by its agent).
pub fn health_check(node_id: &str) -> String {
    format!("{PREFIX}.events.health.{node_id}")
}

/// Subject of a notification channel's events (saved, deleted, every delivery attempt).
pub fn control_channel(channel_id: &str) -> String {
    format!("{PREFIX}.control.channel.{channel_id}")
}

/// Subject of an alert rule's events (saved, deleted); last token the rule id.
pub fn control_rule(rule_id: &str) -> String {
    format!("{PREFIX}.control.rule.{rule_id}")
}

/// Subject of a silence's events (created, deleted); last token the silence id.
pub fn control_silence(silence_id: &str) -> String {
    format!("{PREFIX}.control.silence.{silence_id}")
}

/// Every alert's firing and resolution (stream `NERVE_ALERTS`).
pub const ALERTS_ALL: &str = "nerve.v1.alerts.>";

/// Subject of the alerts of one rule on one node; the last message on it is that pair's
/// current state (firing or resolved), which is how the evaluator keeps one open alert per
/// rule × node across restarts.
pub fn alert(rule_id: &str, node_id: &str) -> String {
    format!("{PREFIX}.alerts.{rule_id}.{node_id}")
}

/// Every auth event (stream `NERVE_AUTH`): operator tokens issued, revoked, used; enrollments
/// and nodes' credentials.
pub const AUTH_ALL: &str = "nerve.v1.auth.>";
/// Every token's events.
pub const TOKENS_ALL: &str = "nerve.v1.auth.token.*";

/// Subject of a token's events (issued, rotated, revoked, used); last token the token id.
pub fn token(token_id: &str) -> String {
    format!("{PREFIX}.auth.token.{token_id}")
}

/// Every enrollment token's events (issued, each use).
pub const ENROLLMENTS_ALL: &str = "nerve.v1.auth.enrollment.*";

/// Subject of an enrollment token's events; last token the enrollment id.
pub fn enrollment(enrollment_id: &str) -> String {
    format!("{PREFIX}.auth.enrollment.{enrollment_id}")
}

/// Subject of a node's credential events (issued, renewed, revoked); last token the node id.
pub fn node_credentials(node_id: &str) -> String {
    format!("{PREFIX}.auth.node.{node_id}")
}

/// Every audit entry (stream `NERVE_AUDIT`).
pub const AUDIT_ALL: &str = "nerve.v1.audit.>";

/// Subject of one API instance's audit chain; last token the instance id.
pub fn audit(instance_id: &str) -> String {
    format!("{PREFIX}.audit.{instance_id}")
}

/// Subject a node's heartbeats are published on.
pub fn heartbeat(node_id: &str) -> String {
    format!("{PREFIX}.telemetry.heartbeat.{node_id}")
}

/// Subject a node's inventory reports are published on.
pub fn inventory(node_id: &str) -> String {
    format!("{PREFIX}.inventory.node.{node_id}")
}

/// Longest node id accepted.
pub const NODE_ID_MAX_LEN: usize = 64;

/// Whether `id` can be a node id: 1..=64 of `[A-Za-z0-9_-]`, so it is one safe subject token.
pub fn is_valid_node_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= NODE_ID_MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The node id in a subject built by this module, if it has one.
pub fn node_id_of(subject: &str) -> Option<&str> {
    let rest = subject.strip_prefix(PREFIX)?.strip_prefix('.')?;
    let id = rest.rsplit('.').next()?;
    is_valid_node_id(id).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_carry_the_node_id_as_last_token() {
        assert_eq!(heartbeat("n1"), "nerve.v1.telemetry.heartbeat.n1");
        assert_eq!(node_id_of(&heartbeat("n-1_a")), Some("n-1_a"));
        assert_eq!(node_id_of(&inventory("abc")), Some("abc"));
        assert_eq!(node_id_of(&gpu_xid("g1")), Some("g1"));
        assert_eq!(node_id_of(&liveness("l1")), Some("l1"));
        assert_eq!(node_id_of(&task_node("t1")), Some("t1"));
        assert_eq!(node_id_of(&alert("r-1", "a1")), Some("a1"));
        assert_eq!(node_id_of(&dispatch("d1")), Some("d1"));
        // Dispatch and cancel stay outside the task stream's subjects.
        assert!(!dispatch("d1").starts_with("nerve.v1.tasks."));
        assert!(!cancel("d1").starts_with("nerve.v1.tasks."));
        assert_eq!(node_id_of("other.v1.x.n1"), None);
    }

    #[test]
    fn node_ids_are_single_safe_tokens() {
        assert!(is_valid_node_id("0192f0c4-7d1a-7c3e-9d51-1f2e3a4b5c6d"));
        for bad in ["", "a.b", "a*", "a>", "a b", &"x".repeat(65)] {
            assert!(!is_valid_node_id(bad), "{bad:?} accepted");
        }
    }
}
