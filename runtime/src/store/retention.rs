//! Retention (`sluice server --keep-runs`): top-level flow runs that ended
//! before a cutoff are deleted with everything recorded about them (their
//! subflows, task runs, states, logs and events), a bounded batch per call, so the
//! housekeeping loop interleaves short transactions with the runs it must
//! not stall. Runs that have not ended are kept, however old.

use rusqlite::{Transaction, params};

/// How many top-level runs one purge call deletes at most.
pub const PURGE_BATCH: usize = 200;

/// The flow run `?1` and its subflows, at any depth.
const TREE: &str =
    "WITH RECURSIVE tree(id) AS (SELECT ?1 UNION ALL SELECT f.id FROM flow_runs f JOIN tree ON f.parent = tree.id)";

/// Deletes up to `limit` top-level runs that ended before `before` (a
/// store timestamp), oldest first; returns how many.
pub(super) fn purge_ended(tx: &Transaction<'_>, before: &str, limit: usize) -> rusqlite::Result<usize> {
    let roots: Vec<String> = tx
        .prepare_cached(
            "SELECT id FROM flow_runs WHERE parent IS NULL AND ended IS NOT NULL AND ended < ?1 ORDER BY ended LIMIT ?2",
        )?
        .query_map(params![before, limit as i64], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    // Children before parents, so no statement sees a half-deleted run.
    let statements = [
        "DELETE FROM task_runs WHERE flow_run IN tree",
        "DELETE FROM logs WHERE flow_run IN tree",
        // The newest event stays: events are numbered by rowid, which a
        // table without its highest row would give again.
        "DELETE FROM events WHERE flow_run IN tree AND seq < (SELECT MAX(seq) FROM events)",
        "DELETE FROM states WHERE run IN tree",
        "DELETE FROM flow_runs WHERE id IN tree",
    ];
    for root in &roots {
        for statement in statements {
            tx.prepare_cached(&format!("{TREE} {statement}"))?.execute([root])?;
        }
    }
    Ok(roots.len())
}
