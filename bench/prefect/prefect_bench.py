"""Prefect side of the Sluice-vs-Prefect benchmarks (see README.md here).

    V/bin/python bench/prefect/prefect_bench.py WORKLOAD [--n N] [--reps R] [--json]

WORKLOAD is one of: tasks, map, latency, memory. Every repetition prints one
JSON object (one line) on stdout; everything else (Prefect's own logs, the
human-readable summary) goes to stderr. With --json the summary is left out.
"""
import argparse
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
PREFECT_DEFAULT_POLL_SECONDS = 10  # PREFECT_RUNNER_POLL_FREQUENCY default (3.9.1)

# Keep stdout for our JSON only: Prefect (and any subprocess) writes to fd 2.
_OUT = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)
sys.stdout = sys.stderr

ARGS = None


def emit(obj):
    _OUT.write(json.dumps(obj, sort_keys=True) + "\n")
    _OUT.flush()


def say(msg):
    if not ARGS.json:
        print(msg, file=sys.stderr, flush=True)


def pct(values, q):
    """Nearest-rank percentile (q in 0..100)."""
    s = sorted(values)
    return s[max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))]


def base_env(home):
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("PREFECT_"):
            del env[k]
    env["PREFECT_HOME"] = home
    return env


# --------------------------------------------------------------------------
# in-process workloads: tasks, map (ephemeral server, temp PREFECT_HOME)


def in_process_setup(tmp):
    for k in list(os.environ):
        if k.startswith("PREFECT_"):
            del os.environ[k]
    os.environ["PREFECT_HOME"] = os.path.join(tmp, "home")


def count_completed_task_runs(client, flow_run_id):
    # POST /task_runs/count with the same filter body as read_task_runs;
    # read_task_runs itself is capped at 200 rows by default.
    body = {
        "flow_runs": {"id": {"any_": [str(flow_run_id)]}},
        "task_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
    }
    r = client._client.post("/task_runs/count", json=body)
    r.raise_for_status()
    return int(r.json())


def wait_recorded(client, flow_run_id, n, t_returned, timeout):
    """Poll every 10 ms until n task runs of the flow run are Completed in
    the database; return seconds after t_returned (None on timeout)."""
    polls = 0
    while True:
        polls += 1
        c = count_completed_task_runs(client, flow_run_id)
        now = time.perf_counter()
        if c >= n:
            return now - t_returned, polls
        if now - t_returned > timeout:
            return None, polls
        time.sleep(0.01)


def run_in_process(kind):
    tmp = tempfile.mkdtemp(prefix="prefect-bench-")
    try:
        in_process_setup(tmp)
        import prefect
        from prefect import flow, task
        from prefect.client.orchestration import get_client

        @task
        def trivial(x):
            return x

        body = {}

        @flow
        def sequential(n: int):
            t = time.perf_counter()
            r = [trivial(i) for i in range(n)]
            body["s"] = time.perf_counter() - t
            return r

        @flow
        def mapped(n: int):
            t = time.perf_counter()
            r = trivial.map(range(n)).result()
            body["s"] = time.perf_counter() - t
            return r

        fn = sequential if kind == "tasks" else mapped

        # Warm-up (not reported): starts the ephemeral server, creates the DB.
        t = time.perf_counter()
        fn(1)
        warm = time.perf_counter() - t
        say(f"warm-up flow (ephemeral server start-up included): {warm:.2f} s")

        client = get_client(sync_client=True)
        with client:
            walls, lags = [], []
            for rep in range(ARGS.reps):
                t0 = time.perf_counter()
                state = fn(ARGS.n, return_state=True)
                t1 = time.perf_counter()
                assert state.is_completed(), state
                result = state.result()
                assert len(result) == ARGS.n
                fr_id = state.state_details.flow_run_id
                lag, polls = wait_recorded(client, fr_id, ARGS.n, t1, ARGS.timeout)
                wall = t1 - t0
                walls.append(wall)
                if lag is not None:
                    lags.append(lag)
                emit({
                    "workload": kind, "engine": "prefect",
                    "prefect_version": prefect.__version__,
                    "rep": rep, "n": ARGS.n,
                    "wall_s": wall, "per_task_us": wall / ARGS.n * 1e6,
                    # time spent inside the flow body (the task calls only),
                    # without the flow run's own start and finish
                    "body_s": body["s"],
                    "per_task_us_body": body["s"] / ARGS.n * 1e6,
                    "recorded_lag_s": lag, "lag_polls": polls,
                    "wall_plus_lag_s": None if lag is None else wall + lag,
                    "warmup_s": warm if rep == 0 else None,
                })
                say(f"rep {rep}: n={ARGS.n} wall {wall:.3f} s, "
                    f"{wall / ARGS.n * 1e6:.0f} µs/task ({body['s'] / ARGS.n * 1e6:.0f} in "
                    f"the body), recorded +{lag} s")
            say(f"median wall {statistics.median(walls):.3f} s, "
                f"{statistics.median(walls) / ARGS.n * 1e6:.0f} µs/task; "
                f"median lag {statistics.median(lags) if lags else None}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------
# subprocess workloads: latency, memory


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Procs:
    """Subprocesses, each in its own session, killed (whole group) on exit."""

    def __init__(self):
        self.procs = []

    def start(self, cmd, env, log):
        p = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                             stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def close(self):
        for p in reversed(self.procs):
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    p.wait(wait)
                    # the group may outlive its leader: SIGKILL the rest
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    break
                except subprocess.TimeoutExpired:
                    continue


def wait_healthy(url, proc, timeout=90):
    t = time.time()
    while time.time() - t < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return time.time() - t
        except Exception:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not become healthy")


def start_server(procs, tmp):
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = base_env(os.path.join(tmp, "server-home"))
    log = open(os.path.join(tmp, "server.log"), "w")
    prefect_bin = os.path.join(os.path.dirname(sys.executable), "prefect")
    p = procs.start([prefect_bin, "server", "start", "--host", "127.0.0.1",
                     "--port", str(port)], env, log)
    startup = wait_healthy(api, p)
    return p, api, startup


def start_serve(procs, tmp, api, poll_seconds):
    env = base_env(os.path.join(tmp, "serve-home"))
    env["PREFECT_API_URL"] = api
    if poll_seconds is not None:
        env["PREFECT_RUNNER_POLL_FREQUENCY"] = str(poll_seconds)
    log = open(os.path.join(tmp, "serve.log"), "w")
    return procs.start([sys.executable, os.path.join(HERE, "served_flow.py")],
                       env, log)


def client_env(tmp, api):
    for k in list(os.environ):
        if k.startswith("PREFECT_"):
            del os.environ[k]
    os.environ["PREFECT_HOME"] = os.path.join(tmp, "client-home")
    os.environ["PREFECT_API_URL"] = api


def wait_deployment(client, serve_proc, timeout=120):
    t = time.time()
    while time.time() - t < timeout:
        if serve_proc.poll() is not None:
            raise RuntimeError(f"serve process exited with {serve_proc.returncode}")
        try:
            return client.read_deployment_by_name("bench-trivial/bench")
        except Exception:
            time.sleep(0.2)
    raise RuntimeError("deployment never appeared")


def tree_rss_kb(root):
    """VmRSS of root and of all its descendants, from /proc (kB)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
            ppid = int(st[st.rindex(")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(d))
        except (OSError, ValueError):
            pass
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/status") as f:
                status = dict(l.split(":", 1) for l in f if ":" in l)
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            rss = int(status.get("VmRSS", "0 kB").split()[0])
            out.append({"pid": pid, "rss_kb": rss, "cmd": cmd[:120]})
        except OSError:
            pass
    return out


def run_latency():
    tmp = tempfile.mkdtemp(prefix="prefect-bench-")
    procs = Procs()
    try:
        server, api, startup = start_server(procs, tmp)
        say(f"server healthy at {api} after {startup:.1f} s")
        serve = start_serve(procs, tmp, api, ARGS.poll_seconds)
        client_env(tmp, api)
        import prefect
        from prefect.client.orchestration import get_client

        poll = ARGS.poll_seconds if ARGS.poll_seconds is not None \
            else PREFECT_DEFAULT_POLL_SECONDS
        with get_client(sync_client=True) as client:
            dep = wait_deployment(client, serve)
            say(f"deployment {dep.id} registered")

            def one_run():
                t0 = time.perf_counter()
                fr = client.create_flow_run_from_deployment(dep.id)
                t1 = time.perf_counter()
                deadline = t0 + max(120, 10 * poll)
                while True:
                    fr = client.read_flow_run(fr.id)
                    if fr.state is not None and fr.state.is_final():
                        break
                    if time.perf_counter() > deadline:
                        raise RuntimeError(f"run {fr.id} not final: {fr.state}")
                    time.sleep(0.01)
                t2 = time.perf_counter()
                if not fr.state.is_completed():
                    raise RuntimeError(f"run {fr.id} ended {fr.state}")
                server_s = (fr.end_time - fr.created).total_seconds() \
                    if fr.end_time and fr.created else None
                run_s = (fr.end_time - fr.start_time).total_seconds() \
                    if fr.end_time and fr.start_time else None
                return t2 - t0, t1 - t0, server_s, run_s

            for i in range(ARGS.warmup):
                w = one_run()
                say(f"warm-up run: {w[0]:.2f} s (not counted)")

            for rep in range(ARGS.reps):
                client_s, create_s, server_s, run_s = [], [], [], []
                for i in range(ARGS.n):
                    c, cr, s, r = one_run()
                    client_s.append(c)
                    create_s.append(cr)
                    server_s.append(s)
                    run_s.append(r)
                    say(f"run {i}: {c:.3f} s")

                def summ(v):
                    v = [x for x in v if x is not None]
                    return {"median": statistics.median(v), "p90": pct(v, 90),
                            "p99": pct(v, 99), "min": min(v), "max": max(v)}

                emit({
                    "workload": "latency", "engine": "prefect",
                    "prefect_version": prefect.__version__, "rep": rep,
                    "n": ARGS.n, "warmup_runs": ARGS.warmup,
                    "poll_seconds": poll,
                    "poll_seconds_is_default": ARGS.poll_seconds is None,
                    "client_create_to_completed_s": summ(client_s),
                    "create_call_s": summ(create_s),
                    "server_end_minus_created_s": summ(server_s),
                    "server_end_minus_start_s": summ(run_s),
                    "samples_client_s": client_s,
                })
                say(f"poll {poll} s: creation→Completed median "
                    f"{statistics.median(client_s):.3f} s, p90 {pct(client_s, 90):.3f}"
                    f" s, p99 {pct(client_s, 99):.3f} s")
    finally:
        procs.close()
        if ARGS.keep_tmp:
            say(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run_memory():
    tmp = tempfile.mkdtemp(prefix="prefect-bench-")
    procs = Procs()
    try:
        for rep in range(ARGS.reps):
            server, api, startup = start_server(procs, tmp)
            time.sleep(ARGS.settle)
            srv = tree_rss_kb(server.pid)
            serve = start_serve(procs, tmp, api, ARGS.poll_seconds)
            if rep == 0:
                client_env(tmp, api)
            import prefect
            from prefect.client.orchestration import get_client
            with get_client(sync_client=True) as client:
                wait_deployment(client, serve)
            time.sleep(ARGS.settle)
            srv_after = tree_rss_kb(server.pid)
            sv = tree_rss_kb(serve.pid)

            def mb(lst):
                return sum(p["rss_kb"] for p in lst) / 1024

            emit({
                "workload": "memory", "engine": "prefect",
                "prefect_version": prefect.__version__, "rep": rep,
                "settle_s": ARGS.settle, "server_startup_s": startup,
                "server_tree_rss_mb": mb(srv),
                "server_root_rss_mb": srv[0]["rss_kb"] / 1024,
                "server_tree_rss_mb_with_serve_registered": mb(srv_after),
                "serve_tree_rss_mb": mb(sv),
                "serve_root_rss_mb": sv[0]["rss_kb"] / 1024,
                "server_processes": srv, "serve_processes": sv,
            })
            say(f"server idle: {mb(srv):.1f} MB over {len(srv)} processes; "
                f"serving process: {mb(sv):.1f} MB over {len(sv)} processes")
            procs.close()
            procs = Procs()
    finally:
        procs.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workload", choices=["tasks", "map", "latency", "memory"])
    ap.add_argument("--n", type=int, default=None,
                    help="tasks per flow (tasks: 1000, map: 1000) or runs (latency: 200)")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--json", action="store_true",
                    help="JSON lines only (no human-readable summary on stderr)")
    ap.add_argument("--poll-seconds", type=int, default=None,
                    help="PREFECT_RUNNER_POLL_FREQUENCY for the serving process "
                         "(integer seconds; default: Prefect's default, 10)")
    ap.add_argument("--warmup", type=int, default=1,
                    help="latency: uncounted runs before the measured ones")
    ap.add_argument("--timeout", type=float, default=600,
                    help="tasks/map: give up waiting for the records after this")
    ap.add_argument("--settle", type=float, default=5,
                    help="memory: seconds idle before reading VmRSS")
    ap.add_argument("--keep-tmp", action="store_true",
                    help="latency: keep the temp dir (server and serve logs)")
    ARGS = ap.parse_args()
    # SIGTERM/SIGHUP -> SystemExit, so the `finally` blocks kill our subprocesses
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: sys.exit(128 + s))
    if ARGS.n is None:
        ARGS.n = 200 if ARGS.workload == "latency" else 1000
    if ARGS.workload in ("tasks", "map"):
        run_in_process(ARGS.workload)
    elif ARGS.workload == "latency":
        run_latency()
    else:
        run_memory()


if __name__ == "__main__":
    main()
