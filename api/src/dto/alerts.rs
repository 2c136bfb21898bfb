//! Alerting: rules, alerts and their history, silences, channels and deliveries. The requests
//! and the rule vocabulary are `nerve-alerts`' own, named here so the contract is one place.

use serde::{Deserialize, Serialize};

pub use nerve_alerts::contract::{
    CreateSilence, DeliveryAttempt, DeliveryReport, FieldError, RuleScope, SaveChannel, SaveRule,
};
pub use nerve_alerts::rule::{Aggregate, ChannelKind, Kind as RuleKind, Metric, Op, Severity};

/// A notification channel as the API shows it (the secret is never returned).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Channel {
    pub channel_id: String,
    pub name: String,
    /// `webhook` or `slack`.
    pub kind: String,
    pub url: String,
    pub has_secret: bool,
}

/// `GET /api/v1/channels`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChannelList {
    pub channels: Vec<Channel>,
}

/// An alert rule as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertRule {
    pub rule_id: String,
    pub name: String,
    pub description: String,
    pub kind: String,
    pub metric: String,
    pub aggregate: String,
    pub op: String,
    pub threshold: f64,
    pub window_secs: u64,
    pub for_secs: u64,
    pub resolve_after_secs: u64,
    pub severity: String,
    /// Cluster ids, labels, node ids.
    pub scope: RuleScope,
    /// Channel ids.
    pub channels: Vec<String>,
    pub enabled: bool,
    pub updated_at: String,
    pub updated_by: String,
    /// Alerts of this rule firing now.
    pub firing: u64,
}

/// `GET /api/v1/alerts/rules`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RuleList {
    pub rules: Vec<AlertRule>,
}

/// One alert: a rule's condition on one node, from firing to resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Alert {
    pub alert_id: String,
    pub rule_id: String,
    pub rule_name: String,
    pub node_id: String,
    pub severity: String,
    /// `firing` or `resolved`.
    pub state: String,
    pub value: Option<f64>,
    pub threshold: f64,
    pub summary: String,
    pub fired_at: String,
    pub resolved_at: Option<String>,
    /// `recovered`, `rule_changed`, `rule_deleted` or `out_of_scope`; empty while firing.
    pub resolve_reason: String,
    /// The silence that muted it when it fired; empty when none.
    pub silenced_by: String,
    /// The silence muting it now (firing alerts); empty when none.
    pub muted_by: String,
}

/// `GET /api/v1/alerts` query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(default, deny_unknown_fields)]
pub struct AlertListQuery {
    /// `firing` (default), `resolved` or `all`.
    pub state: Option<String>,
    pub severity: Option<String>,
    /// Rule id or name.
    pub rule: Option<String>,
    pub node: Option<String>,
    /// Default 100, at most 1000.
    pub limit: Option<u32>,
}

/// `GET /api/v1/alerts` (also `/api/v1/alerts/list`): newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertList {
    pub alerts: Vec<Alert>,
    /// All alerts the query matches, beyond `limit` too.
    pub total: u64,
}

/// One firing or resolution in the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertEvent {
    pub at: String,
    /// `fired` or `resolved`.
    pub kind: String,
    pub alert_id: String,
    pub rule_id: String,
    pub rule_name: String,
    pub node_id: String,
    pub severity: String,
    pub value: Option<f64>,
    pub summary: String,
    /// Resolutions: why.
    pub reason: String,
    pub silenced_by: String,
}

/// `GET /api/v1/alerts/history` (query as [`AlertListQuery`]; `state` ignored): newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertHistory {
    pub events: Vec<AlertEvent>,
}

/// A silence as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Silence {
    pub silence_id: String,
    pub rule_id: String,
    pub node_id: String,
    pub cluster_id: String,
    pub starts_at: String,
    pub ends_at: String,
    pub reason: String,
    pub created_by: String,
    /// In force now.
    pub active: bool,
}

/// `GET /api/v1/silences`: active first, then the most recently ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SilenceList {
    pub silences: Vec<Silence>,
}
