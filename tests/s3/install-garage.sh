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

# `garage --version` prints `garage cargo:2.5.0 [features: …]` for a crates.io build.
installed() { "$bin" --version 2>/dev/null | grep -qF "garage cargo:$version "; }

if ! installed; then
    # Only the SQLite metadata engine, bundled: no LMDB, metrics or K2V to build.
    # --debug: less than half the compile time of a release build, and the
    # checks still take seconds.
    "${CARGO:-cargo}" install garage --version "$version" --locked --debug \
        --no-default-features --features bundled-libs,sqlite \
        --root "$root/target/tools" --force >&2
    installed || { echo "$bin is not garage $version after installing it" >&2; exit 1; }
fi
echo "$bin"
