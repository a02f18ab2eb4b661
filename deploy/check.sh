#!/bin/sh
# Lints deploy/ (run by `make test`; `make deploy-deps` installs the tools):
# compose.yaml against the Compose specification (check-jsonschema), the
# Kubernetes manifests against Kubernetes' schemas with unknown fields
# refused (kubernetes-validate --strict), and the variables and flags they
# use against what the code reads and `sluice … --help` lists (check.py), and
# the Grafana dashboard's metrics against those the code registers (check_dashboard.py).
# Then feeds each check broken copies and fails unless every one is refused.
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
V=${DEPLOY_VENV:-$REPO/target/deploy-venv}
SLUICE=${SLUICE:-$REPO/target/debug/sluice}
if [ ! -x "$V/bin/check-jsonschema" ] || [ ! -x "$V/bin/kubernetes-validate" ]; then
    echo "deploy/check.sh: the linters are not in $V: run \`make deploy-deps\` (deploy/setup.sh)" >&2
    exit 2
fi
if [ ! -x "$SLUICE" ]; then
    echo "deploy/check.sh: $SLUICE is not built: run \`cargo build -p sluice\` (or set SLUICE)" >&2
    exit 2
fi
cd "$REPO/deploy"
echo "deploy/compose.yaml against the Compose specification:"
"$V/bin/check-jsonschema" --builtin-schema vendor.compose-spec compose.yaml
echo "deploy/k8s against Kubernetes' schemas (strict):"
"$V/bin/kubernetes-validate" --strict --quiet k8s/*.yaml && echo "ok -- $(ls k8s/*.yaml | wc -l) files"
echo "variables and flags against runtime/src and \`sluice server|worker --help\`:"
"$V/bin/python" check.py names "$REPO" "$SLUICE" compose.yaml .env.example Dockerfile k8s/*.yaml
echo "ok"
echo "broken copies, each to be refused:"
"$V/bin/python" check.py broken "$REPO" "$SLUICE" "$V"
echo "Grafana dashboards against the metrics runtime/src/observe/metrics.rs registers:"
"$V/bin/python" check_dashboard.py "$REPO" grafana/*.json
echo "deploy/: all checks passed"
