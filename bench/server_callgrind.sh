#!/usr/bin/env bash
# Instructions the server spends per trivial API run, counted by callgrind
# (stable on a noisy machine, where wall-clock A/B runs move by 10-20%):
# starts `sluice server` (the binary given, embedded worker) under
# valgrind, warms it with 20 runs, zeroes the counters, sends RUNS runs one
# at a time (POST, then `GET /flow-runs/{id}?wait=5`) and prints the
# instructions of the whole process (every thread, idle ones too) per run.
# Under valgrind the pooling allocator falls back to on-demand instances, so
# the flow's instance weighs more than it does natively. Needs valgrind and
# the guests (`make guests`).
#
#   bench/server_callgrind.sh target/release/sluice [runs] [port]
set -euo pipefail
binary=$(realpath "$1")
runs=${2:-100}
port=${3:-18091}
out=$(mktemp -d)
launcher=(valgrind --tool=callgrind "--callgrind-out-file=$out/callgrind.out")
ready_tries=600
source "$(dirname "$0")/trivial_server.sh"
for _ in $(seq 20); do one_run; done
sleep 1
callgrind_control -z "$server" >/dev/null
for _ in $(seq "$runs"); do one_run; done
callgrind_control -d "$server" >/dev/null
for _ in $(seq 100); do compgen -G "$out/callgrind.out.*" >/dev/null && break; sleep 0.1; done
instructions=$(awk '/^(summary|totals):/ { print $2; exit }' "$out"/callgrind.out.*)
rm -rf "$out"
echo "$binary: $((instructions / runs)) instructions per trivial run ($instructions in $runs runs)"
