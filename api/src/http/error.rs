//! [`ApiError`] at the HTTP edge: each maps to one status and a stable `code`, in the JSON
//! error shape `{"error": {"code", "message", "fields"}}`; internal details (a ClickHouse
//! failure) are logged, never sent to clients.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::dto::alerts::FieldError;
use crate::error::ApiError;

/// Every error's answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable: `bad_request`, `invalid_fields`, `not_found`, `conflict`,
    /// `storage_unavailable`, `event_log_unavailable`, `unauthorized`, `forbidden`,
    /// `too_large`, `method_not_allowed`.
    pub code: String,
    pub message: String,
    /// Each problem of an `invalid_fields` request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<FieldError>>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Storage(_) | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Invalid(_) => "invalid_fields",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Storage(_) => "storage_unavailable",
            ApiError::Unavailable(_) => "event_log_unavailable",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::TooLarge => "too_large",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Storage(e) = &self {
            tracing::error!(error = %e, "ClickHouse query failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
                fields: match &self {
                    ApiError::Invalid(f) => Some(f.clone()),
                    _ => None,
                },
            },
        };
        let mut response = (self.status(), Json(body)).into_response();
        if matches!(self, ApiError::Unauthorized(_)) {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if let ApiError::MethodNotAllowed(allow) = &self
            && let Ok(allow) = axum::http::HeaderValue::from_str(allow)
        {
            response
                .headers_mut()
                .insert(axum::http::header::ALLOW, allow);
        }
        response
    }
}
