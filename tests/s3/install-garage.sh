#!/usr/bin/env bash
# Installs Garage, a real S3-compatible object store, from crates.io into
# target/tools/bin/garage (once; later runs reuse it) and prints its path.
# A cold install compiles Garage from source: see README ("Artifact store")
# for how long that takes and why it is not part of every `make test`.
# Usage: tests/s3/install-garage.sh
set -euo pipefail

version=2.5.0
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/target/tools/bin/garage

if ! "$bin" --version 2>/dev/null | grep -q "v$version"; then
    # Only the SQLite metadata engine, bundled: no LMDB, metrics or K2V to build.
    "${CARGO:-cargo}" install garage --version "$version" --locked \
        --no-default-features --features bundled-libs,sqlite \
        --root "$root/target/tools" >&2
    "$bin" --version | grep -q "v$version" || { echo "installed $bin is not garage v$version" >&2; exit 1; }
fi
echo "$bin"
