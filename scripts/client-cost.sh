#!/usr/bin/env bash
# The load generator's CPU per request beside the server's, side by side in one run.
#
#   scripts/client-cost.sh RATE [CLIENT:TICK ...]
#   scripts/client-cost.sh 64000 target/release/fiblab:0 target/release/fiblab:50
#
# Starts `fiblab serve --model epoll` pinned to CPU 1, then for each CLIENT:TICK (a fiblab
# binary and a --tick in µs, 0 for the exact schedule) runs a 4 s open loop of 64
# connections at RATE req/s pinned to CPU 0, and prints the client's CPU per request
# (from its own report), the server's (its /proc/PID/stat ticks over the run), their
# ratio and the latency. Needs 2 CPUs and python3; the server is stopped at the end.
set -euo pipefail
RATE=${1:?usage: scripts/client-cost.sh RATE [CLIENT:TICK ...]}
shift
[ $# -gt 0 ] || set -- target/release/fiblab:0 target/release/fiblab:50
SERVER=${SERVER:-target/release/fiblab}
PORT=$((26000 + RANDOM % 1000))
JSON=$(mktemp)
taskset -c 1 "$SERVER" serve --model epoll --port "$PORT" >/dev/null 2>&1 &
SPID=$!
trap 'kill $SPID 2>/dev/null; wait $SPID 2>/dev/null; rm -f "$JSON"' EXIT
sleep 0.5
ticks() { awk '{print $14 + $15}' "/proc/$SPID/stat"; }
# One warm-up run, not reported.
taskset -c 0 "$SERVER" load -a "127.0.0.1:$PORT" -c 64 --rate "$RATE" -d 1s >/dev/null 2>&1
for pair in "$@"; do
    bin=${pair%%:*}
    tick=${pair##*:}
    extra=()
    [ "$tick" != 0 ] && extra=(--tick "${tick}us")
    before=$(ticks)
    taskset -c 0 "$bin" load -a "127.0.0.1:$PORT" -c 64 --rate "$RATE" -d 4s "${extra[@]}" \
        --json "$JSON" >/dev/null 2>&1
    after=$(ticks)
    python3 - "$before" "$after" "$tick" "$RATE" "$bin" "$JSON" <<'PY'
import json, sys
before, after, tick, rate, binary, path = sys.argv[1:]
r = json.load(open(path))
ok = r["requests_ok"]
c = r["client"]
l = r["classes"][0]["latency_us"]
hz = 100  # USER_HZ: /proc/PID/stat counts CPU time in these
server = (int(after) - int(before)) / hz / ok * 1e6
print(f"{binary} rate {rate} tick {tick} µs: client {c['cpu_us_per_request']:.2f} µs/req "
      f"(sleeps {c['sleeps_per_request']:.2f}, busy {max(c['thread_busy']):.2f}) | "
      f"server {server:.2f} µs/req | client/server {c['cpu_us_per_request'] / server:.2f} | "
      f"p50 {l['p50']} p99 {l['p99']} µs | {ok / r['measured_s']:.0f} req/s")
PY
done
