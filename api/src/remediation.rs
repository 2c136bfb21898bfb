//! Remediation as the API serves it: policies checked field by field and recorded as
//! `RemediationPolicySaved` (names of clusters, rules and channels resolved to ids, each task
//! step checked as a task request is), the journal of runs and the breaker read from
//! `remediation_log`, and the breaker's reset recorded as a journal entry.

use nerve_projections::remediation::{
    BREAKER, JournalRow, PolicyRow, REMEDIATION_LOG, REMEDIATION_POLICIES,
};
use nerve_schemas::{
    Envelope, RemediationPolicyDeleted, RemediationPolicySaved, RemediationRecorded,
    RemediationStep, subjects,
};

use crate::AppState;
use crate::dto::Accepted;
use crate::dto::remediation::*;
use crate::dto::tasks::CreateTask;
use crate::error::ApiError;
use crate::time::rfc3339_ms;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
}

/// A name that names nothing is the request's fault (`named`); any other failure is not.
fn unknown(e: nerve_alerts::AlertsError, named: impl FnOnce() -> ApiError) -> ApiError {
    match e {
        nerve_alerts::AlertsError::NotFound(_) => named(),
        other => other.into(),
    }
}

const TRIGGERS: [&str; 4] = ["xid", "gpu_health", "alert", "health_check"];
const ACTIONS: [&str; 5] = ["notify", "cordon", "task", "health_check", "wait"];
const STAGES: [&str; 3] = ["prepare", "repair", "verify"];

fn policy_dto(r: PolicyRow) -> Policy {
    let steps = r
        .steps()
        .into_iter()
        .map(|s| PolicyStep {
            stage: s.stage,
            action: s.action,
            channels: s.channels,
            task: s.task.map(|t| serde_json::to_value(t).unwrap_or_default()),
            wait_secs: s.wait_secs.max(0) as u32,
        })
        .collect();
    Policy {
        updated_at: rfc3339_ms(r.updated_at_ms),
        policy_id: r.policy_id,
        name: r.name,
        description: r.description,
        enabled: r.enabled != 0,
        dry_run: r.dry_run != 0,
        trigger: r.trigger,
        xid_codes: r.xid_codes,
        severity: r.severity,
        rules: r.rule_ids,
        checks: r.checks,
        scope: PolicyScope {
            clusters: r.clusters,
            labels: r.labels,
            node_ids: r.node_ids,
        },
        steps,
        updated_by: r.updated_by,
    }
}

async fn stored(state: &AppState, key: Option<&str>) -> Result<Vec<PolicyRow>, ApiError> {
    let mut sql = format!("SELECT ?fields FROM {REMEDIATION_POLICIES} FINAL WHERE deleted = 0");
    if key.is_some() {
        sql.push_str(" AND (policy_id = ? OR name = ?)");
    }
    sql.push_str(" ORDER BY name");
    let mut q = state.ch().query(&sql);
    if let Some(k) = key {
        q = q.bind(k).bind(k);
    }
    Ok(q.fetch_all().await?)
}

pub async fn list(state: &AppState) -> Result<PolicyList, ApiError> {
    let policies = stored(state, None)
        .await?
        .into_iter()
        .map(policy_dto)
        .collect();
    Ok(PolicyList { policies })
}

/// A policy by id or name.
pub async fn get(state: &AppState, key: &str) -> Result<Policy, ApiError> {
    stored(state, Some(key))
        .await?
        .into_iter()
        .next()
        .map(policy_dto)
        .ok_or_else(|| ApiError::NotFound(format!("no policy {key:?}")))
}

/// One step checked and turned into what the engine runs.
async fn step_of(state: &AppState, i: usize, s: &SaveStep) -> Result<RemediationStep, ApiError> {
    let at = |m: String| bad(format!("steps[{i}]: {m}"));
    if !ACTIONS.contains(&s.action.as_str()) {
        return Err(at(format!(
            "action {:?} is not one of {}",
            s.action,
            ACTIONS.join(", ")
        )));
    }
    let stage = match (s.stage.as_str(), s.action.as_str()) {
        ("", "task") => "repair",
        ("", "health_check") => "verify",
        ("", _) => "prepare",
        (given, _) if STAGES.contains(&given) => given,
        (given, _) => {
            return Err(at(format!(
                "stage {given:?} is not one of {}",
                STAGES.join(", ")
            )));
        }
    };
    let mut step = RemediationStep {
        stage: stage.to_owned(),
        action: s.action.clone(),
        ..RemediationStep::default()
    };
    match s.action.as_str() {
        "notify" => {
            if s.channels.is_empty() {
                return Err(at("notify: name at least one channel".into()));
            }
            for key in &s.channels {
                let channel = nerve_alerts::notify::find(state.alerts(), key)
                    .await
                    .map_err(|e| unknown(e, || at(format!("notify: no channel {key:?}"))))?;
                step.channels.push(channel.channel_id);
            }
        }
        "task" => {
            let task = s
                .task
                .as_ref()
                .ok_or_else(|| at("task: give the task".into()))?;
            if task.targets != Default::default() {
                return Err(at(
                    "task: no targets; the policy's node is the target".into()
                ));
            }
            if task.kind == "health" {
                return Err(at("task: a health check is the health_check action".into()));
            }
            step.task = Some(crate::tasks::validate(task).map_err(|e| at(e.to_string()))?);
        }
        "health_check" => {
            let check = CreateTask {
                kind: "health".into(),
                check: s.check.clone(),
                args: s.args.clone(),
                timeout_secs: Some(s.timeout_secs.unwrap_or(120)),
                ..CreateTask::default()
            };
            step.task = Some(crate::tasks::validate(&check).map_err(|e| at(e.to_string()))?);
        }
        "wait" => {
            if s.wait_secs == 0 || s.wait_secs > 86_400 {
                return Err(at("wait: wait_secs between 1 and 86400".into()));
            }
            step.wait_secs = s.wait_secs as i32;
        }
        _ => {}
    }
    Ok(step)
}

/// Checks `req` and records it as policy `id` (new when `None`) on behalf of `by`.
pub async fn save(
    state: &AppState,
    id: Option<&str>,
    req: SavePolicy,
    by: &str,
) -> Result<Accepted, ApiError> {
    let name_ok = !req.name.is_empty()
        && req.name.len() <= 64
        && req.name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        });
    if !name_ok {
        return Err(bad("name: 1 to 64 of [a-z0-9_.-]"));
    }
    let existing = match id {
        Some(key) => Some(get(state, key).await?),
        None => None,
    };
    if let Some(other) = stored(state, Some(&req.name)).await?.first()
        && existing
            .as_ref()
            .is_none_or(|e| e.policy_id != other.policy_id)
    {
        return Err(ApiError::Conflict(format!(
            "a policy named {:?} exists",
            req.name
        )));
    }
    if !TRIGGERS.contains(&req.trigger.as_str()) {
        return Err(bad(format!(
            "trigger {:?} is not one of {}",
            req.trigger,
            TRIGGERS.join(", ")
        )));
    }
    let severity = match req.severity.as_str() {
        "" => "critical",
        s @ ("warning" | "critical") => s,
        other => return Err(bad(format!("severity {other:?}: warning or critical"))),
    };
    if req.xid_codes.iter().any(|c| *c <= 0) {
        return Err(bad("xid_codes: positive numbers"));
    }
    let only = |field: &str, given: bool, trigger: &str| match given && req.trigger != trigger {
        true => Err(bad(format!("{field} belongs to trigger {trigger}"))),
        false => Ok(()),
    };
    only("xid_codes", !req.xid_codes.is_empty(), "xid")?;
    only("rules", !req.rules.is_empty(), "alert")?;
    only("checks", !req.checks.is_empty(), "health_check")?;
    if req.steps.is_empty() || req.steps.len() > 32 {
        return Err(bad("steps: 1 to 32"));
    }
    let mut steps = Vec::with_capacity(req.steps.len());
    for (i, s) in req.steps.iter().enumerate() {
        steps.push(step_of(state, i, s).await?);
    }
    let mut rule_ids = Vec::with_capacity(req.rules.len());
    for key in &req.rules {
        let rule = nerve_alerts::rules::find(state.alerts(), key)
            .await
            .map_err(|e| unknown(e, || bad(format!("rules: no {key:?}"))))?;
        rule_ids.push(rule.rule_id);
    }
    let clusters = crate::clusters::resolve_clusters(state, &req.scope.clusters)
        .await
        .map_err(|e| match e {
            ApiError::BadRequest(m) => bad(format!("scope.clusters: {m}")),
            other => other,
        })?;
    let labels = req
        .scope
        .labels
        .iter()
        .map(|l| {
            nerve_schemas::control::parse_label(l)
                .map(|l| format!("{}={}", l.key, l.value))
                .map_err(|e| bad(format!("scope.labels: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(n) = req
        .scope
        .node_ids
        .iter()
        .find(|n| !subjects::is_valid_node_id(n))
    {
        return Err(bad(format!("scope.node_ids: invalid node id {n:?}")));
    }
    let policy_id = existing.map_or_else(|| uuid::Uuid::now_v7().to_string(), |e| e.policy_id);
    let event = RemediationPolicySaved {
        envelope: Envelope::new::<RemediationPolicySaved>(&*policy_id, nerve_platform::now_ms()),
        policy_id: policy_id.clone(),
        name: req.name,
        description: req.description,
        enabled: req.enabled,
        dry_run: req.dry_run,
        trigger: req.trigger,
        xid_codes: req.xid_codes,
        severity: severity.to_owned(),
        rule_ids,
        checks: req.checks,
        clusters,
        labels,
        node_ids: req.scope.node_ids,
        steps,
        requested_by: by.to_owned(),
    };
    state
        .publish(subjects::control_policy(&policy_id), &event)
        .await?;
    Ok(Accepted {
        event_id: event.envelope.event_id,
        cluster_id: None,
        id: Some(policy_id),
    })
}

pub async fn delete(state: &AppState, key: &str, by: &str) -> Result<Accepted, ApiError> {
    let policy = get(state, key).await?;
    let event = RemediationPolicyDeleted {
        envelope: Envelope::new::<RemediationPolicyDeleted>(
            &*policy.policy_id,
            nerve_platform::now_ms(),
        ),
        policy_id: policy.policy_id.clone(),
        requested_by: by.to_owned(),
    };
    state
        .publish(subjects::control_policy(&policy.policy_id), &event)
        .await?;
    Ok(Accepted {
        event_id: event.envelope.event_id,
        cluster_id: None,
        id: Some(policy.policy_id),
    })
}

fn entry_dto(r: JournalRow) -> RunEntry {
    RunEntry {
        at: rfc3339_ms(r.ts_ms),
        at_ms: r.ts_ms,
        node_id: r.node_id,
        run_id: r.run_id,
        policy_id: r.policy_id,
        policy_name: r.policy_name,
        kind: r.kind,
        step: r.step,
        action: r.action,
        stage: r.stage,
        outcome: r.outcome,
        task_id: r.task_id,
        cause: r.cause,
        detail: r.detail,
        dry_run: r.dry_run != 0,
        requested_by: r.requested_by,
    }
}

/// A node's journal, newest first, as it was at `at_ms` (now: `None`): what its page shows.
pub async fn journal(
    state: &AppState,
    node: &str,
    at_ms: Option<u64>,
) -> Result<Vec<RunEntry>, ApiError> {
    let rows: Vec<JournalRow> = state
        .ch()
        .query(&format!(
            "SELECT ?fields FROM {REMEDIATION_LOG} FINAL WHERE node_id = ? AND ts_ms <= ? \
             ORDER BY ts_ms DESC, stream_seq DESC LIMIT 30"
        ))
        .bind(node)
        .bind(at_ms.unwrap_or(u64::MAX))
        .fetch_all()
        .await?;
    Ok(rows.into_iter().map(entry_dto).collect())
}

/// The journal, newest first: of one node, one run, or all.
pub async fn runs(state: &AppState, q: RunQuery) -> Result<RunList, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(bad("limit must be between 1 and 1000"));
    }
    let mut sql = format!("SELECT ?fields FROM {REMEDIATION_LOG} FINAL WHERE 1");
    if let Some(n) = &q.node {
        crate::fleet::check_node_id(n)?;
        sql.push_str(" AND node_id = ?");
    }
    if q.run.is_some() {
        sql.push_str(" AND run_id = ?");
    }
    sql.push_str(" ORDER BY ts_ms DESC, stream_seq DESC LIMIT ?");
    let mut query = state.ch().query(&sql);
    if let Some(n) = &q.node {
        query = query.bind(n);
    }
    if let Some(r) = &q.run {
        query = query.bind(r);
    }
    let rows: Vec<JournalRow> = query.bind(limit).fetch_all().await?;
    Ok(RunList {
        entries: rows.into_iter().map(entry_dto).collect(),
    })
}

/// The breaker's state and its last trip or reset.
pub async fn breaker(state: &AppState) -> Result<Breaker, ApiError> {
    let (open, since_ms): (u8, u64) = state
        .ch()
        .query(&format!("SELECT open, since_ms FROM {BREAKER}"))
        .fetch_one()
        .await?;
    let detail: Option<String> = state
        .ch()
        .query(&format!(
            "SELECT detail FROM {REMEDIATION_LOG} WHERE kind IN ('breaker_tripped', 'breaker_reset') \
             ORDER BY stream_seq DESC LIMIT 1"
        ))
        .fetch_optional()
        .await?;
    Ok(Breaker {
        open: open != 0,
        since: (since_ms > 0).then(|| rfc3339_ms(since_ms)),
        detail: detail.unwrap_or_default(),
    })
}

/// Closes the breaker on behalf of `by`: policies act again.
pub async fn reset(state: &AppState, req: ResetBreaker, by: &str) -> Result<Accepted, ApiError> {
    if req.reason.trim().is_empty() {
        return Err(bad("reason is required: it is kept in the journal"));
    }
    let event = RemediationRecorded {
        envelope: Envelope::new::<RemediationRecorded>("breaker", nerve_platform::now_ms()),
        run_id: String::new(),
        policy_id: String::new(),
        policy_name: String::new(),
        kind: "breaker_reset".into(),
        step: -1,
        action: String::new(),
        stage: String::new(),
        outcome: String::new(),
        task_id: String::new(),
        cause: String::new(),
        detail: format!("reset by {by}: {}", req.reason.trim()),
        dry_run: false,
        requested_by: by.to_owned(),
    };
    state
        .publish(subjects::control_remediation("breaker"), &event)
        .await?;
    Ok(Accepted {
        event_id: event.envelope.event_id,
        cluster_id: None,
        id: None,
    })
}
