#!/usr/bin/env bash
# Starts moto's S3-compatible server on HOST:PORT (HOST: 127.0.0.1 unless
# given) in the background for tests/s3_store.rs and tests/multi_host.rs and
# prints its process id. The first run creates the venv target/moto-venv and
# installs moto[server] from PyPI (about a minute); `--install` only does that
# (the multi-host test installs first, then starts moto inside a network
# namespace that cannot reach PyPI).
# Usage: tests/s3/start-moto.sh PORT [HOST] | tests/s3/start-moto.sh --install
set -euo pipefail

port=${1:?usage: start-moto.sh PORT [HOST] | start-moto.sh --install}
host=${2:-127.0.0.1}
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=$root/target/moto-venv

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" >&2
fi
if [ ! -x "$venv/bin/moto_server" ]; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]' >&2
fi
if [ "$port" = --install ]; then
    exit 0
fi

# Detached from our stdout so the caller's pipe closes when this script exits.
if [ "$host" = 127.0.0.1 ]; then
    log=$venv/moto-$port.log
else
    log=$venv/moto-$host-$port.log
fi
"$venv/bin/moto_server" -H "$host" -p "$port" </dev/null >"$log" 2>&1 &
echo $!
