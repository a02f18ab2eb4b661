//! The `StateStore` contract in PostgreSQL's SQL: the same statements as
//! the SQLite store's, in PostgreSQL's dialect.

use super::PgStore;
use super::rows::{self, FLOW_RUN_COLUMNS};
use crate::core::deployment::{ArtifactMeta, Deployment};
use crate::core::ids::{RunId, run_name};
use crate::core::journal::JournalRow;
use crate::core::pool::{DEFAULT_POOL, DEFAULT_QUEUE, WorkPool, WorkQueue};
use crate::core::record::{LogLevel, RunKind};
use crate::core::state::StateType;
use crate::core::tenant::{Tenant, TenantPolicy, TokenInfo};
use crate::store::writer::timestamp;
use crate::store::{
    CancelOutcome, Change, Claim, FlowRunRow, LogRow, RunFilter, RunStanding, ScheduledRuns, StateRow, StateStore,
    StoreError, TaskRunRow,
};
use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Transaction};

/// Artifacts as a tenant (`$1`, or NULL for every tenant) sees them, with its own push time.
/// The calls of a run tree with a call position: its task runs and its subflow runs.
const JOURNAL_QUERY: &str = "WITH RECURSIVE tree(id) AS
     (SELECT $1::text UNION ALL SELECT f.id FROM flow_runs f JOIN tree ON f.parent = tree.id)
     SELECT 'task' AS kind, flow_run, id, task AS name, input, call_position, call_batch, call_attempt, state, result,
            ended, created
       FROM task_runs WHERE flow_run IN (SELECT id FROM tree) AND call_position IS NOT NULL
     UNION ALL
     SELECT 'flow', parent, id, flow, parameters, call_position, call_batch, call_attempt, state, result, ended, created
       FROM flow_runs WHERE parent IN (SELECT id FROM tree) AND call_position IS NOT NULL";

const ARTIFACT_SELECT: &str = "SELECT a.digest, a.size, a.description, a.imports,
        COALESCE(t.pushed_at, a.pushed_at) AS pushed_at
     FROM artifacts a LEFT JOIN tenant_artifacts t ON t.digest = a.digest AND t.tenant = $1::text
     WHERE ($1::text IS NULL OR t.tenant IS NOT NULL)";

/// A deployment of a tenant by flow and name.
pub(super) async fn load_deployment(
    c: &impl GenericClient,
    tenant: &str,
    flow: &str,
    name: &str,
) -> Result<Option<Deployment>, StoreError> {
    let row = c
        .query_opt(
            "SELECT tenant, body FROM deployments WHERE tenant = $1 AND flow = $2 AND name = $3",
            &[&tenant, &flow, &name],
        )
        .await?;
    row.as_ref().map(rows::deployment).transpose()
}

/// The queues of a tenant's pool (of all its pools when `None`), by priority.
pub(super) async fn queues_in(
    c: &impl GenericClient,
    tenant: &str,
    pool: Option<&str>,
) -> Result<Vec<WorkQueue>, StoreError> {
    let found = c
        .query(
            "SELECT * FROM work_queues WHERE tenant = $1 AND ($2::text IS NULL OR pool = $2)
             ORDER BY pool, priority, name",
            &[&tenant, &pool],
        )
        .await?;
    rows::all(found, rows::queue)
}

/// Moves a flow run to `state`, recording it in its history.
async fn record_state(tx: &Transaction<'_>, id: &str, state: &str, message: &str, now: &str) -> Result<(), StoreError> {
    tx.execute("UPDATE flow_runs SET state = $2, message = $3 WHERE id = $1", &[&id, &state, &message]).await?;
    tx.execute(
        "INSERT INTO states (run, kind, state, message, attempt, time) VALUES ($1, 'flow', $2, $3, 1, $4)",
        &[&id, &state, &message, &now],
    )
    .await?;
    Ok(())
}

/// Ends a flow run in a terminal `state`.
async fn end_run(tx: &Transaction<'_>, id: &str, state: &str, message: &str, now: &str) -> Result<(), StoreError> {
    record_state(tx, id, state, message, now).await?;
    tx.execute("UPDATE flow_runs SET ended = $2 WHERE id = $1", &[&id, &now]).await?;
    Ok(())
}

/// Ends `Crashed` every unfinished subflow run and task run under flow run
/// `root`: nothing will ever report on them again.
async fn crash_unfinished_parts(tx: &Transaction<'_>, root: &str, message: &str, now: &str) -> Result<(), StoreError> {
    const TREE: &str = "WITH RECURSIVE tree(id) AS
        (SELECT $1::text UNION ALL SELECT f.id FROM flow_runs f JOIN tree ON f.parent = tree.id)";
    let statements = [
        "INSERT INTO states (run, kind, state, message, attempt, time)
         SELECT id, 'flow', 'Crashed', $2, 1, $3 FROM flow_runs
         WHERE id IN (SELECT id FROM tree) AND id <> $1 AND ended IS NULL",
        "UPDATE flow_runs SET state = 'Crashed', message = $2, ended = $3
         WHERE id IN (SELECT id FROM tree) AND id <> $1 AND ended IS NULL",
        "INSERT INTO states (run, kind, state, message, attempt, time)
         SELECT id, 'task', 'Crashed', $2, GREATEST(attempts, 1), $3 FROM task_runs
         WHERE flow_run IN (SELECT id FROM tree) AND ended IS NULL",
        "UPDATE task_runs SET state = 'Crashed', message = $2, ended = $3
         WHERE flow_run IN (SELECT id FROM tree) AND ended IS NULL",
    ];
    for statement in statements {
        tx.execute(&format!("{TREE} {statement}"), &[&root, &message, &now]).await?;
    }
    Ok(())
}

async fn create_queue(c: &impl GenericClient, tenant: &str, queue: &WorkQueue) -> Result<bool, StoreError> {
    let tags = serde_json::to_string(&queue.tags).expect("tags are JSON");
    let limit = queue.concurrency_limit.map(|n| n as i32);
    let created = c
        .execute(
            "INSERT INTO work_queues (tenant, pool, name, tags, priority, concurrency_limit, paused, created)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            &[
                &tenant,
                &queue.pool,
                &queue.name,
                &tags,
                &queue.priority,
                &limit,
                &queue.paused,
                &timestamp(queue.created),
            ],
        )
        .await?;
    Ok(created == 1)
}

async fn create_pool(c: &impl GenericClient, tenant: &str, pool: &WorkPool) -> Result<bool, StoreError> {
    let created = c
        .execute(
            "INSERT INTO work_pools (tenant, name, paused, description, created) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING",
            &[&tenant, &pool.name, &pool.paused, &pool.description, &timestamp(pool.created)],
        )
        .await?;
    if created == 1 {
        let queue = WorkQueue {
            pool: pool.name.clone(),
            name: DEFAULT_QUEUE.to_string(),
            tags: Vec::new(),
            priority: 1,
            concurrency_limit: None,
            paused: false,
            created: pool.created,
        };
        create_queue(c, tenant, &queue).await?;
    }
    Ok(created == 1)
}

/// A run's state, holder, end and parent, as a lease check reads them.
type LeaseRow = (Option<String>, Option<String>, Option<String>, Option<String>);

impl StateStore for PgStore {
    fn save_artifact(&self, tenant: &str, meta: &ArtifactMeta) -> Result<bool, StoreError> {
        let description = serde_json::to_string(&meta.description).expect("a description is JSON");
        let imports = serde_json::to_string(&meta.imports).expect("imports are JSON");
        let pushed = timestamp(meta.pushed_at);
        let size = meta.size as i64;
        self.transaction(async |tx| {
            tx.execute(
                "INSERT INTO artifacts (digest, size, description, imports, pushed_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT DO NOTHING",
                &[&meta.digest, &size, &description, &imports, &pushed],
            )
            .await?;
            let referenced = tx
                .execute(
                    "INSERT INTO tenant_artifacts (tenant, digest, pushed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    &[&tenant, &meta.digest, &pushed],
                )
                .await?;
            Ok(referenced == 1)
        })
    }

    fn artifact(&self, tenant: Option<&str>, digest: &str) -> Result<Option<ArtifactMeta>, StoreError> {
        self.read(async |c| {
            let row = c.query_opt(&format!("{ARTIFACT_SELECT} AND a.digest = $2"), &[&tenant, &digest]).await?;
            row.as_ref().map(rows::artifact).transpose()
        })
    }

    fn artifacts(&self, tenant: Option<&str>) -> Result<Vec<ArtifactMeta>, StoreError> {
        self.read(async |c| {
            rows::all(c.query(&format!("{ARTIFACT_SELECT} ORDER BY pushed_at DESC"), &[&tenant]).await?, rows::artifact)
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
        self.read(async |c| {
            c.execute(
                "INSERT INTO deployments (tenant, flow, name, body, created, updated) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (tenant, flow, name) DO UPDATE SET body = excluded.body, updated = excluded.updated",
                &[
                    &stored.tenant,
                    &stored.flow,
                    &stored.name,
                    &body,
                    &timestamp(stored.created),
                    &timestamp(stored.updated),
                ],
            )
            .await?;
            Ok(())
        })?;
        Ok(change)
    }

    fn deployment(&self, tenant: &str, flow: &str, name: &str) -> Result<Option<Deployment>, StoreError> {
        self.read(async |c| load_deployment(c, tenant, flow, name).await)
    }

    fn deployments(&self, tenant: Option<&str>) -> Result<Vec<Deployment>, StoreError> {
        self.read(async |c| {
            let found = c
                .query(
                    "SELECT tenant, body FROM deployments WHERE $1::text IS NULL OR tenant = $1
                     ORDER BY tenant, flow, name",
                    &[&tenant],
                )
                .await?;
            rows::all(found, rows::deployment)
        })
    }

    fn delete_deployment(&self, tenant: &str, flow: &str, name: &str) -> Result<bool, StoreError> {
        self.read(async |c| {
            let deleted = c
                .execute(
                    "DELETE FROM deployments WHERE tenant = $1 AND flow = $2 AND name = $3",
                    &[&tenant, &flow, &name],
                )
                .await?;
            Ok(deleted == 1)
        })
    }

    fn flow_runs(&self, filter: &RunFilter) -> Result<Vec<FlowRunRow>, StoreError> {
        let (sql, values) = crate::store::flow_runs_sql(filter, FLOW_RUN_COLUMNS);
        let sql = crate::store::listing::to_postgres(&sql);
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        self.read(async |c| rows::all(c.query(&sql, &params).await?, rows::flow_run))
    }

    fn flow_run(&self, tenant: Option<&str>, id_or_name: &str) -> Result<Option<FlowRunRow>, StoreError> {
        self.read(async |c| {
            let by_id =
                format!("SELECT {FLOW_RUN_COLUMNS} FROM flow_runs WHERE id = $1 AND ($2::text IS NULL OR tenant = $2)");
            if let Some(row) = c.query_opt(&by_id, &[&id_or_name, &tenant]).await? {
                return rows::flow_run(&row).map(Some);
            }
            let by_name = format!(
                "SELECT {FLOW_RUN_COLUMNS} FROM flow_runs WHERE name = $1 AND ($2::text IS NULL OR tenant = $2)
                 ORDER BY created DESC LIMIT 1"
            );
            c.query_opt(&by_name, &[&id_or_name, &tenant]).await?.as_ref().map(rows::flow_run).transpose()
        })
    }

    fn subflow_runs(&self, flow_run: &str) -> Result<Vec<FlowRunRow>, StoreError> {
        let sql = format!("SELECT {FLOW_RUN_COLUMNS} FROM flow_runs WHERE parent = $1 ORDER BY created");
        self.read(async |c| rows::all(c.query(&sql, &[&flow_run]).await?, rows::flow_run))
    }

    fn task_runs(&self, flow_run: &str) -> Result<Vec<TaskRunRow>, StoreError> {
        self.read(async |c| {
            let found =
                c.query("SELECT * FROM task_runs WHERE flow_run = $1 ORDER BY created, seq", &[&flow_run]).await?;
            rows::all(found, rows::task_run)
        })
    }

    fn journal(&self, flow_run: &str) -> Result<Vec<JournalRow>, StoreError> {
        self.read(async |c| {
            let found = c.query(JOURNAL_QUERY, &[&flow_run]).await?;
            rows::all(found, rows::journal_row)
        })
    }

    fn states(&self, run: &str) -> Result<Vec<StateRow>, StoreError> {
        self.read(async |c| {
            let found = c
                .query("SELECT state, message, attempt, time FROM states WHERE run = $1 ORDER BY seq", &[&run])
                .await?;
            rows::all(found, |row| {
                Ok(StateRow {
                    state: rows::state(row, "state")?
                        .ok_or_else(|| StoreError::Corrupt(format!("a state of run {run} has no name")))?,
                    message: row.try_get("message")?,
                    attempt: row.try_get::<_, i32>("attempt")? as u32,
                    time: rows::time(row, "time")?,
                })
            })
        })
    }

    fn logs(&self, flow_run: &str, tail: Option<usize>) -> Result<Vec<LogRow>, StoreError> {
        let limit = tail.map(|n| n as i64);
        self.read(async |c| {
            let found = c
                .query(
                    "SELECT l.time, l.level, l.task_run, l.message,
                            COALESCE(t.name, (SELECT name FROM flow_runs WHERE id = l.flow_run)) AS run_name
                     FROM logs l LEFT JOIN task_runs t ON t.id = l.task_run
                     WHERE l.flow_run = $1 OR l.flow_run IN (SELECT id FROM flow_runs WHERE parent = $1)
                     ORDER BY l.seq DESC LIMIT $2",
                    &[&flow_run, &limit],
                )
                .await?;
            let mut lines = rows::all(found, |row| {
                let level: String = row.try_get("level")?;
                Ok(LogRow {
                    time: rows::time(row, "time")?,
                    level: LogLevel::parse(&level)
                        .ok_or_else(|| StoreError::Corrupt(format!("a log line has level `{level}`")))?,
                    task_run: row.try_get("task_run")?,
                    run_name: row.try_get::<_, Option<String>>("run_name")?.unwrap_or_default(),
                    message: row.try_get("message")?,
                })
            })?;
            lines.reverse();
            Ok(lines)
        })
    }

    fn schedule_runs(&self, slots: &ScheduledRuns<'_>) -> Result<usize, StoreError> {
        let deployment = slots.deployment;
        let full_name = deployment.full_name();
        let now = timestamp(slots.now);
        let parameters = slots.parameters.to_string();
        self.transaction(async |tx| {
            // Made for the deployment as the scheduler read it: if it was
            // paused or changed since, whoever did that removes (or removed)
            // the future runs, and these would outlive that removal. The
            // shared row lock makes a change wait for this transaction, so
            // its removal comes after these runs are committed.
            let stored = tx
                .query_opt(
                    "SELECT tenant, body FROM deployments WHERE tenant = $1 AND flow = $2 AND name = $3 FOR SHARE",
                    &[&deployment.tenant, &deployment.flow, &deployment.name],
                )
                .await?;
            let stored = stored.as_ref().map(rows::deployment).transpose()?;
            if !stored.is_some_and(|stored| !stored.paused && stored.updated == deployment.updated) {
                return Ok(0);
            }
            let mut created = 0;
            for time in slots.times {
                let id = RunId::new().to_string();
                let message = format!("Scheduled by the deployment's schedule for {}", time.to_rfc3339());
                let name = run_name(&mut rand::rng());
                let inserted = tx
                    .execute(
                        "INSERT INTO flow_runs (id, name, flow, deployment, artifact, parameters, state, message,
                         created, scheduled, auto_scheduled, tenant)
                         VALUES ($1, $2, $3, $4, $5, $6, 'Scheduled', $7, $8, $9, TRUE, $10) ON CONFLICT DO NOTHING",
                        &[
                            &id,
                            &name,
                            &deployment.flow,
                            &full_name,
                            &deployment.artifact,
                            &parameters,
                            &message,
                            &now,
                            &timestamp(*time),
                            &deployment.tenant,
                        ],
                    )
                    .await?;
                if inserted == 1 {
                    tx.execute(
                        "INSERT INTO states (run, kind, state, message, attempt, time)
                         VALUES ($1, 'flow', 'Scheduled', $2, 1, $3)",
                        &[&id, &message, &now],
                    )
                    .await?;
                    created += 1;
                }
            }
            Ok(created)
        })
    }

    fn mark_late(&self, cutoff: DateTime<Utc>, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let now = timestamp(now);
        let cutoff = timestamp(cutoff);
        let message = "Its start time passed and no runner has taken it";
        self.transaction(async |tx| {
            // Runs a claimer holds locked are being taken: they are not late.
            let late = tx
                .query(
                    "SELECT id FROM flow_runs WHERE state = 'Scheduled' AND claimed_by IS NULL AND scheduled < $1
                     FOR UPDATE SKIP LOCKED",
                    &[&cutoff],
                )
                .await?;
            for row in &late {
                let id: String = row.get(0);
                tx.execute("UPDATE flow_runs SET state = 'Late', message = $2 WHERE id = $1", &[&id, &message]).await?;
                tx.execute(
                    "INSERT INTO states (run, kind, state, message, attempt, time) VALUES ($1, 'flow', 'Late', $2, 1, $3)",
                    &[&id, &message, &now],
                )
                .await?;
            }
            Ok(late.len())
        })
    }

    fn unschedule_future(&self, tenant: &str, deployment: &str, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let now = timestamp(now);
        self.transaction(async |tx| {
            let future = "SELECT id FROM flow_runs WHERE tenant = $1 AND deployment = $2 AND auto_scheduled
                          AND state = 'Scheduled' AND claimed_by IS NULL AND scheduled > $3";
            tx.execute(&format!("DELETE FROM states WHERE run IN ({future})"), &[&tenant, &deployment, &now]).await?;
            let deleted = tx
                .execute(&format!("DELETE FROM flow_runs WHERE id IN ({future})"), &[&tenant, &deployment, &now])
                .await?;
            Ok(deleted as usize)
        })
    }

    fn claim_due(&self, claim: &Claim<'_>) -> Result<Vec<FlowRunRow>, StoreError> {
        let claimed = self.transaction(async |tx| super::claim::claim_in(tx, claim).await)?;
        let mut runs = Vec::with_capacity(claimed.len());
        for id in claimed {
            runs.extend(self.flow_run(None, &id)?);
        }
        runs.sort_by_key(|run| run.scheduled);
        Ok(runs)
    }

    fn claim_run(&self, id: &str, taker: &str) -> Result<bool, StoreError> {
        let taken = self.transaction(async |tx| {
            Ok(tx
                .execute(
                    "UPDATE flow_runs SET claimed_by = $2 WHERE id = $1 AND claimed_by IS NULL
                     AND state IN ('Scheduled', 'Late')",
                    &[&id, &taker],
                )
                .await?)
        })?;
        Ok(taken == 1)
    }

    fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<String> = self.read(async |c| {
            let row = c
                .query_one(
                    "SELECT MIN(scheduled) FROM flow_runs WHERE state IN ('Scheduled', 'Late') AND claimed_by IS NULL",
                    &[],
                )
                .await?;
            Ok(row.get(0))
        })?;
        Ok(next.as_deref().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc)))
    }

    fn heartbeat(&self, worker: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let now = timestamp(now);
        self.read(async |c| {
            c.execute(
                "INSERT INTO workers (name, started, last_seen) VALUES ($1, $2, $2)
                 ON CONFLICT (name) DO UPDATE SET last_seen = excluded.last_seen",
                &[&worker, &now],
            )
            .await?;
            Ok(())
        })
    }

    fn crash_orphans(&self, cutoff: DateTime<Utc>, now: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
        let now = timestamp(now);
        let cutoff = timestamp(cutoff);
        self.transaction(async |tx| {
            let orphans = tx
                .query(
                    "SELECT r.id, w.name FROM flow_runs r JOIN workers w ON w.name = r.claimed_by
                     WHERE r.ended IS NULL AND w.last_seen < $1 FOR UPDATE OF r",
                    &[&cutoff],
                )
                .await?;
            let mut ids = Vec::with_capacity(orphans.len());
            for row in &orphans {
                let (id, worker): (String, String) = (row.get(0), row.get(1));
                let message = format!("worker `{worker}` stopped sending heartbeats while it ran this flow run");
                end_run(tx, &id, "Crashed", &message, &now).await?;
                crash_unfinished_parts(tx, &id, &message, &now).await?;
                ids.push(id);
            }
            Ok(ids)
        })
    }

    fn release_unheard(
        &self,
        worker: &str,
        running: &[String],
        before: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let before = timestamp(before);
        self.transaction(async |tx| {
            let released = tx
                .query(
                    "UPDATE flow_runs SET claimed_by = NULL, queue = NULL, claimed_at = NULL
                     WHERE claimed_by = $1 AND ended IS NULL AND state IN ('Scheduled', 'Late') AND claimed_at < $2
                       AND NOT (id = ANY($3)) RETURNING id",
                    &[&worker, &before, &running],
                )
                .await?;
            Ok(released.iter().map(|row| row.get(0)).collect())
        })
    }

    fn crash_held_by(&self, worker: &str, now: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
        let now = timestamp(now);
        self.transaction(async |tx| {
            let held = tx
                .query("SELECT id FROM flow_runs WHERE claimed_by = $1 AND ended IS NULL FOR UPDATE", &[&worker])
                .await?;
            let message = format!("worker `{worker}` started again while it ran this flow run");
            let mut ids = Vec::with_capacity(held.len());
            for row in &held {
                let id: String = row.get(0);
                end_run(tx, &id, "Crashed", &message, &now).await?;
                crash_unfinished_parts(tx, &id, &message, &now).await?;
                ids.push(id);
            }
            Ok(ids)
        })
    }

    fn request_cancel(&self, id: &str, now: DateTime<Utc>) -> Result<CancelOutcome, StoreError> {
        let now = timestamp(now);
        self.transaction(async |tx| {
            let row =
                tx.query_opt("SELECT state, claimed_by, ended FROM flow_runs WHERE id = $1 FOR UPDATE", &[&id]).await?;
            let Some(row) = row else { return Ok(CancelOutcome::NotFound) };
            let (state, taker, ended): (Option<String>, Option<String>, Option<String>) =
                (row.get(0), row.get(1), row.get(2));
            if ended.is_some() || state.as_deref() == Some("Cancelling") {
                return Ok(if ended.is_some() { CancelOutcome::AlreadyEnded } else { CancelOutcome::Cancelling });
            }
            // A paused run is held by nobody either: it waits for input, not for a runner.
            let waiting = matches!(state.as_deref(), Some("Scheduled" | "Late" | "Paused")) && taker.is_none();
            if waiting {
                // Taken by nobody: no runner will ever see it, so it ends here.
                tx.execute("UPDATE flow_runs SET claimed_by = 'cancelled' WHERE id = $1", &[&id]).await?;
                let message = match state.as_deref() {
                    Some("Paused") => "Cancelled while it was paused for input",
                    _ => "Cancelled before it started",
                };
                end_run(tx, id, "Cancelled", message, &now).await?;
                return Ok(CancelOutcome::Cancelled);
            }
            record_state(tx, id, "Cancelling", "Cancellation requested", &now).await?;
            Ok(CancelOutcome::Cancelling)
        })
    }

    fn reschedule(&self, id: &str, at: DateTime<Utc>, message: &str) -> Result<(), StoreError> {
        let now = timestamp(Utc::now());
        self.transaction(async |tx| {
            tx.execute(
                "UPDATE flow_runs SET claimed_by = NULL, queue = NULL, ended = NULL, scheduled = $2, attempt = attempt + 1
                 WHERE id = $1",
                &[&id, &timestamp(at)],
            )
            .await?;
            record_state(tx, id, "Scheduled", message, &now).await
        })
    }

    fn to_stop(&self, taker: &str, ids: &[String]) -> Result<Vec<String>, StoreError> {
        self.read(async |c| {
            let found =
                c.query("SELECT id, state, claimed_by, ended FROM flow_runs WHERE id = ANY($1)", &[&ids]).await?;
            let mut keep = std::collections::HashSet::new();
            for row in &found {
                let (id, state, holder, ended): (String, Option<String>, Option<String>, Option<String>) =
                    (row.get(0), row.get(1), row.get(2), row.get(3));
                if state.as_deref() != Some("Cancelling") && holder.as_deref() == Some(taker) && ended.is_none() {
                    keep.insert(id);
                }
            }
            Ok(ids.iter().filter(|id| !keep.contains(*id)).cloned().collect())
        })
    }

    fn lease_lost(&self, taker: &str, id: &str) -> Result<Option<String>, StoreError> {
        let row: Option<LeaseRow> = self.read(async |c| {
            let row =
                c.query_opt("SELECT state, claimed_by, ended, parent FROM flow_runs WHERE id = $1", &[&id]).await?;
            Ok(row.map(|row| (row.get(0), row.get(1), row.get(2), row.get(3))))
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

    fn has_state(&self, id: &str, state: StateType, time: DateTime<Utc>) -> Result<bool, StoreError> {
        let time = timestamp(time);
        self.read(async |c| {
            let found = c
                .query_opt(
                    "SELECT 1 FROM states WHERE run = $1 AND state = $2 AND time = $3 LIMIT 1",
                    &[&id, &state.name(), &time],
                )
                .await?;
            Ok(found.is_some())
        })
    }

    fn run_standing(&self, kind: RunKind, id: &str) -> Result<Option<RunStanding>, StoreError> {
        let query = match kind {
            RunKind::Flow => "SELECT tenant, id, ended IS NOT NULL FROM flow_runs WHERE id = $1",
            RunKind::Task => {
                "SELECT f.tenant, t.flow_run, t.ended IS NOT NULL FROM task_runs t
                 JOIN flow_runs f ON f.id = t.flow_run WHERE t.id = $1"
            }
        };
        self.read(async |c| {
            let row = c.query_opt(query, &[&id]).await?;
            Ok(row.map(|row| RunStanding { tenant: row.get(0), flow_run: row.get(1), ended: row.get(2) }))
        })
    }

    fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (now, until) = (timestamp(now), timestamp(until));
        self.read(async |c| {
            let changed = c
                .execute(
                    "INSERT INTO leases (name, holder, expires) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires
                     WHERE leases.holder = excluded.holder OR leases.expires < $4",
                    &[&name, &holder, &until, &now],
                )
                .await?;
            Ok(changed == 1)
        })
    }

    fn task_flow_run(&self, task_run: &str) -> Result<Option<String>, StoreError> {
        self.read(async |c| {
            Ok(c.query_opt("SELECT flow_run FROM task_runs WHERE id = $1", &[&task_run]).await?.map(|row| row.get(0)))
        })
    }

    fn work_pools(&self, tenant: &str) -> Result<Vec<WorkPool>, StoreError> {
        self.read(async |c| {
            rows::all(
                c.query("SELECT * FROM work_pools WHERE tenant = $1 ORDER BY name", &[&tenant]).await?,
                rows::pool,
            )
        })
    }

    fn create_work_pool(&self, tenant: &str, pool: &WorkPool) -> Result<bool, StoreError> {
        self.transaction(async |tx| create_pool(tx, tenant, pool).await)
    }

    fn set_work_pool_paused(&self, tenant: &str, name: &str, paused: bool) -> Result<bool, StoreError> {
        self.read(async |c| {
            let changed = c
                .execute(
                    "UPDATE work_pools SET paused = $3 WHERE tenant = $1 AND name = $2",
                    &[&tenant, &name, &paused],
                )
                .await?;
            Ok(changed == 1)
        })
    }

    fn delete_work_pool(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        self.transaction(async |tx| {
            tx.execute("DELETE FROM work_queues WHERE tenant = $1 AND pool = $2", &[&tenant, &name]).await?;
            Ok(tx.execute("DELETE FROM work_pools WHERE tenant = $1 AND name = $2", &[&tenant, &name]).await? == 1)
        })
    }

    fn work_queues(&self, tenant: &str, pool: Option<&str>) -> Result<Vec<WorkQueue>, StoreError> {
        self.read(async |c| queues_in(c, tenant, pool).await)
    }

    fn create_work_queue(&self, tenant: &str, queue: &WorkQueue) -> Result<bool, StoreError> {
        self.transaction(async |tx| create_queue(tx, tenant, queue).await)
    }

    fn set_work_queue_paused(&self, tenant: &str, pool: &str, name: &str, paused: bool) -> Result<bool, StoreError> {
        self.read(async |c| {
            let changed = c
                .execute(
                    "UPDATE work_queues SET paused = $4 WHERE tenant = $1 AND pool = $2 AND name = $3",
                    &[&tenant, &pool, &name, &paused],
                )
                .await?;
            Ok(changed == 1)
        })
    }

    fn delete_work_queue(&self, tenant: &str, pool: &str, name: &str) -> Result<bool, StoreError> {
        self.read(async |c| {
            let deleted = c
                .execute(
                    "DELETE FROM work_queues WHERE tenant = $1 AND pool = $2 AND name = $3",
                    &[&tenant, &pool, &name],
                )
                .await?;
            Ok(deleted == 1)
        })
    }

    fn create_tenant(&self, tenant: &Tenant) -> Result<bool, StoreError> {
        let policy = serde_json::to_string(&tenant.policy).expect("a policy is JSON");
        self.transaction(async |tx| {
            let created = tx
                .execute(
                    "INSERT INTO tenants (name, policy, created) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    &[&tenant.name, &policy, &timestamp(tenant.created)],
                )
                .await?;
            if created == 1 {
                let pool = WorkPool {
                    name: DEFAULT_POOL.to_string(),
                    paused: false,
                    description: Some("Runs of deployments that name no pool".into()),
                    created: tenant.created,
                };
                create_pool(tx, &tenant.name, &pool).await?;
            }
            Ok(created == 1)
        })
    }

    fn tenant(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        self.read(async |c| {
            c.query_opt("SELECT * FROM tenants WHERE name = $1", &[&name]).await?.as_ref().map(rows::tenant).transpose()
        })
    }

    fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.read(async |c| rows::all(c.query("SELECT * FROM tenants ORDER BY name", &[]).await?, rows::tenant))
    }

    fn set_tenant_policy(&self, name: &str, policy: &TenantPolicy) -> Result<bool, StoreError> {
        let policy = serde_json::to_string(policy).expect("a policy is JSON");
        self.read(async |c| {
            Ok(c.execute("UPDATE tenants SET policy = $2 WHERE name = $1", &[&name, &policy]).await? == 1)
        })
    }

    fn running_runs(&self, tenant: &str) -> Result<Vec<String>, StoreError> {
        self.read(async |c| {
            let found = c
                .query(
                    "SELECT name FROM flow_runs WHERE claimed_by IS NOT NULL AND ended IS NULL AND tenant = $1",
                    &[&tenant],
                )
                .await?;
            Ok(found.iter().map(|row| row.get(0)).collect())
        })
    }

    fn delete_tenant(&self, name: &str) -> Result<bool, StoreError> {
        self.transaction(async |tx| {
            let runs = "SELECT id FROM flow_runs WHERE tenant = $1";
            let tasks = format!("SELECT id FROM task_runs WHERE flow_run IN ({runs})");
            tx.execute(&format!("DELETE FROM states WHERE run IN ({tasks}) OR run IN ({runs})"), &[&name]).await?;
            tx.execute(&format!("DELETE FROM logs WHERE flow_run IN ({runs})"), &[&name]).await?;
            tx.execute(&format!("DELETE FROM task_runs WHERE flow_run IN ({runs})"), &[&name]).await?;
            for table in crate::store::tenants::TENANT_OWNED_TABLES {
                tx.execute(&format!("DELETE FROM {table} WHERE tenant = $1"), &[&name]).await?;
            }
            Ok(tx.execute("DELETE FROM tenants WHERE name = $1", &[&name]).await? == 1)
        })
    }

    fn create_token(&self, info: &TokenInfo, hash: &[u8; 32]) -> Result<(), StoreError> {
        let hash = hash.as_slice();
        self.read(async |c| {
            c.execute(
                "INSERT INTO tokens (id, tenant, role, name, hash, created, expires) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &info.id,
                    &info.tenant,
                    &info.role.name(),
                    &info.name,
                    &hash,
                    &timestamp(info.created),
                    &info.expires.map(timestamp),
                ],
            )
            .await?;
            Ok(())
        })
    }

    fn token(&self, id: &str) -> Result<Option<(TokenInfo, Vec<u8>)>, StoreError> {
        self.read(async |c| {
            let row = c.query_opt("SELECT * FROM tokens WHERE id = $1", &[&id]).await?;
            row.map(|row| Ok((rows::token(&row)?, row.try_get("hash")?))).transpose()
        })
    }

    fn tokens(&self, tenant: Option<&str>) -> Result<Vec<TokenInfo>, StoreError> {
        self.read(async |c| {
            let found = c
                .query(
                    "SELECT * FROM tokens WHERE $1::text IS NULL OR tenant = $1 ORDER BY tenant, created DESC",
                    &[&tenant],
                )
                .await?;
            rows::all(found, rows::token)
        })
    }

    fn revoke_token(&self, tenant: Option<&str>, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let now = timestamp(now);
        self.read(async |c| {
            let changed = c
                .execute(
                    "UPDATE tokens SET revoked = $3 WHERE id = $1 AND ($2::text IS NULL OR tenant = $2) AND revoked IS NULL",
                    &[&id, &tenant, &now],
                )
                .await?;
            Ok(changed == 1)
        })
    }

    fn purge_ended(&self, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        self.purge_ended_runs(&timestamp(before), limit)
    }
}
