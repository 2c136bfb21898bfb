//! Signed task offers: the dispatcher signs every offer it sends an agent with the control
//! plane's ed25519 key (an nkey), and the agent opens only offers signed by the key it pinned,
//! fresh, and never seen before — defence in depth should a broker permission ever let someone
//! else publish on a node's dispatch subject.
//!
//! The signature covers the subject, the signing time, a fresh offer id and the payload, and
//! travels in headers: `Nerve-Signer` (public key), `Nerve-Signed-At` (ms), `Nerve-Offer-Id`,
//! `Nerve-Signature` (base64 of the ed25519 signature).

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;

use async_nats::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use nkeys::KeyPair;

pub const SIGNER: &str = "Nerve-Signer";
pub const SIGNED_AT: &str = "Nerve-Signed-At";
pub const OFFER_ID: &str = "Nerve-Offer-Id";
pub const SIGNATURE: &str = "Nerve-Signature";

/// How far a signing time may be from the agent's clock.
pub const MAX_AGE_MS: i64 = 5 * 60 * 1000;
/// Offer ids an agent remembers (more than a window's worth of offers to one node).
const REMEMBERED: usize = 50_000;

fn signed_bytes(subject: &str, signed_at: i64, offer_id: &str, payload: &[u8]) -> Vec<u8> {
    let mut bytes = format!("{subject}\n{signed_at}\n{offer_id}\n").into_bytes();
    bytes.extend_from_slice(payload);
    bytes
}

/// The control plane's signing key.
pub struct OfferSigner(KeyPair);

impl std::fmt::Debug for OfferSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OfferSigner({})", self.0.public_key())
    }
}

impl OfferSigner {
    /// A new random key (tests; production keys live in a seed file).
    pub fn generate() -> Self {
        Self(KeyPair::new_server())
    }

    /// Reads the seed file at `path`, creating it (mode 0600, with a new key) when missing.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        crate::keys::load_or_create_seed(path, KeyPair::new_server).map(Self)
    }

    /// The public key agents pin.
    pub fn public_key(&self) -> String {
        self.0.public_key()
    }

    /// The headers that sign `payload` for `subject`, now, under a fresh offer id.
    pub fn sign(&self, subject: &str, payload: &[u8]) -> HeaderMap {
        let offer_id = uuid::Uuid::now_v7().to_string();
        self.sign_at(subject, payload, nerve_platform::now_ms(), &offer_id)
    }

    fn sign_at(&self, subject: &str, payload: &[u8], at: i64, offer_id: &str) -> HeaderMap {
        let signature = self
            .0
            .sign(&signed_bytes(subject, at, offer_id, payload))
            .expect("a seed key signs");
        let mut headers = HeaderMap::new();
        headers.insert(SIGNER, self.0.public_key().as_str());
        headers.insert(SIGNED_AT, at.to_string().as_str());
        headers.insert(OFFER_ID, offer_id);
        headers.insert(SIGNATURE, B64.encode(signature).as_str());
        headers
    }
}

/// Why an offer was refused (the `reason` of `TaskOfferRefused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NoPinnedKey,
    Unsigned,
    UntrustedKey,
    BadSignature,
    Stale,
    Replayed,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NoPinnedKey => "no_pinned_key",
            Refusal::Unsigned => "unsigned",
            Refusal::UntrustedKey => "untrusted_key",
            Refusal::BadSignature => "bad_signature",
            Refusal::Stale => "stale",
            Refusal::Replayed => "replayed",
        }
    }
}

/// An agent's check of the offers it gets: the pinned key, and the offer ids seen.
#[derive(Debug)]
pub struct OfferVerifier {
    pinned: Option<KeyPair>,
    seen: Mutex<(HashMap<String, i64>, VecDeque<String>)>,
}

/// What a signed offer's headers say (for the refusal report).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub signer: String,
    pub offer_id: String,
}

impl OfferVerifier {
    /// `pinned`: the control plane's public key; empty means none pinned (every offer refused).
    pub fn new(pinned: &str) -> Result<Self, String> {
        let pinned = if pinned.trim().is_empty() {
            None
        } else {
            Some(
                KeyPair::from_public_key(pinned.trim())
                    .map_err(|e| format!("control-plane public key {pinned:?}: {e}"))?,
            )
        };
        Ok(Self {
            pinned,
            seen: Mutex::default(),
        })
    }

    /// Checks an offer received on `subject` at `now_ms`.
    pub fn verify(
        &self,
        subject: &str,
        headers: Option<&HeaderMap>,
        payload: &[u8],
        now_ms: i64,
    ) -> Result<(), (Refusal, Claimed)> {
        let get = |name: &str| {
            headers
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        };
        let claimed = Claimed {
            signer: get(SIGNER),
            offer_id: get(OFFER_ID),
        };
        let refuse = |r: Refusal| Err((r, claimed.clone()));
        let Some(pinned) = &self.pinned else {
            return refuse(Refusal::NoPinnedKey);
        };
        let (signature, signed_at) = (get(SIGNATURE), get(SIGNED_AT));
        if signature.is_empty() || signed_at.is_empty() || claimed.offer_id.is_empty() {
            return refuse(Refusal::Unsigned);
        }
        if claimed.signer != pinned.public_key() {
            return refuse(Refusal::UntrustedKey);
        }
        let Ok(at) = signed_at.parse::<i64>() else {
            return refuse(Refusal::BadSignature);
        };
        let Ok(signature) = B64.decode(signature.trim_end_matches('=')) else {
            return refuse(Refusal::BadSignature);
        };
        let bytes = signed_bytes(subject, at, &claimed.offer_id, payload);
        if pinned.verify(&bytes, &signature).is_err() {
            return refuse(Refusal::BadSignature);
        }
        if (now_ms - at).abs() > MAX_AGE_MS {
            return refuse(Refusal::Stale);
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (ids, order) = &mut *seen;
        if ids.contains_key(&claimed.offer_id) {
            return refuse(Refusal::Replayed);
        }
        // Forget what is too old to be accepted anyway, and beyond the bound.
        while let Some(oldest) = order.front() {
            let expired = ids.get(oldest).is_none_or(|&t| now_ms - t > 2 * MAX_AGE_MS);
            if !expired && order.len() < REMEMBERED {
                break;
            }
            let oldest = order.pop_front().expect("front");
            ids.remove(&oldest);
        }
        ids.insert(claimed.offer_id.clone(), at);
        order.push_back(claimed.offer_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fresh_offers_signed_by_the_pinned_key_are_opened_once() {
        let signer = OfferSigner::generate();
        let other = OfferSigner::generate();
        let agent = OfferVerifier::new(&signer.public_key()).expect("pinned");
        let subject = "nerve.v1.dispatch.n1";
        let now = 1_800_000_000_000;
        let h = signer.sign_at(subject, b"offer", now, "o1");
        assert_eq!(agent.verify(subject, Some(&h), b"offer", now), Ok(()));
        let refused = |r: Result<(), (Refusal, Claimed)>| r.unwrap_err().0;
        assert_eq!(
            refused(agent.verify(subject, Some(&h), b"offer", now)),
            Refusal::Replayed
        );
        assert_eq!(
            refused(agent.verify(subject, None, b"offer", now)),
            Refusal::Unsigned
        );
        let h2 = signer.sign_at(subject, b"offer", now, "o2");
        assert_eq!(
            refused(agent.verify(subject, Some(&h2), b"tampered", now)),
            Refusal::BadSignature
        );
        assert_eq!(
            refused(agent.verify("nerve.v1.dispatch.n2", Some(&h2), b"offer", now)),
            Refusal::BadSignature,
            "an offer for another node does not verify here"
        );
        let forged = other.sign_at(subject, b"offer", now, "o3");
        let (reason, claimed) = agent
            .verify(subject, Some(&forged), b"offer", now)
            .unwrap_err();
        assert_eq!(
            (reason, claimed.signer),
            (Refusal::UntrustedKey, other.public_key())
        );
        let old = signer.sign_at(subject, b"offer", now - MAX_AGE_MS - 1, "o4");
        assert_eq!(
            refused(agent.verify(subject, Some(&old), b"offer", now)),
            Refusal::Stale
        );
        let none = OfferVerifier::new("").expect("none");
        assert_eq!(
            refused(none.verify(subject, Some(&h2), b"offer", now)),
            Refusal::NoPinnedKey
        );
        assert!(OfferVerifier::new("not-a-key").is_err());
    }

    #[test]
    fn a_seed_file_is_created_once_and_read_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("dispatch.seed");
        let a = OfferSigner::load_or_create(&path).expect("created");
        let b = OfferSigner::load_or_create(&path).expect("read");
        assert_eq!(a.public_key(), b.public_key());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).expect("meta").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
