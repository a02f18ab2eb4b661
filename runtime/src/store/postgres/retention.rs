//! Retention on PostgreSQL: the same deletion as `store/retention.rs`, in
//! one transaction per batch.

use super::PgStore;
use crate::store::StoreError;

/// The flow runs `$1` (an array of top-level runs) and their subflows.
const TREE: &str = "WITH RECURSIVE tree(id) AS
    (SELECT unnest($1::text[]) UNION ALL SELECT f.id FROM flow_runs f JOIN tree ON f.parent = tree.id)";

impl PgStore {
    /// Deletes up to `limit` top-level runs that ended before `before` (a
    /// store timestamp), oldest first; returns how many.
    pub(super) fn purge_ended_runs(&self, before: &str, limit: usize) -> Result<usize, StoreError> {
        self.transaction(async |tx| {
            let roots: Vec<String> = tx
                .query(
                    "SELECT id FROM flow_runs WHERE parent IS NULL AND ended IS NOT NULL AND ended < $1
                     ORDER BY ended LIMIT $2 FOR UPDATE SKIP LOCKED",
                    &[&before, &(limit as i64)],
                )
                .await?
                .iter()
                .map(|row| row.get(0))
                .collect();
            if roots.is_empty() {
                return Ok(0);
            }
            // Children before parents, so no statement sees a half-deleted run.
            let statements = [
                "DELETE FROM states WHERE run IN (SELECT id FROM task_runs WHERE flow_run IN (SELECT id FROM tree))",
                "DELETE FROM task_runs WHERE flow_run IN (SELECT id FROM tree)",
                "DELETE FROM logs WHERE flow_run IN (SELECT id FROM tree)",
                "DELETE FROM events WHERE flow_run IN (SELECT id FROM tree)",
                "DELETE FROM states WHERE run IN (SELECT id FROM tree)",
                "DELETE FROM flow_runs WHERE id IN (SELECT id FROM tree)",
            ];
            for statement in statements {
                tx.execute(&format!("{TREE} {statement}"), &[&roots]).await?;
            }
            Ok(roots.len())
        })
    }
}
