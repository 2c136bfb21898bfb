//! The fleet's and nodes' handlers (`/api/v1/health`, `/fleet/summary`, `/nodes/...`): they
//! only translate HTTP to [`crate::fleet`], [`crate::node`], [`crate::clusters`] and
//! [`crate::maintenance`], and describe themselves for the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;

use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::guard::Caller;
use super::params::NodePath;
use crate::AppState;
use crate::dto::clusters::SetLabels;
use crate::dto::fleet::{
    AsOfQuery, FleetSummary, MetricsQuery, MetricsSeries, NodeDetail, NodeListQuery, NodePage,
    SetMaintenance,
};
use crate::dto::{Accepted, Health};
use crate::error::ApiError;
use crate::{clusters, fleet};

/// Whether the API reaches NATS and ClickHouse (503 when either fails).
#[utoipa::path(
    get,
    path = "/api/v1/health",
    tag = "health",
    responses(
        (status = 200, body = Health),
        (status = 503, description = "NATS or ClickHouse does not answer", body = Health),
    ),
)]
pub(super) async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let health = fleet::health(&state).await;
    super::health_answer(health.status == "ok", health)
}

/// The fleet dashboard: counts by status, GPUs, open alerts; now or as of `at`.
#[utoipa::path(
    get,
    path = "/api/v1/fleet/summary",
    tag = "fleet",
    params(AsOfQuery),
    responses((status = 200, body = FleetSummary)),
)]
pub(super) async fn summary(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AsOfQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let at = crate::at::parse(&query, crate::time::now_ms())?;
    Ok(Json(fleet::summary(&state, at).await?))
}

/// One page of nodes, filtered and sorted.
#[utoipa::path(
    get,
    path = "/api/v1/nodes",
    tag = "nodes",
    params(NodeListQuery),
    responses((status = 200, body = NodePage)),
)]
pub(super) async fn list_nodes(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<NodeListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(fleet::list_nodes(&state, query).await?))
}

/// One node: inventory, latest metrics, maintenance, clusters, alerts, events; now or at `at`.
#[utoipa::path(
    get,
    path = "/api/v1/nodes/{id}",
    tag = "nodes",
    params(NodePath, AsOfQuery),
    responses((status = 200, body = NodeDetail)),
)]
pub(super) async fn node_detail(
    State(state): State<AppState>,
    ApiPath(NodePath { id }): ApiPath<NodePath>,
    ApiQuery(query): ApiQuery<AsOfQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let at = crate::at::parse(&query, crate::time::now_ms())?;
    Ok(Json(crate::node::node_detail(&state, &id, at).await?))
}

/// A node's metrics over a window, bucketed.
#[utoipa::path(
    get,
    path = "/api/v1/nodes/{id}/metrics",
    tag = "nodes",
    params(NodePath, MetricsQuery),
    responses((status = 200, body = MetricsSeries)),
)]
pub(super) async fn node_metrics(
    State(state): State<AppState>,
    ApiPath(NodePath { id }): ApiPath<NodePath>,
    ApiQuery(query): ApiQuery<MetricsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        fleet::node_metrics(&state, &id, query, crate::time::now_ms()).await?,
    ))
}

/// Replaces a node's labels.
#[utoipa::path(
    put,
    path = "/api/v1/nodes/{id}/labels",
    tag = "nodes",
    params(NodePath),
    request_body = SetLabels,
    responses((status = 200, body = Accepted)),
)]
pub(super) async fn set_labels(
    State(state): State<AppState>,
    who: Caller,
    ApiPath(NodePath { id }): ApiPath<NodePath>,
    ApiJson(req): ApiJson<SetLabels>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        clusters::set_labels(&state, &id, req, &who.who()).await?,
    ))
}

/// Moves a node to `cordoned`, `service_required` or back to `in_service`.
#[utoipa::path(
    put,
    path = "/api/v1/nodes/{id}/maintenance",
    tag = "nodes",
    params(NodePath),
    request_body = SetMaintenance,
    responses((status = 200, body = Accepted)),
)]
pub(super) async fn set_maintenance(
    State(state): State<AppState>,
    who: Caller,
    ApiPath(NodePath { id }): ApiPath<NodePath>,
    ApiJson(req): ApiJson<SetMaintenance>,
) -> Result<impl IntoResponse, ApiError> {
    let done = crate::maintenance::set(&state, &id, req, &who.who()).await?;
    Ok(Json(done))
}
