//! Server functions: the console's reads, each a thin call into `nerve_api::fleet` (the same
//! service the REST API uses) with the `AppState` the server provides as context.
//!
//! Endpoints are explicit (`/ui-api/<name>`): the generated default includes a hash that differs
//! between builds from different checkouts, which would break a wasm bundle built elsewhere.

use leptos::prelude::*;
use leptos::server_fn::codec::Json;
use nerve_api::dto::{
    fleet::FleetSummary, fleet::MetricsSeries, fleet::NodeDetail, fleet::NodeListQuery,
    fleet::NodePage,
};

#[cfg(feature = "ssr")]
use crate::session::state;

/// The signed-in caller, as `requested_by` records them.
#[cfg(feature = "ssr")]
async fn who() -> Result<String, ServerFnError> {
    Ok(crate::session::caller().await?.who())
}

#[cfg(feature = "ssr")]
fn fail(e: nerve_api::error::ApiError) -> ServerFnError {
    ServerFnError::new(e.to_string())
}

/// The `?at=` the console passes on: `None` (now) for an empty one, else the API's parse.
#[cfg(feature = "ssr")]
fn as_of(at: Option<String>) -> Result<Option<u64>, ServerFnError> {
    let query = nerve_api::dto::fleet::AsOfQuery { at };
    nerve_api::at::parse(&query, nerve_api::time::now_ms()).map_err(fail)
}

/// Status counts, distributions and recent changes, now or as they were at `at`.
#[server(prefix = "/ui-api", endpoint = "fleet-summary", input = Json)]
pub async fn get_fleet_summary(at: Option<String>) -> Result<FleetSummary, ServerFnError> {
    nerve_api::fleet::summary(&state()?, as_of(at)?)
        .await
        .map_err(fail)
}

/// One page of the node list.
#[server(prefix = "/ui-api", endpoint = "nodes", input = Json)]
pub async fn get_nodes(query: NodeListQuery) -> Result<NodePage, ServerFnError> {
    nerve_api::fleet::list_nodes(&state()?, query)
        .await
        .map_err(fail)
}

/// Inventory and latest metrics of a node, now or as they were at `at`.
#[server(prefix = "/ui-api", endpoint = "node-detail", input = Json)]
pub async fn get_node_detail(id: String, at: Option<String>) -> Result<NodeDetail, ServerFnError> {
    nerve_api::node::node_detail(&state()?, &id, as_of(at)?)
        .await
        .map_err(fail)
}

/// Moves a node to another maintenance state (cordon, return to service, mark for service).
#[server(prefix = "/ui-api", endpoint = "node-maintenance", input = Json)]
pub async fn set_maintenance(
    id: String,
    change: nerve_api::dto::fleet::SetMaintenance,
) -> Result<FormResult, ServerFnError> {
    form_answer(nerve_api::maintenance::set(&state()?, &id, change, &who().await?).await)
}

/// A node's metrics over the `range_secs` up to now (or `at`), about 120 points.
#[server(prefix = "/ui-api", endpoint = "node-metrics", input = Json)]
pub async fn get_node_metrics(
    id: String,
    range_secs: u64,
    at: Option<String>,
) -> Result<MetricsSeries, ServerFnError> {
    let now = match as_of(at)? {
        Some(at_ms) => at_ms / 1000 + 1,
        None => nerve_api::time::now_ms() / 1000 + 1,
    };
    let range = range_secs.clamp(60, 366 * 24 * 3600);
    let query = nerve_api::dto::fleet::MetricsQuery {
        from: Some((now - range).to_string()),
        to: Some(now.to_string()),
        step: Some((range / 120).max(1).to_string()),
    };
    nerve_api::fleet::node_metrics(&state()?, &id, query, nerve_api::time::now_ms())
        .await
        .map_err(fail)
}

/// A page of tasks, newest first.
#[server(prefix = "/ui-api", endpoint = "tasks", input = Json)]
pub async fn get_tasks(
    query: nerve_api::dto::tasks::TaskListQuery,
) -> Result<nerve_api::dto::tasks::TaskPage, ServerFnError> {
    nerve_api::tasks::list(&state()?, query).await.map_err(fail)
}

/// A task's request, counts and ledger; `None` while the task is not recorded yet (right after
/// it was requested).
#[server(prefix = "/ui-api", endpoint = "task-detail", input = Json)]
pub async fn get_task_detail(
    id: String,
) -> Result<Option<nerve_api::dto::tasks::TaskDetail>, ServerFnError> {
    match nerve_api::tasks::detail(&state()?, &id).await {
        Ok(d) => Ok(Some(d)),
        Err(nerve_api::error::ApiError::NotFound(_)) => Ok(None),
        Err(e) => Err(fail(e)),
    }
}

/// One node's output of a task.
#[server(prefix = "/ui-api", endpoint = "task-output", input = Json)]
pub async fn get_task_output(
    id: String,
    node: String,
) -> Result<nerve_api::dto::tasks::TaskOutput, ServerFnError> {
    nerve_api::tasks::output(&state()?, &id, &node)
        .await
        .map_err(fail)
}

/// The nodes some targets resolve to now (the new-task form's preview): `Err` with the reason
/// when they resolve to none (input being typed is not a server failure).
#[server(prefix = "/ui-api", endpoint = "task-preview", input = Json)]
pub async fn preview_targets(
    targets: nerve_api::dto::tasks::TaskTargets,
) -> Result<Result<Vec<String>, String>, ServerFnError> {
    match nerve_api::tasks::resolve(&state()?, &targets).await {
        Ok((nodes, _skipped)) => Ok(Ok(nodes)),
        Err(nerve_api::error::ApiError::BadRequest(reason)) => Ok(Err(reason)),
        Err(e) => Err(fail(e)),
    }
}

/// Requests a task.
#[server(prefix = "/ui-api", endpoint = "task-create", input = Json)]
pub async fn create_task(
    request: nerve_api::dto::tasks::CreateTask,
) -> Result<nerve_api::dto::tasks::TaskCreated, ServerFnError> {
    nerve_api::tasks::create(&state()?, request, &who().await?)
        .await
        .map_err(fail)
}

/// Cancels a task.
#[server(prefix = "/ui-api", endpoint = "task-cancel", input = Json)]
pub async fn cancel_task(id: String) -> Result<(), ServerFnError> {
    nerve_api::tasks::cancel(&state()?, &id, &who().await?)
        .await
        .map(|_| ())
        .map_err(fail)
}

/// Every cluster.
#[server(prefix = "/ui-api", endpoint = "clusters", input = Json)]
pub async fn get_clusters() -> Result<nerve_api::dto::clusters::ClusterList, ServerFnError> {
    nerve_api::clusters::list(&state()?).await.map_err(fail)
}

/// Creates a cluster; `Err` with the reason when the name is not acceptable.
#[server(prefix = "/ui-api", endpoint = "cluster-create", input = Json)]
pub async fn create_cluster(
    name: String,
    description: String,
) -> Result<Result<String, String>, ServerFnError> {
    let req = nerve_api::dto::clusters::CreateCluster { name, description };
    match nerve_api::clusters::create(&state()?, req, &who().await?).await {
        Ok(a) => Ok(Ok(a.cluster_id.unwrap_or_default())),
        Err(nerve_api::error::ApiError::BadRequest(reason)) => Ok(Err(reason)),
        Err(e) => Err(fail(e)),
    }
}

/// Deletes a cluster.
#[server(prefix = "/ui-api", endpoint = "cluster-delete", input = Json)]
pub async fn delete_cluster(id: String) -> Result<(), ServerFnError> {
    nerve_api::clusters::delete(&state()?, &id, &who().await?)
        .await
        .map(|_| ())
        .map_err(fail)
}

/// A form's answer: `Ok(id)`, or the problems to show next to their fields.
pub type FormResult = Result<String, Vec<nerve_api::dto::alerts::FieldError>>;

/// A form error that is not about a field (or a server failure) shown at the form's end.
#[cfg(feature = "ssr")]
fn form_answer(
    r: Result<nerve_api::dto::Accepted, nerve_api::error::ApiError>,
) -> Result<FormResult, ServerFnError> {
    use nerve_api::dto::alerts::FieldError;
    use nerve_api::error::ApiError;
    match r {
        Ok(a) => Ok(Ok(a.id.unwrap_or_default())),
        Err(ApiError::Invalid(fields)) => Ok(Err(fields)),
        Err(ApiError::BadRequest(message)) => Ok(Err(vec![FieldError {
            field: String::new(),
            message,
        }])),
        Err(e) => Err(fail(e)),
    }
}

/// Alerts in `alert_state` (`firing`, `resolved` or `all`), newest first. (A plain argument:
/// a query struct with every field unset would encode as nothing at all.)
#[server(prefix = "/ui-api", endpoint = "alerts", input = Json)]
pub async fn get_alerts(
    alert_state: String,
) -> Result<nerve_api::dto::alerts::AlertList, ServerFnError> {
    let query = nerve_api::dto::alerts::AlertListQuery {
        state: Some(alert_state),
        ..Default::default()
    };
    nerve_api::alerts::list_alerts(&state()?, query)
        .await
        .map_err(fail)
}

/// The latest firings and resolutions.
#[server(prefix = "/ui-api", endpoint = "alert-history", input = Json)]
pub async fn get_alert_history() -> Result<nerve_api::dto::alerts::AlertHistory, ServerFnError> {
    let query = nerve_api::dto::alerts::AlertListQuery {
        limit: Some(50),
        ..Default::default()
    };
    nerve_api::alerts::history(&state()?, query)
        .await
        .map_err(fail)
}

/// Every alert rule.
#[server(prefix = "/ui-api", endpoint = "alert-rules", input = Json)]
pub async fn get_rules() -> Result<nerve_api::dto::alerts::RuleList, ServerFnError> {
    nerve_api::alerts::list_rules(&state()?).await.map_err(fail)
}

/// Creates a rule.
#[server(prefix = "/ui-api", endpoint = "alert-rule-create", input = Json)]
pub async fn create_rule(
    rule: nerve_api::dto::alerts::SaveRule,
) -> Result<FormResult, ServerFnError> {
    form_answer(nerve_api::alerts::save(&state()?, None, rule, &who().await?).await)
}

/// Deletes a rule.
#[server(prefix = "/ui-api", endpoint = "alert-rule-delete", input = Json)]
pub async fn delete_rule(id: String) -> Result<(), ServerFnError> {
    nerve_api::alerts::delete_rule(&state()?, &id, &who().await?)
        .await
        .map(|_| ())
        .map_err(fail)
}

/// Silences, active first.
#[server(prefix = "/ui-api", endpoint = "silences", input = Json)]
pub async fn get_silences() -> Result<nerve_api::dto::alerts::SilenceList, ServerFnError> {
    nerve_api::alerts::list_silences(&state()?)
        .await
        .map_err(fail)
}

/// Creates a silence.
#[server(prefix = "/ui-api", endpoint = "silence-create", input = Json)]
pub async fn create_silence(
    silence: nerve_api::dto::alerts::CreateSilence,
) -> Result<FormResult, ServerFnError> {
    form_answer(nerve_api::alerts::create_silence(&state()?, silence, &who().await?).await)
}

/// Ends a silence now.
#[server(prefix = "/ui-api", endpoint = "silence-delete", input = Json)]
pub async fn delete_silence(id: String) -> Result<(), ServerFnError> {
    nerve_api::alerts::delete_silence(&state()?, &id, &who().await?)
        .await
        .map(|_| ())
        .map_err(fail)
}

/// Notification channels.
#[server(prefix = "/ui-api", endpoint = "channels", input = Json)]
pub async fn get_channels() -> Result<nerve_api::dto::alerts::ChannelList, ServerFnError> {
    nerve_api::alerts::list_channels(&state()?)
        .await
        .map_err(fail)
}

/// Creates a channel.
#[server(prefix = "/ui-api", endpoint = "channel-create", input = Json)]
pub async fn create_channel(
    channel: nerve_api::dto::alerts::SaveChannel,
) -> Result<FormResult, ServerFnError> {
    form_answer(nerve_api::alerts::create_channel(&state()?, channel, &who().await?).await)
}

/// Sends a test message through a channel.
#[server(prefix = "/ui-api", endpoint = "channel-test", input = Json)]
pub async fn test_channel(
    id: String,
) -> Result<nerve_api::dto::alerts::DeliveryReport, ServerFnError> {
    nerve_api::alerts::test_channel(&state()?, &id)
        .await
        .map_err(fail)
}

/// Deletes a channel.
#[server(prefix = "/ui-api", endpoint = "channel-delete", input = Json)]
pub async fn delete_channel(id: String) -> Result<(), ServerFnError> {
    nerve_api::alerts::delete_channel(&state()?, &id, &who().await?)
        .await
        .map(|_| ())
        .map_err(fail)
}

/// Every token (never a secret).
#[server(prefix = "/ui-api", endpoint = "tokens", input = Json)]
pub async fn get_tokens() -> Result<Vec<nerve_api::dto::auth::TokenInfo>, ServerFnError> {
    Ok(nerve_api::auth::tokens::list(&state()?))
}

/// Issues a token: `Ok(Err(reason))` when the request is not acceptable; the answer holds the
/// secret, shown once.
#[server(prefix = "/ui-api", endpoint = "token-create", input = Json)]
pub async fn create_token(
    request: nerve_api::dto::auth::CreateToken,
) -> Result<Result<nerve_api::dto::auth::TokenIssued, String>, ServerFnError> {
    let by = crate::session::caller().await?;
    match nerve_api::auth::tokens::issue(&state()?, &by, request).await {
        Ok(issued) => Ok(Ok(issued)),
        Err(nerve_api::error::ApiError::BadRequest(reason)) => Ok(Err(reason)),
        Err(e) => Err(fail(e)),
    }
}

/// A new secret for a token (shown once); the old one stops working.
#[server(prefix = "/ui-api", endpoint = "token-rotate", input = Json)]
pub async fn rotate_token(id: String) -> Result<nerve_api::dto::auth::TokenIssued, ServerFnError> {
    let by = crate::session::caller().await?;
    nerve_api::auth::tokens::rotate(&state()?, &by, &id, Default::default())
        .await
        .map_err(fail)
}

/// Revokes a token everywhere.
#[server(prefix = "/ui-api", endpoint = "token-revoke", input = Json)]
pub async fn revoke_token(id: String) -> Result<(), ServerFnError> {
    let by = crate::session::caller().await?;
    nerve_api::auth::tokens::revoke(&state()?, &by, &id)
        .await
        .map(|_| ())
        .map_err(fail)
}

/// A page of the audit trail, newest first.
#[server(prefix = "/ui-api", endpoint = "audit", input = Json)]
pub async fn get_audit(
    query: nerve_api::dto::auth::AuditQuery,
) -> Result<nerve_api::dto::auth::AuditPage, ServerFnError> {
    nerve_api::audit::list(&state()?, query).await.map_err(fail)
}

/// Every enrollment token (never a secret).
#[server(prefix = "/ui-api", endpoint = "enrollments", input = Json)]
pub async fn get_enrollments() -> Result<Vec<nerve_api::dto::auth::EnrollmentInfo>, ServerFnError> {
    Ok(nerve_api::auth::enroll::list(&state()?))
}

/// Issues an enrollment token: `Ok(Err(reason))` when the request is not acceptable (or
/// enrollment is not set up); the answer holds the token, shown once.
#[server(prefix = "/ui-api", endpoint = "enrollment-create", input = Json)]
pub async fn create_enrollment(
    request: nerve_api::dto::auth::CreateEnrollment,
) -> Result<Result<nerve_api::dto::auth::EnrollmentIssued, String>, ServerFnError> {
    let by = crate::session::caller().await?;
    match nerve_api::auth::enroll::create(&state()?, &by, request).await {
        Ok(issued) => Ok(Ok(issued)),
        Err(
            nerve_api::error::ApiError::BadRequest(reason)
            | nerve_api::error::ApiError::Unavailable(reason),
        ) => Ok(Err(reason)),
        Err(e) => Err(fail(e)),
    }
}

/// Revokes an enrollment token: no node enrolls with it again.
#[server(prefix = "/ui-api", endpoint = "enrollment-revoke", input = Json)]
pub async fn revoke_enrollment(id: String) -> Result<(), ServerFnError> {
    let by = crate::session::caller().await?;
    nerve_api::auth::enroll::revoke_enrollment(&state()?, &by, &id)
        .await
        .map_err(fail)
}

/// Every enrolled node's NATS credentials.
#[server(prefix = "/ui-api", endpoint = "node-credentials", input = Json)]
pub async fn get_node_credentials()
-> Result<Vec<nerve_api::dto::auth::NodeCredentialInfo>, ServerFnError> {
    Ok(nerve_api::auth::enroll::credentials(&state()?))
}

/// Revokes a node's NATS credentials: dropped by NATS at once, refused after.
#[server(prefix = "/ui-api", endpoint = "node-revoke", input = Json)]
pub async fn revoke_node(node_id: String) -> Result<(), ServerFnError> {
    let by = crate::session::caller().await?;
    nerve_api::auth::enroll::revoke(&state()?, &by, &node_id)
        .await
        .map(|_| ())
        .map_err(fail)
}

/// One operation of the REST API, as the API reference page lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ApiOperation {
    pub tag: String,
    pub method: String,
    pub path: String,
    pub summary: String,
    /// The right it needs (`public`: none).
    pub right: String,
    /// The request body's schema, if it takes one.
    pub request: Option<String>,
    /// The success status and what it answers (a schema or a media type).
    pub success: String,
}

/// Every operation of the API's OpenAPI document, in its order (read once per process).
#[server(prefix = "/ui-api", endpoint = "api-reference", input = Json)]
pub async fn get_api_reference() -> Result<Vec<ApiOperation>, ServerFnError> {
    static OPERATIONS: std::sync::OnceLock<Vec<ApiOperation>> = std::sync::OnceLock::new();
    if let Some(ops) = OPERATIONS.get() {
        return Ok(ops.clone());
    }
    let doc: serde_json::Value = serde_json::from_str(nerve_api::http::openapi::json())?;
    Ok(OPERATIONS.get_or_init(|| api_operations(&doc)).clone())
}

/// The operations of an OpenAPI document, each with the names of its schemas.
#[cfg(feature = "ssr")]
fn api_operations(doc: &serde_json::Value) -> Vec<ApiOperation> {
    use serde_json::Value;
    // `{"$ref": ".../Name"}` → `Name`; an array of one → `[Name]`; else the media type.
    fn shape(content: &Value) -> Option<String> {
        let (media, body) = content.as_object()?.iter().next()?;
        let schema = &body["schema"];
        let name = |s: &Value| {
            s["$ref"]
                .as_str()
                .and_then(|r| r.rsplit('/').next())
                .map(str::to_owned)
        };
        Some(match (name(schema), name(&schema["items"])) {
            (Some(n), _) => n,
            (None, Some(n)) => format!("[{n}]"),
            _ => media.clone(),
        })
    }
    let Some(paths) = doc["paths"].as_object() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (path, item) in paths {
        for method in ["get", "put", "post", "patch", "delete"] {
            let op = &item[method];
            if !op.is_object() {
                continue;
            }
            let responses = op["responses"].as_object();
            let success = responses
                .and_then(|r| r.iter().find(|(status, _)| status.starts_with('2')))
                .map(|(status, r)| match shape(&r["content"]) {
                    Some(s) => format!("{status} {s}"),
                    None => status.clone(),
                })
                .unwrap_or_default();
            out.push(ApiOperation {
                tag: op["tags"][0].as_str().unwrap_or("other").to_owned(),
                method: method.to_uppercase(),
                path: path.clone(),
                summary: op["summary"].as_str().unwrap_or_default().to_owned(),
                right: op["x-nerve-right"].as_str().unwrap_or_default().to_owned(),
                request: shape(&op["requestBody"]["content"]),
                success,
            });
        }
    }
    out
}
