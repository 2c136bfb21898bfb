#!/usr/bin/env bash
# The agent's NVML path on a real GPU machine, end to end (what `agent/GPU.md` records):
#   1. the agent's tests, run there against the driver (the NVML test reads every GPU whole);
#   2. `nerve probe` idle and under a GPU load, beside `nvidia-smi -q` for a cross-check;
#   3. `nerve agent` publishing to a real JetStream while the GPU works, until the telemetry
#      stream holds enough heartbeats; the stream store comes back for replay elsewhere.
# Usage: gpu-check.sh BIN_DIR OUT_DIR
#   BIN_DIR holds `nerve` (lean build), `nats-server` and the agent's test binaries (`test-*`).
# Without nvidia-smi it runs all the same (a dry run on a machine without GPUs); the GPU load needs python3 with torch (skipped, and said so, without).
set -euo pipefail

bin=$(cd "$1" && pwd)
out=$(mkdir -p "$2" && cd "$2" && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# Polls `cmd` every 0.2 s until it succeeds or `secs` pass.
until_ok() {
    local secs=$1 what=$2
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            echo "gave up after ${secs}s waiting for: $what" >&2
            return 1
        fi
        sleep 0.2
    done
}

smi() {
    if command -v nvidia-smi >/dev/null; then nvidia-smi "$@"; else echo "(no nvidia-smi here)"; fi
}

echo "== machine"
uname -a
smi -L
smi -q >"$out/nvidia-smi-idle.txt"

echo "== agent tests against the driver"
for t in "$bin"/test-*; do
    echo "-- $(basename "$t")" | tee -a "$out/agent-tests.txt"
    if ! "$t" --test-threads=2 >>"$out/agent-tests.txt" 2>&1; then
        tail -40 "$out/agent-tests.txt"
        exit 1
    fi
    grep 'test result' "$out/agent-tests.txt" | tail -1
done

echo "== probe, idle"
"$bin/nerve" probe >"$out/probe-idle.json"

load_secs=90
if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
    echo "== GPU load: bf16 matrix products for ${load_secs}s"
    python3 - "$work/load-ready" "$load_secs" <<'EOF' &
import sys, time, torch
ready, secs = sys.argv[1], float(sys.argv[2])
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
(a @ a).sum().item()
open(ready, "w").close()
end = time.time() + secs
while time.time() < end:
    for _ in range(20):
        a @ a
    torch.cuda.synchronize()
EOF
    pids+=($!)
    until_ok 120 "the GPU load to start" test -e "$work/load-ready"
else
    echo "== no python3 with CUDA torch: probing without a GPU load"
fi

echo "== probe, busy"
"$bin/nerve" probe --interval-secs 2 >"$out/probe-busy.json"
smi -q >"$out/nvidia-smi-busy.txt"
smi --format=csv --query-gpu=name,uuid,pci.bus_id,serial,vbios_version,driver_version,compute_cap,memory.total,memory.used,utilization.gpu,utilization.memory,temperature.gpu,power.draw,power.limit,clocks.sm,clocks.mem,ecc.mode.current,mig.mode.current,clocks_event_reasons.active || true

echo "== agent → JetStream"
port=14222
mon=18222
"$bin/nats-server" --jetstream --store_dir "$work/js" --port $port --http_port $mon \
    --addr 127.0.0.1 >"$work/nats.log" 2>&1 &
nats_pid=$!
pids+=($nats_pid)
jsz() { python3 -c "import json,sys,urllib.request; print(json.dumps(json.load(urllib.request.urlopen('http://127.0.0.1:$mon/jsz?streams=1'))))"; }
until_ok 30 "nats-server" jsz >/dev/null
export NERVE_NATS__URL="nats://127.0.0.1:$port"
export NERVE_AGENT__STATE_DIR="$work/agent"
export NERVE_AGENT__HEARTBEAT_INTERVAL_SECS=1
"$bin/nerve" ingest
RUST_LOG=info "$bin/nerve" agent >"$out/agent.log" 2>&1 &
agent_pid=$!
started=$SECONDS
pids+=($agent_pid)
heartbeats() {
    jsz | python3 -c "
import json, sys
d = json.load(sys.stdin)
n = {s['name']: s['state']['messages'] for a in d.get('account_details', []) for s in a.get('stream_detail', [])}
sys.exit(0 if n.get('NERVE_TELEMETRY', 0) >= 30 and n.get('NERVE_INVENTORY', 0) >= 1 else 1)"
}
until_ok 120 "30 heartbeats and an inventory in JetStream" heartbeats
# The agent's own cost on this node: CPU time (utime + stime, in USER_HZ = 100 ticks) and peak
# memory, over the run.
read -r -a stat <<<"$(sed 's/.*) //' /proc/$agent_pid/stat)"
cpu_ticks=$((stat[11] + stat[12]))
echo "agent: $((cpu_ticks * 10)) ms CPU over $((SECONDS - started)) s (1 s heartbeats, inventory at start);" \
    "peak RSS $(awk '/VmHWM/ {print $2, $3}' /proc/$agent_pid/status)"
kill -TERM $agent_pid
wait $agent_pid || { echo "the agent exited with $? on SIGTERM"; exit 1; }
echo "agent stopped cleanly"
jsz >"$out/jsz.json"
kill -TERM $nats_pid
wait $nats_pid || true
tar -C "$work" -czf "$out/jetstream.tar.gz" js
echo "node id: $(cat "$work/agent/node_id")"
echo "== done: $(ls "$out" | tr '\n' ' ')"
