//! Per-task overhead in one process, on the same component
//! (`bench_flow.wasm`): Sluice's runner with every state committed to
//! SQLite (`sluice`), to PostgreSQL (`sluice-postgres`: a cluster this
//! process starts, with PostgreSQL's default durability; and
//! `sluice-postgres-async`: the same with `synchronous_commit=off` in the
//! URL) or kept in memory (`sluice-memory`), and the physical
//! limit, instantiate + call of the task export from the same
//! `InstancePre` with nothing recorded, on wasmtime's async support as
//! Sluice runs guests (`wasmtime`) and without it (`wasmtime-sync`).
//! `SLUICE_DATABASE_URL` set to a `postgres://` URL measures the durable
//! side on PostgreSQL instead of SQLite.

use crate::sync_baseline::Baseline;
use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use sluice::core::ids::RunId;
use sluice::core::record::LogLevel;
use sluice::runner::{MemoryCache, MemoryRecorder, RunSettings, Runner};
use sluice::sandbox::bindings::RunContext;
use sluice::sandbox::compile_cache::CompileCache;
use sluice::sandbox::engine::EngineSettings;
use sluice::sandbox::instance::{Outcome, RunHost, Scope};
use sluice::sandbox::program::{Program, Sandbox};
use sluice::store::Backend;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The loaded bench component, its store (SQLite, or the database
/// `SLUICE_DATABASE_URL` names), its PostgreSQL stores (commits flushed, and
/// `synchronous_commit=off`; opened on first use) and the sync baseline.
pub struct InProcess {
    program: Arc<Program>,
    store: Arc<dyn Backend>,
    postgres: [tokio::sync::OnceCell<Arc<dyn Backend>>; 2],
    sync: Baseline,
    db: tempfile::TempDir,
}

/// A host that records nothing: all that raw instantiate + call needs.
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

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl InProcess {
    /// Loads `bench_flow.wasm` and warms the instance pool once.
    pub async fn new() -> Result<Self> {
        let bytes = std::fs::read(crate::component("bench_flow.wasm")?)?;
        let sandbox = Sandbox::new(&EngineSettings::default(), CompileCache::disabled())?;
        let program = Arc::new(sandbox.load(&bytes).await?);
        let sync = Baseline::new(sandbox.engine(), &bytes);
        let db = tempfile::tempdir()?;
        let store = sluice::store::open(db.path())?;
        let this = Self { program, store, postgres: Default::default(), sync, db };
        this.sequential("sluice-memory", 100).await?;
        Ok(this)
    }

    /// The `sequential` flow with `n` tasks, or `n` plain calls.
    pub async fn sequential(&self, system: &str, n: u32) -> Result<Value> {
        match system {
            "sluice" => self.durable(&self.store, "sequential", n).await,
            "sluice-postgres" => self.durable(self.postgres(false).await?, "sequential", n).await,
            "sluice-postgres-async" => self.durable(self.postgres(true).await?, "sequential", n).await,
            "sluice-memory" => self.in_memory("sequential", n).await,
            "wasmtime" => {
                let start = Instant::now();
                for i in 0..n {
                    raw_call(&self.program, i).await?;
                }
                Ok(json!({ "wall_s": seconds(start.elapsed()) }))
            }
            "wasmtime-sync" => Ok(json!({ "wall_s": seconds(self.sync.run(n)) })),
            other => {
                bail!(
                    "unknown system {other:?}: sluice, sluice-postgres, sluice-postgres-async, sluice-memory, wasmtime or wasmtime-sync"
                )
            }
        }
    }

    /// The `parallel` flow (`n` tasks submitted at once), or `n` concurrent plain calls.
    pub async fn map(&self, system: &str, n: u32) -> Result<Value> {
        match system {
            "sluice" => self.durable(&self.store, "parallel", n).await,
            "sluice-postgres" => self.durable(self.postgres(false).await?, "parallel", n).await,
            "sluice-postgres-async" => self.durable(self.postgres(true).await?, "parallel", n).await,
            "sluice-memory" => self.in_memory("parallel", n).await,
            "wasmtime" => {
                let start = Instant::now();
                let calls: Vec<_> = (0..n)
                    .map(|i| {
                        let program = self.program.clone();
                        tokio::spawn(async move { raw_call(&program, i).await })
                    })
                    .collect();
                for call in calls {
                    call.await??;
                }
                Ok(json!({ "wall_s": seconds(start.elapsed()) }))
            }
            other => bail!(
                "unknown system {other:?} for map: sluice, sluice-postgres, sluice-postgres-async, sluice-memory or wasmtime"
            ),
        }
    }

    /// The store on a database of this process's durable PostgreSQL
    /// cluster; its sessions with `synchronous_commit=off` if `async_commit`.
    async fn postgres(&self, async_commit: bool) -> Result<&Arc<dyn Backend>> {
        self.postgres[usize::from(async_commit)]
            .get_or_try_init(|| async {
                let mut url = crate::pg_cluster::Cluster::durable().new_database();
                if async_commit {
                    url.push_str("?options=-c%20synchronous_commit%3Doff");
                }
                anyhow::Ok(sluice::store::open_url(&url, self.db.path())?)
            })
            .await
    }

    /// Every state committed to `store`: `wall_s` until the flow returns,
    /// `recorded_s` until the last of its records is committed.
    async fn durable(&self, store: &Arc<dyn Backend>, flow: &str, n: u32) -> Result<Value> {
        let runner = Runner::new(self.program.clone(), store.clone(), store.clone(), RunSettings::default());
        let id = RunId::new();
        let start = Instant::now();
        let outcome = runner.run(id, "bench".into(), flow, &json!({ "count": n })).await;
        let wall = start.elapsed();
        store.flush().await;
        let recorded = start.elapsed();
        ensure!(outcome.state.is_success(), "the {flow} flow failed: {outcome:?}");
        // Checked after the clock stops: every task run is in the database, finished.
        let task_runs = store.task_runs(&id.to_string())?;
        ensure!(task_runs.len() == n as usize, "{} task runs recorded, {n} expected", task_runs.len());
        Ok(json!({ "wall_s": seconds(wall), "recorded_s": seconds(recorded) }))
    }

    async fn in_memory(&self, flow: &str, n: u32) -> Result<Value> {
        let recorder = Arc::new(MemoryRecorder::default());
        let runner = Runner::new(
            self.program.clone(),
            recorder.clone(),
            Arc::new(MemoryCache::default()),
            RunSettings::default(),
        );
        let start = Instant::now();
        let outcome = runner.run(RunId::new(), "bench".into(), flow, &json!({ "count": n })).await;
        let wall = start.elapsed();
        ensure!(outcome.state.is_success(), "the {flow} flow failed: {outcome:?}");
        let events = recorder.events().len();
        ensure!(events >= n as usize * 4, "only {events} events recorded for {n} tasks");
        Ok(json!({ "wall_s": seconds(wall) }))
    }
}

/// One fresh instance and one call of the `noop` task export.
async fn raw_call(program: &Program, i: u32) -> Result<()> {
    let scope = Scope { flow_run: RunId::new(), task_run: None, attempt: 1 };
    let mut live = program.instantiate(Arc::new(NullHost), scope).await.map_err(|f| anyhow::anyhow!(f.message))?;
    let out = live.flow.call_run_task(&mut live.store, "noop", &format!("{{\"i\":{i}}}")).await?;
    let out = out.ok().context("noop failed")?;
    ensure!(out == i.to_string(), "noop returned {out}, not {i}");
    Ok(())
}
