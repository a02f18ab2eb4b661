//! `sluice exec`: runs one flow of a component file locally, no server.

use super::console::{Console, Stream};
use super::shared_args::ParamArgs;
use super::{CliError, Output, home, read_component};
use crate::core::duration::parse_duration;
use crate::core::grants::{Grants, HostPattern, check_imports};
use crate::core::ids::{RunId, run_name};
use crate::core::record::{Fanout, Recorder};
use crate::core::state::StateType;
use crate::params;
use crate::runner::{MemoryCache, MemoryRecorder, RunSettings, Runner};
use crate::sandbox::capabilities::InstanceGrants;
use crate::sandbox::compile_cache::{CompileCache, CompileSource};
use crate::sandbox::engine::EngineSettings;
use crate::sandbox::program::Sandbox;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `sluice exec`.
#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// The component (`.wasm`) to run.
    file: PathBuf,
    /// The flow to run (default: the component's first flow).
    #[arg(long)]
    flow: Option<String>,
    #[command(flatten)]
    params: ParamArgs,
    /// text: states and logs as they happen, then the result; json: one report on stdout.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
    /// Memory limit of each instance, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    memory: usize,
    /// Timeout of a task attempt whose task declares none, in seconds.
    #[arg(long, value_name = "SECONDS")]
    task_timeout: Option<f64>,
    /// Timeout of the whole flow run, in seconds.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
    /// CPU time one task attempt may use, e.g. 500ms or 30s (default 5m).
    #[arg(long, value_name = "DURATION")]
    cpu_limit: Option<String>,
    /// CPU time the whole flow run may use, its tasks and subflows included (default 30m).
    #[arg(long, value_name = "DURATION")]
    run_cpu_limit: Option<String>,
    /// Allow outbound HTTP (wasi:http) to this host: api.example.com (ports 80 and 443), host:8443, host:* (every
    /// port), *.example.com, or an address or network (127.0.0.1:8080, 10.0.0.0/8:*), which loopback and private
    /// addresses need. Repeatable.
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<String>,
}

/// A CPU limit flag; none leaves the default.
fn cpu_limit(text: Option<&str>, flag: &str, default: Option<Duration>) -> Result<Option<Duration>, CliError> {
    let Some(text) = text else { return Ok(default) };
    match parse_duration(text).map_err(|e| CliError::usage(format!("{flag}: {e}")))? {
        d if d.is_zero() => Err(CliError::usage(format!("{flag} must be more than 0, such as 30s"))),
        d => Ok(Some(d)),
    }
}

fn seconds(value: Option<f64>, flag: &str) -> Result<Option<Duration>, CliError> {
    value
        .map(|s| {
            Duration::try_from_secs_f64(s)
                .map_err(|_| CliError::usage(format!("{flag} must be a positive number of seconds")))
        })
        .transpose()
}

/// Runs `sluice exec`.
pub async fn run(args: ExecArgs) -> Result<ExitCode, CliError> {
    let bytes = read_component(&args.file)?;
    let memory = args.memory.checked_mul(1 << 20).filter(|m| *m > 0 && *m <= 1 << 30);
    let memory = memory.ok_or_else(|| CliError::usage("--memory must be between 1 and 1024 MiB"))?;
    let defaults = RunSettings::default();
    let allow_hosts = args.allow_hosts.iter().map(|h| HostPattern::parse(h)).collect::<Result<Vec<_>, _>>();
    let settings = RunSettings {
        default_task_timeout: seconds(args.task_timeout, "--task-timeout")?,
        flow_timeout: seconds(args.timeout, "--timeout")?,
        task_cpu_limit: cpu_limit(args.cpu_limit.as_deref(), "--cpu-limit", defaults.task_cpu_limit)?,
        run_cpu_limit: cpu_limit(args.run_cpu_limit.as_deref(), "--run-cpu-limit", defaults.run_cpu_limit)?,
        grants: InstanceGrants { allow_hosts: allow_hosts.map_err(CliError::usage)?.into(), env: Arc::new([]) },
        ..defaults
    };
    let sandbox = Sandbox::new(&EngineSettings::default(), CompileCache::in_dir(home::compile_cache_dir()))?
        .with_memory_limit(memory);
    let program = sandbox
        .load(&bytes)
        .await
        .map_err(|e| CliError::usage(format!("cannot run `{}`: {e}", args.file.display())))?;
    let flow = program.description.flow(args.flow.as_deref()).map_err(CliError::usage)?.clone();
    let grants = Grants { allow_hosts: args.allow_hosts.clone(), secrets: vec![] };
    check_imports(&program.imports, &grants)
        .map_err(|e| CliError::usage(format!("cannot run `{}`: {e}", args.file.display())))?;
    let compile = match program.compile_source {
        CompileSource::Compiled => "compiled",
        CompileSource::Cached => "cached",
    };
    let supplied = args.params.collect()?;
    let parameters = params::resolve(&flow.name, &flow.parameters_schema, supplied).map_err(CliError::usage)?;

    let digest = program.digest.clone();
    let memory_recorder = Arc::new(MemoryRecorder::default());
    let stream = if args.output == Output::Json { Stream::Stderr } else { Stream::Stdout };
    let recorders: Vec<Arc<dyn Recorder>> = vec![memory_recorder.clone(), Arc::new(Console::new(stream))];
    let runner =
        Runner::new(Arc::new(program), Arc::new(Fanout(recorders)), Arc::new(MemoryCache::default()), settings);

    let cancel = runner.cancel_token();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            cancel.cancel();
        }
    });
    let outcome = runner.run(RunId::new(), run_name(&mut rand::rng()), &flow.name, &parameters).await;

    match args.output {
        Output::Text => {
            if let Some(result) = &outcome.result {
                println!("Result: {}", super::terminal::printable(result));
            }
        }
        Output::Json => {
            let mut report = memory_recorder.report();
            report["artifact"] = serde_json::json!(digest);
            report["compile"] = serde_json::json!(compile);
            report["flow_run"] = serde_json::json!({
                "id": outcome.id,
                "name": outcome.name,
                "flow": flow.name,
                "state": outcome.state,
                "message": outcome.message,
                "result": outcome.result.as_deref().and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok()),
            });
            println!("{}", serde_json::to_string_pretty(&report).expect("a report is JSON"));
        }
    }
    Ok(if outcome.state == StateType::Completed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
