//! CPU time of guests: each instance charges the time its guest code runs
//! to its own limit (a task attempt's) and to its flow run's (the flow,
//! subflows and every task together).
//!
//! Guest code is charged from the moment it starts or resumes (entering
//! wasm, returning from a host call, coming back from an epoch yield) to the
//! moment it stops (calling the host, reaching an epoch tick). Time spent in
//! host calls (waiting on tasks, sleeping, writing logs) and time spent
//! yielded to other guests is not charged. The epoch ticker makes a running
//! guest check in at least every tick, so a guest past its limit is stopped
//! within about one tick of it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Default CPU time of one task attempt.
pub const DEFAULT_TASK_CPU: Duration = Duration::from_secs(5 * 60);
/// Default CPU time of one flow run, its tasks and subflows included.
pub const DEFAULT_RUN_CPU: Duration = Duration::from_secs(30 * 60);

/// CPU time used by one flow run tree, shared by all its instances.
#[derive(Debug)]
pub struct RunCpu {
    used_nanos: AtomicU64,
    limit: Option<Duration>,
}

impl RunCpu {
    /// A fresh counter with this limit (none: unlimited).
    pub fn new(limit: Option<Duration>) -> Arc<Self> {
        Arc::new(Self { used_nanos: AtomicU64::new(0), limit })
    }

    /// CPU time used so far.
    pub fn used(&self) -> Duration {
        Duration::from_nanos(self.used_nanos.load(Ordering::Relaxed))
    }

    /// The run's limit.
    pub fn limit(&self) -> Option<Duration> {
        self.limit
    }

    /// Whether the run has used all its CPU time.
    pub fn exhausted(&self) -> bool {
        self.limit.is_some_and(|limit| self.used() >= limit)
    }

    fn add(&self, spent: Duration) -> Duration {
        let nanos = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.used_nanos.fetch_add(nanos, Ordering::Relaxed).saturating_add(nanos))
    }
}

/// The CPU limit an instance ran past.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuExceeded {
    /// Its own limit (a task attempt's).
    Instance(Duration),
    /// Its flow run's limit.
    Run(Duration),
}

impl CpuExceeded {
    /// Names the limit, for the run's state message.
    pub fn message(&self, what: &str) -> String {
        match self {
            CpuExceeded::Instance(limit) => {
                format!("{what} exceeded its CPU limit of {} per task attempt", crate::core::duration::words(*limit))
            }
            CpuExceeded::Run(limit) => format!(
                "{what} stopped: the flow run exceeded its CPU limit of {} (flow, subflows and tasks together)",
                crate::core::duration::words(*limit)
            ),
        }
    }
}

/// The CPU meter of one instance.
#[derive(Debug)]
pub struct CpuMeter {
    limit: Option<Duration>,
    run: Arc<RunCpu>,
    used: Duration,
    // When guest code last started running; shared with the yield future,
    // which sets it when the guest is scheduled again.
    resumed: Arc<Mutex<Instant>>,
    exceeded: Option<CpuExceeded>,
}

impl CpuMeter {
    /// A meter charging to `limit` (this instance's) and to `run`.
    pub fn new(limit: Option<Duration>, run: Arc<RunCpu>) -> Self {
        Self { limit, run, used: Duration::ZERO, resumed: Arc::new(Mutex::new(Instant::now())), exceeded: None }
    }

    /// Guest code starts or resumes running now.
    pub fn resume(&self) {
        *self.resumed.lock().expect("cpu meter lock") = Instant::now();
    }

    /// Charges the time since guest code last resumed; an error names the
    /// limit it ran past (and is remembered, see [`CpuMeter::exceeded`]).
    pub fn charge(&mut self) -> Result<(), CpuExceeded> {
        let now = Instant::now();
        let spent = {
            let mut resumed = self.resumed.lock().expect("cpu meter lock");
            let spent = now.saturating_duration_since(*resumed);
            *resumed = now;
            spent
        };
        self.used += spent;
        let run_used = self.run.add(spent);
        if let Some(limit) = self.limit
            && self.used > limit
        {
            self.exceeded.get_or_insert(CpuExceeded::Instance(limit));
        }
        if let Some(limit) = self.run.limit
            && run_used > limit
        {
            self.exceeded.get_or_insert(CpuExceeded::Run(limit));
        }
        self.exceeded.map_or(Ok(()), Err)
    }

    /// A future that lets other tasks run, then marks the guest resumed, so
    /// the time it waited for its turn is not charged to it.
    pub fn yield_then_resume(&self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let resumed = self.resumed.clone();
        Box::pin(async move {
            tokio::task::yield_now().await;
            *resumed.lock().expect("cpu meter lock") = Instant::now();
        })
    }

    /// The limit this instance ran past, if any.
    pub fn exceeded(&self) -> Option<CpuExceeded> {
        self.exceeded
    }

    /// CPU time this instance used.
    pub fn used(&self) -> Duration {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(duration: Duration) {
        let start = Instant::now();
        while start.elapsed() < duration {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn time_between_resume_and_charge_counts_and_waiting_does_not() {
        let run = RunCpu::new(None);
        let mut meter = CpuMeter::new(None, run.clone());
        meter.resume();
        spin(Duration::from_millis(20));
        meter.charge().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        meter.resume();
        meter.charge().unwrap();
        assert!(meter.used() >= Duration::from_millis(20) && meter.used() < Duration::from_millis(45), "{meter:?}");
        assert_eq!(run.used(), meter.used());
    }

    #[test]
    fn the_instance_limit_and_the_run_limit_are_named() {
        let run = RunCpu::new(Some(Duration::from_millis(30)));
        let mut first = CpuMeter::new(Some(Duration::from_millis(10)), run.clone());
        first.resume();
        spin(Duration::from_millis(12));
        assert_eq!(first.charge(), Err(CpuExceeded::Instance(Duration::from_millis(10))));
        let mut second = CpuMeter::new(None, run.clone());
        second.resume();
        spin(Duration::from_millis(20));
        assert_eq!(second.charge(), Err(CpuExceeded::Run(Duration::from_millis(30))));
        assert!(run.exhausted());
        assert_eq!(
            CpuExceeded::Instance(Duration::from_millis(250)).message("task `spin`"),
            "task `spin` exceeded its CPU limit of 250 ms per task attempt"
        );
    }
}
