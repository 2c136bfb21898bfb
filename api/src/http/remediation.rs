//! The remediation routes' handlers: they only translate HTTP to [`crate::remediation`].

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;

use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::guard::Caller;
use crate::AppState;
use crate::dto::remediation::{ResetBreaker, RunQuery, SavePolicy};
use crate::error::ApiError;
use crate::remediation;

pub async fn list_policies(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(remediation::list(&state).await?))
}

pub async fn create_policy(
    State(state): State<AppState>,
    who: Caller,
    ApiJson(req): ApiJson<SavePolicy>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        remediation::save(&state, None, req, &who.who()).await?,
    ))
}

pub async fn policy_detail(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(remediation::get(&state, &id).await?))
}

pub async fn update_policy(
    State(state): State<AppState>,
    who: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<SavePolicy>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        remediation::save(&state, Some(&id), req, &who.who()).await?,
    ))
}

pub async fn delete_policy(
    State(state): State<AppState>,
    who: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(remediation::delete(&state, &id, &who.who()).await?))
}

pub async fn list_runs(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<RunQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(remediation::runs(&state, q).await?))
}

pub async fn breaker(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(remediation::breaker(&state).await?))
}

pub async fn reset_breaker(
    State(state): State<AppState>,
    who: Caller,
    ApiJson(req): ApiJson<ResetBreaker>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(remediation::reset(&state, req, &who.who()).await?))
}
