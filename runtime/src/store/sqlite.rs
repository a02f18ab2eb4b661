//! The SQLite state store: WAL mode, versioned migrations, a group-commit
//! writer thread for run records, and a second connection for queries and
//! for the rare writes that need an answer (artifacts, deployments).

use super::writer::{Write, WriterHandle, timestamp};
use super::{
    CancelOutcome, Change, Claim, FlowRunRow, LogRow, RunFilter, RunStanding, ScheduledRuns, StateRow, StateStore,
    StoreError, TaskRunRow, claim, migrations, tenants,
};
use crate::core::deployment::{ArtifactMeta, Deployment};
use crate::core::ids::{RunId, run_name};
use crate::core::journal::{CallPosition, JournalRow, input_digest};
use crate::core::pool::{WorkPool, WorkQueue};
use crate::core::record::{Barrier, Event, LogLevel, Recorder, ResultCache, RunKind};
use crate::core::state::StateType;
use crate::core::tenant::{Tenant, TenantPolicy, TokenInfo};
use crate::runner::MemoryCache;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// The state store on an SQLite file.
pub struct SqliteStore {
    pub(super) writer: WriterHandle,
    reader: Mutex<Connection>,
    // Results put but maybe not yet committed, so the next task sees them.
    recent_cache: MemoryCache,
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open(path)
        .map_err(|e| StoreError::Database(format!("cannot open the database at {}: {e}", path.display())))?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    // With WAL, NORMAL loses nothing on a process crash (only on power loss),
    // and a commit costs a write, not an fsync.
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.busy_timeout(std::time::Duration::from_secs(10))?;
    // 64 MiB of page cache: a long history's index pages stay in memory.
    connection.pragma_update(None, "cache_size", -65_536)?;
    Ok(connection)
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Database(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut write = connect(path)?;
        migrations::refuse_newer(&write, path)?;
        migrations::migrate(&mut write)?;
        let reader = connect(path)?;
        // Every write goes through the writer: a write here would wait on
        // the writer's lock in SQLite's busy handler, which sleeps in steps
        // of 10 ms and more (the server's p99 latency, before).
        reader.pragma_update(None, "query_only", true)?;
        Ok(Self {
            writer: WriterHandle::start(write, connect(path)?)?,
            reader: Mutex::new(reader),
            recent_cache: MemoryCache::bounded(10_000),
        })
    }

    /// Commits everything recorded so far.
    pub async fn flush(&self) {
        self.writer.commit_now_async().await;
    }

    /// Records `events` and commits them before returning; an error says
    /// they were not recorded (none of them: a batch commits whole).
    pub fn record_durably(&self, events: &[Event]) -> Result<(), StoreError> {
        let writes = self.writer.send_all(events.iter().map(|event| Write::Event(event.clone())));
        self.writer.commit_writes(&writes).map_err(StoreError::Database)
    }

    /// Makes the database refuse to grow past `pages` pages, as a full disk would.
    #[cfg(test)]
    pub(super) fn limit_pages(&self, pages: u64) {
        self.writer.transaction(|tx| tx.pragma_update(None, "max_page_count", pages)).unwrap();
    }

    /// Committed events as they are committed (for `--watch`).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.writer.subscribe()
    }

    /// Runs a read-only query on the query connection: the web UI's listings
    /// (`server/ui/data.rs`), which need filters and paging the trait does not offer.
    pub fn query<T>(&self, query: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        self.read(query)
    }

    /// Runs `work` in a transaction on the write connection, after every queued write.
    pub(super) fn write<T>(
        &self,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        Ok(self.writer.transaction(work)?)
    }

    pub(super) fn read<T>(&self, query: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let connection = self.reader.lock().expect("reader lock");
        Ok(query(&connection)?)
    }
}

impl Recorder for SqliteStore {
    fn record(&self, event: &Event) {
        self.record_owned(event.clone());
    }

    fn record_owned(&self, event: Event) {
        self.writer.send(Write::Event(event));
    }

    fn failure(&self) -> Option<String> {
        self.writer.failure()
    }

    fn barrier(&self) -> Option<Barrier> {
        // The commit happens here, on the caller's thread: a hand-off to
        // another thread would cost more than the commit itself. Only while
        // another commit holds the connection is there anything to await.
        match self.writer.try_commit_now() {
            Ok(()) => None,
            Err(target) => Some(Box::pin(self.writer.committed_until(target))),
        }
    }
}

impl ResultCache for SqliteStore {
    fn get(&self, tenant: &str, key: &str, now: DateTime<Utc>) -> Option<Arc<str>> {
        if let Some(result) = self.recent_cache.get(tenant, key, now) {
            return Some(result);
        }
        let row: Option<(String, Option<String>)> = self
            .read(|c| {
                c.prepare_cached("SELECT result, expires FROM task_cache WHERE tenant = ?1 AND key = ?2")?
                    .query_row([tenant, key], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .ok()
            .flatten();
        let (result, expires) = row?;
        let expires = expires.as_deref().and_then(parse_time);
        expires.is_none_or(|at| at > now).then(|| Arc::from(result.as_str()))
    }

    fn put(&self, tenant: &str, key: &str, result: Arc<str>, expires: Option<DateTime<Utc>>) {
        self.recent_cache.put(tenant, key, result.clone(), expires);
        self.writer.send(Write::CachePut { tenant: tenant.to_string(), key: key.to_string(), result, expires });
    }
}

pub(super) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

pub(super) fn time_column(row: &Row<'_>, index: &str) -> rusqlite::Result<DateTime<Utc>> {
    let text: String = row.get(index)?;
    parse_time(&text).ok_or_else(|| bad_column(index, &text))
}

pub(super) fn optional_time(row: &Row<'_>, index: &str) -> rusqlite::Result<Option<DateTime<Utc>>> {
    let text: Option<String> = row.get(index)?;
    text.map(|t| parse_time(&t).ok_or_else(|| bad_column(index, &t))).transpose()
}

fn json_column(row: &Row<'_>, index: &str) -> rusqlite::Result<Option<Value>> {
    let text: Option<String> = row.get(index)?;
    Ok(text.map(|t| serde_json::from_str(&t).unwrap_or(Value::String(t))))
}

fn state_column(row: &Row<'_>, index: &str) -> rusqlite::Result<Option<StateType>> {
    let text: Option<String> = row.get(index)?;
    text.map(|t| StateType::parse(&t).ok_or_else(|| bad_column(index, &t))).transpose()
}

pub(super) fn bad_column(column: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("column {column} holds `{value}`, which this version cannot read").into(),
    )
}

pub(super) const FLOW_RUN_COLUMNS: &str = "id, tenant, name, flow, deployment, parent, artifact, parameters, state, message, result, created, \
     scheduled, started, ended, claimed_by, attempt";

pub(super) fn flow_run_row(row: &Row<'_>) -> rusqlite::Result<FlowRunRow> {
    Ok(FlowRunRow {
        id: row.get("id")?,
        tenant: row.get("tenant")?,
        name: row.get("name")?,
        flow: row.get("flow")?,
        deployment: row.get("deployment")?,
        parent: row.get("parent")?,
        artifact: row.get("artifact")?,
        parameters: json_column(row, "parameters")?.unwrap_or(Value::Null),
        state: state_column(row, "state")?,
        message: row.get("message")?,
        result: json_column(row, "result")?,
        created: time_column(row, "created")?,
        scheduled: optional_time(row, "scheduled")?,
        started: optional_time(row, "started")?,
        ended: optional_time(row, "ended")?,
        claimed_by: row.get("claimed_by")?,
        attempt: row.get("attempt")?,
    })
}

fn task_run_row(row: &Row<'_>) -> rusqlite::Result<TaskRunRow> {
    Ok(TaskRunRow {
        id: row.get("id")?,
        flow_run: row.get("flow_run")?,
        task: row.get("task")?,
        name: row.get("name")?,
        state: state_column(row, "state")?,
        message: row.get("message")?,
        result: json_column(row, "result")?,
        attempts: row.get("attempts")?,
        created: time_column(row, "created")?,
        ended: optional_time(row, "ended")?,
        call: call_column(row)?,
    })
}

/// The call position columns (`call_position`, `call_batch`, `call_attempt`), when set.
pub(super) fn call_column(row: &Row<'_>) -> rusqlite::Result<Option<CallPosition>> {
    let position: Option<i64> = row.get("call_position")?;
    let batch: Option<i64> = row.get("call_batch")?;
    let attempt: Option<u32> = row.get("call_attempt")?;
    Ok(position.map(|position| CallPosition {
        position: position as u64,
        batch: batch.unwrap_or(position) as u64,
        flow_attempt: attempt.unwrap_or(1),
    }))
}

/// The calls of a run tree with a call position: its task runs and its subflow runs.
pub(super) const JOURNAL_QUERY: &str = "WITH RECURSIVE tree(id) AS
     (SELECT ?1 UNION ALL SELECT f.id FROM flow_runs f JOIN tree ON f.parent = tree.id)
     SELECT 'task' AS kind, flow_run, id, task AS name, input, call_position, call_batch, call_attempt, state, result,
            ended, created
       FROM task_runs WHERE flow_run IN tree AND call_position IS NOT NULL
     UNION ALL
     SELECT 'flow', parent, id, flow, parameters, call_position, call_batch, call_attempt, state, result, ended, created
       FROM flow_runs WHERE parent IN tree AND call_position IS NOT NULL";

fn journal_row(row: &Row<'_>) -> rusqlite::Result<JournalRow> {
    let kind = if row.get::<_, String>("kind")? == "flow" { RunKind::Flow } else { RunKind::Task };
    let input: String = row.get("input")?;
    Ok(JournalRow {
        flow_run: row.get("flow_run")?,
        run: row.get("id")?,
        kind,
        name: row.get("name")?,
        digest: input_digest(kind, &input),
        call: call_column(row)?.expect("selected with a call position"),
        state: state_column(row, "state")?,
        result: row.get("result")?,
        ended: optional_time(row, "ended")?,
        created: time_column(row, "created")?,
    })
}

fn artifact_row(row: &Row<'_>) -> rusqlite::Result<ArtifactMeta> {
    let description: String = row.get("description")?;
    let imports: String = row.get("imports")?;
    Ok(ArtifactMeta {
        digest: row.get("digest")?,
        size: row.get("size")?,
        description: serde_json::from_str(&description).map_err(|_| bad_column("description", &description))?,
        imports: serde_json::from_str(&imports).map_err(|_| bad_column("imports", &imports))?,
        pushed_at: time_column(row, "pushed_at")?,
    })
}

fn deployment_row(row: &Row<'_>) -> rusqlite::Result<Deployment> {
    let body: String = row.get("body")?;
    let mut deployment: Deployment = serde_json::from_str(&body).map_err(|_| bad_column("body", &body))?;
    deployment.tenant = row.get("tenant")?;
    Ok(deployment)
}

/// Artifacts as a tenant (`?1`, or NULL for every tenant) sees them, with its own push time.
const ARTIFACT_SELECT: &str = "SELECT a.digest, a.size, a.description, a.imports,
        COALESCE(t.pushed_at, a.pushed_at) AS pushed_at
     FROM artifacts a LEFT JOIN tenant_artifacts t ON t.digest = a.digest AND t.tenant = ?1
     WHERE (?1 IS NULL OR t.tenant IS NOT NULL)";

impl StateStore for SqliteStore {
    fn save_artifact(&self, tenant: &str, meta: &ArtifactMeta) -> Result<bool, StoreError> {
        let description = serde_json::to_string(&meta.description).expect("a description is JSON");
        let imports = serde_json::to_string(&meta.imports).expect("imports are JSON");
        let pushed_at = timestamp(meta.pushed_at);
        let referenced = self.write(|c| {
            c.execute(
                "INSERT OR IGNORE INTO artifacts (digest, size, description, imports, pushed_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![meta.digest, meta.size, description, imports, pushed_at],
            )?;
            c.execute(
                "INSERT OR IGNORE INTO tenant_artifacts (tenant, digest, pushed_at) VALUES (?1, ?2, ?3)",
                params![tenant, meta.digest, pushed_at],
            )
        })?;
        Ok(referenced == 1)
    }

    fn artifact(&self, tenant: Option<&str>, digest: &str) -> Result<Option<ArtifactMeta>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!("{ARTIFACT_SELECT} AND a.digest = ?2"))?
                .query_row(params![tenant, digest], artifact_row)
                .optional()
        })
    }

    fn artifacts(&self, tenant: Option<&str>) -> Result<Vec<ArtifactMeta>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!("{ARTIFACT_SELECT} ORDER BY pushed_at DESC"))?
                .query_map([tenant], artifact_row)?
                .collect()
        })
    }

    fn upsert_deployment(&self, deployment: &Deployment) -> Result<Change, StoreError> {
        let existing = self.deployment(&deployment.tenant, &deployment.flow, &deployment.name)?;
        let change = match &existing {
            None => Change::Created,
            Some(old) if old.same_settings(deployment) => return Ok(Change::Unchanged),
            Some(_) => Change::Updated,
        };
        let mut stored = deployment.clone();
        if let Some(old) = existing {
            stored.created = old.created;
        }
        let body = serde_json::to_string(&stored).expect("a deployment is JSON");
        self.write(|c| {
            c.execute(
                "INSERT INTO deployments (tenant, flow, name, body, created, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (tenant, flow, name) DO UPDATE SET body = excluded.body, updated = excluded.updated",
                params![
                    stored.tenant,
                    stored.flow,
                    stored.name,
                    body,
                    timestamp(stored.created),
                    timestamp(stored.updated)
                ],
            )
        })?;
        Ok(change)
    }

    fn deployment(&self, tenant: &str, flow: &str, name: &str) -> Result<Option<Deployment>, StoreError> {
        self.read(|c| load_deployment(c, tenant, flow, name))
    }

    fn deployments(&self, tenant: Option<&str>) -> Result<Vec<Deployment>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT tenant, body FROM deployments WHERE ?1 IS NULL OR tenant = ?1 ORDER BY tenant, flow, name",
            )?
            .query_map([tenant], deployment_row)?
            .collect()
        })
    }

    fn delete_deployment(&self, tenant: &str, flow: &str, name: &str) -> Result<bool, StoreError> {
        let deleted = self.write(|c| {
            c.execute("DELETE FROM deployments WHERE tenant = ?1 AND flow = ?2 AND name = ?3", [tenant, flow, name])
        })?;
        Ok(deleted == 1)
    }

    fn flow_runs(&self, filter: &RunFilter) -> Result<Vec<FlowRunRow>, StoreError> {
        let (sql, values) = super::flow_runs_sql(filter, FLOW_RUN_COLUMNS);
        self.read(|c| c.prepare(&sql)?.query_map(rusqlite::params_from_iter(values), flow_run_row)?.collect())
    }

    fn flow_run(&self, tenant: Option<&str>, id_or_name: &str) -> Result<Option<FlowRunRow>, StoreError> {
        self.read(|c| {
            let by_id =
                format!("SELECT {FLOW_RUN_COLUMNS} FROM flow_runs WHERE id = ?1 AND (?2 IS NULL OR tenant = ?2)");
            if let Some(run) =
                c.prepare_cached(&by_id)?.query_row(params![id_or_name, tenant], flow_run_row).optional()?
            {
                return Ok(Some(run));
            }
            let by_name = format!(
                "SELECT {FLOW_RUN_COLUMNS} FROM flow_runs WHERE name = ?1 AND (?2 IS NULL OR tenant = ?2)
                 ORDER BY created DESC LIMIT 1"
            );
            c.prepare_cached(&by_name)?.query_row(params![id_or_name, tenant], flow_run_row).optional()
        })
    }

    fn subflow_runs(&self, flow_run: &str) -> Result<Vec<FlowRunRow>, StoreError> {
        let sql = format!("SELECT {FLOW_RUN_COLUMNS} FROM flow_runs WHERE parent = ?1 ORDER BY created");
        self.read(|c| c.prepare(&sql)?.query_map([flow_run], flow_run_row)?.collect())
    }

    fn task_runs(&self, flow_run: &str) -> Result<Vec<TaskRunRow>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT * FROM task_runs WHERE flow_run = ?1 ORDER BY created, rowid")?
                .query_map([flow_run], task_run_row)?
                .collect()
        })
    }

    fn journal(&self, flow_run: &str) -> Result<Vec<JournalRow>, StoreError> {
        self.read(|c| c.prepare_cached(JOURNAL_QUERY)?.query_map([flow_run], journal_row)?.collect())
    }

    fn states(&self, run: &str) -> Result<Vec<StateRow>, StoreError> {
        self.read(|c| match flow_history(c, run)? {
            Some(states) => Ok(states),
            None => task_history(c, run).map(Option::unwrap_or_default),
        })
    }

    fn logs(&self, flow_run: &str, tail: Option<usize>) -> Result<Vec<LogRow>, StoreError> {
        let limit = tail.map_or(-1, |n| n as i64);
        self.read(|c| {
            let mut rows: Vec<LogRow> = c
                .prepare_cached(
                    "SELECT l.time, l.level, l.task_run, l.message,
                            COALESCE(t.name, (SELECT name FROM flow_runs WHERE id = l.flow_run)) AS run_name
                     FROM logs l LEFT JOIN task_runs t ON t.id = l.task_run
                     WHERE l.flow_run = ?1 OR l.flow_run IN (SELECT id FROM flow_runs WHERE parent = ?1)
                     ORDER BY l.seq DESC LIMIT ?2",
                )?
                .query_map(params![flow_run, limit], |row| {
                    let level: String = row.get("level")?;
                    Ok(LogRow {
                        time: time_column(row, "time")?,
                        level: LogLevel::parse(&level).ok_or_else(|| bad_column("level", &level))?,
                        task_run: row.get("task_run")?,
                        run_name: row.get::<_, Option<String>>("run_name")?.unwrap_or_default(),
                        message: row.get("message")?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            rows.reverse();
            Ok(rows)
        })
    }

    fn schedule_runs(&self, slots: &ScheduledRuns<'_>) -> Result<usize, StoreError> {
        let deployment = slots.deployment;
        let full_name = deployment.full_name();
        let now = timestamp(slots.now);
        let parameters = slots.parameters.to_string();
        Ok(self.writer.transaction(|tx| {
            // Made for the deployment as the scheduler read it: if it was
            // paused or changed since, whoever did that already removed the
            // future runs, and these would outlive that removal.
            let stored = load_deployment(tx, &deployment.tenant, &deployment.flow, &deployment.name)?;
            if !stored.is_some_and(|stored| !stored.paused && stored.updated == deployment.updated) {
                return Ok(0);
            }
            let mut created = 0;
            for time in slots.times {
                let id = RunId::new().to_string();
                let message = format!("Scheduled by the deployment's schedule for {}", time.to_rfc3339());
                let inserted = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO flow_runs (id, name, flow, deployment, artifact, parameters, state, message,
                         created, scheduled, auto_scheduled, tenant)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'Scheduled', ?7, ?8, ?9, 1, ?10)",
                    )?
                    .execute(params![
                        id,
                        run_name(&mut rand::rng()),
                        deployment.flow,
                        full_name,
                        deployment.artifact,
                        parameters,
                        message,
                        now,
                        timestamp(*time),
                        deployment.tenant
                    ])?;
                if inserted == 1 {
                    tx.prepare_cached(
                        concat!(
                        "INSERT INTO states (run, seq, kind, state, message, attempt, time) VALUES (?1, ",
                        next_state_seq!("?1"),
                        ", 'flow', 'Scheduled', ?2, 1, ?3)"
                    ),
                    )?
                    .execute(params![id, message, now])?;
                    created += 1;
                }
            }
            Ok(created)
        })?)
    }

    fn mark_late(&self, cutoff: DateTime<Utc>, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let now = timestamp(now);
        Ok(self.writer.transaction(|tx| {
            let late: Vec<String> = tx
                .prepare_cached(
                    "SELECT id FROM flow_runs WHERE state = 'Scheduled' AND claimed_by IS NULL AND scheduled < ?1",
                )?
                .query_map([timestamp(cutoff)], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let message = "Its start time passed and no runner has taken it";
            for id in &late {
                tx.prepare_cached("UPDATE flow_runs SET state = 'Late', message = ?2 WHERE id = ?1")?
                    .execute(params![id, message])?;
                tx.prepare_cached(concat!(
                    "INSERT INTO states (run, seq, kind, state, message, attempt, time) VALUES (?1, ",
                    next_state_seq!("?1"),
                    ", 'flow', 'Late', ?2, 1, ?3)"
                ))?
                .execute(params![id, message, now])?;
            }
            Ok(late.len())
        })?)
    }

    fn unschedule_future(&self, tenant: &str, deployment: &str, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let now = timestamp(now);
        Ok(self.writer.transaction(|tx| {
            let future = "SELECT id FROM flow_runs WHERE tenant = ?1 AND deployment = ?2 AND auto_scheduled = 1
                          AND state = 'Scheduled' AND claimed_by IS NULL AND scheduled > ?3";
            tx.execute(&format!("DELETE FROM states WHERE run IN ({future})"), params![tenant, deployment, now])?;
            tx.execute(&format!("DELETE FROM flow_runs WHERE id IN ({future})"), params![tenant, deployment, now])
        })?)
    }

    fn claim_due(&self, claim: &Claim<'_>) -> Result<Vec<FlowRunRow>, StoreError> {
        Ok(self.writer.transaction(|tx| claim::claim_in(tx, claim))?)
    }

    fn claim_run(&self, id: &str, taker: &str) -> Result<bool, StoreError> {
        let taken = self.writer.transaction(|tx| {
            tx.execute(
                "UPDATE flow_runs SET claimed_by = ?2 WHERE id = ?1 AND claimed_by IS NULL
                 AND state IN ('Scheduled', 'Late')",
                params![id, taker],
            )
        })?;
        Ok(taken == 1)
    }

    fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<String> = self.read(|c| {
            c.prepare_cached(
                "SELECT MIN(scheduled) FROM flow_runs WHERE state IN ('Scheduled', 'Late') AND claimed_by IS NULL",
            )?
            .query_row([], |row| row.get(0))
        })?;
        Ok(next.as_deref().and_then(parse_time))
    }

    fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let changed = self.writer.transaction(|tx| {
            tx.prepare_cached(
                "INSERT INTO leases (name, holder, expires) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires
                 WHERE leases.holder = excluded.holder OR leases.expires < ?4",
            )?
            .execute(params![name, holder, timestamp(until), timestamp(now)])
        })?;
        Ok(changed == 1)
    }

    fn heartbeat(&self, worker: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let now = timestamp(now);
        self.write(|c| {
            c.prepare_cached(
                "INSERT INTO workers (name, started, last_seen) VALUES (?1, ?2, ?2)
                 ON CONFLICT (name) DO UPDATE SET last_seen = excluded.last_seen",
            )?
            .execute(params![worker, now])
        })?;
        Ok(())
    }

    fn crash_orphans(&self, cutoff: DateTime<Utc>, now: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
        let now = timestamp(now);
        Ok(self.writer.transaction(|tx| {
            let orphans: Vec<(String, String)> = tx
                .prepare_cached(
                    "SELECT r.id, w.name FROM flow_runs r JOIN workers w ON w.name = r.claimed_by
                     WHERE r.ended IS NULL AND w.last_seen < ?1",
                )?
                .query_map([timestamp(cutoff)], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            for (id, worker) in &orphans {
                let message = format!("worker `{worker}` stopped sending heartbeats while it ran this flow run");
                end_run(tx, id, "Crashed", &message, &now)?;
                crash_unfinished_parts(tx, id, &message, &now)?;
            }
            Ok(orphans.into_iter().map(|(id, _)| id).collect())
        })?)
    }

    fn release_unheard(
        &self,
        worker: &str,
        running: &[String],
        before: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let before = timestamp(before);
        Ok(self.writer.transaction(|tx| {
            let taken: Vec<String> = tx
                .prepare_cached(
                    "SELECT id FROM flow_runs WHERE claimed_by = ?1 AND ended IS NULL
                     AND state IN ('Scheduled', 'Late') AND claimed_at < ?2",
                )?
                .query_map(params![worker, before], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut released = Vec::new();
            for id in taken.into_iter().filter(|id| !running.contains(id)) {
                tx.prepare_cached(
                    "UPDATE flow_runs SET claimed_by = NULL, queue = NULL, claimed_at = NULL WHERE id = ?1",
                )?
                .execute([&id])?;
                released.push(id);
            }
            Ok(released)
        })?)
    }

    fn crash_held_by(&self, worker: &str, now: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
        let now = timestamp(now);
        Ok(self.writer.transaction(|tx| {
            let held: Vec<String> = tx
                .prepare_cached("SELECT id FROM flow_runs WHERE claimed_by = ?1 AND ended IS NULL")?
                .query_map([worker], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let message = format!("worker `{worker}` started again while it ran this flow run");
            for id in &held {
                end_run(tx, id, "Crashed", &message, &now)?;
                crash_unfinished_parts(tx, id, &message, &now)?;
            }
            Ok(held)
        })?)
    }

    fn request_cancel(&self, id: &str, now: DateTime<Utc>) -> Result<CancelOutcome, StoreError> {
        let now = timestamp(now);
        Ok(self.writer.transaction(|tx| {
            let row: Option<(Option<String>, Option<String>, Option<String>)> = tx
                .query_row("SELECT state, claimed_by, ended FROM flow_runs WHERE id = ?1", [id], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .optional()?;
            let Some((state, taker, ended)) = row else { return Ok(CancelOutcome::NotFound) };
            if ended.is_some() || state.as_deref() == Some("Cancelling") {
                return Ok(if ended.is_some() { CancelOutcome::AlreadyEnded } else { CancelOutcome::Cancelling });
            }
            // A paused run is held by nobody either: it waits for input, not for a runner.
            let waiting = matches!(state.as_deref(), Some("Scheduled" | "Late" | "Paused")) && taker.is_none();
            if waiting {
                // Taken by nobody: no runner will ever see it, so it ends here.
                tx.execute("UPDATE flow_runs SET claimed_by = 'cancelled' WHERE id = ?1", [id])?;
                let message = match state.as_deref() {
                    Some("Paused") => "Cancelled while it was paused for input",
                    _ => "Cancelled before it started",
                };
                end_run(tx, id, "Cancelled", message, &now)?;
                return Ok(CancelOutcome::Cancelled);
            }
            record_state(tx, id, "Cancelling", "Cancellation requested", &now)?;
            Ok(CancelOutcome::Cancelling)
        })?)
    }

    fn reschedule(&self, id: &str, at: DateTime<Utc>, message: &str) -> Result<(), StoreError> {
        let now = timestamp(Utc::now());
        self.writer.transaction(|tx| {
            tx.execute(
                "UPDATE flow_runs SET claimed_by = NULL, queue = NULL, ended = NULL, scheduled = ?2, attempt = attempt + 1
                 WHERE id = ?1",
                params![id, timestamp(at)],
            )?;
            record_state(tx, id, "Scheduled", message, &now)
        })?;
        Ok(())
    }

    fn to_stop(&self, taker: &str, ids: &[String]) -> Result<Vec<String>, StoreError> {
        self.read(|c| {
            let mut stop = Vec::new();
            let mut query = c.prepare_cached("SELECT state, claimed_by, ended FROM flow_runs WHERE id = ?1")?;
            for id in ids {
                let row: Option<(Option<String>, Option<String>, Option<String>)> =
                    query.query_row([id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?))).optional()?;
                let keep = row.is_some_and(|(state, holder, ended)| {
                    state.as_deref() != Some("Cancelling") && holder.as_deref() == Some(taker) && ended.is_none()
                });
                if !keep {
                    stop.push(id.clone());
                }
            }
            Ok(stop)
        })
    }

    fn lease_lost(&self, taker: &str, id: &str) -> Result<Option<String>, StoreError> {
        let row: Option<LeaseRow> = self.read(|c| {
            c.prepare_cached("SELECT state, claimed_by, ended, parent FROM flow_runs WHERE id = ?1")?
                .query_row([id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
                .optional()
        })?;
        Ok(match row {
            None => Some(format!("there is no flow run {id}")),
            // Subflow runs are held through their root run.
            Some((_, _, _, Some(parent))) => self.lease_lost(taker, &parent)?,
            Some((state, holder, ended, None)) => {
                if holder.as_deref() != Some(taker) {
                    Some(format!(
                        "flow run {id} is not held by `{taker}` (held by {})",
                        holder.as_deref().unwrap_or("nobody")
                    ))
                } else if ended.is_some() {
                    Some(format!("flow run {id} has already ended ({})", state.as_deref().unwrap_or("?")))
                } else {
                    None
                }
            }
        })
    }

    fn task_flow_run(&self, task_run: &str) -> Result<Option<String>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT flow_run FROM task_runs WHERE id = ?1")?
                .query_row([task_run], |row| row.get(0))
                .optional()
        })
    }

    fn has_state(&self, id: &str, state: StateType, time: DateTime<Utc>) -> Result<bool, StoreError> {
        self.read(|c| {
            let history = match flow_history(c, id)? {
                Some(states) => states,
                None => task_history(c, id)?.unwrap_or_default(),
            };
            // Compared as stored: to the microsecond.
            Ok(history
                .iter()
                .any(|recorded| recorded.state == state && recorded.time.timestamp_micros() == time.timestamp_micros()))
        })
    }

    fn run_standing(&self, kind: RunKind, id: &str) -> Result<Option<RunStanding>, StoreError> {
        let query = match kind {
            RunKind::Flow => "SELECT tenant, id, ended IS NOT NULL FROM flow_runs WHERE id = ?1",
            RunKind::Task => {
                "SELECT f.tenant, t.flow_run, t.ended IS NOT NULL FROM task_runs t
                 JOIN flow_runs f ON f.id = t.flow_run WHERE t.id = ?1"
            }
        };
        self.read(|c| {
            c.prepare_cached(query)?
                .query_row([id], |row| {
                    Ok(RunStanding { tenant: row.get(0)?, flow_run: row.get(1)?, ended: row.get(2)? })
                })
                .optional()
        })
    }

    fn work_pools(&self, tenant: &str) -> Result<Vec<WorkPool>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT * FROM work_pools WHERE tenant = ?1 ORDER BY name")?
                .query_map([tenant], pool_row)?
                .collect()
        })
    }

    fn create_work_pool(&self, tenant: &str, pool: &WorkPool) -> Result<bool, StoreError> {
        Ok(self.writer.transaction(|tx| tenants::create_pool(tx, tenant, pool))?)
    }

    fn set_work_pool_paused(&self, tenant: &str, name: &str, paused: bool) -> Result<bool, StoreError> {
        let changed = self.write(|c| {
            c.execute(
                "UPDATE work_pools SET paused = ?3 WHERE tenant = ?1 AND name = ?2",
                params![tenant, name, paused],
            )
        })?;
        Ok(changed == 1)
    }

    fn delete_work_pool(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        let deleted = self.writer.transaction(|tx| {
            tx.execute("DELETE FROM work_queues WHERE tenant = ?1 AND pool = ?2", [tenant, name])?;
            tx.execute("DELETE FROM work_pools WHERE tenant = ?1 AND name = ?2", [tenant, name])
        })?;
        Ok(deleted == 1)
    }

    fn work_queues(&self, tenant: &str, pool: Option<&str>) -> Result<Vec<WorkQueue>, StoreError> {
        self.read(|c| queues_in(c, tenant, pool))
    }

    fn create_work_queue(&self, tenant: &str, queue: &WorkQueue) -> Result<bool, StoreError> {
        Ok(self.writer.transaction(|tx| tenants::create_queue(tx, tenant, queue))?)
    }

    fn set_work_queue_paused(&self, tenant: &str, pool: &str, name: &str, paused: bool) -> Result<bool, StoreError> {
        let changed = self.write(|c| {
            c.execute(
                "UPDATE work_queues SET paused = ?4 WHERE tenant = ?1 AND pool = ?2 AND name = ?3",
                params![tenant, pool, name, paused],
            )
        })?;
        Ok(changed == 1)
    }

    fn delete_work_queue(&self, tenant: &str, pool: &str, name: &str) -> Result<bool, StoreError> {
        let deleted = self.write(|c| {
            c.execute("DELETE FROM work_queues WHERE tenant = ?1 AND pool = ?2 AND name = ?3", [tenant, pool, name])
        })?;
        Ok(deleted == 1)
    }

    fn create_tenant(&self, tenant: &Tenant) -> Result<bool, StoreError> {
        Ok(self.writer.transaction(|tx| tenants::create_tenant(tx, tenant))?)
    }

    fn tenant(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        self.read(|c| tenants::tenant(c, name))
    }

    fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.read(tenants::tenants)
    }

    fn set_tenant_policy(&self, name: &str, policy: &TenantPolicy) -> Result<bool, StoreError> {
        let policy = serde_json::to_string(policy).expect("a policy is JSON");
        let changed = self.write(|c| c.execute("UPDATE tenants SET policy = ?2 WHERE name = ?1", [name, &policy]))?;
        Ok(changed == 1)
    }

    fn running_runs(&self, tenant: &str) -> Result<Vec<String>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT name FROM flow_runs WHERE claimed_by IS NOT NULL AND ended IS NULL AND tenant = ?1",
            )?
            .query_map([tenant], |row| row.get(0))?
            .collect()
        })
    }

    fn delete_tenant(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.writer.transaction(|tx| tenants::delete_tenant(tx, name))?)
    }

    fn create_token(&self, info: &TokenInfo, hash: &[u8; 32]) -> Result<(), StoreError> {
        self.write(|c| tenants::create_token(c, info, hash))?;
        Ok(())
    }

    fn token(&self, id: &str) -> Result<Option<(TokenInfo, Vec<u8>)>, StoreError> {
        self.read(|c| tenants::token(c, id))
    }

    fn tokens(&self, tenant: Option<&str>) -> Result<Vec<TokenInfo>, StoreError> {
        self.read(|c| tenants::tokens(c, tenant))
    }

    fn revoke_token(&self, tenant: Option<&str>, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let changed = self.write(|c| {
            c.execute(
                "UPDATE tokens SET revoked = ?3 WHERE id = ?1 AND (?2 IS NULL OR tenant = ?2) AND revoked IS NULL",
                params![id, tenant, timestamp(now)],
            )
        })?;
        Ok(changed == 1)
    }

    fn purge_ended(&self, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        let before = timestamp(before);
        Ok(self.writer.transaction(|tx| super::retention::purge_ended(tx, &before, limit))?)
    }
}

/// A flow run's states: those recorded as `states` rows before flow runs
/// kept them in their row, then its `history`; `None` if it has neither
/// (no such flow run).
fn flow_history(c: &Connection, id: &str) -> rusqlite::Result<Option<Vec<StateRow>>> {
    let mut states: Vec<StateRow> = c
        .prepare_cached("SELECT state, message, attempt, time FROM states WHERE run = ?1 ORDER BY seq")?
        .query_map([id], |row| {
            Ok(StateRow {
                state: state_column(row, "state")?.expect("state is NOT NULL"),
                message: row.get("message")?,
                attempt: row.get("attempt")?,
                time: time_column(row, "time")?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    match row_history(c, "SELECT history FROM flow_runs WHERE id = ?1", id)? {
        Some(history) => states.extend(history),
        None if states.is_empty() => return Ok(None),
        None => {}
    }
    Ok(Some(states))
}

/// Task run `id`'s states, oldest first; `None` when there is no such task run.
fn task_history(c: &Connection, id: &str) -> rusqlite::Result<Option<Vec<StateRow>>> {
    row_history(c, "SELECT history FROM task_runs WHERE id = ?1", id)
}

/// The states of the `history` column that `query` reads for `id`; `None` without a row.
fn row_history(c: &Connection, query: &str, id: &str) -> rusqlite::Result<Option<Vec<StateRow>>> {
    let history: Option<String> = c.prepare_cached(query)?.query_row([id], |row| row.get(0)).optional()?;
    history.map(|text| super::history::parse(&text).map_err(|line| bad_column("history", &line))).transpose()
}

/// A run's state, holder, end and parent, as a lease check reads them.
type LeaseRow = (Option<String>, Option<String>, Option<String>, Option<String>);

/// Moves a flow run to `state`, recording it in its history.
fn record_state(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    state: &str,
    message: &str,
    now: &str,
) -> rusqlite::Result<()> {
    tx.prepare_cached("UPDATE flow_runs SET state = ?2, message = ?3 WHERE id = ?1")?
        .execute(params![id, state, message])?;
    tx.prepare_cached(concat!(
        "INSERT INTO states (run, seq, kind, state, message, attempt, time) VALUES (?1, ",
        next_state_seq!("?1"),
        ", 'flow', ?2, ?3, 1, ?4)"
    ))?
    .execute(params![id, state, message, now])?;
    Ok(())
}

/// Ends `Crashed` every unfinished subflow run and task run under flow run
/// `root`: nothing will ever report on them again.
fn crash_unfinished_parts(
    tx: &rusqlite::Transaction<'_>,
    root: &str,
    message: &str,
    now: &str,
) -> rusqlite::Result<()> {
    const TREE: &str = "WITH RECURSIVE tree(id) AS
        (SELECT ?1 UNION ALL SELECT f.id FROM flow_runs f JOIN tree ON f.parent = tree.id)";
    let crash_tasks = format!(
        "UPDATE task_runs SET state = 'Crashed', message = ?2, ended = ?3, history = history || {}
         WHERE flow_run IN tree AND ended IS NULL",
        super::history::sql_entry("'Crashed'", "?2", "MAX(attempts, 1)", "?3")
    );
    let statements = [
        concat!(
            "INSERT INTO states (run, seq, kind, state, message, attempt, time) SELECT id, ",
            next_state_seq!("flow_runs.id"),
            ", 'flow', 'Crashed', ?2, 1, ?3 FROM flow_runs WHERE id IN tree AND id <> ?1 AND ended IS NULL"
        ),
        "UPDATE flow_runs SET state = 'Crashed', message = ?2, ended = ?3
         WHERE id IN tree AND id <> ?1 AND ended IS NULL",
        &crash_tasks,
    ];
    for statement in statements {
        tx.prepare_cached(&format!("{TREE} {statement}"))?.execute(params![root, message, now])?;
    }
    Ok(())
}

/// Ends a flow run in a terminal `state`.
fn end_run(tx: &rusqlite::Transaction<'_>, id: &str, state: &str, message: &str, now: &str) -> rusqlite::Result<()> {
    record_state(tx, id, state, message, now)?;
    tx.prepare_cached("UPDATE flow_runs SET ended = ?2 WHERE id = ?1")?.execute(params![id, now])?;
    Ok(())
}

pub(super) fn pool_row(row: &Row<'_>) -> rusqlite::Result<WorkPool> {
    Ok(WorkPool {
        name: row.get("name")?,
        paused: row.get("paused")?,
        description: row.get("description")?,
        created: time_column(row, "created")?,
    })
}

pub(super) fn queue_row(row: &Row<'_>) -> rusqlite::Result<WorkQueue> {
    let tags: String = row.get("tags")?;
    Ok(WorkQueue {
        pool: row.get("pool")?,
        name: row.get("name")?,
        tags: serde_json::from_str(&tags).map_err(|_| bad_column("tags", &tags))?,
        priority: row.get("priority")?,
        concurrency_limit: row.get("concurrency_limit")?,
        paused: row.get("paused")?,
        created: time_column(row, "created")?,
    })
}

/// The queues of a tenant's pool (of all its pools when `None`), by priority.
pub(super) fn queues_in(connection: &Connection, tenant: &str, pool: Option<&str>) -> rusqlite::Result<Vec<WorkQueue>> {
    connection
        .prepare_cached(
            "SELECT * FROM work_queues WHERE tenant = ?1 AND (?2 IS NULL OR pool = ?2) ORDER BY pool, priority, name",
        )?
        .query_map(params![tenant, pool], queue_row)?
        .collect()
}

/// A deployment of a tenant by flow and name.
pub(super) fn load_deployment(
    connection: &Connection,
    tenant: &str,
    flow: &str,
    name: &str,
) -> rusqlite::Result<Option<Deployment>> {
    connection
        .prepare_cached("SELECT tenant, body FROM deployments WHERE tenant = ?1 AND flow = ?2 AND name = ?3")?
        .query_row([tenant, flow, name], deployment_row)
        .optional()
}

/// The steps SQLite's planner chose for `sql` (`EXPLAIN QUERY PLAN`), for
/// tests that hot queries seek rather than walk a table.
#[cfg(test)]
pub(super) fn query_plan(connection: &Connection, sql: &str) -> rusqlite::Result<Vec<String>> {
    let mut statement = connection.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
    let parameters = statement.parameter_count();
    let nulls = vec![rusqlite::types::Null; parameters];
    statement.query_map(rusqlite::params_from_iter(nulls), |row| row.get(3))?.collect()
}

#[cfg(test)]
mod plan_tests {
    use super::*;
    use crate::core::state::StateType;

    #[test]
    fn a_tenants_runs_filtered_by_state_deployment_or_flow_are_a_seek() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("sluice.db")).unwrap();
        let tenant = Some("acme".to_string());
        let cases = [
            (
                RunFilter { tenant: tenant.clone(), state: Some(StateType::Scheduled), ..RunFilter::default() },
                "flow_runs_by_tenant_state",
            ),
            (
                RunFilter { tenant: tenant.clone(), deployment: Some("f/d".into()), ..RunFilter::default() },
                "flow_runs_by_tenant_deployment",
            ),
            (
                RunFilter { tenant: tenant.clone(), flow: Some("f".into()), ..RunFilter::default() },
                "flow_runs_by_tenant_flow",
            ),
        ];
        let cases = cases.into_iter().chain([
            // The scheduler's and the pause sweep's lists of every tenant's waiting runs.
            (RunFilter { state: Some(StateType::Scheduled), ..RunFilter::default() }, "flow_runs_waiting"),
            (RunFilter { state: Some(StateType::Paused), ..RunFilter::default() }, "flow_runs_waiting"),
            // A tenant's runs, newest first, without a sort.
            (RunFilter { tenant: tenant.clone(), ..RunFilter::default() }, "flow_runs_by_tenant_day"),
        ]);
        for (filter, index) in cases {
            let plan =
                store.query(|c| query_plan(c, &super::super::flow_runs_sql(&filter, FLOW_RUN_COLUMNS).0)).unwrap();
            assert!(plan.iter().any(|step| step.contains(index)), "expected {index}: {plan:?}");
            assert!(!plan.iter().any(|step| step.contains("TEMP B-TREE")), "a sort: {plan:?}");
        }
    }

    #[test]
    fn subflow_runs_are_found_by_their_parent() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("sluice.db")).unwrap();
        let sql = format!("SELECT {FLOW_RUN_COLUMNS} FROM flow_runs WHERE parent = ?1 ORDER BY created");
        let plan = store.query(|c| query_plan(c, &sql)).unwrap();
        assert!(plan.iter().any(|step| step.contains("flow_runs_by_parent")), "{plan:?}");
        let plan = store.query(|c| query_plan(c, JOURNAL_QUERY)).unwrap();
        assert!(plan.iter().any(|step| step.contains("flow_runs_by_parent")), "{plan:?}");
    }
}
