"""Checks of deploy/ beyond the schemas, run by deploy/check.sh.

names REPO SLUICE FILE...: every SLUICE_* and AWS_* variable the files
    name is one the code in REPO/runtime/src reads, and every --flag given to
    `sluice server` or `sluice worker` (Compose commands, Kubernetes args) is
    one that `SLUICE <command> --help` lists.
broken REPO SLUICE VENV: broken copies of the real files (a typo in a field
    name, a wrong type, a made-up variable or flag) are each refused by the
    check that should catch them; a linter that passes everything fails here.
"""

import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

COMMANDS = ("server", "worker")


def commands_of(path):
    """The argument lists given to `sluice server`/`sluice worker` in a Compose file or manifests."""
    found = []
    for document in yaml.safe_load_all(Path(path).read_text()):
        if not isinstance(document, dict):
            continue
        if "services" in document:
            for service in document["services"].values():
                command = service.get("command") or []
                if isinstance(command, str):
                    command = [command]
                if command and command[0] in COMMANDS:
                    found.append(command)
                # A shell line (`… exec sluice worker --api …`): the words after `sluice`.
                for line in command:
                    words = shlex.split(line) if " " in line else []
                    if "sluice" in words:
                        found.append(words[words.index("sluice") + 1 :])
        spec = document.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []):
            args = container.get("args") or []
            if args and args[0] in COMMANDS:
                found.append(args)
    return found


def names(repo, sluice, files):
    """Problems with the variables and flags `files` use; empty when there are none."""
    code = "\n".join(p.read_text() for p in Path(repo, "runtime/src").rglob("*.rs"))
    helps = {c: subprocess.run([sluice, c, "--help"], capture_output=True, text=True, check=True).stdout for c in COMMANDS}
    problems = []
    used = 0
    for path in files:
        text = Path(path).read_text()
        for variable in sorted(set(re.findall(r"\b(?:SLUICE|AWS)_[A-Z_]+[A-Z]\b", text))):
            used += 1
            if not re.search(rf"\b{variable}\b", code):
                problems.append(f"{path}: {variable} is not a variable sluice reads (runtime/src never names it)")
        if path.endswith((".yaml", ".yml")):
            for args in commands_of(path):
                command = args[0]
                if command not in COMMANDS:
                    problems.append(f"{path}: `sluice {command}` is not a command these files should run")
                    continue
                for flag in (a.split("=")[0] for a in args[1:] if a.startswith("--")):
                    used += 1
                    if not re.search(rf"(?m)^\s+(?:-\w, )?{re.escape(flag)}\b", helps[command]):
                        problems.append(f"{path}: `sluice {command}` has no flag {flag}")
    if used == 0:
        problems.append("no variable or flag found at all: the check reads nothing")
    return problems


def broken(repo, sluice, venv):
    """Feeds each check a broken copy; returns the copies that were not refused."""
    deploy = Path(repo, "deploy")
    compose = [str(Path(venv, "bin/check-jsonschema")), "--builtin-schema", "vendor.compose-spec"]
    manifests = [str(Path(venv, "bin/kubernetes-validate")), "--strict", "--quiet"]
    cases = [
        ("compose.yaml", "    restart: unless-stopped\n\n  # Any", "    restart_policy: unless-stopped\n\n  # Any", compose),
        ("compose.yaml", '"0"]\n    deploy:\n      replicas: 2', '"0"]\n    deploy:\n      replicas: [2]', compose),
        ("k8s/server.yaml", "  replicas: 2", "  replicas: two", manifests),
        ("k8s/server.yaml", "          readinessProbe:", "          readynessProbe:", manifests),
        ("k8s/config.yaml", "\ndata:\n", "\ndata:\n  SLUICE_STORE: x\n", "names"),
        ("k8s/worker.yaml", '"--limit", "4"', '"--concurrency", "4"', "names"),
        ("compose.yaml", "--api http://server:4200", "--server http://server:4200", "names"),
    ]
    not_refused = []
    with tempfile.TemporaryDirectory(prefix="sluice-deploy-broken-") as scratch:
        for number, (name, old, new, check) in enumerate(cases):
            text = (deploy / name).read_text()
            if text.count(old) != 1:
                not_refused.append(f"{name}: the broken copy cannot be made ({old!r} is not there exactly once)")
                continue
            copy = Path(scratch, f"{number}-{Path(name).name}")
            copy.write_text(text.replace(old, new))
            if check == "names":
                refused = bool(names(repo, sluice, [str(copy)]))
            else:
                refused = subprocess.run([*check, str(copy)], capture_output=True).returncode != 0
            changed = next(line for line in new.splitlines() if line not in old.splitlines())
            print(f"  {'refused' if refused else 'PASSED'}: {name} with `{changed.strip()}`")
            if not refused:
                not_refused.append(f"{name} with {new!r} passed")
    return not_refused


def main(argv):
    if len(argv) >= 5 and argv[1] == "names":
        problems = names(argv[2], argv[3], argv[4:])
    elif len(argv) == 5 and argv[1] == "broken":
        problems = broken(argv[2], argv[3], argv[4])
    else:
        sys.exit(__doc__)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
