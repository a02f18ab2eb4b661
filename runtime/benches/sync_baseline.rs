//! The same instantiate + call without wasmtime's async support: a separate
//! sync `bindgen!` and WASI linker over the same engine and component.

use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod bindings {
    wasmtime::component::bindgen!({ path: "../wit", world: "sluice:flow/flow" });
}

use bindings::sluice::flow::types::{LogLevel, RunContext, RunError, TaskCall};

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
}

pub struct Baseline {
    engine: Engine,
    pre: bindings::FlowPre<State>,
}

impl Baseline {
    pub fn new(engine: &Engine, bytes: &[u8]) -> Self {
        let component = Component::new(engine, bytes).unwrap();
        let mut linker = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
        bindings::Flow::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).unwrap();
        let pre = bindings::FlowPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
        Self { engine: engine.clone(), pre }
    }

    pub fn run(&self, tasks: u32) -> Duration {
        let start = Instant::now();
        for i in 0..tasks {
            let state = State { wasi: WasiCtx::builder().build(), table: ResourceTable::new() };
            let mut store = Store::new(&self.engine, state);
            store.set_epoch_deadline(u64::MAX / 2);
            let flow = self.pre.instantiate(&mut store).unwrap();
            let out = flow.call_run_task(&mut store, "noop", &format!("{{\"i\":{i}}}")).unwrap();
            assert_eq!(out.ok().as_deref(), Some(i.to_string().as_str()));
        }
        start.elapsed()
    }
}
