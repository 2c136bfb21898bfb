//! Private key files: an nkey seed kept in a file of its own (mode 0600, created when missing),
//! and any other private file written the same way. The dispatcher's signing key, the NATS
//! authority's keys and a node's own key all live in such files.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use nkeys::KeyPair;

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

/// Writes `text` to a new file at `path` that only its owner may read (mode 0600), creating its
/// directory; replaces an existing file atomically (write beside, then rename).
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let beside = path.with_extension("new");
    let _ = std::fs::remove_file(&beside);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&beside)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&beside, path)
}

/// The key whose seed is in the file at `path`; when the file is missing, `new()` makes one and
/// its seed is written there (mode 0600). The seed never leaves the file and this process.
pub fn load_or_create_seed(path: &Path, new: fn() -> KeyPair) -> std::io::Result<KeyPair> {
    if !path.exists() {
        let seed = new().seed().map_err(|e| invalid(e.to_string()))?;
        write_private(path, &format!("{seed}\n"))?;
    }
    load_seed(path)
}

/// The key whose seed is in the file at `path`.
pub fn load_seed(path: &Path) -> std::io::Result<KeyPair> {
    let seed = std::fs::read_to_string(path)?;
    KeyPair::from_seed(seed.trim()).map_err(|e| invalid(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn a_seed_file_is_private_and_stable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys/node.nk");
        let a = load_or_create_seed(&path, KeyPair::new_user).expect("created");
        let b = load_or_create_seed(&path, KeyPair::new_user).expect("loaded");
        assert_eq!(a.public_key(), b.public_key());
        assert!(a.public_key().starts_with('U'));
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        write_private(&path, "not a seed").expect("replaced");
        assert!(load_seed(&path).is_err());
    }
}
