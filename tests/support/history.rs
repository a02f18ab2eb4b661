//! Checks on a flow run's recorded life, as the multi-host test reads it
//! back from the database: its flow-level states (each with the worker that
//! held the run when the state was written) and every change of the run's
//! holder (`claimed_by`). Pure functions, so they are tested on made-up
//! histories too.

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// A flow-level state as stored, with the run's holder when it was written.
#[derive(Clone, Debug, Deserialize)]
pub struct State {
    /// The flow run.
    pub run: String,
    /// Commit order.
    pub seq: i64,
    /// `Running`, `Completed`, …
    pub state: String,
    /// Its message (empty when none).
    pub message: String,
    /// When it was recorded.
    pub time: DateTime<Utc>,
    /// `claimed_by` of the run at that moment.
    pub holder: Option<String>,
}

/// One change of a run's `claimed_by`.
#[derive(Clone, Debug, Deserialize)]
pub struct ClaimChange {
    /// The flow run.
    pub run: String,
    /// Change order.
    pub seq: i64,
    /// The holder before (`None`: nobody).
    pub old: Option<String>,
    /// The holder after.
    pub new: Option<String>,
}

/// The states a run ends in.
pub const TERMINAL: &[&str] = &["Completed", "Failed", "TimedOut", "Crashed", "Cancelled"];

fn terminal(state: &str) -> bool {
    TERMINAL.contains(&state)
}

/// What one run's history says once checked.
#[derive(Debug, PartialEq)]
pub struct Life {
    /// Its last state: terminal.
    pub end: String,
    /// The holders that ended it `Crashed`, in order.
    pub crashed_holders: Vec<String>,
    /// Who held it when it ended.
    pub final_holder: Option<String>,
    /// States recorded twice: the same state, message, time and holder as
    /// an earlier one (one report applied twice), left out of the checks.
    pub repeated: Vec<i64>,
}

/// Checks one run's flow-level states (in commit order): it ends exactly
/// once in a terminal state, except that a `Crashed` end may be followed by
/// a retry (`Scheduled`, "Retry …") and a later end; it never runs twice at
/// once (a `Running` while already running), and a retry runs only after the
/// crash that caused it. A subflow run (`subflow`) is never scheduled: it
/// crashes with its parent, and the parent's retry runs it again under the
/// same id, from `Pending`.
pub fn check_states(states: &[State], subflow: bool) -> Result<Life, String> {
    let mut repeated = Vec::new();
    let mut once: Vec<&State> = Vec::with_capacity(states.len());
    for state in states {
        let same = |earlier: &&State| {
            (&earlier.state, &earlier.message, earlier.time, &earlier.holder)
                == (&state.state, &state.message, state.time, &state.holder)
        };
        if once.iter().any(same) {
            repeated.push(state.seq);
        } else {
            once.push(state);
        }
    }
    let states = once;
    let mut running = false;
    let mut ended: Option<&State> = None;
    let mut crashed_holders = Vec::new();
    for &state in &states {
        if let Some(end) = ended {
            let retry = end.state == "Crashed" && state.state == "Scheduled" && state.message.starts_with("Retry");
            let run_again = subflow && end.state == "Crashed" && state.state == "Pending";
            if !retry && !run_again {
                return Err(format!("{} (#{}) after it ended {} (#{})", state.state, state.seq, end.state, end.seq));
            }
            ended = None;
            if retry {
                continue;
            }
        }
        match state.state.as_str() {
            "Running" if running => {
                return Err(format!("Running (#{}) while it was already running: two executions at once", state.seq));
            }
            "Running" => {
                if let Some(crash) = states.iter().rev().find(|s| s.seq < state.seq && s.state == "Crashed")
                    && state.time < crash.time
                {
                    return Err(format!(
                        "its retry started running (#{}) before the crash (#{})",
                        state.seq, crash.seq
                    ));
                }
                running = true;
            }
            end if terminal(end) => {
                if end == "Crashed" {
                    crashed_holders.push(state.holder.clone().unwrap_or_default());
                }
                running = false;
                ended = Some(state);
            }
            _ => {}
        }
    }
    let end = ended
        .ok_or_else(|| format!("it never ended: last state {}", states.last().map_or("none", |s| s.state.as_str())))?;
    Ok(Life { end: end.state.clone(), crashed_holders, final_holder: end.holder.clone(), repeated })
}

/// Checks one run's holder changes against its life: it is taken by one
/// holder at a time (never handed from one to another), and let go only to
/// be retried after that holder crashed.
pub fn check_claims(changes: &[ClaimChange], life: &Life) -> Result<(), String> {
    let mut holders = Vec::new();
    for change in changes {
        match (&change.old, &change.new) {
            (None, Some(new)) => holders.push(new.clone()),
            (Some(_), None) => {}
            (old, new) => return Err(format!("claimed_by changed from {old:?} to {new:?} (#{})", change.seq)),
        }
    }
    let releases = changes.iter().filter(|c| c.new.is_none()).count();
    if releases > life.crashed_holders.len() {
        return Err(format!("let go {releases} times but crashed only {} times", life.crashed_holders.len()));
    }
    for (index, holder) in holders.iter().enumerate().take(holders.len().saturating_sub(1)) {
        if life.crashed_holders.get(index) != Some(holder) {
            return Err(format!("taken from {holder} without a crash of {holder} (holders: {holders:?})"));
        }
    }
    if let Some(last) = holders.last()
        && life.final_holder.as_ref() != Some(last)
        && !(life.end == "Crashed" || last == "cancelled")
    {
        return Err(format!("ended {} held by {:?}, but last taken by {last}", life.end, life.final_holder));
    }
    Ok(())
}

/// Checks what became of a run that `worker` held when it was killed: if
/// `worker` wrote a state of it and its last such state is not an end, the
/// next state is `Crashed` naming `worker`, and the run ends later held by
/// someone else.
pub fn check_killed_worker(states: &[State], worker: &str) -> Result<bool, String> {
    // Its own crash is written while the run is still held by it: not a state it wrote.
    let wrote = |s: &State| s.holder.as_deref() == Some(worker) && s.state != "Crashed";
    let Some(last) = states.iter().rposition(wrote) else { return Ok(false) };
    if terminal(&states[last].state) {
        return Ok(false);
    }
    let next = states.get(last + 1).ok_or_else(|| format!("nothing after {} held by {worker}", states[last].state))?;
    if next.state != "Crashed" || !next.message.contains(&format!("`{worker}`")) {
        return Err(format!("after {worker} was killed: {} ({}) instead of Crashed", next.state, next.message));
    }
    let end = states.last().expect("not empty");
    if end.holder.as_deref() == Some(worker) && end.seq != next.seq {
        return Err(format!("ended {} held by the killed worker {worker}", end.state));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    //! The checks catch what they are meant to catch.

    use super::{ClaimChange, State, check_claims, check_killed_worker, check_states};

    fn states(list: &[(&str, &str, Option<&str>)]) -> Vec<State> {
        list.iter()
            .enumerate()
            .map(|(i, (state, message, holder))| State {
                run: "r".into(),
                seq: i as i64,
                state: state.to_string(),
                message: message.to_string(),
                time: chrono::DateTime::from_timestamp(1_000 + i as i64, 0).unwrap(),
                holder: holder.map(str::to_string),
            })
            .collect()
    }

    fn claims(list: &[(Option<&str>, Option<&str>)]) -> Vec<ClaimChange> {
        list.iter()
            .enumerate()
            .map(|(i, (old, new))| ClaimChange {
                run: "r".into(),
                seq: i as i64,
                old: old.map(str::to_string),
                new: new.map(str::to_string),
            })
            .collect()
    }

    const CRASH: &str = "worker `w3` stopped sending heartbeats while it ran this flow run";

    fn crashed_and_retried() -> Vec<State> {
        states(&[
            ("Scheduled", "", None),
            ("Pending", "", Some("w3")),
            ("Running", "", Some("w3")),
            ("Crashed", CRASH, Some("w3")),
            ("Scheduled", "Retry 1/2 after a crash", None),
            ("Pending", "", Some("w1")),
            ("Running", "", Some("w1")),
            ("Completed", "", Some("w1")),
        ])
    }

    #[test]
    fn a_crash_then_a_retry_is_one_life() {
        let history = crashed_and_retried();
        let life = check_states(&history, false).unwrap();
        assert_eq!((life.end.as_str(), life.crashed_holders.clone()), ("Completed", vec!["w3".to_string()]));
        check_claims(&claims(&[(None, Some("w3")), (Some("w3"), None), (None, Some("w1"))]), &life).unwrap();
        assert_eq!(check_killed_worker(&history, "w3"), Ok(true));
        assert_eq!(check_killed_worker(&history, "w2"), Ok(false));
    }

    #[test]
    fn a_subflow_crashed_with_its_parent_runs_again_from_pending_and_only_a_subflow_does() {
        let subflow = states(&[
            ("Pending", "", None),
            ("Running", "", None),
            ("Crashed", CRASH, None),
            ("Pending", "", None),
            ("Running", "", None),
            ("Completed", "", None),
        ]);
        assert_eq!(check_states(&subflow, true).unwrap().end, "Completed");
        assert!(check_states(&subflow, false).unwrap_err().contains("after it ended"));
        let mut after_completed = subflow.clone();
        after_completed[2].state = "Completed".into();
        assert!(check_states(&after_completed, true).unwrap_err().contains("after it ended"));
    }

    #[test]
    fn two_ends_two_executions_or_no_end_are_refused() {
        let twice =
            states(&[("Running", "", Some("w1")), ("Completed", "", Some("w1")), ("Completed", "", Some("w2"))]);
        assert!(check_states(&twice, false).unwrap_err().contains("after it ended"));
        let overlapping = states(&[("Running", "", Some("w1")), ("Running", "", Some("w2")), ("Completed", "", None)]);
        assert!(check_states(&overlapping, false).unwrap_err().contains("two executions at once"));
        let stuck = states(&[("Scheduled", "", None), ("Running", "", Some("w1"))]);
        assert!(check_states(&stuck, false).unwrap_err().contains("never ended"));
        let mut early = crashed_and_retried();
        early[6].time = early[3].time - chrono::Duration::seconds(1);
        assert!(check_states(&early, false).unwrap_err().contains("before the crash"));
        let retry_of_a_completed_run = states(&[
            ("Running", "", Some("w1")),
            ("Completed", "", Some("w1")),
            ("Scheduled", "Retry 1/2 after a crash", None),
        ]);
        assert!(check_states(&retry_of_a_completed_run, false).is_err());
    }

    #[test]
    fn a_report_applied_twice_is_told_apart_from_a_second_execution() {
        let mut history =
            states(&[("Running", "", Some("w1")), ("Running", "", Some("w1")), ("Completed", "", Some("w1"))]);
        history[1].time = history[0].time;
        let life = check_states(&history, false).unwrap();
        assert_eq!((life.end.as_str(), life.repeated.clone()), ("Completed", vec![1]));
        history[1].time += chrono::Duration::milliseconds(1);
        assert!(check_states(&history, false).unwrap_err().contains("two executions at once"));
    }

    #[test]
    fn a_holder_change_without_a_crash_is_refused() {
        let done = states(&[("Running", "", Some("w2")), ("Completed", "", Some("w2"))]);
        let life = check_states(&done, false).unwrap();
        let handed_over = claims(&[(None, Some("w1")), (Some("w1"), Some("w2"))]);
        assert!(check_claims(&handed_over, &life).unwrap_err().contains("changed from"));
        let let_go = claims(&[(None, Some("w1")), (Some("w1"), None), (None, Some("w2"))]);
        assert!(check_claims(&let_go, &life).unwrap_err().contains("crashed only 0 times"));
    }

    #[test]
    fn a_killed_workers_run_that_did_not_crash_is_refused() {
        let finished_by_another = states(&[("Running", "", Some("w3")), ("Completed", "", Some("w2"))]);
        assert!(check_killed_worker(&finished_by_another, "w3").unwrap_err().contains("instead of Crashed"));
        let left_running = states(&[("Scheduled", "", None), ("Running", "", Some("w3"))]);
        assert!(check_killed_worker(&left_running, "w3").unwrap_err().contains("nothing after"));
    }
}
