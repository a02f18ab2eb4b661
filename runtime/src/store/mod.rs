//! The state store: artifacts' metadata, deployments, flow runs, task runs,
//! every state transition, logs and cached results. One trait, two
//! databases (SQLite, PostgreSQL), one test suite over both.

/// SQL for the number of the next state of the flow run that `$run` (an
/// SQL expression) names, in `states`: keyed by run and this number, no
/// rowid. SQLite's trigger moves a flow state inserted there into its
/// run's row (`history.rs`); PostgreSQL keeps it there.
macro_rules! next_state_seq {
    ($run:literal) => {
        concat!("(SELECT COALESCE(MAX(seq), 0) + 1 FROM states WHERE run = ", $run, ")")
    };
}

mod backend;
mod changes;
mod checkpoint;
mod claim;
mod events;
mod fold;
mod history;
mod listing;
mod migrations;
mod postgres;
mod retention;
mod secrets;
mod sessions;
mod sqlite;
#[cfg(test)]
mod suite;
mod tenants;
#[cfg(test)]
#[path = "../../../tests/support/pg_cluster.rs"]
mod test_cluster;
mod writer;

pub use backend::{Backend, DATABASE_URL_VARIABLE, open, open_url};
pub use changes::RunsChanged;
pub use listing::SqlValue;
pub use postgres::PgStore;
pub use retention::PURGE_BATCH;
pub use secrets::SecretInfo;
pub use sessions::StoredSession;
pub use sqlite::SqliteStore;

use crate::core::deployment::{ArtifactMeta, Deployment};
use crate::core::journal::{CallPosition, JournalRow};
use crate::core::pool::{WorkPool, WorkQueue};
use crate::core::record::{LogLevel, Recorder, ResultCache, RunKind};
use crate::core::state::StateType;
use crate::core::tenant::{Tenant, TenantPolicy, TokenInfo};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A failure of the store itself (not of a run).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened, read or written.
    #[error("state store: {0}")]
    Database(String),
    /// A stored value could not be read back.
    #[error("state store holds a value it cannot read: {0}")]
    Corrupt(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        StoreError::Database(err.to_string())
    }
}

/// What an upsert of a deployment did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Change {
    /// It did not exist.
    Created,
    /// It existed and differed.
    Updated,
    /// It existed with the same settings.
    Unchanged,
}

/// The listing of top-level flow runs that `filter` selects, newest first,
/// reading `columns`, in SQLite's dialect (`listing::to_postgres` for the
/// other backend), and its values.
pub(super) fn flow_runs_sql(filter: &RunFilter, columns: &str) -> (String, Vec<String>) {
    let mut sql = format!("SELECT {columns} FROM flow_runs WHERE parent IS NULL");
    let mut values: Vec<String> = Vec::new();
    for (column, value) in [
        ("tenant", filter.tenant.clone()),
        ("flow", filter.flow.clone()),
        ("deployment", filter.deployment.clone()),
        ("state", filter.state.map(|s| s.name().to_string())),
    ] {
        if let Some(value) = value {
            values.push(value);
            sql.push_str(&format!(" AND {column} = ?{}", values.len()));
        }
    }
    if filter.state.is_some_and(|state| matches!(state, StateType::Scheduled | StateType::Late | StateType::Paused)) {
        // Word for word the condition of SQLite's partial index `flow_runs_waiting`, which it must see to use it.
        sql.push_str(" AND state IN ('Scheduled', 'Late', 'Paused')");
    }
    sql.push_str(&format!(" ORDER BY created DESC LIMIT {}", filter.limit.max(1)));
    (sql, values)
}

/// Which flow runs to list.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    /// Only runs of this tenant (every tenant's when `None`).
    pub tenant: Option<String>,
    /// Only runs of this flow.
    pub flow: Option<String>,
    /// Only runs of this deployment (`flow/name`).
    pub deployment: Option<String>,
    /// Only runs in this state.
    pub state: Option<StateType>,
    /// At most this many, newest first.
    pub limit: usize,
}

/// A flow run as listed and inspected.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FlowRunRow {
    /// Its id.
    pub id: String,
    /// The tenant that owns it.
    pub tenant: String,
    /// Its generated name.
    pub name: String,
    /// The flow it runs.
    pub flow: String,
    /// `flow/deployment`, when it came from one.
    pub deployment: Option<String>,
    /// The flow run it is a subflow of.
    pub parent: Option<String>,
    /// The artifact it runs.
    pub artifact: String,
    /// Its parameters.
    pub parameters: Value,
    /// Its current state.
    pub state: Option<StateType>,
    /// The message of its latest state.
    pub message: Option<String>,
    /// Its result, once completed.
    pub result: Option<Value>,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// When it is (or was) due to start.
    pub scheduled: Option<DateTime<Utc>>,
    /// When it started running.
    pub started: Option<DateTime<Utc>>,
    /// When it reached a terminal state.
    pub ended: Option<DateTime<Utc>>,
    /// Who took it to run it.
    pub claimed_by: Option<String>,
    /// Its attempt, from 1: a retry (by hand, by policy, after a crash) runs
    /// it again, replaying what earlier attempts completed.
    #[serde(default = "first_attempt")]
    pub attempt: u32,
}

impl FlowRunRow {
    /// Whether the store says it runs already: handed to a runner that way,
    /// the claim that took it started it (the embedded worker's claims
    /// record `Pending` and `Running` themselves).
    pub fn started(&self) -> bool {
        self.state.is_some_and(StateType::is_running)
    }
}

fn first_attempt() -> u32 {
    1
}

/// A task run as inspected.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskRunRow {
    /// Its id.
    pub id: String,
    /// The flow run it belongs to.
    pub flow_run: String,
    /// The task it runs.
    pub task: String,
    /// Its display name.
    pub name: String,
    /// Its current state.
    pub state: Option<StateType>,
    /// The message of its latest state.
    pub message: Option<String>,
    /// Its result, once completed.
    pub result: Option<Value>,
    /// Attempts made.
    pub attempts: u32,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// When it reached a terminal state.
    pub ended: Option<DateTime<Utc>>,
    /// Where its call stands in its flow run's calls, and the flow attempt that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<CallPosition>,
}

/// One entry of a run's state history.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StateRow {
    /// The state.
    pub state: StateType,
    /// Why.
    pub message: Option<String>,
    /// The attempt.
    pub attempt: u32,
    /// When.
    pub time: DateTime<Utc>,
}

/// One log line as queried.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogRow {
    /// When.
    pub time: DateTime<Utc>,
    /// Severity.
    pub level: LogLevel,
    /// The task run that wrote it, if any.
    pub task_run: Option<String>,
    /// Display name of the run that wrote it (task or flow).
    pub run_name: String,
    /// The text.
    pub message: String,
}

/// Everything the host keeps. Recording goes through [`Recorder`]; the
/// rest are plain calls.
pub trait StateStore: Recorder + ResultCache {
    /// Records an artifact's metadata and that `tenant` pushed it; false
    /// when that tenant had already pushed it.
    fn save_artifact(&self, tenant: &str, meta: &ArtifactMeta) -> Result<bool, StoreError>;
    /// One artifact's metadata, if `tenant` pushed it (`None`: any tenant).
    fn artifact(&self, tenant: Option<&str>, digest: &str) -> Result<Option<ArtifactMeta>, StoreError>;
    /// The artifacts `tenant` pushed (`None`: every one), newest first.
    fn artifacts(&self, tenant: Option<&str>) -> Result<Vec<ArtifactMeta>, StoreError>;

    /// Creates or updates the deployment's `flow/name` in its tenant.
    fn upsert_deployment(&self, deployment: &Deployment) -> Result<Change, StoreError>;
    /// One deployment of a tenant.
    fn deployment(&self, tenant: &str, flow: &str, name: &str) -> Result<Option<Deployment>, StoreError>;
    /// The deployments of a tenant (`None`: of every tenant), by name.
    fn deployments(&self, tenant: Option<&str>) -> Result<Vec<Deployment>, StoreError>;
    /// Deletes a deployment; false when there was none.
    fn delete_deployment(&self, tenant: &str, flow: &str, name: &str) -> Result<bool, StoreError>;

    /// Flow runs, newest first.
    fn flow_runs(&self, filter: &RunFilter) -> Result<Vec<FlowRunRow>, StoreError>;
    /// A flow run of `tenant` (`None`: of any tenant) by id, or by name (the newest of that name).
    fn flow_run(&self, tenant: Option<&str>, id_or_name: &str) -> Result<Option<FlowRunRow>, StoreError>;
    /// The subflow runs of a flow run.
    fn subflow_runs(&self, flow_run: &str) -> Result<Vec<FlowRunRow>, StoreError>;
    /// The task runs of a flow run, in creation order.
    fn task_runs(&self, flow_run: &str) -> Result<Vec<TaskRunRow>, StoreError>;
    /// A run's state history, oldest first.
    fn states(&self, run: &str) -> Result<Vec<StateRow>, StoreError>;
    /// The recorded calls of a flow run and of its subflows, every attempt's:
    /// what a retry replays (`core/journal.rs`).
    fn journal(&self, flow_run: &str) -> Result<Vec<JournalRow>, StoreError>;
    /// A flow run's logs (its tasks' included), oldest first; the last `tail` when given.
    fn logs(&self, flow_run: &str, tail: Option<usize>) -> Result<Vec<LogRow>, StoreError>;

    /// Creates the `Scheduled` runs of a deployment's schedule at `times`;
    /// a time that already has its run is skipped, so ticks, restarts and
    /// redeploys never make duplicates. Returns how many were created.
    fn schedule_runs(&self, slots: &ScheduledRuns<'_>) -> Result<usize, StoreError>;
    /// Moves `Scheduled` runs due before `cutoff` and not taken to `Late`.
    fn mark_late(&self, cutoff: DateTime<Utc>, now: DateTime<Utc>) -> Result<usize, StoreError>;
    /// Deletes a deployment's auto-scheduled runs after `now` that have not started.
    fn unschedule_future(&self, tenant: &str, deployment: &str, now: DateTime<Utc>) -> Result<usize, StoreError>;
    /// Atomically takes due runs for `claim.taker`, routed through work
    /// queues and within the queues' and deployments' concurrency limits.
    fn claim_due(&self, claim: &Claim<'_>) -> Result<Vec<FlowRunRow>, StoreError>;
    /// Atomically takes one run for `taker`; false when someone else has it.
    fn claim_run(&self, id: &str, taker: &str) -> Result<bool, StoreError>;

    /// The start time of the earliest run waiting to be taken.
    fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Takes or renews lease `name` for `holder` until `until`; false while
    /// another holder's lease has not expired at `now`.
    fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Notes that `worker` is alive at `now`.
    fn heartbeat(&self, worker: &str, now: DateTime<Utc>) -> Result<(), StoreError>;
    /// Ends as `Crashed` every unfinished run taken by a worker last seen
    /// before `cutoff`; returns the runs' ids.
    fn crash_orphans(&self, cutoff: DateTime<Utc>, now: DateTime<Utc>) -> Result<Vec<String>, StoreError>;
    /// Ends as `Crashed` every unfinished run taken by `worker`, which has
    /// just started again and so runs none of them; returns the runs' ids.
    fn crash_held_by(&self, worker: &str, now: DateTime<Utc>) -> Result<Vec<String>, StoreError>;
    /// Asks a run to stop: a run not yet taken ends `Cancelled` at once, a
    /// taken one moves to `Cancelling` for its runner to stop.
    fn request_cancel(&self, id: &str, now: DateTime<Utc>) -> Result<CancelOutcome, StoreError>;
    /// Schedules a crashed run again at `at` (its history keeps the crash).
    fn reschedule(&self, id: &str, at: DateTime<Utc>, message: &str) -> Result<(), StoreError>;
    /// Gives back to the queue the runs `worker` took before `before` and
    /// has not started, which its heartbeat does not list among `running`:
    /// the answer to the claim that took them never reached it. Their ids.
    fn release_unheard(
        &self,
        worker: &str,
        running: &[String],
        before: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError>;
    /// Which of `ids` `taker` must stop: cancelled, ended, or no longer its own.
    fn to_stop(&self, taker: &str, ids: &[String]) -> Result<Vec<String>, StoreError>;
    /// Why `taker` may no longer report on flow run `id` (or its subflows), if it may not.
    fn lease_lost(&self, taker: &str, id: &str) -> Result<Option<String>, StoreError>;

    /// The flow run a task run belongs to.
    fn task_flow_run(&self, task_run: &str) -> Result<Option<String>, StoreError>;
    /// Whether run `id`'s history already holds `state` at exactly `time`: a
    /// report sent again after its answer was lost carries states recorded once.
    fn has_state(&self, id: &str, state: StateType, time: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Who owns run `id` (a flow run or a task run, by exact id) and whether it has ended.
    fn run_standing(&self, kind: RunKind, id: &str) -> Result<Option<RunStanding>, StoreError>;

    /// A tenant's work pools.
    fn work_pools(&self, tenant: &str) -> Result<Vec<WorkPool>, StoreError>;
    /// Creates a work pool of a tenant; false when it has one of that name.
    fn create_work_pool(&self, tenant: &str, pool: &WorkPool) -> Result<bool, StoreError>;
    /// Pauses or resumes a pool; false when there is none.
    fn set_work_pool_paused(&self, tenant: &str, name: &str, paused: bool) -> Result<bool, StoreError>;
    /// Deletes a pool and its queues; false when there is none.
    fn delete_work_pool(&self, tenant: &str, name: &str) -> Result<bool, StoreError>;
    /// The queues of a tenant's pool (of every pool when `None`).
    fn work_queues(&self, tenant: &str, pool: Option<&str>) -> Result<Vec<WorkQueue>, StoreError>;
    /// Creates a queue; false when the pool has one of that name.
    fn create_work_queue(&self, tenant: &str, queue: &WorkQueue) -> Result<bool, StoreError>;
    /// Pauses or resumes a queue; false when there is none.
    fn set_work_queue_paused(&self, tenant: &str, pool: &str, name: &str, paused: bool) -> Result<bool, StoreError>;
    /// Deletes a queue; false when there is none.
    fn delete_work_queue(&self, tenant: &str, pool: &str, name: &str) -> Result<bool, StoreError>;

    /// Creates a tenant with its `default` pool and queue; false when it exists.
    fn create_tenant(&self, tenant: &Tenant) -> Result<bool, StoreError>;
    /// One tenant.
    fn tenant(&self, name: &str) -> Result<Option<Tenant>, StoreError>;
    /// Every tenant, by name.
    fn tenants(&self) -> Result<Vec<Tenant>, StoreError>;
    /// Replaces a tenant's policy; false when there is no such tenant.
    fn set_tenant_policy(&self, name: &str, policy: &TenantPolicy) -> Result<bool, StoreError>;
    /// Names of a tenant's flow runs that a runner holds and that have not ended.
    fn running_runs(&self, tenant: &str) -> Result<Vec<String>, StoreError>;
    /// Deletes a tenant with everything it owns; false when there was none.
    fn delete_tenant(&self, name: &str) -> Result<bool, StoreError>;
    /// Stores a new token's record and the hash of its secret.
    fn create_token(&self, info: &TokenInfo, hash: &[u8; 32]) -> Result<(), StoreError>;
    /// A token's record and stored hash, by id.
    fn token(&self, id: &str) -> Result<Option<(TokenInfo, Vec<u8>)>, StoreError>;
    /// The tokens of a tenant (`None`: of every tenant).
    fn tokens(&self, tenant: Option<&str>) -> Result<Vec<TokenInfo>, StoreError>;
    /// Revokes a token of `tenant` (`None`: of any tenant); false when there is none.
    fn revoke_token(&self, tenant: Option<&str>, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Deletes up to `limit` top-level flow runs that ended before `before`,
    /// oldest first, with their subflows, task runs, states and logs;
    /// returns how many top-level runs went. Unended runs are never deleted.
    fn purge_ended(&self, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError>;
}

/// Where a run stands, as the store records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunStanding {
    /// The tenant that owns it (a task run's: its flow run's).
    pub tenant: String,
    /// The flow run it is, or the flow run a task run belongs to.
    pub flow_run: String,
    /// Whether it reached a terminal state.
    pub ended: bool,
}

/// What a cancel request did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum CancelOutcome {
    /// The run had not started: it is `Cancelled`.
    Cancelled,
    /// The run is running: it is `Cancelling` until its runner stops it.
    Cancelling,
    /// The run had already ended.
    AlreadyEnded,
    /// No such run.
    NotFound,
}

/// What a runner asks for when it takes runs.
pub struct Claim<'a> {
    /// Only runs of this tenant (`None`: every tenant's, fairly).
    pub tenant: Option<&'a str>,
    /// Runs due at this time.
    pub now: DateTime<Utc>,
    /// Only runs routed to this pool's queues (`None`: no routing, as for `sluice serve`).
    pub pool: Option<&'a str>,
    /// Only these queues of the pool (all when empty).
    pub queues: &'a [String],
    /// Only runs of this deployment.
    pub deployment: Option<&'a str>,
    /// At most this many.
    pub limit: usize,
    /// Who takes them.
    pub taker: &'a str,
}

/// The runs a schedule asks for, and what each needs.
pub struct ScheduledRuns<'a> {
    /// The deployment.
    pub deployment: &'a Deployment,
    /// Its resolved default parameters.
    pub parameters: &'a Value,
    /// Start times.
    pub times: &'a [DateTime<Utc>],
    /// The time of creation.
    pub now: DateTime<Utc>,
}
