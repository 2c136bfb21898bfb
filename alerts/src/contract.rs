//! What the API takes and answers for alerting: a rule, a channel, a silence, a delivery report.
//! Request fields are plain strings so that every problem can be answered by field
//! ([`crate::rule`] names the allowed values); the API's contract re-exports these. Builds for
//! wasm.

use serde::{Deserialize, Serialize};

/// Which nodes a rule watches: all of these that are given must hold (empty: every node).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct RuleScope {
    /// Cluster ids or names (a rule stores ids).
    pub clusters: Vec<String>,
    /// `key=value` labels a node must all have.
    pub labels: Vec<String>,
    pub node_ids: Vec<String>,
}

/// `POST /api/v1/alerts/rules`, `PUT /api/v1/alerts/rules/{id}`: a rule.
///
/// - `threshold`: `metric` (a [`Metric`](crate::rule::Metric) of kind threshold) aggregated (`avg|min|max|last`) over the
///   last `window_secs`, compared with `op` to `threshold`.
/// - `absence`: `metric` is `suspect` or `offline`; the node has been in it for `for_secs`.
/// - `event`: `metric` (a [`Metric`](crate::rule::Metric) of kind event) counted over `window_secs`, compared to
///   `threshold`.
///
/// The alert fires once the condition has held for `for_secs`, and resolves once it has been
/// false for `resolve_after_secs` (flap damping).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct SaveRule {
    #[cfg_attr(
        feature = "openapi",
        schema(required = true, pattern = "^[A-Za-z0-9._-]{1,64}$")
    )]
    pub name: String,
    pub description: String,
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = crate::rule::Kind))]
    pub kind: String,
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = crate::rule::Metric))]
    pub metric: String,
    /// Default `avg`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::rule::Aggregate>))]
    pub aggregate: Option<String>,
    /// Default `>`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::rule::Op>))]
    pub op: Option<String>,
    pub threshold: Option<f64>,
    /// Default 300.
    pub window_secs: Option<u64>,
    pub for_secs: u64,
    /// Default 60.
    pub resolve_after_secs: Option<u64>,
    /// Default `warning`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::rule::Severity>))]
    pub severity: Option<String>,
    pub scope: RuleScope,
    /// Channel ids or names.
    pub channels: Vec<String>,
    /// Default true.
    pub enabled: Option<bool>,
}

/// `POST /api/v1/channels`: a webhook (JSON body, `X-Nerve-Signature: sha256=<hex HMAC of the
/// body>` when a secret is set) or a Slack incoming webhook.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct SaveChannel {
    #[cfg_attr(
        feature = "openapi",
        schema(required = true, pattern = "^[A-Za-z0-9._-]{1,64}$")
    )]
    pub name: String,
    #[cfg_attr(
        feature = "openapi",
        schema(required = true, value_type = crate::rule::ChannelKind)
    )]
    pub kind: String,
    pub url: String,
    pub secret: String,
}

/// `POST /api/v1/silences`: mute notifications of a rule, a node or a cluster (every one given
/// must match) until `ends_at` (RFC 3339) or for `duration` (e.g. `2h`, `30m`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct CreateSilence {
    /// Rule id or name.
    pub rule: String,
    pub node_id: String,
    /// Cluster id or name.
    pub cluster: String,
    pub ends_at: String,
    pub duration: String,
    pub reason: String,
}

/// Every problem on one line: `field: message; field: message`.
pub fn summary(fields: &[FieldError]) -> String {
    fields
        .iter()
        .map(|f| format!("{}: {}", f.field, f.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// One problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// The field's path in the request, e.g. `threshold` or `scope.labels`.
    pub field: String,
    pub message: String,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryAttempt {
    pub attempt: u32,
    pub ok: bool,
    pub http_status: Option<u16>,
    pub error: String,
    pub latency_ms: u64,
}

/// `POST /api/v1/channels/{id}/test`: whether the test message got through, and every attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryReport {
    pub delivered: bool,
    pub attempts: Vec<DeliveryAttempt>,
}
