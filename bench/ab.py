#!/usr/bin/env python3
"""Two builds of `sluice_bench` side by side: the per-task and map workloads,
interleaved round by round (the order alternates), medians in a Markdown table.

    git worktree add ../before <commit>
    (cd ../before && CARGO_TARGET_DIR=$PWD/../before-target cargo bench --no-run -p sluice --bench sluice_bench)
    cargo bench --no-run -p sluice --bench sluice_bench
    bench/ab.py ../before-target/release/deps/sluice_bench-<hash> target/release/deps/sluice_bench-<hash> [rounds]

Both read the guests built by `make guests` in this checkout's target
folder (run from the repository root). Each line: µs per task (wall time ÷ N)
and the cores kept busy (the driver's CPU time ÷ wall time).
"""
import json
import statistics
import subprocess
import sys

WORKLOADS = [
    ("tasks", "wasmtime-raw", 10000),
    ("tasks", "wasmtime", 10000),
    ("tasks", "sluice-memory", 10000),
    ("tasks", "sluice-batched", 10000),
    ("tasks", "sluice", 3000),
    ("tasks", "wasmtime-raw", 1000),
    ("tasks", "sluice-batched", 1000),
    ("tasks", "sluice", 1000),
    ("map", "wasmtime-raw", 1000),
    ("map", "sluice-memory", 1000),
    ("map", "sluice-batched", 1000),
    ("map", "sluice", 1000),
]


def run(binary):
    requests = "".join(json.dumps({"op": op, "system": s, "n": n}) + "\n" for op, s, n in WORKLOADS)
    done = subprocess.run([binary], input=requests, capture_output=True, text=True, check=True)
    replies = [json.loads(line) for line in done.stdout.splitlines()]
    if len(replies) != len(WORKLOADS) or any("error" in r for r in replies):
        sys.exit(f"{binary} failed: {done.stdout}{done.stderr}")
    return [(r["wall_s"] / n * 1e6, r.get("cpu_s", 0) / r["wall_s"]) for r, (_, _, n) in zip(replies, WORKLOADS)]


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    builds = {"before": sys.argv[1], "after": sys.argv[2]}
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    samples = {name: [] for name in builds}
    for round_ in range(rounds):
        for name in (["before", "after"] if round_ % 2 == 0 else ["after", "before"]):
            samples[name].append(run(builds[name]))
    print(f"{rounds} rounds each, alternating\n")
    print("| workload | system | N | before µs/task | after µs/task | before cores | after cores |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for i, (op, system, n) in enumerate(WORKLOADS):
        def median(name, k):
            return statistics.median(s[i][k] for s in samples[name])
        print(f"| {op} | {system} | {n:,} | {median('before', 0):.1f} | {median('after', 0):.1f} "
              f"| {median('before', 1):.2f} | {median('after', 1):.2f} |")


if __name__ == "__main__":
    main()
