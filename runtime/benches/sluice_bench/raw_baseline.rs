//! The floor of the per-task figures: wasmtime and nothing of Sluice. A
//! bare `Linker` with WASI and `sluice:flow/host` stubs that do nothing, an
//! `InstancePre`, the engine Sluice uses (pooling allocator, epochs), and
//! per task a store, `instantiate_async` and one call: no log streams, HTTP
//! context, memory limiter or CPU meter, which `Program::instantiate` adds
//! (the `wasmtime` system: "Sluice's sandbox, nothing recorded").

use anyhow::{Context, Result, ensure};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod bindings {
    wasmtime::component::bindgen!({
        // The bench guest is built by the SDK, against the newest contract.
        path: "../wit/v0.2",
        world: "sluice:flow/flow",
        imports: { default: async },
        exports: { default: async },
    });
}

use bindings::sluice::flow::types::{LogLevel, RunContext, RunError, TaskCall};

/// An instance's WASI context; the `sluice:flow/host` imports do nothing.
pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl bindings::sluice::flow::types::Host for State {}

impl bindings::sluice::flow::host::Host for State {
    async fn run_task(&mut self, _: String, _: String) -> Result<String, RunError> {
        unreachable!("the baseline calls the task export directly")
    }
    async fn submit(&mut self, _: Vec<TaskCall>) -> Vec<u64> {
        unreachable!("the baseline submits nothing")
    }
    async fn wait(&mut self, _: Vec<u64>) -> Vec<Result<String, RunError>> {
        unreachable!("the baseline waits for nothing")
    }
    async fn run_subflow(&mut self, _: String, _: String) -> Result<String, RunError> {
        unreachable!("the baseline runs no subflows")
    }
    async fn log(&mut self, _: LogLevel, _: String) {}
    async fn context(&mut self) -> RunContext {
        unreachable!("noop does not ask for its context")
    }
    async fn emit_event(&mut self, _: String, _: String) -> Result<(), String> {
        unreachable!("noop emits no event")
    }
    async fn suspend(&mut self, _: String, _: String, _: Option<u64>, _: Option<String>) -> Result<String, RunError> {
        unreachable!("noop does not pause")
    }
}

/// The bench component linked once, instantiated per call.
#[derive(Clone)]
pub struct RawAsync {
    engine: Engine,
    pre: bindings::FlowPre<State>,
}

impl RawAsync {
    /// Links a compiled component for async instantiation.
    pub fn new(engine: &Engine, component: &Component) -> Result<Self> {
        let mut linker = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::Flow::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)?;
        let pre = bindings::FlowPre::new(linker.instantiate_pre(component)?)?;
        Ok(Self { engine: engine.clone(), pre })
    }

    /// One fresh instance, one call of the `noop` task export.
    pub async fn call(&self, i: u32) -> Result<()> {
        let state = State { wasi: WasiCtx::builder().build(), table: ResourceTable::new() };
        let mut store = Store::new(&self.engine, state);
        store.set_epoch_deadline(u64::MAX / 2);
        let flow = self.pre.instantiate_async(&mut store).await?;
        let out = flow.call_run_task(&mut store, "noop", &format!("{{\"i\":{i}}}")).await?;
        let out = out.ok().context("noop failed")?;
        ensure!(out == i.to_string(), "noop returned {out}, not {i}");
        Ok(())
    }

    /// `n` calls one after another.
    pub async fn sequential(&self, n: u32) -> Result<Duration> {
        let start = Instant::now();
        for i in 0..n {
            self.call(i).await?;
        }
        Ok(start.elapsed())
    }

    /// `n` calls spawned at once on the multi-threaded runtime.
    pub async fn parallel(&self, n: u32) -> Result<Duration> {
        let start = Instant::now();
        let calls: Vec<_> = (0..n)
            .map(|i| {
                let raw = self.clone();
                tokio::spawn(async move { raw.call(i).await })
            })
            .collect();
        for call in calls {
            call.await??;
        }
        Ok(start.elapsed())
    }
}
