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
/// crash that caused it.
pub fn check_states(states: &[State]) -> Result<Life, String> {
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
            if !retry {
                return Err(format!("{} (#{}) after it ended {} (#{})", state.state, state.seq, end.state, end.seq));
            }
            ended = None;
            continue;
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
