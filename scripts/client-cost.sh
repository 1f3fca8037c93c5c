#!/usr/bin/env bash
# The load generator's CPU per request beside the server's, side by side in one run.
#
#   scripts/client-cost.sh RATE [CLIENT:TICK ...]
#   scripts/client-cost.sh 64000 target/release/fiblab:0 target/release/fiblab:50
#
# Starts `fiblab serve --model ${MODEL:-epoll}` pinned to CPU 1, then for each CLIENT:TICK
# (a fiblab binary and a --tick in µs, 0 for the exact schedule) runs a 4 s open loop of
# 64 connections at RATE req/s pinned to CPU 0, and prints what its report says: the
# client's CPU and system calls per request, the server's CPU per request (fiblab load
# reads the process listening on the port, at the window's edges), their ratio and the
# latency. Needs 2 CPUs and python3; the server is stopped at the end.
set -euo pipefail
RATE=${1:?usage: scripts/client-cost.sh RATE [CLIENT:TICK ...]}
shift
[ $# -gt 0 ] || set -- target/release/fiblab:0 target/release/fiblab:50
SERVER=${SERVER:-target/release/fiblab}
PORT=$((26000 + RANDOM % 1000))
JSON=$(mktemp)
taskset -c 1 "$SERVER" serve --model "${MODEL:-epoll}" --port "$PORT" >/dev/null 2>&1 &
SPID=$!
trap 'kill $SPID 2>/dev/null; wait $SPID 2>/dev/null; rm -f "$JSON"' EXIT
sleep 0.5
# One warm-up run, not reported.
taskset -c 0 "$SERVER" load -a "127.0.0.1:$PORT" -c 64 --rate "$RATE" -d 1s >/dev/null 2>&1
for pair in "$@"; do
    bin=${pair%%:*}
    tick=${pair##*:}
    extra=()
    [ "$tick" != 0 ] && extra=(--tick "${tick}us")
    taskset -c 0 "$bin" load -a "127.0.0.1:$PORT" -c 64 --rate "$RATE" -d 4s "${extra[@]}" \
        --server-pid "$SPID" --json "$JSON" >/dev/null 2>&1
    python3 - "$tick" "$RATE" "$bin" "$JSON" <<'PY'
import json, sys
tick, rate, binary, path = sys.argv[1:]
r = json.load(open(path))
c, s = r["client"], r.get("server") or {}
calls = c.get("calls_per_request") or {}
l = r["classes"][0]["latency_us"]
print(f"{binary} rate {rate} tick {tick} µs: client {c['cpu_us_per_request']:.2f} µs/req "
      f"(sleeps {c['sleeps_per_request']:.2f}, {calls.get('total', float('nan')):.2f} system calls, "
      f"busy {max(c['thread_busy']):.2f}) | server {s.get('cpu_us_per_request', float('nan')):.2f} µs/req "
      f"(sleeps {s.get('sleeps_per_request', float('nan')):.2f}) | client/server "
      f"{s.get('client_over_server', float('nan')):.2f} | p50 {l['p50']} p99 {l['p99']} µs | "
      f"{r['requests_ok'] / r['measured_s']:.0f} req/s")
PY
done
