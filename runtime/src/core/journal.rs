//! A flow run's journal: the calls its earlier attempts made (tasks and
//! subflows, by position in the run's call sequence) and what they
//! returned, so a retried run replays finished work instead of redoing it.
//!
//! The store keeps the rows (task runs and subflow runs with their call
//! positions); this module decides, as a pure function of those rows, which
//! calls the next attempt may replay. A call is replayed only when an
//! earlier attempt completed it and every call before it in the sequence is
//! still valid: the first call that did not complete (failed, crashed, or
//! never made) ends the valid prefix at the end of its `submit` batch,
//! because the flow saw that call's outcome and may decide differently now.

use crate::core::ids::RunId;
use crate::core::record::RunKind;
use crate::core::state::StateType;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Where a call stands in its flow run's call sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CallPosition {
    /// Its place in the flow run's calls, from 0 (`run-task`, each call of a `submit`, `run-subflow`).
    pub position: u64,
    /// The position of the first call of the `submit` it belongs to (its own for a single call).
    pub batch: u64,
    /// The attempt of the flow run that made it, from 1.
    pub flow_attempt: u32,
}

/// One recorded call, as the store returns it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JournalRow {
    /// The flow run (or subflow run) that made the call.
    pub flow_run: String,
    /// The task run or subflow run the call created.
    pub run: String,
    /// A task or a subflow.
    pub kind: RunKind,
    /// The task's or flow's name.
    pub name: String,
    /// sha256 of the call's input (see [`input_digest`]).
    pub digest: String,
    /// Where the call stands.
    pub call: CallPosition,
    /// The state it reached.
    pub state: Option<StateType>,
    /// Its result as JSON, once completed.
    pub result: Option<String>,
    /// When it ended.
    pub ended: Option<DateTime<Utc>>,
    /// When the run it created was created (a resumed subflow's clock starts there).
    pub created: DateTime<Utc>,
}

/// The digest of a call's input as the journal compares it: a task's input
/// as the guest passed it, a subflow's parameters as normalised JSON with
/// sorted keys (they are stored parsed and completed with defaults, which
/// may reorder them).
pub fn input_digest(kind: RunKind, input: &str) -> String {
    let normalised;
    let bytes = match kind {
        RunKind::Task => input,
        RunKind::Flow => {
            normalised = serde_json::from_str::<serde_json::Value>(input)
                .map(|mut v| {
                    v.sort_all_objects();
                    v.to_string()
                })
                .unwrap_or_default();
            &normalised
        }
    };
    hex::encode(Sha256::digest(bytes.as_bytes()))
}

/// A recorded call the next attempt may meet.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Task or subflow.
    pub kind: RunKind,
    /// Its name.
    pub name: String,
    /// Its input digest.
    pub digest: String,
    /// The run it created.
    pub run: RunId,
    /// The `submit` batch it belongs to.
    pub batch: u64,
    /// The flow attempt that made it.
    pub attempt: u32,
    /// Its result and when it ended, when it completed.
    pub completed: Option<(Arc<str>, DateTime<Utc>)>,
    /// When its run was created.
    pub created: DateTime<Utc>,
}

/// The journal of one flow run (or subflow run).
#[derive(Clone, Debug, Default)]
pub struct FlowJournal {
    entries: BTreeMap<u64, Entry>,
    // Positions from here on are not replayed: the flow may call anything there.
    replay_below: u64,
}

/// What the next attempt does with a call it makes.
#[derive(Debug)]
pub enum Replay<'a> {
    /// Nothing recorded applies: run it.
    Fresh,
    /// An earlier attempt completed it: return its result.
    Completed(&'a Entry, Arc<str>, DateTime<Utc>),
    /// An earlier attempt made it and did not complete it: run it again (a
    /// subflow resumes under its recorded id, from its own journal).
    Again(&'a Entry),
    /// The call differs from the recorded one: the flow is not deterministic.
    Diverged(String),
}

impl FlowJournal {
    /// The journal one flow run's rows (every attempt's) leave for its next attempt.
    fn build(mut rows: Vec<(u32, u64, Entry)>) -> Self {
        rows.sort_by_key(|(attempt, position, _)| (*attempt, *position));
        let mut journal = FlowJournal::default();
        let mut current_attempt = None;
        for (attempt, position, entry) in rows {
            if current_attempt != Some(attempt) {
                // What this attempt replayed is what the journal before it allowed.
                journal.replay_below = journal.valid_prefix();
                let below = journal.replay_below;
                journal.entries.retain(|p, _| *p < below);
                current_attempt = Some(attempt);
            }
            journal.entries.insert(position, entry);
        }
        journal.replay_below = journal.valid_prefix();
        journal
    }

    /// The first position not replayed: past the first call that did not
    /// complete (or was never recorded), rounded up to the end of its batch.
    fn valid_prefix(&self) -> u64 {
        let mut first_open = None;
        for (expected, (&position, entry)) in (0u64..).zip(&self.entries) {
            if position != expected {
                first_open = Some((expected, None));
                break;
            }
            if entry.completed.is_none() {
                first_open = Some((position, Some(entry.batch)));
                break;
            }
        }
        match first_open {
            None => u64::MAX,
            Some((position, None)) => position,
            Some((position, Some(batch))) => {
                let batch_end = self.entries.iter().filter(|(_, e)| e.batch == batch).map(|(p, _)| p + 1).max();
                batch_end.unwrap_or(position).max(position)
            }
        }
    }

    /// Whether the call at `position` is one the journal may replay or must check.
    pub fn covers(&self, position: u64) -> bool {
        position < self.replay_below && self.entries.contains_key(&position)
    }

    /// How many calls the next attempt may replay at most.
    pub fn replayable(&self) -> usize {
        self.entries.range(..self.replay_below).filter(|(_, e)| e.completed.is_some()).count()
    }

    /// What to do with the call `kind` `name` with `digest` at `position`.
    pub fn replay(&self, position: u64, kind: RunKind, name: &str, digest: &str) -> Replay<'_> {
        if position >= self.replay_below {
            return Replay::Fresh;
        }
        let Some(entry) = self.entries.get(&position) else { return Replay::Fresh };
        if entry.kind != kind || entry.name != name || entry.digest != digest {
            return Replay::Diverged(format!(
                "the flow diverged from its journal at call {position}: attempt {} called {} with input digest {}, \
                 this attempt calls {} with input digest {}. Flow code must make the same calls in the same order \
                 on every attempt: read clocks, randomness and outside data in tasks, not in the flow",
                entry.attempt,
                describe(entry.kind, &entry.name),
                short(&entry.digest),
                describe(kind, name),
                short(digest),
            ));
        }
        match &entry.completed {
            Some((result, at)) => Replay::Completed(entry, result.clone(), *at),
            None => Replay::Again(entry),
        }
    }
}

fn describe(kind: RunKind, name: &str) -> String {
    match kind {
        RunKind::Task => format!("task `{name}`"),
        RunKind::Flow => format!("subflow `{name}`"),
    }
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

/// The journals of a flow run tree (the run and its subflows), by flow run.
#[derive(Clone, Debug, Default)]
pub struct Journal {
    flows: HashMap<RunId, FlowJournal>,
}

impl Journal {
    /// The journal the store's rows of a run tree make.
    pub fn from_rows(rows: Vec<JournalRow>) -> Self {
        let mut by_flow: HashMap<RunId, Vec<(u32, u64, Entry)>> = HashMap::new();
        for row in rows {
            let (Some(flow_run), Some(run)) = (RunId::parse(&row.flow_run), RunId::parse(&row.run)) else { continue };
            let completed = match (row.state, row.result, row.ended) {
                (Some(StateType::Completed | StateType::Cached), Some(result), Some(ended)) => {
                    Some((Arc::from(result.as_str()), ended))
                }
                _ => None,
            };
            let entry = Entry {
                kind: row.kind,
                name: row.name,
                digest: row.digest,
                run,
                batch: row.call.batch,
                attempt: row.call.flow_attempt,
                completed,
                created: row.created,
            };
            by_flow.entry(flow_run).or_default().push((row.call.flow_attempt, row.call.position, entry));
        }
        Self { flows: by_flow.into_iter().map(|(id, rows)| (id, FlowJournal::build(rows))).collect() }
    }

    /// The journal of one flow run of the tree, if it made recorded calls.
    pub fn flow(&self, flow_run: RunId) -> Option<&FlowJournal> {
        self.flows.get(&flow_run)
    }

    /// Calls the whole tree may replay.
    pub fn replayable(&self) -> usize {
        self.flows.values().map(FlowJournal::replayable).sum()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(flow: RunId, position: u64, batch: u64, attempt: u32, state: StateType, name: &str) -> JournalRow {
        let done = matches!(state, StateType::Completed | StateType::Cached);
        JournalRow {
            flow_run: flow.to_string(),
            run: RunId::new().to_string(),
            kind: RunKind::Task,
            name: name.into(),
            digest: input_digest(RunKind::Task, &format!("{{\"i\":{position}}}")),
            call: CallPosition { position, batch, flow_attempt: attempt },
            state: Some(state),
            result: done.then(|| position.to_string()),
            ended: Some(Utc::now()),
            created: Utc::now(),
        }
    }

    fn call(journal: &FlowJournal, position: u64) -> Replay<'_> {
        journal.replay(position, RunKind::Task, "step", &input_digest(RunKind::Task, &format!("{{\"i\":{position}}}")))
    }

    #[test]
    fn completed_calls_before_the_first_failure_replay_and_the_failed_one_runs_again() {
        let flow = RunId::new();
        let mut rows: Vec<JournalRow> = (0..5).map(|p| row(flow, p, p, 1, StateType::Completed, "step")).collect();
        rows.push(row(flow, 5, 5, 1, StateType::Failed, "step"));
        let journal = Journal::from_rows(rows);
        let journal = journal.flow(flow).unwrap();
        assert_eq!(journal.replayable(), 5);
        assert!(matches!(call(journal, 4), Replay::Completed(_, result, _) if &*result == "4"));
        assert!(matches!(call(journal, 5), Replay::Again(_)));
        assert!(matches!(call(journal, 6), Replay::Fresh));
    }

    #[test]
    fn a_different_call_at_a_replayed_position_is_a_divergence_naming_both_calls() {
        let flow = RunId::new();
        let journal = Journal::from_rows(vec![row(flow, 0, 0, 1, StateType::Completed, "step")]);
        let digest = input_digest(RunKind::Task, "{\"i\":0}");
        let Replay::Diverged(message) = journal.flow(flow).unwrap().replay(0, RunKind::Task, "other", &digest) else {
            panic!("a different task name must diverge")
        };
        assert!(message.contains("call 0") && message.contains("`step`") && message.contains("`other`"), "{message}");
    }

    #[test]
    fn completed_calls_of_the_batch_of_the_first_failure_replay_and_later_batches_do_not() {
        let flow = RunId::new();
        let mut rows = vec![row(flow, 0, 0, 1, StateType::Completed, "step")];
        rows.push(row(flow, 1, 1, 1, StateType::Completed, "step"));
        rows.push(row(flow, 2, 1, 1, StateType::Crashed, "step"));
        rows.push(row(flow, 3, 1, 1, StateType::Completed, "step"));
        rows.push(row(flow, 4, 4, 1, StateType::Completed, "step"));
        let journal = Journal::from_rows(rows);
        let journal = journal.flow(flow).unwrap();
        assert!(matches!(call(journal, 3), Replay::Completed(..)), "same batch as the crash: replayed");
        assert!(matches!(call(journal, 4), Replay::Fresh), "after the batch the flow saw a new outcome");
    }

    #[test]
    fn a_later_attempt_that_stopped_early_makes_the_stale_calls_of_the_first_invalid() {
        let flow = RunId::new();
        // Attempt 1: calls 0..4, call 2 failed. Attempt 2 re-ran 2 (completed) and crashed in 3.
        let mut rows: Vec<JournalRow> = (0..5)
            .map(|p| row(flow, p, p, 1, if p == 2 { StateType::Failed } else { StateType::Completed }, "step"))
            .collect();
        rows.push(row(flow, 2, 2, 2, StateType::Completed, "step"));
        rows.push(row(flow, 3, 3, 2, StateType::Crashed, "step"));
        let journal = Journal::from_rows(rows);
        let journal = journal.flow(flow).unwrap();
        assert!(matches!(call(journal, 2), Replay::Completed(entry, ..) if entry.attempt == 2));
        assert!(matches!(call(journal, 3), Replay::Again(entry) if entry.attempt == 2));
        assert!(matches!(call(journal, 4), Replay::Fresh), "attempt 1's call 4 came after a different outcome");
    }
}
