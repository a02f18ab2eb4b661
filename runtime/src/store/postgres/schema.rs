//! Versioned migrations for PostgreSQL, counted in `sluice_schema`. Several
//! servers may start at once: the migrations run under an advisory lock in
//! one transaction (PostgreSQL's DDL is transactional), so one migrates and
//! the others find the work done. A database migrated by a newer Sluice is
//! refused rather than misread.
//!
//! Times are stored as text in the same fixed-width RFC 3339 form as in
//! SQLite (text order is time order), so both backends compare and page
//! the same way.

use crate::store::StoreError;
use tokio_postgres::Client;

/// Each entry moves the schema from version `i` to `i + 1`. The first one
/// is the SQLite schema as its seven migrations leave it.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE artifacts (
    digest      TEXT PRIMARY KEY,
    size        BIGINT NOT NULL,
    description TEXT NOT NULL,
    imports     TEXT NOT NULL,
    pushed_at   TEXT NOT NULL
);
CREATE TABLE tenants (
    name        TEXT PRIMARY KEY,
    policy      TEXT NOT NULL DEFAULT '{}',
    created     TEXT NOT NULL
);
INSERT INTO tenants (name, created) VALUES ('default', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'));
CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    role        TEXT NOT NULL,
    name        TEXT,
    hash        BYTEA NOT NULL,
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
CREATE TABLE deployments (
    tenant      TEXT NOT NULL,
    flow        TEXT NOT NULL,
    name        TEXT NOT NULL,
    body        TEXT NOT NULL,
    created     TEXT NOT NULL,
    updated     TEXT NOT NULL,
    PRIMARY KEY (tenant, flow, name)
);
CREATE TABLE flow_runs (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL DEFAULT 'default',
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
    ended       TEXT,
    auto_scheduled BOOLEAN NOT NULL DEFAULT FALSE,
    claimed_by  TEXT,
    queue       TEXT
);
CREATE INDEX flow_runs_by_created ON flow_runs (created DESC);
CREATE INDEX flow_runs_by_name ON flow_runs (name);
CREATE INDEX flow_runs_by_flow ON flow_runs (flow, created DESC);
CREATE INDEX flow_runs_by_deployment ON flow_runs (deployment, created DESC);
CREATE INDEX flow_runs_by_state ON flow_runs (state, created DESC);
CREATE INDEX flow_runs_by_parent ON flow_runs (parent);
CREATE UNIQUE INDEX flow_runs_schedule_slot ON flow_runs (tenant, deployment, scheduled) WHERE auto_scheduled;
CREATE INDEX flow_runs_due ON flow_runs (state, scheduled) WHERE claimed_by IS NULL;
CREATE INDEX flow_runs_by_taker ON flow_runs (claimed_by) WHERE ended IS NULL;
CREATE INDEX flow_runs_by_tenant ON flow_runs (tenant, created DESC);
CREATE INDEX flow_runs_due_by_tenant ON flow_runs (tenant, scheduled)
    WHERE claimed_by IS NULL AND state IN ('Scheduled', 'Late');
CREATE INDEX flow_runs_by_tenant_day ON flow_runs (tenant, created, state, parent);
CREATE TABLE task_runs (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY,
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
CREATE INDEX task_runs_by_flow_run ON task_runs (flow_run, created, seq);
CREATE TABLE states (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run         TEXT NOT NULL,
    kind        TEXT NOT NULL,
    state       TEXT NOT NULL,
    message     TEXT,
    attempt     INTEGER NOT NULL,
    time        TEXT NOT NULL
);
CREATE INDEX states_by_run ON states (run, seq);
CREATE TABLE logs (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    flow_run    TEXT NOT NULL,
    task_run    TEXT,
    level       TEXT NOT NULL,
    message     TEXT NOT NULL,
    time        TEXT NOT NULL
);
CREATE INDEX logs_by_flow_run ON logs (flow_run, seq);
CREATE TABLE task_cache (
    tenant      TEXT NOT NULL,
    key         TEXT NOT NULL,
    result      TEXT NOT NULL,
    expires     TEXT,
    PRIMARY KEY (tenant, key)
);
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires     TEXT NOT NULL
);
CREATE TABLE ui_sessions (
    hash        BYTEA PRIMARY KEY,
    token       TEXT NOT NULL,
    created     TEXT NOT NULL,
    expires     TEXT NOT NULL
);
CREATE INDEX ui_sessions_by_token ON ui_sessions (token);
CREATE TABLE workers (
    name        TEXT PRIMARY KEY,
    started     TEXT NOT NULL,
    last_seen   TEXT NOT NULL
);
CREATE TABLE work_pools (
    tenant      TEXT NOT NULL,
    name        TEXT NOT NULL,
    paused      BOOLEAN NOT NULL DEFAULT FALSE,
    description TEXT,
    created     TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
);
CREATE TABLE work_queues (
    tenant      TEXT NOT NULL,
    pool        TEXT NOT NULL,
    name        TEXT NOT NULL,
    tags        TEXT NOT NULL DEFAULT '[]',
    priority    BIGINT NOT NULL DEFAULT 1,
    concurrency_limit INTEGER,
    paused      BOOLEAN NOT NULL DEFAULT FALSE,
    created     TEXT NOT NULL,
    PRIMARY KEY (tenant, pool, name)
);
INSERT INTO work_pools (tenant, name, description, created)
    SELECT 'default', 'default', 'Runs of deployments that name no pool', created FROM tenants;
INSERT INTO work_queues (tenant, pool, name, created) SELECT 'default', 'default', 'default', created FROM tenants;
CREATE TABLE secrets (
    tenant      TEXT NOT NULL DEFAULT 'default',
    name        TEXT NOT NULL,
    sealed      BYTEA NOT NULL,
    created     TEXT NOT NULL,
    updated     TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
);
"#,
    // The journal (`core/journal.rs`): each call's place in its flow run's
    // calls, and the attempt a flow run is on.
    r#"
ALTER TABLE flow_runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
ALTER TABLE flow_runs ADD COLUMN call_position BIGINT;
ALTER TABLE flow_runs ADD COLUMN call_batch BIGINT;
ALTER TABLE flow_runs ADD COLUMN call_attempt INTEGER;
ALTER TABLE task_runs ADD COLUMN call_position BIGINT;
ALTER TABLE task_runs ADD COLUMN call_batch BIGINT;
ALTER TABLE task_runs ADD COLUMN call_attempt INTEGER;
ALTER TABLE flow_runs ADD COLUMN claimed_at TEXT;
"#,
    // Retention (`--keep-runs`): the ended top-level runs, oldest first,
    // without reading the whole table.
    r#"
CREATE INDEX flow_runs_by_ended ON flow_runs (ended) WHERE parent IS NULL AND ended IS NOT NULL;
"#,
    // The event log (`core/events.rs`), as in SQLite: state changes become
    // events in the same transaction by a trigger; webhooks and automations.
    r#"
CREATE TABLE events (
    seq         BIGSERIAL PRIMARY KEY,
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
CREATE FUNCTION states_make_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kind = 'flow' THEN
        INSERT INTO events (tenant, name, time, flow_run, flow, deployment, tags, payload)
        SELECT f.tenant, 'sluice.flow-run.' || NEW.state, NEW.time, f.id, f.flow, f.deployment,
            COALESCE((SELECT (d.body::json -> 'tags')::text FROM deployments d
                      WHERE d.tenant = f.tenant AND f.deployment = d.flow || '/' || d.name), '[]'),
            json_build_object('state', NEW.state, 'message', NEW.message, 'attempt', NEW.attempt)::text
        FROM flow_runs f WHERE f.id = NEW.run;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER states_make_events AFTER INSERT ON states FOR EACH ROW EXECUTE FUNCTION states_make_events();
CREATE TABLE webhooks (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    body        TEXT NOT NULL,
    sealed      BYTEA
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
    // The event of a state change looks its deployment's tags up by key:
    // matching `flow || '/' || name` read every deployment of the tenant, at
    // every state change of every run.
    r#"
CREATE OR REPLACE FUNCTION states_make_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kind = 'flow' THEN
        INSERT INTO events (tenant, name, time, flow_run, flow, deployment, tags, payload)
        SELECT f.tenant, 'sluice.flow-run.' || NEW.state, NEW.time, f.id, f.flow, f.deployment,
            COALESCE((SELECT (d.body::json -> 'tags')::text FROM deployments d
                      WHERE d.tenant = f.tenant AND d.flow = split_part(f.deployment, '/', 1)
                      AND d.name = substr(f.deployment, strpos(f.deployment, '/') + 1)), '[]'),
            json_build_object('state', NEW.state, 'message', NEW.message, 'attempt', NEW.attempt)::text
        FROM flow_runs f WHERE f.id = NEW.run;
    END IF;
    RETURN NULL;
END $$;
"#,
];

/// The schema version this binary writes.
pub fn latest() -> usize {
    MIGRATIONS.len()
}

/// An arbitrary constant: the advisory lock every migrating server takes.
const MIGRATION_LOCK: i64 = 0x5115_ce00_0001_i64;

/// Brings the database up to the newest schema, or refuses one that is newer.
pub async fn migrate(client: &mut Client, server: &str) -> Result<(), StoreError> {
    let failed = |e: tokio_postgres::Error| {
        StoreError::Database(format!(
            "cannot migrate the PostgreSQL database at {server}: {}",
            super::rows::describe(&e)
        ))
    };
    let tx = client.transaction().await.map_err(failed)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(failed)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS sluice_schema (version INTEGER NOT NULL)").await.map_err(failed)?;
    let current: Option<i32> =
        tx.query_opt("SELECT version FROM sluice_schema", &[]).await.map_err(failed)?.map(|row| row.get(0));
    let current = current.unwrap_or(0) as usize;
    refuse_newer(current, latest(), &format!("the PostgreSQL database at {server}"))?;
    for sql in &MIGRATIONS[current..] {
        tx.batch_execute(sql).await.map_err(failed)?;
    }
    if current < latest() {
        tx.execute("DELETE FROM sluice_schema", &[]).await.map_err(failed)?;
        tx.execute("INSERT INTO sluice_schema (version) VALUES ($1)", &[&(latest() as i32)]).await.map_err(failed)?;
    }
    tx.commit().await.map_err(failed)
}

/// The error for a database whose schema a newer Sluice wrote.
pub fn refuse_newer(found: usize, known: usize, what: &str) -> Result<(), StoreError> {
    if found > known {
        return Err(StoreError::Database(format!(
            "{what} has schema version {found}, newer than this sluice knows ({known}): it was migrated by a newer \
             Sluice; run that version (or newer) against it, not this one"
        )));
    }
    Ok(())
}
