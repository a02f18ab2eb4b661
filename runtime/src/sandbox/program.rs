//! Loading a component: checking that it is a component implementing
//! `sluice:flow`, compiling it (or loading its cached machine code), linking
//! it once (`InstancePre`), and asking it to `describe` itself.

use crate::artifact::Digest;
use crate::core::describe::ComponentDescription;
use crate::core::failure::{Failure, FailureKind};
use crate::core::record::LogLevel;
use crate::sandbox::bindings::{self, Flow, FlowPre, RunContext, RunError, WitVersion, v0_2};
use crate::sandbox::compile_cache::{CompileCache, CompileSource};
use crate::sandbox::cpu::{CpuExceeded, metered};
use crate::sandbox::egress::{Egress, install_crypto_provider};
use crate::sandbox::engine::EngineSettings;
use crate::sandbox::instance::{Ended, InstanceConfig, InstanceState, Outcome, RunHost, Scope};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{CallHook, Engine, Store, UpdateDeadline};

/// Default memory limit of one instance.
pub const DEFAULT_MEMORY_LIMIT: usize = 64 << 20;

/// Why a file cannot be run as a flow component.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not WebAssembly at all.
    #[error(
        "not a WebAssembly file (it does not start with the `\\0asm` magic bytes); build the flow for wasm32-wasip2"
    )]
    NotWasm,
    /// A core module, not a component.
    #[error(
        "this is a core WebAssembly module, not a component; build it with `--target wasm32-wasip2` or wrap it with `wasm-tools component new`"
    )]
    CoreModule,
    /// Wasm that does not parse or validate.
    #[error("the component is not valid WebAssembly: {0}")]
    Invalid(String),
    /// A component that is not a Sluice flow.
    #[error("the component does not implement the world sluice:flow/flow: {0}")]
    NotAFlow(String),
    /// `describe` failed or returned nonsense.
    #[error("the component's `describe` failed: {0}")]
    Describe(String),
}

/// The engine, the linker and the compile cache shared by every program.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<InstanceState>,
    cache: CompileCache,
    memory_limit: usize,
    egress: Egress,
}

impl Sandbox {
    /// A sandbox with these engine settings and compile cache. Guests' https
    /// trusts the CAs of `SLUICE_EXTRA_CA_CERTS` besides the built-in roots;
    /// a file that cannot be used is an error here, before anything runs.
    pub fn new(settings: &EngineSettings, cache: CompileCache) -> anyhow::Result<Self> {
        install_crypto_provider();
        let egress = Egress::from_env()?;
        let engine = settings.build()?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        // Linked for every guest; only a deployment's allow_hosts grant lets a request out.
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        // Both versions of the contract: a component imports one of them.
        Flow::add_to_linker::<InstanceState, HasSelf<InstanceState>>(&mut linker, |state| state)?;
        v0_2::sluice::flow::host::add_to_linker::<InstanceState, HasSelf<InstanceState>>(&mut linker, |state| state)?;
        // 0.2.0's `types` holds only types; its Rust types are 0.1.0's, so it is linked by name here.
        linker.instance("sluice:flow/types@0.2.0")?;
        Ok(Self { engine, linker, cache, memory_limit: DEFAULT_MEMORY_LIMIT, egress })
    }

    /// Sets the memory limit of every instance of programs loaded from now on.
    pub fn with_memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Checks, compiles, links and describes a component.
    pub async fn load(&self, bytes: &[u8]) -> Result<Program, LoadError> {
        check_header(bytes)?;
        let digest = Digest::of(bytes);
        let (component, source) = self
            .cache
            .load_or_compile(&self.engine, &digest, bytes)
            .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        let imports: Vec<String> =
            component.component_type().imports(&self.engine).map(|(name, _)| name.to_string()).collect();
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|e| {
            LoadError::NotAFlow(format!(
                "{e:#}; Sluice provides sluice:flow/host@0.1.0 and @0.2.0, WASI 0.2 (with nothing granted) and \
                 wasi:http (to granted hosts)"
            ))
        })?;
        let wit = WitVersion::of_imports(imports.iter().map(String::as_str));
        let not_a_flow = |e: wasmtime::Error| LoadError::NotAFlow(format!("{e:#}"));
        let pre = match wit {
            WitVersion::V0_1 => FlowPrePerVersion::V0_1(FlowPre::new(instance_pre).map_err(not_a_flow)?),
            WitVersion::V0_2 => FlowPrePerVersion::V0_2(v0_2::FlowPre::new(instance_pre).map_err(not_a_flow)?),
        };
        let mut program = Program {
            digest,
            description: ComponentDescription { version: String::new(), flows: vec![], tasks: vec![] },
            imports,
            wit,
            compile_source: source,
            engine: self.engine.clone(),
            pre,
            memory_limit: self.memory_limit,
            task_inputs: std::collections::HashMap::new(),
            egress: self.egress.clone(),
        };
        program.description = program.describe().await?;
        program.task_inputs = program.description.check().map_err(LoadError::Describe)?;
        Ok(program)
    }
}

fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm);
    }
    // Bytes 4..8 are the version and layer: layer 0 is a core module.
    if bytes[6..8] == [0, 0] {
        return Err(LoadError::CoreModule);
    }
    Ok(())
}

/// A loaded flow component, ready to be instantiated many times.
pub struct Program {
    /// sha256 of its bytes.
    pub digest: Digest,
    /// What `describe` said.
    pub description: ComponentDescription,
    /// Names of the interfaces it imports.
    pub imports: Vec<String>,
    /// The version of `sluice:flow` it was built against.
    pub wit: WitVersion,
    /// Whether its machine code came from the cache.
    pub compile_source: CompileSource,
    engine: Engine,
    pre: FlowPrePerVersion,
    memory_limit: usize,
    // Each task's input schema, compiled once.
    task_inputs: std::collections::HashMap<String, jsonschema::Validator>,
    egress: Egress,
}

/// A component linked once, per version of the contract.
enum FlowPrePerVersion {
    V0_1(FlowPre<InstanceState>),
    V0_2(v0_2::FlowPre<InstanceState>),
}

/// A live instance and its store.
pub struct Live {
    /// The store holding the instance's state.
    pub store: Store<InstanceState>,
    /// The instance's exports.
    pub flow: FlowExports,
}

/// The exports of an instance of either version: the same functions with
/// the same (0.1.0) Rust types.
pub enum FlowExports {
    /// A `sluice:flow@0.1.0` component.
    V0_1(Flow),
    /// A `sluice:flow@0.2.0` component.
    V0_2(v0_2::Flow),
}

impl FlowExports {
    /// Calls `describe`.
    pub async fn call_describe(&self, store: &mut Store<InstanceState>) -> wasmtime::Result<bindings::ComponentInfo> {
        match self {
            FlowExports::V0_1(flow) => flow.call_describe(store).await,
            FlowExports::V0_2(flow) => flow.call_describe(store).await,
        }
    }

    /// Calls `run-flow`.
    pub async fn call_run_flow(
        &self,
        store: &mut Store<InstanceState>,
        name: &str,
        parameters: &str,
    ) -> wasmtime::Result<Result<String, RunError>> {
        match self {
            FlowExports::V0_1(flow) => flow.call_run_flow(store, name, parameters).await,
            FlowExports::V0_2(flow) => flow.call_run_flow(store, name, parameters).await,
        }
    }

    /// Calls `run-task`.
    pub async fn call_run_task(
        &self,
        store: &mut Store<InstanceState>,
        name: &str,
        input: &str,
    ) -> wasmtime::Result<Result<String, RunError>> {
        match self {
            FlowExports::V0_1(flow) => flow.call_run_task(store, name, input).await,
            FlowExports::V0_2(flow) => flow.call_run_task(store, name, input).await,
        }
    }
}

impl Program {
    /// The wasmtime engine it was compiled for.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The compiled input schema of `task`, if it declares one.
    pub fn task_input_schema(&self, task: &str) -> Option<&jsonschema::Validator> {
        self.task_inputs.get(task)
    }

    /// The sandbox's memory limit of each instance, in bytes.
    pub fn memory_limit(&self) -> usize {
        self.memory_limit
    }

    /// A fresh instance serving `scope`, its host calls going to `host`,
    /// with the sandbox's memory limit, no CPU limit and nothing granted.
    pub async fn instantiate(&self, host: Arc<dyn RunHost>, scope: Scope) -> Result<Live, Failure> {
        self.instantiate_with(host, scope, &InstanceConfig::with_memory(self.memory_limit)).await
    }

    /// A fresh instance with its own limits and grants. Instantiating runs
    /// guest code, as its calls do: drive both inside one
    /// [`metered`]`(&config.cpu, …)` so the guest is charged for them, as
    /// one stretch from instantiation to the call's end.
    pub async fn instantiate_with(
        &self,
        host: Arc<dyn RunHost>,
        scope: Scope,
        config: &InstanceConfig,
    ) -> Result<Live, Failure> {
        let state = InstanceState::new(host, scope, config, self.egress.clone());
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        meter_cpu(&mut store);
        let flow = match &self.pre {
            FlowPrePerVersion::V0_1(pre) => pre.instantiate_async(&mut store).await.map(FlowExports::V0_1),
            FlowPrePerVersion::V0_2(pre) => pre.instantiate_async(&mut store).await.map(FlowExports::V0_2),
        };
        match flow {
            Ok(flow) => Ok(Live { store, flow }),
            Err(err) => Err(crash(&store, &err, "instantiation failed")),
        }
    }

    async fn describe(&self) -> Result<ComponentDescription, LoadError> {
        let scope = Scope { flow_run: crate::core::ids::RunId::new(), task_run: None, attempt: 1 };
        let config = InstanceConfig::with_memory(self.memory_limit);
        let info = metered(
            &config.cpu,
            std::pin::pin!(async {
                let mut live = self
                    .instantiate_with(Arc::new(DescribeHost), scope, &config)
                    .await
                    .map_err(|f| LoadError::Describe(f.message))?;
                let call = live.flow.call_describe(&mut live.store);
                match tokio::time::timeout(Duration::from_secs(10), call).await {
                    Ok(Ok(info)) => Ok(info),
                    Ok(Err(err)) => Err(LoadError::Describe(crash(&live.store, &err, "trap").message)),
                    Err(_) => Err(LoadError::Describe("it did not return within 10 s".into())),
                }
            }),
        )
        .await?;
        let description = ComponentDescription::try_from(info).map_err(LoadError::Describe)?;
        if description.flows.is_empty() {
            return Err(LoadError::Describe("it declares no flows".into()));
        }
        Ok(description)
    }
}

/// Makes a running guest check in with its CPU meter at every epoch tick:
/// it yields to the executor (so timeouts, cancels and other guests get
/// their turn) or, past a CPU limit, traps. The meter itself is charged per
/// poll of the calls into the guest ([`metered`]), not at every crossing.
fn meter_cpu(store: &mut Store<InstanceState>) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|context| match context.data().cpu.charge_tick() {
        Ok(()) => Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))),
        Err(exceeded) => Err(cpu_trap(exceeded)),
    });
    store.call_hook(|mut context, hook| {
        match hook {
            CallHook::CallingWasm => context.data_mut().returned = false,
            CallHook::ReturningFromWasm => context.data_mut().returned = true,
            // A guest past its limit (charged when its last stretch ended)
            // is stopped at its next host call, without reading a clock.
            CallHook::CallingHost => {
                if let Some(exceeded) = context.data().cpu.exceeded() {
                    return Err(cpu_trap(exceeded));
                }
            }
            CallHook::ReturningFromHost => {}
        }
        Ok(())
    });
}

/// `TimedOut`, naming the CPU limit, when the instance ran past one; `what`
/// names the call (`task \`x\``). A task's own limit may be retried, the run's not.
pub fn cpu_failure(store: &Store<InstanceState>, what: &str) -> Option<Failure> {
    let exceeded = store.data().cpu.exceeded()?;
    let retryable = matches!(exceeded, CpuExceeded::Instance(_));
    Some(Failure { kind: FailureKind::TimedOut, message: exceeded.message(what), retryable })
}

fn cpu_trap(exceeded: CpuExceeded) -> wasmtime::Error {
    wasmtime::Error::msg(exceeded.message("the guest"))
}

/// The failure of an instance that trapped: the limit it hit if any, else
/// the trap's own message.
pub fn crash(store: &Store<InstanceState>, err: &wasmtime::Error, context: &str) -> Failure {
    if let Some(failure) = cpu_failure(store, "the instance") {
        return failure;
    }
    if let Some(limit) = store.data().limiter.refused() {
        return Failure::new(FailureKind::Crashed, limit.to_string());
    }
    let message = match err.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!("{context}: {trap}"),
        None => format!("{context}: {}", err.root_cause()),
    };
    Failure::new(FailureKind::Crashed, message)
}

/// The host seen by `describe`: it runs nothing.
struct DescribeHost;

impl RunHost for DescribeHost {
    fn run_task(self: Arc<Self>, _: Scope, name: String, _: String) -> Outcome {
        Box::pin(async move {
            Ended::from(Err(Failure::new(FailureKind::Failed, format!("cannot run task `{name}` during describe"))))
        })
    }

    fn run_subflow(self: Arc<Self>, _: Scope, name: String, _: String) -> Outcome {
        Box::pin(async move {
            Ended::from(Err(Failure::new(FailureKind::Failed, format!("cannot run flow `{name}` during describe"))))
        })
    }

    fn log(&self, _: &Scope, _: LogLevel, _: &str) {}

    fn context(&self, scope: &Scope) -> RunContext {
        RunContext {
            flow_run_id: scope.flow_run.to_string(),
            flow_run_name: String::new(),
            flow_name: String::new(),
            deployment: None,
            attempt: 1,
            scheduled_time: None,
            parameters: "{}".into(),
            task_run_id: None,
            task_run_name: None,
        }
    }
}

/// Programs loaded so far, by digest, so later runs of an artifact skip the
/// fetch, the hash and `describe`. Past `MAX_LOADED_PROGRAMS` it starts over.
#[derive(Default)]
pub struct ProgramCache {
    programs: std::sync::Mutex<std::collections::HashMap<Digest, Arc<Program>>>,
}

/// Loaded programs kept in memory at most.
const MAX_LOADED_PROGRAMS: usize = 64;

impl ProgramCache {
    /// The program loaded for `digest`, if any.
    pub fn get(&self, digest: &Digest) -> Option<Arc<Program>> {
        self.programs.lock().expect("programs lock").get(digest).cloned()
    }

    /// Keeps a loaded program.
    pub fn insert(&self, program: Arc<Program>) {
        let mut programs = self.programs.lock().expect("programs lock");
        if programs.len() >= MAX_LOADED_PROGRAMS {
            programs.clear();
        }
        programs.insert(program.digest.clone(), program);
    }
}
