#!/usr/bin/env bash
# Starts moto's S3-compatible server on 127.0.0.1:PORT in the background for
# tests/s3_store.rs and prints its process id. The first run creates the venv
# target/moto-venv and installs moto[server] from PyPI (about a minute).
# Usage: tests/s3/start-moto.sh PORT
set -euo pipefail

port=${1:?usage: start-moto.sh PORT}
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=$root/target/moto-venv

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" >&2
fi
if [ ! -x "$venv/bin/moto_server" ]; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]' >&2
fi

# Detached from our stdout so the caller's pipe closes when this script exits.
log=$venv/moto-$port.log
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" </dev/null >"$log" 2>&1 &
echo $!
