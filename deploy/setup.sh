#!/bin/sh
# Create (if needed) the venv deploy/check.sh uses: check-jsonschema (the
# Compose file against the Compose specification) and kubernetes-validate
# (the manifests against Kubernetes' own schemas, bundled), at pinned versions.
# Venv location: $DEPLOY_VENV, default $REPO/target/deploy-venv.
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
CHECK_JSONSCHEMA=0.39.0
KUBERNETES_VALIDATE=1.37.0
V=${DEPLOY_VENV:-$REPO/target/deploy-venv}
installed() {
    "$V/bin/python" - "$CHECK_JSONSCHEMA" "$KUBERNETES_VALIDATE" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(version("check-jsonschema") != sys.argv[1] or version("kubernetes-validate") != sys.argv[2])
PY
}
if ! installed; then
    mkdir -p "$(dirname "$V")"
    [ -x "$V/bin/python" ] || python3 -m venv "$V"
    "$V/bin/python" -m pip install --quiet --disable-pip-version-check \
        "check-jsonschema==$CHECK_JSONSCHEMA" "kubernetes-validate==$KUBERNETES_VALIDATE"
fi
echo "check-jsonschema $CHECK_JSONSCHEMA, kubernetes-validate $KUBERNETES_VALIDATE in $V"
