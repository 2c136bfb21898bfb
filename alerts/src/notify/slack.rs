//! Slack delivery: an incoming webhook takes `{text}`, POSTed like a webhook
//! (`super::webhook::post`), unsigned.

/// A Slack message's body.
pub(super) fn body(message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "text": message })).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn slack_gets_the_text_only() {
        let body: serde_json::Value = serde_json::from_slice(&super::body("hot")).expect("json");
        assert_eq!(body, serde_json::json!({ "text": "hot" }));
    }
}
