//! Server functions: the console's reads, each a thin call into `nerve_api::fleet` (the same
//! service the REST API uses) with the `AppState` the server provides as context.
//!
//! Endpoints are explicit (`/ui-api/<name>`): the generated default includes a hash that differs
//! between builds from different checkouts, which would break a wasm bundle built elsewhere.

use leptos::prelude::*;
use nerve_api::dto::{FleetSummary, MetricsSeries, NodeDetail, NodeListQuery, NodePage};

#[cfg(feature = "ssr")]
fn state() -> Result<nerve_api::AppState, ServerFnError> {
    use_context::<nerve_api::AppState>().ok_or_else(|| ServerFnError::new("server state missing"))
}

#[cfg(feature = "ssr")]
fn fail(e: nerve_api::error::ApiError) -> ServerFnError {
    ServerFnError::new(e.to_string())
}

/// Status counts, distributions and recent changes.
#[server(prefix = "/ui-api", endpoint = "fleet-summary")]
pub async fn get_fleet_summary() -> Result<FleetSummary, ServerFnError> {
    nerve_api::fleet::summary(&state()?).await.map_err(fail)
}

/// One page of the node list.
#[server(prefix = "/ui-api", endpoint = "nodes")]
pub async fn get_nodes(query: NodeListQuery) -> Result<NodePage, ServerFnError> {
    nerve_api::fleet::list_nodes(&state()?, query)
        .await
        .map_err(fail)
}

/// Inventory and latest metrics of a node.
#[server(prefix = "/ui-api", endpoint = "node-detail")]
pub async fn get_node_detail(id: String) -> Result<NodeDetail, ServerFnError> {
    nerve_api::fleet::node_detail(&state()?, &id)
        .await
        .map_err(fail)
}

/// A node's metrics over the last `range_secs`, about 120 points.
#[server(prefix = "/ui-api", endpoint = "node-metrics")]
pub async fn get_node_metrics(id: String, range_secs: u64) -> Result<MetricsSeries, ServerFnError> {
    let now = nerve_api::fleet::now_ms() / 1000 + 1;
    let range = range_secs.clamp(60, 30 * 24 * 3600);
    let query = nerve_api::dto::MetricsQuery {
        from: Some((now - range).to_string()),
        to: Some(now.to_string()),
        step: Some((range / 120).max(1).to_string()),
    };
    nerve_api::fleet::node_metrics(&state()?, &id, query, nerve_api::fleet::now_ms())
        .await
        .map_err(fail)
}

/// A page of tasks, newest first.
#[server(prefix = "/ui-api", endpoint = "tasks")]
pub async fn get_tasks(
    query: nerve_api::dto::TaskListQuery,
) -> Result<nerve_api::dto::TaskPage, ServerFnError> {
    nerve_api::tasks::list(&state()?, query).await.map_err(fail)
}

/// A task's request, counts and ledger; `None` while the task is not recorded yet (right after
/// it was requested).
#[server(prefix = "/ui-api", endpoint = "task-detail")]
pub async fn get_task_detail(
    id: String,
) -> Result<Option<nerve_api::dto::TaskDetail>, ServerFnError> {
    match nerve_api::tasks::detail(&state()?, &id).await {
        Ok(d) => Ok(Some(d)),
        Err(nerve_api::error::ApiError::NotFound(_)) => Ok(None),
        Err(e) => Err(fail(e)),
    }
}

/// One node's output of a task.
#[server(prefix = "/ui-api", endpoint = "task-output")]
pub async fn get_task_output(
    id: String,
    node: String,
) -> Result<nerve_api::dto::TaskOutput, ServerFnError> {
    nerve_api::tasks::output(&state()?, &id, &node)
        .await
        .map_err(fail)
}

/// The nodes some targets resolve to now (the new-task form's preview): `Err` with the reason
/// when they resolve to none (input being typed is not a server failure).
#[server(prefix = "/ui-api", endpoint = "task-preview")]
pub async fn preview_targets(
    targets: nerve_api::dto::TaskTargets,
) -> Result<Result<Vec<String>, String>, ServerFnError> {
    match nerve_api::tasks::resolve(&state()?, &targets).await {
        Ok(nodes) => Ok(Ok(nodes)),
        Err(nerve_api::error::ApiError::BadRequest(reason)) => Ok(Err(reason)),
        Err(e) => Err(fail(e)),
    }
}

/// Requests a task.
#[server(prefix = "/ui-api", endpoint = "task-create")]
pub async fn create_task(
    request: nerve_api::dto::CreateTask,
) -> Result<nerve_api::dto::TaskCreated, ServerFnError> {
    let request = nerve_api::dto::CreateTask {
        requested_by: if request.requested_by.is_empty() {
            "console".into()
        } else {
            request.requested_by
        },
        ..request
    };
    nerve_api::tasks::create(&state()?, request)
        .await
        .map_err(fail)
}

/// Cancels a task.
#[server(prefix = "/ui-api", endpoint = "task-cancel")]
pub async fn cancel_task(id: String) -> Result<(), ServerFnError> {
    nerve_api::tasks::cancel(&state()?, &id, "console")
        .await
        .map(|_| ())
        .map_err(fail)
}

/// Every cluster.
#[server(prefix = "/ui-api", endpoint = "clusters")]
pub async fn get_clusters() -> Result<nerve_api::dto::ClusterList, ServerFnError> {
    nerve_api::clusters::list(&state()?).await.map_err(fail)
}

/// Creates a cluster; `Err` with the reason when the name is not acceptable.
#[server(prefix = "/ui-api", endpoint = "cluster-create")]
pub async fn create_cluster(
    name: String,
    description: String,
) -> Result<Result<String, String>, ServerFnError> {
    let req = nerve_api::dto::CreateCluster {
        name,
        description,
        requested_by: "console".into(),
    };
    match nerve_api::clusters::create(&state()?, req).await {
        Ok(a) => Ok(Ok(a.cluster_id.unwrap_or_default())),
        Err(nerve_api::error::ApiError::BadRequest(reason)) => Ok(Err(reason)),
        Err(e) => Err(fail(e)),
    }
}

/// Deletes a cluster.
#[server(prefix = "/ui-api", endpoint = "cluster-delete")]
pub async fn delete_cluster(id: String) -> Result<(), ServerFnError> {
    nerve_api::clusters::delete(&state()?, &id)
        .await
        .map(|_| ())
        .map_err(fail)
}
