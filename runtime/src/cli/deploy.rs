//! `sluice deploy` (from flags or `sluice.yaml`) and `sluice init`.

use super::shared_args::{ParamArgs, ScheduleArgs};
use super::{CliError, Output, backend};
use crate::core::deployment::{Durability, Grants, Limits};
use crate::core::duration::parse_duration;
use crate::project::{self, ArtifactRef, DeploymentEntry};
use crate::service::{ArtifactSource, DeployRequest, Deployed};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `sluice deploy`.
#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    /// A component file (pushed if needed) or the digest of a pushed one.
    #[arg(required_unless_present = "all")]
    artifact: Option<String>,
    /// Apply every deployment of the project file, idempotently.
    #[arg(long, conflicts_with = "artifact")]
    all: bool,
    /// The project file used by --all.
    #[arg(long, default_value = "sluice.yaml")]
    file: PathBuf,
    /// The flow to deploy (default: the component's flow, when it has only one).
    #[arg(long)]
    flow: Option<String>,
    /// The deployment's name (the run target is flow/name).
    #[arg(long, required_unless_present = "all")]
    name: Option<String>,
    /// Default parameters.
    #[command(flatten)]
    params: ParamArgs,
    /// A tag. Repeatable.
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// What the deployment is for.
    #[arg(long)]
    description: Option<String>,
    /// A version label.
    #[arg(long)]
    version: Option<String>,
    /// Its schedule.
    #[command(flatten)]
    schedule: ScheduleArgs,
    /// Create the schedule paused.
    #[arg(long)]
    paused: bool,
    /// Work pool.
    #[arg(long)]
    pool: Option<String>,
    /// Work queue.
    #[arg(long)]
    queue: Option<String>,
    /// Memory per instance, in MiB.
    #[arg(long, value_name = "MIB")]
    memory: Option<u32>,
    /// Time limit of a run, e.g. 10m.
    #[arg(long, value_name = "DURATION")]
    timeout: Option<String>,
    /// Runs of this deployment allowed at once (the others wait their turn).
    #[arg(long, value_name = "N")]
    concurrency_limit: Option<u32>,
    /// Times a run whose worker died (Crashed) is scheduled again.
    #[arg(long, value_name = "N", default_value_t = 0)]
    retries: u32,
    /// Seconds before a crashed run is scheduled again.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    retry_delay: u64,
    /// Times a flow run that failed, timed out or crashed runs again, resuming
    /// from its journal: tasks it completed are not run again.
    #[arg(long, value_name = "N", default_value_t = 0)]
    flow_retries: u32,
    /// Seconds before the first flow retry.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    flow_retry_delay: u64,
    /// Each later flow retry waits this many times longer (e.g. 2.0).
    #[arg(long, value_name = "FACTOR")]
    flow_retry_backoff: Option<f64>,
    /// CPU time one task attempt may use, e.g. 30s (default 5m).
    #[arg(long, value_name = "DURATION")]
    cpu_limit: Option<String>,
    /// CPU time a whole flow run may use, its tasks and subflows included, e.g. 10m (default 30m).
    #[arg(long, value_name = "DURATION")]
    run_cpu_limit: Option<String>,
    /// Log kept per flow run, in MiB (default 64); later lines are dropped with a marker.
    #[arg(long, value_name = "MIB")]
    log_limit: Option<u32>,
    /// Task runs one flow run may start, subflows' included (default 100000).
    #[arg(long, value_name = "N")]
    max_tasks: Option<u64>,
    /// Largest parameters, task input or result, in MiB (default 16).
    #[arg(long, value_name = "MIB")]
    payload_limit: Option<u32>,
    /// strict (default): each task's start is committed before it runs; batched: records are
    /// committed in the background every few ms, faster, and a crash re-runs the last batch's tasks.
    #[arg(long, value_name = "MODE")]
    durability: Option<Durability>,
    /// Grant outbound HTTP (wasi:http) to this host: api.example.com (ports 80 and 443), host:8443, host:* (every
    /// port), *.example.com, or an address or network (127.0.0.1:8080, 10.0.0.0/8:*), which loopback and private
    /// addresses need. Repeatable.
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<String>,
    /// Grant this secret (`sluice secret set NAME`) as an environment variable of the same name. Repeatable.
    #[arg(long = "secret", value_name = "NAME")]
    secrets: Vec<String>,
    /// text for people, json for programs.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

/// Arguments of `sluice init`.
#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// Where to write the starter project file.
    #[arg(long, default_value = "sluice.yaml")]
    file: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    force: bool,
}

/// Runs `sluice init`.
pub fn init(args: InitArgs) -> Result<ExitCode, CliError> {
    if args.file.exists() && !args.force {
        return Err(CliError::usage(format!("`{}` exists; pass --force to overwrite it", args.file.display())));
    }
    // Paths in the file are relative to its folder: the crate is looked for there.
    let folder = args.file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::write(&args.file, super::starter::starter(folder))
        .map_err(|e| CliError::failure(format!("cannot write `{}`: {e}", args.file.display())))?;
    println!("wrote {}: edit it, then run `sluice deploy --all`", args.file.display());
    Ok(ExitCode::SUCCESS)
}

fn from_flags(args: &DeployArgs) -> Result<DeployRequest, CliError> {
    let artifact = args.artifact.clone().expect("clap requires it without --all");
    let artifact = if artifact.starts_with("sha256:") {
        ArtifactSource::Digest(artifact)
    } else {
        ArtifactSource::File(PathBuf::from(artifact))
    };
    let schedule = args.schedule.schedule()?;
    let timeout = args.timeout.as_deref().map(parse_duration).transpose().map_err(CliError::usage)?;
    let task_cpu = cpu_millis(args.cpu_limit.as_deref(), "--cpu-limit")?;
    let run_cpu = cpu_millis(args.run_cpu_limit.as_deref(), "--run-cpu-limit")?;
    Ok(DeployRequest {
        artifact,
        flow: args.flow.clone(),
        name: args.name.clone().expect("clap requires it without --all"),
        parameters: args.params.collect()?,
        description: args.description.clone(),
        version: args.version.clone(),
        tags: args.tags.clone(),
        schedule,
        paused: args.paused,
        pool: args.pool.clone(),
        queue: args.queue.clone(),
        limits: Limits {
            memory_mib: args.memory,
            timeout_seconds: timeout.map(|t| t.as_secs().max(1)),
            concurrency: args.concurrency_limit,
            crash_retries: args.retries,
            crash_retry_delay_seconds: args.retry_delay,
            retries: args.flow_retries,
            retry_delay_seconds: args.flow_retry_delay,
            retry_backoff: args.flow_retry_backoff,
            task_cpu_ms: task_cpu,
            run_cpu_ms: run_cpu,
            log_mib: args.log_limit,
            max_tasks: args.max_tasks,
            payload_mib: args.payload_limit,
            durability: args.durability,
        },
        grants: Grants { allow_hosts: args.allow_hosts.clone(), secrets: args.secrets.clone() },
        served: false,
    })
}

/// A CPU limit flag in milliseconds; zero would stop every run at once.
fn cpu_millis(text: Option<&str>, flag: &str) -> Result<Option<u64>, CliError> {
    let Some(text) = text else { return Ok(None) };
    match parse_duration(text).map_err(|e| CliError::usage(format!("{flag}: {e}")))? {
        d if d.is_zero() => Err(CliError::usage(format!("{flag} must be more than 0, such as 30s"))),
        d => Ok(Some(d.as_millis().try_into().unwrap_or(u64::MAX))),
    }
}

fn from_entry(entry: DeploymentEntry) -> DeployRequest {
    DeployRequest {
        artifact: match entry.artifact {
            ArtifactRef::Path(path) => ArtifactSource::File(path),
            ArtifactRef::Digest(digest) => ArtifactSource::Digest(digest),
        },
        flow: Some(entry.flow),
        name: entry.name,
        parameters: entry.parameters,
        description: entry.description,
        version: entry.version,
        tags: entry.tags,
        schedule: entry.schedule,
        paused: entry.paused,
        pool: entry.pool,
        queue: entry.queue,
        limits: Limits {
            memory_mib: entry.limits.memory_mib,
            timeout_seconds: entry.limits.timeout.map(|t| t.as_secs().max(1)),
            concurrency: entry.limits.concurrency,
            task_cpu_ms: entry.limits.task_cpu.map(|d| d.as_millis().try_into().unwrap_or(u64::MAX)),
            run_cpu_ms: entry.limits.run_cpu.map(|d| d.as_millis().try_into().unwrap_or(u64::MAX)),
            retries: entry.limits.retries,
            retry_delay_seconds: entry.limits.retry_delay.map_or(0, |d| d.as_secs()),
            durability: entry.limits.durability,
            ..Limits::default()
        },
        grants: entry.grants,
        served: false,
    }
}

fn run_build(command: &str, workdir: &Path) -> Result<(), CliError> {
    eprintln!("build: {command}");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(workdir)
        .status()
        .map_err(|e| CliError::failure(format!("cannot start the build step `{command}`: {e}")))?;
    if !status.success() {
        return Err(CliError::failure(format!("the build step `{command}` failed ({status}); nothing was deployed")));
    }
    Ok(())
}

fn report(deployed: &Deployed, output: Output) {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(deployed).expect("JSON"));
        return;
    }
    let change = match deployed.change {
        crate::store::Change::Created => "created",
        crate::store::Change::Updated => "updated",
        crate::store::Change::Unchanged => "unchanged",
    };
    println!(
        "{} {change} (artifact {})",
        deployed.deployment.full_name(),
        super::push::short(&deployed.deployment.artifact)
    );
}

/// Runs `sluice deploy`.
pub async fn run(args: DeployArgs) -> Result<ExitCode, CliError> {
    let mut triggers = Vec::new();
    let requests = if args.all {
        let project = project::load(&args.file).map_err(CliError::usage)?;
        if let Some(build) = &project.build {
            run_build(&build.command, &build.workdir)?;
        }
        for entry in &project.deployments {
            for (number, trigger) in entry.triggers.iter().enumerate() {
                triggers.push(trigger_automation(entry, number, trigger));
            }
        }
        project.deployments.into_iter().map(from_entry).collect()
    } else {
        vec![from_flags(&args)?]
    };
    let backend = backend::backend()?;
    for deployed in backend.deploy_all(requests).await? {
        report(&deployed, args.output);
    }
    for request in triggers {
        let name = request.name.clone();
        backend.put_automation(request).await.map_err(|e| CliError::from(e).context(&format!("trigger {name}")))?;
        if args.output == Output::Text {
            println!("automation {name} set");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The automation a `triggers:` entry stands for: it runs the deployment it is on.
fn trigger_automation(
    entry: &DeploymentEntry,
    number: usize,
    trigger: &project::TriggerEntry,
) -> crate::service::AutomationRequest {
    crate::service::AutomationRequest {
        name: format!("{}-{}-trigger-{}", entry.flow, entry.name, number + 1),
        trigger: trigger.trigger.clone(),
        action: crate::core::events::Action::RunDeployment {
            deployment: entry.full_name(),
            param_map: trigger.param_map.clone(),
        },
    }
}
