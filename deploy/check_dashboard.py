"""Checks the Grafana dashboards in deploy/grafana/, run by deploy/check.sh.

REPO FILE...: each file is a JSON dashboard with panels, and every `sluice_…`
metric its queries name is one runtime/src/observe/metrics.rs registers (a
histogram's `_bucket`, `_sum` and `_count` series included). Then a copy
naming a made-up metric must be refused. (tests/observability.rs checks the
same names against what a live server and worker really serve.)
"""

import json
import re
import sys
import tempfile
from pathlib import Path

METRIC = re.compile(r"sluice_[a-z0-9_]+")


def registered(repo):
    """The series names the code can export."""
    source = (Path(repo) / "runtime/src/observe/metrics.rs").read_text()
    names = set()
    for name in re.findall(r'"(sluice_[a-z0-9_]+)"', source):
        names.add(name)
        names.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def exprs(value):
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "expr" and isinstance(inner, str):
                yield inner
            else:
                yield from exprs(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from exprs(inner)


def problems(path, known):
    try:
        dashboard = json.loads(Path(path).read_text())
    except ValueError as err:
        return [f"{path}: not JSON: {err}"]
    found = []
    if not dashboard.get("panels"):
        found.append(f"{path}: no panels")
    queries = list(exprs(dashboard))
    if not queries:
        found.append(f"{path}: no queries")
    for expr in queries:
        for name in METRIC.findall(expr):
            if name not in known:
                found.append(f"{path}: `{expr}` names {name}, which Sluice does not export")
    return found


def main(repo, files):
    known = registered(repo)
    failed = False
    for path in files:
        found = problems(path, known)
        for problem in found:
            print(problem, file=sys.stderr)
        failed |= bool(found)
        if not found:
            print(f"ok -- {path}: {len(list(exprs(json.loads(Path(path).read_text()))))} queries")
    # A copy naming a metric that does not exist must be refused.
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as broken:
        copy = json.loads(Path(files[0]).read_text())
        copy["panels"][0]["targets"][0]["expr"] = "rate(sluice_made_up_total[5m])"
        json.dump(copy, broken)
    if not problems(broken.name, known):
        print("a dashboard naming a made-up metric was not refused", file=sys.stderr)
        failed = True
    Path(broken.name).unlink()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
