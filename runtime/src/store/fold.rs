//! Folding a new task run's first states into its insert: a task run is
//! created, goes `Pending` and `Running` in one commit, and writing its row
//! once with the state it ends the commit in saves two `UPDATE`s per task
//! on the hot path. SQLite writes its history (`history.rs`) with it;
//! PostgreSQL writes it state by state (`states`).

use crate::core::ids::RunId;
use crate::core::record::{Event, RunKind, StateRecord};
use crate::store::writer::Write;
use chrono::{DateTime, Utc};
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::Arc;

/// A `task_runs` row as it stands after the states of one batch.
#[derive(Debug, Default, PartialEq)]
pub struct FoldedRow {
    pub state: Option<&'static str>,
    pub message: Option<String>,
    pub result: Option<Arc<str>>,
    pub attempts: u32,
    pub ended: Option<DateTime<Utc>>,
    /// Its states' entries, oldest first (`history.rs`); empty unless
    /// folded with [`History::InRow`].
    pub history: String,
}

/// Where a task run's states are kept by the writer folding them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum History {
    /// In the row, as SQLite keeps them: the fold writes the entries.
    InRow,
    /// As rows of their own, as PostgreSQL keeps them: no entries to write.
    Apart,
}

impl FoldedRow {
    /// Applies one state as the writer's `UPDATE … WHERE ended IS NULL`
    /// would; false when the run had already ended, so the state is dropped.
    fn apply(&mut self, state: &StateRecord, history: History) -> bool {
        if self.ended.is_some() {
            return false;
        }
        self.state = Some(state.state.name());
        self.message.clone_from(&state.message);
        if state.result.is_some() {
            self.result.clone_from(&state.result);
        }
        self.attempts = self.attempts.max(state.attempt);
        self.ended = state.state.is_terminal().then_some(state.time);
        if history == History::InRow {
            super::history::push_entry_at(
                &mut self.history,
                state.state.name(),
                state.message.as_deref(),
                state.attempt,
                state.time,
            );
        }
        true
    }
}

/// The task runs a batch creates, each with the row its states leave.
#[derive(Debug, Default)]
pub struct Folded {
    /// The row each task run created in the batch ends the batch as.
    pub rows: FxHashMap<RunId, FoldedRow>,
    /// Positions in the batch of states that arrive after their run ended (not recorded).
    pub dropped: FxHashSet<usize>,
}

/// Folds the states that follow each task run's creation in `batch`.
pub fn fold(batch: &[Write], history: History) -> Folded {
    let mut folded = Folded::default();
    for (position, write) in batch.iter().enumerate() {
        match write {
            Write::Event(Event::TaskRunCreated(run)) => {
                folded.rows.entry(run.id).or_default();
            }
            Write::Event(Event::State(state)) if state.kind == RunKind::Task => {
                if let Some(row) = folded.rows.get_mut(&state.run)
                    && !row.apply(state, history)
                {
                    folded.dropped.insert(position);
                }
            }
            _ => {}
        }
    }
    folded
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::TaskRunRecord;
    use crate::core::state::StateType;

    fn created(id: RunId) -> Write {
        Write::Event(Event::TaskRunCreated(TaskRunRecord {
            id,
            flow_run: RunId::new(),
            task: "noop".into(),
            name: "noop-0".into(),
            input: "{}".into(),
            created: Utc::now(),
            call: None,
        }))
    }

    fn state(run: RunId, state: StateType, attempt: u32, result: Option<&str>) -> Write {
        Write::Event(Event::State(StateRecord {
            run,
            kind: RunKind::Task,
            state,
            message: Some(format!("{} {attempt}", state.name())),
            attempt,
            result: result.map(Arc::from),
            time: Utc::now(),
        }))
    }

    #[test]
    fn a_new_run_ends_the_batch_in_its_last_state_and_keeps_its_result_and_highest_attempt() {
        let id = RunId::new();
        let batch = [
            created(id),
            state(id, StateType::Pending, 0, None),
            state(id, StateType::Running, 2, None),
            state(id, StateType::Completed, 1, Some("42")),
        ];
        let folded = fold(&batch, History::InRow);
        let row = &folded.rows[&id];
        assert_eq!(row.state, Some("Completed"));
        assert_eq!(row.message.as_deref(), Some("Completed 1"));
        assert_eq!(row.result.as_deref(), Some("42"));
        assert_eq!(row.attempts, 2);
        assert!(row.ended.is_some());
        assert!(folded.dropped.is_empty());
        let history = super::super::history::parse(&row.history).unwrap();
        let states: Vec<_> = history.iter().map(|s| (s.state, s.attempt)).collect();
        assert_eq!(states, [(StateType::Pending, 0), (StateType::Running, 2), (StateType::Completed, 1)]);
        let apart = fold(&batch, History::Apart);
        assert_eq!(apart.rows[&id].history, "", "states kept apart are not written into the row");
        assert_eq!(apart.rows[&id].state, Some("Completed"));
    }

    #[test]
    fn states_after_the_end_are_dropped_and_states_of_older_runs_are_left_alone() {
        let (new, old) = (RunId::new(), RunId::new());
        let batch = [
            state(old, StateType::Completed, 1, Some("1")),
            created(new),
            state(new, StateType::Failed, 1, None),
            state(new, StateType::Running, 1, None),
        ];
        let folded = fold(&batch, History::InRow);
        assert_eq!(folded.rows.len(), 1, "only runs created in the batch are folded");
        assert_eq!(folded.rows[&new].state, Some("Failed"));
        assert_eq!(folded.dropped, FxHashSet::from_iter([3]));
        let history = super::super::history::parse(&folded.rows[&new].history).unwrap();
        assert_eq!(history.len(), 1, "the Running after the end is not in the history");
    }

    #[test]
    fn a_state_before_its_run_is_created_is_not_folded() {
        let id = RunId::new();
        let folded = fold(&[state(id, StateType::Running, 1, None), created(id)], History::InRow);
        assert_eq!(folded.rows[&id], FoldedRow::default());
    }
}
