#!/usr/bin/env bash
# Quick start: install what is missing, then run every check and test against real services
# (each test starts its own nats-server and uses a fresh database on a private ClickHouse).
set -euo pipefail
source "$(dirname "$0")/env.sh" --test
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== console wasm bundle"
bash infra/dev/build-web.sh
export NERVE_SITE_DIR="$CARGO_TARGET_DIR/site"
echo "== cargo test"
cargo test --workspace --no-fail-fast
