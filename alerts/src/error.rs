//! What can go wrong in alerting, for the API to map to one status each and for the evaluator
//! to log; field problems are collected and answered together.

use nerve_ingest::PublishError;

use crate::contract::FieldError;

/// An alerting operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    /// A request with problems in named fields, all of them.
    #[error("{}", crate::contract::summary(.0))]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("storage: {0}")]
    Storage(#[from] clickhouse::error::Error),
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The archive could not be read (archive rules).
    #[error("archive: {0}")]
    Archive(String),
    /// The notifier itself could not start (e.g. its HTTP client).
    #[error("{0}")]
    Notifier(String),
    /// A channel's sealed secret or URL cannot be sealed or opened (no key file, or the wrong
    /// one).
    #[error(transparent)]
    Secrets(#[from] nerve_platform::secrets::SecretError),
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

    /// `Ok` without problems, else [`AlertsError::Invalid`] with all of them.
    pub fn finish(self) -> Result<(), AlertsError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(AlertsError::Invalid(self.0))
        }
    }
}
