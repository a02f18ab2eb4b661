#!/usr/bin/env python3
"""A load client for tests/multi_host.rs: creates flow runs of one deployment
through several Sluice servers at once, from threads of its own.

Each request goes to the next server in turn. A request that gets no answer
or a 5xx (its server was killed) is not acknowledged: the client says so and
sends the next one to another server, as a client behind a load balancer
would. It prints one JSON line per request as soon as it is answered:

    {"ok": true, "id": "<run id>", "server": "<url>", "status": 201}
    {"ok": false, "server": "<url>", "error": "<what happened>"}

and stops once COUNT runs were acknowledged (2xx with a run id). Only the
standard library: it runs with any python3.

Usage: load_client.py --server URL [--server URL]... --token TOKEN
                      --deployment FLOW/NAME --count N [--threads T]
"""

import argparse
import itertools
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", action="append", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--deployment", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    lock = threading.Lock()
    acknowledged = [0]
    turns = itertools.count()

    def say(line: dict) -> None:
        with lock:
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()

    def create(server: str) -> dict:
        request = urllib.request.Request(
            f"{server}/api/v1/deployments/{args.deployment}/runs",
            data=b"",
            method="POST",
            headers={"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                body = json.load(response)
                run_id = body.get("id") or body.get("flow_run", {}).get("id")
                if run_id is None:
                    return {"ok": False, "server": server, "error": f"no run id in {body}"}
                return {"ok": True, "id": run_id, "server": server, "status": response.status}
        except urllib.error.HTTPError as err:
            if err.code < 500:
                # The request itself is wrong: sending it again cannot help.
                say({"ok": False, "server": server, "error": f"HTTP {err.code}: {err.read()[:300]!r}"})
                os._exit(2)
            return {"ok": False, "server": server, "error": f"HTTP {err.code}: {err.read()[:200]!r}"}
        except Exception as err:  # refused, reset, timed out: the server is gone
            return {"ok": False, "server": server, "error": f"{type(err).__name__}: {err}"}

    def work() -> None:
        while True:
            with lock:
                if acknowledged[0] >= args.count:
                    return
                acknowledged[0] += 1  # this thread sends until one is acknowledged
            for failures in itertools.count():
                if failures == 100:
                    say({"ok": False, "server": None, "error": "no server answered 100 times in a row; giving up"})
                    os._exit(1)
                server = args.server[next(turns) % len(args.server)]
                answer = create(server)
                say(answer)
                if answer["ok"]:
                    break
                time.sleep(0.1)

    threads = [threading.Thread(target=work) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
