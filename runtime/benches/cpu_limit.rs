//! How soon after its CPU limit a hostile guest is stopped: a task that
//! loops forever (`burn_forever` of `tests/guests/hostile-io`, no timeout of
//! its own) run with task CPU limits from 10 ms to 1 s, and a flow that loops
//! forever (`spin_flow` of `tests/guests/hostile`) under a flow-run CPU limit.
//! The figure is the CPU time the process used while the run went from
//! start to `TimedOut` (the guest's own CPU and the runtime's around it),
//! divided by the limit (target: at most 2). The wall time from the run's
//! `Running` state to its `TimedOut` state is shown beside it: it equals the
//! CPU time on an idle machine and grows with the load of the machine,
//! because the limit counts CPU time, not wall time.
//!
//! `cargo bench -p sluice --bench cpu_limit [-- --reps 10 | --quick]`

use chrono::{DateTime, Utc};
use serde_json::json;
use sluice::core::ids::RunId;
use sluice::core::record::{Event, RunKind};
use sluice::core::state::StateType;
use sluice::runner::{MemoryCache, MemoryRecorder, RunSettings, Runner};
use sluice::sandbox::compile_cache::CompileCache;
use sluice::sandbox::engine::EngineSettings;
use sluice::sandbox::program::{Program, Sandbox};
use std::sync::Arc;
use std::time::Duration;

fn component(name: &str) -> Vec<u8> {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(Into::into).unwrap_or_else(|| repo.join("target"));
    let path = target.join(format!("wasm32-wasip2/guest/{name}.wasm"));
    assert!(path.exists(), "build the guests first: make guests ({} is missing)", path.display());
    std::fs::read(path).unwrap()
}

/// Time from the first `Running` to the first `TimedOut` of runs of `kind`.
fn running_to_stopped(events: &[Event], kind: RunKind) -> Duration {
    let time = |wanted: StateType| -> DateTime<Utc> {
        events
            .iter()
            .find_map(|e| match e {
                Event::State(s) if s.kind == kind && s.state == wanted => Some(s.time),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no {wanted:?} state of a {kind:?} run"))
    };
    (time(StateType::TimedOut) - time(StateType::Running)).to_std().unwrap_or_default()
}

/// CPU time this process has used so far, all its threads together.
fn process_cpu() -> Duration {
    cpu_time::ProcessTime::now().as_duration()
}

async fn stop_time(program: &Arc<Program>, flow: &str, settings: RunSettings, kind: RunKind) -> Duration {
    let recorder = Arc::new(MemoryRecorder::default());
    let runner = Runner::new(program.clone(), recorder.clone(), Arc::new(MemoryCache::default()), settings);
    let outcome = runner.run(RunId::new(), "bench".into(), flow, &json!({})).await;
    assert_ne!(outcome.state, StateType::Completed, "{outcome:?}");
    running_to_stopped(&recorder.events(), kind)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let reps: usize = match args.iter().position(|a| a == "--reps") {
        Some(i) => args[i + 1].parse().expect("--reps N"),
        None if quick => 1,
        None => 10,
    };
    let limits_ms: &[u64] = if quick { &[50] } else { &[10, 50, 100, 250, 500, 1000] };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let sandbox = Sandbox::new(&EngineSettings::default(), CompileCache::disabled()).unwrap();
    let io = Arc::new(runtime.block_on(sandbox.load(&component("hostile_io_flow"))).expect("hostile-io loads"));
    let hostile = Arc::new(runtime.block_on(sandbox.load(&component("hostile_flow"))).expect("hostile loads"));

    println!("CPU limit enforcement, {reps} repetitions each, epoch tick {:?}", EngineSettings::default().epoch_tick);
    println!(
        "{:<34} {:>9} {:>14} {:>11} {:>15} {:>15}",
        "workload", "limit ms", "CPU median ms", "CPU max ms", "CPU max ÷ limit", "wall median ms"
    );
    let mut worst: f64 = 0.0;
    for &limit_ms in limits_ms {
        let limit = Duration::from_millis(limit_ms);
        for (name, program, flow, kind) in [
            ("task loop, task CPU limit", &io, "burn", RunKind::Task),
            ("flow loop, flow-run CPU limit", &hostile, "spin_flow", RunKind::Flow),
        ] {
            let mut samples: Vec<(f64, f64)> = (0..reps)
                .map(|_| {
                    let settings = match kind {
                        RunKind::Task => RunSettings { task_cpu_limit: Some(limit), ..RunSettings::default() },
                        RunKind::Flow => RunSettings { run_cpu_limit: Some(limit), ..RunSettings::default() },
                    };
                    let cpu_before = process_cpu();
                    let wall = runtime.block_on(stop_time(program, flow, settings, kind));
                    ((process_cpu() - cpu_before).as_secs_f64() * 1e3, wall.as_secs_f64() * 1e3)
                })
                .collect();
            let mut walls: Vec<f64> = samples.iter().map(|s| s.1).collect();
            walls.sort_by(f64::total_cmp);
            samples.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (median, max) = (samples[samples.len() / 2].0, samples[samples.len() - 1].0);
            let ratio = max / limit_ms as f64;
            worst = worst.max(ratio);
            let wall = walls[walls.len() / 2];
            println!("{name:<34} {limit_ms:>9} {median:>14.1} {max:>11.1} {ratio:>15.2} {wall:>15.1}");
        }
    }
    println!("worst CPU used ÷ limit: {worst:.2} (target ≤ 2)");
}
