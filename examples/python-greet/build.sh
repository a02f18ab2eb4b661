#!/usr/bin/env bash
# Builds the Python greet flow into a WebAssembly component with componentize-py.
# Usage: examples/python-greet/build.sh [OUTPUT.wasm]
# Env:   SLUICE_PY_VENV  venv holding componentize-py (default: $REPO/target/py-venv)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="${SLUICE_PY_VENV:-$REPO/target/py-venv}"
OUT="${1:-$REPO/target/wasm32-wasip2/guest/python_greet.wasm}"
CPY_VERSION="0.25.1"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV" >/dev/null
fi
if [ "$("$VENV/bin/componentize-py" --version 2>/dev/null || true)" != "componentize-py $CPY_VERSION" ]; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "componentize-py==$CPY_VERSION" >/dev/null
fi

mkdir -p "$(dirname "$OUT")"
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac

# componentize-py bundles every file on its -p path and pre-initialises the app
# with a native Python, so build from a scratch copy holding only app.py: the
# source tree stays free of __pycache__ and the component of build.sh/README.
# VIRTUAL_ENV is unset so an active venv's site-packages don't get bundled.
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cp "$HERE/app.py" "$WORK/"
if ! (cd "$WORK" && env -u VIRTUAL_ENV PYTHONDONTWRITEBYTECODE=1 \
        "$VENV/bin/componentize-py" -d "$REPO/wit" -w flow componentize -p "$WORK" app -o "$OUT" \
        >"$WORK/log" 2>&1); then
    cat "$WORK/log" >&2
    exit 1
fi
echo "built $OUT"
