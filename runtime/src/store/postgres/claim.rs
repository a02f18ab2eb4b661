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
use crate::core::pool::WorkQueue;
use crate::core::tenant::TenantPolicy;
use crate::store::claim::{
    CANDIDATES_PER_TENANT, DEFAULT_MAX_CONCURRENT_RUNS, Pick, RUNNING_KEYS, Running, first_candidates, in_rounds,
    pick_of, within_limits,
};
use crate::store::writer::timestamp;
use crate::store::{Claim, StoreError};
use std::collections::HashMap;
use tokio_postgres::Transaction;

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
    let mut tenants = Vec::new();
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
        tenants.push(tenant);
    }
    if tenants.is_empty() {
        return Ok(Vec::new());
    }
    // Counted after the locks: no other claimer changes these tenants' counts until we commit.
    let mut running = Running::default();
    for (key, counts) in
        RUNNING_KEYS.into_iter().zip([&mut running.tenant, &mut running.queue, &mut running.deployment])
    {
        *counts = running_counts(tx, key).await?;
    }
    let choose = async |per_tenant: usize, running: Running| -> Result<(Vec<Pick>, bool), StoreError> {
        let mut picks = Vec::new();
        let mut cut_short = false;
        for tenant in &tenants {
            let (tenant_picks, more) = tenant_picks(tx, claim, tenant, &now, per_tenant).await?;
            picks.extend(tenant_picks);
            cut_short |= more;
        }
        Ok((within_limits(picks, running, &tenant_limits, claim.limit), cut_short))
    };
    let (mut taken, cut_short) = choose(first_candidates(claim.limit), running.clone()).await?;
    if taken.len() < claim.limit && cut_short {
        taken = choose(CANDIDATES_PER_TENANT, running).await?.0;
    }
    let mut ids = Vec::with_capacity(taken.len());
    for pick in taken {
        tx.execute(
            "UPDATE flow_runs SET claimed_by = $2, queue = $3, claimed_at = $4 WHERE id = $1",
            &[&pick.id, &claim.taker, &pick.queue, &timestamp(claim.now)],
        )
        .await?;
        ids.push(pick.id);
    }
    Ok(ids)
}

/// One tenant's due runs that the claimer's pool serves, in the order it
/// would take them, from its first `limit` candidates; and whether it has more.
async fn tenant_picks(
    tx: &Transaction<'_>,
    claim: &Claim<'_>,
    tenant: &str,
    now: &str,
    limit: usize,
) -> Result<(Vec<Pick>, bool), StoreError> {
    let candidates = tx
        .query(
            "SELECT id, deployment FROM flow_runs WHERE tenant = $1 AND state IN ('Scheduled', 'Late')
             AND claimed_by IS NULL AND scheduled <= $2 AND ($3::text IS NULL OR deployment = $3)
             ORDER BY scheduled LIMIT $4 FOR UPDATE SKIP LOCKED",
            &[&tenant, &now, &claim.deployment, &(limit as i64)],
        )
        .await?;
    let more = candidates.len() == limit;
    if candidates.is_empty() {
        return Ok((Vec::new(), false));
    }
    let queues: Vec<WorkQueue> = match claim.pool {
        Some(pool) => {
            let paused: Option<bool> = tx
                .query_opt("SELECT paused FROM work_pools WHERE tenant = $1 AND name = $2", &[&tenant, &pool])
                .await?
                .map(|row| row.get(0));
            if paused != Some(false) {
                return Ok((Vec::new(), false));
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
        picks.extend(pick_of(claim, tenant, position, id, deployment_name, deployment.as_ref(), &queues));
    }
    Ok((in_rounds(picks), more))
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
