//! Taking due runs on PostgreSQL, with the SQLite store's fairness (see
//! `store/claim.rs`: each tenant's earliest due runs are candidates, the
//! picks interleave the tenants, the least busy first, within every
//! concurrency limit), safe with many claimers at once:
//!
//! - a claimer takes a tenant's transaction-scoped advisory lock with
//!   `pg_try_advisory_xact_lock`, so at most one claimer counts and takes a
//!   tenant's runs at a time (its limits hold exactly) and the others skip
//!   that tenant this round instead of waiting;
//! - candidate rows are read `FOR UPDATE SKIP LOCKED`, so a run being
//!   cancelled, marked late or taken by `claim_run` is passed over, not waited for.

use super::queries::{load_deployment, queues_in};
use crate::core::deployment::Deployment;
use crate::core::pool::{DEFAULT_POOL, WorkQueue, route};
use crate::core::tenant::TenantPolicy;
use crate::store::claim::DEFAULT_MAX_CONCURRENT_RUNS;
use crate::store::writer::timestamp;
use crate::store::{Claim, StoreError};
use std::collections::HashMap;
use tokio_postgres::Transaction;

/// Runs considered per tenant and claim: more than a claim ever takes.
const CANDIDATES_PER_TENANT: i64 = 200;

/// A due run that could be taken, with what limits it.
struct Pick {
    tenant: String,
    /// Position among its tenant's picks: 0 for the first it would take.
    round: usize,
    priority: i64,
    position: usize,
    id: String,
    queue: Option<String>,
    queue_limit: Option<u32>,
    deployment: Option<String>,
    deployment_limit: Option<u32>,
}

/// Picks and takes due runs for `claim`; returns their ids.
pub(super) async fn claim_in(tx: &Transaction<'_>, claim: &Claim<'_>) -> Result<Vec<String>, StoreError> {
    let now = timestamp(claim.now);
    // Only tenants with a run due: the advisory locks below are taken for these alone.
    let found = tx
        .query(
            "SELECT t.name, t.policy FROM tenants t WHERE ($1::text IS NULL OR t.name = $1)
             AND EXISTS (SELECT 1 FROM flow_runs r WHERE r.tenant = t.name AND r.state IN ('Scheduled', 'Late')
                         AND r.claimed_by IS NULL AND r.scheduled <= $2)
             ORDER BY t.name",
            &[&claim.tenant, &now],
        )
        .await?;
    let mut picks = Vec::new();
    let mut tenant_limits = HashMap::new();
    for row in &found {
        let (tenant, policy): (String, String) = (row.get(0), row.get(1));
        let locked: bool = tx
            .query_one("SELECT pg_try_advisory_xact_lock(hashtextextended('sluice claim ' || $1, 0))", &[&tenant])
            .await?
            .get(0);
        if !locked {
            // Another claimer is taking this tenant's runs right now; they stay due for the next claim.
            continue;
        }
        let policy: TenantPolicy = serde_json::from_str(&policy).unwrap_or_default();
        let limit = policy.max_concurrent_runs.unwrap_or(DEFAULT_MAX_CONCURRENT_RUNS);
        tenant_limits.insert(tenant.clone(), u64::from(limit));
        picks.extend(tenant_picks(tx, claim, &tenant, &now).await?);
    }
    if picks.is_empty() {
        return Ok(Vec::new());
    }
    // Counted after the locks: no other claimer changes these tenants' counts until we commit.
    let mut running_tenant = running_counts(tx, "tenant").await?;
    let mut running_queue = running_counts(tx, "tenant || ' ' || queue").await?;
    let mut running_deployment = running_counts(tx, "tenant || ' ' || deployment").await?;
    // Interleave: a tenant with fewer runs going gets the next slot.
    picks.sort_by_key(|pick| {
        let busy = running_tenant.get(&pick.tenant).copied().unwrap_or(0) as usize;
        (pick.round + busy, pick.priority, pick.position)
    });
    let mut taken = Vec::new();
    for pick in picks {
        if taken.len() >= claim.limit {
            break;
        }
        let full =
            |counts: &HashMap<String, u64>, key: &str, limit: u64| counts.get(key).copied().unwrap_or(0) >= limit;
        let queue_key = pick.queue.as_ref().map(|q| format!("{} {q}", pick.tenant));
        let deployment_key = pick.deployment.as_ref().map(|d| format!("{} {d}", pick.tenant));
        let waits = full(&running_tenant, &pick.tenant, tenant_limits[&pick.tenant])
            || queue_key
                .as_ref()
                .zip(pick.queue_limit)
                .is_some_and(|(key, limit)| full(&running_queue, key, limit.into()))
            || deployment_key
                .as_ref()
                .zip(pick.deployment_limit)
                .is_some_and(|(key, limit)| full(&running_deployment, key, limit.into()));
        if waits {
            // It waits its turn: it stays due and is taken when a slot frees.
            continue;
        }
        tx.execute(
            "UPDATE flow_runs SET claimed_by = $2, queue = $3, claimed_at = $4 WHERE id = $1",
            &[&pick.id, &claim.taker, &pick.queue, &timestamp(claim.now)],
        )
        .await?;
        *running_tenant.entry(pick.tenant.clone()).or_default() += 1;
        if let Some(key) = queue_key {
            *running_queue.entry(key).or_default() += 1;
        }
        if let Some(key) = deployment_key {
            *running_deployment.entry(key).or_default() += 1;
        }
        taken.push(pick.id);
    }
    Ok(taken)
}

/// One tenant's due runs that the claimer's pool serves, in the order it would take them.
async fn tenant_picks(
    tx: &Transaction<'_>,
    claim: &Claim<'_>,
    tenant: &str,
    now: &str,
) -> Result<Vec<Pick>, StoreError> {
    let candidates = tx
        .query(
            "SELECT id, deployment FROM flow_runs WHERE tenant = $1 AND state IN ('Scheduled', 'Late')
             AND claimed_by IS NULL AND scheduled <= $2 AND ($3::text IS NULL OR deployment = $3)
             ORDER BY scheduled LIMIT $4 FOR UPDATE SKIP LOCKED",
            &[&tenant, &now, &claim.deployment, &CANDIDATES_PER_TENANT],
        )
        .await?;
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let queues: Vec<WorkQueue> = match claim.pool {
        Some(pool) => {
            let paused: Option<bool> = tx
                .query_opt("SELECT paused FROM work_pools WHERE tenant = $1 AND name = $2", &[&tenant, &pool])
                .await?
                .map(|row| row.get(0));
            if paused != Some(false) {
                return Ok(Vec::new());
            }
            let queues = queues_in(tx, tenant, Some(pool)).await?;
            queues.into_iter().filter(|q| claim.queues.is_empty() || claim.queues.contains(&q.name)).collect()
        }
        None => Vec::new(),
    };
    let mut deployments: HashMap<String, Option<Deployment>> = HashMap::new();
    let mut picks = Vec::new();
    for (position, row) in candidates.iter().enumerate() {
        let (id, deployment_name): (String, Option<String>) = (row.get(0), row.get(1));
        let deployment = match &deployment_name {
            Some(full) => {
                if !deployments.contains_key(full) {
                    let loaded = match full.split_once('/') {
                        Some((flow, name)) => load_deployment(tx, tenant, flow, name).await.ok().flatten(),
                        None => None,
                    };
                    deployments.insert(full.clone(), loaded);
                }
                deployments[full].clone()
            }
            None => None,
        };
        // A served deployment's runs go only to the `sluice serve` process
        // serving it, whose claim names it; no pool's worker takes them.
        if claim.deployment.is_none() && deployment.as_ref().is_some_and(|d| d.served) {
            continue;
        }
        let queue = match (claim.pool, &deployment) {
            (None, _) => None,
            (Some(_), Some(deployment)) => match route(deployment, &queues) {
                Some(queue) => Some(queue),
                None => continue,
            },
            (Some(pool), None) if pool == DEFAULT_POOL => {
                match queues.iter().filter(|q| !q.paused && q.tags.is_empty()).min_by_key(|q| q.priority) {
                    Some(queue) => Some(queue),
                    None => continue,
                }
            }
            (Some(_), None) => continue,
        };
        picks.push(Pick {
            tenant: tenant.to_string(),
            round: 0,
            priority: queue.map_or(0, |q| q.priority),
            position,
            id,
            queue: queue.map(|q| q.full_name()),
            queue_limit: queue.and_then(|q| q.concurrency_limit),
            deployment: deployment_name,
            deployment_limit: deployment.and_then(|d| d.limits.concurrency),
        });
    }
    picks.sort_by_key(|pick| (pick.priority, pick.position));
    for (round, pick) in picks.iter_mut().enumerate() {
        pick.round = round;
    }
    Ok(picks)
}

/// Runs taken and not ended, counted by `key` (an SQL expression).
async fn running_counts(tx: &Transaction<'_>, key: &str) -> Result<HashMap<String, u64>, StoreError> {
    let sql = format!(
        "SELECT k, COUNT(*) FROM (SELECT {key} AS k FROM flow_runs WHERE claimed_by IS NOT NULL AND ended IS NULL) runs
         WHERE k IS NOT NULL GROUP BY k"
    );
    let found = tx.query(&sql, &[]).await?;
    Ok(found.iter().map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1) as u64)).collect())
}
