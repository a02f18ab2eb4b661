//! CPU time of guests: each instance charges the processor time its guest
//! code uses to its own limit (a task attempt's) and to its flow run's (the
//! flow, subflows and every task together).
//!
//! Guest code runs inside the host's calls into it (instantiation and each
//! export), and each such call is driven by a future. Every poll of that
//! future is a *stretch*: it runs on one OS thread from start to end, with no
//! other guest and no other tokio task between, and it is charged by that
//! thread's CPU clock ([`ThreadCpu`]), not by the wall clock: time the OS
//! gives to other processes or threads while the guest's thread waits for a
//! core is not the guest's. When the guest awaits (a host call that waits on
//! a task, a sleep, a pause, a commit; an epoch yield), the poll returns
//! `Pending` and the stretch ends, so waiting is never charged.
//!
//! Host work that a guest's call does on the spot, without awaiting (writing
//! its log lines, drawing random bytes, recording a task's state), is charged
//! to the guest, as an OS charges a process's system time to its CPU limit.
//! A guest that calls into another instance on the spot (a task run inline
//! by its flow) stops its own stretch there: the nested instance's time is
//! its own ([`metered`] keeps a per-thread stack of open stretches).
//!
//! Reading a thread's CPU clock is a system call (it has no vDSO fast path;
//! about a microsecond on a VM), so it is read only where it changes what is
//! charged. A stretch that ends within [`SHORT_STRETCH`] of wall time is
//! charged its wall time, which is never less than its CPU time and at most
//! that much more (only if its thread was preempted inside it). A longer one
//! is charged by the CPU clock, read at its end and, for its start, reused
//! from the thread's last reading when that is at most [`REUSE_READING`]
//! old: an earlier reading is a lower bound of the clock at the start, so
//! the charge can only grow, by at most that much host work. A trivial task
//! reads the clock about once every few tasks; reading it at every
//! guest↔host crossing took sixteen reads per task.
//!
//! The epoch ticker (a wall-clock tick) makes a running guest check in at
//! least every tick, so a guest past its limit is stopped at the first tick
//! (or host call) after it used its CPU time: on a busy host that tick comes
//! later in wall time, never earlier in CPU time.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sandbox::thread_clock::ThreadCpu;

/// A stretch at most this long in wall time is charged its wall time.
pub const SHORT_STRETCH: Duration = Duration::from_micros(50);
/// A CPU clock reading at most this old stands for the start of a stretch.
pub const REUSE_READING: Duration = Duration::from_micros(50);

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

/// The CPU meter of one instance; clones share it (the store holds one,
/// each [`metered`] call another).
#[derive(Clone, Debug)]
pub struct CpuMeter(Arc<Mutex<Meter>>);

#[derive(Debug)]
struct Meter {
    limit: Option<Duration>,
    run: Arc<RunCpu>,
    used: Duration,
    // Where the open stretch started, if guest code is running now.
    open: Option<Start>,
    exceeded: Option<CpuExceeded>,
}

/// The start of a stretch of guest code: the wall clock, and a reading of
/// its thread's CPU clock taken then or at most [`REUSE_READING`] before.
#[derive(Clone, Copy, Debug)]
struct Start {
    cpu: ThreadCpu,
    wall: Instant,
}

thread_local! {
    // This thread's last CPU clock reading, and the wall time just after it.
    static LAST_READING: Cell<Option<(Instant, ThreadCpu)>> = const { Cell::new(None) };
}

/// Reads this thread's CPU clock, and remembers the reading.
fn read_cpu() -> ThreadCpu {
    let cpu = ThreadCpu::now();
    LAST_READING.set(Some((Instant::now(), cpu)));
    cpu
}

impl Start {
    fn at(wall: Instant) -> Self {
        let cpu = match LAST_READING.get() {
            Some((read, cpu)) if wall.saturating_duration_since(read) <= REUSE_READING => cpu,
            _ => read_cpu(),
        };
        Self { cpu, wall }
    }

    /// Time used by the stretch that began at `self` and ends at `end`: its
    /// wall time when short, else its thread's CPU time. Both ends are in one
    /// poll, so on one thread; if that ever failed, the stretch is charged by
    /// the wall clock rather than left uncounted.
    fn spent(&self, end: Instant) -> Duration {
        let wall = end.saturating_duration_since(self.wall);
        if wall <= SHORT_STRETCH {
            return wall;
        }
        read_cpu().since(&self.cpu).unwrap_or(wall)
    }
}

impl Meter {
    fn charge(&mut self, spent: Duration) {
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
    }

    /// Ends the open stretch at `now`.
    fn close(&mut self, now: Instant) {
        if let Some(start) = self.open.take() {
            self.charge(start.spent(now));
        }
    }
}

thread_local! {
    // The meters whose stretches are open on this thread, innermost last:
    // only the innermost one is running guest code.
    static OPEN_STRETCHES: RefCell<Vec<CpuMeter>> = const { RefCell::new(Vec::new()) };
}

impl CpuMeter {
    /// A meter charging to `limit` (this instance's) and to `run`.
    pub fn new(limit: Option<Duration>, run: Arc<RunCpu>) -> Self {
        Self(Arc::new(Mutex::new(Meter { limit, run, used: Duration::ZERO, open: None, exceeded: None })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Meter> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// At an epoch tick, inside guest code: charges the open stretch up to
    /// now and goes on from here; an error names the limit it ran past (and
    /// is remembered, see [`CpuMeter::exceeded`]).
    pub fn charge_tick(&self) -> Result<(), CpuExceeded> {
        let now = Instant::now();
        let mut meter = self.lock();
        // Guest code outside any metered call (none is known) is charged from its first tick on.
        meter.close(now);
        meter.open = Some(Start::at(now));
        meter.exceeded.map_or(Ok(()), Err)
    }

    /// The limit this instance ran past, if any.
    pub fn exceeded(&self) -> Option<CpuExceeded> {
        self.lock().exceeded
    }

    /// CPU time this instance used (charged at the end of its last stretch).
    pub fn used(&self) -> Duration {
        self.lock().used
    }

    fn open_at(&self, now: Instant) {
        self.lock().open = Some(Start::at(now));
    }

    fn close_at(&self, now: Instant) {
        self.lock().close(now);
    }
}

/// Drives `call` (a call into this meter's instance) charging each of its
/// polls to the meter; a poll that reaches another metered call on the spot
/// stops this one's stretch for as long as the other runs. The call is taken
/// pinned where the caller holds it, so its kilobytes are not held twice.
pub async fn metered<F: Future>(meter: &CpuMeter, mut call: std::pin::Pin<&mut F>) -> F::Output {
    std::future::poll_fn(|context| {
        let _stretch = Stretch::open(meter);
        call.as_mut().poll(context)
    })
    .await
}

/// One poll's stretch; it ends when dropped, even by a panic.
struct Stretch<'a>(&'a CpuMeter);

impl<'a> Stretch<'a> {
    fn open(meter: &'a CpuMeter) -> Self {
        let now = Instant::now();
        OPEN_STRETCHES.with_borrow_mut(|open| {
            if let Some(outer) = open.last() {
                outer.close_at(now);
            }
            open.push(meter.clone());
        });
        meter.open_at(now);
        Self(meter)
    }
}

impl Drop for Stretch<'_> {
    fn drop(&mut self) {
        let now = Instant::now();
        self.0.close_at(now);
        OPEN_STRETCHES.with_borrow_mut(|open| {
            open.pop();
            if let Some(outer) = open.last() {
                outer.open_at(now);
            }
        });
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

    /// [`metered`] with the call pinned here.
    async fn metered_call<F: Future>(meter: &CpuMeter, call: F) -> F::Output {
        metered(meter, std::pin::pin!(call)).await
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(future)
    }

    #[test]
    fn cpu_used_in_a_poll_counts_and_waiting_between_polls_does_not() {
        let run = RunCpu::new(None);
        let meter = CpuMeter::new(None, run.clone());
        let outer = ThreadCpu::now();
        block_on(metered_call(&meter, async {
            spin_cpu(Duration::from_millis(20));
            // Pending: the stretch ends, and the 50 ms of waiting are nobody's.
            tokio::time::sleep(Duration::from_millis(50)).await;
            spin_cpu(Duration::from_millis(5));
        }));
        let around = ThreadCpu::now().since(&outer).unwrap();
        let charged = meter.used();
        assert!(charged >= Duration::from_millis(25) && charged <= around, "charged {charged:?}, used {around:?}");
        assert_eq!(run.used(), charged);
        assert_eq!(meter.exceeded(), None);
    }

    #[test]
    fn a_stretch_is_charged_the_cpu_its_thread_used_not_the_time_it_was_off_the_processor() {
        // A thread that is off the processor inside a stretch (here asleep,
        // as when the OS runs other processes) uses no CPU: charging the
        // wall clock, as this meter once did, would charge 100 ms.
        let meter = CpuMeter::new(Some(Duration::from_millis(100)), RunCpu::new(None));
        let outer = ThreadCpu::now();
        block_on(metered_call(&meter, async { std::thread::sleep(Duration::from_millis(100)) }));
        let around = ThreadCpu::now().since(&outer).unwrap();
        assert!(meter.used() <= around, "charged {:?}, but the thread used {around:?}", meter.used());
        assert!(meter.used() < Duration::from_millis(100), "charged {:?} for 100 ms asleep", meter.used());
        assert_eq!(meter.exceeded(), None);
    }

    #[test]
    fn short_stretches_are_charged_at_least_what_they_ran() {
        // Charged by the wall clock, without reading the CPU clock: never less
        // than the time spent in them, and at most SHORT_STRETCH more each.
        let meter = CpuMeter::new(None, RunCpu::new(None));
        let ran = block_on(async {
            let mut ran = Duration::ZERO;
            for _ in 0..500 {
                ran += metered_call(&meter, async {
                    let start = Instant::now();
                    while start.elapsed() < Duration::from_micros(20) {
                        std::hint::spin_loop();
                    }
                    start.elapsed()
                })
                .await;
            }
            ran
        });
        assert!(meter.used() >= ran, "charged {:?} for {ran:?} of short stretches", meter.used());
        assert!(meter.used() <= ran + 500 * SHORT_STRETCH, "charged {:?} for {ran:?}", meter.used());
    }

    #[test]
    fn a_call_nested_on_the_spot_is_charged_to_its_own_meter_only() {
        let run = RunCpu::new(None);
        let (flow, task) = (CpuMeter::new(None, run.clone()), CpuMeter::new(None, run.clone()));
        block_on(metered_call(&flow, async {
            spin_cpu(Duration::from_millis(5));
            metered_call(&task, async { spin_cpu(Duration::from_millis(30)) }).await;
            spin_cpu(Duration::from_millis(5));
        }));
        assert!(task.used() >= Duration::from_millis(30), "task charged {:?}", task.used());
        assert!(
            flow.used() >= Duration::from_millis(10) && flow.used() < Duration::from_millis(30),
            "the flow was charged {:?}: its task's 30 ms were counted twice",
            flow.used()
        );
        assert_eq!(run.used(), flow.used() + task.used());
    }

    #[test]
    fn the_instance_limit_and_the_run_limit_are_named() {
        let run = RunCpu::new(Some(Duration::from_millis(30)));
        let first = CpuMeter::new(Some(Duration::from_millis(10)), run.clone());
        block_on(metered_call(&first, async { spin_cpu(Duration::from_millis(12)) }));
        assert_eq!(first.exceeded(), Some(CpuExceeded::Instance(Duration::from_millis(10))));
        let second = CpuMeter::new(None, run.clone());
        block_on(metered_call(&second, async {
            spin_cpu(Duration::from_millis(20));
            // An epoch tick inside guest code sees the run's limit at once.
            assert_eq!(second.charge_tick(), Err(CpuExceeded::Run(Duration::from_millis(30))));
        }));
        assert!(run.exhausted());
        assert_eq!(
            CpuExceeded::Instance(Duration::from_millis(250)).message("task `spin`"),
            "task `spin` exceeded its CPU limit of 250 ms per task attempt"
        );
    }

    #[test]
    fn a_tick_outside_any_metered_call_starts_charging_from_there() {
        let meter = CpuMeter::new(None, RunCpu::new(None));
        assert_eq!(meter.charge_tick(), Ok(()));
        spin_cpu(Duration::from_millis(5));
        assert_eq!(meter.charge_tick(), Ok(()));
        assert!(meter.used() >= Duration::from_millis(5), "{:?}", meter.used());
    }
}
