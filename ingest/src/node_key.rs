//! A node's own NATS identity. Its key is made on the node (`<state_dir>/node.nk`, mode 0600)
//! and never leaves it; its credentials are a user JWT for that key (`<state_dir>/node.jwt`),
//! issued at enrollment and replaced on renewal. The server checks the JWT and that the client
//! signs its nonce with the key the JWT names. Also the proofs a node signs when it enrolls
//! or renews (possession of the key, bound to node, purpose and time) and what it sends and
//! gets back.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use nkeys::KeyPair;
use serde::{Deserialize, Serialize};

use crate::keys;

/// How far a proof's time may be from the verifier's clock.
pub const PROOF_SKEW_MS: i64 = 5 * 60 * 1000;

/// The seed file of the node's key in `state_dir`.
pub fn seed_path(state_dir: &Path) -> PathBuf {
    state_dir.join("node.nk")
}

/// The node's current credentials (a user JWT) in `state_dir`.
pub fn jwt_path(state_dir: &Path) -> PathBuf {
    state_dir.join("node.jwt")
}

/// The key and current JWT of an enrolled node.
#[derive(Clone)]
pub struct NodeKey {
    key: Arc<KeyPair>,
    jwt: Arc<RwLock<String>>,
    jwt_file: PathBuf,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKey")
            .field("public_key", &self.key.public_key())
            .finish_non_exhaustive()
    }
}

impl NodeKey {
    /// The node's key in `state_dir`, made when missing (before enrolling).
    pub fn key(state_dir: &Path) -> std::io::Result<KeyPair> {
        keys::load_or_create_seed(&seed_path(state_dir), KeyPair::new_user)
    }

    /// The enrolled identity in `state_dir`; `None` when the node has no credentials yet.
    pub fn load(state_dir: &Path) -> std::io::Result<Option<Self>> {
        let jwt_file = jwt_path(state_dir);
        if !jwt_file.exists() {
            return Ok(None);
        }
        let jwt = std::fs::read_to_string(&jwt_file)?.trim().to_owned();
        Ok(Some(Self {
            key: Arc::new(keys::load_seed(&seed_path(state_dir))?),
            jwt: Arc::new(RwLock::new(jwt)),
            jwt_file,
        }))
    }

    pub fn public_key(&self) -> String {
        self.key.public_key()
    }

    /// The current JWT.
    pub fn jwt(&self) -> String {
        self.jwt.read().expect("jwt lock").clone()
    }

    /// When the current JWT expires (Unix seconds), if it does.
    pub fn expires_at_secs(&self) -> Option<u64> {
        jwt_expiry(&self.jwt())
    }

    /// Replaces the credentials (file first, then memory): the next connection uses them.
    pub fn replace(&self, jwt: &str) -> std::io::Result<()> {
        keys::write_private(&self.jwt_file, &format!("{jwt}\n"))?;
        *self.jwt.write().expect("jwt lock") = jwt.to_owned();
        Ok(())
    }

    /// A proof of this key for `purpose` (`enroll`, `renew`) of `node_id`, now.
    pub fn prove(&self, purpose: &str, node_id: &str) -> Proof {
        prove(&self.key, purpose, node_id)
    }

    /// Connect options that present the current JWT and sign the server's nonce, at every
    /// (re)connection — so a renewed JWT is used from the next connection on.
    pub fn connect_options(&self) -> async_nats::ConnectOptions {
        let (key, jwt) = (self.key.clone(), self.jwt.clone());
        async_nats::ConnectOptions::with_auth_callback(move |nonce| {
            let (key, jwt) = (key.clone(), jwt.clone());
            async move {
                let mut auth = async_nats::Auth::new();
                auth.jwt = Some(jwt.read().expect("jwt lock").clone());
                auth.signature = Some(
                    key.sign(&nonce)
                        .map_err(|e| async_nats::AuthError::new(e.to_string()))?,
                );
                Ok(auth)
            }
        })
    }
}

/// A JWT's claims as JSON, its signature not checked (a node reads its own credentials to know
/// when to renew them; the authority reads back what it just signed).
pub fn jwt_claims(jwt: &str) -> Option<serde_json::Value> {
    let payload = jwt.split('.').nth(1)?;
    serde_json::from_slice(&B64.decode(payload).ok()?).ok()
}

/// The `exp` of a JWT (Unix seconds), if it has one.
pub fn jwt_expiry(jwt: &str) -> Option<u64> {
    jwt_claims(jwt)?.get("exp")?.as_u64()
}

/// Proof that the sender holds the private key of `public_key`, for one purpose, node and
/// moment: an ed25519 signature over `nerve-<purpose>:v1:<node_id>:<public_key>:<at_ms>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Proof {
    pub node_id: String,
    pub public_key: String,
    pub signed_at_ms: i64,
    /// Base64url of the signature.
    pub signature: String,
}

fn proof_bytes(purpose: &str, node_id: &str, public_key: &str, at_ms: i64) -> Vec<u8> {
    format!("nerve-{purpose}:v1:{node_id}:{public_key}:{at_ms}").into_bytes()
}

/// A proof of `key` for `purpose` of `node_id`, now.
pub fn prove(key: &KeyPair, purpose: &str, node_id: &str) -> Proof {
    let at = nerve_platform::now_ms();
    let public_key = key.public_key();
    let signature = key
        .sign(&proof_bytes(purpose, node_id, &public_key, at))
        .expect("a seed key signs");
    Proof {
        node_id: node_id.to_owned(),
        public_key,
        signed_at_ms: at,
        signature: B64.encode(signature),
    }
}

impl Proof {
    /// Checks the signature, the purpose and the time (within [`PROOF_SKEW_MS`] of `now_ms`).
    pub fn verify(&self, purpose: &str, now_ms: i64) -> Result<(), String> {
        if !nerve_schemas::subjects::is_valid_node_id(&self.node_id) {
            return Err(format!("{:?} is not a node id", self.node_id));
        }
        if !self.public_key.starts_with('U') {
            return Err("the key is not a NATS user key".into());
        }
        let key = KeyPair::from_public_key(&self.public_key).map_err(|e| e.to_string())?;
        if (now_ms - self.signed_at_ms).abs() > PROOF_SKEW_MS {
            return Err("the proof's time is more than 5 minutes off".into());
        }
        let signature = B64
            .decode(&self.signature)
            .map_err(|_| "the signature is not base64url".to_owned())?;
        key.verify(
            &proof_bytes(purpose, &self.node_id, &self.public_key, self.signed_at_ms),
            &signature,
        )
        .map_err(|_| "the signature does not match the key".to_owned())
    }
}

/// The answer to an enrollment (`POST /api/v1/enroll`) or a renewal
/// (`POST /api/v1/credentials/renew`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Credentials {
    /// The user JWT for the node's key; empty when refused.
    pub jwt: String,
    /// When it expires, RFC 3339.
    pub expires_at: String,
    /// The public key task offers are signed with (pinned by the agent at enrollment).
    pub dispatch_public_key: String,
    /// Why it was refused; empty when issued.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_verifies_only_for_its_purpose_node_key_and_time() {
        let key = KeyPair::new_user();
        let proof = prove(&key, "enroll", "gpu-1");
        let now = proof.signed_at_ms;
        assert_eq!(proof.verify("enroll", now), Ok(()));
        assert!(proof.verify("renew", now).is_err());
        assert!(proof.verify("enroll", now + PROOF_SKEW_MS + 1).is_err());
        let other_node = Proof {
            node_id: "gpu-2".into(),
            ..proof.clone()
        };
        assert!(other_node.verify("enroll", now).is_err());
        let other_key = Proof {
            public_key: KeyPair::new_user().public_key(),
            ..proof.clone()
        };
        assert!(other_key.verify("enroll", now).is_err());
    }

    #[test]
    fn an_enrolled_identity_reads_and_replaces_its_jwt() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(NodeKey::load(dir.path()).expect("load").is_none());
        let key = NodeKey::key(dir.path()).expect("key");
        let claims = B64.encode(br#"{"exp":1900000000,"sub":"U"}"#);
        std::fs::write(jwt_path(dir.path()), format!("e30.{claims}.sig\n")).expect("jwt");
        let node = NodeKey::load(dir.path()).expect("load").expect("enrolled");
        assert_eq!(node.public_key(), key.public_key());
        assert_eq!(node.expires_at_secs(), Some(1_900_000_000));
        node.replace("a.b.c").expect("replaced");
        assert_eq!(node.jwt(), "a.b.c");
        assert_eq!(
            std::fs::read_to_string(jwt_path(dir.path())).expect("file"),
            "a.b.c\n"
        );
    }
}
