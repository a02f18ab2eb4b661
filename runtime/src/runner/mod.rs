//! Runs a flow run: the flow in one instance, every task and subflow in a
//! fresh instance of the same component, with the task policies (retries,
//! backoff, jitter, timeout, cache) enforced here, and every state recorded
//! before the runner acts on it.

mod guard;
mod memory;
mod trace;

pub use memory::{MemoryCache, MemoryRecorder};

use crate::core::deployment::Durability;
use crate::core::failure::{Failure, FailureKind};
use crate::core::ids::RunId;
use crate::core::journal::{CallPosition, Journal, Replay, input_digest};
use crate::core::pause::{PAUSE_TASK, PauseRequest, Waiting};
use crate::core::record::{
    EmittedRecord, Event, FlowRunRecord, LogLevel, LogRecord, Recorder, ResultCache, RunKind, StateRecord,
    TaskRunRecord,
};
use crate::core::state::{StateType, check_transition};
use crate::sandbox::bindings::RunContext;
use crate::sandbox::capabilities::InstanceGrants;
use crate::sandbox::cpu::{CpuExceeded, CpuMeter, DEFAULT_RUN_CPU, DEFAULT_TASK_CPU, RunCpu, metered};
use crate::sandbox::flow_clock::{FlowClock, FlowDeterminism};
use crate::sandbox::instance::{Ended, InstanceConfig, Outcome, RunHost, Scope, Suspension};
use crate::sandbox::program::{Program, cpu_failure, crash};
use crate::sandbox::submitted::Start;
use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use guard::{Interrupt, guard};
use rustc_hash::FxHashMap;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Limits and context of one flow run (and its subflows and tasks).
#[derive(Clone, Debug)]
pub struct RunSettings {
    /// The tenant that owns the run: cached task results are its own.
    pub tenant: String,
    /// `flow/deployment`, when the run comes from a deployment.
    pub deployment: Option<String>,
    /// When the run was scheduled to start.
    pub scheduled_time: Option<DateTime<Utc>>,
    /// Timeout of a task attempt whose task declares none.
    pub default_task_timeout: Option<Duration>,
    /// Timeout of the whole flow run.
    pub flow_timeout: Option<Duration>,
    /// Task runs allowed in one flow run, subflows included.
    pub max_tasks_per_run: u64,
    /// Largest input, parameters or result, in bytes.
    pub max_payload_bytes: usize,
    /// Log bytes kept per flow run; later lines are dropped with a marker.
    pub max_log_bytes: u64,
    /// Cancelling it stops every instance of the run.
    pub cancel: CancellationToken,
    /// Memory limit of each instance, in bytes (the sandbox's when `None`).
    pub memory_limit: Option<usize>,
    /// CPU time of one task attempt (unlimited when `None`).
    pub task_cpu_limit: Option<Duration>,
    /// CPU time of the whole flow run: flow, subflows and tasks (unlimited when `None`).
    pub run_cpu_limit: Option<Duration>,
    /// Outbound HTTP hosts and environment (secrets) granted to every instance.
    pub grants: InstanceGrants,
    /// Instances of the run alive at once (flow, subflows, tasks); past it the run
    /// is halted, so a task that starts tasks without end cannot drain the host's pool.
    pub max_live_instances: usize,
    /// The flow run's attempt, from 1.
    pub attempt: u32,
    /// When the flow run was created: its flow instance's clock starts there.
    pub created: Option<DateTime<Utc>>,
    /// What earlier attempts recorded: their completed calls are replayed.
    pub journal: Arc<Journal>,
    /// Whether a task attempt waits for its records to be committed.
    pub durability: Durability,
    /// The flow run's `Pending` and `Running` states are recorded already:
    /// the claim that took it for this process wrote them, in its own
    /// commit. The runner goes on from `Running` without recording them
    /// again (or waiting for their commit before the guest starts).
    pub started_by_claim: bool,
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            tenant: crate::core::tenant::DEFAULT_TENANT.to_string(),
            deployment: None,
            scheduled_time: None,
            default_task_timeout: None,
            flow_timeout: None,
            max_tasks_per_run: 100_000,
            max_payload_bytes: 16 << 20,
            max_log_bytes: 64 << 20,
            cancel: CancellationToken::new(),
            memory_limit: None,
            task_cpu_limit: Some(DEFAULT_TASK_CPU),
            run_cpu_limit: Some(DEFAULT_RUN_CPU),
            grants: InstanceGrants::default(),
            max_live_instances: 250,
            attempt: 1,
            created: None,
            journal: Arc::default(),
            durability: Durability::Strict,
            started_by_claim: false,
        }
    }
}

/// How a flow run ended.
#[derive(Clone, Debug)]
pub struct FlowOutcome {
    /// The run's id.
    pub id: RunId,
    /// The run's name.
    pub name: String,
    /// Its final state.
    pub state: StateType,
    /// Its result, when it completed.
    pub result: Option<Arc<str>>,
    /// Why it did not complete.
    pub message: Option<String>,
}

struct FlowRunInfo {
    name: String,
    flow: String,
    parameters: String,
}

struct TaskRunInfo {
    name: String,
}

/// Runs one flow run tree of one program.
pub struct Runner {
    program: Arc<Program>,
    recorder: Arc<dyn Recorder>,
    cache: Arc<dyn ResultCache>,
    settings: RunSettings,
    cancel: CancellationToken,
    tasks_created: AtomicU64,
    // Bytes of names and inputs of submitted calls not yet ended.
    pending_bytes: Arc<AtomicU64>,
    log_bytes: AtomicU64,
    cpu: Arc<RunCpu>,
    live_instances: AtomicUsize,
    // Why the run was stopped as a whole (a run-wide limit), if it was.
    halted: OnceLock<Failure>,
    // Keyed by ids the runner made: a fast hash. Task names come from the
    // guest, so their counters keep the DoS-resistant default.
    flow_runs: Mutex<FxHashMap<RunId, Arc<FlowRunInfo>>>,
    task_runs: Mutex<FxHashMap<RunId, Arc<TaskRunInfo>>>,
    task_counters: Mutex<FxHashMap<RunId, HashMap<String, u32>>>,
    // The next call position of each flow run's instance (the journal's key).
    positions: Mutex<FxHashMap<RunId, u64>>,
    replayed: AtomicU64,
    // The top-level flow run: only its own instance may pause.
    root: OnceLock<RunId>,
    // Set when the flow paused for input (the pause's message): the run then ends `Paused`.
    paused: OnceLock<String>,
    // The open span of each flow run, for its children's (empty when tracing is off).
    flow_spans: trace::FlowSpans,
    // The context a top-level run's span hangs under (a caller's `traceparent`).
    trace_parent: Option<crate::observe::traces::SpanContext>,
}

impl Runner {
    /// A runner for `program` that records to `recorder`.
    pub fn new(
        program: Arc<Program>,
        recorder: Arc<dyn Recorder>,
        cache: Arc<dyn ResultCache>,
        settings: RunSettings,
    ) -> Arc<Self> {
        Arc::new(Self {
            program,
            recorder,
            cache,
            cancel: settings.cancel.clone(),
            cpu: RunCpu::new(settings.run_cpu_limit),
            live_instances: AtomicUsize::new(0),
            halted: OnceLock::new(),
            settings,
            tasks_created: AtomicU64::new(0),
            pending_bytes: Arc::default(),
            log_bytes: AtomicU64::new(0),
            flow_runs: Mutex::default(),
            task_runs: Mutex::default(),
            task_counters: Mutex::default(),
            positions: Mutex::default(),
            replayed: AtomicU64::new(0),
            root: OnceLock::new(),
            paused: OnceLock::new(),
            flow_spans: Mutex::default(),
            trace_parent: crate::observe::traces::current_trace_parent(),
        })
    }

    /// Cancelling this token stops every instance of the run.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Runs `flow` as a new top-level flow run named `name`.
    pub async fn run(
        self: &Arc<Self>,
        id: RunId,
        name: String,
        flow: &str,
        parameters: &serde_json::Value,
    ) -> FlowOutcome {
        let parameters = parameters.to_string();
        _ = self.root.set(id);
        let created = self.settings.created.unwrap_or_else(Utc::now);
        let call = FlowCall { id, name: name.clone(), parent: None, created, call: None };
        let flow_run = pin!(self.clone().flow_run(call, flow.to_string(), parameters));
        let outcome = self.contained(id, RunKind::Flow, || format!("flow `{flow}`"), flow_run).await.result;
        if let Some(barrier) = self.recorder.barrier() {
            barrier.await;
        }
        let state = match &outcome {
            Ok(_) => StateType::Completed,
            Err(_) if self.paused.get().is_some() => StateType::Paused,
            Err(failure) => failure.end_state(),
        };
        FlowOutcome {
            id,
            name,
            state,
            message: outcome.as_ref().err().map(|f| f.message.clone()),
            result: outcome.ok().map(Arc::from),
        }
    }

    /// Runs `run` (the flow or task run `id`); should the host panic
    /// anywhere in it, the run ends `Crashed` with the panic's message
    /// instead of staying where it was forever.
    /// The run is taken pinned where the caller holds it (see [`guard`]).
    async fn contained(
        &self,
        id: RunId,
        kind: RunKind,
        what: impl FnOnce() -> String,
        run: Pin<&mut impl Future<Output = Ended>>,
    ) -> Ended {
        let panic = match AssertUnwindSafe(run).catch_unwind().await {
            Ok(ended) => return ended,
            Err(panic) => panic,
        };
        let failure = host_fault(&what(), &guard::message_of(&*panic));
        self.record(Event::State(StateRecord {
            run: id,
            kind,
            state: failure.end_state(),
            message: Some(failure.message.clone()),
            attempt: 1,
            result: None,
            time: Utc::now(),
        }));
        Ended::from(Err(failure))
    }

    fn record(&self, event: Event) {
        self.recorder.record_owned(event);
    }

    async fn flow_run(self: Arc<Self>, call: FlowCall, flow: String, parameters: String) -> Ended {
        let mut state = Tracker::new(self.clone(), call.id, RunKind::Flow);
        let result = self.flow_run_steps(&mut state, call, flow, parameters).await;
        Ended { result, at: state.ended_at }
    }

    async fn flow_run_steps(
        self: &Arc<Self>,
        state: &mut Tracker,
        FlowCall { id, name, parent, created, call }: FlowCall,
        flow: String,
        parameters: String,
    ) -> Result<String, Failure> {
        // A subflow dropped with its caller's instance still gets a final state; a top-level run is the service's.
        state.ends_on_drop = parent.is_some();
        state.attempt = self.settings.attempt;
        let started = parent.is_none() && self.settings.started_by_claim;
        // A run started by its claim exists already, with its states so far.
        if !started {
            self.record(Event::FlowRunCreated(FlowRunRecord {
                id,
                name: name.clone(),
                flow: flow.clone(),
                parent,
                deployment: self.settings.deployment.clone(),
                parameters: serde_json::from_str(&parameters).unwrap_or(serde_json::Value::Null),
                artifact_digest: self.program.digest.to_string(),
                created,
                scheduled: if parent.is_none() { self.settings.scheduled_time } else { None },
                tenant: None,
                call,
            }));
        }
        if crate::observe::traces::enabled() {
            let span_parent = match parent {
                Some(parent) => self.flow_spans.lock().expect("flow spans lock").get(&parent).cloned(),
                None => self.trace_parent.clone(),
            };
            state.trace = Some(trace::Traced::flow(span_parent, id, &name, &flow, parent.is_some()));
        }
        if started {
            state.assume(StateType::Pending, None);
            state.assume(StateType::Running, None);
        } else {
            state.go(StateType::Pending, None, None);
        }
        if let Err(failure) = self.check_payload("parameters", &flow, &parameters) {
            return state.fail(failure);
        }
        self.flow_runs
            .lock()
            .expect("runs lock")
            .insert(id, Arc::new(FlowRunInfo { name, flow: flow.clone(), parameters: parameters.clone() }));
        if !started {
            state.go(StateType::Running, self.resume_message(id), None);
            if let Some(barrier) = self.recorder.barrier() {
                barrier.await;
            }
        }
        if let Err(failure) = self.check_recorded() {
            return state.fail(failure);
        }
        let scope = Scope { flow_run: id, task_run: None, attempt: self.settings.attempt };
        let _slot = match self.instance_slot() {
            Ok(slot) => slot,
            Err(failure) => return state.fail(failure),
        };
        let determinism = FlowDeterminism { clock: FlowClock::starting_at(created), seed: seed_of(id) };
        // A flow's instance has no CPU limit of its own: it counts against the run's.
        let meter = CpuMeter::new(None, self.cpu.clone());
        let called = self
            .call_fresh_instance(
                &meter,
                scope,
                Some(determinism),
                self.settings.flow_timeout,
                Export::Flow(&flow, &parameters),
            )
            .await;
        let (result, mut live) = match called {
            Ok(called) => called,
            Err(failure) => return state.fail(failure),
        };
        // Tasks it submitted and did not wait for are stopped and ended before the flow run is.
        live.store.data_mut().submitted.stop().await;
        drop(live);
        self.flow_runs.lock().expect("runs lock").remove(&id);
        if parent.is_none() {
            self.log_replayed(id);
        }
        // The flow paused for input: its instance is gone and the run waits, holding nothing.
        if parent.is_none()
            && let Some(message) = self.paused.get()
        {
            state.go(StateType::Paused, Some(message.clone()), None);
            return Err(Failure::new(FailureKind::Cancelled, message.clone()));
        }
        // Whatever the guest made of its tasks' failures, a run stopped by a run-wide limit ends on that.
        let result = match (result, self.halt_reason(|| format!("flow `{flow}`"))) {
            (Err(_), Some(halt)) => Err(halt),
            (Ok(_), _) if self.halted.get().is_some() => Err(self.halted.get().cloned().expect("checked")),
            (result, _) => result,
        };
        match result.and_then(|json| self.check_payload("result", &flow, &json).map(|()| json)) {
            Ok(json) => {
                state.go(StateType::Completed, None, Some(Arc::from(json.as_str())));
                Ok(json)
            }
            Err(failure) => state.fail(failure),
        }
    }

    /// Creates the task run (its id and name) at once, in call order, so
    /// that tasks submitted together are named in the order they were given.
    /// Its tracker ends it (`Cancelled`) if it is dropped before it ends.
    fn create_task_run(
        self: &Arc<Self>,
        parent: &Scope,
        task: &str,
        input: &str,
        call: Option<CallPosition>,
    ) -> Option<(Tracker, String)> {
        self.program.description.task(task)?;
        let id = RunId::new();
        let name = self.task_run_name(parent.flow_run, task);
        self.record(Event::TaskRunCreated(TaskRunRecord {
            id,
            flow_run: parent.flow_run,
            task: task.to_string(),
            name: name.clone(),
            input: input.to_string(),
            created: Utc::now(),
            call,
        }));
        let mut tracker = Tracker::new(self.clone(), id, RunKind::Task);
        tracker.ends_on_drop = true;
        if crate::observe::traces::enabled() {
            let span_parent = self.flow_spans.lock().expect("flow spans lock").get(&parent.flow_run).cloned();
            tracker.trace = Some(trace::Traced::task(span_parent, id, &name, task, parent.flow_run));
        }
        Some((tracker, name))
    }

    /// Counts `calls` more task runs; past the run's limit nothing is
    /// created and the run is stopped, so a guest cannot make the host
    /// create (and fail) task runs one by one without end.
    fn reserve_tasks(&self, calls: u64, what: impl FnOnce() -> String) -> Result<(), Failure> {
        let limit = self.settings.max_tasks_per_run;
        let before = self.tasks_created.fetch_add(calls, Ordering::Relaxed);
        if before.saturating_add(calls) <= limit {
            return Ok(());
        }
        let failure = self.halted.get_or_init(|| Failure {
            kind: FailureKind::Failed,
            message: format!(
                "task limit reached: a flow run may start at most {limit} task runs, and {} would pass it \
                 ({} started before); the run was stopped",
                what(),
                before.min(limit)
            ),
            retryable: false,
        });
        Err(failure.clone())
    }

    /// Holds `bytes` of submitted calls until the returned guard drops;
    /// past the run's budget the `submit` is refused and the run stopped.
    fn reserve_pending(&self, bytes: u64, calls: usize) -> Result<PendingBytes, Failure> {
        let before = self.pending_bytes.fetch_add(bytes, Ordering::Relaxed);
        let reserved = PendingBytes { counter: self.pending_bytes.clone(), bytes };
        if before.saturating_add(bytes) <= MAX_PENDING_BYTES {
            return Ok(reserved);
        }
        let failure = self.halted.get_or_init(|| Failure {
            kind: FailureKind::Failed,
            message: format!(
                "a `submit` of {calls} calls would hold {} MiB of task inputs waiting to run, over the limit of {} MiB \
                 per flow run; submit fewer or smaller calls at a time. The run was stopped",
                (before + bytes) >> 20,
                MAX_PENDING_BYTES >> 20
            ),
            retryable: false,
        });
        Err(failure.clone())
    }

    async fn task_run(
        self: Arc<Self>,
        parent: Scope,
        (mut state, name): (Tracker, String),
        task: &str,
        input: String,
    ) -> Ended {
        let result = self.task_run_steps(parent, &mut state, name, task, input).await;
        Ended { result, at: state.ended_at }
    }

    async fn task_run_steps(
        self: &Arc<Self>,
        parent: Scope,
        state: &mut Tracker,
        name: String,
        task: &str,
        input: String,
    ) -> Result<String, Failure> {
        let id = state.run;
        let policy = self.program.description.task(task).map(|t| t.policy.clone()).unwrap_or_default();
        state.go(StateType::Pending, None, None);
        if let Err(failure) = self.check_task_input(task, &input) {
            return state.fail(failure);
        }
        if let Some(halt) = self.halt_reason(|| format!("task `{task}`")) {
            return state.fail(halt);
        }
        let cache_key = policy.cache.then(|| self.cache_key(task, &input));
        if let Some(key) = &cache_key
            && let Some(hit) = self.cache.get(&self.settings.tenant, key, Utc::now())
        {
            state.go(StateType::Cached, None, Some(hit.clone()));
            return Ok(hit.to_string());
        }
        self.task_runs.lock().expect("task runs lock").insert(id, Arc::new(TaskRunInfo { name }));
        let timeout = policy.timeout_ms.map(Duration::from_millis).or(self.settings.default_task_timeout);
        let max_attempts = policy.max_attempts();
        let mut attempt = 1;
        let outcome = loop {
            let running = if attempt == 1 { StateType::Running } else { StateType::Retrying };
            state.attempt = attempt;
            state.go(running, None, None);
            let scope = Scope { flow_run: parent.flow_run, task_run: Some(id), attempt };
            let result = self.clone().task_attempt(scope, task, &input, timeout).await;
            let result = result.and_then(|json| self.check_payload("result", task, &json).map(|()| json));
            match result {
                Ok(json) => break Ok(json),
                Err(failure) if failure.retryable && attempt < max_attempts && !self.cancel.is_cancelled() => {
                    let delay = policy.retry_delay(attempt, rand::random::<f64>());
                    let message = format!("Retry {attempt}/{} in {} after: {failure}", policy.retries, words(delay));
                    state.go(StateType::AwaitingRetry, Some(message), None);
                    crate::observe::metrics().task_retries.inc();
                    if guard(pin!(tokio::time::sleep(delay)), None, &self.cancel).await.is_err() {
                        break Err(Failure::new(FailureKind::Cancelled, "the run was cancelled"));
                    }
                    attempt += 1;
                }
                Err(failure) => break Err(failure),
            }
        };
        self.task_runs.lock().expect("task runs lock").remove(&id);
        match outcome {
            Ok(json) => {
                let result: Arc<str> = Arc::from(json.as_str());
                if let Some(key) = &cache_key {
                    let expires = policy.cache_expiration_ms.map(|ms| Utc::now() + Duration::from_millis(ms));
                    self.cache.put(&self.settings.tenant, key, result.clone(), expires);
                }
                state.go(StateType::Completed, None, Some(result));
                Ok(json)
            }
            Err(failure) => state.fail(failure),
        }
    }

    async fn task_attempt(
        self: Arc<Self>,
        scope: Scope,
        task: &str,
        input: &str,
        timeout: Option<Duration>,
    ) -> Result<String, Failure> {
        // Strict: the attempt's `Running` state is durable before any guest code runs.
        if self.settings.durability == Durability::Strict
            && let Some(barrier) = self.recorder.barrier()
        {
            barrier.await;
        }
        self.check_recorded()?;
        let _slot = self.instance_slot()?;
        let started = std::time::Instant::now();
        let meter = CpuMeter::new(self.settings.task_cpu_limit, self.cpu.clone());
        let (result, mut live) =
            self.call_fresh_instance(&meter, scope, None, timeout, Export::Task(task, input)).await?;
        live.store.data_mut().submitted.stop().await;
        // A task that tripped a run-wide limit (its `submit` was refused) ends on it, with no retry.
        let result = match (result, self.halted.get()) {
            (Err(_), Some(halt)) => Err(halt.clone()),
            (result, _) => result,
        };
        let metrics = crate::observe::metrics();
        metrics.task_attempt_duration.observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(_) => metrics.task_attempts_completed.inc(),
            Err(_) => metrics.task_attempts_failed.inc(),
        }
        result
    }

    /// Calls `export` in a fresh instance serving `scope`, bounded by `timeout`
    /// and the run's cancellation, its guest code (instantiation included)
    /// charged to `meter`; the call's result, and the instance for what
    /// follows it (stopping the tasks it submitted).
    async fn call_fresh_instance(
        self: &Arc<Self>,
        meter: &CpuMeter,
        scope: Scope,
        determinism: Option<FlowDeterminism>,
        timeout: Option<Duration>,
        export: Export<'_>,
    ) -> Result<(Result<String, Failure>, crate::sandbox::program::Live), Failure> {
        let call = async {
            let mut live = self.instantiate(scope, determinism, meter.clone()).await?;
            let (live_flow, store) = (&live.flow, &mut live.store);
            let (outcome, kind, name) = match export {
                Export::Flow(flow, parameters) => {
                    let call = pin!(live_flow.call_run_flow(store, flow, parameters));
                    (guard(call, timeout, &self.cancel).await, "flow", flow)
                }
                Export::Task(task, input) => {
                    let call = pin!(live_flow.call_run_task(store, task, input));
                    (guard(call, timeout, &self.cancel).await, "task", task)
                }
            };
            Ok((settle(outcome, &live.store, kind, name, self.settings.max_payload_bytes), live))
        };
        metered(meter, pin!(call)).await
    }

    async fn instantiate(
        self: &Arc<Self>,
        scope: Scope,
        determinism: Option<FlowDeterminism>,
        cpu: CpuMeter,
    ) -> Result<crate::sandbox::program::Live, Failure> {
        let config = InstanceConfig {
            memory_limit: self.settings.memory_limit.unwrap_or_else(|| self.program.memory_limit()),
            cpu,
            grants: self.settings.grants.clone(),
            determinism,
        };
        self.program.instantiate_with(self.clone(), scope, &config).await
    }

    /// Why the run was stopped as a whole, as the failure of `what`: out of
    /// CPU time, or past its instance limit.
    fn halt_reason(&self, what: impl FnOnce() -> String) -> Option<Failure> {
        if self.cpu.exhausted() {
            let limit = self.cpu.limit().unwrap_or_default();
            let message = CpuExceeded::Run(limit).message(&what());
            return Some(Failure { kind: FailureKind::TimedOut, message, retryable: false });
        }
        self.halted.get().cloned()
    }

    /// Halts the run when its recorder could not make its states durable:
    /// guest code never runs ahead of an unrecorded history.
    fn check_recorded(&self) -> Result<(), Failure> {
        let Some(why) = self.recorder.failure() else { return Ok(()) };
        let failure = self.halted.get_or_init(|| Failure {
            kind: FailureKind::Crashed,
            message: format!("{why}; the run was stopped because its states could not be recorded"),
            retryable: false,
        });
        Err(failure.clone())
    }

    /// Counts an instance about to be made; past the run's limit, halts the run.
    fn instance_slot(&self) -> Result<InstanceSlot<'_>, Failure> {
        let limit = self.settings.max_live_instances;
        let slot = InstanceSlot(&self.live_instances, crate::observe::metrics::InstanceAlive::new());
        if self.live_instances.fetch_add(1, Ordering::Relaxed) < limit {
            return Ok(slot);
        }
        let failure = self.halted.get_or_init(|| Failure {
            kind: FailureKind::Failed,
            message: format!(
                "instance limit reached: a flow run may have at most {limit} instances alive at once \
                 (its flow, subflows and tasks waiting on tasks); the run was stopped"
            ),
            retryable: false,
        });
        Err(failure.clone())
    }

    /// Takes `count` consecutive call positions of the flow run `scope` serves; none
    /// for a task's own calls, which are not journaled (the task is, as a whole).
    fn reserve_positions(&self, scope: &Scope, count: u64) -> Option<u64> {
        if scope.task_run.is_some() {
            return None;
        }
        let mut positions = self.positions.lock().expect("positions lock");
        let next = positions.entry(scope.flow_run).or_insert(0);
        let base = *next;
        *next += count;
        Some(base)
    }

    /// What to do with the call at `base + offset` of a flow: replay what an
    /// earlier attempt completed, stop the run on a divergence, or run it.
    fn journaled(
        &self,
        scope: &Scope,
        base: Option<u64>,
        offset: u64,
        kind: RunKind,
        name: &str,
        input: &str,
    ) -> Decision {
        let Some(base) = base else { return Decision::Run(None, None) };
        let position = base + offset;
        let call = Some(CallPosition { position, batch: base, flow_attempt: self.settings.attempt });
        let Some(journal) = self.settings.journal.flow(scope.flow_run) else { return Decision::Run(call, None) };
        if !journal.covers(position) {
            return Decision::Run(call, None);
        }
        match journal.replay(position, kind, name, &input_digest(kind, input)) {
            Replay::Fresh => Decision::Run(call, None),
            Replay::Again(entry) => {
                let resumed = (kind == RunKind::Flow).then_some((entry.run, entry.created));
                Decision::Run(call, resumed)
            }
            Replay::Completed(_, result, at) => {
                self.replayed.fetch_add(1, Ordering::Relaxed);
                if kind == RunKind::Task {
                    // Later task runs of the same task keep the names they had.
                    self.task_run_name(scope.flow_run, name);
                }
                Decision::Replayed(Ended { result: Ok(result.to_string()), at: Some(at) })
            }
            Replay::Diverged(message) => {
                let failure = Failure { kind: FailureKind::Failed, message, retryable: false };
                Decision::Diverged(self.halted.get_or_init(|| failure).clone())
            }
        }
    }

    /// The `Running` message of an attempt that resumes from a journal.
    fn resume_message(&self, flow_run: RunId) -> Option<String> {
        let journal = self.settings.journal.flow(flow_run)?;
        Some(format!(
            "Attempt {}: resuming from the journal ({} completed calls of earlier attempts can be replayed)",
            self.settings.attempt,
            journal.replayable()
        ))
    }

    /// Says in the run's log how many calls this attempt replayed.
    fn log_replayed(&self, flow_run: RunId) {
        let replayed = self.replayed.load(Ordering::Relaxed);
        if self.settings.attempt > 1 || replayed > 0 {
            let scope = Scope { flow_run, task_run: None, attempt: self.settings.attempt };
            let message = format!(
                "Attempt {} replayed {replayed} calls from the journal instead of running them again",
                self.settings.attempt
            );
            self.log(&scope, LogLevel::Info, &message);
        }
    }

    fn task_run_name(&self, flow_run: RunId, task: &str) -> String {
        let mut counters = self.task_counters.lock().expect("counters lock");
        let of_flow = counters.entry(flow_run).or_default();
        // Looked up by `&str` first: the task's name is copied once per flow run, not per call.
        let counter = match of_flow.get_mut(task) {
            Some(counter) => counter,
            None => of_flow.entry(task.to_string()).or_insert(0),
        };
        // Built by hand: `format!` cost more than the rest of naming (callgrind).
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(*counter);
        let mut name = String::with_capacity(task.len() + 1 + digits.len());
        name.push_str(task);
        name.push('-');
        name.push_str(digits);
        *counter += 1;
        name
    }

    fn cache_key(&self, task: &str, input: &str) -> String {
        let mut hasher = Sha256::new();
        for part in [self.program.digest.hex().as_str(), task, input] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        hex::encode(hasher.finalize())
    }

    /// A payload crossing the boundary must fit the limit and be JSON: it is
    /// stored, shown and handed to other instances as JSON.
    fn check_payload(&self, what: &str, owner: &str, json: &str) -> Result<(), Failure> {
        self.check_payload_size(what, owner, json)?;
        serde_json::from_str::<serde::de::IgnoredAny>(json).map_err(|err| not_json(what, owner, &err))?;
        Ok(())
    }

    fn check_payload_size(&self, what: &str, owner: &str, json: &str) -> Result<(), Failure> {
        let limit = self.settings.max_payload_bytes;
        if json.len() <= limit {
            return Ok(());
        }
        let message = format!("{} ({} bytes)", over_payload_limit(what, owner, limit), json.len());
        Err(Failure { kind: FailureKind::Failed, message, retryable: false })
    }

    /// A task's input is a payload and, when its task declares a schema,
    /// fits it: parsed once for both checks.
    fn check_task_input(&self, task: &str, input: &str) -> Result<(), Failure> {
        let Some(schema) = self.program.task_input_schema(task) else {
            return self.check_payload("input", task, input);
        };
        self.check_payload_size("input", task, input)?;
        let value: serde_json::Value = serde_json::from_str(input).map_err(|err| not_json("input", task, &err))?;
        crate::core::describe_check::check_value(task, schema, &value)
            .map_err(|problem| Failure::new(FailureKind::InvalidInput, problem))
    }
}

fn not_json(what: &str, owner: &str, err: &serde_json::Error) -> Failure {
    let message =
        format!("{what} of `{owner}` is not valid JSON ({err}); the guest must pass JSON across the boundary");
    Failure { kind: FailureKind::Failed, message, retryable: false }
}

impl RunHost for Runner {
    fn run_task(self: Arc<Self>, scope: Scope, name: String, input: String) -> Outcome {
        let base = self.reserve_positions(&scope, 1);
        let call = match self.journaled(&scope, base, 0, RunKind::Task, &name, &input) {
            Decision::Replayed(ended) => return Box::pin(std::future::ready(ended)),
            Decision::Diverged(failure) => return Box::pin(std::future::ready(Ended::from(Err(failure)))),
            Decision::Run(call, _) => call,
        };
        if let Err(failure) = self.reserve_tasks(1, || format!("a call of `{name}`")) {
            return Box::pin(std::future::ready(Ended::from(Err(failure))));
        }
        match self.create_task_run(&scope, &name, &input, call) {
            Some(created) => Box::pin(async move {
                let id = created.0.run;
                let run = pin!(self.clone().task_run(scope, created, &name, input));
                self.contained(id, RunKind::Task, || format!("task `{name}`"), run).await
            }),
            None => Box::pin(std::future::ready(Ended::from(Err(unknown_task(&name))))),
        }
    }

    fn submit(self: Arc<Self>, scope: Scope, calls: Vec<(String, String)>) -> Result<Vec<Start>, Failure> {
        if let Some(halt) = self.halt_reason(|| "`submit`".into()) {
            return Err(halt);
        }
        // Calls an earlier attempt completed come back at once; the rest are created and run.
        let base = self.reserve_positions(&scope, calls.len() as u64);
        let decisions: Vec<Decision> = calls
            .iter()
            .enumerate()
            .map(|(i, (name, input))| self.journaled(&scope, base, i as u64, RunKind::Task, name, input))
            .collect();
        if let Some(Decision::Diverged(failure)) = decisions.iter().find(|d| matches!(d, Decision::Diverged(_))) {
            return Err(failure.clone());
        }
        let fresh: Vec<&(String, String)> =
            calls.iter().zip(&decisions).filter(|(_, d)| matches!(d, Decision::Run(..))).map(|(c, _)| c).collect();
        // Refused as a whole, before anything is created or held per call.
        self.reserve_tasks(fresh.len() as u64, || format!("a `submit` of {} calls", fresh.len()))?;
        let bytes = fresh.iter().map(|(name, input)| (name.len() + input.len() + PENDING_CALL_OVERHEAD) as u64).sum();
        let reserved = Arc::new(self.reserve_pending(bytes, fresh.len())?);
        let starts = calls.into_iter().zip(decisions).map(|((name, input), decision)| -> Start {
            let call = match decision {
                Decision::Run(call, _) => call,
                Decision::Replayed(ended) => return Box::new(move || Box::pin(std::future::ready(ended))),
                Decision::Diverged(_) => unreachable!("refused above"),
            };
            let reserved = reserved.clone();
            match self.create_task_run(&scope, &name, &input, call) {
                Some(created) => {
                    let (runner, scope) = (self.clone(), scope.clone());
                    Box::new(move || {
                        Box::pin(async move {
                            let id = created.0.run;
                            let run = pin!(runner.clone().task_run(scope, created, &name, input));
                            let outcome = runner.contained(id, RunKind::Task, || format!("task `{name}`"), run).await;
                            drop(reserved);
                            outcome
                        })
                    })
                }
                None => Box::new(move || Box::pin(std::future::ready(Ended::from(Err(unknown_task(&name)))))),
            }
        });
        Ok(starts.collect())
    }

    fn submit_concurrency(&self) -> usize {
        // A quarter of the instance limit: one `submit` alone never reaches it,
        // and a few at once (or tasks that submit) leave room for each other.
        (self.settings.max_live_instances / 4).max(1)
    }

    fn run_subflow(self: Arc<Self>, scope: Scope, name: String, parameters: String) -> Outcome {
        let base = self.reserve_positions(&scope, 1);
        let (call, resumed) = match self.journaled(&scope, base, 0, RunKind::Flow, &name, &parameters) {
            Decision::Replayed(ended) => return Box::pin(std::future::ready(ended)),
            Decision::Diverged(failure) => return Box::pin(std::future::ready(Ended::from(Err(failure)))),
            Decision::Run(call, resumed) => (call, resumed),
        };
        Box::pin(async move {
            if self.program.description.flow(Some(&name)).is_err() {
                let unknown = Failure::new(FailureKind::Unknown, format!("no flow named `{name}` in this component"));
                return Ended::from(Err(unknown));
            }
            // A subflow an earlier attempt left unfinished resumes under its id, from its own journal.
            let (id, created) = resumed.unwrap_or_else(|| (RunId::new(), Utc::now()));
            let run_name = crate::core::ids::run_name(&mut rand::rng());
            let call = FlowCall { id, name: run_name, parent: Some(scope.flow_run), created, call };
            self.flow_run(call, name, parameters).await
        })
    }

    fn log(&self, scope: &Scope, level: LogLevel, message: &str) {
        let message = crate::sandbox::stdio::cap_line(message);
        let limit = self.settings.max_log_bytes;
        let before = self.log_bytes.fetch_add(message.len() as u64, Ordering::Relaxed);
        let message = if before + message.len() as u64 <= limit {
            message.into_owned()
        } else if before <= limit {
            format!("[log limit of {} MiB reached: further lines of this run are dropped]", limit >> 20)
        } else {
            return;
        };
        self.record(Event::Log(LogRecord {
            flow_run: scope.flow_run,
            task_run: scope.task_run,
            level,
            message,
            time: Utc::now(),
        }));
    }

    fn log_full(&self) -> bool {
        self.log_bytes.load(Ordering::Relaxed) > self.settings.max_log_bytes
    }

    fn emit_event(&self, scope: &Scope, name: String, payload: serde_json::Value) -> Result<(), String> {
        // Events share the run's log budget: a flow that emits without end
        // fills its own budget, not the store.
        let limit = self.settings.max_log_bytes;
        let size = (name.len() + payload.to_string().len()) as u64;
        if self.log_bytes.fetch_add(size, Ordering::Relaxed) + size > limit {
            return Err(format!("this run's log limit of {} MiB is reached: it can emit no more events", limit >> 20));
        }
        self.record(Event::Emitted(EmittedRecord {
            flow_run: scope.flow_run,
            task_run: scope.task_run,
            name,
            payload,
            time: Utc::now(),
        }));
        Ok(())
    }

    fn suspend(self: Arc<Self>, scope: Scope, request: PauseRequest) -> Suspension {
        if scope.task_run.is_some() || self.root.get() != Some(&scope.flow_run) {
            let failure = Failure::new(
                FailureKind::Failed,
                "only a top-level flow can pause for input: `suspend` was called in a task or a subflow",
            );
            return Suspension::Returns(Ended::from(Err(failure)));
        }
        let input = request.journal_input();
        let base = self.reserve_positions(&scope, 1);
        let call = match self.journaled(&scope, base, 0, RunKind::Task, PAUSE_TASK, &input) {
            // An earlier attempt paused here and was resumed: the call returns its input.
            Decision::Replayed(ended) => return Suspension::Returns(ended),
            Decision::Diverged(failure) => return Suspension::Returns(Ended::from(Err(failure))),
            Decision::Run(call, _) => call,
        };
        let id = RunId::new();
        let name = self.task_run_name(scope.flow_run, PAUSE_TASK).replacen("sluice:", "", 1);
        let now = Utc::now();
        self.record(Event::TaskRunCreated(TaskRunRecord {
            id,
            flow_run: scope.flow_run,
            task: PAUSE_TASK.to_string(),
            name,
            input,
            created: now,
            call,
        }));
        let message = format!("Paused for input: {}", request.prompt);
        let waiting = serde_json::to_string(&Waiting::from(request, now)).expect("a pause serialises");
        let mut tracker = Tracker::new(self.clone(), id, RunKind::Task);
        tracker.go(StateType::Pending, None, None);
        // The pause waits holding its request and deadline; resuming completes it with the input.
        tracker.go(StateType::Paused, Some(message.clone()), Some(Arc::from(waiting)));
        _ = self.paused.set(message.clone());
        Suspension::Paused(message)
    }

    fn context(&self, scope: &Scope) -> RunContext {
        let flow = self.flow_runs.lock().expect("runs lock").get(&scope.flow_run).cloned();
        let task = scope.task_run.and_then(|id| self.task_runs.lock().expect("task runs lock").get(&id).cloned());
        RunContext {
            flow_run_id: scope.flow_run.to_string(),
            flow_run_name: flow.as_ref().map(|f| f.name.clone()).unwrap_or_default(),
            flow_name: flow.as_ref().map(|f| f.flow.clone()).unwrap_or_default(),
            deployment: self.settings.deployment.clone(),
            attempt: scope.attempt,
            scheduled_time: self.settings.scheduled_time.map(|t| t.to_rfc3339()),
            parameters: flow.map(|f| f.parameters.clone()).unwrap_or_else(|| "{}".into()),
            task_run_id: scope.task_run.map(|id| id.to_string()),
            task_run_name: task.map(|t| t.name.clone()),
        }
    }
}

/// A flow run (or subflow run) about to run.
struct FlowCall {
    id: RunId,
    name: String,
    parent: Option<RunId>,
    created: DateTime<Utc>,
    call: Option<CallPosition>,
}

/// What a flow's call turns into under replay.
enum Decision {
    /// Run it, recorded at this position; a subflow resumes under the recorded id and creation time.
    Run(Option<CallPosition>, Option<(RunId, DateTime<Utc>)>),
    /// An earlier attempt completed it.
    Replayed(Ended),
    /// It is not the call the journal holds here: the run stops.
    Diverged(Failure),
}

/// The random seed of a flow run's instance: the same on every attempt.
fn seed_of(id: RunId) -> u64 {
    let digest = Sha256::digest(id.to_string().as_bytes());
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// Bytes of names and inputs of submitted calls a flow run may hold at once
/// (waiting to run or running), so a guest cannot make the host hold its
/// calls without bound.
const MAX_PENDING_BYTES: u64 = 256 << 20;

/// What one pending call costs the host beyond its name and input: its task
/// run's record, its start and its result channel.
const PENDING_CALL_OVERHEAD: usize = 256;

/// Bytes of submitted calls held until the last of them ends.
struct PendingBytes {
    counter: Arc<AtomicU64>,
    bytes: u64,
}

impl Drop for PendingBytes {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

fn unknown_task(name: &str) -> Failure {
    Failure::new(FailureKind::Unknown, format!("no task named `{name}` in this component"))
}

/// `result of \`task\` exceeds the payload limit of 16 MiB`.
fn over_payload_limit(what: &str, owner: &str, limit: usize) -> String {
    let limit = if limit.is_multiple_of(1 << 20) { format!("{} MiB", limit >> 20) } else { format!("{limit} bytes") };
    format!("{what} of `{owner}` exceeds the payload limit of {limit}")
}

/// One live instance of a run, counted (in the run and in `sluice_instances_alive`) until dropped.
struct InstanceSlot<'a>(&'a AtomicUsize, crate::observe::metrics::InstanceAlive);

impl Drop for InstanceSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A delay for people: `250 ms`, `1.5 s`.
fn words(delay: Duration) -> String {
    if delay < Duration::from_secs(1) {
        format!("{} ms", delay.as_millis())
    } else {
        format!("{:.1} s", delay.as_secs_f64())
    }
}

/// The outcome of a guest call of the `kind` (flow or task) `name`, as a
/// result or a failure.
fn settle(
    outcome: Result<wasmtime::Result<Result<String, crate::sandbox::bindings::RunError>>, Interrupt>,
    store: &wasmtime::Store<crate::sandbox::instance::InstanceState>,
    kind: &str,
    name: &str,
    payload_limit: usize,
) -> Result<String, Failure> {
    // Named only on the paths that fail: a completed call formats nothing.
    let what = || format!("{kind} `{name}`");
    match outcome {
        // wasmtime refuses to copy more than its per-call budget out of the guest: for
        // what the guest returned, that is the payload limit speaking.
        Ok(Err(trap)) if store.data().returned && is_hostcall_fuel(&trap) => {
            Err(Failure::new(FailureKind::Failed, over_payload_limit("result", name, payload_limit)))
        }
        Ok(Err(trap)) if is_hostcall_fuel(&trap) => Err(Failure::new(
            FailureKind::Failed,
            format!("{} passed more data to one host call than the host copies at once (128 MiB)", what()),
        )),
        Err(Interrupt::TimedOut(limit)) => {
            Err(Failure::new(FailureKind::TimedOut, format!("{} exceeded its timeout of {limit:?}", what())))
        }
        Err(Interrupt::Cancelled) => Err(Failure::new(FailureKind::Cancelled, "the run was cancelled")),
        Err(Interrupt::Panicked(panic)) => Err(host_fault(&what(), &panic)),
        Ok(Err(trap)) => {
            let what = what();
            Err(cpu_failure(store, &what).unwrap_or_else(|| crash(store, &trap, &format!("{what} crashed"))))
        }
        Ok(Ok(Err(error))) => Err(guest_error(error)),
        Ok(Ok(Ok(json))) => Ok(json),
    }
}

fn is_hostcall_fuel(trap: &wasmtime::Error) -> bool {
    trap.chain().any(|cause| cause.to_string().contains("fuel allocated for hostcalls has been exhausted"))
}

/// `what` ends `Crashed`: the host panicked while serving it.
fn host_fault(what: &str, panic: &str) -> Failure {
    Failure::new(FailureKind::HostFault, format!("{what} crashed: the host panicked while serving it: {panic}"))
}

/// An error the guest returned. A guest passing on a task's timeout or crash
/// has itself failed: only the host decides that a call timed out, crashed
/// or was cancelled.
fn guest_error(error: crate::sandbox::bindings::RunError) -> Failure {
    let failure = Failure::from(error);
    let prefix = match failure.kind {
        FailureKind::Failed | FailureKind::InvalidInput | FailureKind::Unknown => return failure,
        FailureKind::TimedOut => "timed out",
        FailureKind::Cancelled => "cancelled",
        FailureKind::Crashed | FailureKind::HostFault => "crashed",
    };
    Failure {
        kind: FailureKind::Failed,
        message: format!("{prefix}: {}", failure.message),
        retryable: failure.retryable,
    }
}

/// The export a fresh instance is called for: a flow with its parameters,
/// or a task with its input.
enum Export<'a> {
    Flow(&'a str, &'a str),
    Task(&'a str, &'a str),
}

/// The current state of one run; every move is checked against the table
/// and recorded before the runner goes on.
struct Tracker {
    runner: Arc<Runner>,
    run: RunId,
    kind: RunKind,
    current: Option<StateType>,
    attempt: u32,
    // Whether dropping it before it ends records an end (`Cancelled`).
    ends_on_drop: bool,
    // When it reached its terminal state, as recorded.
    ended_at: Option<DateTime<Utc>>,
    // Its spans, when tracing is on.
    trace: Option<trace::Traced>,
}

impl Tracker {
    fn new(runner: Arc<Runner>, run: RunId, kind: RunKind) -> Self {
        Self { runner, run, kind, current: None, attempt: 1, ends_on_drop: false, ended_at: None, trace: None }
    }

    fn go(&mut self, state: StateType, message: Option<String>, result: Option<Arc<str>>) {
        let time = self.assume(state, message.as_deref());
        self.runner.record(Event::State(StateRecord {
            run: self.run,
            kind: self.kind,
            state,
            message,
            attempt: self.attempt,
            result,
            time,
        }));
    }

    /// Moves to `state` without recording it (it is recorded already); when it moved.
    fn assume(&mut self, state: StateType, message: Option<&str>) -> DateTime<Utc> {
        if let Err(err) = check_transition(self.current, state) {
            // A host bug, not a guest's doing: record it loudly, keep going.
            debug_assert!(false, "{err}");
            self.runner.log(
                &Scope { flow_run: self.run, task_run: None, attempt: self.attempt },
                LogLevel::Error,
                &format!("internal: {err}"),
            );
        }
        self.current = Some(state);
        let time = Utc::now();
        if state.is_terminal() {
            self.ended_at = Some(time);
        }
        if let Some(trace) = self.trace.as_mut() {
            let at = (self.run, self.kind);
            trace.on_state(&self.runner.flow_spans, at, state, self.attempt, message);
        }
        time
    }

    fn fail<T>(&mut self, failure: Failure) -> Result<T, Failure> {
        self.go(failure.end_state(), Some(failure.message.clone()), None);
        Err(failure)
    }
}

impl Drop for Tracker {
    /// A task run (or subflow run) dropped before it ended, because the
    /// instance that started it ended without waiting for it or the run was
    /// stopped, still gets a final state: no run is left in no final state.
    fn drop(&mut self) {
        if !self.ends_on_drop || self.current.is_some_and(StateType::is_terminal) {
            return;
        }
        if self.current.is_none() {
            self.go(StateType::Pending, None, None);
        }
        let message = if self.runner.cancel.is_cancelled() {
            "the run was cancelled".to_string()
        } else if let Some(halt) = self.runner.halted.get() {
            format!("stopped with its flow run: {}", halt.message)
        } else {
            "stopped before it ended: the flow or task that started it ended without waiting for it".to_string()
        };
        self.go(StateType::Cancelled, Some(message), None);
    }
}
