//! Every call the UI makes into the service and the stores, in one place,
//! scoped to the signed-in [`Principal`]'s tenant: another tenant's object
//! is "not found", as in the API. Changes check the same roles the API's
//! routes do.

use super::error::{UiError, UiResult};
use super::session::{Principal, Role};
use crate::core::deployment::{ArtifactMeta, Deployment};
use crate::core::describe::FlowDescription;
use crate::core::pool::{WorkPool, WorkQueue};
use crate::core::record::Event;
use crate::core::state::{ALL_STATES, StateType};
use crate::core::tenant::Denied;
use crate::server::dispatch::Dispatch;
use crate::store::{CancelOutcome, FlowRunRow, LogRow, RunsChanged, SqlValue, StateRow, StateStore, TaskRunRow};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::broadcast;

impl From<Denied> for UiError {
    fn from(err: Denied) -> Self {
        UiError::Forbidden(err.0)
    }
}

/// Committed run records as they are committed.
pub fn subscribe(d: &Dispatch) -> broadcast::Receiver<Arc<Event>> {
    d.service.store.subscribe()
}

/// The runs other servers sharing the database change (`None` when no other server can: SQLite).
pub fn subscribe_other_servers(d: &Dispatch) -> Option<broadcast::Receiver<Arc<RunsChanged>>> {
    d.service.store.subscribe_other_servers()
}

/// A deployment with what the list shows about its runs.
pub struct DeploymentSummary {
    /// The deployment.
    pub deployment: Deployment,
    /// When its next scheduled run is due.
    pub next_run: Option<DateTime<Utc>>,
    /// Its latest run that has left the queue: id and state.
    pub last_run: Option<(String, Option<StateType>)>,
}

/// Every deployment, with its next and last runs.
pub fn deployments(d: &Dispatch, p: &Principal) -> UiResult<Vec<DeploymentSummary>> {
    let store = &d.service.store;
    let deployments = store.deployments(Some(&p.tenant))?;
    let next = "SELECT MIN(scheduled) FROM flow_runs
                WHERE tenant = ?1 AND deployment = ?2 AND state IN ('Scheduled', 'Late') AND claimed_by IS NULL";
    let last = "SELECT id, state FROM flow_runs WHERE tenant = ?1 AND deployment = ?2 AND +parent IS NULL
                AND state NOT IN ('Scheduled', 'Late') ORDER BY created DESC LIMIT 1";
    let mut summaries = Vec::with_capacity(deployments.len());
    for deployment in deployments {
        let params = [SqlValue::from(p.tenant.as_str()), SqlValue::from(deployment.full_name())];
        let next_run = store.listing(next, &params)?.first().and_then(|row| row[0].text());
        let last_run = store
            .listing(last, &params)?
            .first()
            .and_then(|row| Some((row[0].text()?, row[1].text().as_deref().and_then(StateType::parse))));
        summaries.push(DeploymentSummary { next_run: next_run.as_deref().and_then(parse_time), last_run, deployment });
    }
    Ok(summaries)
}

/// One deployment.
pub fn deployment(d: &Dispatch, p: &Principal, full_name: &str) -> UiResult<Deployment> {
    Ok(d.service.deployment(&p.tenant, full_name)?)
}

/// The flow a deployment runs, as its artifact describes it.
pub fn flow_of(d: &Dispatch, p: &Principal, deployment: &Deployment) -> UiResult<FlowDescription> {
    let meta = d.service.artifact_meta(Some(&p.tenant), &deployment.artifact)?;
    meta.description.flow(Some(&deployment.flow)).cloned().map_err(UiError::Invalid)
}

/// Sets (or with `None` removes) a deployment's schedule.
pub fn set_schedule(
    d: &Dispatch,
    p: &Principal,
    full_name: &str,
    schedule: Option<crate::core::schedule::Schedule>,
) -> UiResult<Deployment> {
    p.require(Role::Deployer, "change schedules")?;
    let deployment = d.service.set_schedule(&p.tenant, full_name, schedule)?;
    d.work_available();
    Ok(deployment)
}

/// Pauses or resumes a deployment's schedule.
pub fn set_paused(d: &Dispatch, p: &Principal, full_name: &str, paused: bool) -> UiResult<Deployment> {
    p.require(Role::Deployer, if paused { "pause deployments" } else { "resume deployments" })?;
    let deployment = d.service.set_paused(&p.tenant, full_name, paused)?;
    if !paused {
        d.work_available();
    }
    Ok(deployment)
}

/// Creates a run of a deployment with parameter overrides; a worker picks it up at once.
pub async fn create_run(
    d: &Dispatch,
    p: &Principal,
    full_name: &str,
    overrides: Map<String, Value>,
) -> UiResult<FlowRunRow> {
    p.require(Role::Runner, "start runs")?;
    Ok(d.create_run(&p.tenant, full_name, overrides, None, None).await?)
}

/// Which flow runs to list, and from where.
#[derive(Clone, Debug, Default)]
pub struct RunQuery {
    /// Only this state.
    pub state: Option<StateType>,
    /// Only this flow.
    pub flow: Option<String>,
    /// Only this deployment (`flow/name`).
    pub deployment: Option<String>,
    /// Only runs of deployments with this tag.
    pub tag: Option<String>,
    /// Only runs created at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only runs older than this (created, id): the page after one ending there.
    pub before: Option<(DateTime<Utc>, String)>,
    /// Page size.
    pub limit: usize,
}

/// One page of runs, and where the next one starts.
pub struct RunPage {
    /// The runs, newest first.
    pub runs: Vec<FlowRunRow>,
    /// The cursor of the next (older) page, when there is one.
    pub next: Option<(DateTime<Utc>, String)>,
}

/// A page of flow runs (not subflows), newest first. Keyset paging on
/// (created, id) over the `created` index, so page 1000 costs what page 1 does.
pub fn runs(d: &Dispatch, p: &Principal, query: &RunQuery) -> UiResult<RunPage> {
    // `+parent`: nearly every run has no parent, so that index would only slow the
    // query; the `created` index (or the filter's own) serves the order instead.
    // With a flow, deployment or state filter, the tenant's index of that column
    // (each ends in `created`) drives the query; without one, the tenant's own
    // (tenant, created) index does. Never another tenant's rows are walked.
    let mut sql = "SELECT id FROM flow_runs WHERE tenant = ?1 AND +parent IS NULL".to_string();
    let mut values: Vec<SqlValue> = vec![p.tenant.as_str().into()];
    let bind = |values: &mut Vec<SqlValue>, value: String| {
        values.push(value.into());
        format!("?{}", values.len())
    };
    if let Some(state) = query.state {
        sql += &format!(" AND state = {}", bind(&mut values, state.name().into()));
    }
    if let Some(flow) = &query.flow {
        sql += &format!(" AND flow = {}", bind(&mut values, flow.clone()));
    }
    if let Some(deployment) = &query.deployment {
        sql += &format!(" AND deployment = {}", bind(&mut values, deployment.clone()));
    }
    if let Some(tag) = &query.tag {
        let tagged: Vec<String> = d
            .service
            .store
            .deployments(Some(&p.tenant))?
            .into_iter()
            .filter(|dep| dep.tags.contains(tag))
            .map(|dep| dep.full_name())
            .collect();
        let marks: Vec<String> = tagged.into_iter().map(|name| bind(&mut values, name)).collect();
        // One deployment: its index. Several: walk the `created` index and filter,
        // rather than gather and sort every run of every one of them.
        match marks.as_slice() {
            [one] => sql += &format!(" AND deployment = {one}"),
            _ => sql += &format!(" AND +deployment IN ({})", marks.join(", ")),
        }
    }
    if let Some(since) = query.since {
        sql += &format!(" AND created >= {}", bind(&mut values, timestamp(since)));
    }
    if let Some((created, id)) = &query.before {
        let c = bind(&mut values, timestamp(*created));
        let i = bind(&mut values, id.clone());
        // A row value, so the index seeks to the cursor instead of scanning down to it.
        sql += &format!(" AND (created, id) < ({c}, {i})");
    }
    sql += &format!(" ORDER BY created DESC, id DESC LIMIT {}", query.limit + 1);
    let ids: Vec<String> =
        d.service.store.listing(&sql, &values)?.into_iter().filter_map(|row| row[0].text()).collect();
    let mut runs = Vec::with_capacity(ids.len());
    for id in ids.iter().take(query.limit) {
        if let Some(run) = run_row(d, p, id)? {
            runs.push(run);
        }
    }
    let next = (ids.len() > query.limit).then(|| runs.last().map(|r| (r.created, r.id.clone()))).flatten();
    Ok(RunPage { runs, next })
}

fn run_row(d: &Dispatch, p: &Principal, id: &str) -> UiResult<Option<FlowRunRow>> {
    Ok(d.service.store.flow_run(Some(&p.tenant), id)?)
}

/// A task run with its state history.
pub struct TaskDetail {
    /// The task run.
    pub task: TaskRunRow,
    /// Its states, oldest first.
    pub states: Vec<StateRow>,
}

/// A flow run with everything its page shows: its history, its task runs
/// and its subflow runs, each subflow with its own tasks and subflows.
pub struct RunDetail {
    /// The run.
    pub run: FlowRunRow,
    /// Its states, oldest first.
    pub states: Vec<StateRow>,
    /// Its task runs, in creation order.
    pub tasks: Vec<TaskDetail>,
    /// Its subflow runs, in creation order.
    pub subflows: Vec<RunDetail>,
}

/// Subflows nest; past this depth the page links to them instead.
const MAX_DEPTH: usize = 6;

/// A flow run by id or name, with its tasks and subflows.
pub fn run(d: &Dispatch, p: &Principal, id: &str) -> UiResult<RunDetail> {
    let run = run_row(d, p, id)?.ok_or_else(|| UiError::NotFound(format!("There is no flow run `{id}`.")))?;
    detail(d, run, 0)
}

fn detail(d: &Dispatch, run: FlowRunRow, depth: usize) -> UiResult<RunDetail> {
    let store: &dyn StateStore = d.service.store.as_ref();
    let states = store.states(&run.id)?;
    let mut tasks = Vec::new();
    for task in store.task_runs(&run.id)? {
        tasks.push(TaskDetail { states: store.states(&task.id)?, task });
    }
    let mut subflows = Vec::new();
    if depth < MAX_DEPTH {
        for sub in store.subflow_runs(&run.id)? {
            subflows.push(detail(d, sub, depth + 1)?);
        }
    }
    Ok(RunDetail { run, states, tasks, subflows })
}

/// A log line with its position, the cursor of live streams.
pub struct LogLine {
    /// Increases with every line written.
    pub seq: i64,
    /// The line.
    pub row: LogRow,
}

/// The last `limit` log lines of a flow run (its tasks' and subflows' included), oldest first.
pub fn last_logs(d: &Dispatch, p: &Principal, run: &str, limit: usize) -> UiResult<Vec<LogLine>> {
    let mut lines = logs_where(d, p, run, "l.seq < ?2 ORDER BY l.seq DESC", i64::MAX, limit)?;
    lines.reverse();
    Ok(lines)
}

/// Log lines of a flow run written after `after`, oldest first.
pub fn logs_after(d: &Dispatch, p: &Principal, run: &str, after: i64, limit: usize) -> UiResult<Vec<LogLine>> {
    logs_where(d, p, run, "l.seq > ?2 ORDER BY l.seq", after, limit)
}

fn logs_where(d: &Dispatch, p: &Principal, run: &str, order: &str, after: i64, limit: usize) -> UiResult<Vec<LogLine>> {
    let sql = format!(
        "SELECT l.seq, l.time, l.level, l.task_run, l.message, COALESCE(t.name, f.name) AS run_name
         FROM logs l LEFT JOIN task_runs t ON t.id = l.task_run LEFT JOIN flow_runs f ON f.id = l.flow_run
         WHERE (l.flow_run = ?1 OR l.flow_run IN (SELECT id FROM flow_runs WHERE parent = ?1))
         AND EXISTS (SELECT 1 FROM flow_runs WHERE id = ?1 AND tenant = ?4)
         AND {order} LIMIT ?3"
    );
    let params = [run.into(), after.into(), (limit as i64).into(), p.tenant.as_str().into()];
    let rows = d.service.store.listing(&sql, &params)?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let (seq, row) = crate::service::log_line(&row);
            LogLine { seq, row }
        })
        .collect())
}

/// Asks a run to stop.
pub fn cancel(d: &Dispatch, p: &Principal, id: &str) -> UiResult<CancelOutcome> {
    p.require(Role::Runner, "cancel runs")?;
    let run = run_row(d, p, id)?.ok_or_else(|| UiError::NotFound(format!("There is no flow run `{id}`.")))?;
    Ok(d.cancel(&run.id)?)
}

/// Runs an ended run again as its next attempt, resuming from its journal.
pub async fn retry(d: &Dispatch, p: &Principal, id: &str) -> UiResult<()> {
    p.require(Role::Runner, "retry runs")?;
    d.service.retry_by_hand(&p.tenant, id).await?;
    d.work_available();
    Ok(())
}

/// The prompt and input schema of a tenant's paused run.
pub fn pause(d: &Dispatch, p: &Principal, id: &str) -> UiResult<(FlowRunRow, crate::core::pause::Waiting)> {
    let (run, pause) = d.service.pause_of(&p.tenant, id)?;
    Ok((run, pause.waiting))
}

/// Resumes a paused run with `input`, checked against its schema.
pub async fn resume(d: &Dispatch, p: &Principal, id: &str, input: Value) -> UiResult<()> {
    p.require(Role::Runner, "resume runs")?;
    d.service.resume(&p.tenant, id, input).await?;
    d.work_available();
    Ok(())
}

/// What the dashboard shows.
pub struct Dashboard {
    /// Flow runs created in the last 24 h, per state.
    pub last_day: Vec<(Option<StateType>, u64)>,
    /// Runs whose start time passed without a worker taking them, oldest first (at most 10).
    pub late: Vec<FlowRunRow>,
    /// How many runs are late.
    pub late_count: u64,
    /// Deployments whose latest finished run did not succeed, with that run.
    pub failing: Vec<(String, FlowRunRow)>,
    /// Workers seen in the last minute.
    pub workers: Vec<WorkerRow>,
    /// The newest runs.
    pub recent: Vec<FlowRunRow>,
    /// Flow runs created per hour of the last 24 (oldest first), by state.
    pub by_hour: Vec<HourOfRuns>,
}

/// One hour's bar of the dashboard's chart.
pub struct HourOfRuns {
    /// The hour it starts.
    pub start: DateTime<Utc>,
    /// Runs created in it, per state (states in `ALL_STATES` order, none with 0).
    pub counts: Vec<(Option<StateType>, u64)>,
}

/// Runs created in each of the last 24 hours, by state: one grouped query
/// on the hour prefix of the fixed-width creation time (both backends store
/// it as RFC 3339 text).
fn runs_by_hour(d: &Dispatch, p: &Principal, now: DateTime<Utc>) -> UiResult<Vec<HourOfRuns>> {
    use chrono::{DurationRound, TimeDelta};
    let first = (now - Duration::hours(23)).duration_trunc(TimeDelta::hours(1)).unwrap_or(now);
    let rows = d.service.store.listing(
        "SELECT substr(created, 1, 13), state, COUNT(*) FROM flow_runs
         WHERE tenant = ?1 AND created >= ?2 AND +parent IS NULL GROUP BY substr(created, 1, 13), state",
        &[p.tenant.as_str().into(), timestamp(first).into()],
    )?;
    let mut hours: Vec<HourOfRuns> =
        (0..24).map(|i| HourOfRuns { start: first + Duration::hours(i), counts: Vec::new() }).collect();
    for row in rows {
        let (Some(hour), state, n) = (row[0].text(), row[1].text(), row[2].int() as u64) else { continue };
        let Some(bucket) = hours.iter_mut().find(|h| timestamp(h.start).starts_with(&hour)) else { continue };
        bucket.counts.push((state.as_deref().and_then(StateType::parse), n));
    }
    for hour in &mut hours {
        let position = |s: &Option<StateType>| s.and_then(|s| ALL_STATES.iter().position(|a| *a == s));
        hour.counts.sort_by_key(|(s, _)| position(s));
    }
    Ok(hours)
}

/// The dashboard's figures.
pub fn dashboard(d: &Dispatch, p: &Principal) -> UiResult<Dashboard> {
    let now = Utc::now();
    let since = timestamp(now - Duration::hours(24));
    let store = &d.service.store;
    let tenant = [SqlValue::from(p.tenant.as_str())];
    let last_day: Vec<(Option<String>, u64)> = store
        .listing(
            "SELECT state, COUNT(*) FROM flow_runs WHERE tenant = ?1 AND created >= ?2 AND +parent IS NULL
             GROUP BY state",
            &[p.tenant.as_str().into(), since.into()],
        )?
        .into_iter()
        .map(|row| (row[0].text(), row[1].int() as u64))
        .collect();
    let late_ids: Vec<String> = store
        .listing("SELECT id FROM flow_runs WHERE tenant = ?1 AND state = 'Late' ORDER BY scheduled LIMIT 10", &tenant)?
        .into_iter()
        .filter_map(|row| row[0].text())
        .collect();
    let late_count = store
        .listing("SELECT COUNT(*) FROM flow_runs WHERE tenant = ?1 AND state = 'Late'", &tenant)?
        .first()
        .map_or(0, |row| row[0].int() as u64);
    let mut late = Vec::new();
    for id in late_ids {
        late.extend(run_row(d, p, &id)?);
    }
    let mut failing = Vec::new();
    for summary in deployments(d, p)? {
        if let Some((id, Some(state))) = &summary.last_run
            && state.is_terminal()
            && !state.is_success()
            && let Some(run) = run_row(d, p, id)?
        {
            failing.push((summary.deployment.full_name(), run));
        }
    }
    let workers = workers(d, p)?.into_iter().filter(|w| w.last_seen > now - Duration::seconds(60)).collect();
    let recent = runs(d, p, &RunQuery { limit: 10, ..RunQuery::default() })?.runs;
    let last_day = last_day.into_iter().map(|(s, n)| (s.as_deref().and_then(StateType::parse), n)).collect();
    let by_hour = runs_by_hour(d, p, now)?;
    Ok(Dashboard { last_day, late, late_count, failing, workers, recent, by_hour })
}

/// Every artifact, newest first.
pub fn artifacts(d: &Dispatch, p: &Principal) -> UiResult<Vec<ArtifactMeta>> {
    Ok(d.service.store.artifacts(Some(&p.tenant))?)
}

/// One artifact, and the deployments that run it.
pub fn artifact(d: &Dispatch, p: &Principal, digest: &str) -> UiResult<(ArtifactMeta, Vec<Deployment>)> {
    let meta = d.service.artifact_meta(Some(&p.tenant), digest)?;
    let users =
        d.service.store.deployments(Some(&p.tenant))?.into_iter().filter(|dep| dep.artifact == meta.digest).collect();
    Ok((meta, users))
}

/// How many deployments use each artifact.
pub fn deployments_per_artifact(d: &Dispatch, p: &Principal) -> UiResult<HashMap<String, usize>> {
    let mut counts = HashMap::new();
    for dep in d.service.store.deployments(Some(&p.tenant))? {
        *counts.entry(dep.artifact).or_insert(0) += 1;
    }
    Ok(counts)
}

/// Every work pool with its queues.
pub fn pools(d: &Dispatch, p: &Principal) -> UiResult<Vec<(WorkPool, Vec<WorkQueue>)>> {
    let store = &d.service.store;
    let queues = store.work_queues(&p.tenant, None)?;
    Ok(store
        .work_pools(&p.tenant)?
        .into_iter()
        .map(|pool| {
            let own = queues.iter().filter(|q| q.pool == pool.name).cloned().collect();
            (pool, own)
        })
        .collect())
}

/// Pauses or resumes a work pool.
pub fn set_pool_paused(d: &Dispatch, p: &Principal, pool: &str, paused: bool) -> UiResult<()> {
    p.require(Role::Admin, if paused { "pause work pools" } else { "resume work pools" })?;
    d.service.set_work_pool_paused(&p.tenant, pool, paused)?;
    if !paused {
        d.work_available();
    }
    Ok(())
}

/// Pauses or resumes a work queue.
pub fn set_queue_paused(d: &Dispatch, p: &Principal, pool: &str, queue: &str, paused: bool) -> UiResult<()> {
    p.require(Role::Admin, if paused { "pause work queues" } else { "resume work queues" })?;
    d.service.set_work_queue_paused(&p.tenant, pool, queue, paused)?;
    if !paused {
        d.work_available();
    }
    Ok(())
}

/// A worker as the pools page shows it.
pub struct WorkerRow {
    /// Its name.
    pub name: String,
    /// First heartbeat.
    pub started: DateTime<Utc>,
    /// Latest heartbeat.
    pub last_seen: DateTime<Utc>,
    /// Runs it holds that have not ended.
    pub running: u64,
}

/// Every worker that ever sent a heartbeat, latest first. Workers serve
/// every tenant; the runs counted are this tenant's only.
pub fn workers(d: &Dispatch, p: &Principal) -> UiResult<Vec<WorkerRow>> {
    let store = &d.service.store;
    let running: HashMap<String, u64> = store
        .listing(
            "SELECT claimed_by, COUNT(*) FROM flow_runs WHERE ended IS NULL AND claimed_by IS NOT NULL
             AND +tenant = ?1 GROUP BY claimed_by",
            &[p.tenant.as_str().into()],
        )?
        .into_iter()
        .filter_map(|row| Some((row[0].text()?, row[1].int() as u64)))
        .collect();
    let rows = store.listing("SELECT name, started, last_seen FROM workers ORDER BY last_seen DESC", &[])?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let name = row[0].text().unwrap_or_default();
            WorkerRow {
                running: running.get(&name).copied().unwrap_or(0),
                name,
                started: row[1].text().as_deref().and_then(parse_time).unwrap_or_default(),
                last_seen: row[2].text().as_deref().and_then(parse_time).unwrap_or_default(),
            }
        })
        .collect())
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

/// The store's text form of a time (RFC 3339, UTC, fixed width so text order is time order).
fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
