#!/usr/bin/env bash
# WAL pages a trivial API run writes on SQLite: starts `sluice server` (the
# binary given, embedded worker) in a temporary SLUICE_HOME on 127.0.0.1,
# deploys bench_flow.wasm's `sequential` flow with count=0, then traces the
# server's pwrite64 calls (strace) while 20 runs go one at a time (POST, then
# `GET /flow-runs/{id}?wait=5`), and prints the 4096-byte page writes to the
# -wal file per run. Needs strace and the guests (`make guests`).
#
#   bench/wal_frames.sh target/release/sluice [port]
set -euo pipefail
binary=$(realpath "$1")
port=${2:-18090}
runs=20
source "$(dirname "$0")/trivial_server.sh"
# Warm up: the first runs create the tables' first pages.
for _ in 1 2 3; do one_run; done
sleep 0.5
strace -f -p "$server" -e trace=pwrite64 -o "$home/trace" 2>/dev/null &
tracer=$!
sleep 1
for _ in $(seq "$runs"); do one_run; sleep 0.05; done
sleep 0.3
kill "$tracer"
wait "$tracer" 2>/dev/null || true
wal_fds=$(find "/proc/$server/fd" -lname '*-wal' -printf '%f|' | sed 's/|$//')
pages=$(grep -cE "pwrite64\(($wal_fds), .*, 4096, " "$home/trace" || true)
echo "$binary: $(python3 -c "print(f'{$pages / $runs:.1f}')") WAL pages per trivial run ($pages in $runs runs)"
