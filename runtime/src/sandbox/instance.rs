//! The host side of one instance: its WASI context (nothing but what its
//! deployment grants), its memory and CPU limits, and the `sluice:flow/host`
//! imports, which it forwards to the runner that owns the run.

use crate::core::failure::Failure;
use crate::core::ids::RunId;
use crate::core::pause::PauseRequest;
use crate::core::record::LogLevel;
use crate::sandbox::bindings::{self, RunContext, RunError, TaskCall};
use crate::sandbox::capabilities::{HttpPolicy, InstanceGrants};
use crate::sandbox::cpu::{CpuMeter, RunCpu};
use crate::sandbox::egress::Egress;
use crate::sandbox::flow_clock::{FlowClock, FlowDeterminism};
use crate::sandbox::limiter::InstanceLimiter;
use crate::sandbox::stdio::{LineSink, LogStream};
use crate::sandbox::submitted::{Start, Submitted};
use chrono::{DateTime, Utc};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// A boxed future of a task's or subflow's outcome.
pub type Outcome = Pin<Box<dyn Future<Output = Ended> + Send>>;

/// How a task or subflow call ended, and when the store recorded it (the
/// time a flow's clock moves to when the outcome reaches it).
#[derive(Debug)]
pub struct Ended {
    /// Its result as JSON, or why there is none.
    pub result: Result<String, Failure>,
    /// When its end was recorded, when it was.
    pub at: Option<DateTime<Utc>>,
}

impl From<Result<String, Failure>> for Ended {
    fn from(result: Result<String, Failure>) -> Self {
        Self { result, at: None }
    }
}

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
    /// A `submit` of `calls` (name, input): checked as a whole against the
    /// run's limits, refused as a whole (the guest traps) past one, else one
    /// start per call, in order. By default each start is a `run_task`.
    fn submit(self: Arc<Self>, scope: Scope, calls: Vec<(String, String)>) -> Result<Vec<Start>, Failure> {
        Ok(calls
            .into_iter()
            .map(|(name, input)| {
                let (host, scope) = (self.clone(), scope.clone());
                Box::new(move || host.run_task(scope, name, input)) as Start
            })
            .collect())
    }
    /// How many calls of one `submit` run at once.
    fn submit_concurrency(&self) -> usize {
        16
    }
    /// Runs a subflow in a fresh instance.
    fn run_subflow(self: Arc<Self>, scope: Scope, name: String, parameters: String) -> Outcome;
    /// Adds a line to the run's log.
    fn log(&self, scope: &Scope, level: LogLevel, message: &str);
    /// Whether the run's log is full: guest output is then dropped unread.
    fn log_full(&self) -> bool {
        false
    }
    /// What the instance may know about its run.
    fn context(&self, scope: &Scope) -> RunContext;
    /// Records an event the guest emitted (its name and payload already checked).
    fn emit_event(&self, _scope: &Scope, _name: String, _payload: serde_json::Value) -> Result<(), String> {
        Err("emitted events are not recorded here".into())
    }
    /// A flow's `suspend`: the input an earlier attempt's pause was resumed
    /// with, or the run pauses (the instance is then dropped).
    fn suspend(self: Arc<Self>, _scope: Scope, _request: PauseRequest) -> Suspension {
        Suspension::Returns(Ended::from(Err(Failure::new(
            crate::core::failure::FailureKind::Failed,
            "this host cannot pause a run",
        ))))
    }
}

/// What a `suspend` call comes to.
#[derive(Debug)]
pub enum Suspension {
    /// The call returns this (the input of a resumed pause, or why not).
    Returns(Ended),
    /// The run paused: the instance traps with this message and is dropped.
    Paused(String),
}

/// The limits and grants one instance runs under.
#[derive(Clone, Debug)]
pub struct InstanceConfig {
    /// Linear memory, in bytes.
    pub memory_limit: usize,
    /// The meter its guest code is charged to: its own limit (a task
    /// attempt's; none for a flow's instance) and its flow run's.
    pub cpu: CpuMeter,
    /// What it is granted.
    pub grants: InstanceGrants,
    /// A flow instance's own clock and random seed (none for a task instance).
    pub determinism: Option<FlowDeterminism>,
}

impl InstanceConfig {
    /// No CPU limit and nothing granted, with this memory limit.
    pub fn with_memory(memory_limit: usize) -> Self {
        Self {
            memory_limit,
            cpu: CpuMeter::new(None, RunCpu::new(None)),
            grants: InstanceGrants::default(),
            determinism: None,
        }
    }
}

/// The store data of one instance.
pub struct InstanceState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    http_policy: HttpPolicy,
    table: ResourceTable,
    pub(crate) limiter: InstanceLimiter,
    pub(crate) cpu: CpuMeter,
    pub(crate) host: Arc<dyn RunHost>,
    pub(crate) scope: Scope,
    pub(crate) submitted: Submitted,
    /// Set when the guest's export returned: a trap after it is the host
    /// lifting what it returned.
    pub(crate) returned: bool,
    clock: Option<Arc<FlowClock>>,
}

impl InstanceState {
    /// A sandboxed instance state: no files, no sockets, no stdin, no
    /// environment but its granted secrets, outbound HTTP to its granted
    /// hosts only; stdout and stderr go to the run's log.
    pub fn new(host: Arc<dyn RunHost>, scope: Scope, config: &InstanceConfig, egress: Egress) -> Self {
        let stdout = LogStream::new(log_sink(&host, &scope, LogLevel::Info));
        let stderr = LogStream::new(log_sink(&host, &scope, LogLevel::Warning));
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout)
            .stderr(stderr)
            .envs(&config.grants.env)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if let Some(determinism) = &config.determinism {
            determinism.apply(&mut wasi);
        }
        let wasi = wasi.build();
        let http_policy =
            HttpPolicy::new(config.grants.allow_hosts.clone(), egress, log_sink(&host, &scope, LogLevel::Warning));
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            http_policy,
            table: ResourceTable::new(),
            limiter: InstanceLimiter::new(config.memory_limit),
            cpu: config.cpu.clone(),
            host,
            scope,
            submitted: Submitted::default(),
            returned: false,
            clock: config.determinism.as_ref().map(|d| d.clock.clone()),
        }
    }
}

fn log_sink(host: &Arc<dyn RunHost>, scope: &Scope, level: LogLevel) -> LineSink {
    let (host, scope) = (host.clone(), scope.clone());
    Arc::new(move |line: &str| {
        host.log(&scope, level, line);
        !host.log_full()
    })
}

impl InstanceState {
    /// An outcome reaches the guest: a flow's clock moves to when it was recorded.
    pub(crate) fn deliver(&self, ended: Ended) -> Result<String, RunError> {
        if let (Some(clock), Some(at)) = (&self.clock, ended.at) {
            clock.advance(at);
        }
        ended.result.map_err(RunError::from)
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.http_policy }
    }
}

impl bindings::sluice::flow::types::Host for InstanceState {}

impl bindings::sluice::flow::host::Host for InstanceState {
    async fn run_task(&mut self, name: String, input: String) -> wasmtime::Result<Result<String, RunError>> {
        let ended = self.host.clone().run_task(self.scope.clone(), name, input).await;
        Ok(self.deliver(ended))
    }

    async fn submit(&mut self, calls: Vec<TaskCall>) -> wasmtime::Result<Vec<u64>> {
        let calls = calls.into_iter().map(|call| (call.name, call.input)).collect();
        // Past a run limit the whole call is refused: the guest traps and the run stops with the reason.
        let starts =
            self.host.clone().submit(self.scope.clone(), calls).map_err(|f| wasmtime::Error::msg(f.message))?;
        Ok(self.submitted.start(starts, self.host.submit_concurrency()))
    }

    async fn wait(&mut self, handles: Vec<u64>) -> wasmtime::Result<Vec<Result<String, RunError>>> {
        // A handle is waited on once: more handles than pending calls can only be a guest flooding the host.
        if handles.len() > self.submitted.len().max(1024) {
            let (given, pending) = (handles.len(), self.submitted.len());
            return Err(wasmtime::Error::msg(format!(
                "`wait` was given {given} handles but only {pending} submitted tasks are pending"
            )));
        }
        let mut results = Vec::with_capacity(handles.len());
        for handle in handles {
            let ended = self.submitted.collect(handle).await;
            results.push(self.deliver(ended));
        }
        Ok(results)
    }

    async fn run_subflow(&mut self, name: String, parameters: String) -> wasmtime::Result<Result<String, RunError>> {
        let ended = self.host.clone().run_subflow(self.scope.clone(), name, parameters).await;
        Ok(self.deliver(ended))
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
