//! The CNET agent's paths (`/api/health`, `/api/node`, `/api/resources`,
//! `/api/resources/usage`), answered by [`crate::resources`].

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;

use crate::AppState;
use crate::error::ApiError;

pub(super) async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let health = crate::resources::health(&state).await;
    let status = if health.status == "healthy" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health))
}

pub(super) async fn server_node(State(state): State<AppState>) -> impl IntoResponse {
    Json(crate::resources::server_node(&state))
}

pub(super) async fn resources(
    State(state): State<AppState>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(crate::resources::resources(&state).await?))
}

pub(super) async fn usage(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(crate::resources::usage(&state).await?))
}
