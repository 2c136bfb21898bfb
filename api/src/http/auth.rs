//! The handlers of identities (`/api/v1/me`, `/tokens/...`, `/enrollments/...`, `/enroll`,
//! `/credentials/...`) and the audit trail: they only translate HTTP to [`crate::auth`] and
//! [`crate::audit`], and describe themselves for the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use nerve_ingest::node_key::{Credentials, Proof};

use super::error::ErrorBody;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::guard::{self, Caller};
use super::params::{CredentialsPath, EnrollmentPath, TokenPath};
use crate::AppState;
use crate::audit;
use crate::dto::auth::{
    AuditPage, AuditQuery, CreateEnrollment, CreateToken, EnrollmentInfo, EnrollmentIssued,
    EnrollmentRevoked, Identity, NodeCredentialInfo, RotateToken, TokenInfo, TokenIssued,
};
use crate::error::ApiError;

/// The caller's identity: who it is and its role.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    tag = "auth",
    responses((status = 200, body = Identity)),
)]
pub(super) async fn me(Caller(identity): Caller) -> impl IntoResponse {
    Json(identity)
}

/// Every enrollment token (never its secret).
#[utoipa::path(
    get,
    path = "/api/v1/enrollments",
    tag = "enrollment",
    responses((status = 200, body = Vec<EnrollmentInfo>)),
)]
pub(super) async fn list_enrollments(State(state): State<AppState>) -> impl IntoResponse {
    Json(crate::auth::enroll::list(&state))
}

/// Issues an enrollment token; its secret is shown once.
#[utoipa::path(
    post,
    path = "/api/v1/enrollments",
    tag = "enrollment",
    request_body = CreateEnrollment,
    responses((status = 200, body = EnrollmentIssued)),
)]
pub(super) async fn create_enrollment(
    State(state): State<AppState>,
    by: Caller,
    ApiJson(req): ApiJson<CreateEnrollment>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(crate::auth::enroll::create(&state, &by.0, req).await?))
}

/// Revokes an enrollment token.
#[utoipa::path(
    delete,
    path = "/api/v1/enrollments/{id}",
    tag = "enrollment",
    params(EnrollmentPath),
    responses((status = 200, body = EnrollmentRevoked)),
)]
pub(super) async fn revoke_enrollment(
    State(state): State<AppState>,
    by: Caller,
    ApiPath(EnrollmentPath { id }): ApiPath<EnrollmentPath>,
) -> Result<impl IntoResponse, ApiError> {
    crate::auth::enroll::revoke_enrollment(&state, &by.0, &id).await?;
    Ok(Json(EnrollmentRevoked {
        enrollment_id: id,
        state: "revoked".into(),
    }))
}

/// A node enrolls with an enrollment token and proof of its key, and gets its NATS credentials.
#[utoipa::path(
    post,
    path = "/api/v1/enroll",
    tag = "enrollment",
    request_body = Proof,
    responses(
        (status = 200, body = Credentials),
        (status = 409, description = "The node id is enrolled with another key.",
            body = ErrorBody),
    ),
)]
pub(super) async fn enroll(
    State(state): State<AppState>,
    by: Caller,
    ApiJson(proof): ApiJson<nerve_ingest::node_key::Proof>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        crate::auth::enroll::enroll(&state, &by.0, proof).await?,
    ))
}

/// A node renews its NATS credentials with proof of its key.
///
/// Public on the policy: the node proves its key in the body, and the service audits the call.
#[utoipa::path(
    post,
    path = "/api/v1/credentials/renew",
    tag = "enrollment",
    request_body = Proof,
    responses(
        (status = 200, body = Credentials),
        (status = 401, description = "The proof does not verify, or the node is not enrolled \
            or is revoked.", body = ErrorBody),
    ),
)]
pub(super) async fn renew_credentials(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Result<axum::response::Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let draft = guard::draft_of(&mut parts, "/api/v1/credentials/renew").await;
    let bytes = axum::body::to_bytes(body, 64 << 10)
        .await
        .map_err(|_| ApiError::TooLarge)?;
    let proof: nerve_ingest::node_key::Proof = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
    let credentials = crate::auth::enroll::renew(&state, draft, proof).await?;
    Ok(Json(credentials).into_response())
}

/// Every node's credentials: when issued, when they expire, whether revoked.
#[utoipa::path(
    get,
    path = "/api/v1/credentials",
    tag = "enrollment",
    responses((status = 200, body = Vec<NodeCredentialInfo>)),
)]
pub(super) async fn list_credentials(State(state): State<AppState>) -> impl IntoResponse {
    Json(crate::auth::enroll::credentials(&state))
}

/// Revokes a node's credentials; it is cut off from NATS.
#[utoipa::path(
    delete,
    path = "/api/v1/credentials/{node}",
    tag = "enrollment",
    params(CredentialsPath),
    responses((status = 200, body = NodeCredentialInfo)),
)]
pub(super) async fn revoke_credentials(
    State(state): State<AppState>,
    by: Caller,
    ApiPath(CredentialsPath { node }): ApiPath<CredentialsPath>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        crate::auth::enroll::revoke(&state, &by.0, &node).await?,
    ))
}

/// Every API token (never its secret).
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "tokens",
    responses((status = 200, body = Vec<TokenInfo>)),
)]
pub(super) async fn list_tokens(State(state): State<AppState>) -> impl IntoResponse {
    Json(crate::auth::tokens::list(&state))
}

/// Issues an API token; its secret is shown once.
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "tokens",
    request_body = CreateToken,
    responses((status = 200, body = TokenIssued)),
)]
pub(super) async fn create_token(
    State(state): State<AppState>,
    by: Caller,
    ApiJson(req): ApiJson<CreateToken>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(crate::auth::tokens::issue(&state, &by.0, req).await?))
}

/// Replaces a token's secret; the old one stops working after the grace period.
#[utoipa::path(
    post,
    path = "/api/v1/tokens/{id}/rotate",
    tag = "tokens",
    params(TokenPath),
    request_body = RotateToken,
    responses((status = 200, body = TokenIssued)),
)]
pub(super) async fn rotate_token(
    State(state): State<AppState>,
    by: Caller,
    ApiPath(TokenPath { id }): ApiPath<TokenPath>,
    ApiJson(req): ApiJson<RotateToken>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        crate::auth::tokens::rotate(&state, &by.0, &id, req).await?,
    ))
}

/// Revokes an API token.
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    tag = "tokens",
    params(TokenPath),
    responses((status = 200, body = TokenInfo)),
)]
pub(super) async fn revoke_token(
    State(state): State<AppState>,
    by: Caller,
    ApiPath(TokenPath { id }): ApiPath<TokenPath>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(crate::auth::tokens::revoke(&state, &by.0, &id).await?))
}

/// The audit trail: every change and refusal, with who made it.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    params(AuditQuery),
    responses((status = 200, body = AuditPage)),
)]
pub(super) async fn list_audit(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(audit::list(&state, query).await?))
}
