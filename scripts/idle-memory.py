#!/usr/bin/env python3
"""Resident memory per idle connection, the whole-growth way (issue 45's measure).

    scripts/idle-memory.py [FIBLAB] [CLIENTS] [MODELS]

For each model: a fresh `fiblab serve --model M`, one request first (a runtime or a
slab started lazily is in the baseline), then CLIENTS clients that each send `5`, are
answered, and stay connected; the growth of the server's VmRSS (its process and its
children) divided by the clients. Twice per model. Defaults: target/release/fiblab,
10000, the models with a registry target. `tests/idle_memory.rs` holds the same figure
as a test (5,000 clients, debug build); `fiblab bench c10k` fits the slope.
"""
import re
import resource
import socket
import subprocess
import sys
import time

fiblab = sys.argv[1] if len(sys.argv) > 1 else "target/release/fiblab"
clients = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
models = (sys.argv[3] if len(sys.argv) > 3 else
          "coroutines,epoll,tokio,tokio-current,nonblocking,per-core").split(",")
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def resident_kib(pid):
    children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    total = 0
    for p in [pid] + [int(c) for c in children]:
        total += int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{p}/status").read()).group(1))
    return total


for model in models:
    for run in (1, 2):
        server = subprocess.Popen(
            [fiblab, "serve", "--model", model, "--port", "0", "--max-conns", str(clients + 64)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        port = int(re.search(r":(\d+)", server.stdout.readline()).group(1))
        first = socket.create_connection(("127.0.0.1", port))
        first.sendall(b"5\n")
        first.recv(16)
        first.close()
        time.sleep(0.2)
        before = resident_kib(server.pid)
        held = []
        for _ in range(clients):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"5\n")
            held.append(s)
        for s in held:
            s.settimeout(5)
            assert s.recv(16) == b"5\n", model
        time.sleep(0.3)
        after = resident_kib(server.pid)
        print(f"{model}: {(after - before) / clients:.3f} KiB per idle client "
              f"({clients} held, run {run})", flush=True)
        for s in held:
            s.close()
        server.terminate()
        server.wait()
