//! `sluice_bench`: Sluice's and raw wasmtime's side of the benchmark suite
//! that `bench/run.py` drives (`make bench`). It reads one JSON request per
//! line on stdin and answers each with one JSON line on stdout, so the
//! orchestrator can keep it alive and interleave its workloads with raw
//! wasmtime's and Prefect's, repetition by repetition. Nothing else is
//! written to stdout; a failed request answers `{"error": "…"}`.
//!
//! Requests (`system` is `sluice`, `sluice-batched`, `sluice-postgres`, `sluice-memory`, `wasmtime`,
//! `wasmtime-raw` or `wasmtime-sync`):
//! - `{"op": "tasks", "system": S, "n": N}`: one flow calling N trivial tasks in sequence;
//! - `{"op": "map", "system": S, "n": N}`: N trivial tasks submitted at once;
//! - `{"op": "latency", "n": K, "backend": "sqlite" | "postgres"}`: K deployment runs through a
//!   `sluice server`'s API, one at a time;
//! - `{"op": "cold", "component": "bench" | "python"}`: first run on a fresh host, then a warm one;
//! - `{"op": "memory", "concurrent": K}`: resident memory of idle processes and per running flow;
//! - `{"op": "scale", "task_runs": N, "tasks_per_run": T, "reps": R}`: history queries on N task runs.

mod cold;
mod memory;
#[path = "../../../tests/support/pg_cluster.rs"]
#[allow(dead_code)] // what the tests use of it
mod pg_cluster;
mod processes;
mod raw_baseline;
mod scale;
mod server;
mod sync_baseline;
mod tasks;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::io::{BufRead, Write};
use std::path::PathBuf;

/// The folder holding the guests built by `make guests`.
fn guest_dir() -> PathBuf {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(Into::into).unwrap_or_else(|| repo.join("target"));
    target.join("wasm32-wasip2/guest")
}

/// A guest component's path, or an error saying how to build it.
fn component(file: &str) -> Result<PathBuf> {
    let path = guest_dir().join(file);
    if !path.exists() {
        bail!("{} is missing: build the guests first (make guests python-example)", path.display());
    }
    Ok(path)
}

/// The `sluice` binary built with this bench (same profile).
fn sluice_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sluice"))
}

/// What stays alive between requests: the loaded program and its stores,
/// and the servers used for latency (SQLite's, PostgreSQL's).
#[derive(Default)]
struct Driver {
    in_process: Option<tasks::InProcess>,
    latency: [Option<server::LatencyServer>; 2],
}

impl Driver {
    async fn handle(&mut self, request: &Value) -> Result<Value> {
        let op = request["op"].as_str().context("a request needs an \"op\"")?;
        let number = |key: &str| request[key].as_u64().with_context(|| format!("`{op}` needs a number `{key}`"));
        let system = || request["system"].as_str().with_context(|| format!("`{op}` needs a `system`"));
        match op {
            "tasks" | "map" => {
                if self.in_process.is_none() {
                    self.in_process = Some(tasks::InProcess::new().await?);
                }
                let in_process = self.in_process.as_ref().unwrap();
                let n = u32::try_from(number("n")?)?;
                if op == "tasks" {
                    in_process.sequential(system()?, n).await
                } else {
                    in_process.map(system()?, n).await
                }
            }
            "latency" => {
                let postgres = match request["backend"].as_str().unwrap_or("sqlite") {
                    "sqlite" => false,
                    "postgres" => true,
                    other => bail!("unknown backend {other:?}: sqlite or postgres"),
                };
                let server = &mut self.latency[usize::from(postgres)];
                if server.is_none() {
                    *server = Some(server::LatencyServer::start(postgres).await?);
                }
                server.as_ref().unwrap().runs(number("n")? as usize).await
            }
            "cold" => cold::cold(request["component"].as_str().unwrap_or("bench")),
            "memory" => memory::memory(number("concurrent")? as usize).await,
            "scale" => {
                let reps = request["reps"].as_u64().unwrap_or(5) as usize;
                scale::scale(number("task_runs")?, u32::try_from(number("tasks_per_run")?)?, reps).await
            }
            other => bail!("unknown op {other:?}: tasks, map, latency, cold, memory or scale"),
        }
    }
}

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut driver = Driver::default();
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Value>(&line) {
            Ok(request) => {
                runtime.block_on(driver.handle(&request)).unwrap_or_else(|e| json!({"error": format!("{e:#}")}))
            }
            Err(e) => json!({"error": format!("not a JSON request ({e}): {line}")}),
        };
        writeln!(out, "{reply}")?;
        out.flush()?;
    }
    Ok(())
}
