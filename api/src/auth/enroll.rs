//! Nodes' own NATS credentials. An admin issues an enrollment token (N uses, ≤ 1 h by
//! default); a node presents it with a proof of the key it made (`POST /api/v1/enroll`) and
//! gets a user JWT for that key that may publish only its own subjects, for 24 h; it renews
//! with a proof of the same key (`POST /api/v1/credentials/renew`); an admin revokes it
//! (`DELETE /api/v1/credentials/{node}`), which pushes a new account JWT listing the key, so
//! nats-server drops the node at once and refuses it from then on. Uses are spent with a
//! compare-and-set on the enrollment's subject, so N uses hold across API instances. Every
//! step is an event on the auth stream and an entry in the audit trail.

use std::sync::Arc;
use std::time::Duration;

use nerve_ingest::PublishError;
use nerve_ingest::authority::{self, Authority, Grant};
use nerve_ingest::node_key::{Credentials, Proof};
use nerve_platform::config::NatsConfig;
use nerve_schemas::{
    AuthEvent, EnrollmentIssued, EnrollmentUsed, Envelope, NodeCredentialsIssued, NodeRevoked,
    subjects,
};

use super::nodes::NodeCredential;
use super::token;
use crate::AppState;
use crate::audit::{Draft, Outcome};
use crate::dto::auth::{
    CreateEnrollment, EnrollmentInfo, EnrollmentIssued as Issued, Identity, NodeCredentialInfo,
    Role,
};
use crate::error::ApiError;
use crate::time::{now_ms, rfc3339_ms};

/// What issuing nodes' credentials needs: the authority's keys, a connection to the server's
/// system account (to push revocations) and the key task offers are signed with (agents pin
/// it at enrollment).
pub struct NodeTrust {
    authority: Authority,
    system: async_nats::Client,
    dispatch_public_key: String,
    /// Each enrollment's last use as this instance knows it (subject sequence, uses spent):
    /// uses are spent one at a time here, so only another instance can race a use.
    spent: tokio::sync::Mutex<std::collections::HashMap<String, (u64, u32)>>,
}

impl std::fmt::Debug for NodeTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTrust")
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

impl NodeTrust {
    /// Loads the authority in `dir` and signs in to the server's system account with a user of
    /// its own.
    pub async fn connect(
        nats: &NatsConfig,
        dir: &std::path::Path,
        dispatch_public_key: String,
    ) -> Result<Arc<Self>, String> {
        let authority = Authority::load_or_create(dir).map_err(|e| e.to_string())?;
        let creds = authority.system_creds().map_err(|e| e.to_string())?;
        let mut options = async_nats::ConnectOptions::new()
            .name("nerve-serve system")
            .credentials(&creds)
            .map_err(|e| e.to_string())?
            .max_reconnects(None)
            .retry_on_initial_connect();
        if !nats.tls_ca_file.as_os_str().is_empty() {
            options = options
                .require_tls(true)
                .add_root_certificates(nats.tls_ca_file.clone());
        }
        let system = options
            .connect(nats.url.as_str())
            .await
            .map_err(|e| format!("NATS system account: {e}"))?;
        Ok(Arc::new(Self {
            authority,
            system,
            dispatch_public_key,
            spent: tokio::sync::Mutex::default(),
        }))
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
}

/// `POST /api/v1/enrollments`: an enrollment token for `uses` nodes.
pub async fn create(
    state: &AppState,
    by: &Identity,
    req: CreateEnrollment,
) -> Result<Issued, ApiError> {
    state.trust()?;
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(bad("name: 1 to 64 printable characters"));
    }
    let config = state.config();
    let uses = req.uses.unwrap_or(1);
    if uses == 0 || uses > config.enrollment_max_uses {
        return Err(bad(format!(
            "uses: 1 to {} (api.enrollment_max_uses)",
            config.enrollment_max_uses
        )));
    }
    let ttl = req.ttl_secs.unwrap_or(config.enrollment_default_ttl_secs);
    if ttl == 0 || ttl > config.enrollment_max_ttl_secs {
        return Err(bad(format!(
            "ttl_secs: 1 to {} (api.enrollment_max_ttl_secs)",
            config.enrollment_max_ttl_secs
        )));
    }
    let minted = token::mint(None);
    let now = now_ms() as i64;
    let event = EnrollmentIssued {
        envelope: Envelope::new::<EnrollmentIssued>(&minted.id, now),
        enrollment_id: minted.id.clone(),
        name: name.to_owned(),
        secret_sha256: token::hex(&minted.secret_sha256),
        uses: uses.min(i32::MAX as u32) as i32,
        expires_at_ms: now + (ttl as i64) * 1000,
        issued_by: by.who(),
    };
    state
        .publish(subjects::enrollment(&minted.id), &event)
        .await?;
    state
        .keyring()
        .apply(&AuthEvent::EnrollmentIssued(event.clone()));
    Ok(Issued {
        enrollment_id: minted.id,
        name: event.name,
        uses,
        expires_at: rfc3339_ms(event.expires_at_ms as u64),
        token: minted.token,
    })
}

/// `GET /api/v1/enrollments`: every enrollment token, newest first, never a secret.
pub fn list(state: &AppState) -> Vec<EnrollmentInfo> {
    let now = now_ms() as i64;
    let at = |ms: i64| rfc3339_ms(ms.max(0) as u64);
    state
        .keyring()
        .nodes()
        .enrollments()
        .into_iter()
        .map(|e| EnrollmentInfo {
            state: if e.revoked {
                "revoked"
            } else if now >= e.expires_at_ms {
                "expired"
            } else if e.used >= e.uses {
                "used_up"
            } else {
                "active"
            }
            .into(),
            enrollment_id: e.id,
            name: e.name,
            uses: e.uses,
            used: e.used,
            issued_at: at(e.issued_at_ms),
            issued_by: e.issued_by,
            expires_at: at(e.expires_at_ms),
        })
        .collect()
}

/// `DELETE /api/v1/enrollments/{id}`: no node enrolls with it again (nodes enrolled with it
/// keep their credentials).
pub async fn revoke_enrollment(state: &AppState, by: &Identity, id: &str) -> Result<(), ApiError> {
    if state.keyring().nodes().enrollment(id).is_none() {
        return Err(ApiError::NotFound(format!("no enrollment token {id}")));
    }
    let event = nerve_schemas::EnrollmentRevoked {
        envelope: Envelope::new::<nerve_schemas::EnrollmentRevoked>(id, now_ms() as i64),
        enrollment_id: id.to_owned(),
        revoked_by: by.who(),
    };
    state.publish(subjects::enrollment(id), &event).await?;
    state.keyring().apply(&AuthEvent::EnrollmentRevoked(event));
    Ok(())
}

fn info(n: NodeCredential, now_ms: i64) -> NodeCredentialInfo {
    let at = |ms: i64| rfc3339_ms(ms.max(0) as u64);
    NodeCredentialInfo {
        state: if n.revoked {
            "revoked"
        } else if now_ms >= n.expires_at_ms {
            "expired"
        } else {
            "active"
        }
        .into(),
        enrolled_at: at(n.enrolled_at_ms),
        expires_at: at(n.expires_at_ms),
        node_id: n.node_id,
        public_key: n.public_key,
        enrollment_id: n.enrollment_id,
        renewals: n.renewals,
    }
}

/// `GET /api/v1/credentials`: every enrolled node's credentials.
pub fn credentials(state: &AppState) -> Vec<NodeCredentialInfo> {
    let now = now_ms() as i64;
    let nodes = state.keyring().nodes().nodes();
    nodes.into_iter().map(|n| info(n, now)).collect()
}

/// `POST /api/v1/enroll`, called with an enrollment token (`who`): spends one use, then
/// issues credentials for the proven key.
pub async fn enroll(
    state: &AppState,
    who: &Identity,
    proof: Proof,
) -> Result<Credentials, ApiError> {
    let trust = state.trust()?;
    proof
        .verify("enroll", now_ms() as i64)
        .map_err(|e| bad(format!("proof: {e}")))?;
    {
        let nodes = state.keyring().nodes();
        if nodes.is_revoked(&proof.public_key) {
            return Err(ApiError::Forbidden("this key was revoked".into()));
        }
        if let Some(n) = nodes.node(&proof.node_id)
            && n.public_key != proof.public_key
            && !n.revoked
        {
            return Err(ApiError::Conflict(format!(
                "node {} is enrolled with another key; revoke it first",
                proof.node_id
            )));
        }
    }
    spend_use(state, trust, &who.token_id, &proof).await?;
    issue(
        state,
        trust,
        &proof,
        &who.token_id,
        &format!("enrollment/{}", who.token_id),
    )
    .await
}

/// Spends one use of enrollment `id`: publishes the next use only if the enrollment's subject
/// still ends where this instance last saw it (after its own last use, or as read from the
/// stream); when another instance went first, re-reads and retries.
async fn spend_use(
    state: &AppState,
    trust: &NodeTrust,
    id: &str,
    proof: &Proof,
) -> Result<(), ApiError> {
    let js = state.log().jetstream()?;
    let stream = js
        .get_stream_no_info(nerve_ingest::AUTH_STREAM)
        .await
        .map_err(|e| ApiError::Unavailable(format!("auth stream: {e}")))?;
    let subject = subjects::enrollment(id);
    let uses = state
        .keyring()
        .nodes()
        .enrollment(id)
        .map(|e| e.uses)
        .ok_or_else(|| ApiError::Unauthorized("a valid token is needed".into()))?;
    let mut spent = trust.spent.lock().await;
    let mut known = spent.get(id).copied();
    for _ in 0..16 {
        let (last, used) = match known {
            Some(k) => k,
            None => {
                let last = stream
                    .get_last_raw_message_by_subject(&subject)
                    .await
                    .map_err(|e| ApiError::Unavailable(format!("auth stream: {e}")))?;
                match AuthEvent::decode(&last.payload) {
                    Ok(AuthEvent::EnrollmentUsed(u)) => (last.sequence, u.use_number.max(0) as u32),
                    Ok(AuthEvent::EnrollmentRevoked(_)) => {
                        return Err(ApiError::Unauthorized("enrollment token revoked".into()));
                    }
                    Ok(_) => (last.sequence, 0),
                    Err(e) => return Err(ApiError::Unavailable(format!("enrollment {id}: {e}"))),
                }
            }
        };
        if used >= uses {
            return Err(ApiError::Unauthorized("enrollment token used up".into()));
        }
        let event = EnrollmentUsed {
            envelope: Envelope::new::<EnrollmentUsed>(id, now_ms() as i64),
            enrollment_id: id.to_owned(),
            use_number: (used + 1) as i32,
            enrolled_node_id: proof.node_id.clone(),
            public_key: proof.public_key.clone(),
        };
        match state
            .log()
            .publish_if_last(subject.clone(), &event, last)
            .await
        {
            Ok(ack) => {
                spent.insert(id.to_owned(), (ack.sequence, used + 1));
                state.keyring().apply(&AuthEvent::EnrollmentUsed(event));
                return Ok(());
            }
            Err(PublishError::Conflict) => known = None,
            Err(e) => {
                spent.remove(id);
                return Err(e.into());
            }
        }
    }
    Err(ApiError::Unavailable(
        "too many API instances enrolling with this token at once; retry".into(),
    ))
}

/// Issues a JWT for the proven key and records it.
async fn issue(
    state: &AppState,
    trust: &NodeTrust,
    proof: &Proof,
    enrollment_id: &str,
    issued_by: &str,
) -> Result<Credentials, ApiError> {
    let ttl = Duration::from_secs(state.config().node_credentials_ttl_secs.max(5));
    let issued = trust
        .authority
        .issue(
            &proof.node_id,
            &proof.public_key,
            &Grant::node(&proof.node_id),
            Some(ttl),
        )
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let now = now_ms() as i64;
    let expires_at_ms = now + ttl.as_millis() as i64;
    let event = NodeCredentialsIssued {
        envelope: Envelope::new::<NodeCredentialsIssued>(&proof.node_id, now),
        public_key: proof.public_key.clone(),
        enrollment_id: enrollment_id.to_owned(),
        jwt_id: issued.id,
        expires_at_ms,
        issued_by: issued_by.to_owned(),
    };
    state
        .publish(subjects::node_credentials(&proof.node_id), &event)
        .await?;
    state
        .keyring()
        .apply(&AuthEvent::NodeCredentialsIssued(event));
    Ok(Credentials {
        jwt: issued.jwt,
        expires_at: rfc3339_ms(expires_at_ms as u64),
        dispatch_public_key: trust.dispatch_public_key.clone(),
        error: String::new(),
    })
}

/// `POST /api/v1/credentials/renew`: fresh credentials for a node that proves the key it
/// enrolled with (not revoked). Audited here, as the node is not a token holder: an entry
/// before the credentials are recorded, or a denied one.
pub async fn renew(
    state: &AppState,
    mut draft: Draft,
    proof: Proof,
) -> Result<Credentials, ApiError> {
    let trust = state.trust()?;
    draft.actor = Some(Identity {
        token_id: proof.node_id.clone(),
        name: proof.node_id.clone(),
        role: Role::Node,
    });
    draft.targets = vec![proof.node_id.clone()];
    let refusal = match proof.verify("renew", now_ms() as i64) {
        Err(e) => Some(ApiError::Unauthorized(format!("proof: {e}"))),
        Ok(()) => {
            let nodes = state.keyring().nodes();
            match nodes.node(&proof.node_id) {
                Some(n) if n.public_key == proof.public_key && !n.revoked => None,
                Some(n) if n.revoked || nodes.is_revoked(&proof.public_key) => {
                    Some(ApiError::Forbidden("this node's key was revoked".into()))
                }
                _ => Some(ApiError::Unauthorized(
                    "this key is not the node's enrolled key".into(),
                )),
            }
        }
    };
    if let Some(error) = refusal {
        state.metrics_auth_failure("node renewal");
        draft.status = error.status().as_u16();
        draft.outcome = Outcome::Denied;
        if let Err(e) = state.auditor().record(draft).await {
            tracing::warn!(error = %e, "refused renewal not audited");
        }
        return Err(error);
    }
    draft.status = 200;
    draft.outcome = Outcome::Applied;
    state.auditor().record(draft).await.map_err(|e| {
        tracing::error!(error = %e, "audit entry not written: renewal refused");
        ApiError::Unavailable("the audit trail cannot record the renewal; retry".into())
    })?;
    let by = format!("node/{}", proof.node_id);
    issue(state, trust, &proof, "", &by).await
}

/// `DELETE /api/v1/credentials/{node}`: revokes the node's key everywhere: recorded, then
/// pushed to nats-server, which closes the node's connections and refuses the key from then on.
pub async fn revoke(
    state: &AppState,
    by: &Identity,
    node_id: &str,
) -> Result<NodeCredentialInfo, ApiError> {
    state.trust()?;
    let node = state
        .keyring()
        .nodes()
        .node(node_id)
        .ok_or_else(|| ApiError::NotFound(format!("no enrolled node {node_id}")))?;
    let event = NodeRevoked {
        envelope: Envelope::new::<NodeRevoked>(node_id, now_ms() as i64),
        public_key: node.public_key.clone(),
        revoked_by: by.who(),
    };
    state
        .publish(subjects::node_credentials(node_id), &event)
        .await?;
    state.keyring().apply(&AuthEvent::NodeRevoked(event));
    push_revocations(state).await?;
    let node = state.keyring().nodes().node(node_id).unwrap_or(node);
    Ok(info(node, now_ms() as i64))
}

/// Pushes the account JWT with every revoked key to nats-server (at start and after each
/// revocation), so the server's list is the auth stream's.
pub async fn push_revocations(state: &AppState) -> Result<(), ApiError> {
    let trust = state.trust()?;
    let revoked = state.keyring().nodes().revocations();
    let jwt = trust
        .authority
        .account_jwt(&revoked)
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    authority::push_account(&trust.system, jwt)
        .await
        .map_err(|e| ApiError::Unavailable(format!("revocation not pushed to NATS: {e}")))
}
