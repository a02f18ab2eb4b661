//! Following a flow run's logs as they are written (`sluice flow-run logs
//! --follow`, the API's `GET /flow-runs/{id}/logs/follow`): its lines (its
//! tasks' and subflows' included) after a sequence number, read through
//! the caller's tenant.

use super::{Service, ServiceError};
use crate::core::record::LogLevel;
use crate::store::{LogRow, SqlValue};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A log line with its place in the log, for resuming after it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FollowedLine {
    /// Increases with every line written: follow again `after` the last one seen.
    pub seq: i64,
    /// The line.
    #[serde(flatten)]
    pub row: LogRow,
}

/// The end of a followed log: the run ended.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogsEnded {
    /// The state it ended in.
    pub state: Option<crate::core::state::StateType>,
    /// Why, when it says.
    pub message: Option<String>,
}

/// The lines of a flow run (and its subflows) after `?2`, of tenant `?4`, oldest first.
const LINES_AFTER: &str = "SELECT l.seq, l.time, l.level, l.task_run, l.message, COALESCE(t.name, f.name) AS run_name
     FROM logs l LEFT JOIN task_runs t ON t.id = l.task_run LEFT JOIN flow_runs f ON f.id = l.flow_run
     WHERE (l.flow_run = ?1 OR l.flow_run IN (SELECT id FROM flow_runs WHERE parent = ?1))
     AND EXISTS (SELECT 1 FROM flow_runs WHERE id = ?1 AND tenant = ?4)
     AND l.seq > ?2 ORDER BY l.seq LIMIT ?3";

impl Service {
    /// Up to `limit` log lines of flow run `run` (an id) after sequence number `after`, oldest first.
    pub fn logs_after(
        &self,
        tenant: &str,
        run: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<FollowedLine>, ServiceError> {
        let params = [SqlValue::from(run), after.into(), (limit as i64).into(), tenant.into()];
        let rows = self.store.listing(LINES_AFTER, &params)?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let (seq, row) = log_line(&row);
                FollowedLine { seq, row }
            })
            .collect())
    }
}

/// A row of a log listing (`seq, time, level, task_run, message, run_name`)
/// as its sequence number and log line: what the run page and `--follow` read.
pub fn log_line(row: &[SqlValue]) -> (i64, LogRow) {
    let line = LogRow {
        time: row[1].text().as_deref().and_then(parse_time).unwrap_or_default(),
        level: row[2].text().as_deref().and_then(LogLevel::parse).unwrap_or(LogLevel::Info),
        task_run: row[3].text(),
        run_name: row[5].text().unwrap_or_default(),
        message: row[4].text().unwrap_or_default(),
    };
    (row[0].int(), line)
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}
