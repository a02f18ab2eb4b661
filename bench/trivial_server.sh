# Sourced by the WAL scripts (`wal_frames.sh`, `wal_pages_by_table.sh`):
# starts `sluice server` ($binary, embedded worker) in a temporary
# SLUICE_HOME ($home) on 127.0.0.1:$port with bench_flow.wasm's `sequential`
# flow deployed with count=0, removes it all on exit, and defines `one_run`
# (POST a run, then `GET /flow-runs/{id}?wait=5`). Sets $server, the pid.
# A caller may set $launcher (an array: the server runs under it, as
# `server_callgrind.sh` runs it under valgrind) and $ready_tries (tenths of
# a second to wait for the server, 50 by default).
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
guest="${CARGO_TARGET_DIR:-$repo/target}/wasm32-wasip2/guest/bench_flow.wasm"
home=$(mktemp -d)
export SLUICE_HOME=$home SLUICE_CACHE_DIR=$home/cache
cleanup() { [[ -n ${server:-} ]] && kill "$server" 2>/dev/null; rm -rf "$home"; }
trap cleanup EXIT
"$binary" deploy "$guest" --flow sequential --name trivial --param count=0 >/dev/null
[[ -n ${launcher+x} ]] || launcher=()
"${launcher[@]}" "$binary" server --port "$port" --workers 4 >"$home/server.out" 2>"$home/server.err" &
server=$!
for _ in $(seq "${ready_tries:-50}"); do [[ -s $home/admin-token ]] && curl -sf "http://127.0.0.1:$port/api/v1/health" >/dev/null && break; sleep 0.1; done
token=$(cat "$home/admin-token")
api=http://127.0.0.1:$port/api/v1
one_run() {
    local id
    id=$(curl -sf -XPOST -H "Authorization: Bearer $token" "$api/deployments/sequential/trivial/runs" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
    curl -sf -H "Authorization: Bearer $token" "$api/flow-runs/$id?wait=5" >/dev/null
}
