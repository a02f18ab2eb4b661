//! Replay from the journal beside a fresh run, on the store users run on
//! (SQLite in a temp folder, or the database `SLUICE_DATABASE_URL` names):
//! the `sequential` flow of `bench_flow.wasm` with N trivial tasks runs
//! fresh (every state committed), then again as attempt 2 of the same run,
//! which replays all N calls from the journal without starting an instance.
//! Per task: the fresh run, loading the journal, and the replayed run (its
//! one flow instance counted, amortised over N; target ≤ 5 µs per task).
//!
//! `cargo bench -p sluice --bench replay [-- --tasks 10000 --reps 5 | --quick]`

use serde_json::json;
use sluice::core::ids::RunId;
use sluice::core::journal::Journal;
use sluice::runner::{RunSettings, Runner};
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
    println!(
        "{}",
        json!({
            "tasks": tasks,
            "fresh_us_per_task": per_task(fresh),
            "journal_load_us_per_task": per_task(load),
            "replay_us_per_task": per_task(replay),
        })
    );
}
