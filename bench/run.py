#!/usr/bin/env python3
"""Sluice's benchmark suite: Sluice, raw wasmtime and Prefect side by side.

    make bench                        # = bench/prefect/setup.sh && V/bin/python bench/run.py
    V/bin/python bench/run.py [--quick] [--only tasks,map,...] [--no-prefect] [--no-postgres]

V is the Prefect virtualenv made by `bench/prefect/setup.sh` (Prefect and
matplotlib). Three long-lived drivers answer JSON requests on stdin/stdout:
`sluice_bench` (runtime/benches/sluice_bench: Sluice and raw wasmtime),
`prefect_bench.py inproc` (flows in-process, Prefect's ephemeral server) and
`prefect_bench.py remote` (a Prefect server plus `serve`, once at Prefect's
default polling and once polling every second). Sluice's durable workloads
run on SQLite and, beside it, on PostgreSQL (a cluster `sluice_bench`
starts itself with `initdb`, PostgreSQL's default durability; Debian's
`postgresql` package). Every workload is run as
repetitions; within each repetition every system takes its turn, in an
order that rotates, so drift in the machine's speed hits all alike.

Results go to bench/results/<UTC time>.json and latest.json, the tables to
stdout and bench/results/latest.md (Markdown), the plot of per-task cost
against task count to bench/results/per_task.png. `--quick` runs every
workload once at a small size on a debug build and writes under
target/bench-quick/: the smoke test that `make test` runs. Any driver error
fails the run (exit status 1).
"""
import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFECT_BENCH = os.path.join(REPO, "bench", "prefect", "prefect_bench.py")
WORKLOADS = ["tasks", "map", "latency", "cold", "memory", "scale"]

# Sizes and repetitions. Prefect takes seconds where Sluice takes
# milliseconds, so it runs fewer repetitions of its longest workloads.
FULL = {
    "task_counts": [1, 100, 1000, 10000],
    "reps": 5,
    "prefect_reps": {1: 5, 100: 3, 1000: 3, 10000: 1},
    "record_timeout_s": 600,
    "map_n": 1000,
    "map_reps": 5,
    "prefect_map_reps": 3,
    "latency_rounds": 5,
    "latency_runs": {"sluice": 40, "sluice-postgres": 40, "prefect-poll-1s": 8, "prefect-default": 3},
    "cold_reps": 3,
    "cold_components": ["bench", "python"],
    "memory_concurrent": {"sluice": 8, "prefect": 8},
    "scale": {"task_runs": 1_000_000, "tasks_per_run": 1000, "reps": 5},
    "settle_s": 5,
}
QUICK = {
    "task_counts": [1, 10],
    "reps": 1,
    "prefect_reps": {1: 1, 10: 1},
    "record_timeout_s": 120,
    "map_n": 10,
    "map_reps": 1,
    "prefect_map_reps": 1,
    "latency_rounds": 1,
    "latency_runs": {"sluice": 3, "sluice-postgres": 3, "prefect-poll-1s": 1},
    "cold_reps": 1,
    "cold_components": ["bench"],
    "memory_concurrent": {"sluice": 2, "prefect": 2},
    "scale": {"task_runs": 2000, "tasks_per_run": 100, "reps": 1},
    "settle_s": 1,
}
TASK_SYSTEMS = ["sluice", "sluice-batched", "sluice-postgres", "sluice-postgres-async", "sluice-memory", "wasmtime", "wasmtime-raw",
                "wasmtime-sync", "prefect"]
MAP_SYSTEMS = ["sluice", "sluice-batched", "sluice-postgres", "sluice-postgres-async", "sluice-memory", "wasmtime", "wasmtime-raw",
               "prefect"]
# The floor every "÷ raw" ratio divides by: a bare linker, nothing of Sluice's sandbox.
RAW = "wasmtime-raw"
LABELS = {
    "sluice": "Sluice, every state committed to SQLite",
    "sluice-batched": "Sluice, `batched` durability: states committed to SQLite in the background",
    "sluice-postgres": "Sluice, every state committed to PostgreSQL",
    "sluice-postgres-async": "Sluice, every state committed to PostgreSQL, `synchronous_commit=off`",
    "sluice-memory": "Sluice, states recorded in memory",
    "wasmtime": "Sluice's sandbox without recording (`Program::instantiate` + call)",
    "wasmtime-raw": "raw wasmtime, async: bare linker, `InstancePre`, pooling",
    "wasmtime-sync": "raw wasmtime, sync: bare linker, `InstancePre`, pooling",
    "prefect": "Prefect 3, `@task` in a `@flow`",
}


class BenchError(Exception):
    """A driver failed or answered with an error."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Driver:
    """A long-lived process answering one JSON line per JSON request."""

    def __init__(self, name, cmd, ready_line):
        self.name = name
        log(f"[{name}] starting: {' '.join(cmd)}")
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(os.path.join(LOG_DIR, f"{name}.stderr"), "w"),
                                     text=True, bufsize=1)
        if ready_line:
            self._read()

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError(f"{self.name} exited ({self.proc.wait()}); see {LOG_DIR}/{self.name}.stderr")
        reply = json.loads(line)
        if "error" in reply:
            raise BenchError(f"{self.name}: {reply['error']}")
        return reply

    def ask(self, request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def build_sluice_bench(quick):
    """Builds runtime/benches/sluice_bench (release, or debug for --quick) and returns its path."""
    cmd = ["cargo", "test" if quick else "bench", "--no-run", "-p", "sluice", "--bench", "sluice_bench",
           "--message-format=json-render-diagnostics"]
    log(f"building: {' '.join(cmd)}")
    out = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    if out.returncode != 0:
        raise BenchError("building sluice_bench failed")
    for line in out.stdout.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "sluice_bench" \
                and msg.get("executable"):
            return msg["executable"]
    raise BenchError("cargo did not report the sluice_bench executable")


def pct(values, q):
    """Nearest-rank percentile, q in 0..100."""
    s = sorted(values)
    return s[max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))]


def rotated(items, k):
    k %= len(items)
    return items[k:] + items[:k]


# --------------------------------------------------------------------------
# workloads: each returns its raw samples


def per_task_samples(op, counts, reps_of, systems, drivers, config):
    """{n: {system: [reply, …]}} for `op` (tasks or map), interleaved per repetition."""
    out = {}
    for n in counts:
        out[n] = {s: [] for s in systems}
        for rep in range(max(reps_of(s, n) for s in systems)):
            for system in rotated(systems, rep):
                if rep >= reps_of(system, n):
                    continue
                if system == "prefect":
                    reply = drivers["prefect-inproc"].ask(
                        {"op": op, "n": n, "record_timeout_s": config["record_timeout_s"]})
                else:
                    reply = drivers["sluice"].ask({"op": op, "system": system, "n": n})
                out[n][system].append(reply)
                log(f"{op} n={n} rep {rep} {system}: {reply['wall_s'] / n * 1e6:.1f} µs/task")
    return out


def workload_tasks(drivers, config, systems):
    def reps(system, n):
        return config["prefect_reps"][n] if system == "prefect" else config["reps"]
    return per_task_samples("tasks", config["task_counts"], reps, systems, drivers, config)


def workload_map(drivers, config, systems):
    def reps(system, _n):
        return config["prefect_map_reps"] if system == "prefect" else config["map_reps"]
    return per_task_samples("map", [config["map_n"]], reps, systems, drivers, config)


def workload_latency(drivers, config, prefect, postgres):
    out = {name: {"client_s": [], "server_s": []} for name in config["latency_runs"]
           if (prefect or name.startswith("sluice")) and (postgres or name != "sluice-postgres")}
    for rnd in range(config["latency_rounds"]):
        for name in rotated(list(out), rnd):
            request = {"op": "latency", "n": config["latency_runs"][name]}
            if name.startswith("sluice"):
                driver = drivers["sluice"]
                request["backend"] = "postgres" if name == "sluice-postgres" else "sqlite"
            else:
                driver = drivers[name]
            reply = driver.ask(request)
            out[name]["client_s"] += reply["client_s"]
            out[name]["server_s"] += reply["server_s"]
            log(f"latency round {rnd} {name}: median {statistics.median(reply['client_s']) * 1e3:.2f} ms")
    return out


def workload_cold(drivers, config, prefect):
    out = {c: [] for c in config["cold_components"]}
    if prefect:
        out["prefect"] = []
    for rep in range(config["cold_reps"]):
        for name in rotated(list(out), rep):
            if name == "prefect":
                reply = drivers["prefect-inproc"].ask({"op": "cold"})
            else:
                reply = drivers["sluice"].ask({"op": "cold", "component": name})
            out[name].append(reply)
            log(f"cold rep {rep} {name}: {reply}")
    return out


def workload_memory(drivers, config, prefect):
    out = {"sluice": drivers["sluice"].ask({"op": "memory", "concurrent": config["memory_concurrent"]["sluice"]})}
    if prefect:
        out["prefect"] = drivers["prefect-poll-1s"].ask(
            {"op": "memory", "concurrent": config["memory_concurrent"]["prefect"]})
    log(f"memory: {out}")
    return out


def workload_scale(drivers, config):
    reply = drivers["sluice"].ask({"op": "scale", **config["scale"]})
    log(f"scale: {reply['task_runs']} task runs built in {reply['build_s']:.1f} s")
    return reply


# --------------------------------------------------------------------------
# tables


def fmt(value, digits=1):
    if value is None:
        return "–"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    r = a / b
    return f"{r:,.0f}×" if r >= 100 else f"{r:.2f}×" if r < 10 else f"{r:.1f}×"


def median_per_task(replies, n, key="wall_s"):
    values = [r[key] / n * 1e6 for r in replies if r.get(key) is not None]
    return (statistics.median(values), pct(values, 90), len(values)) if values else (None, None, 0)


def tables(results, config, meta):
    lines = []
    add = lines.append
    add(f"Run {meta['date']} on {meta['machine']}; command `{meta['command']}`; "
        f"Sluice {meta['commit']}, Prefect {meta.get('prefect_version', '–')}.")
    add("")
    if "tasks" in results:
        add("### Per-task overhead: one flow calling N trivial tasks in sequence")
        add("")
        add("µs per task = flow wall time ÷ N (for N = 1, the whole flow run). *recorded*: until every state "
            "is durably in the database. Ratios against raw async wasmtime (the floor) and Prefect.")
        add("")
        add("| N | system | runs | median µs/task | p90 | recorded, median µs/task | ÷ raw wasmtime | Prefect ÷ this |")
        add("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for n, by_system in results["tasks"].items():
            raw = median_per_task(by_system.get(RAW, []), n)[0]
            prefect = median_per_task(by_system.get("prefect", []), n)
            for system, replies in by_system.items():
                med, p90, count = median_per_task(replies, n)
                rec = median_per_task(replies, n, "recorded_s")[0]
                vs_prefect = "–"
                if system != "prefect" and prefect[0] is not None:
                    vs_prefect = ratio(prefect[0], med)
                    if rec is not None:
                        vs_prefect += f" (recorded {ratio(median_per_task(by_system['prefect'], n, 'recorded_s')[0], rec)})"
                add(f"| {n:,} | {LABELS[system]} | {count} | {fmt(med)} | {fmt(p90)} | {fmt(rec)} | "
                    f"{ratio(med, raw)} | {vs_prefect} |")
        add("")
    if "map" in results:
        (n, by_system), = results["map"].items()
        add(f"### Parallel map: {n:,} trivial tasks submitted at once")
        add("")
        add("Cores busy: the process's CPU time ÷ wall time over the request (2 = both cores of this machine).")
        add("")
        add("| system | runs | median µs/task | p90 | recorded, median µs/task | cores busy | ÷ raw wasmtime | Prefect ÷ this |")
        add("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        raw = median_per_task(by_system.get(RAW, []), n)[0]
        prefect = median_per_task(by_system.get("prefect", []), n)[0]
        for system, replies in by_system.items():
            med, p90, count = median_per_task(replies, n)
            rec = median_per_task(replies, n, "recorded_s")[0]
            add(f"| {LABELS[system]} | {count} | {fmt(med)} | {fmt(p90)} | {fmt(rec)} | {cores_busy(replies)} | "
                f"{ratio(med, raw)} | {'–' if system == 'prefect' else ratio(prefect, med)} |")
        add("")
    if "latency" in results:
        add("### Deployment run latency: created through the API until `Completed`, one at a time")
        add("")
        add("| system | runs | median ms | p90 ms | p99 ms | server's record, median ms | ÷ Sluice |")
        add("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        names = {"sluice": "Sluice server on SQLite (embedded worker)",
                 "sluice-postgres": "Sluice server on PostgreSQL (embedded worker)",
                 "prefect-poll-1s": "Prefect server + `serve`, polling every 1 s",
                 "prefect-default": "Prefect server + `serve`, default polling (10 s)"}
        base = statistics.median(results["latency"]["sluice"]["client_s"])
        for name, samples in results["latency"].items():
            c = [x * 1e3 for x in samples["client_s"]]
            s = [x * 1e3 for x in samples["server_s"]]
            add(f"| {names[name]} | {len(c)} | {fmt(statistics.median(c), 2)} | {fmt(pct(c, 90), 2)} | "
                f"{fmt(pct(c, 99), 2)} | {fmt(statistics.median(s), 2)} | {ratio(statistics.median(c), base * 1e3)} |")
        add("")
    if "cold" in results:
        add("### Start-up: whole process, first run on a fresh host (compiles) and with the compile cache warm")
        add("")
        add("| what | runs | cold, median ms | warm, median ms |")
        add("| --- | ---: | ---: | ---: |")
        names = {"bench": "small Rust flow (`bench_flow.wasm`, 1 task)",
                 "python": "Python example flow (`python_greet.wasm`)"}
        for name, replies in results["cold"].items():
            if name == "prefect":
                med = lambda k: statistics.median(r[k] for r in replies) * 1e3  # noqa: E731
                add(f"| Prefect: `python` running one trivial flow (ephemeral server) | {len(replies)} | "
                    f"{fmt(med('prefect_cold_s'))} | {fmt(med('prefect_warm_s'))} |")
                continue
            med = lambda k: statistics.median(r[k] for r in replies) * 1e3  # noqa: E731
            mb = replies[0]["bytes"] / 1e6
            add(f"| Sluice: `sluice exec`, {names[name]}, {mb:.1f} MB | {len(replies)} | "
                f"{fmt(med('sluice_cold_s'))} | {fmt(med('sluice_warm_s'))} |")
            add(f"| raw wasmtime in-process: compile or deserialize, instantiate, `describe`, {name} | "
                f"{len(replies)} | {fmt(med('wasmtime_cold_s'))} | {fmt(med('wasmtime_warm_s'), 2)} |")
        add("")
    if "memory" in results:
        s = results["memory"]["sluice"]
        add("### Memory (VmRSS; Prefect: the whole process tree)")
        add("")
        add("| what | Sluice MB | Prefect MB |")
        add("| --- | ---: | ---: |")
        p = results["memory"].get("prefect", {})
        add(f"| idle server (Sluice: with its embedded worker, after one run) | {fmt(s['server_idle_mb'])} | "
            f"{fmt(p.get('server_idle_mb'))} |")
        add(f"| idle server without a worker | {fmt(s['server_without_worker_idle_mb'])} | "
            f"{fmt(p.get('server_idle_mb'))} |")
        add(f"| idle worker (Prefect: the `serve` process) | {fmt(s['worker_idle_mb'])} | "
            f"{fmt(p.get('serve_idle_mb'))} |")
        add(f"| worker after one finished run (Prefect: `serve`) | {fmt(s['worker_after_one_run_mb'])} | "
            f"{fmt(p.get('serve_after_one_run_mb'))} |")
        add(f"| each further flow running at once, over the line above (Sluice: {s['concurrent']} at once; "
            f"Prefect: {p.get('concurrent', '–')}) | {fmt(s['per_running_flow_mb'], 2)} | "
            f"{fmt(p.get('per_running_flow_mb'))} |")
        add("")
    if "scale" in results:
        r = results["scale"]
        add(f"### History queries with {r['task_runs']:,} task runs ({r['flow_runs']:,} flow runs, "
            f"{r['states']:,} states, {r['db_bytes'] / 1e6:,.0f} MB database)")
        add("")
        add("| command (whole process) | runs | median ms | max ms |")
        add("| --- | ---: | ---: | ---: |")
        add(f"| `sluice flow-run ls` (20 newest) | {len(r['ls_s'])} | {fmt(statistics.median(r['ls_s']) * 1e3)} | "
            f"{fmt(max(r['ls_s']) * 1e3)} |")
        add(f"| `sluice flow-run inspect <run>` ({r['tasks_per_run']:,} task runs, {r['inspect_bytes'] / 1e3:,.0f} KB "
            f"of output) | {len(r['inspect_s'])} | {fmt(statistics.median(r['inspect_s']) * 1e3)} | "
            f"{fmt(max(r['inspect_s']) * 1e3)} |")
        add("")
    return "\n".join(lines)


def cores_busy(replies):
    """Median CPU time ÷ wall time of the replies that carry both."""
    shares = [r["cpu_s"] / r["wall_s"] for r in replies if r.get("cpu_s") is not None and r.get("wall_s")]
    return f"{statistics.median(shares):.2f}" if shares else "–"


def targets(results):
    """The issue's targets: (what, measured, met)."""
    out = []
    tasks = results.get("tasks", {})
    n = max(tasks) if tasks else None
    if n and tasks[n].get("sluice") and tasks[n].get(RAW):
        rec = median_per_task(tasks[n]["sluice"], n, "recorded_s")[0]
        raw = median_per_task(tasks[n][RAW], n)[0]
        out.append((f"durable per-task cost ≤ 1.5× raw wasmtime (N={n:,})", f"{rec / raw:.2f}×", rec <= 1.5 * raw))
        if tasks[n].get("sluice-batched"):
            batched = median_per_task(tasks[n]["sluice-batched"], n, "recorded_s")[0]
            out.append((f"the same, `batched` durability (N={n:,})", f"{batched / raw:.2f}×", batched <= 1.5 * raw))
        if tasks[n].get("sluice-postgres"):
            pg = median_per_task(tasks[n]["sluice-postgres"], n, "recorded_s")[0]
            out.append((f"durable per-task cost on PostgreSQL ≤ 250 µs (N={n:,})", f"{pg:.1f} µs", pg <= 250))
        if tasks[n].get("sluice-postgres-async"):
            pg = median_per_task(tasks[n]["sluice-postgres-async"], n, "recorded_s")[0]
            out.append((f"the same, `synchronous_commit=off` (N={n:,})", f"{pg:.1f} µs", pg <= 250))
        if tasks[n].get("prefect"):
            pre = median_per_task(tasks[n]["prefect"], n)[0]
            out.append((f"≥ 50× below Prefect's per-task cost (N={n:,})", f"{pre / rec:,.0f}×", pre >= 50 * rec))
    lat = results.get("latency", {})
    if "sluice-postgres" in lat:
        m = statistics.median(lat["sluice-postgres"]["client_s"]) * 1e3
        out.append(("API → `Completed` median on PostgreSQL ≤ 3 ms", f"{m:.2f} ms", m <= 3))
    if "prefect-default" in lat:
        s = statistics.median(lat["sluice"]["client_s"])
        p = statistics.median(lat["prefect-default"]["client_s"])
        out.append(("deployment run latency ≥ 100× below Prefect's default", f"{p / s:,.0f}×", p >= 100 * s))
    if "bench" in results.get("cold", {}):
        w = statistics.median(r["sluice_warm_s"] for r in results["cold"]["bench"]) * 1e3
        out.append(("warm start of a cached artifact ≤ 20 ms", f"{w:.1f} ms", w <= 20))
    return out


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    tasks = results["tasks"]
    for system in TASK_SYSTEMS:
        points = [(n, median_per_task(tasks[n][system], n)[0]) for n in tasks if tasks[n].get(system)]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=LABELS[system])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tasks in the flow (sequential)")
    ax.set_ylabel("median µs per task (flow wall time ÷ tasks)")
    ax.set_title("Per-task cost against task count")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) / 2**20
    except (OSError, StopIteration):
        mem = 0
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Linux {platform.release()}"


def main():
    global LOG_DIR
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="every workload once, small, on a debug build")
    ap.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated workloads")
    ap.add_argument("--no-prefect", action="store_true", help="Sluice and raw wasmtime only")
    ap.add_argument("--no-postgres", action="store_true", help="Sluice on SQLite only (no PostgreSQL cluster)")
    args = ap.parse_args()
    config = QUICK if args.quick else FULL
    only = args.only.split(",")
    unknown = set(only) - set(WORKLOADS)
    if unknown:
        ap.error(f"unknown workloads {sorted(unknown)}: choose from {','.join(WORKLOADS)}")
    prefect = not args.no_prefect
    out_dir = os.path.join(REPO, "target", "bench-quick") if args.quick else os.path.join(REPO, "bench", "results")
    LOG_DIR = os.path.join(REPO, "target", "bench-logs")
    os.makedirs(out_dir, exist_ok=True)
    os.makedirs(LOG_DIR, exist_ok=True)
    if prefect:
        try:
            import prefect as _  # noqa: F401
        except ImportError:
            sys.exit("Prefect is not importable here: run bench/prefect/setup.sh and use its venv's python "
                     "(make bench does both), or pass --no-prefect")

    started = time.time()
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        # What was really run, options included: a table must say how to reproduce it.
        "command": " ".join(["bench/run.py", *sys.argv[1:]]),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                 text=True).stdout.strip(),
        "quick": args.quick,
        "config": config,
    }
    drivers = {}
    results = {}
    try:
        drivers["sluice"] = Driver("sluice", [build_sluice_bench(args.quick)], ready_line=False)
        if prefect and {"tasks", "map", "cold"} & set(only):
            drivers["prefect-inproc"] = Driver("prefect-inproc", [sys.executable, PREFECT_BENCH, "inproc"], True)
        task_systems = [s for s in TASK_SYSTEMS if (prefect or s != "prefect")
                        and (not args.no_postgres or not s.startswith("sluice-postgres"))]
        map_systems = [s for s in MAP_SYSTEMS if (prefect or s != "prefect")
                       and (not args.no_postgres or not s.startswith("sluice-postgres"))]
        if "tasks" in only:
            results["tasks"] = workload_tasks(drivers, config, task_systems)
        if "map" in only:
            results["map"] = workload_map(drivers, config, map_systems)
        if "cold" in only:
            results["cold"] = workload_cold(drivers, config, prefect)
        if "prefect-inproc" in drivers:
            drivers.pop("prefect-inproc").close()
            meta["prefect_version"] = "3.9.1"
        if prefect and {"latency", "memory"} & set(only):
            settle = str(config["settle_s"])
            for name, poll in (("prefect-poll-1s", ["--poll-seconds", "1"]), ("prefect-default", [])):
                if name in config["latency_runs"] or (name == "prefect-poll-1s" and "memory" in only):
                    drivers[name] = Driver(name, [sys.executable, PREFECT_BENCH, "remote", "--settle", settle, *poll],
                                           True)
        if "latency" in only:
            results["latency"] = workload_latency(drivers, config, prefect, not args.no_postgres)
        if "memory" in only:
            results["memory"] = workload_memory(drivers, config, prefect)
        for name in ("prefect-poll-1s", "prefect-default"):
            if name in drivers:
                drivers.pop(name).close()
        if "scale" in only:
            results["scale"] = workload_scale(drivers, config)
    except BenchError as e:
        sys.exit(f"bench failed: {e}")
    finally:
        for d in drivers.values():
            d.close()
    if prefect:
        import prefect as p
        meta["prefect_version"] = p.__version__
    meta["duration_s"] = time.time() - started

    text = tables(results, config, meta)
    # A debug build's figures say nothing about the targets.
    checks = [] if args.quick else targets(results)
    if checks:
        text += "\n### Targets\n\n| target | measured | met |\n| --- | ---: | --- |\n"
        text += "\n".join(f"| {what} | {got} | {'yes' if ok else '**no**'} |" for what, got, ok in checks) + "\n"
    print(text)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    payload = json.dumps({"meta": meta, "results": results}, indent=1, default=str)
    for name in ([] if args.quick else [f"{stamp}.json"]) + ["latest.json"]:
        with open(os.path.join(out_dir, name), "w") as f:
            f.write(payload)
    with open(os.path.join(out_dir, "latest.md"), "w") as f:
        f.write(text)
    if "tasks" in results:
        try:
            plot(results, os.path.join(out_dir, "per_task.png"))
        except ImportError:
            log("matplotlib is not installed here: no plot (bench/prefect/setup.sh installs it)")
    log(f"done in {meta['duration_s']:.0f} s; results in {out_dir}")


LOG_DIR = None

if __name__ == "__main__":
    main()
