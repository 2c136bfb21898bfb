//! Notification channels and delivery. Channels are saved and deleted as control events (the
//! secret is write-only); a delivery goes to a webhook ([`webhook`]), Slack ([`slack`]) or by
//! email ([`email`]), is retried with backoff on transient failures but not on permanent ones, and
//! every attempt is recorded as `NotificationAttempted` in the control log.

pub mod email;
pub mod slack;
pub mod webhook;

use std::time::{Duration, Instant};

use nerve_platform::config::SmtpConfig;
use nerve_projections::control::{CHANNELS, ChannelRow};
use nerve_schemas::{
    Envelope, NotificationAttempted, NotificationChannelDeleted, NotificationChannelSaved, subjects,
};

use crate::contract::{DeliveryAttempt, DeliveryReport, SaveChannel};
use crate::rule::ChannelKind;
use crate::{AlertsError, Context, Problems, Recorded};

pub use webhook::signature;

/// Attempts per delivery.
pub const MAX_ATTEMPTS: u32 = 4;
/// Wait before the second attempt; doubled for each further one.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// How long one attempt may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// How one attempt went: ok, HTTP status (or SMTP code), error, worth retrying.
#[derive(Debug)]
struct Outcome {
    ok: bool,
    status: Option<u16>,
    error: String,
    retry: bool,
}

impl Outcome {
    fn ok(status: u16) -> Self {
        Self {
            ok: true,
            status: Some(status),
            error: String::new(),
            retry: false,
        }
    }

    fn failed(error: String, retry: bool) -> Self {
        Self {
            ok: false,
            status: None,
            error,
            retry,
        }
    }
}

/// Checks a channel; every problem names its field.
pub fn validate(req: &SaveChannel) -> Result<(), AlertsError> {
    let mut problems = Problems::default();
    if !crate::rule::valid_name(&req.name) {
        problems.add("name", "1 to 64 of [A-Za-z0-9._-]");
    }
    match ChannelKind::parse(&req.kind) {
        Some(ChannelKind::Webhook | ChannelKind::Slack) => match reqwest::Url::parse(&req.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => problems.add("url", format!("{:?} is not an http(s) URL", req.url)),
        },
        Some(ChannelKind::Email) => {
            if let Err(e) = email::recipients(&req.url) {
                problems.add("url", e);
            }
        }
        None => problems.add(
            "kind",
            format!("{:?} is not webhook, slack or email", req.kind),
        ),
    }
    if req.secret.len() > 256 {
        problems.add("secret", "at most 256 bytes");
    }
    problems.finish()
}

/// Channels not deleted, as [`ChannelRow`]s.
fn channels_sql() -> String {
    format!("SELECT ?fields FROM {CHANNELS} FINAL WHERE deleted = 0")
}

/// Every channel, by name.
pub async fn stored(ctx: &Context) -> Result<Vec<ChannelRow>, AlertsError> {
    Ok(ctx
        .ch()
        .query(&format!("{} ORDER BY name", channels_sql()))
        .fetch_all()
        .await?)
}

/// The channel named by id or name.
pub async fn find(ctx: &Context, key: &str) -> Result<ChannelRow, AlertsError> {
    ctx.ch()
        .query(&format!(
            "{} AND (channel_id = ? OR name = ?) LIMIT 1",
            channels_sql()
        ))
        .bind(key)
        .bind(key)
        .fetch_optional()
        .await?
        .ok_or_else(|| AlertsError::NotFound(format!("channel {key} not found")))
}

/// Creates a channel on behalf of `by`.
pub async fn create(ctx: &Context, req: SaveChannel, by: &str) -> Result<Recorded, AlertsError> {
    validate(&req)?;
    if find(ctx, &req.name).await.is_ok() {
        let mut problems = Problems::default();
        problems.add("name", format!("a channel named {:?} exists", req.name));
        problems.finish()?;
    }
    let id = uuid::Uuid::now_v7().to_string();
    let sealer = ctx.sealer()?;
    let event = NotificationChannelSaved {
        envelope: Envelope::new::<NotificationChannelSaved>(id.clone(), nerve_platform::now_ms()),
        channel_id: id.clone(),
        name: req.name,
        kind: req.kind,
        url: sealer.seal(&req.url, &url_context(&id)),
        secret: sealer.seal(&req.secret, &secret_context(&id)),
        requested_by: by.to_owned(),
    };
    ctx.record(subjects::control_channel(&id), &event, id).await
}

fn url_context(channel_id: &str) -> String {
    format!("channel/{channel_id}/url")
}

fn secret_context(channel_id: &str) -> String {
    format!("channel/{channel_id}/secret")
}

/// A stored channel with its URL and secret opened (they are stored sealed; a channel saved
/// before sealing existed is stored plain and answered as it is).
pub fn opened(ctx: &Context, channel: &ChannelRow) -> Result<ChannelRow, AlertsError> {
    let id = &channel.channel_id;
    let sealed = nerve_platform::secrets::is_sealed;
    if !sealed(&channel.url) && !sealed(&channel.secret) {
        return Ok(channel.clone());
    }
    let sealer = ctx.sealer()?;
    Ok(ChannelRow {
        url: sealer.open(&channel.url, &url_context(id))?,
        secret: sealer.open(&channel.secret, &secret_context(id))?,
        ..channel.clone()
    })
}

/// Deletes a channel on behalf of `by`.
pub async fn delete(ctx: &Context, key: &str, by: &str) -> Result<Recorded, AlertsError> {
    let id = find(ctx, key).await?.channel_id;
    let event = NotificationChannelDeleted {
        envelope: Envelope::new::<NotificationChannelDeleted>(id.clone(), nerve_platform::now_ms()),
        channel_id: id.clone(),
        requested_by: by.to_owned(),
    };
    ctx.record(subjects::control_channel(&id), &event, id).await
}

/// Delivers `message` (a short human text) with `details` to a channel, retrying; every
/// attempt is recorded. `alert_id` names the alerts the message is about (comma-separated),
/// empty for a test send.
pub async fn deliver(
    ctx: &Context,
    channel: &ChannelRow,
    alert_id: &str,
    message: &str,
    details: serde_json::Value,
) -> Result<DeliveryReport, AlertsError> {
    // A stored channel was validated; an unknown kind reads as a webhook.
    let kind = ChannelKind::parse(&channel.kind).unwrap_or(ChannelKind::Webhook);
    let channel = &opened(ctx, channel)?;
    let body = match kind {
        ChannelKind::Slack => slack::body(message),
        _ => webhook::body(alert_id, message, &details),
    };
    let client = reqwest::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        .build()
        .map_err(|e| AlertsError::Notifier(format!("HTTP client: {e}")))?;
    let mut attempts = Vec::new();
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=MAX_ATTEMPTS {
        let started = Instant::now();
        let outcome = match kind {
            ChannelKind::Email => {
                let text = format!("{message}\n\n{details}");
                let smtp = smtp_opened(ctx)?;
                email::send(&smtp, &channel.url, message, &text).await
            }
            ChannelKind::Webhook | ChannelKind::Slack => {
                webhook::post(&client, channel, kind, &body).await
            }
        };
        let done = outcome.ok || !outcome.retry || attempt == MAX_ATTEMPTS;
        attempts.push(record(ctx, channel, alert_id, attempt, started, outcome).await?);
        if done {
            break;
        }
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
    Ok(DeliveryReport {
        delivered: attempts.last().is_some_and(|a| a.ok),
        attempts,
    })
}

/// The SMTP relay's settings with its password opened (it may be given sealed, from
/// `nerve secret seal --context alerts.smtp.password`).
fn smtp_opened(ctx: &Context) -> Result<SmtpConfig, AlertsError> {
    let smtp = ctx.smtp();
    if !nerve_platform::secrets::is_sealed(&smtp.password) {
        return Ok(smtp.clone());
    }
    Ok(SmtpConfig {
        password: ctx.sealer()?.open(&smtp.password, SMTP_PASSWORD_CONTEXT)?,
        ..smtp.clone()
    })
}

/// What a sealed SMTP password is sealed for.
pub const SMTP_PASSWORD_CONTEXT: &str = "alerts.smtp.password";

/// Records one attempt as an event, and answers it for the report.
async fn record(
    ctx: &Context,
    channel: &ChannelRow,
    alert_id: &str,
    attempt: u32,
    started: Instant,
    outcome: Outcome,
) -> Result<DeliveryAttempt, AlertsError> {
    let latency_ms = started.elapsed().as_millis().min(u128::from(u64::MAX)) as u64;
    let event = NotificationAttempted {
        envelope: Envelope::new::<NotificationAttempted>(
            channel.channel_id.clone(),
            nerve_platform::now_ms(),
        ),
        channel_id: channel.channel_id.clone(),
        alert_id: alert_id.to_owned(),
        attempt: attempt as i32,
        ok: outcome.ok,
        http_status: outcome.status.map(i32::from),
        error: outcome.error.clone(),
        latency_ms: latency_ms as i64,
    };
    ctx.publish(subjects::control_channel(&channel.channel_id), &event)
        .await?;
    Ok(DeliveryAttempt {
        attempt,
        ok: outcome.ok,
        http_status: outcome.status,
        error: outcome.error,
        latency_ms,
    })
}

/// Sends a test message through a channel now.
pub async fn test_send(ctx: &Context, key: &str) -> Result<DeliveryReport, AlertsError> {
    let channel = find(ctx, key).await?;
    deliver(
        ctx,
        &channel,
        "",
        &format!("Nerve test message for channel {}", channel.name),
        serde_json::json!({ "test": true }),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_problem_is_named() {
        let msg = |name: &str, kind: &str, url: &str| {
            validate(&SaveChannel {
                name: name.into(),
                kind: kind.into(),
                url: url.into(),
                ..SaveChannel::default()
            })
            .expect_err("invalid")
            .to_string()
        };
        let m = msg("bad name", "webhook", "ftp://x");
        assert!(m.contains("name:") && m.contains("url:"), "{m}");
        assert!(msg("ok", "pager", "http://x/").contains("kind:"));
        assert!(msg("ok", "email", "ops@example.com").contains("mailto:"));
        assert!(msg("ok", "email", "mailto:not-an-address").contains("not an email address"));
        assert_eq!(
            email::recipients("mailto:a@example.com, b@example.com").map(|r| r.len()),
            Ok(2)
        );
        assert!(
            validate(&SaveChannel {
                name: "ops".into(),
                kind: "webhook".into(),
                url: "http://127.0.0.1:9/hook".into(),
                ..SaveChannel::default()
            })
            .is_ok()
        );
    }
}
