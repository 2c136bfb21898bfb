//! Enrollment tokens and enrolled nodes, as folded from the auth stream (`EnrollmentIssued`,
//! `EnrollmentUsed`, `NodeCredentialsIssued`, `NodeRevoked`): which enrollment token still
//! works, which key each node enrolled with, when its credentials expire, and every revoked
//! key (what the NATS account JWT lists). Part of the [`super::keyring::Keyring`].

use std::collections::{BTreeMap, HashMap};

use nerve_schemas::AuthEvent;

use super::keyring::Refusal;
use super::token;
use crate::dto::auth::{Identity, Role};

/// An enrollment token as folded.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub id: String,
    pub name: String,
    pub secret_sha256: [u8; 32],
    pub uses: u32,
    pub used: u32,
    pub issued_at_ms: i64,
    pub issued_by: String,
    pub expires_at_ms: i64,
    pub revoked: bool,
}

/// An enrolled node as folded.
#[derive(Debug, Clone)]
pub struct NodeCredential {
    pub node_id: String,
    pub public_key: String,
    pub enrollment_id: String,
    pub enrolled_at_ms: i64,
    pub expires_at_ms: i64,
    pub renewals: u32,
    pub revoked: bool,
}

/// The fold.
#[derive(Debug, Default)]
pub struct NodeBook {
    enrollments: HashMap<String, Enrollment>,
    nodes: HashMap<String, NodeCredential>,
    /// Revoked user keys → when (Unix seconds).
    revoked: BTreeMap<String, u64>,
}

impl NodeBook {
    /// Folds one event (the token events are the keyring's). Idempotent.
    pub fn apply(&mut self, event: &AuthEvent) {
        match event {
            AuthEvent::EnrollmentIssued(e) => {
                let Some(hash) = token::parse_digest(&e.secret_sha256) else {
                    tracing::warn!(enrollment_id = %e.enrollment_id, "EnrollmentIssued with a bad hash ignored");
                    return;
                };
                let known = self.enrollments.get(&e.enrollment_id);
                let (used, revoked) = known.map_or((0, false), |x| (x.used, x.revoked));
                self.enrollments.insert(
                    e.enrollment_id.clone(),
                    Enrollment {
                        id: e.enrollment_id.clone(),
                        name: e.name.clone(),
                        secret_sha256: hash,
                        uses: e.uses.max(0) as u32,
                        used,
                        issued_at_ms: e.envelope.occurred_at_ms,
                        issued_by: e.issued_by.clone(),
                        expires_at_ms: e.expires_at_ms,
                        revoked,
                    },
                );
            }
            AuthEvent::EnrollmentUsed(e) => {
                if let Some(x) = self.enrollments.get_mut(&e.enrollment_id) {
                    x.used = x.used.max(e.use_number.max(0) as u32);
                }
            }
            AuthEvent::EnrollmentRevoked(e) => {
                if let Some(x) = self.enrollments.get_mut(&e.enrollment_id) {
                    x.revoked = true;
                }
            }
            AuthEvent::NodeCredentialsIssued(e) => {
                let node_id = &e.envelope.node_id;
                let at = e.envelope.occurred_at_ms;
                if e.enrollment_id.is_empty() {
                    // A renewal moves the expiry on; seeing it again (applied here, then
                    // delivered by the stream) moves nothing.
                    if let Some(n) = self.nodes.get_mut(node_id).filter(|n| {
                        n.public_key == e.public_key && e.expires_at_ms > n.expires_at_ms
                    }) {
                        n.expires_at_ms = e.expires_at_ms;
                        n.renewals += 1;
                    }
                    return;
                }
                if self.nodes.get(node_id).is_some_and(|n| {
                    n.public_key == e.public_key && n.enrollment_id == e.enrollment_id
                }) {
                    return;
                }
                let revoked = self.revoked.contains_key(&e.public_key);
                self.nodes.insert(
                    node_id.clone(),
                    NodeCredential {
                        node_id: node_id.clone(),
                        public_key: e.public_key.clone(),
                        enrollment_id: e.enrollment_id.clone(),
                        enrolled_at_ms: at,
                        expires_at_ms: e.expires_at_ms,
                        renewals: 0,
                        revoked,
                    },
                );
            }
            AuthEvent::NodeRevoked(e) => {
                let at_secs = (e.envelope.occurred_at_ms.max(0) / 1000) as u64;
                let entry = self.revoked.entry(e.public_key.clone()).or_insert(at_secs);
                *entry = (*entry).max(at_secs);
                if let Some(n) = self
                    .nodes
                    .get_mut(&e.envelope.node_id)
                    .filter(|n| n.public_key == e.public_key)
                {
                    n.revoked = true;
                }
            }
            AuthEvent::TokenIssued(_) | AuthEvent::TokenRevoked(_) | AuthEvent::TokenUsed(_) => {}
        }
    }

    /// The identity an enrollment token stands for, if `id` is one.
    pub fn check(&self, id: &str, secret: &str, now_ms: i64) -> Option<Result<Identity, Refusal>> {
        let e = self.enrollments.get(id)?;
        Some(if !token::matches(secret, &e.secret_sha256) {
            Err(Refusal::WrongSecret)
        } else if e.revoked {
            Err(Refusal::Revoked)
        } else if now_ms >= e.expires_at_ms {
            Err(Refusal::Expired)
        } else if e.used >= e.uses {
            Err(Refusal::UsedUp)
        } else {
            Ok(Identity {
                token_id: e.id.clone(),
                name: e.name.clone(),
                role: Role::Enrollment,
            })
        })
    }

    pub fn enrollment(&self, id: &str) -> Option<Enrollment> {
        self.enrollments.get(id).cloned()
    }

    /// Every enrollment token, newest first.
    pub fn enrollments(&self) -> Vec<Enrollment> {
        let mut all: Vec<Enrollment> = self.enrollments.values().cloned().collect();
        all.sort_by(|a, b| (b.issued_at_ms, &b.id).cmp(&(a.issued_at_ms, &a.id)));
        all
    }

    pub fn node(&self, node_id: &str) -> Option<NodeCredential> {
        self.nodes.get(node_id).cloned()
    }

    /// Every enrolled node, by id.
    pub fn nodes(&self) -> Vec<NodeCredential> {
        let mut all: Vec<NodeCredential> = self.nodes.values().cloned().collect();
        all.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        all
    }

    /// Whether `public_key` was ever revoked.
    pub fn is_revoked(&self, public_key: &str) -> bool {
        self.revoked.contains_key(public_key)
    }

    /// Every revoked key → when (Unix seconds): the NATS account JWT's revocations.
    pub fn revocations(&self) -> BTreeMap<String, u64> {
        self.revoked.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nerve_schemas::{
        EnrollmentIssued, EnrollmentUsed, Envelope, NodeCredentialsIssued, NodeRevoked,
    };

    fn credentials(node: &str, key: &str, enrollment: &str, expires: i64) -> AuthEvent {
        AuthEvent::NodeCredentialsIssued(NodeCredentialsIssued {
            envelope: Envelope::new::<NodeCredentialsIssued>(node, 1_000),
            public_key: key.into(),
            enrollment_id: enrollment.into(),
            jwt_id: "j".into(),
            expires_at_ms: expires,
            issued_by: "x".into(),
        })
    }

    #[test]
    fn an_enrollment_token_works_for_its_uses_and_a_revoked_key_stays_revoked() {
        let mut book = NodeBook::default();
        let minted = token::mint(None);
        book.apply(&AuthEvent::EnrollmentIssued(EnrollmentIssued {
            envelope: Envelope::new::<EnrollmentIssued>(&minted.id, 1_000),
            enrollment_id: minted.id.clone(),
            name: "rack 1".into(),
            secret_sha256: token::hex(&minted.secret_sha256),
            uses: 2,
            expires_at_ms: 10_000,
            issued_by: "admin/1".into(),
        }));
        let secret = token::parse(&minted.token)
            .expect("parses")
            .secret
            .to_owned();
        let who = book.check(&minted.id, &secret, 5_000).expect("known");
        assert_eq!(who.expect("works").role, Role::Enrollment);
        assert_eq!(
            book.check(&minted.id, &secret, 10_000),
            Some(Err(Refusal::Expired))
        );
        assert!(book.check("other", &secret, 1).is_none());
        for n in 1..=2 {
            book.apply(&AuthEvent::EnrollmentUsed(EnrollmentUsed {
                envelope: Envelope::new::<EnrollmentUsed>(&minted.id, 2_000),
                enrollment_id: minted.id.clone(),
                use_number: n,
                enrolled_node_id: format!("n{n}"),
                public_key: format!("U{n}"),
            }));
        }
        assert_eq!(
            book.check(&minted.id, &secret, 5_000),
            Some(Err(Refusal::UsedUp))
        );
        book.apply(&AuthEvent::EnrollmentRevoked(
            nerve_schemas::EnrollmentRevoked {
                envelope: Envelope::new::<nerve_schemas::EnrollmentRevoked>(&minted.id, 3_000),
                enrollment_id: minted.id.clone(),
                revoked_by: "admin/1".into(),
            },
        ));
        assert_eq!(
            book.check(&minted.id, &secret, 5_000),
            Some(Err(Refusal::Revoked))
        );

        book.apply(&credentials("n1", "U1", &minted.id, 50_000));
        book.apply(&credentials("n1", "U1", "", 90_000));
        // Seen twice (applied, then delivered), each counts once.
        book.apply(&credentials("n1", "U1", &minted.id, 50_000));
        book.apply(&credentials("n1", "U1", "", 90_000));
        book.apply(&credentials("n1", "U-other", "", 99_000));
        let n1 = book.node("n1").expect("enrolled");
        assert_eq!((n1.expires_at_ms, n1.renewals), (90_000, 1));
        book.apply(&AuthEvent::NodeRevoked(NodeRevoked {
            envelope: Envelope::new::<NodeRevoked>("n1", 7_000),
            public_key: "U1".into(),
            revoked_by: "admin/1".into(),
        }));
        assert!(book.node("n1").expect("known").revoked);
        assert_eq!(book.revocations().get("U1"), Some(&7));
        // Enrolling again with the revoked key does not bring it back.
        book.apply(&credentials("n1", "U1", &minted.id, 50_000));
        assert!(book.node("n1").expect("known").revoked);
    }
}
