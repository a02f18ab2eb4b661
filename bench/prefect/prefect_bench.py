"""Prefect side of the benchmark suite (`bench/run.py`, see README.md here).

    V/bin/python bench/prefect/prefect_bench.py inproc
    V/bin/python bench/prefect/prefect_bench.py remote [--poll-seconds S] [--settle S]

A driver: it reads one JSON request per line on stdin and answers each with
one JSON line on stdout, so the orchestrator can keep it alive and
interleave it with Sluice's driver. Prefect's own logs go to stderr.

- `inproc` runs flows in this process against Prefect's ephemeral server
  (temporary PREFECT_HOME): `{"op": "tasks", "n": N}`, `{"op": "map", "n": N}`
  (optional `"record_timeout_s"`), and `{"op": "cold"}`, which times whole
  `python` processes running one trivial flow with a fresh PREFECT_HOME,
  then again with the same one.
- `remote` starts `prefect server start` and `served_flow.py` (`serve`), then
  answers `{"op": "latency", "n": K}` (K runs created through the API one at
  a time, each until Completed) and `{"op": "memory", "concurrent": K}`.
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

def emit(obj):
    _OUT.write(json.dumps(obj, sort_keys=True) + "\n")
    _OUT.flush()


def say(msg):
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


class InProcess:
    """Flows in this process against the ephemeral server."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="prefect-bench-")
        in_process_setup(self.tmp)
        import prefect
        from prefect import flow, task
        from prefect.client.orchestration import get_client

        self.version = prefect.__version__

        @task
        def trivial(x):
            return x

        @flow
        def sequential(n: int):
            return [trivial(i) for i in range(n)]

        @flow
        def mapped(n: int):
            return trivial.map(range(n)).result()

        self.flows = {"tasks": sequential, "map": mapped}
        # Warm-up (not reported): starts the ephemeral server, creates the DB.
        t = time.perf_counter()
        sequential(1)
        mapped(1)
        say(f"warm-up flows (ephemeral server start-up included): {time.perf_counter() - t:.2f} s")
        self.client = get_client(sync_client=True)
        self.client.__enter__()

    def run(self, kind, n, record_timeout):
        t0 = time.perf_counter()
        state = self.flows[kind](n, return_state=True)
        t1 = time.perf_counter()
        if not state.is_completed():
            raise RuntimeError(f"the flow ended {state}")
        if len(state.result()) != n:
            raise RuntimeError("the flow returned the wrong number of results")
        lag, _ = wait_recorded(self.client, state.state_details.flow_run_id, n, t1, record_timeout)
        return {"wall_s": t1 - t0, "recorded_s": None if lag is None else t1 - t0 + lag,
                "prefect_version": self.version}

    def close(self):
        self.client.__exit__(None, None, None)
        shutil.rmtree(self.tmp, ignore_errors=True)


def cold():
    """Whole `python` processes running one trivial flow: a fresh PREFECT_HOME, then the same again."""
    tmp = tempfile.mkdtemp(prefix="prefect-cold-")
    try:
        env = base_env(os.path.join(tmp, "home"))
        env["PYTHONPATH"] = HERE
        code = "from served_flow import bench_trivial; assert bench_trivial(1) == 1"
        times = []
        for _ in range(2):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], env=env, check=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times.append(time.perf_counter() - t)
        return {"prefect_cold_s": times[0], "prefect_warm_s": times[1]}
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


def wait_deployment(client, serve_proc, name, timeout=120):
    t = time.time()
    while time.time() - t < timeout:
        if serve_proc.poll() is not None:
            raise RuntimeError(f"serve process exited with {serve_proc.returncode}")
        try:
            return client.read_deployment_by_name(name)
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


class Remote:
    """A Prefect server and a serving process, as users deploy Prefect."""

    def __init__(self, poll_seconds, settle):
        self.tmp = tempfile.mkdtemp(prefix="prefect-bench-")
        self.procs = Procs()
        self.server, api, startup = start_server(self.procs, self.tmp)
        say(f"server healthy at {api} after {startup:.1f} s")
        time.sleep(settle)
        self.server_idle_mb = mb(tree_rss_kb(self.server.pid))
        self.serve = start_serve(self.procs, self.tmp, api, poll_seconds)
        client_env(self.tmp, api)
        import prefect
        from prefect.client.orchestration import get_client

        self.version = prefect.__version__
        self.poll = poll_seconds if poll_seconds is not None else PREFECT_DEFAULT_POLL_SECONDS
        self.client = get_client(sync_client=True)
        self.client.__enter__()
        self.trivial = wait_deployment(self.client, self.serve, "bench-trivial/bench")
        self.hold = wait_deployment(self.client, self.serve, "bench-hold/bench")
        time.sleep(settle)
        self.serve_idle_mb = mb(tree_rss_kb(self.serve.pid))
        self.run_once(self.trivial.id)  # warm-up, not counted

    def run_once(self, deployment_id, parameters=None):
        t0 = time.perf_counter()
        fr = self.client.create_flow_run_from_deployment(deployment_id, parameters=parameters)
        deadline = t0 + max(120, 10 * self.poll)
        while True:
            fr = self.client.read_flow_run(fr.id)
            if fr.state is not None and fr.state.is_final():
                break
            if time.perf_counter() > deadline:
                raise RuntimeError(f"run {fr.id} not final: {fr.state}")
            time.sleep(0.01)
        t1 = time.perf_counter()
        if not fr.state.is_completed():
            raise RuntimeError(f"run {fr.id} ended {fr.state}")
        return t1 - t0, (fr.end_time - fr.created).total_seconds()

    def latency(self, n):
        client, server = [], []
        for _ in range(n):
            c, s = self.run_once(self.trivial.id)
            client.append(c)
            server.append(s)
        return {"client_s": client, "server_s": server, "poll_seconds": self.poll,
                "prefect_version": self.version}

    def memory(self, concurrent):
        # As Sluice's side: the baseline is the serving process after one
        # finished run (imports, client and flow loaded), not before any.
        warm = self.client.create_flow_run_from_deployment(self.hold.id, parameters={"ms": 1})
        while not (s := self.client.read_flow_run(warm.id).state).is_final():
            time.sleep(0.1)
        time.sleep(1.0)
        after_one = mb(tree_rss_kb(self.serve.pid))
        hold_ms = 1000 * (2 * self.poll + 10)
        runs = [self.client.create_flow_run_from_deployment(self.hold.id, parameters={"ms": hold_ms})
                for _ in range(concurrent)]
        deadline = time.perf_counter() + hold_ms / 1000
        while True:
            states = [self.client.read_flow_run(r.id).state for r in runs]
            if all(s is not None and s.is_running() for s in states):
                break
            if time.perf_counter() > deadline:
                raise RuntimeError(f"the hold runs were not all Running at once: {states}")
            time.sleep(0.1)
        time.sleep(0.5)
        busy = mb(tree_rss_kb(self.serve.pid))
        for r in runs:
            while not (s := self.client.read_flow_run(r.id).state).is_final():
                time.sleep(0.1)
            if not s.is_completed():
                raise RuntimeError(f"hold run ended {s}")
        return {"server_idle_mb": self.server_idle_mb, "serve_idle_mb": self.serve_idle_mb,
                "serve_after_one_run_mb": after_one, "serve_busy_mb": busy, "concurrent": concurrent,
                "per_running_flow_mb": (busy - after_one) / concurrent,
                "prefect_version": self.version}

    def close(self):
        try:
            self.client.__exit__(None, None, None)
        finally:
            self.procs.close()
            shutil.rmtree(self.tmp, ignore_errors=True)


def mb(processes):
    return sum(p["rss_kb"] for p in processes) / 1024


def serve_requests(handle):
    """Answers each JSON line of stdin with one JSON line; errors become {"error": …}."""
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            reply = handle(json.loads(line))
        except Exception as e:  # a failed request is answered, the driver lives on
            reply = {"error": f"{type(e).__name__}: {e}"}
        emit(reply)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["inproc", "remote"])
    ap.add_argument("--poll-seconds", type=int, default=None,
                    help="remote: PREFECT_RUNNER_POLL_FREQUENCY of the serving process "
                         "(integer seconds; default: Prefect's default, 10)")
    ap.add_argument("--settle", type=float, default=5,
                    help="remote: seconds idle before reading VmRSS")
    args = ap.parse_args()
    # SIGTERM/SIGHUP -> SystemExit, so the `finally` blocks kill our subprocesses
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: sys.exit(128 + s))
    if args.mode == "inproc":
        driver = InProcess()

        def handle(r):
            if r["op"] in ("tasks", "map"):
                return driver.run(r["op"], int(r["n"]), float(r.get("record_timeout_s", 600)))
            if r["op"] == "cold":
                return cold()
            raise ValueError(f"unknown op {r['op']!r} for inproc: tasks, map or cold")
    else:
        driver = Remote(args.poll_seconds, args.settle)

        def handle(r):
            if r["op"] == "latency":
                return driver.latency(int(r["n"]))
            if r["op"] == "memory":
                return driver.memory(int(r["concurrent"]))
            raise ValueError(f"unknown op {r['op']!r} for remote: latency or memory")
    try:
        emit({"ready": True})
        serve_requests(handle)
    finally:
        driver.close()


if __name__ == "__main__":
    main()
