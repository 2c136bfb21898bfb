//! The node's NATS credentials, from the API: enrollment (an admin's enrollment token and a
//! proof of the key this node just made; `POST /api/v1/enroll`) and renewal before they expire
//! (a proof of the same key; `POST /api/v1/credentials/renew`), over HTTPS. The key is made here
//! and never sent; what comes back is a JWT for it, kept in the state dir with where the API is
//! and the dispatcher key to pin.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nerve_ingest::node_key::{Credentials, NodeKey, Proof, jwt_expiry};
use nerve_platform::config::AgentConfig;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// Why enrollment or renewal failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("state dir: {0}")]
    Io(#[from] std::io::Error),
    #[error("agent.api_url is needed to enroll (e.g. https://control:8080)")]
    NoApi,
    #[error("API {url}: {message}")]
    Http { url: String, message: String },
    /// The API said no (bad, used or expired token; key revoked; node enrolled with another
    /// key): retrying will not help.
    #[error("refused by the API ({status}): {message}")]
    Refused { status: u16, message: String },
}

/// What enrollment left in the state dir beside the key and JWT.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Enrolled {
    pub api_url: String,
    pub api_ca_file: PathBuf,
    /// The dispatcher's public key, pinned at enrollment.
    pub dispatch_public_key: String,
}

fn enrolled_path(state_dir: &Path) -> PathBuf {
    state_dir.join("enrollment.json")
}

impl Enrolled {
    /// What this node enrolled with, if it did.
    pub fn load(state_dir: &Path) -> std::io::Result<Option<Self>> {
        match std::fs::read(enrolled_path(state_dir)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// An HTTPS client of the API at `url`, trusting `ca_file` when given.
fn client(ca_file: &Path) -> Result<reqwest::Client, EnrollError> {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(15));
    if !ca_file.as_os_str().is_empty() {
        let pem = std::fs::read(ca_file)?;
        let ca = reqwest::Certificate::from_pem(&pem).map_err(|e| EnrollError::Http {
            url: ca_file.display().to_string(),
            message: e.to_string(),
        })?;
        builder = builder.add_root_certificate(ca);
    }
    builder.build().map_err(|e| EnrollError::Http {
        url: String::new(),
        message: e.to_string(),
    })
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    proof: &Proof,
) -> Result<Credentials, EnrollError> {
    let http = |message: String| EnrollError::Http {
        url: url.to_owned(),
        message,
    };
    let mut request = client.post(url).json(proof);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| http(e.to_string()))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| http(e.to_string()))?;
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|e| http(e.to_string()));
    }
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    if status.is_client_error() {
        Err(EnrollError::Refused {
            status: status.as_u16(),
            message,
        })
    } else {
        Err(http(format!("{status}: {message}")))
    }
}

/// Enrolls this node with `token`: makes its key (once), proves it, and keeps the JWT, the
/// API's address and the dispatcher key in the state dir.
pub async fn enroll(
    config: &AgentConfig,
    node_id: &str,
    token: &str,
) -> Result<NodeKey, EnrollError> {
    if config.api_url.is_empty() {
        return Err(EnrollError::NoApi);
    }
    let key = NodeKey::key(&config.state_dir)?;
    let proof = nerve_ingest::node_key::prove(&key, "enroll", node_id);
    let url = format!("{}/api/v1/enroll", config.api_url.trim_end_matches('/'));
    let credentials = post(&client(&config.api_ca_file)?, &url, Some(token), &proof).await?;
    let enrolled = Enrolled {
        api_url: config.api_url.clone(),
        api_ca_file: config.api_ca_file.clone(),
        dispatch_public_key: credentials.dispatch_public_key.clone(),
    };
    nerve_ingest::keys::write_private(
        &enrolled_path(&config.state_dir),
        &serde_json::to_string_pretty(&enrolled).unwrap_or_default(),
    )?;
    nerve_ingest::keys::write_private(
        &nerve_ingest::node_key::jwt_path(&config.state_dir),
        &format!("{}\n", credentials.jwt),
    )?;
    tracing::info!(expires_at = %credentials.expires_at, "enrolled: NATS credentials issued for this node's key");
    NodeKey::load(&config.state_dir)?
        .ok_or_else(|| EnrollError::Io(std::io::Error::other("credentials vanished after writing")))
}

/// Enrolls with `token`, retrying (with backoff, until `cancel`) while the API cannot be
/// reached; a refusal ends it.
pub async fn enroll_when_reachable(
    config: &AgentConfig,
    node_id: &str,
    token: &str,
    cancel: &CancellationToken,
) -> Result<Option<NodeKey>, EnrollError> {
    let mut wait = Duration::from_millis(200);
    loop {
        match enroll(config, node_id, token).await {
            Ok(key) => return Ok(Some(key)),
            Err(e @ EnrollError::Http { .. }) => {
                tracing::warn!(error = %e, "cannot enroll yet; retrying");
            }
            Err(e) => return Err(e),
        }
        tokio::select! {
            () = cancel.cancelled() => return Ok(None),
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}

/// When to renew a JWT issued at `iat` that expires at `exp` (Unix seconds): two thirds into
/// its life.
fn renew_at(iat: u64, exp: u64) -> u64 {
    iat + exp.saturating_sub(iat) * 2 / 3
}

fn claim(jwt: &str, name: &str) -> Option<u64> {
    nerve_ingest::node_key::jwt_claims(jwt)?.get(name)?.as_u64()
}

fn now_secs() -> u64 {
    (nerve_platform::now_ms().max(0) / 1000) as u64
}

/// Renews the node's credentials two thirds into their life, until `cancel`; after each
/// renewal the connection is re-established with the new JWT (events wait in the outbox, so
/// none is lost). A failed renewal is retried, sooner as expiry nears.
pub async fn renew_loop(
    key: NodeKey,
    node_id: String,
    enrolled: Enrolled,
    nats: async_nats::Client,
    metrics: nerve_platform::metrics::Registry,
    cancel: CancellationToken,
) {
    let renewed = metrics.counter(
        "nerve_agent_credential_renewals_total",
        "NATS credential renewals of this node, by outcome.",
        &[("outcome", "renewed")],
    );
    let failed = metrics.counter(
        "nerve_agent_credential_renewals_total",
        "NATS credential renewals of this node, by outcome.",
        &[("outcome", "failed")],
    );
    let url = format!(
        "{}/api/v1/credentials/renew",
        enrolled.api_url.trim_end_matches('/')
    );
    let http = match client(&enrolled.api_ca_file) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "credentials cannot be renewed");
            return;
        }
    };
    loop {
        let jwt = key.jwt();
        let (Some(iat), Some(exp)) = (claim(&jwt, "iat"), jwt_expiry(&jwt)) else {
            tracing::info!("these credentials do not expire");
            return;
        };
        let due = renew_at(iat, exp);
        let wait = Duration::from_secs(due.saturating_sub(now_secs()));
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        match post(&http, &url, None, &key.prove("renew", &node_id)).await {
            Ok(credentials) => {
                if let Err(e) = key.replace(&credentials.jwt) {
                    tracing::error!(error = %e, "renewed credentials not saved");
                }
                renewed.inc();
                tracing::info!(expires_at = %credentials.expires_at, "NATS credentials renewed");
                if let Err(e) = nats.force_reconnect().await {
                    tracing::warn!(error = %e, "reconnect with the renewed credentials");
                }
            }
            Err(e) => {
                failed.inc();
                let left = exp.saturating_sub(now_secs());
                let retry = Duration::from_secs((left / 10).clamp(1, 60));
                tracing::warn!(error = %e, retry_in = ?retry, "renewing NATS credentials failed");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(retry) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_renewed_two_thirds_into_their_life() {
        assert_eq!(renew_at(1_000, 1_000 + 86_400), 1_000 + 57_600);
        assert_eq!(renew_at(1_000, 1_030), 1_020);
        assert_eq!(renew_at(1_000, 900), 1_000);
    }
}
