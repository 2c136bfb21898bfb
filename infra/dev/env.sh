#!/usr/bin/env bash
# Sourced by run.sh and test.sh: installs what is missing (idempotent, seconds when done) and
# exports tool locations and the shared cargo target dir.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "env.sh: cargo not found; install Rust (https://rustup.rs) and retry" >&2
  exit 1
fi
# (Assigned first so that a failing install stops the caller; `eval "$(...)"` would not.)
tool_env="$(bash infra/dev/install.sh "$@")"
eval "$tool_env"
export NERVE_NATS_SERVER_BIN NERVE_CLICKHOUSE_SERVER_BIN NERVE_PYTHON
export NERVE_WASM_RUSTC NERVE_WASM_CARGO NERVE_WASM_BINDGEN NERVE_WASM_OPT
# One target dir shared by every checkout and CI run on this machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/nerve/target}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
bash infra/dev/prune-target.sh
