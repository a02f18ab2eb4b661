//! What a flow's own instance reads as time and randomness, so that a
//! replayed flow sees exactly what its first attempt saw.
//!
//! A flow instance's clock does not run by itself: it starts at the flow
//! run's creation and moves only when a call's outcome reaches the flow (a
//! task or subflow returned, a `wait` collected), to the time the store
//! recorded for that outcome. Replay hands back the same outcomes with the
//! same recorded times, so flow code reads the same clock on every attempt.
//! Its randomness is seeded from the flow run's id. Task instances keep the
//! real clock and real randomness: tasks are where non-determinism belongs.

use chrono::{DateTime, Utc};
use rand_seeded::SeedableRng as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// The clock of one flow run's instance.
#[derive(Debug)]
pub struct FlowClock {
    start_micros: i64,
    now_micros: AtomicI64,
}

impl FlowClock {
    /// A clock that reads `start` until an outcome moves it.
    pub fn starting_at(start: DateTime<Utc>) -> Arc<Self> {
        let micros = start.timestamp_micros();
        Arc::new(Self { start_micros: micros, now_micros: AtomicI64::new(micros) })
    }

    /// Moves the clock to `at` (never backwards): an outcome recorded at `at` reached the flow.
    pub fn advance(&self, at: DateTime<Utc>) {
        self.now_micros.fetch_max(at.timestamp_micros(), Ordering::Relaxed);
    }

    /// What the flow reads now.
    pub fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.now_micros.load(Ordering::Relaxed)).unwrap_or_default()
    }
}

/// What makes a flow instance deterministic: its clock and its random seed.
#[derive(Clone, Debug)]
pub struct FlowDeterminism {
    /// The flow run's clock.
    pub clock: Arc<FlowClock>,
    /// The seed of its random numbers (from the flow run's id).
    pub seed: u64,
}

impl FlowDeterminism {
    /// Sets the WASI clocks and random sources of `builder` to this flow's.
    pub fn apply(&self, builder: &mut wasmtime_wasi::WasiCtxBuilder) {
        builder
            .wall_clock(Wall(self.clock.clone()))
            .monotonic_clock(Monotonic(self.clock.clone()))
            .secure_random(rand_seeded::rngs::StdRng::seed_from_u64(self.seed))
            .insecure_random(rand_seeded::rngs::StdRng::seed_from_u64(self.seed.rotate_left(17)))
            .insecure_random_seed(u128::from(self.seed) << 64 | u128::from(self.seed.rotate_left(31)));
    }
}

struct Wall(Arc<FlowClock>);

impl HostWallClock for Wall {
    fn resolution(&self) -> Duration {
        Duration::from_micros(1)
    }

    fn now(&self) -> Duration {
        Duration::from_micros(self.0.now_micros.load(Ordering::Relaxed).max(0) as u64)
    }
}

struct Monotonic(Arc<FlowClock>);

impl HostMonotonicClock for Monotonic {
    fn resolution(&self) -> u64 {
        1_000
    }

    fn now(&self) -> u64 {
        let elapsed = self.0.now_micros.load(Ordering::Relaxed) - self.0.start_micros;
        (elapsed.max(0) as u64).saturating_mul(1_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_moves_only_forward_and_only_when_told() {
        let start = Utc::now();
        let clock = FlowClock::starting_at(start);
        assert_eq!(clock.now().timestamp_micros(), start.timestamp_micros());
        clock.advance(start + chrono::Duration::seconds(5));
        clock.advance(start + chrono::Duration::seconds(1));
        assert_eq!(clock.now().timestamp_micros(), (start + chrono::Duration::seconds(5)).timestamp_micros());
        assert_eq!(Monotonic(clock.clone()).now(), 5_000_000_000);
    }
}
