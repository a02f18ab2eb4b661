//! Folding a new task run's first states into its insert: a task run is
//! created, goes `Pending` and `Running` in one commit, and writing its row
//! once with the state it ends the commit in saves two `UPDATE`s per task
//! on the hot path. SQLite writes its history (`history.rs`) with it;
//! PostgreSQL writes it state by state (`states`).
//!
//! SQLite also folds the states of a run created in an earlier commit into
//! one `UPDATE`: in a parallel map a task goes `Running` and `Completed`
//! in the same commit, long after the commit that created it.

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

/// The states of one task run created before the batch, folded into one update.
#[derive(Debug, Default, PartialEq)]
pub struct FoldedUpdate {
    /// Where its first state is in the batch: the update is made there.
    pub first: usize,
    /// What its states change, as if applied to a row that had not ended;
    /// `history` holds their entries, to append.
    pub change: FoldedRow,
}

/// The task runs a batch creates, each with the row its states leave.
#[derive(Debug, Default)]
pub struct Folded {
    /// The row each task run created in the batch ends the batch as.
    pub rows: FxHashMap<RunId, FoldedRow>,
    /// With [`History::InRow`]: the states of each task run not created in
    /// the batch, folded into one update.
    pub updates: FxHashMap<RunId, FoldedUpdate>,
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
    if history == History::InRow {
        fold_updates(batch, &mut folded);
    }
    folded
}

/// Folds the states of task runs the batch does not create (a run created
/// anywhere in it keeps the states before its creation as they are).
fn fold_updates(batch: &[Write], folded: &mut Folded) {
    for (position, write) in batch.iter().enumerate() {
        if let Write::Event(Event::State(state)) = write
            && state.kind == RunKind::Task
            && !folded.rows.contains_key(&state.run)
        {
            let update = folded
                .updates
                .entry(state.run)
                .or_insert_with(|| FoldedUpdate { first: position, ..Default::default() });
            if !update.change.apply(state, History::InRow) {
                folded.dropped.insert(position);
            }
        }
    }
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
    fn states_of_a_run_created_earlier_fold_into_one_update_made_at_the_first() {
        let (old, other, new) = (RunId::new(), RunId::new(), RunId::new());
        let batch = [
            state(other, StateType::Running, 1, None),
            state(old, StateType::Running, 1, None),
            created(new),
            state(old, StateType::Completed, 1, Some("7")),
            state(old, StateType::Running, 2, None),
            state(new, StateType::Pending, 0, None),
        ];
        let folded = fold(&batch, History::InRow);
        assert_eq!(folded.updates.len(), 2, "one update for each run created earlier, none for the new run");
        let update = &folded.updates[&old];
        assert_eq!(update.first, 1);
        assert_eq!(update.change.state, Some("Completed"));
        assert_eq!(update.change.result.as_deref(), Some("7"));
        assert!(update.change.ended.is_some());
        assert_eq!(folded.dropped, FxHashSet::from_iter([4]), "the Running after Completed is dropped");
        let history = super::super::history::parse(&update.change.history).unwrap();
        let states: Vec<_> = history.iter().map(|s| s.state).collect();
        assert_eq!(states, [StateType::Running, StateType::Completed]);
        assert_eq!(folded.updates[&other].first, 0);
        assert!(fold(&batch, History::Apart).updates.is_empty(), "PostgreSQL keeps states apart, one by one");
    }

    #[test]
    fn a_state_before_its_run_is_created_is_not_folded() {
        let id = RunId::new();
        let folded = fold(&[state(id, StateType::Running, 1, None), created(id)], History::InRow);
        assert_eq!(folded.rows[&id], FoldedRow::default());
    }
}
