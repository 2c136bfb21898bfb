//! Secrets at rest: values such as a webhook's HMAC secret, a channel's URL or the SMTP
//! password are stored sealed — ChaCha20-Poly1305 (ring) under a key from a key file, as
//! `sealed:v1:<key id>:<base64 of nonce ‖ ciphertext ‖ tag>` — so no stream, table or config
//! dump holds them in the clear. The key file has one `<key id> <base64 of 32 bytes>` per line;
//! the first line seals, every line opens, so keys rotate by adding a line on top. Each value is
//! bound to what it is (`context`, e.g. `channel/<id>/secret`): a sealed value copied elsewhere
//! does not open.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

const PREFIX: &str = "sealed:v1:";
const KEY_BYTES: usize = 32;

/// Why a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secrets key file {path}: {message}")]
    KeyFile { path: PathBuf, message: String },
    #[error("no secrets key is configured (alerts.secrets_key_file)")]
    NoKey,
    #[error("sealed with key {0:?}, which the key file does not have")]
    UnknownKey(String),
    #[error("a sealed value does not open (damaged, or sealed for something else)")]
    Damaged,
}

/// The keys of one key file.
pub struct Sealer {
    current: String,
    keys: HashMap<String, LessSafeKey>,
    random: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("current", &self.current)
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// Whether `value` is sealed (and so needs [`Sealer::open`]).
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(PREFIX)
}

impl Sealer {
    /// Reads a key file.
    pub fn load(path: &Path) -> Result<Self, SecretError> {
        let err = |message: String| SecretError::KeyFile {
            path: path.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Self::parse(&text).map_err(err)
    }

    fn parse(text: &str) -> Result<Self, String> {
        let mut keys = HashMap::new();
        let mut current = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (id, key) = line
                .split_once(' ')
                .ok_or_else(|| format!("line {}: expected `<key id> <base64 key>`", n + 1))?;
            let bytes = B64
                .decode(key.trim().trim_end_matches('='))
                .map_err(|e| format!("line {}: {e}", n + 1))?;
            if bytes.len() != KEY_BYTES || id.contains(':') {
                return Err(format!(
                    "line {}: a key is 32 bytes and its id has no ':'",
                    n + 1
                ));
            }
            let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
                .map_err(|_| format!("line {}: not a key", n + 1))?;
            current.get_or_insert_with(|| id.to_owned());
            keys.insert(id.to_owned(), LessSafeKey::new(key));
        }
        let current = current.ok_or("no key in the file")?;
        Ok(Self {
            current,
            keys,
            random: SystemRandom::new(),
        })
    }

    /// Writes a new key file with one fresh key (mode 0600) unless `path` exists; whether it
    /// wrote one.
    pub fn create_if_missing(path: &Path) -> Result<bool, SecretError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if path.exists() {
            return Ok(false);
        }
        let err = |e: std::io::Error| SecretError::KeyFile {
            path: path.to_owned(),
            message: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut key = [0u8; KEY_BYTES + 4];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| SecretError::NoKey)?;
        let (key, id) = key.split_at(KEY_BYTES);
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let id = format!("k{id}");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(err)?;
        writeln!(
            file,
            "# Nerve secrets key: the first line seals, every line opens.\n{id} {}",
            B64.encode(key)
        )
        .map_err(err)?;
        Ok(true)
    }

    /// Seals `plain` for `context`; an empty value stays empty.
    pub fn seal(&self, plain: &str, context: &str) -> String {
        if plain.is_empty() {
            return String::new();
        }
        let key = &self.keys[&self.current];
        let mut nonce = [0u8; NONCE_LEN];
        // The OS generator failing is not something a server can go on from.
        self.random.fill(&mut nonce).expect("OS random numbers");
        let mut data = plain.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context.as_bytes()),
            &mut data,
        )
        .expect("sealing cannot fail for a valid key");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        format!("{PREFIX}{}:{}", self.current, B64.encode(out))
    }

    /// Opens a value sealed for `context`; a value that is not sealed (written before sealing
    /// existed) is answered as it is.
    pub fn open(&self, value: &str, context: &str) -> Result<String, SecretError> {
        let Some(rest) = value.strip_prefix(PREFIX) else {
            return Ok(value.to_owned());
        };
        let (id, body) = rest.split_once(':').ok_or(SecretError::Damaged)?;
        let key = self
            .keys
            .get(id)
            .ok_or_else(|| SecretError::UnknownKey(id.to_owned()))?;
        let bytes = B64.decode(body).map_err(|_| SecretError::Damaged)?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretError::Damaged);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::Damaged)?;
        let mut sealed = sealed.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut sealed)
            .map_err(|_| SecretError::Damaged)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SecretError::Damaged)
    }
}

/// Opens `value` with the key file at `path` when it is sealed; a plain value needs no key.
pub fn open_with(path: &Path, value: &str, context: &str) -> Result<String, SecretError> {
    if !is_sealed(value) {
        return Ok(value.to_owned());
    }
    Sealer::load(path)?.open(value, context)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        assert!(Sealer::create_if_missing(&path).expect("create"));
        assert!(
            !Sealer::create_if_missing(&path).expect("exists"),
            "never overwritten"
        );
        path
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_context() {
        let dir = tempfile::tempdir().expect("tmp");
        let a = Sealer::load(&file(dir.path(), "a.key")).expect("a");
        let b = Sealer::load(&file(dir.path(), "b.key")).expect("b");
        let sealed = a.seal("hunter2", "channel/1/secret");
        assert!(
            is_sealed(&sealed) && !sealed.contains("hunter2"),
            "{sealed}"
        );
        assert_ne!(
            sealed,
            a.seal("hunter2", "channel/1/secret"),
            "a fresh nonce each time"
        );
        assert_eq!(
            a.open(&sealed, "channel/1/secret").expect("open"),
            "hunter2"
        );
        assert!(matches!(
            a.open(&sealed, "channel/2/secret"),
            Err(SecretError::Damaged)
        ));
        assert!(matches!(
            b.open(&sealed, "channel/1/secret"),
            Err(SecretError::UnknownKey(_))
        ));
        let mut damaged = sealed.clone();
        damaged.pop();
        assert!(a.open(&damaged, "channel/1/secret").is_err());
        assert_eq!(a.open("plain", "x").expect("plain"), "plain");
        assert_eq!(a.seal("", "x"), "");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("a.key"))
                .expect("meta")
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn keys_rotate_by_adding_a_line_on_top() {
        let dir = tempfile::tempdir().expect("tmp");
        let old_path = file(dir.path(), "old.key");
        let new_path = file(dir.path(), "new.key");
        let old = Sealer::load(&old_path).expect("old");
        let sealed_old = old.seal("s", "c");
        let key_line = |p: &Path| {
            std::fs::read_to_string(p)
                .expect("read")
                .lines()
                .find(|l| !l.starts_with('#'))
                .expect("key")
                .to_owned()
        };
        let new_line = key_line(&new_path);
        let new_id = new_line.split(' ').next().expect("id").to_owned();
        let rotated =
            Sealer::parse(&format!("{new_line}\n{}\n", key_line(&old_path))).expect("rotated");
        assert_eq!(rotated.open(&sealed_old, "c").expect("old opens"), "s");
        let sealed_new = rotated.seal("t", "c");
        assert!(
            sealed_new.starts_with(&format!("sealed:v1:{new_id}:")),
            "{sealed_new}"
        );
        assert!(old.open(&sealed_new, "c").is_err());
        assert!(Sealer::parse("k1 short").is_err());
        assert!(Sealer::parse("# nothing\n").is_err());
    }
}
