//! Tokens as a service: issue, list, rotate, revoke (each an event on the auth stream, applied
//! to this instance's keyring at once and to every other instance's as the stream delivers it),
//! and the bootstrap of the first admin token.

use std::path::{Path, PathBuf};

use async_nats::HeaderMap;
use nerve_schemas::{AuthEvent, Envelope, TokenIssued, TokenRevoked, subjects};

use super::token::{self, hex};
use crate::AppState;
use crate::dto::auth::{CreateToken, Identity, Role, RotateToken, TokenInfo};
use crate::error::ApiError;
use crate::time::{now_ms, rfc3339_ms};

/// The issuer recorded for the bootstrap token.
pub const BOOTSTRAP: &str = "bootstrap";

fn ttl_ms(state: &AppState, ttl_secs: Option<u64>) -> Result<i64, ApiError> {
    let config = state.config();
    let ttl = ttl_secs.unwrap_or(config.token_default_ttl_secs);
    if ttl == 0 || ttl > config.token_max_ttl_secs {
        return Err(ApiError::BadRequest(format!(
            "ttl_secs must be 1..={} (api.token_max_ttl_secs)",
            config.token_max_ttl_secs
        )));
    }
    Ok((ttl.min(i64::MAX as u64 / 1000) * 1000) as i64)
}

fn issued_event(
    minted: &token::Minted,
    name: &str,
    role: Role,
    ttl_ms: i64,
    by: &str,
) -> TokenIssued {
    let now = now_ms() as i64;
    TokenIssued {
        envelope: Envelope::new::<TokenIssued>(&minted.id, now),
        token_id: minted.id.clone(),
        name: name.to_owned(),
        role: role.as_str().to_owned(),
        secret_sha256: hex(&minted.secret_sha256),
        expires_at_ms: now.saturating_add(ttl_ms),
        issued_by: by.to_owned(),
    }
}

fn answer(minted: token::Minted, event: &TokenIssued, role: Role) -> crate::dto::auth::TokenIssued {
    crate::dto::auth::TokenIssued {
        token_id: minted.id,
        name: event.name.clone(),
        role,
        expires_at: rfc3339_ms(event.expires_at_ms.max(0) as u64),
        token: minted.token,
    }
}

/// `POST /api/v1/tokens`.
pub async fn issue(
    state: &AppState,
    by: &Identity,
    req: CreateToken,
) -> Result<crate::dto::auth::TokenIssued, ApiError> {
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "name: 1 to 64 printable characters".into(),
        ));
    }
    let role = Role::parse(&req.role)
        .ok_or_else(|| ApiError::BadRequest("role must be viewer, operator or admin".into()))?;
    let ttl = ttl_ms(state, req.ttl_secs)?;
    let minted = token::mint(None);
    let event = issued_event(&minted, name, role, ttl, &by.who());
    state.publish(subjects::token(&minted.id), &event).await?;
    state
        .keyring()
        .apply(&AuthEvent::TokenIssued(event.clone()));
    Ok(answer(minted, &event, role))
}

/// `POST /api/v1/tokens/{id}/rotate`: a new secret (and expiry) for the same id, name and role;
/// the old secret stops working.
pub async fn rotate(
    state: &AppState,
    by: &Identity,
    id: &str,
    req: RotateToken,
) -> Result<crate::dto::auth::TokenIssued, ApiError> {
    let current = state
        .keyring()
        .get(id)
        .filter(|t| !t.revoked)
        .ok_or_else(|| ApiError::NotFound(format!("no active token {id}")))?;
    let ttl = ttl_ms(state, req.ttl_secs)?;
    let minted = token::mint(Some(id));
    let event = issued_event(&minted, &current.name, current.role, ttl, &by.who());
    state.publish(subjects::token(id), &event).await?;
    state
        .keyring()
        .apply(&AuthEvent::TokenIssued(event.clone()));
    Ok(answer(minted, &event, current.role))
}

/// `DELETE /api/v1/tokens/{id}`.
pub async fn revoke(state: &AppState, by: &Identity, id: &str) -> Result<TokenInfo, ApiError> {
    if state.keyring().get(id).is_none() {
        return Err(ApiError::NotFound(format!("no token {id}")));
    }
    let event = TokenRevoked {
        envelope: Envelope::new::<TokenRevoked>(id, now_ms() as i64),
        token_id: id.to_owned(),
        revoked_by: by.who(),
    };
    state.publish(subjects::token(id), &event).await?;
    state.keyring().apply(&AuthEvent::TokenRevoked(event));
    let token = state.keyring().get(id).expect("known");
    Ok(info(&token, now_ms() as i64))
}

/// `GET /api/v1/tokens`: every token, newest first, never a secret.
pub fn list(state: &AppState) -> Vec<TokenInfo> {
    let now = now_ms() as i64;
    state.keyring().all().iter().map(|t| info(t, now)).collect()
}

fn info(t: &super::keyring::Token, now_ms: i64) -> TokenInfo {
    let at = |ms: i64| rfc3339_ms(ms.max(0) as u64);
    TokenInfo {
        token_id: t.id.clone(),
        name: t.name.clone(),
        role: t.role,
        issued_at: at(t.issued_at_ms),
        issued_by: t.issued_by.clone(),
        expires_at: at(t.expires_at_ms),
        last_used_at: if t.last_used_ms > 0 {
            at(t.last_used_ms)
        } else {
            String::new()
        },
        state: if t.revoked {
            "revoked"
        } else if now_ms >= t.expires_at_ms {
            "expired"
        } else {
            "active"
        }
        .into(),
    }
}

/// On a deployment with no working admin token: issues one and writes it to `file` (mode
/// 0600), answering the file's path; `None` when an admin token exists. Safe with several API
/// instances starting at once: the token is published only if the auth stream is still where
/// this instance read it to, so one instance wins and the others see its token.
pub async fn bootstrap(state: &AppState, file: &Path) -> Result<Option<PathBuf>, ApiError> {
    let keyring = state.keyring();
    keyring.ready().await;
    if keyring.has_active_admin(now_ms() as i64) {
        return Ok(None);
    }
    let js = state.log().jetstream()?;
    let last = js
        .get_stream(nerve_ingest::AUTH_STREAM)
        .await
        .map_err(|e| ApiError::Unavailable(format!("auth stream: {e}")))?
        .info()
        .await
        .map_err(|e| ApiError::Unavailable(format!("auth stream: {e}")))?
        .state
        .last_sequence;
    let minted = token::mint(None);
    let ttl = ttl_ms(state, None)?;
    let event = issued_event(&minted, "admin", Role::Admin, ttl, BOOTSTRAP);
    let outgoing = nerve_ingest::Outgoing::event(subjects::token(&minted.id), &event)?;
    let mut headers = HeaderMap::new();
    headers.insert(nerve_ingest::publish::MSG_ID, outgoing.msg_id.as_str());
    headers.insert("Nats-Expected-Last-Sequence", last.to_string().as_str());
    let stored = async {
        js.publish_with_headers(outgoing.subject.clone(), headers, outgoing.payload.clone())
            .await?
            .await
    }
    .await;
    if let Err(e) = stored {
        // Another instance got there first (or the stream moved): its admin will arrive.
        tracing::info!(error = %e, "first admin token not issued here");
        return Ok(None);
    }
    keyring.apply(&AuthEvent::TokenIssued(event));
    let entry = crate::audit::Draft {
        actor: Some(Identity {
            token_id: minted.id.clone(),
            name: BOOTSTRAP.into(),
            role: Role::Admin,
        }),
        method: "BOOTSTRAP".into(),
        route: "first admin token".into(),
        targets: vec![minted.id.clone()],
        status: 201,
        outcome: crate::audit::Outcome::Applied,
        ..Default::default()
    };
    if let Err(e) = state.auditor().record(entry).await {
        tracing::warn!(error = %e, "the first admin token's issue is not in the audit trail");
    }
    write_secret_file(file, &minted.token)
        .map_err(|e| ApiError::Unavailable(format!("writing {}: {e}", file.display())))?;
    Ok(Some(file.to_owned()))
}

/// Writes `secret` to `path`, readable by its owner only.
fn write_secret_file(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(file, "{secret}")
}
