#!/usr/bin/env bash
# Quick start: install what is missing, then run every check and test against real services
# (each test starts its own nats-server and uses a fresh database on a private ClickHouse).
set -euo pipefail
source "$(dirname "$0")/env.sh" --test
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo clippy (agent-only build)"
cargo clippy -p nerve-cli --no-default-features --features gpu -- -D warnings
echo "== console wasm bundle"
bash infra/dev/build-web.sh
export NERVE_SITE_DIR="$CARGO_TARGET_DIR/site"
echo "== cargo test"
log="$(mktemp)"
set +e
cargo test --workspace --all-targets --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i == "passed;") p += $(i-1); if ($i == "failed;") f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
exit "$status"
