//! Every operator token, in memory: the fold of the auth stream (`TokenIssued`,
//! `TokenRevoked`, `TokenUsed`; enrollments and nodes in [`super::nodes`]), followed live by
//! every API instance, so a check is a hash map
//! lookup and one SHA-256 (microseconds) and a revocation reaches every instance as fast as
//! JetStream delivers it. Uses seen here are published back, at most once a minute per token.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use nerve_ingest::EventLog;
use nerve_schemas::{AuthEvent, Envelope, TokenUsed, subjects};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::nodes::NodeBook;
use super::token;
use crate::dto::auth::{Identity, Role};

/// A token as folded.
#[derive(Debug, Clone)]
pub struct Token {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub secret_sha256: [u8; 32],
    pub issued_at_ms: i64,
    pub issued_by: String,
    pub expires_at_ms: i64,
    pub revoked: bool,
    pub last_used_ms: i64,
}

impl Token {
    /// Works now: not revoked, not expired.
    pub fn active(&self, now_ms: i64) -> bool {
        !self.revoked && now_ms < self.expires_at_ms
    }

    pub fn identity(&self) -> Identity {
        Identity {
            token_id: self.id.clone(),
            name: self.name.clone(),
            role: self.role,
        }
    }
}

/// Why a presented token was not accepted. Each is answered 401 (except [`Refusal::NotReady`],
/// 503); the client sees one message, the log and the audit trail the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Malformed,
    Unknown,
    WrongSecret,
    Expired,
    Revoked,
    /// An enrollment token whose every use is spent.
    UsedUp,
    /// This instance has not read the auth stream to its end yet.
    NotReady,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Missing => "no token",
            Refusal::Malformed => "not a Nerve token",
            Refusal::Unknown => "unknown token",
            Refusal::WrongSecret => "wrong secret",
            Refusal::Expired => "token expired",
            Refusal::Revoked => "token revoked",
            Refusal::UsedUp => "enrollment token used up",
            Refusal::NotReady => "tokens not loaded yet",
        }
    }
}

/// The fold, shared by the requests of one API instance.
#[derive(Debug)]
pub struct Keyring {
    tokens: RwLock<HashMap<String, Token>>,
    nodes: RwLock<NodeBook>,
    /// Uses since the last flush: token id → latest use.
    used: Mutex<HashMap<String, i64>>,
    caught_up: watch::Sender<bool>,
}

impl Default for Keyring {
    fn default() -> Self {
        Self {
            tokens: RwLock::default(),
            nodes: RwLock::default(),
            used: Mutex::default(),
            caught_up: watch::channel(false).0,
        }
    }
}

impl Keyring {
    /// Folds one event. Idempotent: the instance that issued a token applies its event at once
    /// and again when the stream delivers it.
    pub fn apply(&self, event: &AuthEvent) {
        if !matches!(
            event,
            AuthEvent::TokenIssued(_) | AuthEvent::TokenRevoked(_) | AuthEvent::TokenUsed(_)
        ) {
            self.nodes.write().expect("keyring lock").apply(event);
            return;
        }
        let mut tokens = self.tokens.write().expect("keyring lock");
        match event {
            AuthEvent::TokenIssued(e) => {
                let (Some(role), Some(hash)) =
                    (Role::parse(&e.role), token::parse_digest(&e.secret_sha256))
                else {
                    tracing::warn!(token_id = %e.token_id, "TokenIssued with a bad role or hash ignored");
                    return;
                };
                let last_used_ms = tokens.get(&e.token_id).map_or(0, |t| t.last_used_ms);
                let revoked = tokens.get(&e.token_id).is_some_and(|t| t.revoked);
                tokens.insert(
                    e.token_id.clone(),
                    Token {
                        id: e.token_id.clone(),
                        name: e.name.clone(),
                        role,
                        secret_sha256: hash,
                        issued_at_ms: e.envelope.occurred_at_ms,
                        issued_by: e.issued_by.clone(),
                        expires_at_ms: e.expires_at_ms,
                        // A revoked token stays revoked, whatever comes after.
                        revoked,
                        last_used_ms,
                    },
                );
            }
            AuthEvent::TokenRevoked(e) => {
                if let Some(t) = tokens.get_mut(&e.token_id) {
                    t.revoked = true;
                }
            }
            AuthEvent::TokenUsed(e) => {
                if let Some(t) = tokens.get_mut(&e.token_id) {
                    t.last_used_ms = t.last_used_ms.max(e.last_used_ms);
                }
            }
            _ => {}
        }
    }

    /// The identity a presented token stands for.
    pub fn check(&self, presented: Option<&str>, now_ms: i64) -> Result<Identity, Refusal> {
        let presented = presented.ok_or(Refusal::Missing)?;
        let parts = token::parse(presented).ok_or(Refusal::Malformed)?;
        if !*self.caught_up.borrow() {
            return Err(Refusal::NotReady);
        }
        let identity = {
            let tokens = self.tokens.read().expect("keyring lock");
            let Some(t) = tokens.get(parts.id) else {
                // Not an operator token: an enrollment token, or nothing (never a "use").
                let nodes = self.nodes.read().expect("keyring lock");
                return nodes
                    .check(parts.id, parts.secret, now_ms)
                    .unwrap_or(Err(Refusal::Unknown));
            };
            if !token::matches(parts.secret, &t.secret_sha256) {
                return Err(Refusal::WrongSecret);
            }
            if t.revoked {
                return Err(Refusal::Revoked);
            }
            if now_ms >= t.expires_at_ms {
                return Err(Refusal::Expired);
            }
            t.identity()
        };
        self.used
            .lock()
            .expect("keyring lock")
            .insert(identity.token_id.clone(), now_ms);
        Ok(identity)
    }

    /// The token `id`, as folded.
    pub fn get(&self, id: &str) -> Option<Token> {
        let mut token = self.tokens.read().expect("keyring lock").get(id).cloned()?;
        if let Some(&used) = self.used.lock().expect("keyring lock").get(id) {
            token.last_used_ms = token.last_used_ms.max(used);
        }
        Some(token)
    }

    /// Every token, newest first.
    pub fn all(&self) -> Vec<Token> {
        let ids: Vec<String> = self
            .tokens
            .read()
            .expect("keyring lock")
            .keys()
            .cloned()
            .collect();
        let mut all: Vec<Token> = ids.iter().filter_map(|id| self.get(id)).collect();
        all.sort_by(|a, b| (b.issued_at_ms, &b.id).cmp(&(a.issued_at_ms, &a.id)));
        all
    }

    /// Whether some admin token works now.
    pub fn has_active_admin(&self, now_ms: i64) -> bool {
        self.tokens
            .read()
            .expect("keyring lock")
            .values()
            .any(|t| t.role == Role::Admin && t.active(now_ms))
    }

    /// Enrollments and enrolled nodes, to read.
    pub fn nodes(&self) -> std::sync::RwLockReadGuard<'_, NodeBook> {
        self.nodes.read().expect("keyring lock")
    }

    /// Waits until the instance has read the auth stream to its end once.
    pub async fn ready(&self) {
        let mut rx = self.caught_up.subscribe();
        // The sender lives as long as `self`.
        let _ = rx.wait_for(|ready| *ready).await;
    }

    /// Marks the fold complete: the follower does once it has read the stream to its end; a
    /// keyring fed by hand (a benchmark) calls it itself.
    pub fn loaded(&self) {
        self.caught_up
            .send_if_modified(|ready| !std::mem::replace(ready, true));
    }

    fn take_used(&self) -> HashMap<String, i64> {
        std::mem::take(&mut *self.used.lock().expect("keyring lock"))
    }
}

/// Follows the auth stream into `keyring` until `cancel`: from the start, then live; marks it
/// ready once the stream's end at start is reached. Retries (every second) while NATS or the
/// stream is not there.
pub async fn follow(keyring: std::sync::Arc<Keyring>, log: EventLog, cancel: CancellationToken) {
    let Ok(js) = log.jetstream() else {
        tracing::warn!("no event log: no token can be checked, every call needing one is refused");
        return;
    };
    let mut applied = 0u64;
    loop {
        let result = tokio::select! {
            () = cancel.cancelled() => return,
            r = follow_once(&keyring, js, &mut applied) => r,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "following the auth stream; retrying");
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn follow_once(
    keyring: &Keyring,
    js: &async_nats::jetstream::Context,
    applied: &mut u64,
) -> Result<(), String> {
    let (end, mut messages) =
        nerve_ingest::read_stream(js, nerve_ingest::AUTH_STREAM, subjects::AUTH_ALL, *applied)
            .await?;
    if end <= *applied {
        keyring.loaded();
    }
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| e.to_string())?;
        let info = message.info().map_err(|e| e.to_string())?;
        let seq = info.stream_sequence;
        let pending = info.pending;
        match AuthEvent::decode(&message.payload) {
            Ok(event) => keyring.apply(&event),
            Err(e) => tracing::warn!(seq, error = %e, "undecodable auth event skipped"),
        }
        *applied = seq;
        if seq >= end || pending == 0 {
            keyring.loaded();
        }
    }
    Err("the auth stream's consumer ended".into())
}

/// Publishes the uses seen since the last flush, every `every`, until `cancel`.
pub async fn flush_uses(
    keyring: std::sync::Arc<Keyring>,
    log: EventLog,
    every: Duration,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        for (token_id, last_used_ms) in keyring.take_used() {
            let event = TokenUsed {
                envelope: Envelope::new::<TokenUsed>(&token_id, crate::time::now_ms() as i64),
                token_id: token_id.clone(),
                last_used_ms,
            };
            if let Err(e) = log.publish(subjects::token(&token_id), &event).await {
                tracing::debug!(error = %e, "token use not recorded");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nerve_schemas::{TokenIssued, TokenRevoked};

    fn issued(minted: &token::Minted, role: &str, expires_at_ms: i64) -> AuthEvent {
        AuthEvent::TokenIssued(TokenIssued {
            envelope: Envelope::new::<TokenIssued>(&minted.id, 1_000),
            token_id: minted.id.clone(),
            name: "alice".into(),
            role: role.into(),
            secret_sha256: token::hex(&minted.secret_sha256),
            expires_at_ms,
            issued_by: "bootstrap".into(),
        })
    }

    #[test]
    fn a_token_works_until_it_expires_or_is_revoked_and_a_rotation_retires_the_old_secret() {
        let ring = Keyring::default();
        let a = token::mint(None);
        ring.apply(&issued(&a, "operator", 10_000));
        assert_eq!(ring.check(Some(&a.token), 5_000), Err(Refusal::NotReady));
        ring.loaded();
        let who = ring.check(Some(&a.token), 5_000).expect("valid");
        assert_eq!((who.role, who.name.as_str()), (Role::Operator, "alice"));
        assert_eq!(ring.get(&a.id).expect("known").last_used_ms, 5_000);
        assert_eq!(ring.check(Some(&a.token), 10_000), Err(Refusal::Expired));
        assert_eq!(ring.check(None, 1), Err(Refusal::Missing));
        assert_eq!(ring.check(Some("Bearer x"), 1), Err(Refusal::Malformed));
        assert_eq!(
            ring.check(Some(&token::mint(None).token), 1),
            Err(Refusal::Unknown)
        );

        let rotated = token::mint(Some(&a.id));
        ring.apply(&issued(&rotated, "operator", 20_000));
        assert_eq!(ring.check(Some(&a.token), 1), Err(Refusal::WrongSecret));
        assert!(ring.check(Some(&rotated.token), 15_000).is_ok());

        ring.apply(&AuthEvent::TokenRevoked(TokenRevoked {
            envelope: Envelope::new::<TokenRevoked>(&a.id, 2_000),
            token_id: a.id.clone(),
            revoked_by: "x".into(),
        }));
        assert_eq!(ring.check(Some(&rotated.token), 1), Err(Refusal::Revoked));
        // A replayed issue does not bring a revoked token back.
        ring.apply(&issued(&rotated, "operator", 20_000));
        assert_eq!(ring.check(Some(&rotated.token), 1), Err(Refusal::Revoked));
        assert!(!ring.has_active_admin(1));
        let admin = token::mint(None);
        ring.apply(&issued(&admin, "admin", 20_000));
        assert!(ring.has_active_admin(1));
        assert!(!ring.has_active_admin(20_000));
    }
}
