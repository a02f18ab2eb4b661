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
repo=$(cd "$(dirname "$0")/.." && pwd)
guest="${CARGO_TARGET_DIR:-$repo/target}/wasm32-wasip2/guest/bench_flow.wasm"
home=$(mktemp -d)
export SLUICE_HOME=$home SLUICE_CACHE_DIR=$home/cache
cleanup() { [[ -n ${server:-} ]] && kill "$server" 2>/dev/null; rm -rf "$home"; }
trap cleanup EXIT
"$binary" deploy "$guest" --flow sequential --name trivial --param count=0 >/dev/null
"$binary" server --port "$port" --workers 4 >"$home/server.out" 2>"$home/server.err" &
server=$!
for _ in $(seq 50); do [[ -s $home/admin-token ]] && curl -sf "http://127.0.0.1:$port/api/v1/health" >/dev/null && break; sleep 0.1; done
token=$(cat "$home/admin-token")
api=http://127.0.0.1:$port/api/v1
one_run() {
    local id
    id=$(curl -sf -XPOST -H "Authorization: Bearer $token" "$api/deployments/sequential/trivial/runs" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
    curl -sf -H "Authorization: Bearer $token" "$api/flow-runs/$id?wait=5" >/dev/null
}
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
