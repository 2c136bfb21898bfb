//! Each task's own directory, `state_dir/tasks/<task_id>/`: a script is written there, and a
//! task that names no `working_dir` runs in it. When the task ends a `.ended` marker is written
//! (its time is the directory's); the sweep removes directories of tasks not running whose
//! last change is older than `agent.task_dir_keep_secs` — also those a crash left behind.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::{Ledger, Rules};

/// The marker written when a task ends.
const ENDED: &str = ".ended";

/// Where task directories live.
pub fn root(state_dir: &Path) -> PathBuf {
    state_dir.join("tasks")
}

/// Creates the directory of `task_id` (owned by `owner` when the task runs as another user).
pub fn create(root: &Path, task_id: &str, owner: Option<(u32, u32)>) -> Result<PathBuf, String> {
    let dir = root.join(task_id);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    Ok(dir)
}

/// Marks the task's directory as ended, or removes it at once when nothing is kept.
pub fn ended(root: &Path, task_id: &str, keep: Duration) {
    let dir = root.join(task_id);
    let done = if keep.is_zero() {
        std::fs::remove_dir_all(&dir)
    } else {
        std::fs::write(dir.join(ENDED), b"")
    };
    if let Err(e) = done
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), error = %e, "task directory not cleaned up");
    }
}

/// Removes the directories of tasks for which `running` is false, unchanged for `keep`; how
/// many it removed.
pub fn sweep(root: &Path, keep: Duration, running: impl Fn(&str) -> bool) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_dir() || running(&name) {
            continue;
        }
        let changed = std::fs::metadata(entry.path().join(ENDED))
            .and_then(|m| m.modified())
            .or_else(|_| meta.modified())
            .unwrap_or(now);
        if now.duration_since(changed).unwrap_or_default() >= keep {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(dir = %entry.path().display(), error = %e, "task directory not removed")
                }
            }
        }
    }
    removed
}

/// How often to sweep: a quarter of the keep time, between 1 s and 5 min.
pub fn sweep_every(keep: Duration) -> Duration {
    (keep / 4).clamp(Duration::from_secs(1), Duration::from_secs(300))
}

/// Sweeps the task directories ([`dirs::sweep`]) at start and then periodically.
pub(super) async fn sweep_loop(
    rules: Arc<Rules>,
    ledger: Arc<Mutex<Ledger>>,
    cancel: CancellationToken,
) {
    loop {
        let running: std::collections::HashSet<String> = ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .running
            .keys()
            .cloned()
            .collect();
        let (root, keep) = (rules.tasks_root.clone(), rules.dir_keep);
        let swept =
            tokio::task::spawn_blocking(move || sweep(&root, keep, |id| running.contains(id)))
                .await
                .unwrap_or_default();
        if swept > 0 {
            tracing::info!(swept, "task directories removed");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(sweep_every(rules.dir_keep)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ended_tasks_directories_go_and_running_ones_stay() {
        let state = tempfile::tempdir().expect("tmp");
        let root = root(state.path());
        for id in ["done", "running", "crashed"] {
            let dir = create(&root, id, None).expect("dir");
            std::fs::write(dir.join("out.txt"), id).expect("write");
        }
        ended(&root, "done", Duration::from_secs(3600));
        assert!(root.join("done/.ended").exists(), "kept for an hour");
        // Nothing is old enough yet.
        assert_eq!(
            sweep(&root, Duration::from_secs(3600), |id| id == "running"),
            0
        );
        // With nothing kept, every directory of a task not running goes (the crash's too).
        assert_eq!(sweep(&root, Duration::ZERO, |id| id == "running"), 2);
        assert!(root.join("running").exists());
        assert!(!root.join("done").exists() && !root.join("crashed").exists());
        ended(&root, "running", Duration::ZERO);
        assert!(!root.join("running").exists(), "removed at once");
        assert_eq!(
            sweep_every(Duration::from_secs(3600)),
            Duration::from_secs(300)
        );
        assert_eq!(sweep_every(Duration::ZERO), Duration::from_secs(1));
    }
}
