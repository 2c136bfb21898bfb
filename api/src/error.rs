//! What a service answers when it cannot: [`ApiError`], and how the errors of the crates below
//! (storage, the event log, alerting) become one. `crate::http::error` maps each to one status
//! and a stable code.

use crate::dto::alerts::FieldError;

/// An error answered to an API client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// A request with problems in named fields; answered 400 with every problem.
    #[error("{}", nerve_alerts::contract::summary(.0))]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    NotFound(String),
    /// The request contradicts what is recorded (a node id enrolled with another key).
    #[error("{0}")]
    Conflict(String),
    #[error("storage unavailable")]
    Storage(#[from] clickhouse::error::Error),
    /// The event log (NATS JetStream) cannot take the request now.
    #[error("{0}")]
    Unavailable(String),
    /// No valid token: missing, malformed, unknown, wrong, expired or revoked (the client is
    /// not told which).
    #[error("{0}")]
    Unauthorized(String),
    /// The caller's role lacks the route's right.
    #[error("{0}")]
    Forbidden(String),
    #[error("request body too large")]
    TooLarge,
    /// The path exists, but not for this method; `Allow` lists the methods it has.
    #[error("this path takes {0} only")]
    MethodNotAllowed(String),
}

impl From<nerve_ingest::PublishError> for ApiError {
    fn from(e: nerve_ingest::PublishError) -> Self {
        match e {
            nerve_ingest::PublishError::Encode(e) => {
                ApiError::Unavailable(format!("cannot encode: {e}"))
            }
            e @ nerve_ingest::PublishError::NoEventLog => ApiError::Unavailable(e.to_string()),
            nerve_ingest::PublishError::Refused(refused) => refused.into(),
            e => {
                tracing::warn!(error = %e, "event log refused an event");
                ApiError::Unavailable("the event log did not take the request; retry".into())
            }
        }
    }
}

impl From<nerve_ingest::gate::Refused> for ApiError {
    fn from(refused: nerve_ingest::gate::Refused) -> Self {
        ApiError::Unavailable(format!("{}; nothing was changed", refused.0))
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
            E::Publish(e) => e.into(),
            E::Notifier(m) => ApiError::Unavailable(m),
            E::Archive(m) => ApiError::Unavailable(format!("archive: {m}")),
            E::Secrets(e) => {
                tracing::error!(error = %e, "channel secrets");
                ApiError::Unavailable(format!("channel secrets: {e}"))
            }
        }
    }
}
