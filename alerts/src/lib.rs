//! Alerting, one role: the rule vocabulary ([`rule`]), what the API takes and answers for rules,
//! channels, silences and deliveries ([`contract`]), and with the default `engine` feature everything that
//! acts on them — rule and silence validation and storage as control events ([`rules`],
//! [`silences`]), the I/O-free alert state machine ([`book`]), each rule's condition as SQL
//! ([`condition`]), the evaluator loop run by `nerve project` ([`evaluator`]), and notification
//! channels with delivery to webhooks, Slack and email ([`notify`]).
//!
//! The API keeps only the HTTP handlers and the reads it shows; the console's form reads the
//! same lists of allowed values as validation and the evaluator.

pub mod contract;
pub mod rule;

#[cfg(feature = "engine")]
pub mod archive;
#[cfg(feature = "engine")]
pub mod book;
#[cfg(feature = "engine")]
pub mod condition;
#[cfg(feature = "engine")]
mod context;
#[cfg(feature = "engine")]
mod error;
#[cfg(feature = "engine")]
pub mod evaluator;
#[cfg(feature = "engine")]
pub mod notify;
#[cfg(feature = "engine")]
pub mod rules;
#[cfg(feature = "engine")]
pub mod silences;

#[cfg(feature = "engine")]
pub use context::{Context, Recorded};
#[cfg(feature = "engine")]
pub use error::{AlertsError, Problems};
#[cfg(feature = "engine")]
pub use evaluator::run;
