//! The alerting handlers (`/api/v1/alerts/...`, `/channels/...`, `/silences/...`): they only
//! translate HTTP to [`crate::alerts`], and describe themselves for the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;

use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::guard::Caller;
use super::params::{ChannelPath, RulePath, SilencePath};
use crate::AppState;
use crate::alerts;
use crate::dto::Accepted;
use crate::dto::alerts::{
    AlertHistory, AlertList, AlertListQuery, AlertRule, ChannelList, CreateSilence, DeliveryReport,
    RuleList, SaveChannel, SaveRule, SilenceList,
};
use crate::error::ApiError;

/// Every notification channel (secrets never shown).
#[utoipa::path(
    get,
    path = "/api/v1/channels",
    tag = "channels",
    responses((status = 200, body = ChannelList)),
)]
pub(super) async fn list_channels(
    State(state): State<AppState>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(alerts::list_channels(&state).await?))
}

/// Creates a notification channel (webhook, email or Slack).
#[utoipa::path(
    post,
    path = "/api/v1/channels",
    tag = "channels",
    request_body = SaveChannel,
    responses((status = 200, body = Accepted)),
)]
pub(super) async fn create_channel(
    State(state): State<AppState>,
    who: Caller,
    ApiJson(req): ApiJson<SaveChannel>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(alerts::create_channel(&state, req, &who.who()).await?))
}

/// Deletes a notification channel.
#[utoipa::path(
    delete,
    path = "/api/v1/channels/{id}",
    tag = "channels",
    params(ChannelPath),
    responses((status = 200, body = Accepted)),
)]
pub(super) async fn delete_channel(
    State(state): State<AppState>,
    who: Caller,
    ApiPath(ChannelPath { id }): ApiPath<ChannelPath>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(alerts::delete_channel(&state, &id, &who.who()).await?))
}

/// Sends a test notification through a channel and reports each attempt.
#[utoipa::path(
    post,
    path = "/api/v1/channels/{id}/test",
    tag = "channels",
    params(ChannelPath),
    responses((status = 200, body = DeliveryReport)),
)]
pub(super) async fn test_channel(
    State(state): State<AppState>,
    ApiPath(ChannelPath { id }): ApiPath<ChannelPath>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(alerts::test_channel(&state, &id).await?))
}

/// Open alerts.
#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    tag = "alerts",
    params(AlertListQuery),
    responses((status = 200, body = AlertList)),
)]
pub(super) async fn list_alerts(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AlertListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(alerts::list_alerts(&state, query).await?))
}

/// Alert transitions, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/alerts/history",
    tag = "alerts",
    params(AlertListQuery),
    responses((status = 200, body = AlertHistory)),
)]
pub(super) async fn alert_history(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AlertListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(alerts::history(&state, query).await?))
}

/// Every alert rule.
#[utoipa::path(
    get,
    path = "/api/v1/alerts/rules",
    tag = "rules",
    responses((status = 200, body = RuleList)),
)]
pub(super) async fn list_rules(
    State(state): State<AppState>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(alerts::list_rules(&state).await?))
}

/// One alert rule.
#[utoipa::path(
    get,
    path = "/api/v1/alerts/rules/{id}",
    tag = "rules",
    params(RulePath),
    responses((status = 200, body = AlertRule)),
)]
pub(super) async fn rule_detail(
    State(state): State<AppState>,
    ApiPath(RulePath { id }): ApiPath<RulePath>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(alerts::rule(&state, &id).await?))
}

/// Creates an alert rule.
#[utoipa::path(
    post,
    path = "/api/v1/alerts/rules",
    tag = "rules",
    request_body = SaveRule,
    responses((status = 200, body = Accepted)),
)]
pub(super) async fn create_rule(
    State(state): State<AppState>,
    who: Caller,
    ApiJson(req): ApiJson<SaveRule>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(alerts::save(&state, None, req, &who.who()).await?))
}

/// Replaces an alert rule.
#[utoipa::path(
    put,
    path = "/api/v1/alerts/rules/{id}",
    tag = "rules",
    params(RulePath),
    request_body = SaveRule,
    responses((status = 200, body = Accepted)),
)]
pub(super) async fn update_rule(
    State(state): State<AppState>,
    who: Caller,
    ApiPath(RulePath { id }): ApiPath<RulePath>,
    ApiJson(req): ApiJson<SaveRule>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        alerts::save(&state, Some(&id), req, &who.who()).await?,
    ))
}

/// Deletes an alert rule.
#[utoipa::path(
    delete,
    path = "/api/v1/alerts/rules/{id}",
    tag = "rules",
    params(RulePath),
    responses((status = 200, body = Accepted)),
)]
pub(super) async fn delete_rule(
    State(state): State<AppState>,
    who: Caller,
    ApiPath(RulePath { id }): ApiPath<RulePath>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(alerts::delete_rule(&state, &id, &who.who()).await?))
}

/// Every silence, active or not yet expired.
#[utoipa::path(
    get,
    path = "/api/v1/silences",
    tag = "silences",
    responses((status = 200, body = SilenceList)),
)]
pub(super) async fn list_silences(
    State(state): State<AppState>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(alerts::list_silences(&state).await?))
}

/// Silences matching alerts for a while.
#[utoipa::path(
    post,
    path = "/api/v1/silences",
    tag = "silences",
    request_body = CreateSilence,
    responses((status = 200, body = Accepted)),
)]
pub(super) async fn create_silence(
    State(state): State<AppState>,
    who: Caller,
    ApiJson(req): ApiJson<CreateSilence>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(alerts::create_silence(&state, req, &who.who()).await?))
}

/// Ends a silence.
#[utoipa::path(
    delete,
    path = "/api/v1/silences/{id}",
    tag = "silences",
    params(SilencePath),
    responses((status = 200, body = Accepted)),
)]
pub(super) async fn delete_silence(
    State(state): State<AppState>,
    who: Caller,
    ApiPath(SilencePath { id }): ApiPath<SilencePath>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(alerts::delete_silence(&state, &id, &who.who()).await?))
}
