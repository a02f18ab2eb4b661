//! Why a run produced no result: the host's view of a guest error or fault.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The kind of failure; decides the end state and whether to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// The guest returned an error.
    Failed,
    /// The input did not fit the flow's or task's schema.
    InvalidInput,
    /// No flow or task of that name.
    Unknown,
    /// The instance trapped or hit a limit.
    Crashed,
    /// An attempt ran past its timeout.
    TimedOut,
    /// The run was cancelled.
    Cancelled,
    /// The host failed while serving the instance (a host task panicked):
    /// the run ends `Crashed`, as when its worker dies.
    HostFault,
}

/// A failure with its reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// What kind.
    pub kind: FailureKind,
    /// The reason, for people.
    pub message: String,
    /// Whether another attempt may succeed.
    pub retryable: bool,
}

impl Failure {
    /// A failure of the given kind.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        let retryable = matches!(kind, FailureKind::Failed | FailureKind::Crashed | FailureKind::TimedOut);
        Self { kind, message: message.into(), retryable }
    }

    /// The terminal state a run ends in when this is its last failure.
    pub fn end_state(&self) -> crate::core::state::StateType {
        use crate::core::state::StateType;
        match self.kind {
            FailureKind::TimedOut => StateType::TimedOut,
            FailureKind::Cancelled => StateType::Cancelled,
            FailureKind::HostFault => StateType::Crashed,
            FailureKind::Crashed | FailureKind::Failed | FailureKind::InvalidInput | FailureKind::Unknown => {
                StateType::Failed
            }
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
