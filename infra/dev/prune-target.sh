#!/usr/bin/env bash
# Keeps the shared cargo target dir from filling the disk. Cargo never deletes an artefact whose
# hash went out of use (a dependency or profile change makes new hashes for every test binary), so
# on a long-lived machine the target dir only grows. When the disk holding it has less than
# NERVE_MIN_FREE_GB free (default 20), this deletes build outputs and incremental caches untouched
# for two hours (cargo rebuilds any of them that is still needed); if that is not enough, the whole
# target dir. Run by env.sh; safe to run by hand.
set -euo pipefail
target="${CARGO_TARGET_DIR:?CARGO_TARGET_DIR is not set}"
min_free_gb="${NERVE_MIN_FREE_GB:-20}"
[ -d "$target" ] || exit 0

free_gb() { df -Pk "$(dirname "$target")" | awk 'NR == 2 { printf "%d", $4 / 1048576 }'; }

before="$(free_gb)"
[ "$before" -ge "$min_free_gb" ] && exit 0
echo "prune-target: ${before} GiB free (< ${min_free_gb}); deleting build outputs untouched for 2 h" >&2
find "$target" -type d \( -name deps -o -name incremental \) -prune -print0 |
  while IFS= read -r -d '' dir; do
    find "$dir" -mindepth 1 -maxdepth 1 -mmin +120 -exec rm -rf {} +
  done
after="$(free_gb)"
if [ "$after" -lt "$min_free_gb" ]; then
  echo "prune-target: still ${after} GiB free; deleting $target (a full rebuild follows)" >&2
  rm -rf "$target"
  after="$(free_gb)"
fi
echo "prune-target: ${after} GiB free" >&2
