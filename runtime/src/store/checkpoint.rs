//! Checkpoints off the hot path: the write connection never checkpoints
//! (`wal_autocheckpoint = 0`); the store's background thread copies the WAL
//! into the database on a connection of its own, so no commit on a runner's
//! thread pays for copying pages back and the two fsyncs that go with it.

use rusqlite::Connection;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Commits between two background checkpoints: at a handful of WAL frames
/// per commit, about SQLite's own automatic checkpoint interval (1,000 frames).
const CHECKPOINT_EVERY_COMMITS: u64 = 200;

/// The longest a committed write waits before it is checkpointed.
const CHECKPOINT_PERIOD: Duration = Duration::from_secs(1);

/// WAL frames past which a checkpoint that could not catch up with a busy
/// writer is finished with the writer held, so the WAL restarts from its
/// beginning instead of growing without end (8,192 frames: 32 MiB of 4 KiB pages).
pub const WAL_FRAMES_BEFORE_HOLDING_THE_WRITER: i64 = 8_192;

/// When the background thread last checkpointed.
pub struct CheckpointSchedule {
    transactions: u64,
    at: Instant,
}

impl CheckpointSchedule {
    /// A schedule starting now.
    pub fn new() -> Self {
        Self { transactions: 0, at: Instant::now() }
    }

    /// Whether enough was committed since the last checkpoint (or long enough ago) to checkpoint now.
    pub fn due(&mut self, transactions: u64) -> bool {
        let since = transactions - self.transactions;
        let due = since >= CHECKPOINT_EVERY_COMMITS || (since > 0 && self.at.elapsed() >= CHECKPOINT_PERIOD);
        if due {
            self.transactions = transactions;
            self.at = Instant::now();
        }
        due
    }
}

/// Copies the WAL into the database while the runners go on committing.
/// A PASSIVE checkpoint never waits, but one that runs beside a busy
/// writer never catches up with it, and the WAL only starts over from its
/// beginning when a write finds everything in it copied: once the WAL has
/// `hold_writer_past` frames, what the writer added meanwhile is copied
/// with the writer held (a few frames, not the whole WAL).
pub fn checkpoint(checkpointer: &Connection, writer: &Mutex<Connection>, hold_writer_past: i64) {
    let passive = |c: &Connection| -> rusqlite::Result<(i64, i64)> {
        c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| Ok((row.get(1)?, row.get(2)?)))
    };
    let outcome = passive(checkpointer).and_then(|(frames, _copied)| {
        // Even a pass that copied all it saw may have been overtaken by the writer meanwhile.
        if frames >= hold_writer_past {
            let _writer = writer.lock().expect("connection lock");
            passive(checkpointer)?;
        }
        Ok(())
    });
    if let Err(err) = outcome {
        // Nothing is lost: the WAL keeps the commits, and the next checkpoint retries.
        tracing::warn!("the state store could not checkpoint its WAL: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ids::RunId;
    use crate::core::record::{Event, LogLevel, LogRecord, Recorder};
    use crate::store::SqliteStore;
    use chrono::Utc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    #[test]
    fn a_checkpoint_is_due_after_enough_commits_or_after_a_quiet_period() {
        let mut schedule = CheckpointSchedule::new();
        assert!(!schedule.due(0), "nothing committed, nothing to copy");
        assert!(!schedule.due(CHECKPOINT_EVERY_COMMITS - 1));
        assert!(schedule.due(CHECKPOINT_EVERY_COMMITS));
        assert!(!schedule.due(CHECKPOINT_EVERY_COMMITS + 1), "just checkpointed");
        schedule.at -= CHECKPOINT_PERIOD;
        assert!(schedule.due(CHECKPOINT_EVERY_COMMITS + 1), "a commit left waiting a whole period");
    }

    #[test]
    fn committed_records_reach_the_database_file_without_the_writer_checkpointing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.db");
        let store = SqliteStore::open(&path).unwrap();
        let run = RunId::new();
        // Far fewer WAL frames than SQLite's automatic checkpoint needs: only the background one copies these.
        for line in 0..50 {
            let message = format!("line {line}");
            let log = LogRecord { flow_run: run, task_run: None, level: LogLevel::Info, message, time: Utc::now() };
            store.record(&Event::Log(log));
            store.barrier();
        }
        let copy = dir.path().join("copy.db");
        let in_file = || {
            // The database file alone, without its WAL: what a checkpoint has copied.
            std::fs::copy(&path, &copy).unwrap();
            let connection = Connection::open(&copy).unwrap();
            let count = connection.query_row("SELECT COUNT(*) FROM logs", [], |row| row.get::<_, i64>(0));
            drop(connection);
            let _ = std::fs::remove_file(dir.path().join("copy.db-wal"));
            count.unwrap_or(0)
        };
        let deadline = Instant::now() + CHECKPOINT_PERIOD * 5;
        while in_file() < 50 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(in_file(), 50, "every committed log line is in the database file");
    }

    #[test]
    fn under_a_busy_writer_the_wal_starts_over_instead_of_growing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.db");
        let open = || {
            let connection = Connection::open(&path).unwrap();
            connection.pragma_update(None, "journal_mode", "WAL").unwrap();
            connection.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
            connection
        };
        let writer = Mutex::new(open());
        writer.lock().unwrap().execute_batch("CREATE TABLE t (x BLOB)").unwrap();
        let checkpointer = open();
        let insert = || writer.lock().unwrap().execute("INSERT INTO t VALUES (zeroblob(3000))", []).unwrap();
        for _ in 0..500 {
            insert();
        }
        let stop = AtomicBool::new(false);
        let written = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            // A writer that never pauses, as a runner committing task after task.
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    insert();
                    written.fetch_add(1, Ordering::Relaxed);
                }
            });
            while written.load(Ordering::Relaxed) < 100 {
                std::thread::yield_now();
            }
            checkpoint(&checkpointer, &writer, 100);
            stop.store(true, Ordering::Relaxed);
        });
        // The first write after a complete checkpoint starts the WAL over.
        insert();
        let frames_after: i64 =
            writer.lock().unwrap().query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1)).unwrap();
        assert!(frames_after < 500, "the WAL went on growing: {frames_after} frames");
    }
}
