//! The CPU clock of the calling OS thread: how much processor time the
//! kernel has given this thread, which stands still while the thread is
//! blocked or waiting for a core (unlike [`std::time::Instant`]).
//!
//! A reading is only comparable with a later reading on the same thread, so
//! each one remembers its thread; [`ThreadCpu::since`] refuses a pair taken on
//! two threads instead of subtracting unrelated clocks.

use std::thread::ThreadId;
use std::time::Duration;

/// One reading of the calling thread's CPU clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadCpu {
    thread: ThreadId,
    used: Duration,
}

impl ThreadCpu {
    /// The CPU time the calling thread has used so far.
    pub fn now() -> Self {
        // Through libc's `clock_gettime` (the `cpu-time` crate), not a vDSO
        // parser of our own: valgrind cannot follow rustix's, and callgrind's
        // instruction counts are how per-task overhead is measured here.
        let used = cpu_time::ThreadTime::try_now().map(|t| t.as_duration()).unwrap_or_default();
        Self { thread: std::thread::current().id(), used }
    }

    /// CPU time the calling thread used since `earlier`, or `None` when
    /// `earlier` was read on another thread (the clocks are unrelated).
    pub fn since(&self, earlier: &ThreadCpu) -> Option<Duration> {
        (self.thread == earlier.thread).then(|| self.used.saturating_sub(earlier.used))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleeping_thread_uses_no_cpu() {
        let start = ThreadCpu::now();
        std::thread::sleep(Duration::from_millis(50));
        let slept = ThreadCpu::now().since(&start).unwrap();
        assert!(slept < Duration::from_millis(50), "a sleeping thread used {slept:?} of CPU");
    }

    #[test]
    fn readings_of_two_threads_are_not_compared() {
        let here = ThreadCpu::now();
        let there = std::thread::spawn(ThreadCpu::now).join().unwrap();
        assert_eq!(there.since(&here), None);
        assert!(ThreadCpu::now().since(&here).is_some());
    }
}
