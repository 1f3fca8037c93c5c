#!/usr/bin/env bash
# The seeds' own servers as peers for `fiblab bench --target`.
#
#   scripts/seed-peers.sh start DIR   extract the seeds into DIR, start each server on its
#                                     own loopback port, print the --target flags
#   scripts/seed-peers.sh stop DIR    stop them, by the PIDs recorded in DIR/pids
#
# The seeds' Python servers all listen on ('', 25000) and the Go server on
# localhost:50000; the extracted copies (never the repository) are edited to listen on
# 127.0.0.1 and a port of their own, so they can run side by side and stay off the
# network. Python 3 is needed; Go (`apt-get install golang-go`) is optional: without it
# the Go row is left out, with a message saying so.
#
# Each server runs in a process group of its own (setsid), so stopping it also stops the
# pool workers it forked, which would otherwise keep its port. Several seed servers die
# on the first ECONNRESET (a client closing with a reply in flight is enough): each runs
# in a loop that starts it again and logs "restart N" to its log, so a death costs a
# moment, not the row; count the restarts when reading the figures.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
action=$1 dir=$2
fiblab=${FIBLAB:-$(dirname "$0")/../target/release/fiblab}

# name  seed-file  port
peers=(
  "py-one_server      000/one_server.py            25101"
  "py-thread_server   000/thread_server.py         25102"
  "py-multiprocess    000/multiprocess_server.py   25103"
  "py-aserver         000/aserver.py               25104"
  "py-subinterpreters 000/subinterpreters_server.py 25105"
)
# 004/server.py is left out: as published it replies with an undefined name (`resq` is
# built, `resp` is sent), so its first request kills it. It is one_server.py otherwise.
go_port=25107

wait_for_port() {
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

case $action in
start)
  [[ -x $fiblab ]] || { echo "build fiblab first: cargo build --release (or set FIBLAB)" >&2; exit 1; }
  command -v python3 >/dev/null || { echo "python3 is needed for the seeds' servers" >&2; exit 1; }
  mkdir -p "$dir"
  "$fiblab" seeds extract --out "$dir" >/dev/null
  : >"$dir/pids"
  targets=()
  for line in "${peers[@]}"; do
    read -r name file port <<<"$line"
    sed -i "s/(('', 25000))/(('127.0.0.1', $port))/" "$dir/$file"
    grep -q "127.0.0.1', $port" "$dir/$file" || { echo "$file: listen address not found" >&2; exit 1; }
    (cd "$dir/$(dirname "$file")" && exec setsid bash -c \
      'n=0; while true; do python3 "$0"; n=$((n+1)); echo "restart $n" >&2; sleep 0.2; done' \
      "$(basename "$file")" >"$name.log" 2>&1) &
    echo "$! $name" >>"$dir/pids"
    if wait_for_port "$port"; then
      targets+=("--target $name=127.0.0.1:$port")
    else
      echo "$name did not start: see $dir/$(dirname "$file")/$name.log" >&2
    fi
  done
  if command -v go >/dev/null; then
    sed -i "s/localhost:50000/127.0.0.1:$go_port/" "$dir/000/server.go"
    (cd "$dir/000" && GOCACHE="$PWD/.gocache" GOFLAGS=-mod=mod go build -o server-go server.go)
    (cd "$dir/000" && exec setsid ./server-go >go-server.log 2>&1) &
    echo "$! go-server" >>"$dir/pids"
    if wait_for_port "$go_port"; then
      targets+=("--target go=127.0.0.1:$go_port")
    else
      echo "the Go server did not start: see $dir/000/go-server.log" >&2
    fi
  else
    echo "no Go toolchain (apt-get install golang-go): the Go row is left out" >&2
  fi
  echo "${targets[*]}"
  ;;
stop)
  [[ -f $dir/pids ]] || { echo "no $dir/pids: nothing started there" >&2; exit 1; }
  while read -r pid name; do
    # the whole process group: the restart loop, the server, its pool workers
    if kill -TERM -- "-$pid" 2>/dev/null; then
      restarts=$(grep -c '^restart ' "$(find "$dir" -name "$name.log" | head -1)" 2>/dev/null || true)
      echo "stopped $name (process group $pid; restarted ${restarts:-0} times)" >&2
    fi
  done <"$dir/pids"
  rm -f "$dir/pids"
  ;;
*) usage ;;
esac
