//! Every metric Sluice exports, registered once per process in one
//! [`prometheus::Registry`] and encoded by the `prometheus` crate's text
//! encoder. Metrics on the hot path (one per task attempt, per instance, per
//! commit) have no labels, or labels resolved once here, so recording one is
//! an atomic add and never takes a lock. Labelled families keyed by user
//! names (tenants, deployments) are only touched off the hot path, by the
//! run-event counter (`run_events.rs`), with capped label sets (`labels.rs`).

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::sync::LazyLock;

/// Buckets of durations from 100 µs to 5 min, in seconds.
const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0,
];
/// Buckets of short latencies (commits, HTTP answers), from 50 µs to 10 s.
const LATENCY_BUCKETS: &[f64] =
    &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
/// Buckets of writes per commit.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0];

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    /// Flow runs created (not subflow runs), by tenant and deployment.
    pub runs_created: IntCounterVec,
    /// Flow runs that started running (each attempt), by tenant and deployment.
    pub runs_started: IntCounterVec,
    /// Flow runs that ended, by tenant, deployment and final state.
    pub runs_ended: IntCounterVec,
    /// Subflow runs created.
    pub subflow_runs_created: IntCounter,
    /// From when a run was due to when it started, in seconds.
    pub dispatch_lag: Histogram,
    /// From when a run started to when it ended, in seconds.
    pub run_duration: Histogram,
    /// Committed run events the run-event counter could not read (it fell behind).
    pub events_missed: IntCounter,
    /// Task attempts that completed.
    pub task_attempts_completed: IntCounter,
    /// Task attempts that failed (retried or not).
    pub task_attempts_failed: IntCounter,
    /// Task attempts scheduled again after a retryable failure.
    pub task_retries: IntCounter,
    /// How long task attempts took, in seconds.
    pub task_attempt_duration: Histogram,
    /// Runs due and waiting for a worker, by tenant, pool and queue (read when scraped).
    pub queue_depth: IntGaugeVec,
    /// Runs this process's workers are executing.
    pub worker_slots_busy: IntGauge,
    /// Runs this process's workers may execute at once.
    pub worker_slots: IntGauge,
    /// Wasm instances alive in this process (flows, subflows, tasks).
    pub instances_alive: IntGauge,
    /// Component instance slots of the pooling allocator (0: no pool, instances allocated on demand).
    pub pool_slots: IntGauge,
    /// Component instances allocated from the pool.
    pub pool_component_instances: IntGauge,
    /// Linear memories allocated from the pool.
    pub pool_memories: IntGauge,
    /// Fiber stacks allocated from the pool.
    pub pool_stacks: IntGauge,
    /// Bytes of unused memory slots kept paged in for reuse.
    pub pool_bytes_kept_resident: IntGauge,
    /// Components loaded from the on-disk compile cache.
    pub compile_cache_hits: IntCounter,
    /// Components compiled (not in the cache).
    pub compile_cache_misses: IntCounter,
    /// Commit latency of SQLite's group commits (retries included), in seconds.
    pub sqlite_commit_seconds: Histogram,
    /// Writes per SQLite group commit.
    pub sqlite_commit_writes: Histogram,
    /// Commit latency of PostgreSQL's group commits (retries included), in seconds.
    pub postgres_commit_seconds: Histogram,
    /// Writes per PostgreSQL group commit.
    pub postgres_commit_writes: Histogram,
    /// HTTP requests answered, by route template, method and status.
    pub http_requests: IntCounterVec,
    /// HTTP answer latency, by route template and method, in seconds.
    pub http_request_seconds: HistogramVec,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// This process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let metric = IntCounter::new(name, help).expect("a valid metric");
    registry.register(Box::new(metric.clone())).expect("registered once");
    metric
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric");
    registry.register(Box::new(metric.clone())).expect("registered once");
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).expect("a valid metric");
    registry.register(Box::new(metric.clone())).expect("registered once");
    metric
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let metric =
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec())).expect("a valid metric");
    registry.register(Box::new(metric.clone())).expect("registered once");
    metric
}

fn histogram_vec(registry: &Registry, name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    let metric = HistogramVec::new(opts, labels).expect("a valid metric");
    registry.register(Box::new(metric.clone())).expect("registered once");
    metric
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::new();
        let attempts =
            counter_vec(&r, "sluice_task_attempts_total", "Task attempts that ended, by outcome.", &["outcome"]);
        let compile = counter_vec(
            &r,
            "sluice_compile_cache_lookups_total",
            "Components looked up in the on-disk compile cache, by result (hit: loaded, miss: compiled).",
            &["result"],
        );
        let queue_depth = IntGaugeVec::new(
            Opts::new("sluice_queue_depth", "Flow runs due and waiting for a worker, by tenant, pool and queue."),
            &["tenant", "pool", "queue"],
        )
        .expect("a valid metric");
        r.register(Box::new(queue_depth.clone())).expect("registered once");
        let commit_seconds = histogram_vec(
            &r,
            "sluice_store_commit_seconds",
            "Latency of the state store's group commits (retries included), by backend.",
            &["backend"],
            LATENCY_BUCKETS,
        );
        let commit_writes = histogram_vec(
            &r,
            "sluice_store_commit_writes",
            "Writes committed per group commit, by backend.",
            &["backend"],
            BATCH_BUCKETS,
        );
        Metrics {
            runs_created: counter_vec(
                &r,
                "sluice_flow_runs_created_total",
                "Flow runs created (subflow runs not included), by tenant and deployment.",
                &["tenant", "deployment"],
            ),
            runs_started: counter_vec(
                &r,
                "sluice_flow_runs_started_total",
                "Flow run attempts that started running, by tenant and deployment.",
                &["tenant", "deployment"],
            ),
            runs_ended: counter_vec(
                &r,
                "sluice_flow_runs_ended_total",
                "Flow runs that reached a terminal state, by tenant, deployment and state.",
                &["tenant", "deployment", "state"],
            ),
            subflow_runs_created: counter(&r, "sluice_subflow_runs_created_total", "Subflow runs created."),
            dispatch_lag: histogram(
                &r,
                "sluice_flow_run_dispatch_lag_seconds",
                "Time from when a flow run was due to when it started running.",
                DURATION_BUCKETS,
            ),
            run_duration: histogram(
                &r,
                "sluice_flow_run_duration_seconds",
                "Time from when a flow run attempt started to when it ended.",
                DURATION_BUCKETS,
            ),
            events_missed: counter(
                &r,
                "sluice_metrics_events_missed_total",
                "Committed run events the run counters fell too far behind to read (the run counts undercount by this).",
            ),
            task_attempts_completed: attempts.with_label_values(&["completed"]),
            task_attempts_failed: attempts.with_label_values(&["failed"]),
            task_retries: counter(
                &r,
                "sluice_task_retries_total",
                "Task attempts scheduled again after a retryable failure.",
            ),
            task_attempt_duration: histogram(
                &r,
                "sluice_task_attempt_duration_seconds",
                "How long task attempts took, instantiation included.",
                DURATION_BUCKETS,
            ),
            queue_depth,
            worker_slots_busy: gauge(&r, "sluice_worker_slots_busy", "Flow runs this process's workers are executing."),
            worker_slots: gauge(&r, "sluice_worker_slots", "Flow runs this process's workers may execute at once."),
            instances_alive: gauge(&r, "sluice_instances_alive", "Wasm instances alive in this process."),
            pool_slots: gauge(
                &r,
                "sluice_pool_slots",
                "Component instance slots of the pooling allocator (0: no pool).",
            ),
            pool_component_instances: gauge(
                &r,
                "sluice_pool_component_instances",
                "Component instances allocated from the pooling allocator.",
            ),
            pool_memories: gauge(&r, "sluice_pool_memories", "Linear memories allocated from the pooling allocator."),
            pool_stacks: gauge(&r, "sluice_pool_stacks", "Fiber stacks allocated from the pooling allocator."),
            pool_bytes_kept_resident: gauge(
                &r,
                "sluice_pool_memory_bytes_kept_resident",
                "Bytes of unused memory slots kept paged in for reuse.",
            ),
            compile_cache_hits: compile.with_label_values(&["hit"]),
            compile_cache_misses: compile.with_label_values(&["miss"]),
            sqlite_commit_seconds: commit_seconds.with_label_values(&["sqlite"]),
            sqlite_commit_writes: commit_writes.with_label_values(&["sqlite"]),
            postgres_commit_seconds: commit_seconds.with_label_values(&["postgres"]),
            postgres_commit_writes: commit_writes.with_label_values(&["postgres"]),
            http_requests: counter_vec(
                &r,
                "sluice_http_requests_total",
                "HTTP requests answered, by route template, method and status.",
                &["route", "method", "status"],
            ),
            http_request_seconds: histogram_vec(
                &r,
                "sluice_http_request_duration_seconds",
                "Time to answer HTTP requests (to the response's head), by route template and method.",
                &["route", "method"],
                LATENCY_BUCKETS,
            ),
            registry: r,
        }
    }

    /// Every metric in Prometheus's text exposition format.
    pub fn encode(&self) -> String {
        TextEncoder::new().encode_to_string(&self.registry.gather()).unwrap_or_else(|err| format!("# {err}\n"))
    }
}

/// Counts one live instance until dropped.
pub struct InstanceAlive(());

impl InstanceAlive {
    /// One more instance alive.
    pub fn new() -> Self {
        metrics().instances_alive.inc();
        Self(())
    }
}

impl Default for InstanceAlive {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for InstanceAlive {
    fn drop(&mut self) {
        metrics().instances_alive.dec();
    }
}

/// Counts one busy worker slot until dropped.
pub struct SlotBusy(());

impl SlotBusy {
    /// One more slot busy.
    pub fn new() -> Self {
        metrics().worker_slots_busy.inc();
        Self(())
    }
}

impl Default for SlotBusy {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SlotBusy {
    fn drop(&mut self) {
        metrics().worker_slots_busy.dec();
    }
}
