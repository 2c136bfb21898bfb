//! The token format: `nerve_<id>_<secret>`, a public id (64 random bits, 16 hex digits) and a
//! secret (256 random bits, 64 hex digits) from the operating system's generator. Only the
//! SHA-256 of the secret is ever recorded; a presented secret is compared in constant time.
//! A plain hash is the right tool here: the secret is random, not a password, so there is
//! nothing for a slow hash to protect.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const PREFIX: &str = "nerve_";
const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;

/// A newly made token: its id, the whole string to hand out once, and the hash to record.
#[derive(Debug)]
pub struct Minted {
    pub id: String,
    pub token: String,
    pub secret_sha256: [u8; 32],
}

/// A presented token, split.
#[derive(Debug, PartialEq, Eq)]
pub struct Presented<'a> {
    pub id: &'a str,
    pub secret: &'a str,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The OS generator failing is not something a server can go on from.
    getrandom::fill(&mut buf).expect("the OS random number generator");
    hex(&buf)
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new token id (also used alone when rotating).
pub fn new_id() -> String {
    random_hex(ID_BYTES)
}

/// A new token; `id` keeps an existing id (rotation), `None` makes a new one.
pub fn mint(id: Option<&str>) -> Minted {
    let id = id.map_or_else(new_id, str::to_owned);
    let secret = random_hex(SECRET_BYTES);
    Minted {
        secret_sha256: digest(&secret),
        token: format!("{PREFIX}{id}_{secret}"),
        id,
    }
}

/// SHA-256 of a secret as presented.
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Splits a presented token; `None` when it is not of the token's shape.
pub fn parse(text: &str) -> Option<Presented<'_>> {
    let rest = text.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex_of = |s: &str, n: usize| s.len() == n * 2 && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex_of(id, ID_BYTES) && hex_of(secret, SECRET_BYTES)).then_some(Presented { id, secret })
}

/// Whether `secret` hashes to `expected`, in constant time.
pub fn matches(secret: &str, expected: &[u8; 32]) -> bool {
    digest(secret).ct_eq(expected).into()
}

/// Parses a hex SHA-256 as recorded in `TokenIssued`.
pub fn parse_digest(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_parses_and_matches_only_its_own_hash() {
        let a = mint(None);
        let b = mint(None);
        assert_ne!(a.id, b.id);
        assert_ne!(a.token, b.token);
        let p = parse(&a.token).expect("parses");
        assert_eq!(p.id, a.id);
        assert!(matches(p.secret, &a.secret_sha256));
        assert!(!matches(p.secret, &b.secret_sha256));
        assert_eq!(parse_digest(&hex(&a.secret_sha256)), Some(a.secret_sha256));
        assert_eq!(a.token.len(), "nerve_".len() + 16 + 1 + 64);
    }

    #[test]
    fn rotation_keeps_the_id_and_changes_the_secret() {
        let a = mint(None);
        let r = mint(Some(&a.id));
        assert_eq!(r.id, a.id);
        assert_ne!(r.secret_sha256, a.secret_sha256);
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        let good = mint(None).token;
        for bad in [
            "",
            "nerve_",
            "bearer",
            &good[1..],
            &good[..good.len() - 1],
            &good.replace("nerve_", "nerve-"),
            &format!("{good}0"),
            &good.to_uppercase(),
        ] {
            // Upper-case hex is still hex; only the prefix makes it fail.
            assert!(parse(bad).is_none(), "{bad:?} parsed");
        }
        assert!(parse_digest("zz").is_none());
    }
}
