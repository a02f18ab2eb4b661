#!/usr/bin/env bash
# Instructions per task of one `sluice_bench` workload, every thread counted
# by callgrind (stable where wall-clock A/B runs move by 10-20%): the
# workload run at N = 1,000 and at N = 2,000, the difference divided by
# 1,000, so start-up, compilation and the run's fixed costs cancel out.
# Under valgrind the threads take turns, so which thread commits a batch
# differs from a native run; the total is what it compares. Needs valgrind
# and the guests (`make guests`); run from the repository root.
#
#   bench/task_callgrind.sh target/release/deps/sluice_bench-<hash> map sluice-batched
set -euo pipefail
binary=$1
op=${2:-tasks}
system=${3:-sluice-batched}
count() {
    echo "{\"op\":\"$op\",\"system\":\"$system\",\"n\":$1}" |
        valgrind --tool=callgrind --callgrind-out-file=/dev/null "$binary" 2>&1 >/dev/null |
        awk '/Collected :/ { print $4 }'
}
small=$(count 1000)
large=$(count 2000)
echo "$binary $op $system: $(((large - small) / 1000)) instructions per task"
