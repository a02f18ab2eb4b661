//! CPU time of guests: each instance charges the processor time its guest
//! code uses to its own limit (a task attempt's) and to its flow run's (the
//! flow, subflows and every task together).
//!
//! Guest code runs in stretches: from the moment it starts or resumes
//! (entering wasm, returning from a host call, coming back from an epoch
//! yield) to the moment it stops (calling the host, reaching an epoch tick).
//! A stretch never crosses an await point, so it runs on one OS thread from
//! start to end, and it is charged by that thread's CPU clock
//! ([`ThreadCpu`]), not by the wall clock: time the OS gives to other
//! processes or threads while the guest's thread waits for a core is not
//! the guest's. Time spent in host calls (waiting on tasks, sleeping,
//! writing logs) and time spent yielded to other guests is not charged
//! either. The epoch ticker (a wall-clock tick) makes a running guest check
//! in at least every tick, so a guest past its limit is stopped at the first
//! tick after it used its CPU time: on a busy host that tick comes later in
//! wall time, never earlier in CPU time.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sandbox::thread_clock::ThreadCpu;

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
    // Where guest code last started running; shared with the yield future,
    // which sets it when the guest is scheduled again.
    resumed: Arc<Mutex<Start>>,
    exceeded: Option<CpuExceeded>,
}

/// The start of a stretch of guest code: its thread's CPU clock, and the
/// wall clock for the case that cannot happen (see [`Start::spent`]).
#[derive(Clone, Copy, Debug)]
struct Start {
    cpu: ThreadCpu,
    wall: Instant,
}

impl Start {
    fn now() -> Self {
        Self { cpu: ThreadCpu::now(), wall: Instant::now() }
    }

    /// Time used by the stretch that began at `self` and ends at `end`.
    /// Both ends are read on the guest's thread with no await between them,
    /// so they share a thread; if wasmtime ever moved a running guest, the
    /// stretch is charged by the wall clock rather than left uncounted.
    fn spent(&self, end: &Start) -> Duration {
        end.cpu.since(&self.cpu).unwrap_or_else(|| end.wall.saturating_duration_since(self.wall))
    }
}

impl CpuMeter {
    /// A meter charging to `limit` (this instance's) and to `run`.
    pub fn new(limit: Option<Duration>, run: Arc<RunCpu>) -> Self {
        Self { limit, run, used: Duration::ZERO, resumed: Arc::new(Mutex::new(Start::now())), exceeded: None }
    }

    /// Guest code starts or resumes running now, on the calling thread.
    pub fn resume(&self) {
        *self.resumed.lock().expect("cpu meter lock") = Start::now();
    }

    /// Charges the CPU time the calling thread used since guest code last
    /// resumed; an error names the limit it ran past (and is remembered, see
    /// [`CpuMeter::exceeded`]).
    pub fn charge(&mut self) -> Result<(), CpuExceeded> {
        let now = Start::now();
        let spent = {
            let mut resumed = self.resumed.lock().expect("cpu meter lock");
            let spent = resumed.spent(&now);
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
            // Read on the thread that runs the guest on: wasmtime resumes it
            // in the same poll that finds this future ready.
            *resumed.lock().expect("cpu meter lock") = Start::now();
        })
    }

    /// The limit this instance ran past, if any.
    pub fn exceeded(&self) -> Option<CpuExceeded> {
        self.exceeded
    }

    /// CPU time this instance used (charged at its last stop).
    pub fn used(&self) -> Duration {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spins until this thread has used `cpu` of processor time.
    fn spin_cpu(cpu: Duration) {
        let start = ThreadCpu::now();
        while ThreadCpu::now().since(&start).expect("same thread") < cpu {
            std::hint::spin_loop();
        }
    }

    /// Runs `stretch` between `resume` and `charge`; returns what was charged
    /// and the CPU time the thread used around the whole stretch.
    fn charged(meter: &mut CpuMeter, stretch: impl FnOnce()) -> (Duration, Duration) {
        let before = meter.used();
        let outer = ThreadCpu::now();
        meter.resume();
        stretch();
        let result = meter.charge();
        let around = ThreadCpu::now().since(&outer).expect("same thread");
        assert_eq!(result, Ok(()));
        (meter.used() - before, around)
    }

    #[test]
    fn cpu_used_between_resume_and_charge_counts_and_waiting_outside_does_not() {
        let run = RunCpu::new(None);
        let mut meter = CpuMeter::new(None, run.clone());
        let (spent, around) = charged(&mut meter, || spin_cpu(Duration::from_millis(20)));
        assert!(spent >= Duration::from_millis(20) && spent <= around, "charged {spent:?}, used {around:?}");
        // Time between a charge and the next resume (a host call) is not the guest's.
        std::thread::sleep(Duration::from_millis(50));
        let (after_wait, around) = charged(&mut meter, || {});
        assert!(after_wait <= around, "charged {after_wait:?} for an empty stretch that used {around:?}");
        assert_eq!(run.used(), meter.used());
    }

    #[test]
    fn a_stretch_is_charged_the_cpu_its_thread_used_not_the_time_it_was_off_the_processor() {
        // A thread that is off the processor inside a stretch (here asleep,
        // as when the OS runs other processes) uses no CPU: charging the
        // wall clock, as this meter once did, would charge 100 ms.
        let mut meter = CpuMeter::new(Some(Duration::from_millis(100)), RunCpu::new(None));
        let (spent, around) = charged(&mut meter, || std::thread::sleep(Duration::from_millis(100)));
        assert!(spent <= around, "charged {spent:?}, but the thread used {around:?}");
        assert!(spent < Duration::from_millis(100), "charged {spent:?} for 100 ms asleep");
        assert_eq!(meter.exceeded(), None);
    }

    #[test]
    fn the_instance_limit_and_the_run_limit_are_named() {
        let run = RunCpu::new(Some(Duration::from_millis(30)));
        let mut first = CpuMeter::new(Some(Duration::from_millis(10)), run.clone());
        first.resume();
        spin_cpu(Duration::from_millis(12));
        assert_eq!(first.charge(), Err(CpuExceeded::Instance(Duration::from_millis(10))));
        let mut second = CpuMeter::new(None, run.clone());
        second.resume();
        spin_cpu(Duration::from_millis(20));
        assert_eq!(second.charge(), Err(CpuExceeded::Run(Duration::from_millis(30))));
        assert!(run.exhausted());
        assert_eq!(
            CpuExceeded::Instance(Duration::from_millis(250)).message("task `spin`"),
            "task `spin` exceeded its CPU limit of 250 ms per task attempt"
        );
    }

    #[test]
    fn a_stretch_resumed_by_the_yield_future_starts_when_the_guest_runs_again() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut meter = CpuMeter::new(None, RunCpu::new(None));
        meter.resume();
        spin_cpu(Duration::from_millis(5));
        meter.charge().unwrap();
        let charged_before_yield = meter.used();
        runtime.block_on(meter.yield_then_resume());
        std::thread::sleep(Duration::from_millis(30));
        spin_cpu(Duration::from_millis(5));
        meter.charge().unwrap();
        let stretch = meter.used() - charged_before_yield;
        assert!(stretch >= Duration::from_millis(5), "{stretch:?}");
        assert!(stretch < Duration::from_millis(30), "the 30 ms asleep after the yield was charged: {stretch:?}");
    }
}
