#!/usr/bin/env bash
# Agent footprint: builds the agent-only `nerve` with the `agent` profile (no control-plane
# roles; GPU support included; optimised for size), runs `nerve agent` against a private nats-server at the default heartbeat interval
# for DURATION seconds (default 300) and reports peak and mean RSS, CPU as a share of one core
# (utime+stime over wall time, from /proc), and the stripped binary size.
# Usage: loadtest/footprint.sh [DURATION_SECS]   (PROFILE=release to compare with the release profile)
set -euo pipefail
duration="${1:-300}"
set --  # env.sh passes its arguments to install.sh
source "$(dirname "$0")/../infra/dev/env.sh"
agent_target="$CARGO_TARGET_DIR/agent-only"
profile="${PROFILE:-agent}"
cargo build --profile "$profile" -p nerve-cli --bin nerve --no-default-features --features gpu \
  --target-dir "$agent_target" >&2
bin="$agent_target/$profile/nerve"
work="$(mktemp -d)"
nats_pid=""; agent_pid=""
trap 'kill $nats_pid $agent_pid 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/run"
"$NERVE_NATS_SERVER_BIN" -a 127.0.0.1 -p -1 -js -sd "$work/js" --ports_file_dir "$work/run" >"$work/nats.log" 2>&1 &
nats_pid=$!
for _ in $(seq 1 200); do ls "$work"/run/*.ports >/dev/null 2>&1 && break; sleep 0.05; done
port="$(grep -o '127.0.0.1:[0-9]*' "$work"/run/*.ports | head -1 | cut -d: -f2)"
NERVE_NATS__URL="nats://127.0.0.1:$port" NERVE_AGENT__STATE_DIR="$work/agent" RUST_LOG=warn \
  "$bin" agent >"$work/agent.log" 2>&1 &
agent_pid=$!
tick="$(getconf CLK_TCK)"
# utime + stime, plus the children it waited for (smartctl, dmidecode).
cpu_ticks() { awk '{ print $14 + $15 + $16 + $17 }' "/proc/$agent_pid/stat"; }
sleep 2  # start-up is not the steady state
t0="$(date +%s.%N)"; c0="$(cpu_ticks)"
peak=0; sum=0; n=0
end=$(( $(date +%s) + duration ))
while [ "$(date +%s)" -lt "$end" ]; do
  rss="$(awk '/^VmRSS:/ { print $2 }' "/proc/$agent_pid/status")"
  [ "$rss" -gt "$peak" ] && peak="$rss"
  sum=$(( sum + rss )); n=$(( n + 1 ))
  sleep 1
done
t1="$(date +%s.%N)"; c1="$(cpu_ticks)"
size="$(stat -c %s "$bin")"
awk -v c="$(( c1 - c0 ))" -v hz="$tick" -v t0="$t0" -v t1="$t1" -v peak="$peak" -v sum="$sum" -v n="$n" -v size="$size" -v d="$duration" -v profile="$profile" 'BEGIN {
  printf "agent footprint over %d s at the default heartbeat interval\n", d
  printf "RSS peak %.1f MiB, mean %.1f MiB\n", peak / 1024, sum / n / 1024
  printf "CPU %.3f %% of one core\n", 100 * c / hz / (t1 - t0)
  printf "binary (stripped, %s profile, agent-only build) %.1f MiB (%d B)\n", profile, size / 1048576, size
}'
