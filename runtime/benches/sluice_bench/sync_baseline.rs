//! The same instantiate + call without wasmtime's async support: a separate
//! sync `bindgen!` and WASI linker over the same engine and component.

use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod bindings {
    // The bench guest is built by the SDK, against the newest contract.
    wasmtime::component::bindgen!({ path: "../wit/v0.2", world: "sluice:flow/flow" });
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
    fn run_task(&mut self, _: String, _: String) -> Result<String, RunError> {
        unreachable!()
    }
    fn submit(&mut self, _: Vec<TaskCall>) -> Vec<u64> {
        unreachable!()
    }
    fn wait(&mut self, _: Vec<u64>) -> Vec<Result<String, RunError>> {
        unreachable!()
    }
    fn run_subflow(&mut self, _: String, _: String) -> Result<String, RunError> {
        unreachable!()
    }
    fn log(&mut self, _: LogLevel, _: String) {}
    fn context(&mut self) -> RunContext {
        unreachable!()
    }
    fn emit_event(&mut self, _: String, _: String) -> Result<(), String> {
        unreachable!()
    }
    fn suspend(&mut self, _: String, _: String, _: Option<u64>, _: Option<String>) -> Result<String, RunError> {
        unreachable!()
    }
}

/// The bench component linked for sync instantiation.
pub struct Baseline {
    engine: Engine,
    pre: bindings::FlowPre<State>,
}

impl Baseline {
    /// Links a compiled component.
    pub fn from_component(engine: &Engine, component: &Component) -> Self {
        let mut linker = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
        bindings::Flow::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).unwrap();
        let pre = bindings::FlowPre::new(linker.instantiate_pre(component).unwrap()).unwrap();
        Self { engine: engine.clone(), pre }
    }

    fn store(&self) -> Store<State> {
        let state = State { wasi: WasiCtx::builder().build(), table: ResourceTable::new() };
        let mut store = Store::new(&self.engine, state);
        store.set_epoch_deadline(u64::MAX / 2);
        store
    }

    /// One instance, one call of `describe`: the least a host does to run anything.
    pub fn describe(&self) -> anyhow::Result<()> {
        let mut store = self.store();
        let flow = self.pre.instantiate(&mut store)?;
        let info = flow.call_describe(&mut store)?;
        anyhow::ensure!(!info.flows.is_empty(), "the component describes no flows");
        Ok(())
    }

    /// `tasks` fresh instances, each calling the `noop` task once.
    pub fn run(&self, tasks: u32) -> Duration {
        let start = Instant::now();
        for i in 0..tasks {
            let mut store = self.store();
            let flow = self.pre.instantiate(&mut store).unwrap();
            let out = flow.call_run_task(&mut store, "noop", &format!("{{\"i\":{i}}}")).unwrap();
            assert_eq!(out.ok().as_deref(), Some(i.to_string().as_str()));
        }
        start.elapsed()
    }
}
