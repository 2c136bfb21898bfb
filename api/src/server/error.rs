//! API errors: each maps to one HTTP status and a stable `code`; internal details are logged,
//! never sent to clients.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::dto::FieldError;

fn field_summary(fields: &[FieldError]) -> String {
    fields
        .iter()
        .map(|f| format!("{}: {}", f.field, f.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Collects field problems; `finish` answers them all at once.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<FieldError>);

impl Problems {
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.to_owned(),
            message: message.into(),
        });
    }

    /// `Ok` without problems, else [`ApiError::Invalid`] with all of them.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Invalid(self.0))
        }
    }
}

/// An error answered to an API client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// A request with problems in named fields; answered 400 with every problem.
    #[error("{}", field_summary(.0))]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    NotFound(String),
    #[error("storage unavailable")]
    Storage(#[from] clickhouse::error::Error),
    /// The event log (NATS JetStream) cannot take the request now.
    #[error("{0}")]
    Unavailable(String),
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<&'a [FieldError]>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Storage(_) | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Invalid(_) => "invalid_fields",
            ApiError::NotFound(_) => "not_found",
            ApiError::Storage(_) => "storage_unavailable",
            ApiError::Unavailable(_) => "event_log_unavailable",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Storage(e) = &self {
            tracing::error!(error = %e, "ClickHouse query failed");
        }
        let body = Body {
            error: Detail {
                code: self.code(),
                message: self.to_string(),
                fields: match &self {
                    ApiError::Invalid(f) => Some(f),
                    _ => None,
                },
            },
        };
        (self.status(), Json(body)).into_response()
    }
}
