//! Versioned schema migrations, applied in order and counted in
//! `PRAGMA user_version`, so an older database is upgraded on open.

use rusqlite::Connection;

/// Each entry moves the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE artifacts (
    digest      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    description TEXT NOT NULL,
    imports     TEXT NOT NULL,
    pushed_at   TEXT NOT NULL
);
CREATE TABLE deployments (
    flow        TEXT NOT NULL,
    name        TEXT NOT NULL,
    body        TEXT NOT NULL,
    created     TEXT NOT NULL,
    updated     TEXT NOT NULL,
    PRIMARY KEY (flow, name)
);
CREATE TABLE flow_runs (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    flow        TEXT NOT NULL,
    deployment  TEXT,
    parent      TEXT,
    artifact    TEXT NOT NULL,
    parameters  TEXT NOT NULL,
    state       TEXT,
    message     TEXT,
    result      TEXT,
    created     TEXT NOT NULL,
    scheduled   TEXT,
    started     TEXT,
    ended       TEXT
);
CREATE INDEX flow_runs_by_created ON flow_runs (created DESC);
CREATE INDEX flow_runs_by_name ON flow_runs (name);
CREATE INDEX flow_runs_by_flow ON flow_runs (flow, created DESC);
CREATE INDEX flow_runs_by_deployment ON flow_runs (deployment, created DESC);
CREATE INDEX flow_runs_by_state ON flow_runs (state, created DESC);
CREATE INDEX flow_runs_by_parent ON flow_runs (parent);
CREATE TABLE task_runs (
    id          TEXT PRIMARY KEY,
    flow_run    TEXT NOT NULL,
    task        TEXT NOT NULL,
    name        TEXT NOT NULL,
    input       TEXT NOT NULL,
    state       TEXT,
    message     TEXT,
    result      TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created     TEXT NOT NULL,
    ended       TEXT
);
CREATE INDEX task_runs_by_flow_run ON task_runs (flow_run, created);
CREATE TABLE states (
    seq         INTEGER PRIMARY KEY,
    run         TEXT NOT NULL,
    kind        TEXT NOT NULL,
    state       TEXT NOT NULL,
    message     TEXT,
    attempt     INTEGER NOT NULL,
    time        TEXT NOT NULL
);
CREATE INDEX states_by_run ON states (run, seq);
CREATE TABLE logs (
    seq         INTEGER PRIMARY KEY,
    flow_run    TEXT NOT NULL,
    task_run    TEXT,
    level       TEXT NOT NULL,
    message     TEXT NOT NULL,
    time        TEXT NOT NULL
);
CREATE INDEX logs_by_flow_run ON logs (flow_run, seq);
CREATE TABLE task_cache (
    key         TEXT PRIMARY KEY,
    result      TEXT NOT NULL,
    expires     TEXT
);
"#,
    r#"
ALTER TABLE flow_runs ADD COLUMN auto_scheduled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE flow_runs ADD COLUMN claimed_by TEXT;
CREATE UNIQUE INDEX flow_runs_schedule_slot ON flow_runs (deployment, scheduled) WHERE auto_scheduled = 1;
CREATE INDEX flow_runs_due ON flow_runs (state, scheduled) WHERE claimed_by IS NULL;
"#,
    r#"
CREATE TABLE workers (
    name        TEXT PRIMARY KEY,
    started     TEXT NOT NULL,
    last_seen   TEXT NOT NULL
);
CREATE INDEX flow_runs_by_taker ON flow_runs (claimed_by) WHERE ended IS NULL;
"#,
    r#"
CREATE TABLE work_pools (
    name        TEXT PRIMARY KEY,
    paused      INTEGER NOT NULL DEFAULT 0,
    description TEXT,
    created     TEXT NOT NULL
);
CREATE TABLE work_queues (
    pool        TEXT NOT NULL,
    name        TEXT NOT NULL,
    tags        TEXT NOT NULL DEFAULT '[]',
    priority    INTEGER NOT NULL DEFAULT 1,
    concurrency_limit INTEGER,
    paused      INTEGER NOT NULL DEFAULT 0,
    created     TEXT NOT NULL,
    PRIMARY KEY (pool, name)
);
INSERT INTO work_pools (name, created) VALUES ('default', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
INSERT INTO work_queues (pool, name, created) VALUES ('default', 'default', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
ALTER TABLE flow_runs ADD COLUMN queue TEXT;
"#,
    // Tenants: every object gets an owner (existing ones go to `default`),
    // and names become unique per tenant, so the keys are rebuilt.
    r#"
CREATE TABLE tenants (
    name        TEXT PRIMARY KEY,
    policy      TEXT NOT NULL DEFAULT '{}',
    created     TEXT NOT NULL
);
INSERT INTO tenants (name, created) VALUES ('default', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    role        TEXT NOT NULL,
    name        TEXT,
    hash        BLOB NOT NULL,
    created     TEXT NOT NULL,
    expires     TEXT,
    revoked     TEXT
);
CREATE INDEX tokens_by_tenant ON tokens (tenant);
CREATE TABLE tenant_artifacts (
    tenant      TEXT NOT NULL,
    digest      TEXT NOT NULL,
    pushed_at   TEXT NOT NULL,
    PRIMARY KEY (tenant, digest)
);
INSERT INTO tenant_artifacts (tenant, digest, pushed_at) SELECT 'default', digest, pushed_at FROM artifacts;
CREATE TABLE deployments_by_tenant (
    tenant      TEXT NOT NULL,
    flow        TEXT NOT NULL,
    name        TEXT NOT NULL,
    body        TEXT NOT NULL,
    created     TEXT NOT NULL,
    updated     TEXT NOT NULL,
    PRIMARY KEY (tenant, flow, name)
);
INSERT INTO deployments_by_tenant SELECT 'default', flow, name, body, created, updated FROM deployments;
DROP TABLE deployments;
ALTER TABLE deployments_by_tenant RENAME TO deployments;
CREATE TABLE work_pools_by_tenant (
    tenant      TEXT NOT NULL,
    name        TEXT NOT NULL,
    paused      INTEGER NOT NULL DEFAULT 0,
    description TEXT,
    created     TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
);
INSERT INTO work_pools_by_tenant SELECT 'default', name, paused, description, created FROM work_pools;
DROP TABLE work_pools;
ALTER TABLE work_pools_by_tenant RENAME TO work_pools;
CREATE TABLE work_queues_by_tenant (
    tenant      TEXT NOT NULL,
    pool        TEXT NOT NULL,
    name        TEXT NOT NULL,
    tags        TEXT NOT NULL DEFAULT '[]',
    priority    INTEGER NOT NULL DEFAULT 1,
    concurrency_limit INTEGER,
    paused      INTEGER NOT NULL DEFAULT 0,
    created     TEXT NOT NULL,
    PRIMARY KEY (tenant, pool, name)
);
INSERT INTO work_queues_by_tenant SELECT 'default', pool, name, tags, priority, concurrency_limit, paused, created
    FROM work_queues;
DROP TABLE work_queues;
ALTER TABLE work_queues_by_tenant RENAME TO work_queues;
ALTER TABLE flow_runs ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
DROP INDEX flow_runs_schedule_slot;
CREATE UNIQUE INDEX flow_runs_schedule_slot ON flow_runs (tenant, deployment, scheduled) WHERE auto_scheduled = 1;
CREATE INDEX flow_runs_by_tenant ON flow_runs (tenant, created DESC);
CREATE INDEX flow_runs_due_by_tenant ON flow_runs (tenant, scheduled)
    WHERE claimed_by IS NULL AND state IN ('Scheduled', 'Late');
"#,
    // Secrets: values sealed (ChaCha20-Poly1305) with the key in SLUICE_HOME, never stored in clear.
    r#"
CREATE TABLE secrets (
    tenant      TEXT NOT NULL DEFAULT 'default',
    name        TEXT NOT NULL,
    sealed      BLOB NOT NULL,
    created     TEXT NOT NULL,
    updated     TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
);
"#,
    // The dashboard counts a tenant's runs of the last day by state: this
    // index answers it without reading a single row.
    r#"
CREATE INDEX flow_runs_by_tenant_day ON flow_runs (tenant, created, state, parent);
"#,
    // Cached results belong to a tenant: two tenants may push the same bytes,
    // and one must never read a result the other computed. Older entries
    // cannot be attributed to a tenant, so they are dropped (they are a cache).
    r#"
DROP TABLE task_cache;
CREATE TABLE task_cache (
    tenant      TEXT NOT NULL,
    key         TEXT NOT NULL,
    result      TEXT NOT NULL,
    expires     TEXT,
    PRIMARY KEY (tenant, key)
) WITHOUT ROWID;
"#,
    // Leases: of several servers on one database, the one holding a lease
    // does the work it names (the scheduler and crash detection).
    r#"
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires     TEXT NOT NULL
);
"#,
    // Web UI sessions (`store/sessions.rs`): the cookie holds a random id,
    // this table its sha256, the token that signed in and when it ends.
    r#"
CREATE TABLE ui_sessions (
    hash        BLOB PRIMARY KEY,
    token       TEXT NOT NULL,
    created     TEXT NOT NULL,
    expires     TEXT NOT NULL
);
CREATE INDEX ui_sessions_by_token ON ui_sessions (token);
"#,
    // The journal (`core/journal.rs`): each call's place in its flow run's
    // calls, and the attempt a flow run is on.
    r#"
ALTER TABLE flow_runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
ALTER TABLE flow_runs ADD COLUMN call_position INTEGER;
ALTER TABLE flow_runs ADD COLUMN call_batch INTEGER;
ALTER TABLE flow_runs ADD COLUMN call_attempt INTEGER;
ALTER TABLE task_runs ADD COLUMN call_position INTEGER;
ALTER TABLE task_runs ADD COLUMN call_batch INTEGER;
ALTER TABLE task_runs ADD COLUMN call_attempt INTEGER;
ALTER TABLE flow_runs ADD COLUMN claimed_at TEXT;
"#,
    // Retention (`--keep-runs`): the ended top-level runs, oldest first,
    // without reading the whole table.
    r#"
CREATE INDEX flow_runs_by_ended ON flow_runs (ended) WHERE parent IS NULL AND ended IS NOT NULL;
"#,
    // The event log (`core/events.rs`): every flow-run state change becomes
    // an event in the same transaction (a trigger, so no path that moves a
    // run is missed), beside what flows emit and webhook deliveries.
    // Webhooks and automations live next to it.
    r#"
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant      TEXT NOT NULL,
    name        TEXT NOT NULL,
    time        TEXT NOT NULL,
    flow_run    TEXT,
    task_run    TEXT,
    flow        TEXT,
    deployment  TEXT,
    tags        TEXT NOT NULL DEFAULT '[]',
    payload     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_by_tenant ON events (tenant, seq);
CREATE INDEX events_by_run ON events (flow_run);
CREATE TRIGGER states_make_events AFTER INSERT ON states WHEN NEW.kind = 'flow'
BEGIN
    INSERT INTO events (tenant, name, time, flow_run, flow, deployment, tags, payload)
    SELECT f.tenant, 'sluice.flow-run.' || NEW.state, NEW.time, f.id, f.flow, f.deployment,
        COALESCE((SELECT json_extract(d.body, '$.tags') FROM deployments d
                  WHERE d.tenant = f.tenant AND f.deployment = d.flow || '/' || d.name), '[]'),
        json_object('state', NEW.state, 'message', NEW.message, 'attempt', NEW.attempt)
    FROM flow_runs f WHERE f.id = NEW.run;
END;
CREATE TABLE webhooks (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    body        TEXT NOT NULL,
    sealed      BLOB
);
CREATE INDEX webhooks_by_tenant ON webhooks (tenant);
CREATE TABLE webhook_deliveries (
    hook        TEXT NOT NULL,
    key         TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    time        TEXT NOT NULL,
    PRIMARY KEY (hook, key)
);
CREATE TABLE automations (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    name        TEXT NOT NULL,
    body        TEXT NOT NULL,
    hits        TEXT NOT NULL DEFAULT '[]',
    UNIQUE (tenant, name)
);
"#,
    // A tenant's runs filtered by state, deployment or flow (the API's and
    // the UI's filters): a seek, where SQLite's planner walked every run of
    // the tenant by `flow_runs_by_tenant` (5 ms at 6,000 runs, growing).
    r#"
CREATE INDEX flow_runs_by_tenant_state ON flow_runs (tenant, state, created DESC);
CREATE INDEX flow_runs_by_tenant_deployment ON flow_runs (tenant, deployment, created DESC);
CREATE INDEX flow_runs_by_tenant_flow ON flow_runs (tenant, flow, created DESC);
"#,
    // Every flow-run listing by flow or deployment is a tenant's (the API's,
    // the UI's, the CLI's through either), served by the tenant-scoped
    // indexes above; the unscoped ones only cost page writes in every commit
    // that adds runs. (`flow_runs_by_state` stays: the scheduler and the
    // pause sweep list every tenant's Scheduled, Late and Paused runs.)
    r#"
DROP INDEX flow_runs_by_flow;
DROP INDEX flow_runs_by_deployment;
"#,
    // A task run's states move into its row (`history.rs`): six B-tree
    // inserts per task fewer on the hot path. The entries are the text
    // `history::entry` writes.
    r#"
ALTER TABLE task_runs ADD COLUMN history TEXT NOT NULL DEFAULT '';
UPDATE task_runs SET history = COALESCE(
    (SELECT group_concat(json_array(s.state, s.message, s.attempt, s.time) || char(10), '' ORDER BY s.seq)
       FROM states s WHERE s.run = task_runs.id), '');
DELETE FROM states WHERE kind = 'task';
"#,
    // Fewer index pages written per run (every commit writes each changed
    // page to the WAL; a trivial API run wrote about 58): runs by state only
    // while they wait (the scheduler's and the pause sweep's unscoped lists;
    // a tenant's listing by state has its own index), subflow runs only
    // under their parent, and no copy of `flow_runs_by_tenant_day`'s
    // `(tenant, created)` prefix.
    r#"
DROP INDEX flow_runs_by_tenant;
DROP INDEX flow_runs_by_parent;
CREATE INDEX flow_runs_by_parent ON flow_runs (parent) WHERE parent IS NOT NULL;
DROP INDEX flow_runs_by_state;
CREATE INDEX flow_runs_waiting ON flow_runs (state, created DESC) WHERE state IN ('Scheduled', 'Late', 'Paused');
"#,
    // The event of a state change looks its deployment's tags up by key:
    // matching `flow || '/' || name` read every deployment of the tenant, at
    // every state change of every run.
    r#"
DROP TRIGGER states_make_events;
CREATE TRIGGER states_make_events AFTER INSERT ON states WHEN NEW.kind = 'flow'
BEGIN
    INSERT INTO events (tenant, name, time, flow_run, flow, deployment, tags, payload)
    SELECT f.tenant, 'sluice.flow-run.' || NEW.state, NEW.time, f.id, f.flow, f.deployment,
        COALESCE((SELECT json_extract(d.body, '$.tags') FROM deployments d
                  WHERE d.tenant = f.tenant AND d.flow = substr(f.deployment, 1, instr(f.deployment, '/') - 1)
                  AND d.name = substr(f.deployment, instr(f.deployment, '/') + 1)), '[]'),
        json_object('state', NEW.state, 'message', NEW.message, 'attempt', NEW.attempt)
    FROM flow_runs f WHERE f.id = NEW.run;
END;
"#,
    // Events numbered by their rowid, without `AUTOINCREMENT`: its counter
    // row in `sqlite_sequence` was written at every event, two WAL pages per
    // run. Retention keeps the newest event (`retention.rs`), so a number is
    // never given twice. The state trigger names `events` and is left as it
    // is: the legacy rename does not rewrite or check it.
    r#"
PRAGMA legacy_alter_table = ON;
CREATE TABLE events_by_rowid (
    seq         INTEGER PRIMARY KEY,
    tenant      TEXT NOT NULL,
    name        TEXT NOT NULL,
    time        TEXT NOT NULL,
    flow_run    TEXT,
    task_run    TEXT,
    flow        TEXT,
    deployment  TEXT,
    tags        TEXT NOT NULL DEFAULT '[]',
    payload     TEXT NOT NULL DEFAULT '{}'
);
INSERT INTO events_by_rowid SELECT seq, tenant, name, time, flow_run, task_run, flow, deployment, tags, payload
    FROM events;
DROP TABLE events;
ALTER TABLE events_by_rowid RENAME TO events;
CREATE INDEX events_by_tenant ON events (tenant, seq);
CREATE INDEX events_by_run ON events (flow_run);
DELETE FROM sqlite_sequence WHERE name = 'events';
PRAGMA legacy_alter_table = OFF;
"#,
    // A flow run's states kept together, keyed by run and number, without
    // a rowid: `states_by_run` was a second B-tree written at every state
    // (2.7 WAL pages per run). Numbers are per run from now on (the next is
    // one past the run's highest); the old ones keep their order. The
    // trigger goes with the old table, so it is made again, unchanged.
    r#"
CREATE TABLE states_by_run_and_seq (
    run         TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    state       TEXT NOT NULL,
    message     TEXT,
    attempt     INTEGER NOT NULL,
    time        TEXT NOT NULL,
    PRIMARY KEY (run, seq)
) WITHOUT ROWID;
INSERT INTO states_by_run_and_seq SELECT run, seq, kind, state, message, attempt, time FROM states;
DROP TABLE states;
ALTER TABLE states_by_run_and_seq RENAME TO states;
CREATE TRIGGER states_make_events AFTER INSERT ON states WHEN NEW.kind = 'flow'
BEGIN
    INSERT INTO events (tenant, name, time, flow_run, flow, deployment, tags, payload)
    SELECT f.tenant, 'sluice.flow-run.' || NEW.state, NEW.time, f.id, f.flow, f.deployment,
        COALESCE((SELECT json_extract(d.body, '$.tags') FROM deployments d
                  WHERE d.tenant = f.tenant AND d.flow = substr(f.deployment, 1, instr(f.deployment, '/') - 1)
                  AND d.name = substr(f.deployment, instr(f.deployment, '/') + 1)), '[]'),
        json_object('state', NEW.state, 'message', NEW.message, 'attempt', NEW.attempt)
    FROM flow_runs f WHERE f.id = NEW.run;
END;
"#,
    // A flow run's states kept in its row (`flow_runs.history`), as a task
    // run's are (`history.rs`): a `states` row per state was a B-tree insert
    // and a WAL page per commit on the server's hot path. The writer appends
    // to the history and records the state's event itself; this trigger
    // does both for the statements that still insert a flow state into
    // `states` (a schedule's runs, late runs, crashes, cancellations), whose
    // row it then drops. Old rows stay where they are and are read first.
    r#"
ALTER TABLE flow_runs ADD COLUMN history TEXT NOT NULL DEFAULT '';
DROP TRIGGER states_make_events;
CREATE TRIGGER flow_states_kept_in_their_run BEFORE INSERT ON states WHEN NEW.kind = 'flow'
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
END;
"#,
];

/// Brings the database up to the newest schema.
pub fn migrate(connection: &mut Connection) -> rusqlite::Result<()> {
    let current: usize = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = connection.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// Refuses a database migrated by a newer Sluice, whose schema this one would misread.
pub fn refuse_newer(connection: &Connection, path: &std::path::Path) -> Result<(), super::StoreError> {
    let current: usize = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    super::postgres::refuse_newer(current, MIGRATIONS.len(), &format!("the SQLite database at {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Migrates `connection` up to, not including, the first migration whose SQL holds `marker`.
    fn migrate_until(connection: &Connection, marker: &str) {
        let before = MIGRATIONS.iter().position(|sql| sql.contains(marker)).unwrap();
        for sql in &MIGRATIONS[..before] {
            connection.execute_batch(sql).unwrap();
        }
        connection.pragma_update(None, "user_version", before).unwrap();
    }

    /// A store on a database migrated until `marker` (see [`migrate_until`]), then given `setup`.
    fn store_after(marker: &str, setup: &str) -> (tempfile::TempDir, crate::store::SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.db");
        let connection = Connection::open(&path).unwrap();
        migrate_until(&connection, marker);
        connection.execute_batch(setup).unwrap();
        drop(connection);
        let store = crate::store::SqliteStore::open(&path).unwrap();
        (dir, store)
    }

    /// Records flow run `run`'s `Running` as a runner does, committed; its time.
    async fn record_running(
        store: &crate::store::SqliteStore,
        run: crate::core::ids::RunId,
    ) -> chrono::DateTime<chrono::Utc> {
        use crate::core::record::{Event, Recorder, RunKind, StateRecord};
        let time = chrono::Utc::now();
        let state = crate::core::state::StateType::Running;
        store.record(&Event::State(StateRecord {
            run,
            kind: RunKind::Flow,
            state,
            message: None,
            attempt: 1,
            result: None,
            time,
        }));
        store.flush().await;
        time
    }

    #[test]
    fn a_database_migrated_by_a_newer_sluice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.db");
        drop(crate::store::SqliteStore::open(&path).unwrap());
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 999).unwrap();
        let message = crate::store::SqliteStore::open(&path).err().expect("refused").to_string();
        assert!(message.contains("schema version 999") && message.contains("newer"), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
    }

    #[test]
    fn task_states_recorded_as_rows_before_the_history_column_are_read_back_from_it() {
        use crate::store::StateStore;
        let (_dir, store) = store_after(
            "ADD COLUMN history",
            "INSERT INTO task_runs (id, flow_run, task, name, input, created)
             VALUES ('t1', 'f1', 'add', 'add-0', '{}', '2026-12-07T12:00:00.000001Z');
             INSERT INTO states (run, kind, state, message, attempt, time) VALUES
               ('f1', 'flow', 'Running', NULL, 1, '2026-12-07T12:00:00.000000Z'),
               ('t1', 'task', 'Pending', NULL, 0, '2026-12-07T12:00:00.000002Z'),
               ('t1', 'task', 'Failed', 'boom \"quoted\"', 2, '2026-12-07T12:00:00.000003Z');",
        );
        let states = store.states("t1").unwrap();
        let read: Vec<_> = states.iter().map(|s| (s.state.name(), s.message.as_deref(), s.attempt)).collect();
        assert_eq!(read, [("Pending", None, 0), ("Failed", Some("boom \"quoted\""), 2)]);
        assert_eq!(crate::store::writer::timestamp(states[1].time), "2026-12-07T12:00:00.000003Z");
        assert_eq!(store.states("f1").unwrap().len(), 1, "a flow run's states stay rows");
        let failed = states[1].time;
        assert!(store.has_state("t1", crate::core::state::StateType::Failed, failed).unwrap());
        assert!(!store.has_state("t1", crate::core::state::StateType::Running, failed).unwrap());
    }

    #[test]
    fn events_keep_their_numbers_when_they_lose_autoincrement_and_state_changes_still_make_them() {
        let mut connection = Connection::open_in_memory().unwrap();
        migrate_until(&connection, "events_by_rowid");
        connection
            .execute_batch(
                "INSERT INTO flow_runs (id, name, flow, artifact, parameters, created, tenant)
                 VALUES ('f1', 'old-otter', 'hello', 'sha256:00', '{}', '2026-12-07T12:00:00.000000Z', 'default');
                 INSERT INTO states (run, kind, state, message, attempt, time)
                 VALUES ('f1', 'flow', 'Running', NULL, 1, '2026-12-07T12:00:00.000001Z');
                 INSERT INTO events (seq, tenant, name, time) VALUES (41, 'default', 'x', '2026-12-07T12:00:00Z');",
            )
            .unwrap();
        migrate(&mut connection).unwrap();
        let events = |c: &Connection| -> Vec<(i64, String)> {
            let mut statement = c.prepare("SELECT seq, name FROM events ORDER BY seq").unwrap();
            statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).unwrap().map(Result::unwrap).collect()
        };
        let kept = events(&connection);
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert_eq!(kept[1], (41, "x".to_string()), "{kept:?}");
        connection
            .execute(
                "INSERT INTO states (run, seq, kind, state, message, attempt, time)
                 VALUES ('f1', 9, 'flow', 'Completed', NULL, 1, '2026-12-07T12:00:01.000000Z')",
                [],
            )
            .unwrap();
        assert_eq!(events(&connection).last().unwrap(), &(42, "sluice.flow-run.Completed".to_string()));
        let counted: i64 = connection
            .query_row("SELECT count(*) FROM sqlite_sequence WHERE name = 'events'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(counted, 0, "no counter is kept for events any more");
    }

    #[tokio::test]
    async fn flow_states_kept_by_run_keep_their_order_and_the_next_is_numbered_after_them() {
        use crate::core::state::StateType;
        use crate::store::StateStore;
        let run = crate::core::ids::RunId::new();
        // Another run's state in between: numbers were global.
        let (_dir, store) = store_after(
            "states_by_run_and_seq",
            &format!(
                "INSERT INTO flow_runs (id, name, flow, artifact, parameters, created, tenant)
                 VALUES ('{run}', 'old-otter', 'hello', 'sha256:00', '{{}}', '2026-12-07T12:00:00.000000Z', 'default');
                 INSERT INTO states (run, kind, state, message, attempt, time) VALUES
                   ('{run}', 'flow', 'Scheduled', NULL, 1, '2026-12-07T12:00:00.000001Z'),
                   ('other', 'flow', 'Scheduled', NULL, 1, '2026-12-07T12:00:00.000002Z'),
                   ('{run}', 'flow', 'Pending', NULL, 1, '2026-12-07T12:00:00.000003Z');"
            ),
        );
        record_running(&store, run).await;
        let states: Vec<_> = store.states(&run.to_string()).unwrap().iter().map(|s| s.state).collect();
        assert_eq!(states, [StateType::Scheduled, StateType::Pending, StateType::Running]);
        let plan = store
            .query(|c| crate::store::sqlite::query_plan(c, "SELECT state FROM states WHERE run = 'x' ORDER BY seq"))
            .unwrap();
        assert!(plan.iter().all(|step| !step.starts_with("SCAN")), "{plan:?}");
    }

    #[tokio::test]
    async fn a_flow_run_in_progress_when_states_move_to_its_row_keeps_its_old_rows_and_adds_to_its_history() {
        use crate::core::state::StateType;
        use crate::store::StateStore;
        let run = crate::core::ids::RunId::new();
        let (_dir, store) = store_after(
            "flow_states_kept_in_their_run",
            &format!(
                "INSERT INTO flow_runs (id, name, flow, artifact, parameters, created, scheduled, state, tenant)
                 VALUES ('{run}', 'old-otter', 'hello', 'sha256:00', '{{}}', '2026-12-07T12:00:00.000000Z',
                   '2026-12-07T12:00:00.000000Z', 'Scheduled', 'default');
                 INSERT INTO states (run, seq, kind, state, message, attempt, time) VALUES
                   ('{run}', 1, 'flow', 'Scheduled', 'at noon', 1, '2026-12-07T12:00:00.000001Z');"
            ),
        );
        // Late through the trigger (a statement that still inserts into `states`),
        // then Running through the writer.
        let late = chrono::DateTime::parse_from_rfc3339("2026-12-07T12:00:05Z").unwrap().to_utc();
        assert_eq!(store.mark_late(late, late).unwrap(), 1);
        let time = record_running(&store, run).await;
        let states = store.states(&run.to_string()).unwrap();
        let read: Vec<_> = states.iter().map(|s| (s.state, s.message.as_deref())).collect();
        assert_eq!(
            read,
            [
                (StateType::Scheduled, Some("at noon")),
                (StateType::Late, Some("Its start time passed and no runner has taken it")),
                (StateType::Running, None)
            ]
        );
        assert!(store.has_state(&run.to_string(), StateType::Running, time).unwrap());
        assert!(!store.has_state(&run.to_string(), StateType::Completed, time).unwrap());
        let (rows, events): (i64, Vec<String>) = store
            .query(|c| {
                let rows = c.query_row("SELECT count(*) FROM states", [], |r| r.get(0))?;
                let mut names = c.prepare("SELECT name FROM events ORDER BY seq")?;
                let names = names.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
                Ok((rows, names))
            })
            .unwrap();
        assert_eq!(rows, 1, "no new `states` rows: only the one from before");
        assert_eq!(events, ["sluice.flow-run.Scheduled", "sluice.flow-run.Late", "sluice.flow-run.Running"]);
    }

    #[test]
    fn migrating_twice_is_harmless_and_reaches_the_latest_version() {
        let mut connection = Connection::open_in_memory().unwrap();
        migrate(&mut connection).unwrap();
        migrate(&mut connection).unwrap();
        let version: usize = connection.query_row("PRAGMA user_version", [], |row| row.get(0)).unwrap();
        assert_eq!(version, MIGRATIONS.len());
    }
}
