//! Request and response types of `/api/v1` (the API contract), apart from storage rows, one
//! module per domain; what every domain shares is here. Builds for wasm: the console uses it.

use serde::{Deserialize, Serialize};

pub mod alerts;
pub mod auth;
pub mod clusters;
pub mod fleet;
pub mod remediation;
pub mod resources;
pub mod tasks;

/// A change the control plane accepted; it is visible once projected (typically well under a
/// second).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Accepted {
    pub event_id: String,
    /// The cluster the change is about, where there is one.
    pub cluster_id: Option<String>,
    /// The rule, silence or channel the change is about, where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// `GET /api/v1/health`.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// `ok` when every dependency answers, else `degraded`.
    pub status: String,
    pub nats: Check,
    pub clickhouse: Check,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Check {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
