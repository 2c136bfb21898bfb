//! The remediation routes' handlers: they only translate HTTP to [`crate::remediation`], and
//! describe themselves for the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;

use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::guard::Caller;
use super::params::PolicyPath;
use crate::AppState;
use crate::dto::Accepted;
use crate::dto::remediation::{
    Breaker, Policy, PolicyList, ResetBreaker, RunList, RunQuery, SavePolicy,
};
use crate::error::ApiError;
use crate::remediation;

/// Every remediation policy.
#[utoipa::path(
    get,
    path = "/api/v1/remediation/policies",
    tag = "remediation",
    responses((status = 200, body = PolicyList)),
)]
pub async fn list_policies(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(remediation::list(&state).await?))
}

/// Creates a remediation policy.
#[utoipa::path(
    post,
    path = "/api/v1/remediation/policies",
    tag = "remediation",
    request_body = SavePolicy,
    responses((status = 200, body = Accepted)),
)]
pub async fn create_policy(
    State(state): State<AppState>,
    who: Caller,
    ApiJson(req): ApiJson<SavePolicy>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        remediation::save(&state, None, req, &who.who()).await?,
    ))
}

/// One remediation policy.
#[utoipa::path(
    get,
    path = "/api/v1/remediation/policies/{id}",
    tag = "remediation",
    params(PolicyPath),
    responses((status = 200, body = Policy)),
)]
pub async fn policy_detail(
    State(state): State<AppState>,
    ApiPath(PolicyPath { id }): ApiPath<PolicyPath>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(remediation::get(&state, &id).await?))
}

/// Replaces a remediation policy.
#[utoipa::path(
    put,
    path = "/api/v1/remediation/policies/{id}",
    tag = "remediation",
    params(PolicyPath),
    request_body = SavePolicy,
    responses((status = 200, body = Accepted)),
)]
pub async fn update_policy(
    State(state): State<AppState>,
    who: Caller,
    ApiPath(PolicyPath { id }): ApiPath<PolicyPath>,
    ApiJson(req): ApiJson<SavePolicy>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        remediation::save(&state, Some(&id), req, &who.who()).await?,
    ))
}

/// Deletes a remediation policy.
#[utoipa::path(
    delete,
    path = "/api/v1/remediation/policies/{id}",
    tag = "remediation",
    params(PolicyPath),
    responses((status = 200, body = Accepted)),
)]
pub async fn delete_policy(
    State(state): State<AppState>,
    who: Caller,
    ApiPath(PolicyPath { id }): ApiPath<PolicyPath>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(remediation::delete(&state, &id, &who.who()).await?))
}

/// Remediation runs, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/remediation/runs",
    tag = "remediation",
    params(RunQuery),
    responses((status = 200, body = RunList)),
)]
pub async fn list_runs(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<RunQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(remediation::runs(&state, q).await?))
}

/// The remediation circuit breaker: open or closed, and why.
#[utoipa::path(
    get,
    path = "/api/v1/remediation/breaker",
    tag = "remediation",
    responses((status = 200, body = Breaker)),
)]
pub async fn breaker(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(remediation::breaker(&state).await?))
}

/// Closes the remediation circuit breaker.
#[utoipa::path(
    post,
    path = "/api/v1/remediation/breaker/reset",
    tag = "remediation",
    request_body = ResetBreaker,
    responses((status = 200, body = Accepted)),
)]
pub async fn reset_breaker(
    State(state): State<AppState>,
    who: Caller,
    ApiJson(req): ApiJson<ResetBreaker>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(remediation::reset(&state, req, &who.who()).await?))
}
