//! `sluice_queue_depth`: flow runs due and not yet taken, by tenant, work
//! pool and queue, read from the store when Prometheus scrapes (a gauge
//! needs no history, so the busiest [`QUEUES_SHOWN`] queues are shown and
//! the rest summed under `other`).

use super::labels::{NONE, OTHER};
use super::metrics;
use crate::core::pool::{DEFAULT_POOL, DEFAULT_QUEUE};
use crate::store::{Backend, SqlValue};
use chrono::{SecondsFormat, Utc};
use std::collections::HashMap;

/// Queues with a series of their own; the rest are summed under `other`.
pub const QUEUES_SHOWN: usize = 100;

/// Due runs not taken, by tenant, deployment and queue.
const DUE_RUNS: &str = "SELECT tenant, deployment, queue, COUNT(*) FROM flow_runs
    WHERE state IN ('Scheduled', 'Late') AND claimed_by IS NULL AND parent IS NULL AND scheduled <= ?1
    GROUP BY tenant, deployment, queue";

/// Sets the gauge from the store; a store that cannot answer leaves it as it was.
pub fn refresh(store: &dyn Backend) {
    let now = SqlValue::Text(Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true));
    let Ok(rows) = store.listing(DUE_RUNS, &[now]) else { return };
    let mut pools: HashMap<(String, String), String> = HashMap::new();
    let mut depth: HashMap<[String; 3], i64> = HashMap::new();
    for row in rows {
        let tenant = row[0].text().unwrap_or_default();
        let deployment = row[1].text();
        let pool = match deployment.as_deref() {
            None => NONE.to_string(),
            Some(full) => {
                pools.entry((tenant.clone(), full.to_string())).or_insert_with(|| pool_of(store, &tenant, full)).clone()
            }
        };
        let queue = row[2].text().unwrap_or_else(|| DEFAULT_QUEUE.to_string());
        *depth.entry([tenant, pool, queue]).or_default() += row[3].int();
    }
    let mut ranked: Vec<([String; 3], i64)> = depth.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let rest: i64 = ranked.iter().skip(QUEUES_SHOWN).map(|(_, n)| n).sum();
    let gauge = &metrics().queue_depth;
    gauge.reset();
    for (labels, n) in ranked.iter().take(QUEUES_SHOWN) {
        gauge.with_label_values(labels).set(*n);
    }
    if rest > 0 {
        gauge.with_label_values(&[OTHER, OTHER, OTHER]).set(rest);
    }
}

/// The work pool of deployment `flow/name` of `tenant`.
fn pool_of(store: &dyn Backend, tenant: &str, full: &str) -> String {
    let Some((flow, name)) = full.split_once('/') else { return DEFAULT_POOL.to_string() };
    match store.deployment(tenant, flow, name) {
        Ok(Some(deployment)) => deployment.pool.unwrap_or_else(|| DEFAULT_POOL.to_string()),
        _ => DEFAULT_POOL.to_string(),
    }
}
