//! Remediation: policies as the API takes and shows them, each run's journal, the breaker.

use serde::{Deserialize, Serialize};

use crate::dto::tasks::CreateTask;

/// `POST` / `PUT /api/v1/remediation/policies`: a whole policy. Unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SavePolicy {
    /// 1 to 64 of `[a-z0-9_.-]`, unique.
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Record what it would do; act on nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// `xid`, `gpu_health`, `alert` or `health_check`.
    pub trigger: String,
    /// `xid`: these codes (empty: any XID at or above `severity`).
    #[serde(default)]
    pub xid_codes: Vec<i32>,
    /// `xid`, `gpu_health`: the least severity that acts (`warning` or `critical`, the
    /// default).
    #[serde(default)]
    pub severity: String,
    /// `alert`: these rules (names or ids) firing; empty: any.
    #[serde(default)]
    pub rules: Vec<String>,
    /// `health_check`: these checks failing; empty: any.
    #[serde(default)]
    pub checks: Vec<String>,
    #[serde(default)]
    pub scope: PolicyScope,
    /// The ladder, at least one step.
    pub steps: Vec<SaveStep>,
}

fn yes() -> bool {
    true
}

/// Which nodes a policy acts on: all of these that are given must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct PolicyScope {
    /// Cluster names or ids (a member of any).
    pub clusters: Vec<String>,
    /// `key=value` (all).
    pub labels: Vec<String>,
    pub node_ids: Vec<String>,
}

/// One rung of the ladder.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct SaveStep {
    /// `prepare` (in order; a failed task ends in `service_required`), `repair` (tried in order
    /// until one succeeds) or `verify` (all must pass). Default: `repair` for `task`, `verify`
    /// for `health_check`, `prepare` for the rest.
    pub stage: String,
    /// `notify`, `cordon`, `task`, `health_check` or `wait`.
    pub action: String,
    /// `notify`: channel names or ids.
    pub channels: Vec<String>,
    /// `task`: what to run (a command, script or hook, as `POST /api/v1/tasks` takes it;
    /// `targets` are not given: the node is).
    pub task: Option<CreateTask>,
    /// `health_check`: the check (`gpu`, `dcgm`, `hook:<name>`), its options, its timeout.
    pub check: String,
    pub args: Vec<String>,
    pub timeout_secs: Option<u32>,
    /// `wait`: seconds.
    pub wait_secs: u32,
}

/// A policy as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Policy {
    pub policy_id: String,
    pub name: String,
    pub description: String,
    pub enabled: bool,
    pub dry_run: bool,
    pub trigger: String,
    pub xid_codes: Vec<i32>,
    pub severity: String,
    /// Rule ids.
    pub rules: Vec<String>,
    pub checks: Vec<String>,
    /// Cluster ids, labels, node ids.
    pub scope: PolicyScope,
    pub steps: Vec<PolicyStep>,
    /// RFC 3339, UTC.
    pub updated_at: String,
    pub updated_by: String,
}

/// A stored step: its task as the agents run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PolicyStep {
    pub stage: String,
    pub action: String,
    /// Channel ids.
    pub channels: Vec<String>,
    pub task: Option<serde_json::Value>,
    pub wait_secs: u32,
}

/// `GET /api/v1/remediation/policies`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PolicyList {
    pub policies: Vec<Policy>,
}

/// `GET /api/v1/remediation/runs?node=&run=&limit=`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    pub node: Option<String>,
    pub run: Option<String>,
    /// Default 100, at most 1000.
    pub limit: Option<u32>,
}

/// One journal entry of a run or of the breaker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunEntry {
    /// RFC 3339, UTC.
    pub at: String,
    pub at_ms: u64,
    pub node_id: String,
    pub run_id: String,
    pub policy_id: String,
    pub policy_name: String,
    /// `run_started`, `step_finished`, `run_ended`, `held`, `breaker_tripped`, `breaker_reset`.
    pub kind: String,
    /// The step's place in the ladder; -1 for other kinds.
    pub step: i32,
    pub action: String,
    pub stage: String,
    /// Steps: `succeeded`, `failed`, `would_run`; a run's end: `in_service`,
    /// `service_required`, `completed`, `dry_run` or `interrupted`.
    pub outcome: String,
    pub task_id: String,
    pub cause: String,
    pub detail: String,
    pub dry_run: bool,
    pub requested_by: String,
}

/// The journal, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunList {
    pub entries: Vec<RunEntry>,
}

/// `GET /api/v1/remediation/breaker`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Breaker {
    /// Open: policies act on nothing until an admin resets it.
    pub open: bool,
    /// When it last tripped or was reset (RFC 3339); `None`: never.
    pub since: Option<String>,
    /// Why it tripped (or who reset it).
    pub detail: String,
}

/// `POST /api/v1/remediation/breaker/reset`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct ResetBreaker {
    /// Why (kept in the journal).
    pub reason: String,
}
