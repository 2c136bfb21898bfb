//! Notification channels and delivery: webhooks (JSON; with a secret, the body is signed with
//! HMAC-SHA256 in `X-Nerve-Signature: sha256=<hex>`), Slack incoming webhooks, and email
//! (`mailto:` recipients through the SMTP relay in the config, with STARTTLS and AUTH as
//! configured). A delivery is retried with backoff on transient failures (connection errors,
//! HTTP 5xx, SMTP 4xx) but not on permanent ones, and every attempt is recorded as
//! `NotificationAttempted` in the control log. Channels are saved and deleted as
//! control events; the secret is write-only.

use std::time::{Duration, Instant};

use clickhouse::Row;
use hmac::{Hmac, Mac};
use nerve_schemas::{
    Envelope, NotificationAttempted, NotificationChannelDeleted, NotificationChannelSaved, subjects,
};
use serde::Deserialize;

use crate::AppState;
use crate::dto::*;
use crate::error::ApiError;

/// Attempts per delivery.
pub const MAX_ATTEMPTS: u32 = 4;
/// Wait before the second attempt; doubled for each further one.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// How long one attempt may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The signature header value of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Checks a channel; every problem names its field.
pub fn validate(req: &SaveChannel) -> Result<(), ApiError> {
    let mut problems = crate::error::Problems::default();
    let name_ok = !req.name.is_empty()
        && req.name.len() <= 64
        && req
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !name_ok {
        problems.add("name", "1 to 64 of [A-Za-z0-9._-]");
    }
    match req.kind.as_str() {
        "webhook" | "slack" => match reqwest::Url::parse(&req.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => problems.add("url", format!("{:?} is not an http(s) URL", req.url)),
        },
        "email" => {
            if let Err(e) = recipients(&req.url) {
                problems.add("url", e);
            }
        }
        other => problems.add("kind", format!("{other:?} is not webhook, slack or email")),
    }
    if req.secret.len() > 256 {
        problems.add("secret", "at most 256 bytes");
    }
    problems.finish()
}

/// A stored channel.
#[derive(Debug, Row, Deserialize)]
pub(crate) struct ChannelRow {
    pub(crate) channel_id: String,
    pub(crate) name: String,
    kind: String,
    url: String,
    secret: String,
}

const CHANNELS: &str = "SELECT channel_id, name, kind, url, secret FROM channels FINAL \
    WHERE deleted = 0";

pub(crate) async fn find(state: &AppState, key: &str) -> Result<ChannelRow, ApiError> {
    state
        .ch()
        .query(&format!(
            "{CHANNELS} AND (channel_id = ? OR name = ?) LIMIT 1"
        ))
        .bind(key)
        .bind(key)
        .fetch_optional()
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("channel {key} not found")))
}

/// Every channel, by name.
pub async fn list(state: &AppState) -> Result<ChannelList, ApiError> {
    let rows: Vec<ChannelRow> = state
        .ch()
        .query(&format!("{CHANNELS} ORDER BY name"))
        .fetch_all()
        .await?;
    Ok(ChannelList {
        channels: rows
            .into_iter()
            .map(|r| Channel {
                has_secret: !r.secret.is_empty(),
                channel_id: r.channel_id,
                name: r.name,
                kind: r.kind,
                url: r.url,
            })
            .collect(),
    })
}

/// Creates a channel.
pub async fn create(state: &AppState, req: SaveChannel) -> Result<Accepted, ApiError> {
    validate(&req)?;
    if find(state, &req.name).await.is_ok() {
        let mut problems = crate::error::Problems::default();
        problems.add("name", format!("a channel named {:?} exists", req.name));
        problems.finish()?;
    }
    let id = uuid::Uuid::now_v7().to_string();
    let event = NotificationChannelSaved {
        envelope: Envelope::new::<NotificationChannelSaved>(id.clone(), nerve_platform::now_ms()),
        channel_id: id.clone(),
        name: req.name,
        kind: req.kind,
        url: req.url,
        secret: req.secret,
        requested_by: if req.requested_by.is_empty() {
            "api".into()
        } else {
            req.requested_by
        },
    };
    crate::tasks::record_change(state, subjects::control_channel(&id), &event, id).await
}

/// Deletes a channel.
pub async fn delete(state: &AppState, key: &str) -> Result<Accepted, ApiError> {
    let id = find(state, key).await?.channel_id;
    let event = NotificationChannelDeleted {
        envelope: Envelope::new::<NotificationChannelDeleted>(id.clone(), nerve_platform::now_ms()),
        channel_id: id.clone(),
        requested_by: "api".into(),
    };
    crate::tasks::record_change(state, subjects::control_channel(&id), &event, id).await
}

/// The recipients of an email channel's `mailto:a@x,b@y` URL.
pub fn recipients(url: &str) -> Result<Vec<lettre::message::Mailbox>, String> {
    let list = url
        .strip_prefix("mailto:")
        .ok_or_else(|| format!("{url:?} is not mailto:address[,address...]"))?;
    let out: Vec<lettre::message::Mailbox> = list
        .split(',')
        .map(|a| {
            a.trim()
                .parse()
                .map_err(|_| format!("{a:?} is not an email address"))
        })
        .collect::<Result<_, _>>()?;
    if out.is_empty() || out.len() > 20 {
        return Err("1 to 20 recipients".into());
    }
    Ok(out)
}

/// How one attempt went: ok, HTTP status (or SMTP code), error, worth retrying.
type Outcome = (bool, Option<u16>, String, bool);

/// One email through the configured relay.
async fn send_email(state: &AppState, channel: &ChannelRow, subject: &str, text: &str) -> Outcome {
    use lettre::AsyncTransport;
    let cfg = state.config();
    if cfg.smtp_host.is_empty() {
        return (
            false,
            None,
            "no SMTP relay configured (api.smtp_host)".into(),
            false,
        );
    }
    let message = (|| -> Result<lettre::Message, String> {
        let mut b = lettre::Message::builder()
            .from(
                cfg.smtp_from
                    .parse()
                    .map_err(|e| format!("api.smtp_from: {e}"))?,
            )
            .subject(subject);
        for to in recipients(&channel.url)? {
            b = b.to(to);
        }
        b.body(text.to_owned()).map_err(|e| e.to_string())
    })();
    let message = match message {
        Ok(m) => m,
        Err(e) => return (false, None, e, false),
    };
    type Smtp = lettre::AsyncSmtpTransport<lettre::Tokio1Executor>;
    let builder = if cfg.smtp_starttls {
        match Smtp::starttls_relay(&cfg.smtp_host) {
            Ok(b) => b,
            Err(e) => return (false, None, format!("SMTP TLS: {e}"), false),
        }
    } else {
        Smtp::builder_dangerous(&cfg.smtp_host)
    };
    let mut builder = builder.port(cfg.smtp_port).timeout(Some(ATTEMPT_TIMEOUT));
    if !cfg.smtp_username.is_empty() {
        builder = builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
            cfg.smtp_username.clone(),
            cfg.smtp_password.clone(),
        ));
    }
    match builder.build().send(message).await {
        Ok(r) => (true, Some(u16::from(r.code())), String::new(), false),
        Err(e) => {
            let code = e.status().map(u16::from);
            (false, code, e.to_string(), !e.is_permanent())
        }
    }
}

/// Delivers `message` (a short human text) with `details` to a channel, retrying; every
/// attempt is recorded. `alert_id` names the alerts the message is about (comma-separated),
/// empty for a test send.
pub(crate) async fn deliver(
    state: &AppState,
    channel: &ChannelRow,
    alert_id: &str,
    message: &str,
    details: serde_json::Value,
) -> Result<DeliveryReport, ApiError> {
    let body = match channel.kind.as_str() {
        "slack" => serde_json::json!({ "text": message }),
        _ => serde_json::json!({ "message": message, "alert_id": alert_id, "details": details }),
    };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let client = reqwest::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        .build()
        .map_err(|e| ApiError::Unavailable(format!("HTTP client: {e}")))?;
    let mut attempts = Vec::new();
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=MAX_ATTEMPTS {
        let started = Instant::now();
        let outcome: Outcome = if channel.kind == "email" {
            send_email(state, channel, message, &format!("{message}\n\n{details}")).await
        } else {
            let mut request = client
                .post(&channel.url)
                .header("content-type", "application/json")
                .header("user-agent", "nerve-notifier")
                .body(body.clone());
            if channel.kind == "webhook" && !channel.secret.is_empty() {
                request = request.header("x-nerve-signature", signature(&channel.secret, &body));
            }
            match request.send().await {
                Ok(r) if r.status().is_success() => {
                    (true, Some(r.status().as_u16()), String::new(), false)
                }
                Ok(r) => {
                    let s = r.status();
                    (
                        false,
                        Some(s.as_u16()),
                        format!("HTTP {s}"),
                        s.is_server_error(),
                    )
                }
                Err(e) => (false, None, e.to_string(), true),
            }
        };
        if record(
            state,
            channel,
            alert_id,
            attempt,
            started,
            outcome,
            &mut attempts,
        )
        .await?
        {
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

/// Records one attempt (event and report); true when the delivery is over.
async fn record(
    state: &AppState,
    channel: &ChannelRow,
    alert_id: &str,
    attempt: u32,
    started: Instant,
    (ok, status, error, retry): Outcome,
    attempts: &mut Vec<DeliveryAttempt>,
) -> Result<bool, ApiError> {
    let latency_ms = started.elapsed().as_millis().min(u128::from(u64::MAX)) as u64;
    let event = NotificationAttempted {
        envelope: Envelope::new::<NotificationAttempted>(
            channel.channel_id.clone(),
            nerve_platform::now_ms(),
        ),
        channel_id: channel.channel_id.clone(),
        alert_id: alert_id.to_owned(),
        attempt: attempt as i32,
        ok,
        http_status: status.map(i32::from),
        error: error.clone(),
        latency_ms: latency_ms as i64,
    };
    crate::tasks::publish(
        state,
        subjects::control_channel(&channel.channel_id),
        &event,
    )
    .await?;
    attempts.push(DeliveryAttempt {
        attempt,
        ok,
        http_status: status,
        error,
        latency_ms,
    });
    Ok(ok || !retry || attempt == MAX_ATTEMPTS)
}

/// Sends a test message through a channel now.
pub async fn test_send(state: &AppState, key: &str) -> Result<DeliveryReport, ApiError> {
    let channel = find(state, key).await?;
    deliver(
        state,
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
    fn signatures_are_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

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
            recipients("mailto:a@example.com, b@example.com").map(|r| r.len()),
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
