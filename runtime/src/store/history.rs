//! A run's states, kept in its own row (`task_runs.history`,
//! `flow_runs.history`) in SQLite instead of a `states` row each. A task
//! goes `Pending`, `Running` and `Completed` in one or two commits; three
//! `states` rows and their index entries were B-tree inserts on the hot
//! path, and a history is only ever read whole, for one run. A server's
//! flow run records four states in two commits, each one a `states` leaf
//! page more in the WAL, until flow runs kept theirs in their row too.
//! Rows recorded before either change stay in `states` and are read first.
//!
//! The history is a line per state, each the JSON array SQLite's
//! `json_array(state, message, attempt, time)` writes, so SQL can append
//! (`history || entry`) without reading it, and the migration that moved
//! the old rows here writes the same text.

use super::StateRow;
use crate::core::state::StateType;
use chrono::{DateTime, Utc};

/// SQL for the entry of a state named `?state`, with message, attempt and
/// time given as SQL expressions: the text [`entry`] writes.
pub(super) fn sql_entry(state: &str, message: &str, attempt: &str, time: &str) -> String {
    format!("json_array({state}, {message}, {attempt}, {time}) || char(10)")
}

/// A state's entry, its time given as stored.
pub(super) fn entry(state: &str, message: Option<&str>, attempt: u32, time: &str) -> String {
    let mut text = String::new();
    push_entry_with(&mut text, state, message, attempt, |out| out.push_str(time));
    text
}

/// Appends the entry of a state recorded at `time`.
pub(super) fn push_entry_at(
    history: &mut String,
    state: &str,
    message: Option<&str>,
    attempt: u32,
    time: DateTime<Utc>,
) {
    push_entry_with(history, state, message, attempt, |out| super::writer::push_timestamp(out, time));
}

// Three entries per task run on the hot path: pushed piece by piece, as
// `format!`'s machinery cost more than the rest of the entry.
fn push_entry_with(
    history: &mut String,
    state: &str,
    message: Option<&str>,
    attempt: u32,
    time: impl FnOnce(&mut String),
) {
    // State names and store timestamps hold nothing JSON must escape.
    history.push_str("[\"");
    history.push_str(state);
    history.push_str("\",");
    match message {
        Some(text) => history.push_str(&serde_json::to_string(text).expect("a string serializes")),
        None => history.push_str("null"),
    }
    history.push(',');
    history.push_str(itoa::Buffer::new().format(attempt));
    history.push_str(",\"");
    time(history);
    history.push_str("\"]\n");
}

/// The states a history holds, oldest first; the line that cannot be read, if one cannot.
pub(super) fn parse(history: &str) -> Result<Vec<StateRow>, String> {
    history
        .lines()
        .map(|line| {
            let (state, message, attempt, time): (String, Option<String>, u32, String) =
                serde_json::from_str(line).map_err(|_| line.to_string())?;
            Ok(StateRow {
                state: StateType::parse(&state).ok_or_else(|| line.to_string())?,
                message,
                attempt,
                time: super::sqlite::parse_time(&time).ok_or_else(|| line.to_string())?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn sqlite_writes_the_entry_rust_writes_and_both_read_back() {
        let time = "2026-12-07T12:00:00.123456Z";
        let message = "quote \" backslash \\ newline \n tab \t ünïcode";
        let connection = Connection::open_in_memory().unwrap();
        let sql = format!("SELECT {}", sql_entry("?1", "?2", "?3", "?4"));
        for (state, message, attempt) in
            [("Pending", None, 0), ("Failed", Some(message), 3), ("Retrying", None, u32::MAX)]
        {
            let from_sql: String =
                connection.query_row(&sql, rusqlite::params![state, message, attempt, time], |row| row.get(0)).unwrap();
            assert_eq!(from_sql, entry(state, message, attempt, time));
        }
        let history = entry("Pending", None, 0, time) + &entry("Failed", Some(message), 3, time);
        let states = parse(&history).unwrap();
        assert_eq!(states.len(), 2);
        assert_eq!((states[0].state, states[0].attempt, states[0].message.as_deref()), (StateType::Pending, 0, None));
        assert_eq!((states[1].state, states[1].message.as_deref()), (StateType::Failed, Some(message)));
        assert_eq!(super::super::writer::timestamp(states[1].time), time);
    }

    #[test]
    fn a_line_this_version_cannot_read_is_named() {
        let good = entry("Running", None, 1, "2026-12-07T12:00:00Z");
        assert_eq!(
            parse(&format!("{good}[\"Exploded\",null,1,\"2026-12-07T12:00:00Z\"]\n")).unwrap_err(),
            "[\"Exploded\",null,1,\"2026-12-07T12:00:00Z\"]"
        );
        assert!(parse("").unwrap().is_empty());
    }
}
