#!/bin/sh
# Create (if needed) the venv tests/openapi_client.rs uses: openapi-spec-validator
# (is the served document valid OpenAPI 3.1?) and openapi-python-client (can a
# client be generated from it?), at pinned versions.
# Venv location: $OPENAPI_VENV, default $REPO/target/openapi-venv.
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
VALIDATOR=0.9.0
GENERATOR=0.29.1
V=${OPENAPI_VENV:-$REPO/target/openapi-venv}
installed() {
    "$V/bin/python" - "$VALIDATOR" "$GENERATOR" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(version("openapi-spec-validator") != sys.argv[1] or version("openapi-python-client") != sys.argv[2])
PY
}
if ! installed; then
    mkdir -p "$(dirname "$V")"
    [ -x "$V/bin/python" ] || python3 -m venv "$V"
    "$V/bin/python" -m pip install --quiet --disable-pip-version-check \
        "openapi-spec-validator==$VALIDATOR" "openapi-python-client==$GENERATOR"
fi
echo "openapi-spec-validator $VALIDATOR, openapi-python-client $GENERATOR in $V"
