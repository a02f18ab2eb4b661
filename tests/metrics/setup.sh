#!/bin/sh
# Create (if needed) the venv tests/observability.rs uses: prometheus_client,
# whose text-format parser reads what `GET /metrics` serves, at a pinned version.
# Venv location: $METRICS_VENV, default $REPO/target/metrics-venv.
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
CLIENT=0.21.1
V=${METRICS_VENV:-$REPO/target/metrics-venv}
installed() {
    "$V/bin/python" - "$CLIENT" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(version("prometheus_client") != sys.argv[1])
PY
}
if ! installed; then
    mkdir -p "$(dirname "$V")"
    [ -x "$V/bin/python" ] || python3 -m venv "$V"
    "$V/bin/python" -m pip install --quiet --disable-pip-version-check "prometheus_client==$CLIENT"
fi
echo "prometheus_client $CLIENT in $V"
