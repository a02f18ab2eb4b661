#!/usr/bin/env bash
# Starts a single-node Garage (a real S3-compatible object store) for
# tests/s3_store.rs: S3 API on 127.0.0.1:S3_PORT, cluster RPC on
# 127.0.0.1:RPC_PORT, metadata (SQLite) and data in a fresh temporary folder,
# replication factor 1, a random RPC secret and a random access key that may
# read and write BUCKET. Installs Garage first if needed (install-garage.sh).
#
# Prints `name=value` lines: pid, dir (the temporary folder, holding
# garage.log; the caller removes it), endpoint, region, bucket,
# access_key_id, secret_access_key.
# Usage: tests/s3/start-garage.sh S3_PORT RPC_PORT BUCKET
set -euo pipefail

usage="usage: start-garage.sh S3_PORT RPC_PORT BUCKET"
s3_port=${1:?$usage}
rpc_port=${2:?$usage}
bucket=${3:?$usage}
here=$(cd "$(dirname "$0")" && pwd)

garage=$("$here/install-garage.sh")
dir=$(mktemp -d "${TMPDIR:-/tmp}/sluice-garage.XXXXXX")
random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
access_key_id=GK$(random_hex 12)
secret_access_key=$(random_hex 32)
region=garage

# Loopback only: both listeners, and the address the node tells peers (it has none).
umask 077
cat >"$dir/garage.toml" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(random_hex 32)"

[s3_api]
s3_region = "$region"
api_bind_addr = "127.0.0.1:$s3_port"
TOML

# --single-node lays out a one-node cluster (what `garage layout assign` and
# `garage layout apply` would do); --default-bucket creates the key and the
# bucket and grants the key read and write on it, all before the S3 API listens.
# Detached from our stdout so the caller's pipe closes when this script exits.
GARAGE_DEFAULT_ACCESS_KEY=$access_key_id \
GARAGE_DEFAULT_SECRET_KEY=$secret_access_key \
GARAGE_DEFAULT_BUCKET=$bucket \
RUST_LOG=${RUST_LOG:-garage=info} NO_COLOR=1 \
    "$garage" -c "$dir/garage.toml" server --single-node --default-bucket </dev/null >"$dir/garage.log" 2>&1 &

cat <<OUT
pid=$!
dir=$dir
endpoint=http://127.0.0.1:$s3_port
region=$region
bucket=$bucket
access_key_id=$access_key_id
secret_access_key=$secret_access_key
OUT
