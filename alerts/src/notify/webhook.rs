//! Webhook delivery: one JSON POST of `{message, alert_id, details}`, signed with HMAC-SHA256 of
//! the body in `X-Nerve-Signature: sha256=<hex>` when the channel has a secret. Slack's incoming
//! webhooks take the same POST with their own body (`super::slack`). Connection errors and 5xx
//! are worth retrying, other statuses are not.

use hmac::{Hmac, Mac};
use nerve_projections::control::ChannelRow;

use super::Outcome;
use crate::rule::ChannelKind;

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

/// A webhook's body for a message about `alert_id` (comma-separated; empty for a test).
pub(super) fn body(alert_id: &str, message: &str, details: &serde_json::Value) -> Vec<u8> {
    let body = serde_json::json!({ "message": message, "alert_id": alert_id, "details": details });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// One POST of `body` to the channel's URL.
pub(super) async fn post(
    client: &reqwest::Client,
    channel: &ChannelRow,
    kind: ChannelKind,
    body: &[u8],
) -> Outcome {
    let mut request = client
        .post(&channel.url)
        .header("content-type", "application/json")
        .header("user-agent", "nerve-notifier")
        .body(body.to_vec());
    if kind == ChannelKind::Webhook && !channel.secret.is_empty() {
        request = request.header("x-nerve-signature", signature(&channel.secret, body));
    }
    match request.send().await {
        Ok(r) if r.status().is_success() => Outcome::ok(r.status().as_u16()),
        Ok(r) => {
            let s = r.status();
            Outcome {
                ok: false,
                status: Some(s.as_u16()),
                error: format!("HTTP {s}"),
                retry: s.is_server_error(),
            }
        }
        Err(e) => Outcome::failed(e.to_string(), true),
    }
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
}
