//! Per-task overhead of Sluice against raw wasmtime, on the same component
//! (`bench/guest`): a flow calling N trivial tasks sequentially (each in its
//! own instance, every state recorded in memory), the same N tasks submitted
//! at once, and the physical limit: instantiate + call of the task export
//! with no bookkeeping, with wasmtime's async support and without it.
//!
//! `cargo bench -p sluice --bench task_overhead [-- --tasks 1000 --reps 15 | --quick]`

use serde_json::json;
use sluice::core::ids::RunId;
use sluice::core::record::LogLevel;
use sluice::runner::{MemoryCache, MemoryRecorder, RunSettings, Runner};
use sluice::sandbox::bindings::RunContext;
use sluice::sandbox::compile_cache::CompileCache;
use sluice::sandbox::engine::EngineSettings;
use sluice::sandbox::instance::{Outcome, RunHost, Scope};
use sluice::sandbox::program::{Program, Sandbox};
use sluice::store::{RunFilter, SqliteStore, StateStore};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod sync_baseline;

struct Options {
    tasks: u32,
    reps: usize,
    quick: bool,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let value =
        |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(|v| v.parse().expect(flag));
    if args.iter().any(|a| a == "--quick") {
        return Options { tasks: 10, reps: 1, quick: true };
    }
    Options { tasks: value("--tasks").unwrap_or(1000) as u32, reps: value("--reps").unwrap_or(15), quick: false }
}

fn component_path() -> std::path::PathBuf {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(Into::into).unwrap_or_else(|| repo.join("target"));
    let path = target.join("wasm32-wasip2/guest/bench_flow.wasm");
    assert!(path.exists(), "build the guests first: make guests ({} is missing)", path.display());
    path
}

/// A host that records nothing: what raw instantiate + call needs.
struct NullHost;

impl RunHost for NullHost {
    fn run_task(self: Arc<Self>, _: Scope, _: String, _: String) -> Outcome {
        unreachable!("the baseline calls the task export directly")
    }
    fn run_subflow(self: Arc<Self>, _: Scope, _: String, _: String) -> Outcome {
        unreachable!("the baseline runs no subflows")
    }
    fn log(&self, _: &Scope, _: LogLevel, _: &str) {}
    fn context(&self, _: &Scope) -> RunContext {
        unreachable!("noop does not ask for its context")
    }
}

async fn sluice_flow(program: &Arc<Program>, flow: &str, tasks: u32) -> Duration {
    let recorder = Arc::new(MemoryRecorder::default());
    let runner =
        Runner::new(program.clone(), recorder.clone(), Arc::new(MemoryCache::default()), RunSettings::default());
    let start = Instant::now();
    let outcome = runner.run(RunId::new(), "bench".into(), flow, &json!({ "count": tasks })).await;
    let elapsed = start.elapsed();
    assert!(outcome.state.is_success(), "{outcome:?}");
    let recorded = recorder.events().len();
    assert!(recorded >= tasks as usize * 4, "every task's states are recorded ({recorded} events)");
    elapsed
}

/// The same flow with every transition committed to SQLite (group commit).
async fn sluice_durable(program: &Arc<Program>, store: &Arc<SqliteStore>, tasks: u32) -> Duration {
    let runner = Runner::new(program.clone(), store.clone(), store.clone(), RunSettings::default());
    let start = Instant::now();
    let outcome = runner.run(RunId::new(), "bench".into(), "sequential", &json!({ "count": tasks })).await;
    store.flush().await;
    let elapsed = start.elapsed();
    assert!(outcome.state.is_success(), "{outcome:?}");
    elapsed
}

/// Times `flow-run ls` and `inspect` queries on a store holding many task runs.
fn history_queries(store: &SqliteStore, reps: usize) -> (f64, f64) {
    let mut ls = Vec::new();
    let mut inspect = Vec::new();
    for _ in 0..reps.max(5) {
        let start = Instant::now();
        let runs = store.flow_runs(&RunFilter { limit: 20, ..RunFilter::default() }).unwrap();
        ls.push(start.elapsed().as_secs_f64() * 1e3);
        let start = Instant::now();
        let run = store.flow_run(None, &runs[0].name).unwrap().unwrap();
        let _ = store.states(&run.id).unwrap();
        for task in store.task_runs(&run.id).unwrap() {
            let _ = store.states(&task.id).unwrap();
        }
        let _ = store.logs(&run.id, None).unwrap();
        inspect.push(start.elapsed().as_secs_f64() * 1e3);
    }
    (stats(&mut ls).0, stats(&mut inspect).0)
}

async fn raw_async(program: &Program, tasks: u32) -> Duration {
    let host: Arc<dyn RunHost> = Arc::new(NullHost);
    let start = Instant::now();
    for i in 0..tasks {
        let scope = Scope { flow_run: RunId::new(), task_run: None, attempt: 1 };
        let mut live = program.instantiate(host.clone(), scope).await.expect("instantiate");
        let out = live.flow.call_run_task(&mut live.store, "noop", &format!("{{\"i\":{i}}}")).await.expect("call");
        assert_eq!(out.ok().as_deref(), Some(i.to_string().as_str()));
    }
    start.elapsed()
}

fn stats(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.9))
}

fn main() {
    let Options { tasks, reps, quick } = options();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let bytes = std::fs::read(component_path()).unwrap();
    let sandbox = Sandbox::new(&EngineSettings::default(), CompileCache::disabled()).unwrap();
    let program = Arc::new(runtime.block_on(sandbox.load(&bytes)).expect("the bench component loads"));
    let sync = sync_baseline::Baseline::new(sandbox.engine(), &bytes);

    let db_dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&db_dir.path().join("bench.db")).unwrap());
    let names = [
        "sluice sequential, in memory",
        "sluice sequential, SQLite",
        "sluice parallel (submit all)",
        "raw wasmtime async",
        "raw wasmtime sync",
    ];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    // Warm up the pool's slots and the allocator once before counting.
    runtime.block_on(sluice_flow(&program, "sequential", tasks.min(100)));
    for _ in 0..reps {
        // Interleaved, so drift in the machine's speed hits every workload alike.
        let per_task = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(tasks);
        samples[0].push(per_task(runtime.block_on(sluice_flow(&program, "sequential", tasks))));
        samples[1].push(per_task(runtime.block_on(sluice_durable(&program, &store, tasks))));
        samples[2].push(per_task(runtime.block_on(sluice_flow(&program, "parallel", tasks))));
        samples[3].push(per_task(runtime.block_on(raw_async(&program, tasks))));
        samples[4].push(per_task(sync.run(tasks)));
    }
    let (raw_median, _) = stats(&mut samples[3].clone());
    println!(
        "per-task cost, {tasks} trivial tasks, {reps} repetitions, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("{:<30} {:>12} {:>12} {:>14}", "workload", "median µs", "p90 µs", "÷ raw async");
    for (name, samples) in names.iter().zip(samples.iter_mut()) {
        let (median, p90) = stats(samples);
        println!("{name:<30} {median:>12.1} {p90:>12.1} {:>14.2}", median / raw_median);
    }

    // History queries with at least `history` task runs recorded.
    let history = if quick { 1_000 } else { 100_000 };
    while (store.flow_runs(&RunFilter { limit: usize::MAX >> 1, ..RunFilter::default() }).unwrap().len() as u64)
        * u64::from(tasks)
        < history
    {
        runtime.block_on(sluice_durable(&program, &store, tasks));
    }
    let runs = store.flow_runs(&RunFilter { limit: usize::MAX >> 1, ..RunFilter::default() }).unwrap().len();
    let (ls_ms, inspect_ms) = history_queries(&store, reps);
    println!(
        "history with {} task runs: flow-run ls (20 newest) {ls_ms:.2} ms, inspect (run + {tasks} task runs + states + logs) {inspect_ms:.2} ms",
        runs as u64 * u64::from(tasks)
    );
}
