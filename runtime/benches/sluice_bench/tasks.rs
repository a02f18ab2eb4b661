//! Per-task overhead in one process, on the same component
//! (`bench_flow.wasm`): Sluice's runner with every state committed to
//! SQLite (`sluice`; `sluice-batched`: the same with the deployment's
//! `batched` durability, records committed in the background), to PostgreSQL (`sluice-postgres`: a cluster this
//! process starts, with PostgreSQL's default durability; and
//! `sluice-postgres-async`: the same with `synchronous_commit=off` in the
//! URL) or kept in memory (`sluice-memory`), and the physical
//! limit: instantiate + call of the task export on a bare linker
//! (`wasmtime-raw`, see `raw_baseline.rs`; `wasmtime-sync` without
//! wasmtime's async support), and the same through Sluice's sandbox
//! (`Program::instantiate`, nothing recorded: `wasmtime`). Every reply
//! carries `cpu_s`, the process's CPU time over the request: ÷ `wall_s`,
//! how many cores it kept busy.
//! `SLUICE_DATABASE_URL` set to a `postgres://` URL measures the durable
//! side on PostgreSQL instead of SQLite.

use crate::raw_baseline::RawAsync;
use crate::sync_baseline::Baseline;
use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use sluice::core::deployment::Durability;
use sluice::core::ids::RunId;
use sluice::core::record::LogLevel;
use sluice::runner::{MemoryCache, MemoryRecorder, RunSettings, Runner};
use sluice::sandbox::bindings::RunContext;
use sluice::sandbox::compile_cache::CompileCache;
use sluice::sandbox::cpu::metered;
use sluice::sandbox::engine::EngineSettings;
use sluice::sandbox::instance::{InstanceConfig, Outcome, RunHost, Scope};
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
    raw: RawAsync,
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
        let component = wasmtime::component::Component::new(sandbox.engine(), &bytes)?;
        let sync = Baseline::from_component(sandbox.engine(), &component);
        let raw = RawAsync::new(sandbox.engine(), &component)?;
        let db = tempfile::tempdir()?;
        let store = sluice::store::open(db.path())?;
        let this = Self { program, store, postgres: Default::default(), sync, raw, db };
        this.sequential("sluice-memory", 100).await?;
        Ok(this)
    }

    /// The `sequential` flow with `n` tasks, or `n` plain calls.
    pub async fn sequential(&self, system: &str, n: u32) -> Result<Value> {
        with_cpu_time(self.sequential_wall(system, n)).await
    }

    /// The `parallel` flow (`n` tasks submitted at once), or `n` concurrent plain calls.
    pub async fn map(&self, system: &str, n: u32) -> Result<Value> {
        with_cpu_time(self.map_wall(system, n)).await
    }

    async fn sequential_wall(&self, system: &str, n: u32) -> Result<Value> {
        match system {
            "sluice" => self.durable(&self.store, "sequential", n).await,
            "sluice-batched" => self.durable_as(&self.store, "sequential", n, Durability::Batched).await,
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
            "wasmtime-raw" => Ok(json!({ "wall_s": seconds(self.raw.sequential(n).await?) })),
            "wasmtime-sync" => Ok(json!({ "wall_s": seconds(self.sync.run(n)) })),
            other => {
                bail!(
                    "unknown system {other:?}: sluice, sluice-batched, sluice-postgres, sluice-postgres-async, sluice-memory, wasmtime, wasmtime-raw or wasmtime-sync"
                )
            }
        }
    }

    async fn map_wall(&self, system: &str, n: u32) -> Result<Value> {
        match system {
            "sluice" => self.durable(&self.store, "parallel", n).await,
            "sluice-batched" => self.durable_as(&self.store, "parallel", n, Durability::Batched).await,
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
            "wasmtime-raw" => Ok(json!({ "wall_s": seconds(self.raw.parallel(n).await?) })),
            other => bail!(
                "unknown system {other:?} for map: sluice, sluice-batched, sluice-postgres, sluice-postgres-async, sluice-memory, wasmtime or wasmtime-raw"
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
        self.durable_as(store, flow, n, Durability::Strict).await
    }

    async fn durable_as(&self, store: &Arc<dyn Backend>, flow: &str, n: u32, durability: Durability) -> Result<Value> {
        let settings = RunSettings { durability, ..RunSettings::default() };
        let runner = Runner::new(self.program.clone(), store.clone(), store.clone(), settings);
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

/// `work`'s reply with `cpu_s` added: the CPU time the whole process
/// (every runtime and store thread) spent while it ran.
async fn with_cpu_time(work: impl std::future::Future<Output = Result<Value>>) -> Result<Value> {
    let cpu = || cpu_time::ProcessTime::now().as_duration();
    let before = cpu();
    let mut reply = work.await?;
    reply["cpu_s"] = json!(seconds(cpu().saturating_sub(before)));
    Ok(reply)
}

/// One fresh instance and one call of the `noop` task export, its CPU
/// metered as the runner meters a task's.
async fn raw_call(program: &Program, i: u32) -> Result<()> {
    let scope = Scope { flow_run: RunId::new(), task_run: None, attempt: 1 };
    let config = InstanceConfig::with_memory(program.memory_limit());
    let out = metered(
        &config.cpu,
        std::pin::pin!(async {
            let mut live = program
                .instantiate_with(Arc::new(NullHost), scope, &config)
                .await
                .map_err(|f| anyhow::anyhow!(f.message))?;
            Ok::<_, anyhow::Error>(live.flow.call_run_task(&mut live.store, "noop", &format!("{{\"i\":{i}}}")).await?)
        }),
    )
    .await?;
    let out = out.ok().context("noop failed")?;
    ensure!(out == i.to_string(), "noop returned {out}, not {i}");
    Ok(())
}
