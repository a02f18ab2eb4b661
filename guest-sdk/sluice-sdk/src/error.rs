//! The error a flow or task returns, and whether a retry may help.

use crate::bindings::sluice::flow::types::{Failure, RunError};
use std::fmt;

/// Result of a flow, a task, or a call to either.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a flow or task produced no result.
///
/// Any `std::error::Error` converts into it with `?` and is retryable, as an
/// exception is in Prefect; [`Error::fatal`] tells the host not to retry.
pub struct Error {
    kind: RunError,
}

impl Error {
    /// A failure that a retry may fix.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self::failed(message.to_string(), true)
    }

    /// A failure that no retry can fix: the host gives up at once.
    pub fn fatal(message: impl fmt::Display) -> Self {
        Self::failed(message.to_string(), false)
    }

    fn failed(message: String, retryable: bool) -> Self {
        Self { kind: RunError::Failed(Failure { message, retryable }) }
    }

    /// Whether the host may retry after this error.
    pub fn is_retryable(&self) -> bool {
        match &self.kind {
            RunError::Failed(f) | RunError::Crashed(f) => f.retryable,
            RunError::TimedOut(_) => true,
            RunError::InvalidInput(_) | RunError::Unknown(_) | RunError::Cancelled(_) => false,
        }
    }

    /// The error as it crosses the WIT boundary.
    pub fn into_run_error(self) -> RunError {
        self.kind
    }

    /// An error reported by the host for a call.
    pub fn from_run_error(kind: RunError) -> Self {
        Self { kind }
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(err: E) -> Self {
        Self::msg(err)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            RunError::Failed(failure) => f.write_str(&failure.message),
            RunError::Crashed(failure) => write!(f, "crashed: {}", failure.message),
            RunError::InvalidInput(m) => write!(f, "invalid input: {m}"),
            RunError::Unknown(m) => write!(f, "unknown: {m}"),
            RunError::TimedOut(m) => write!(f, "timed out: {m}"),
            RunError::Cancelled(m) => write!(f, "cancelled: {m}"),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
