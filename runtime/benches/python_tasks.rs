//! The Python and JavaScript SDKs' costs (`cargo bench -p sluice --bench
//! python_tasks`), on `bench/python/flow.py` and `bench/js/flow.js` built by
//! `sluice build` (the JavaScript figure: the raw one and through the runner):
//! - a task in a fresh instance: instantiate + call of the `noop` task export
//!   (raw), and per task of the `sequential` flow through the runner with
//!   records kept in memory;
//! - a warm `sluice exec` of a Python flow (compile cache filled);
//! - resident memory per concurrent Python task instance: a `sluice exec`
//!   of `parallel` with K tasks holding their instance, against one task.
//!
//! Prints one line per figure. Not a test: nothing here can fail on a slow machine.

use anyhow::{Context, Result, ensure};
use serde_json::json;
use sluice::core::ids::RunId;
use sluice::core::record::LogLevel;
use sluice::runner::{MemoryCache, MemoryRecorder, RunSettings, Runner};
use sluice::sandbox::bindings::RunContext;
use sluice::sandbox::compile_cache::CompileCache;
use sluice::sandbox::engine::EngineSettings;
use sluice::sandbox::instance::{Outcome, RunHost, Scope};
use sluice::sandbox::program::{Program, Sandbox};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(Into::into).unwrap_or_else(|| repo().join("target"))
}

/// `bench/python/flow.py` (or `bench/js/flow.js`) as a component, built (or
/// copied from the build cache) by `sluice build` into `NAME.wasm`.
fn component(source: &str, name: &str) -> Result<PathBuf> {
    let out = target().join(format!("wasm32-wasip2/guest/{name}.wasm"));
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .env("SLUICE_TOOLCHAIN_DIR", target().join("sluice-toolchains"))
        .arg("build")
        .arg(repo().join(source))
        .arg("-o")
        .arg(&out)
        .output()?;
    ensure!(output.status.success(), "sluice build failed: {}", String::from_utf8_lossy(&output.stderr));
    Ok(out)
}

/// A host that records nothing: all that a raw instantiate + call needs.
struct NullHost;

impl RunHost for NullHost {
    fn run_task(self: Arc<Self>, _: Scope, _: String, _: String) -> Outcome {
        unreachable!("the raw figure calls the task export directly")
    }
    fn run_subflow(self: Arc<Self>, _: Scope, _: String, _: String) -> Outcome {
        unreachable!("no subflows here")
    }
    fn log(&self, _: &Scope, _: LogLevel, _: &str) {}
    fn context(&self, _: &Scope) -> RunContext {
        unreachable!("noop does not ask for its context")
    }
}

/// One fresh instance and one call of `noop`; returns (instantiate, call, drop) times.
async fn raw_call(program: &Program, i: u32) -> Result<[Duration; 3]> {
    let scope = Scope { flow_run: RunId::new(), task_run: None, attempt: 1 };
    let start = Instant::now();
    let mut live = program.instantiate(Arc::new(NullHost), scope).await.map_err(|f| anyhow::anyhow!(f.message))?;
    let instantiated = start.elapsed();
    let out = live.flow.call_run_task(&mut live.store, "noop", &format!("{{\"i\":{i}}}")).await?;
    let called = start.elapsed();
    drop(live);
    let dropped = start.elapsed();
    let out = out.ok().context("noop failed")?;
    ensure!(out == i.to_string(), "noop returned {out}, not {i}");
    Ok([instantiated, called - instantiated, dropped - called])
}

async fn flow_wall(program: &Arc<Program>, count: u32) -> Result<Duration> {
    let runner = Runner::new(
        program.clone(),
        Arc::new(MemoryRecorder::default()),
        Arc::new(MemoryCache::default()),
        RunSettings::default(),
    );
    let start = Instant::now();
    let outcome = runner.run(RunId::new(), "bench".into(), "sequential", &json!({ "count": count })).await;
    ensure!(outcome.state.is_success(), "the sequential flow failed: {outcome:?}");
    Ok(start.elapsed())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

/// Peak resident memory (MB) of a `sluice exec` of `parallel` with `count` tasks holding their instance.
fn exec_peak_rss(component: &Path, home: &Path, count: u32) -> Result<f64> {
    let mut child = exec_command(component, home)
        .args(["--flow", "parallel", "--param", &format!("count={count}"), "--param", "seconds=1.5"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let mut peak = 0.0f64;
    while child.try_wait()?.is_none() {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) {
            for line in status.lines().filter(|l| l.starts_with("VmRSS:")) {
                let kb: f64 = line.split_whitespace().nth(1).unwrap_or("0").parse().unwrap_or(0.0);
                peak = peak.max(kb / 1024.0);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(peak)
}

fn exec_command(component: &Path, home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .env("SLUICE_HOME", home)
        .env("SLUICE_CACHE_DIR", target().join("bench-compile-cache"))
        .env_remove("SLUICE_API_URL")
        .arg("exec")
        .arg(component);
    command
}

/// Loads `component` and prints its raw fresh-instance and through-the-runner task figures.
async fn task_figures(language: &str, component: &Path) -> Result<()> {
    let bytes = std::fs::read(component)?;
    println!("{language} component: {} ({:.1} MB)", component.display(), bytes.len() as f64 / 1e6);
    let cache = CompileCache::in_dir(target().join("bench-compile-cache"));
    let sandbox = Sandbox::new(&EngineSettings::default(), cache)?;
    let started = Instant::now();
    let program = Arc::new(sandbox.load(&bytes).await?);
    println!("load (compile or compile cache): {:.2} s", started.elapsed().as_secs_f64());
    for i in 0..50 {
        raw_call(&program, i).await?;
    }
    let mut per_call = Vec::new();
    let mut parts = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..10 {
        let start = Instant::now();
        for i in 0..100 {
            let split = raw_call(&program, i).await?;
            for (part, time) in parts.iter_mut().zip(split) {
                part.push(time.as_secs_f64() * 1e3);
            }
        }
        per_call.push(start.elapsed().as_secs_f64() * 1e3 / 100.0);
    }
    println!(
        "{language} task, fresh instance, raw instantiate + call: {:.3} ms (median of 10 x 100)",
        median(per_call)
    );
    let [instantiate, call, teardown] = parts.map(median);
    println!("  of which instantiate {instantiate:.3} ms, call {call:.3} ms, drop {teardown:.3} ms (medians)");
    flow_wall(&program, 100).await?;
    let mut per_task = Vec::new();
    for _ in 0..5 {
        let empty = flow_wall(&program, 0).await?;
        let full = flow_wall(&program, 200).await?;
        per_task.push((full.as_secs_f64() - empty.as_secs_f64()) * 1e3 / 200.0);
    }
    println!(
        "{language} task through the runner (records in memory): {:.3} ms per task (median of 5 x 200)",
        median(per_task)
    );
    Ok(())
}

fn main() -> Result<()> {
    let python = component("bench/python/flow.py", "python_bench")?;
    let js = component("bench/js/flow.js", "js_bench")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        task_figures("python", &python).await?;
        task_figures("javascript", &js).await
    })?;

    let component = python;
    let home = tempfile::tempdir()?;
    let warm = |count: u32| -> Result<f64> {
        let start = Instant::now();
        let output = exec_command(&component, home.path())
            .args(["--flow", "sequential", "--param", &format!("count={count}")])
            .output()?;
        ensure!(output.status.success(), "sluice exec failed: {}", String::from_utf8_lossy(&output.stderr));
        Ok(start.elapsed().as_secs_f64() * 1e3)
    };
    warm(0)?;
    let runs: Vec<f64> = (0..7).map(|_| warm(0)).collect::<Result<_>>()?;
    println!("warm `sluice exec` of a Python flow (no task): {:.1} ms median of 7", median(runs));
    let runs: Vec<f64> = (0..5).map(|_| warm(1)).collect::<Result<_>>()?;
    println!("warm `sluice exec` of a Python flow with one task: {:.1} ms median of 5", median(runs));

    let one = exec_peak_rss(&component, home.path(), 1)?;
    let many = 50;
    let peak = exec_peak_rss(&component, home.path(), many)?;
    println!(
        "memory: peak RSS {one:.1} MB with 1 Python task alive, {peak:.1} MB with {many}: {:.2} MB per concurrent task instance",
        (peak - one) / f64::from(many - 1)
    );
    Ok(())
}
