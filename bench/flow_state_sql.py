#!/usr/bin/env python3
"""What recording one flow-run state costs inside SQLite, by layout: the
statements run 2,000 times in one transaction on a copy of a real database
(so commits and fsyncs are left out), best of 9, in µs per state with
Python's own call included. The database should be one a server wrote
after some runs on the layout before flow states moved into their row
(the variants rebuild the trigger themselves), for example:

    SLUICE_HOME=/tmp/h sluice server …   # run a few thousand trivial runs, stop it
    bench/flow_state_sql.py /tmp/h/sluice.db

Variants: the `UPDATE` alone; `UPDATE` + a `states` row whose trigger
records the event (before); the trigger appending to the run's row instead
(what the rare paths do after); the `UPDATE` appending to the row and the
event inserted by the writer (the hot path after).
"""
import shutil
import sqlite3
import sys
import tempfile
import time

TRIGGER_AFTER = """CREATE TRIGGER states_make_events BEFORE INSERT ON states WHEN NEW.kind = 'flow'
BEGIN
    UPDATE flow_runs SET history = history || json_array(NEW.state, NEW.message, NEW.attempt, NEW.time) || char(10)
        WHERE id = NEW.run;
    INSERT INTO events (tenant, name, time, flow_run, flow, deployment, tags, payload)
    SELECT f.tenant, 'sluice.flow-run.' || NEW.state, NEW.time, f.id, f.flow, f.deployment,
        COALESCE((SELECT json_extract(d.body, '$.tags') FROM deployments d
                  WHERE d.tenant = f.tenant AND d.flow = substr(f.deployment, 1, instr(f.deployment, '/') - 1)
                  AND d.name = substr(f.deployment, instr(f.deployment, '/') + 1)), '[]'),
        json_object('state', NEW.state, 'message', NEW.message, 'attempt', NEW.attempt)
    FROM flow_runs f WHERE f.id = NEW.run;
    SELECT RAISE(IGNORE);
END;"""
UPDATE = "UPDATE flow_runs SET state = 'Running', message = NULL WHERE id = :run"
UPDATE_WITH_HISTORY = """UPDATE flow_runs SET state = 'Running', message = NULL,
    history = history || json_array('Running', NULL, 1, :t) || char(10) WHERE id = :run"""
STATE_ROW = """INSERT INTO states (run, seq, kind, state, message, attempt, time) VALUES
    (:run, (SELECT COALESCE(MAX(seq), 0) + 1 FROM states WHERE run = :run), 'flow', 'Running', NULL, 1, :t)"""
EVENT = """INSERT INTO events (tenant, name, time, flow_run, flow, deployment, tags, payload)
    SELECT f.tenant, 'sluice.flow-run.Running', :t, f.id, f.flow, f.deployment,
        COALESCE((SELECT json_extract(d.body, '$.tags') FROM deployments d
                  WHERE d.tenant = f.tenant AND d.flow = substr(f.deployment, 1, instr(f.deployment, '/') - 1)
                  AND d.name = substr(f.deployment, instr(f.deployment, '/') + 1)), '[]'),
        json_object('state', 'Running', 'message', NULL, 'attempt', 1)
    FROM flow_runs f WHERE f.id = :run"""
WITH_HISTORY = ["DROP TRIGGER IF EXISTS states_make_events", "DROP TRIGGER IF EXISTS flow_states_kept_in_their_run"]


def add_history(c):
    columns = [row[1] for row in c.execute("PRAGMA table_info(flow_runs)")]
    if "history" not in columns:
        c.execute("ALTER TABLE flow_runs ADD COLUMN history TEXT NOT NULL DEFAULT ''")


def measure(source, work, label, setup, statements, history, reps=9, runs=2000):
    best = float("inf")
    for _ in range(reps):
        copy = f"{work}/copy.db"
        shutil.copy(source, copy)
        c = sqlite3.connect(copy, isolation_level=None)
        c.execute("PRAGMA journal_mode = WAL")
        c.execute("PRAGMA synchronous = NORMAL")
        c.execute("PRAGMA cache_size = -65536")
        if history:
            add_history(c)
        for statement in setup:
            c.execute(statement)
        ids = [row[0] for row in c.execute("SELECT id FROM flow_runs LIMIT ?", (runs,))]
        start = time.perf_counter()
        c.execute("BEGIN")
        for i, run in enumerate(ids):
            for statement in statements:
                c.execute(statement, {"run": run, "t": "2026-12-08T00:00:%02d.%06dZ" % (i % 60, i)})
        c.execute("COMMIT")
        best = min(best, (time.perf_counter() - start) / len(ids) * 1e6)
        c.close()
    print(f"| {label} | {best:.1f} |")


def main():
    source = sys.argv[1]
    with tempfile.TemporaryDirectory() as work:
        src = f"{work}/source.db"
        # One file: the WAL folded into the copy every variant starts from.
        sqlite3.connect(source).execute(f"VACUUM INTO '{src}'")
        print("| how a state is recorded | µs per state |\n| --- | ---: |")
        measure(src, work, "`UPDATE flow_runs` alone", [], [UPDATE], False)
        measure(src, work, "`UPDATE` + a `states` row, event by trigger (before)", [], [UPDATE, STATE_ROW], False)
        measure(src, work, "`UPDATE` + `states` insert, trigger appends to the row (rare paths, after)",
                WITH_HISTORY + [TRIGGER_AFTER], [UPDATE, STATE_ROW], True)
        measure(src, work, "`UPDATE` with the history + the writer's event (hot path, after)",
                WITH_HISTORY, [UPDATE_WITH_HISTORY, EVENT], True)


if __name__ == "__main__":
    main()
