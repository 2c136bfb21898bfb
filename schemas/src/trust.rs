//! Trust events: operator tokens (issued, revoked, seen in use) and node enrollment and
//! credentials on the auth stream, and the
//! audit trail of API calls on the audit stream. Each mirrors its `.avsc` file field for field.
//! No secret is ever part of an event: a token is recorded by the hash of its secret.

use serde::{Deserialize, Serialize};

use crate::events::Envelope;

/// `TokenIssued` v1: a token was issued, or rotated (same `token_id`, new secret). The
/// envelope's `node_id` is the token id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenIssued {
    pub envelope: Envelope,
    pub token_id: String,
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    pub expires_at_ms: i64,
    pub issued_by: String,
}
event!(TokenIssued, 1);

/// `TokenRevoked` v1. The envelope's `node_id` is the token id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRevoked {
    pub envelope: Envelope,
    pub token_id: String,
    pub revoked_by: String,
}
event!(TokenRevoked, 1);

/// `TokenUsed` v1: an API instance saw the token in use. The envelope's `node_id` is the token
/// id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenUsed {
    pub envelope: Envelope,
    pub token_id: String,
    pub last_used_ms: i64,
}
event!(TokenUsed, 1);

/// `EnrollmentIssued` v1: an enrollment token for `uses` nodes. The envelope's `node_id` is the
/// enrollment id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollmentIssued {
    pub envelope: Envelope,
    pub enrollment_id: String,
    pub name: String,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    pub uses: i32,
    pub expires_at_ms: i64,
    pub issued_by: String,
}
event!(EnrollmentIssued, 1);

/// `EnrollmentUsed` v1: one use spent. The envelope's `node_id` is the enrollment id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollmentUsed {
    pub envelope: Envelope,
    pub enrollment_id: String,
    pub use_number: i32,
    pub enrolled_node_id: String,
    pub public_key: String,
}
event!(EnrollmentUsed, 1);

/// `EnrollmentRevoked` v1. The envelope's `node_id` is the enrollment id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollmentRevoked {
    pub envelope: Envelope,
    pub enrollment_id: String,
    pub revoked_by: String,
}
event!(EnrollmentRevoked, 1);

/// `NodeCredentialsIssued` v1: a node's NATS user JWT (not recorded) was issued. The
/// envelope's `node_id` is the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeCredentialsIssued {
    pub envelope: Envelope,
    pub public_key: String,
    /// Empty on renewal.
    pub enrollment_id: String,
    pub jwt_id: String,
    pub expires_at_ms: i64,
    pub issued_by: String,
}
event!(NodeCredentialsIssued, 1);

/// `NodeRevoked` v1. The envelope's `node_id` is the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRevoked {
    pub envelope: Envelope,
    pub public_key: String,
    pub revoked_by: String,
}
event!(NodeRevoked, 1);

/// `AuditRecorded` v1: one audited API call. The envelope's `node_id` is the instance id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecorded {
    pub envelope: Envelope,
    pub instance_id: String,
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
    pub actor_token_id: String,
    pub actor_name: String,
    pub actor_role: String,
    pub method: String,
    pub route: String,
    pub targets: Vec<String>,
    pub body_sha256: String,
    pub peer: String,
    pub user_agent: String,
    pub status: i32,
    /// `applied`, `answered` or `denied`.
    pub outcome: String,
}
event!(AuditRecorded, 1);

impl AuditRecorded {
    /// The bytes an entry's `hash` is the SHA-256 of: `prev_hash`, a newline, then every other
    /// field as JSON (the field order is fixed by the type, so the bytes are too).
    pub fn chained_bytes(&self) -> Vec<u8> {
        let unhashed = Self {
            hash: String::new(),
            ..self.clone()
        };
        let mut bytes = self.prev_hash.as_bytes().to_vec();
        bytes.push(b'\n');
        // A struct of strings, numbers and a list always serializes.
        serde_json::to_writer(&mut bytes, &unhashed).expect("audit entry serializes");
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Event;
    use crate::registry::assert_round_trips as check;

    #[test]
    fn every_trust_event_follows_its_schema_and_round_trips() {
        let env = |name: &str| Envelope {
            schema_name: name.to_owned(),
            ..Envelope::new::<TokenIssued>("tok-1", 1_700_000_000_000)
        };
        check(&TokenIssued {
            envelope: env(TokenIssued::NAME),
            token_id: "0a1b2c3d4e5f6a7b".into(),
            name: "alice".into(),
            role: "operator".into(),
            secret_sha256: "ab".repeat(32),
            expires_at_ms: 1_800_000_000_000,
            issued_by: "bootstrap".into(),
        });
        check(&TokenRevoked {
            envelope: env(TokenRevoked::NAME),
            token_id: "0a1b2c3d4e5f6a7b".into(),
            revoked_by: "admin/00112233".into(),
        });
        check(&TokenUsed {
            envelope: env(TokenUsed::NAME),
            token_id: "0a1b2c3d4e5f6a7b".into(),
            last_used_ms: 1_700_000_000_500,
        });
        check(&EnrollmentIssued {
            envelope: env(EnrollmentIssued::NAME),
            enrollment_id: "0a1b2c3d4e5f6a7b".into(),
            name: "rack 12".into(),
            secret_sha256: "ab".repeat(32),
            uses: 40,
            expires_at_ms: 1_700_003_600_000,
            issued_by: "admin/00112233".into(),
        });
        check(&EnrollmentUsed {
            envelope: env(EnrollmentUsed::NAME),
            enrollment_id: "0a1b2c3d4e5f6a7b".into(),
            use_number: 1,
            enrolled_node_id: "gpu-001".into(),
            public_key: "UABC".into(),
        });
        check(&EnrollmentRevoked {
            envelope: env(EnrollmentRevoked::NAME),
            enrollment_id: "0a1b2c3d4e5f6a7b".into(),
            revoked_by: "admin/00112233".into(),
        });
        check(&NodeCredentialsIssued {
            envelope: env(NodeCredentialsIssued::NAME),
            public_key: "UABC".into(),
            enrollment_id: String::new(),
            jwt_id: "JTI".into(),
            expires_at_ms: 1_700_086_400_000,
            issued_by: "node/gpu-001".into(),
        });
        check(&NodeRevoked {
            envelope: env(NodeRevoked::NAME),
            public_key: "UABC".into(),
            revoked_by: "admin/00112233".into(),
        });
        check(&AuditRecorded {
            envelope: env(AuditRecorded::NAME),
            instance_id: "i-1".into(),
            seq: 1,
            prev_hash: String::new(),
            hash: "cd".repeat(32),
            actor_token_id: "0a1b2c3d4e5f6a7b".into(),
            actor_name: "alice".into(),
            actor_role: "operator".into(),
            method: "POST".into(),
            route: "/api/v1/clusters".into(),
            targets: vec!["c-1".into()],
            body_sha256: "ef".repeat(32),
            peer: "127.0.0.1:5555".into(),
            user_agent: "curl/8".into(),
            status: 202,
            outcome: "applied".into(),
        });
    }

    #[test]
    fn the_chained_bytes_cover_every_field_but_the_hash() {
        let entry = AuditRecorded {
            envelope: Envelope::new::<AuditRecorded>("i-1", 1),
            instance_id: "i-1".into(),
            seq: 1,
            prev_hash: "00".into(),
            hash: String::new(),
            actor_token_id: String::new(),
            actor_name: String::new(),
            actor_role: String::new(),
            method: "GET".into(),
            route: "/api/v1/nodes".into(),
            targets: vec![],
            body_sha256: String::new(),
            peer: String::new(),
            user_agent: String::new(),
            status: 401,
            outcome: "denied".into(),
        };
        let bytes = entry.chained_bytes();
        let hashed = AuditRecorded {
            hash: "ff".into(),
            ..entry.clone()
        };
        assert_eq!(
            hashed.chained_bytes(),
            bytes,
            "the hash is not part of itself"
        );
        let changed = AuditRecorded {
            status: 403,
            ..entry
        };
        assert_ne!(changed.chained_bytes(), bytes);
        assert!(bytes.starts_with(b"00\n"));
    }
}
