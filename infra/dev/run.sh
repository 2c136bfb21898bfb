#!/usr/bin/env bash
# Quick start: install what is missing, build, and run the whole system on this machine
# (`nerve dev`: NATS + ClickHouse as children under ./.nerve, projectors, API, console, agent).
# Extra arguments go to `nerve` (e.g. --config my.toml).
set -euo pipefail
source "$(dirname "$0")/env.sh"
bash infra/dev/build-web.sh --release
# An optimised build: the debug one answered node detail at p99 180 ms under 50 k6 users,
# the release one within Nerve's 100 ms goal (loadtest/README.md, "k6").
cargo build --release -p nerve-cli --bin nerve
export NERVE_API__SITE_DIR="${NERVE_API__SITE_DIR:-$CARGO_TARGET_DIR/site}"
exec "$CARGO_TARGET_DIR/release/nerve" "$@" dev
