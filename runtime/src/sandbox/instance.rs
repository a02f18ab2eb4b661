//! The host side of one instance: its WASI context (nothing granted), its
//! limits, and the `sluice:flow/host` imports, which it forwards to the
//! runner that owns the run.

use crate::core::failure::{Failure, FailureKind};
use crate::core::ids::RunId;
use crate::core::record::LogLevel;
use crate::sandbox::bindings::{self, RunContext, RunError, TaskCall};
use crate::sandbox::limiter::InstanceLimiter;
use crate::sandbox::stdio::LogStream;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::task::JoinHandle;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// A boxed future of a task's or subflow's outcome.
pub type Outcome = Pin<Box<dyn Future<Output = Result<String, Failure>> + Send>>;

/// Which run an instance serves.
#[derive(Clone, Debug)]
pub struct Scope {
    /// The flow run.
    pub flow_run: RunId,
    /// The task run, when the instance runs a task.
    pub task_run: Option<RunId>,
    /// The attempt, from 1.
    pub attempt: u32,
}

/// What instances ask of the runner that owns their run.
pub trait RunHost: Send + Sync + 'static {
    /// Runs a task with its policy (retries, timeout, cache) in fresh instances.
    fn run_task(self: Arc<Self>, scope: Scope, name: String, input: String) -> Outcome;
    /// Runs a subflow in a fresh instance.
    fn run_subflow(self: Arc<Self>, scope: Scope, name: String, parameters: String) -> Outcome;
    /// Adds a line to the run's log.
    fn log(&self, scope: &Scope, level: LogLevel, message: &str);
    /// What the instance may know about its run.
    fn context(&self, scope: &Scope) -> RunContext;
}

/// The store data of one instance.
pub struct InstanceState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: InstanceLimiter,
    host: Arc<dyn RunHost>,
    scope: Scope,
    submitted: HashMap<u64, JoinHandle<Result<String, Failure>>>,
    next_handle: u64,
}

impl InstanceState {
    /// A sandboxed instance state: no files, no network, no environment, no
    /// stdin; stdout and stderr go to the run's log.
    pub fn new(host: Arc<dyn RunHost>, scope: Scope, memory_limit: usize) -> Self {
        let stdout = log_stream(&host, &scope, LogLevel::Info);
        let stderr = log_stream(&host, &scope, LogLevel::Warning);
        let wasi = WasiCtxBuilder::new().stdout(stdout).stderr(stderr).allow_tcp(false).allow_udp(false).build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: InstanceLimiter::new(memory_limit),
            host,
            scope,
            submitted: HashMap::new(),
            next_handle: 1,
        }
    }
}

fn log_stream(host: &Arc<dyn RunHost>, scope: &Scope, level: LogLevel) -> LogStream {
    let (host, scope) = (host.clone(), scope.clone());
    LogStream::new(Arc::new(move |line: &str| host.log(&scope, level, line)))
}

impl Drop for InstanceState {
    fn drop(&mut self) {
        // Tasks submitted by an instance that is gone (timed out, cancelled)
        // must not run on unobserved.
        for (_, handle) in self.submitted.drain() {
            handle.abort();
        }
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl bindings::sluice::flow::types::Host for InstanceState {}

impl bindings::sluice::flow::host::Host for InstanceState {
    async fn run_task(&mut self, name: String, input: String) -> wasmtime::Result<Result<String, RunError>> {
        let outcome = self.host.clone().run_task(self.scope.clone(), name, input).await;
        Ok(outcome.map_err(RunError::from))
    }

    async fn submit(&mut self, calls: Vec<TaskCall>) -> wasmtime::Result<Vec<u64>> {
        let mut handles = Vec::with_capacity(calls.len());
        for call in calls {
            let future = self.host.clone().run_task(self.scope.clone(), call.name, call.input);
            let handle = self.next_handle;
            self.next_handle += 1;
            self.submitted.insert(handle, tokio::spawn(future));
            handles.push(handle);
        }
        Ok(handles)
    }

    async fn wait(&mut self, handles: Vec<u64>) -> wasmtime::Result<Vec<Result<String, RunError>>> {
        let mut results = Vec::with_capacity(handles.len());
        for handle in handles {
            let outcome = match self.submitted.remove(&handle) {
                Some(join) => match join.await {
                    Ok(outcome) => outcome,
                    Err(err) => {
                        Err(Failure::new(FailureKind::Crashed, format!("the task's host thread failed: {err}")))
                    }
                },
                None => Err(Failure::new(FailureKind::Unknown, format!("no pending task with handle {handle}"))),
            };
            results.push(outcome.map_err(RunError::from));
        }
        Ok(results)
    }

    async fn run_subflow(&mut self, name: String, parameters: String) -> wasmtime::Result<Result<String, RunError>> {
        let outcome = self.host.clone().run_subflow(self.scope.clone(), name, parameters).await;
        Ok(outcome.map_err(RunError::from))
    }

    async fn log(&mut self, level: bindings::LogLevel, message: String) -> wasmtime::Result<()> {
        let level = match level {
            bindings::LogLevel::Trace => LogLevel::Trace,
            bindings::LogLevel::Debug => LogLevel::Debug,
            bindings::LogLevel::Info => LogLevel::Info,
            bindings::LogLevel::Warning => LogLevel::Warning,
            bindings::LogLevel::Error => LogLevel::Error,
        };
        self.host.log(&self.scope, level, &message);
        Ok(())
    }

    async fn context(&mut self) -> wasmtime::Result<RunContext> {
        Ok(self.host.context(&self.scope))
    }
}
