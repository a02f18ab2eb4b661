//! Reading PostgreSQL rows into the store's types, and its errors into
//! `StoreError`.

use crate::core::deployment::{ArtifactMeta, Deployment};
use crate::core::journal::{CallPosition, JournalRow, input_digest};
use crate::core::pool::{WorkPool, WorkQueue};
use crate::core::record::RunKind;
use crate::core::state::StateType;
use crate::core::tenant::{Role, Tenant, TokenInfo};
use crate::store::{FlowRunRow, StoreError, TaskRunRow};
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::Row;

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        StoreError::Database(format!("PostgreSQL: {}", describe(&err)))
    }
}

/// An error with the server's own message when it sent one.
pub fn describe(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(err) {
            Some(source) => format!("{err}: {source}"),
            None => err.to_string(),
        },
    }
}

fn corrupt(column: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("column {column} holds `{value}`, which this version cannot read"))
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

/// A non-null time column.
pub fn time(row: &Row, column: &str) -> Result<DateTime<Utc>, StoreError> {
    let text: String = row.try_get(column)?;
    parse_time(&text).ok_or_else(|| corrupt(column, &text))
}

/// A nullable time column.
pub fn optional_time(row: &Row, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    let text: Option<String> = row.try_get(column)?;
    text.map(|t| parse_time(&t).ok_or_else(|| corrupt(column, &t))).transpose()
}

fn json(row: &Row, column: &str) -> Result<Option<Value>, StoreError> {
    let text: Option<String> = row.try_get(column)?;
    Ok(text.map(|t| serde_json::from_str(&t).unwrap_or(Value::String(t))))
}

/// A nullable state column.
pub fn state(row: &Row, column: &str) -> Result<Option<StateType>, StoreError> {
    let text: Option<String> = row.try_get(column)?;
    text.map(|t| StateType::parse(&t).ok_or_else(|| corrupt(column, &t))).transpose()
}

/// The columns [`flow_run`] reads.
pub const FLOW_RUN_COLUMNS: &str = "id, tenant, name, flow, deployment, parent, artifact, parameters, state, message, \
     result, created, scheduled, started, ended, claimed_by, attempt";

/// A flow run.
pub fn flow_run(row: &Row) -> Result<FlowRunRow, StoreError> {
    Ok(FlowRunRow {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant")?,
        name: row.try_get("name")?,
        flow: row.try_get("flow")?,
        deployment: row.try_get("deployment")?,
        parent: row.try_get("parent")?,
        artifact: row.try_get("artifact")?,
        parameters: json(row, "parameters")?.unwrap_or(Value::Null),
        state: state(row, "state")?,
        message: row.try_get("message")?,
        result: json(row, "result")?,
        created: time(row, "created")?,
        scheduled: optional_time(row, "scheduled")?,
        started: optional_time(row, "started")?,
        ended: optional_time(row, "ended")?,
        claimed_by: row.try_get("claimed_by")?,
        attempt: row.try_get::<_, i32>("attempt")? as u32,
    })
}

/// A task run.
pub fn task_run(row: &Row) -> Result<TaskRunRow, StoreError> {
    Ok(TaskRunRow {
        id: row.try_get("id")?,
        flow_run: row.try_get("flow_run")?,
        task: row.try_get("task")?,
        name: row.try_get("name")?,
        state: state(row, "state")?,
        message: row.try_get("message")?,
        result: json(row, "result")?,
        attempts: row.try_get::<_, i32>("attempts")? as u32,
        created: time(row, "created")?,
        ended: optional_time(row, "ended")?,
        call: call(row)?,
    })
}

/// The call position columns (`call_position`, `call_batch`, `call_attempt`), when set.
pub fn call(row: &Row) -> Result<Option<CallPosition>, StoreError> {
    let position: Option<i64> = row.try_get("call_position")?;
    let batch: Option<i64> = row.try_get("call_batch")?;
    let attempt: Option<i32> = row.try_get("call_attempt")?;
    Ok(position.map(|position| CallPosition {
        position: position as u64,
        batch: batch.unwrap_or(position) as u64,
        flow_attempt: attempt.unwrap_or(1) as u32,
    }))
}

/// One recorded call (see `queries::JOURNAL_QUERY`).
pub fn journal_row(row: &Row) -> Result<JournalRow, StoreError> {
    let kind = if row.try_get::<_, String>("kind")? == "flow" { RunKind::Flow } else { RunKind::Task };
    let input: String = row.try_get("input")?;
    Ok(JournalRow {
        flow_run: row.try_get("flow_run")?,
        run: row.try_get("id")?,
        kind,
        name: row.try_get("name")?,
        digest: input_digest(kind, &input),
        call: call(row)?.ok_or_else(|| corrupt("call_position", "NULL"))?,
        state: state(row, "state")?,
        result: row.try_get("result")?,
        ended: optional_time(row, "ended")?,
        created: time(row, "created")?,
    })
}

/// An artifact's metadata.
pub fn artifact(row: &Row) -> Result<ArtifactMeta, StoreError> {
    let description: String = row.try_get("description")?;
    let imports: String = row.try_get("imports")?;
    Ok(ArtifactMeta {
        digest: row.try_get("digest")?,
        size: row.try_get::<_, i64>("size")? as u64,
        description: serde_json::from_str(&description).map_err(|_| corrupt("description", &description))?,
        imports: serde_json::from_str(&imports).map_err(|_| corrupt("imports", &imports))?,
        pushed_at: time(row, "pushed_at")?,
    })
}

/// A deployment (its body, with the tenant column).
pub fn deployment(row: &Row) -> Result<Deployment, StoreError> {
    let body: String = row.try_get("body")?;
    let mut deployment: Deployment = serde_json::from_str(&body).map_err(|_| corrupt("body", &body))?;
    deployment.tenant = row.try_get("tenant")?;
    Ok(deployment)
}

/// A work pool.
pub fn pool(row: &Row) -> Result<WorkPool, StoreError> {
    Ok(WorkPool {
        name: row.try_get("name")?,
        paused: row.try_get("paused")?,
        description: row.try_get("description")?,
        created: time(row, "created")?,
    })
}

/// A work queue.
pub fn queue(row: &Row) -> Result<WorkQueue, StoreError> {
    let tags: String = row.try_get("tags")?;
    Ok(WorkQueue {
        pool: row.try_get("pool")?,
        name: row.try_get("name")?,
        tags: serde_json::from_str(&tags).map_err(|_| corrupt("tags", &tags))?,
        priority: row.try_get("priority")?,
        concurrency_limit: row.try_get::<_, Option<i32>>("concurrency_limit")?.map(|n| n as u32),
        paused: row.try_get("paused")?,
        created: time(row, "created")?,
    })
}

/// A tenant.
pub fn tenant(row: &Row) -> Result<Tenant, StoreError> {
    let policy: String = row.try_get("policy")?;
    Ok(Tenant {
        name: row.try_get("name")?,
        policy: serde_json::from_str(&policy).map_err(|_| corrupt("policy", &policy))?,
        created: time(row, "created")?,
    })
}

/// A token's record.
pub fn token(row: &Row) -> Result<TokenInfo, StoreError> {
    let role: String = row.try_get("role")?;
    Ok(TokenInfo {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant")?,
        role: Role::parse(&role).map_err(|_| corrupt("role", &role))?,
        name: row.try_get("name")?,
        created: time(row, "created")?,
        expires: optional_time(row, "expires")?,
        revoked: optional_time(row, "revoked")?,
    })
}

/// Every row read with `read`.
pub fn all<T>(rows: Vec<Row>, read: impl Fn(&Row) -> Result<T, StoreError>) -> Result<Vec<T>, StoreError> {
    rows.iter().map(read).collect()
}
