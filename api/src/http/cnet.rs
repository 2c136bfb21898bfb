//! The CNET agent's paths (`/api/health`, `/api/node`, `/api/resources`,
//! `/api/resources/usage`), answered by [`crate::resources`].

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;

use crate::AppState;
use crate::dto::resources::{CnetHealth, FleetResources, FleetUsage, ServerNode};
use crate::error::ApiError;

/// CNET: whether this server reaches NATS and ClickHouse (503 when either fails).
#[utoipa::path(
    get,
    operation_id = "cnet_health",
    path = "/api/health",
    tag = "cnet",
    responses(
        (status = 200, body = CnetHealth),
        (status = 503, description = "NATS or ClickHouse does not answer", body = CnetHealth),
    ),
)]
pub(super) async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let health = crate::resources::health(&state).await;
    super::health_answer(health.status == "healthy", health)
}

/// CNET: the node this server runs on.
#[utoipa::path(
    get,
    operation_id = "cnet_node",
    path = "/api/node",
    tag = "cnet",
    responses((status = 200, body = ServerNode)),
)]
pub(super) async fn server_node(State(state): State<AppState>) -> impl IntoResponse {
    Json(crate::resources::server_node(&state))
}

/// CNET: the fleet's resources (nodes, CPUs, memory, disks, GPUs).
#[utoipa::path(
    get,
    operation_id = "cnet_resources",
    path = "/api/resources",
    tag = "cnet",
    responses((status = 200, body = FleetResources)),
)]
pub(super) async fn resources(
    State(state): State<AppState>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(crate::resources::resources(&state).await?))
}

/// CNET: how much of the fleet's resources is in use now.
#[utoipa::path(
    get,
    operation_id = "cnet_usage",
    path = "/api/resources/usage",
    tag = "cnet",
    responses((status = 200, body = FleetUsage)),
)]
pub(super) async fn usage(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(crate::resources::usage(&state).await?))
}
