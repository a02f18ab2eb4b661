//! A task's retry, timeout and cache policy, and the retry delay it implies.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How the host runs a task, as declared by the component (`describe`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskPolicy {
    /// Retries after the first failed attempt.
    pub retries: u32,
    /// Delay before the first retry.
    pub retry_delay_ms: u64,
    /// Factor between successive delays.
    pub backoff: f64,
    /// Random extra delay as a fraction of the delay.
    pub jitter: f64,
    /// Limit of one attempt.
    pub timeout_ms: Option<u64>,
    /// Whether results are cached by input.
    pub cache: bool,
    /// How long a cached result stays valid.
    pub cache_expiration_ms: Option<u64>,
}

impl Default for TaskPolicy {
    fn default() -> Self {
        Self {
            retries: 0,
            retry_delay_ms: 0,
            backoff: 1.0,
            jitter: 0.0,
            timeout_ms: None,
            cache: false,
            cache_expiration_ms: None,
        }
    }
}

/// Longest delay the host waits between attempts, whatever the policy says.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);

impl TaskPolicy {
    /// The delay before retry number `retry` (1 for the first retry), given
    /// a uniform random `unit` in [0, 1) for the jitter.
    pub fn retry_delay(&self, retry: u32, unit: f64) -> Duration {
        let backoff = if self.backoff.is_finite() { self.backoff.max(1.0) } else { 1.0 };
        let jitter = if self.jitter.is_finite() { self.jitter.clamp(0.0, 1.0) } else { 0.0 };
        let exponent = retry.saturating_sub(1).min(64) as i32;
        let base = self.retry_delay_ms as f64 * backoff.powi(exponent);
        let millis = base * (1.0 + jitter * unit.clamp(0.0, 1.0));
        Duration::from_secs_f64((millis / 1000.0).min(MAX_RETRY_DELAY.as_secs_f64()))
    }

    /// Attempts allowed in all: the first plus the retries.
    pub fn max_attempts(&self) -> u32 {
        self.retries.saturating_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_by_the_backoff_factor() {
        let policy = TaskPolicy { retries: 3, retry_delay_ms: 100, backoff: 2.0, ..TaskPolicy::default() };
        assert_eq!(policy.retry_delay(1, 0.0), Duration::from_millis(100));
        assert_eq!(policy.retry_delay(2, 0.0), Duration::from_millis(200));
        assert_eq!(policy.retry_delay(3, 0.0), Duration::from_millis(400));
        assert_eq!(policy.max_attempts(), 4);
    }

    #[test]
    fn jitter_adds_up_to_its_fraction() {
        let policy = TaskPolicy { retry_delay_ms: 1000, jitter: 0.5, ..TaskPolicy::default() };
        assert_eq!(policy.retry_delay(1, 0.0), Duration::from_millis(1000));
        assert_eq!(policy.retry_delay(1, 0.5), Duration::from_millis(1250));
        assert_eq!(policy.retry_delay(1, 1.0), Duration::from_millis(1500));
    }

    #[test]
    fn hostile_policies_are_clamped() {
        let policy = TaskPolicy { retry_delay_ms: u64::MAX, backoff: f64::NAN, jitter: 7.0, ..TaskPolicy::default() };
        assert_eq!(policy.retry_delay(50, 1.0), MAX_RETRY_DELAY);
        let shrinking = TaskPolicy { retry_delay_ms: 100, backoff: 0.1, ..TaskPolicy::default() };
        assert_eq!(shrinking.retry_delay(3, 0.0), Duration::from_millis(100));
    }
}
