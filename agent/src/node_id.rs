//! The node's stable identity: a UUIDv7 created on first start and kept in `<state_dir>/node_id`.

use std::path::{Path, PathBuf};

/// Why the node id could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum NodeIdError {
    #[error("cannot use state dir {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds {found:?}, which is not a valid node id ([A-Za-z0-9_-], 1..=64)")]
    Invalid { path: PathBuf, found: String },
}

/// Reads the node id from `state_dir`; `None` when the agent has not run there yet.
pub fn load(state_dir: &Path) -> Result<Option<String>, NodeIdError> {
    let path = state_dir.join("node_id");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim().to_owned();
            if nerve_schemas::subjects::is_valid_node_id(&id) {
                Ok(Some(id))
            } else {
                Err(NodeIdError::Invalid { path, found: id })
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(NodeIdError::Io { path, source }),
    }
}

/// Reads the node id from `state_dir`, creating the dir and the id on first start.
pub fn load_or_create(state_dir: &Path) -> Result<String, NodeIdError> {
    let path = state_dir.join("node_id");
    let io = |source| NodeIdError::Io {
        path: path.clone(),
        source,
    };
    match load(state_dir)? {
        Some(id) => Ok(id),
        None => {
            std::fs::create_dir_all(state_dir).map_err(io)?;
            let id = uuid::Uuid::now_v7().to_string();
            // Write then rename, so a crash never leaves a half-written id.
            let tmp = state_dir.join("node_id.tmp");
            std::fs::write(&tmp, format!("{id}\n")).map_err(io)?;
            std::fs::rename(&tmp, &path).map_err(io)?;
            Ok(id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_stable() {
        let dir = tempfile::tempdir().expect("tmp");
        let state = dir.path().join("state");
        let a = load_or_create(&state).expect("create");
        let b = load_or_create(&state).expect("load");
        assert_eq!(a, b);
        assert!(nerve_schemas::subjects::is_valid_node_id(&a));
    }

    #[test]
    fn a_corrupt_id_is_an_error_not_a_new_identity() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("node_id"), "not a.valid id").expect("write");
        assert!(matches!(
            load_or_create(dir.path()),
            Err(NodeIdError::Invalid { .. })
        ));
    }
}
