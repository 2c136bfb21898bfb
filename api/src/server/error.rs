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

impl From<nerve_ingest::PublishError> for ApiError {
    fn from(e: nerve_ingest::PublishError) -> Self {
        match e {
            nerve_ingest::PublishError::Encode(e) => {
                ApiError::Unavailable(format!("cannot encode: {e}"))
            }
            e => {
                tracing::warn!(error = %e, "event log refused an event");
                ApiError::Unavailable("the event log did not take the request; retry".into())
            }
        }
    }
}

impl From<nerve_alerts::AlertsError> for ApiError {
    fn from(e: nerve_alerts::AlertsError) -> Self {
        use nerve_alerts::AlertsError as E;
        match e {
            E::Invalid(fields) => ApiError::Invalid(fields),
            E::NotFound(m) => ApiError::NotFound(m),
            E::BadRequest(m) => ApiError::BadRequest(m),
            E::Storage(e) => ApiError::Storage(e),
            E::NoEventLog => ApiError::Unavailable("no event log configured".into()),
            E::Publish(e) => e.into(),
            E::Notifier(m) => ApiError::Unavailable(m),
        }
    }
}
