//! Replay from the journal beside a fresh run, on the store users run on
//! (SQLite in a temp folder, or the database `SLUICE_DATABASE_URL` names):
//! the `sequential` flow of `bench_flow.wasm` with N trivial tasks runs
//! fresh (every state committed), then again as attempt 2 of the same run,
//! which replays all N calls from the journal without starting an instance.
//! Per task: the fresh run, loading the journal, and the replayed run (its
//! one flow instance counted, amortised over N; target ≤ 5 µs per task).
//!
//! Then what observability costs the fresh per-task figure: the same flow
//! with an in-memory recorder (no store, so less noise), alternately with
//! tracing off and on (every task attempt and the flow run a span, exported
//! by OTLP/HTTP to a receiver in this process that discards them; target
//! ≤ 5 µs per task), then a task attempt's span and the metric updates one
//! task attempt makes, each timed alone (less noisy on a shared machine;
//! metrics are always on).
//!
//! `cargo bench -p sluice --bench replay [-- --tasks 10000 --reps 5 | --quick]`

use serde_json::json;
use sluice::core::ids::RunId;
use sluice::core::journal::Journal;
use sluice::runner::{MemoryCache, MemoryRecorder, RunSettings, Runner};
use sluice::sandbox::compile_cache::CompileCache;
use sluice::sandbox::engine::EngineSettings;
use sluice::sandbox::program::{Program, Sandbox};
use sluice::store::Backend;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn component(name: &str) -> Vec<u8> {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(Into::into).unwrap_or_else(|| repo.join("target"));
    let path = target.join(format!("wasm32-wasip2/guest/{name}.wasm"));
    assert!(path.exists(), "build the guests first: make guests ({} is missing)", path.display());
    std::fs::read(path).unwrap()
}

fn argument(name: &str, default: u32) -> u32 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One repetition: (fresh, journal load, replay), each for the whole run.
async fn repetition(program: &Arc<Program>, store: &Arc<dyn Backend>, tasks: u32) -> (Duration, Duration, Duration) {
    let id = RunId::new();
    let parameters = json!({ "count": tasks });
    let fresh = Runner::new(program.clone(), store.clone(), store.clone(), RunSettings::default());
    let start = Instant::now();
    let outcome = fresh.run(id, "bench".into(), "sequential", &parameters).await;
    store.flush().await;
    let fresh_time = start.elapsed();
    assert!(outcome.state.is_success(), "{outcome:?}");

    let start = Instant::now();
    let journal = Journal::from_rows(store.journal(&id.to_string()).unwrap());
    let load_time = start.elapsed();
    assert_eq!(journal.replayable(), tasks as usize, "every call is in the journal");

    let settings = RunSettings { attempt: 2, journal: Arc::new(journal), ..RunSettings::default() };
    let again = Runner::new(program.clone(), store.clone(), store.clone(), settings);
    let start = Instant::now();
    let outcome = again.run(id, "bench".into(), "sequential", &parameters).await;
    store.flush().await;
    let replay_time = start.elapsed();
    assert!(outcome.state.is_success(), "{outcome:?}");
    let task_runs = store.task_runs(&id.to_string()).unwrap().len();
    assert_eq!(task_runs, tasks as usize, "a replay creates no task run");
    (fresh_time, load_time, replay_time)
}

/// One fresh run of `tasks` tasks recording to memory, for the observability comparison.
async fn in_memory(program: &Arc<Program>, tasks: u32) -> Duration {
    let recorder = Arc::new(MemoryRecorder::default());
    let runner = Runner::new(program.clone(), recorder, Arc::new(MemoryCache::default()), RunSettings::default());
    let start = Instant::now();
    let outcome = runner.run(RunId::new(), "bench".into(), "sequential", &json!({ "count": tasks })).await;
    let elapsed = start.elapsed();
    assert!(outcome.state.is_success(), "{outcome:?}");
    elapsed
}

/// An OTLP/HTTP receiver that accepts and discards spans; returns its URL and how many exports it got.
async fn span_sink() -> (String, Arc<std::sync::atomic::AtomicU64>) {
    let exports = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = exports.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let counted = counted.clone();
            async move {
                assert!(!body.is_empty());
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, exports)
}

/// Per task: (tracing off, tracing on with export) of fresh in-memory runs, medians of alternating reps.
async fn tracing_cost(program: &Arc<Program>, tasks: u32, reps: u32) -> (f64, f64, u64) {
    let (url, exports) = span_sink().await;
    sluice::observe::traces::start_exporting_to("sluice-bench", &url).unwrap();
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        sluice::observe::traces::set_enabled(false);
        off.push(in_memory(program, tasks).await);
        sluice::observe::traces::set_enabled(true);
        on.push(in_memory(program, tasks).await);
    }
    sluice::observe::traces::set_enabled(false);
    tokio::task::spawn_blocking(sluice::observe::traces::flush).await.unwrap();
    let per_task = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(tasks);
    (per_task(median(off)), per_task(median(on)), exports.load(std::sync::atomic::Ordering::Relaxed))
}

/// What tracing adds to one task attempt, timed alone with export on: its
/// span started under its flow run's and ended, with the attributes the runner
/// sets, handed to the batch exporter. In ns.
fn span_cost() -> f64 {
    use sluice::observe::traces::{RunSpan, attribute};
    sluice::observe::traces::set_enabled(true);
    let parent = RunSpan::start("flow bench".into(), None, Vec::new()).unwrap();
    let parent_context = parent.context();
    let rounds = 20_000;
    let start = Instant::now();
    for attempt in 0..rounds {
        let attributes = vec![
            attribute("sluice.run.id", RunId::new().to_string()),
            attribute("sluice.run.name", "task-0"),
            attribute("sluice.task", "noop"),
            attribute("sluice.run.kind", "task"),
            attribute("sluice.flow_run.id", "0193d1a8-0000-7000-8000-000000000000"),
            attribute("sluice.attempt", i64::from(attempt)),
        ];
        let span = RunSpan::start("task noop".into(), Some(&parent_context), attributes).unwrap();
        span.end(sluice::core::state::StateType::Completed, None);
    }
    let elapsed = start.elapsed();
    parent.end(sluice::core::state::StateType::Completed, None);
    sluice::observe::traces::set_enabled(false);
    elapsed.as_secs_f64() * 1e9 / f64::from(rounds)
}

/// The metric updates of one task attempt (duration, outcome, instance gauge), in ns.
fn metrics_cost() -> f64 {
    let metrics = sluice::observe::metrics();
    let rounds = 1_000_000;
    let start = Instant::now();
    for i in 0..rounds {
        let alive = sluice::observe::metrics::InstanceAlive::new();
        metrics.task_attempt_duration.observe(f64::from(i % 1000) * 1e-6);
        metrics.task_attempts_completed.inc();
        drop(std::hint::black_box(alive));
    }
    start.elapsed().as_secs_f64() * 1e9 / f64::from(rounds)
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let tasks = if quick { 100 } else { argument("--tasks", 10_000) };
    let reps = if quick { 1 } else { argument("--reps", 5) };
    let sandbox = Sandbox::new(&EngineSettings::default(), CompileCache::disabled()).unwrap();
    let program = Arc::new(sandbox.load(&component("bench_flow")).await.unwrap());
    let db = tempfile::tempdir().unwrap();
    let store = sluice::store::open(db.path()).unwrap();
    repetition(&program, &store, 10).await; // warms the instance pool and the store
    let (mut fresh, mut load, mut replay) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        let (f, l, r) = repetition(&program, &store, tasks).await;
        fresh.push(f);
        load.push(l);
        replay.push(r);
    }
    let per_task = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(tasks);
    let (fresh, load, replay) = (median(fresh), median(load), median(replay));
    println!("store: {}", store.location());
    println!("{tasks} sequential tasks, median of {reps}:");
    println!("  fresh run, every state committed   {:>9.1} µs per task", per_task(fresh));
    println!("  loading the journal                {:>9.1} µs per task", per_task(load));
    println!("  replayed run (target ≤ 5 µs)        {:>9.1} µs per task", per_task(replay));
    let (traces_off, traces_on, exports) = tracing_cost(&program, tasks, reps.max(3)).await;
    let metrics_ns = metrics_cost();
    let span_ns = tokio::task::spawn_blocking(span_cost).await.unwrap();
    println!("observability, fresh runs recorded in memory, {tasks} tasks, median of {} alternating:", reps.max(3));
    println!("  tracing off                        {traces_off:>9.1} µs per task");
    println!("  tracing on, exported by OTLP       {traces_on:>9.1} µs per task ({exports} exports)");
    println!("  tracing's cost (target ≤ 5 µs)     {:>9.1} µs per task", traces_on - traces_off);
    println!("  a task attempt's span, timed alone {span_ns:>9.0} ns (tracing on, exported)");
    println!("  metric updates of a task attempt   {metrics_ns:>9.0} ns (always on)");
    println!(
        "{}",
        json!({
            "tasks": tasks,
            "fresh_us_per_task": per_task(fresh),
            "journal_load_us_per_task": per_task(load),
            "replay_us_per_task": per_task(replay),
            "tracing_off_us_per_task": traces_off,
            "tracing_on_us_per_task": traces_on,
            "metrics_ns_per_task_attempt": metrics_ns,
            "span_ns_per_task_attempt": span_ns,
        })
    );
}
