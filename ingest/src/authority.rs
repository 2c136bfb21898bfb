//! The NATS trust chain Nerve runs under: decentralized JWT authentication. An operator key
//! signs two accounts — `SYS` (the server's own) and `NERVE` (every Nerve client) — and the
//! `NERVE` account's signing key issues every user's JWT: a node's (its own subjects only, for
//! 24 h), and each control-plane role's ([`Grant`]). nats-server holds no secret: it trusts the
//! operator's public key and checks each client's JWT and its proof of the key the JWT names.
//! Revoking a node is a new `NERVE` account JWT listing the node's key, pushed to the server
//! (which closes the node's connection at once and refuses it from then on).
//!
//! The four seeds live in one directory (mode 0600 files, created when missing): whoever holds
//! it can mint any credential, so only `nerve serve` (which issues nodes' credentials) and the
//! admin who sets a deployment up read it. Crypto is the `nkeys` crate's (ed25519); JWTs are
//! built by `nats-jwt-rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nats_jwt_rs::account::{Account, JetStreamLimits};
use nats_jwt_rs::operator::Operator;
use nats_jwt_rs::types::{Permission, Permissions, ResponsePermission, SigningKey};
use nats_jwt_rs::user::User;
use nerve_schemas::subjects;
use nkeys::KeyPair;

use crate::inbox::{node as node_inbox, role as role_inbox};
use crate::keys;

/// Why the authority could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    #[error("NATS authority key {path}: {source}")]
    Key {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("NATS authority: {0}")]
    Jwt(String),
}

/// What one user may do on NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Subjects (with wildcards) it may publish on.
    pub publish: Vec<String>,
    /// Subjects it may not publish on, though `publish` matches them.
    pub deny_publish: Vec<String>,
    /// Subjects it may subscribe to.
    pub subscribe: Vec<String>,
    /// May answer a request it received (once, within 2 minutes) whatever its reply subject.
    pub respond: bool,
}

/// What no control-plane role may ask JetStream: destroying the log.
const LOG_DESTROYING: [&str; 3] = [
    "$JS.API.STREAM.DELETE.>",
    "$JS.API.STREAM.PURGE.>",
    "$JS.API.STREAM.MSG.DELETE.>",
];

impl Grant {
    /// A node: publish its own telemetry, inventory, XIDs, health checks, task progress and labels; hear its own dispatch and cancel subjects and its own inbox; answer an
    /// offer. Publishing with an ack needs nothing more (the ack comes to its inbox).
    pub fn node(node_id: &str) -> Self {
        Self {
            publish: vec![
                subjects::heartbeat(node_id),
                subjects::inventory(node_id),
                subjects::gpu_xid(node_id),
                subjects::health_check(node_id),
                subjects::task_node(node_id),
                subjects::control_node(node_id),
            ],
            deny_publish: Vec::new(),
            subscribe: vec![
                format!("{}.>", node_inbox(node_id)),
                subjects::dispatch(node_id),
                subjects::cancel(node_id),
            ],
            respond: true,
        }
    }

    /// `nerve serve`: streams and its consumers; task requests and cancellations, control,
    /// auth and audit events; live task output.
    pub fn serve() -> Self {
        Self {
            publish: vec![
                "$JS.API.>".into(),
                subjects::TASK_REQUESTS_ALL.into(),
                subjects::cancel("*"),
                subjects::CONTROL_ALL.into(),
                subjects::AUTH_ALL.into(),
                subjects::AUDIT_ALL.into(),
            ],
            deny_publish: LOG_DESTROYING.map(String::from).to_vec(),
            subscribe: vec![
                format!("{}.>", role_inbox("serve")),
                subjects::TASK_NODES_ALL.into(),
            ],
            respond: false,
        }
    }

    /// `nerve project`: streams, consumers and acks; the singleton roles' leases; liveness and
    /// alert events, notification attempts, remediation's journal, maintenance changes and task
    /// requests; the dispatcher's offers, cancellations and per-node task records.
    pub fn project() -> Self {
        Self {
            publish: vec![
                "$JS.API.>".into(),
                "$JS.ACK.>".into(),
                // The singleton roles' leases (`lease::LEASES_BUCKET`).
                "$KV.nerve_leases.>".into(),
                subjects::LIVENESS_ALL.into(),
                subjects::ALERTS_ALL.into(),
                subjects::CONTROL_ALL.into(),
                subjects::TASK_REQUESTS_ALL.into(),
                subjects::TASK_NODES_ALL.into(),
                subjects::dispatch("*"),
                subjects::cancel("*"),
            ],
            deny_publish: LOG_DESTROYING.map(String::from).to_vec(),
            subscribe: vec![
                format!("{}.>", role_inbox("project")),
                subjects::TASK_NODES_ALL.into(),
            ],
            respond: false,
        }
    }

    /// Everything in the `NERVE` account: `nerve dev`'s fleet simulator and admin tools.
    pub fn all() -> Self {
        Self {
            publish: vec![">".into()],
            deny_publish: Vec::new(),
            subscribe: vec![">".into()],
            respond: false,
        }
    }
}

/// A JWT as issued.
#[derive(Debug, Clone)]
pub struct Issued {
    pub jwt: String,
    /// The JWT's `jti`.
    pub id: String,
}

/// The operator, the two accounts and the `NERVE` account's signing key.
pub struct Authority {
    dir: PathBuf,
    operator: KeyPair,
    system: KeyPair,
    account: KeyPair,
    signer: KeyPair,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("dir", &self.dir)
            .field("operator", &self.operator.public_key())
            .field("account", &self.account.public_key())
            .finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn jwt_error(e: impl std::fmt::Display) -> AuthorityError {
    AuthorityError::Jwt(e.to_string())
}

impl Authority {
    /// The authority whose seeds are in `dir`, each created when missing.
    pub fn load_or_create(dir: &Path) -> Result<Self, AuthorityError> {
        let key = |name: &str, new: fn() -> KeyPair| {
            let path = dir.join(name);
            keys::load_or_create_seed(&path, new).map_err(|source| AuthorityError::Key {
                path: path.clone(),
                source,
            })
        };
        Ok(Self {
            dir: dir.to_owned(),
            operator: key("operator.nk", KeyPair::new_operator)?,
            system: key("system-account.nk", KeyPair::new_account)?,
            account: key("account.nk", KeyPair::new_account)?,
            signer: key("account-signing.nk", KeyPair::new_account)?,
        })
    }

    /// The `NERVE` account's public key.
    pub fn account_public_key(&self) -> String {
        self.account.public_key()
    }

    /// The `NERVE` account's JWT, listing `revoked` user keys (key → revoked at, Unix seconds:
    /// every JWT issued for the key up to then is refused).
    pub fn account_jwt(&self, revoked: &BTreeMap<String, u64>) -> Result<String, AuthorityError> {
        let mut claims = Account::new_claims("NERVE".into(), self.account.public_key());
        if let Some(limits) = claims.nats.limits.as_mut() {
            limits.jetstream = Some(JetStreamLimits {
                memory_storage: Some(-1),
                disk_storage: Some(-1),
                streams: Some(-1),
                consumer: Some(-1),
                ..JetStreamLimits::default()
            });
        }
        let mut signing = indexmap::IndexSet::new();
        signing.insert(SigningKey {
            key: self.signer.public_key(),
            scope: None,
        });
        claims.nats.signing_keys = Some(signing);
        if !revoked.is_empty() {
            claims.nats.revocations = Some(revoked.clone());
        }
        claims.encode(&self.operator).map_err(jwt_error)
    }

    /// The lines of a nats-server config that make it trust this authority: the operator JWT
    /// (written beside the seeds), the system account, and a full resolver in `resolver_dir`
    /// preloaded with both accounts' JWTs (later `NERVE` JWTs are pushed to it).
    pub fn server_config(&self, resolver_dir: &Path) -> Result<String, AuthorityError> {
        let mut operator = Operator::new_claims("nerve".into(), self.operator.public_key());
        operator.nats.system_account = Some(self.system.public_key());
        let operator_jwt = operator.encode(&self.operator).map_err(jwt_error)?;
        let operator_file = self.dir.join("operator.jwt");
        std::fs::write(&operator_file, &operator_jwt).map_err(|source| AuthorityError::Key {
            path: operator_file.clone(),
            source,
        })?;
        let system = Account::new_claims("SYS".into(), self.system.public_key())
            .encode(&self.operator)
            .map_err(jwt_error)?;
        let account = self.account_jwt(&BTreeMap::new())?;
        Ok(format!(
            "operator: {:?}\nsystem_account: {}\n\
             resolver: {{ type: full, dir: {:?}, allow_delete: false, interval: \"2m\" }}\n\
             resolver_preload: {{ {}: {:?}, {}: {:?} }}\n",
            operator_file.display().to_string(),
            self.system.public_key(),
            resolver_dir.display().to_string(),
            self.system.public_key(),
            system,
            self.account.public_key(),
            account,
        ))
    }

    /// A user JWT for `user_key` (a public nkey) under `grant`, valid for `ttl` (`None`: no
    /// expiry), signed with the account's signing key.
    pub fn issue(
        &self,
        name: &str,
        user_key: &str,
        grant: &Grant,
        ttl: Option<Duration>,
    ) -> Result<Issued, AuthorityError> {
        if KeyPair::from_public_key(user_key).is_err() || !user_key.starts_with('U') {
            return Err(AuthorityError::Jwt(format!(
                "{user_key:?} is not a user public key"
            )));
        }
        let mut claims = User::new_claims(name.into(), user_key.into());
        claims.nats.issuer_account = Some(self.account.public_key());
        claims.nats.permissions.permissions = Permissions {
            publish: Permission {
                allow: grant.publish.clone(),
                deny: grant.deny_publish.clone(),
            },
            subscribe: Permission {
                allow: grant.subscribe.clone(),
                deny: Vec::new(),
            },
            resp: grant.respond.then(|| ResponsePermission {
                max_messages: 1,
                ttl: Duration::from_secs(120),
            }),
        };
        claims.exp = ttl.map(|t| (now_secs() + t.as_secs().max(1)) as i64);
        let jwt = claims.encode(&self.signer).map_err(jwt_error)?;
        let id = claims_of(&jwt)?["jti"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Ok(Issued { jwt, id })
    }

    /// A `.creds` file's text for a new key of its own under `grant`, without expiry (a
    /// control-plane role's).
    pub fn role_creds(&self, role: &str, grant: &Grant) -> Result<String, AuthorityError> {
        let key = KeyPair::new_user();
        let issued = self.issue(role, &key.public_key(), grant, None)?;
        Ok(creds_text(&issued.jwt, &key.seed().map_err(jwt_error)?))
    }

    /// A `.creds` file's text for a `SYS` account user: pushes account JWTs to the server.
    pub fn system_creds(&self) -> Result<String, AuthorityError> {
        let key = KeyPair::new_user();
        let mut claims = User::new_claims("nerve-system".into(), key.public_key());
        claims.nats.permissions.permissions = Permissions {
            publish: Permission {
                allow: vec!["$SYS.REQ.CLAIMS.UPDATE".into()],
                deny: Vec::new(),
            },
            subscribe: Permission {
                allow: vec!["_INBOX.>".into()],
                deny: Vec::new(),
            },
            resp: None,
        };
        let jwt = claims.encode(&self.system).map_err(jwt_error)?;
        Ok(creds_text(&jwt, &key.seed().map_err(jwt_error)?))
    }
}

fn claims_of(jwt: &str) -> Result<serde_json::Value, AuthorityError> {
    crate::node_key::jwt_claims(jwt).ok_or_else(|| jwt_error("an unreadable JWT"))
}

/// The `.creds` file format every NATS client reads: the JWT, then the seed.
pub fn creds_text(jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    )
}

/// Pushes `account_jwt` to the server through a `SYS` account connection; the server applies
/// it (closing the connections of users it now revokes) before it answers.
pub async fn push_account(
    system: &async_nats::Client,
    account_jwt: String,
) -> Result<(), AuthorityError> {
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        system.request("$SYS.REQ.CLAIMS.UPDATE", account_jwt.into()),
    )
    .await
    .map_err(|_| AuthorityError::Jwt("the server did not answer the account update".into()))?
    .map_err(jwt_error)?;
    let answer: serde_json::Value = serde_json::from_slice(&reply.payload).map_err(jwt_error)?;
    match answer.get("error") {
        None => Ok(()),
        Some(error) => Err(AuthorityError::Jwt(format!(
            "the server refused the account update: {error}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_jwt_names_its_key_and_only_its_own_subjects() {
        let dir = tempfile::tempdir().expect("tempdir");
        let authority = Authority::load_or_create(dir.path()).expect("authority");
        let again = Authority::load_or_create(dir.path()).expect("reloaded");
        assert_eq!(authority.account_public_key(), again.account_public_key());
        let node = KeyPair::new_user();
        let issued = authority
            .issue(
                "gpu-7",
                &node.public_key(),
                &Grant::node("gpu-7"),
                Some(Duration::from_secs(60)),
            )
            .expect("issued");
        let claims = claims_of(&issued.jwt).expect("decodes");
        assert_eq!(claims["sub"], node.public_key());
        assert_eq!(claims["iss"], authority.signer.public_key());
        assert_eq!(claims["jti"], issued.id);
        assert!(claims["exp"].as_u64().is_some());
        let allowed: Vec<String> =
            serde_json::from_value(claims["nats"]["pub"]["allow"].clone()).expect("list");
        assert!(allowed.contains(&subjects::heartbeat("gpu-7")));
        assert!(allowed.iter().all(|s| s.ends_with("gpu-7")), "{allowed:?}");
        assert!(
            authority
                .issue(
                    "x",
                    &authority.account_public_key(),
                    &Grant::node("x"),
                    None
                )
                .is_err(),
            "an account key is not a user key"
        );
        let conf = authority
            .server_config(&dir.path().join("jwt"))
            .expect("config");
        assert!(conf.contains(&authority.account_public_key()));
        assert!(!conf.contains(&authority.signer.seed().expect("seed")));
    }
}
