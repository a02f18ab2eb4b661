#!/bin/sh
# Create (if needed) the venv used by bench/run.py: Prefect (for
# bench/prefect/prefect_bench.py) and matplotlib (for the plot); print the
# installed Prefect version.
# Venv location: $PREFECT_BENCH_VENV, default $REPO/target/prefect-venv.
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
VERSION=3.9.1
V=${PREFECT_BENCH_VENV:-$REPO/target/prefect-venv}
if ! "$V/bin/python" -c "import prefect, matplotlib, sys; sys.exit(prefect.__version__ != '$VERSION')" 2>/dev/null; then
    mkdir -p "$(dirname "$V")"
    [ -x "$V/bin/python" ] || python3 -m venv "$V"
    "$V/bin/python" -m pip install --quiet --disable-pip-version-check "prefect==$VERSION" matplotlib
fi
"$V/bin/python" -c "import prefect; print('prefect', prefect.__version__, '$V')"
