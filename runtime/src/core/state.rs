//! Run states, with Prefect's names, and the one table of allowed transitions.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The state of a flow run or a task run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum StateType {
    /// Waiting for its scheduled start time.
    Scheduled,
    /// Its scheduled start time passed without a worker taking it.
    Late,
    /// Accepted, about to run.
    Pending,
    /// Running its first attempt.
    Running,
    /// Failed an attempt; waiting before the next one.
    AwaitingRetry,
    /// Running a later attempt.
    Retrying,
    /// Waiting for a person's input (a flow's `suspend`): no instance, no worker slot.
    Paused,
    /// Ended with a result.
    Completed,
    /// Ended with a result reused from an earlier run.
    Cached,
    /// Ended with an error.
    Failed,
    /// Ended because an attempt ran past its timeout.
    TimedOut,
    /// Ended because its host or instance broke (trap, lost worker).
    Crashed,
    /// Asked to stop; waiting for the runner to stop it.
    Cancelling,
    /// Stopped on request.
    Cancelled,
}

use StateType::*;

/// Every state, in lifecycle order.
pub const ALL_STATES: [StateType; 14] = [
    Scheduled,
    Late,
    Pending,
    Running,
    AwaitingRetry,
    Retrying,
    Paused,
    Completed,
    Cached,
    Failed,
    TimedOut,
    Crashed,
    Cancelling,
    Cancelled,
];

impl StateType {
    /// Whether a run in this state has ended for good.
    pub fn is_terminal(self) -> bool {
        matches!(self, Completed | Cached | Failed | TimedOut | Crashed | Cancelled)
    }

    /// Whether the run ended with a usable result.
    pub fn is_success(self) -> bool {
        matches!(self, Completed | Cached)
    }

    /// Whether guest code is executing in this state.
    pub fn is_running(self) -> bool {
        matches!(self, Running | Retrying)
    }

    /// The state's name as stored and shown.
    pub fn name(self) -> &'static str {
        match self {
            Scheduled => "Scheduled",
            Late => "Late",
            Pending => "Pending",
            Running => "Running",
            AwaitingRetry => "AwaitingRetry",
            Retrying => "Retrying",
            Paused => "Paused",
            Completed => "Completed",
            Cached => "Cached",
            Failed => "Failed",
            TimedOut => "TimedOut",
            Crashed => "Crashed",
            Cancelling => "Cancelling",
            Cancelled => "Cancelled",
        }
    }

    /// Parses a state name, ignoring case.
    pub fn parse(name: &str) -> Option<Self> {
        ALL_STATES.into_iter().find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// Whether a run may move from `self` to `next`. This is the one table.
    pub fn can_become(self, next: StateType) -> bool {
        if self.is_terminal() {
            // A crashed run may be retried by its flow-run retry policy.
            return self == Crashed && matches!(next, AwaitingRetry | Scheduled);
        }
        match (self, next) {
            (_, Cancelling) => !matches!(self, Cancelling),
            (Cancelling, next) => matches!(next, Cancelled | Completed | Failed | Crashed | TimedOut),
            (_, Cancelled) => true,
            (_, Crashed) => true,
            (Scheduled, Late | Pending) => true,
            (Late, Pending) => true,
            (Pending, Running | Cached | Failed) => true,
            (Running | Retrying, Completed | Failed | TimedOut | AwaitingRetry) => true,
            (AwaitingRetry, Retrying) => true,
            // A flow run pauses for input and is scheduled again when resumed; the
            // pause's own task run waits in `Paused` and completes with the input.
            (Running | Retrying | Pending, Paused) => true,
            (Paused, Scheduled | Completed | Failed | TimedOut) => true,
            _ => false,
        }
    }
}

impl fmt::Display for StateType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A refused move, naming both states.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a run in state {from} cannot become {to}")]
pub struct InvalidTransition {
    /// Where the run was.
    pub from: StateType,
    /// Where it was asked to go.
    pub to: StateType,
}

/// Checks a move against the table.
pub fn check_transition(from: Option<StateType>, to: StateType) -> Result<(), InvalidTransition> {
    match from {
        None if matches!(to, Scheduled | Pending) => Ok(()),
        None => Err(InvalidTransition { from: Pending, to }),
        Some(from) if from.can_become(to) => Ok(()),
        Some(from) => Err(InvalidTransition { from, to }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn happy_path_of_a_task_is_allowed() {
        let path = [Pending, Running, Completed];
        assert!(check_transition(None, Pending).is_ok());
        for pair in path.windows(2) {
            assert!(pair[0].can_become(pair[1]), "{} -> {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn retry_path_is_allowed() {
        let path = [Pending, Running, AwaitingRetry, Retrying, AwaitingRetry, Retrying, Completed];
        for pair in path.windows(2) {
            assert!(pair[0].can_become(pair[1]), "{} -> {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn scheduled_runs_go_late_then_pending() {
        assert!(check_transition(None, Scheduled).is_ok());
        assert!(Scheduled.can_become(Late));
        assert!(Late.can_become(Pending));
        assert!(!Late.can_become(Completed));
    }

    #[test]
    fn terminal_states_do_not_move_except_crashed_to_retry() {
        for from in ALL_STATES.into_iter().filter(|s| s.is_terminal()) {
            for to in ALL_STATES {
                let allowed = from.can_become(to);
                let expected = from == Crashed && matches!(to, AwaitingRetry | Scheduled);
                assert_eq!(allowed, expected, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn cancel_is_reachable_from_every_live_state() {
        for from in ALL_STATES.into_iter().filter(|s| !s.is_terminal() && *s != Cancelling) {
            assert!(from.can_become(Cancelling), "{from}");
            assert!(from.can_become(Cancelled), "{from}");
        }
        assert!(Cancelling.can_become(Cancelled));
        assert!(!Cancelling.can_become(Running));
    }

    #[test]
    fn skipping_running_is_refused() {
        assert!(!Pending.can_become(Completed));
        assert_eq!(check_transition(Some(Scheduled), Running), Err(InvalidTransition { from: Scheduled, to: Running }));
        assert!(check_transition(None, Running).is_err());
        assert!(!AwaitingRetry.can_become(Completed));
    }

    #[test]
    fn a_running_flow_pauses_and_is_scheduled_again_or_fails() {
        assert!(Running.can_become(Paused) && Retrying.can_become(Paused));
        assert!(Paused.can_become(Scheduled) && Paused.can_become(Failed) && Paused.can_become(Cancelled));
        assert!(!Paused.is_terminal() && !Paused.is_running());
        assert!(!Scheduled.can_become(Paused) && !Paused.can_become(Running));
    }

    #[test]
    fn names_round_trip() {
        for state in ALL_STATES {
            assert_eq!(StateType::parse(state.name()), Some(state));
            assert_eq!(StateType::parse(&state.name().to_lowercase()), Some(state));
        }
        assert_eq!(StateType::parse("Done"), None);
    }
}
