//! Taking due runs, fairly: each tenant's earliest due runs are candidates
//! (one tenant's backlog never hides another's runs), each is routed to a
//! queue of the claimer's pool in its own tenant, and the picks interleave
//! the tenants, the least busy first, within every concurrency limit
//! (queue, deployment, tenant).

use super::Claim;
use super::sqlite::{FLOW_RUN_COLUMNS, flow_run_row, load_deployment, queues_in};
use super::writer::{apply_event, timestamp};
use super::{FlowRunRow, SqliteStore, StoreError};
use crate::core::deployment::Deployment;
use crate::core::ids::RunId;
use crate::core::pool::{DEFAULT_POOL, WorkQueue, route};
use crate::core::record::{Event, RunKind, StateRecord};
use crate::core::state::StateType;
use crate::core::tenant::TenantPolicy;
use chrono::Utc;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

impl SqliteStore {
    /// See [`super::Backend::try_flush_claiming`]: the claim joins the
    /// commit of the queued writes when the write connection is free.
    pub fn try_flush_claiming(
        &self,
        claim: &Claim<'_>,
        free: &AtomicUsize,
    ) -> Option<Result<Vec<FlowRunRow>, StoreError>> {
        let mut counted = Counted::new(free);
        let outcome = self.writer.try_commit_with(|connection| counted.claim_and_start(connection, claim))?;
        Some(match outcome {
            Ok(Ok(runs)) => Ok(runs),
            // The queued writes are committed: the claim's failure is its own (logged).
            Ok(Err(_)) => {
                counted.give_back();
                Ok(Vec::new())
            }
            Err(why) => {
                counted.give_back();
                Err(StoreError::Database(why))
            }
        })
    }

    /// See [`super::Backend::claim_due_within`]: the count is read and
    /// taken from under the write lock, which every claim of this store
    /// holds; the queued writes are committed with the claim.
    pub fn claim_due_within(&self, claim: &Claim<'_>, free: &AtomicUsize) -> Result<Vec<FlowRunRow>, StoreError> {
        let mut counted = Counted::new(free);
        self.writer.commit_with(|connection| counted.claim_and_start(connection, claim)).map_err(|why| {
            counted.give_back();
            StoreError::Database(why)
        })
    }
}

/// A claim for a worker that counts its free slots, which others take runs
/// for too (the embedded worker): at most that many are taken, from the count.
struct Counted<'a> {
    free: &'a AtomicUsize,
    // Taken by a try whose transaction may yet be rolled back (a failed
    // commit is tried again): given back before the next try, or on failure.
    taken: usize,
}

impl<'a> Counted<'a> {
    fn new(free: &'a AtomicUsize) -> Self {
        Self { free, taken: 0 }
    }

    /// Takes due runs, at most as many as the free slots, under the write
    /// lock (so the count read is the count taken from), and starts the
    /// first attempts among them (see [`start_first_attempts`]).
    fn claim_and_start(
        &mut self,
        connection: &Connection,
        claim: &Claim<'_>,
    ) -> rusqlite::Result<(Vec<FlowRunRow>, Vec<Event>)> {
        self.give_back();
        let limit = self.free.load(Ordering::SeqCst).min(claim.limit);
        if limit == 0 {
            return Ok((Vec::new(), Vec::new()));
        }
        let mut runs = claim_in(connection, &Claim { limit, ..*claim })?;
        self.free.fetch_sub(runs.len(), Ordering::SeqCst);
        self.taken = runs.len();
        let started = start_first_attempts(connection, &mut runs)?;
        Ok((runs, started))
    }

    fn give_back(&mut self) {
        self.free.fetch_add(std::mem::take(&mut self.taken), Ordering::SeqCst);
    }
}

/// Records `Pending` and `Running` for the first attempts among `runs`, in
/// the claim's own transaction, as their runner would: the worker they are
/// taken for starts them at once, and their runner goes on from `Running`
/// (see `RunSettings::started_by_claim`). That saves each run the commit
/// its runner made of those two states before its guest could start. A
/// later attempt's `Running` says what it resumes: its runner records it.
fn start_first_attempts(connection: &Connection, runs: &mut [FlowRunRow]) -> rusqlite::Result<Vec<Event>> {
    let mut events = Vec::new();
    for run in runs.iter_mut().filter(|run| run.attempt == 1) {
        let Some(id) = RunId::parse(&run.id) else { continue };
        let mut started = None;
        for state in [StateType::Pending, StateType::Running] {
            let time = Utc::now();
            let event = Event::State(StateRecord {
                run: id,
                kind: RunKind::Flow,
                state,
                message: None,
                attempt: 1,
                result: None,
                time,
            });
            apply_event(connection, &event)?;
            events.push(event);
            started = Some(time);
        }
        (run.state, run.message, run.started) = (Some(StateType::Running), None, started);
    }
    Ok(events)
}

/// Runs considered per tenant and claim at most: more than a claim ever takes.
pub(super) const CANDIDATES_PER_TENANT: usize = 200;

/// Candidates read per tenant first, for a claim of `limit` runs. A busy
/// worker claims a run or two after each run ends: a short list of each
/// tenant's earliest candidates serves it. Only when that list was cut short
/// and did not yield enough (runs waiting on concurrency limits, or not
/// routed to this pool, ahead of takeable ones) is the long one read.
pub(super) fn first_candidates(limit: usize) -> usize {
    (limit * 4).clamp(16, CANDIDATES_PER_TENANT)
}

/// Flow runs of one tenant running at once when its policy sets no limit.
pub const DEFAULT_MAX_CONCURRENT_RUNS: u32 = 100;

/// A due run that could be taken, with what limits it.
pub(super) struct Pick {
    tenant: String,
    /// Position among its tenant's picks: 0 for the first it would take.
    round: usize,
    priority: i64,
    position: usize,
    pub(super) id: String,
    pub(super) queue: Option<String>,
    queue_limit: Option<u32>,
    deployment: Option<String>,
    deployment_limit: Option<u32>,
}

/// Runs taken and not ended, per tenant, per queue and per deployment
/// (keyed `tenant`, `tenant queue`, `tenant deployment`).
#[derive(Clone, Default)]
pub(super) struct Running {
    pub(super) tenant: HashMap<String, u64>,
    pub(super) queue: HashMap<String, u64>,
    pub(super) deployment: HashMap<String, u64>,
}

/// The SQL expressions [`Running`]'s three counts are grouped by.
pub(super) const RUNNING_KEYS: [&str; 3] = ["tenant", "tenant || ' ' || queue", "tenant || ' ' || deployment"];

/// The candidate run `id` (at `position` in its tenant's due order) as a
/// pick for `claim`, routed to one of the claimer's `queues`; `None` when
/// this claimer does not take it.
pub(super) fn pick_of(
    claim: &Claim<'_>,
    tenant: &str,
    position: usize,
    id: String,
    deployment_name: Option<String>,
    deployment: Option<&Deployment>,
    queues: &[WorkQueue],
) -> Option<Pick> {
    // A served deployment's runs go only to the `sluice serve` process
    // serving it, whose claim names it; no pool's worker takes them.
    if claim.deployment.is_none() && deployment.is_some_and(|d| d.served) {
        return None;
    }
    let queue = match (claim.pool, deployment) {
        (None, _) => None,
        (Some(_), Some(deployment)) => Some(route(deployment, queues)?),
        (Some(pool), None) if pool == DEFAULT_POOL => {
            Some(queues.iter().filter(|q| !q.paused && q.tags.is_empty()).min_by_key(|q| q.priority)?)
        }
        (Some(_), None) => return None,
    };
    Some(Pick {
        tenant: tenant.to_string(),
        round: 0,
        priority: queue.map_or(0, |q| q.priority),
        position,
        id,
        queue: queue.map(|q| q.full_name()),
        queue_limit: queue.and_then(|q| q.concurrency_limit),
        deployment: deployment_name,
        deployment_limit: deployment.and_then(|d| d.limits.concurrency),
    })
}

/// Orders one tenant's picks as it would take them.
pub(super) fn in_rounds(mut picks: Vec<Pick>) -> Vec<Pick> {
    picks.sort_by_key(|pick| (pick.priority, pick.position));
    for (round, pick) in picks.iter_mut().enumerate() {
        pick.round = round;
    }
    picks
}

/// Of every tenant's picks, the first `limit` to take: the tenants
/// interleaved, the least busy first, each pick within its tenant's,
/// queue's and deployment's concurrency limits.
pub(super) fn within_limits(
    mut picks: Vec<Pick>,
    mut running: Running,
    tenant_limits: &HashMap<String, u64>,
    limit: usize,
) -> Vec<Pick> {
    // Interleave: a tenant with fewer runs going gets the next slot.
    picks.sort_by_key(|pick| {
        let busy = running.tenant.get(&pick.tenant).copied().unwrap_or(0) as usize;
        (pick.round + busy, pick.priority, pick.position)
    });
    let mut taken = Vec::new();
    for pick in picks {
        if taken.len() >= limit {
            break;
        }
        let full =
            |counts: &HashMap<String, u64>, key: &str, limit: u64| counts.get(key).copied().unwrap_or(0) >= limit;
        let queue_key = pick.queue.as_ref().map(|q| format!("{} {q}", pick.tenant));
        let deployment_key = pick.deployment.as_ref().map(|d| format!("{} {d}", pick.tenant));
        let tenant_limit = tenant_limits.get(&pick.tenant).copied().unwrap_or(DEFAULT_MAX_CONCURRENT_RUNS.into());
        let waits = full(&running.tenant, &pick.tenant, tenant_limit)
            || queue_key
                .as_ref()
                .zip(pick.queue_limit)
                .is_some_and(|(key, limit)| full(&running.queue, key, limit.into()))
            || deployment_key
                .as_ref()
                .zip(pick.deployment_limit)
                .is_some_and(|(key, limit)| full(&running.deployment, key, limit.into()));
        if waits {
            // It waits its turn: it stays due and is taken when a slot frees.
            continue;
        }
        *running.tenant.entry(pick.tenant.clone()).or_default() += 1;
        if let Some(key) = queue_key {
            *running.queue.entry(key).or_default() += 1;
        }
        if let Some(key) = deployment_key {
            *running.deployment.entry(key).or_default() += 1;
        }
        taken.push(pick);
    }
    taken
}

/// Picks and takes due runs for `claim`; returns them as taken, earliest due first.
pub(super) fn claim_in(tx: &Connection, claim: &Claim<'_>) -> rusqlite::Result<Vec<FlowRunRow>> {
    let tenants: Vec<(String, TenantPolicy)> = tx
        .prepare_cached("SELECT name, policy FROM tenants WHERE ?1 IS NULL OR name = ?1 ORDER BY name")?
        .query_map([claim.tenant], |row| {
            let policy: String = row.get(1)?;
            Ok((row.get(0)?, serde_json::from_str(&policy).unwrap_or_default()))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let tenant_limits: HashMap<String, u64> = tenants
        .iter()
        .map(|(tenant, policy)| {
            (tenant.clone(), u64::from(policy.max_concurrent_runs.unwrap_or(DEFAULT_MAX_CONCURRENT_RUNS)))
        })
        .collect();
    let [tenant, queue, deployment] = RUNNING_KEYS.map(|key| running_counts(tx, key));
    let running = Running { tenant: tenant?, queue: queue?, deployment: deployment? };
    // The runs taken from the first `per_tenant` candidates of each tenant,
    // and whether some tenant had more candidates than that.
    let choose = |per_tenant: usize, running: Running| -> rusqlite::Result<(Vec<Pick>, bool)> {
        let mut picks = Vec::new();
        let mut cut_short = false;
        for (tenant, _) in &tenants {
            let (tenant_picks, more) = tenant_picks(tx, claim, tenant, per_tenant)?;
            picks.extend(tenant_picks);
            cut_short |= more;
        }
        Ok((within_limits(picks, running, &tenant_limits, claim.limit), cut_short))
    };
    let (mut taken, cut_short) = choose(first_candidates(claim.limit), running.clone())?;
    if taken.len() < claim.limit && cut_short {
        taken = choose(CANDIDATES_PER_TENANT, running)?.0;
    }
    let mut runs = Vec::with_capacity(taken.len());
    // The rows come back from the update itself: reading them afterwards on
    // the query connection refilled its page cache after this commit.
    let take = format!(
        "UPDATE flow_runs SET claimed_by = ?2, queue = ?3, claimed_at = ?4 WHERE id = ?1 RETURNING {FLOW_RUN_COLUMNS}"
    );
    for pick in taken {
        runs.push(
            tx.prepare_cached(&take)?
                .query_row(params![pick.id, claim.taker, pick.queue, timestamp(claim.now)], flow_run_row)?,
        );
    }
    runs.sort_by_key(|run| run.scheduled);
    Ok(runs)
}

/// One tenant's due runs that the claimer's pool serves, in the order it
/// would take them, from its first `limit` candidates; and whether it has more.
fn tenant_picks(tx: &Connection, claim: &Claim<'_>, tenant: &str, limit: usize) -> rusqlite::Result<(Vec<Pick>, bool)> {
    let candidates: Vec<(String, Option<String>)> = tx
        .prepare_cached(
            "SELECT id, deployment FROM flow_runs WHERE tenant = ?1 AND state IN ('Scheduled', 'Late')
             AND claimed_by IS NULL AND scheduled <= ?2 AND (?3 IS NULL OR deployment = ?3)
             ORDER BY scheduled LIMIT ?4",
        )?
        .query_map(params![tenant, timestamp(claim.now), claim.deployment, limit], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let more = candidates.len() == limit;
    if candidates.is_empty() {
        return Ok((Vec::new(), false));
    }
    let queues: Vec<WorkQueue> = match claim.pool {
        Some(pool) => {
            let paused: Option<bool> = tx
                .prepare_cached("SELECT paused FROM work_pools WHERE tenant = ?1 AND name = ?2")?
                .query_row([tenant, pool], |row| row.get(0))
                .optional()?;
            if paused != Some(false) {
                return Ok((Vec::new(), false));
            }
            let queues = queues_in(tx, tenant, Some(pool))?;
            queues.into_iter().filter(|q| claim.queues.is_empty() || claim.queues.contains(&q.name)).collect()
        }
        None => Vec::new(),
    };
    let mut deployments: HashMap<String, Option<Deployment>> = HashMap::new();
    let mut picks = Vec::new();
    for (position, (id, deployment_name)) in candidates.into_iter().enumerate() {
        let deployment = match &deployment_name {
            Some(full) => deployments
                .entry(full.clone())
                .or_insert_with(|| {
                    let (flow, name) = full.split_once('/')?;
                    load_deployment(tx, tenant, flow, name).ok().flatten()
                })
                .clone(),
            None => None,
        };
        picks.extend(pick_of(claim, tenant, position, id, deployment_name, deployment.as_ref(), &queues));
    }
    Ok((in_rounds(picks), more))
}

/// Runs taken and not ended, counted by `key` (an SQL expression). Through
/// the partial index of unended taken runs, named: grouping by `tenant`, the
/// planner otherwise walked every run by `flow_runs_by_tenant`, on every claim
/// (5 ms at 6,000 runs, growing with the history).
fn running_counts(tx: &Connection, key: &str) -> rusqlite::Result<HashMap<String, u64>> {
    tx.prepare_cached(&running_counts_sql(key))?.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect()
}

fn running_counts_sql(key: &str) -> String {
    format!(
        "SELECT {key} AS k, COUNT(*) FROM flow_runs INDEXED BY flow_runs_by_taker
         WHERE claimed_by IS NOT NULL AND ended IS NULL AND k IS NOT NULL GROUP BY k"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_running_runs_never_walks_the_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SqliteStore::open(&dir.path().join("sluice.db")).unwrap();
        for key in ["tenant", "tenant || ' ' || queue", "tenant || ' ' || deployment"] {
            let plan = store.query(|c| crate::store::sqlite::query_plan(c, &running_counts_sql(key))).unwrap();
            assert!(plan.iter().all(|step| !step.starts_with("SCAN flow_runs")), "{key}: {plan:?}");
        }
    }
}
