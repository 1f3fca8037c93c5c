#!/usr/bin/env bash
# What `serve --metrics` costs the fib service: for each model and connection count,
# PAIRS pairs of runs side by side, without and with --metrics in alternating order
# (server on CPU 1, load on CPU 0), and the median of the pairs' throughput ratios
# (with / without) with its order-statistic interval (ranks 3 and 10 of 12: 96%).
#
#   scripts/metrics-cost.sh [FIBLAB] [PAIRS]
#
# FIBLAB defaults to target/release/fiblab; PAIRS to 12. About 4 s a run.
set -euo pipefail
fiblab=${1:-target/release/fiblab}
pairs=${2:-12}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# One run: prints the throughput (req/s) of `fiblab load` against a fresh server.
run_once() {
    local model=$1 conns=$2 metrics=$3 port mport pid rps
    port=$(free_port)
    local extra=()
    if [ "$metrics" = with ]; then
        mport=$(free_port)
        extra=(--metrics "127.0.0.1:$mport")
    fi
    taskset -c 1 "$fiblab" serve --model "$model" --port "$port" "${extra[@]}" >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.05
    done
    taskset -c 0 "$fiblab" load --addr "127.0.0.1:$port" -c "$conns" -n 1 \
        --duration 1500ms --warmup 300ms --json "$out/r.json" -q >/dev/null 2>&1 || true
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["throughput_rps"])' "$out/r.json"
}

for model in epoll threads; do
    for conns in 1 50; do
        ratios=()
        for i in $(seq "$pairs"); do
            if [ $((i % 2)) -eq 0 ]; then
                without=$(run_once "$model" "$conns" without)
                with=$(run_once "$model" "$conns" with)
            else
                with=$(run_once "$model" "$conns" with)
                without=$(run_once "$model" "$conns" without)
            fi
            ratios+=("$(python3 -c "print($with / $without)")")
        done
        python3 - "$model" "$conns" "${ratios[@]}" <<'EOF'
import statistics, sys
model, conns, ratios = sys.argv[1], sys.argv[2], sorted(map(float, sys.argv[3:]))
n = len(ratios)
# Ranks 3 and n-2 (1-based) of 12: the median's 96% order-statistic interval.
low, high = ratios[2], ratios[n - 3]
print(f"{model:8} {conns:>2} connections: with/without median {statistics.median(ratios):.3f} [{low:.3f}-{high:.3f}] over {n} pairs")
EOF
    done
done
