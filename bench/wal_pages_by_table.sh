#!/usr/bin/env bash
# Which tables and indexes the WAL pages of a trivial API run belong to, on
# SQLite: starts `sluice server` (the binary given, embedded worker) in a
# temporary SLUICE_HOME on 127.0.0.1, deploys bench_flow.wasm's `sequential`
# flow with count=0, runs 200 runs to warm up, then traces the server's WAL
# frame writes (strace) during 10 runs one at a time (POST, then
# `GET /flow-runs/{id}?wait=5`) and names each frame's page by the B-tree
# that owns it (SQLite's `dbstat`, through Python's sqlite3). Prints pages
# per run for each. Needs strace, python3 and the guests (`make guests`).
#
#   bench/wal_pages_by_table.sh target/release/sluice [port]
set -euo pipefail
binary=$(realpath "$1")
port=${2:-18098}
source "$(dirname "$0")/trivial_server.sh"
# The first runs grow the tables: their pages are not a steady run's.
for _ in $(seq 200); do one_run; done
sleep 0.5
strace -f -p "$server" -e trace=pwrite64 -o "$home/trace" 2>/dev/null &
tracer=$!
sleep 1
runs=10
for _ in $(seq "$runs"); do one_run; sleep 0.05; done
sleep 0.3
kill "$tracer"
wait "$tracer" 2>/dev/null || true
wal_fds=$(find "/proc/$server/fd" -lname '*-wal' -printf '%f|' | sed 's/|$//')
database=$(find "$home" -name '*.db' | head -1)
kill "$server"
wait "$server" 2>/dev/null || true
server=
python3 - "$home/trace" "$database" "$wal_fds" "$runs" <<'PY'
import collections, re, sqlite3, sys
trace, database, fds, runs = sys.argv[1], sys.argv[2], sys.argv[3].split('|'), int(sys.argv[4])
frames = []
for line in open(trace):
    # Each WAL frame is a 24-byte header (page number, then the database
    # size after a commit's last frame, else 0) and then the page.
    found = re.search(r'pwrite64\((\d+), "((?:[^"\\]|\\.)*)"(?:\.\.\.)?, 24, ', line)
    if found and found.group(1) in fds:
        header = found.group(2).encode('latin1').decode('unicode_escape').encode('latin1')
        frames.append((int.from_bytes(header[0:4], 'big'), int.from_bytes(header[4:8], 'big')))
owners = dict(sqlite3.connect(database).execute('SELECT pageno, name FROM dbstat'))
pages = collections.Counter(owners.get(page, f'page {page}') for page, _ in frames)
commits = sum(1 for _, size in frames if size)
print(f'{len(frames) / runs:.1f} WAL pages and {commits / runs:.1f} commits per run ({runs} runs)')
for name, count in pages.most_common():
    print(f'{count / runs:5.1f}  {name}')
PY
