//! `sluice run flow/deployment`: create a flow run, and, with no server,
//! run it in this process; `--watch` follows its states and logs as they
//! are committed to the state store.

use super::CliError;
use super::backend::{self, Backend};
use super::console::{Console, Stream};
use super::shared_args::ParamArgs;
use super::terminal::printable;
use crate::client::ApiClient;
use crate::core::duration::parse_duration;
use crate::core::record::Recorder;
use crate::core::state::StateType;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::HashSet;
use std::process::ExitCode;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

/// Arguments of `sluice run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// flow/deployment
    deployment: String,
    /// Parameters overriding the deployment's defaults.
    #[command(flatten)]
    params: ParamArgs,
    /// Start after this long, e.g. 5m.
    #[arg(long, value_name = "DURATION", conflicts_with = "start_at")]
    start_in: Option<String>,
    /// Start at this time (RFC 3339, e.g. 2026-12-01T09:00:00Z).
    #[arg(long, value_name = "TIME")]
    start_at: Option<String>,
    /// Follow states and logs until the run ends; exit non-zero unless it ends Completed.
    #[arg(long)]
    watch: bool,
}

fn start_time(args: &RunArgs) -> Result<Option<DateTime<Utc>>, CliError> {
    if let Some(text) = &args.start_in {
        let delay = parse_duration(text).map_err(CliError::usage)?;
        let delay = chrono::Duration::from_std(delay).map_err(|_| CliError::usage("--start-in is too far away"))?;
        return Ok(Some(Utc::now() + delay));
    }
    if let Some(text) = &args.start_at {
        let time = DateTime::parse_from_rfc3339(text).map_err(|e| {
            CliError::usage(format!("--start-at `{text}` is not an RFC 3339 time such as 2026-12-01T09:00:00Z: {e}"))
        })?;
        return Ok(Some(time.with_timezone(&Utc)));
    }
    Ok(None)
}

/// Runs `sluice run`.
pub async fn run(args: RunArgs) -> Result<ExitCode, CliError> {
    let overrides = args.params.collect()?;
    let start = start_time(&args)?;
    let backend = backend::backend()?;
    let run = backend.create_run(&args.deployment, overrides, start).await?;
    println!("Created flow run '{}' for deployment {}", run.name, args.deployment);
    println!("  id:         {}", run.id);
    println!("  parameters: {}", run.parameters);
    if let Some(scheduled) = run.scheduled {
        println!("  scheduled:  {}", scheduled.to_rfc3339());
    }
    let service = match backend {
        Backend::Local(service) => service,
        Backend::Remote(api) => {
            if !args.watch {
                println!("The server runs it; follow it with `sluice flow-run inspect {}`.", run.name);
                return Ok(ExitCode::SUCCESS);
            }
            return watch_remote(&api, &run.id).await;
        }
    };
    let due = run.scheduled.unwrap_or_else(Utc::now);
    if due > Utc::now() {
        if !args.watch {
            println!("It stays Scheduled until then; `sluice run … --watch` waits for it and runs it here.");
            return Ok(ExitCode::SUCCESS);
        }
        let wait = (due - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
    }
    let mut committed = service.store.subscribe();
    let console = Console::new(Stream::Stdout);
    let mut run = run;
    let outcome = loop {
        let outcome = attempt(&service, &run, &mut committed, &console, args.watch).await?;
        // A failed attempt its deployment's flow retries scheduled again runs here too.
        let current = service.flow_run(backend::LOCAL, &run.id)?;
        if current.state != Some(StateType::Scheduled) {
            break outcome;
        }
        println!("{}", printable(current.message.as_deref().unwrap_or("Scheduled for a flow retry")));
        let wait = (current.scheduled.unwrap_or_else(Utc::now) - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        run = current;
    };
    let message = outcome.message.as_deref().map(|m| format!("('{m}')")).unwrap_or_else(|| "()".into());
    println!("{}", printable(&format!("Flow run '{}' finished in state {}{message}", outcome.name, outcome.state)));
    if let Some(result) = &outcome.result {
        println!("Result: {}", printable(result));
    }
    Ok(if !args.watch || outcome.state == StateType::Completed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Runs one attempt of `run` here, printing its events as they commit when `watch`.
async fn attempt(
    service: &std::sync::Arc<crate::service::Service>,
    run: &crate::store::FlowRunRow,
    committed: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<crate::core::record::Event>>,
    console: &Console,
    watch: bool,
) -> Result<crate::runner::FlowOutcome, CliError> {
    let args_watch = watch;
    let running = {
        let (service, run) = (service.clone(), run.clone());
        tokio::spawn(async move { service.execute_run(&run, None).await })
    };
    tokio::pin!(running);
    let outcome = loop {
        tokio::select! {
            event = committed.recv(), if args_watch => match event {
                Ok(event) => console.record(&event),
                Err(RecvError::Lagged(missed)) => eprintln!("(the watch fell behind: {missed} events not shown)"),
                Err(RecvError::Closed) => {}
            },
            outcome = &mut running => {
                break outcome.map_err(|e| CliError::failure(format!("the run's task failed: {e}")))??;
            }
        }
    };
    // execute_run waited for the last commit, so its events are all queued here.
    if args_watch {
        loop {
            match committed.try_recv() {
                Ok(event) => console.record(&event),
                Err(TryRecvError::Lagged(_)) => continue,
                Err(_) => break,
            }
        }
    }
    Ok(outcome)
}

/// Follows a run on a server: its states, its task runs' ends and its logs,
/// polled, until it ends.
async fn watch_remote(api: &ApiClient, id: &str) -> Result<ExitCode, CliError> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut logs_seen = 0;
    let mut say = |key: String, line: String| {
        if seen.insert(key) {
            println!("{} | {}", chrono::Local::now().format("%H:%M:%S%.3f"), printable(&line));
        }
    };
    loop {
        let report = api.inspect_run(id).await?;
        let run = &report["flow_run"];
        let name = run["name"].as_str().unwrap_or_default().to_string();
        for task in report["task_runs"].as_array().into_iter().flatten() {
            let task_run = &task["task_run"];
            if let Some(line) = finished(task_run) {
                say(
                    format!("task {}", task_run["id"]),
                    format!("Task run '{}' - {line}", task_run["name"].as_str().unwrap_or("")),
                );
            }
        }
        let logs = api.logs(id, None).await?;
        for log in logs.iter().skip(logs_seen) {
            let source = if log.task_run.is_some() { "Task run" } else { "Flow run" };
            let line = format!(
                "{} | {:<7} | {source} '{}' - {}",
                log.time.with_timezone(&chrono::Local).format("%H:%M:%S%.3f"),
                log.level.name(),
                log.run_name,
                log.message
            );
            println!("{}", printable(&line));
        }
        logs_seen = logs.len();
        if run["state"] == "Running" {
            say("running".into(), format!("Flow run '{name}' - Beginning flow run"));
        }
        if let Some(line) = finished(run) {
            say("finished".into(), format!("Flow run '{name}' - {line}"));
            if run["result"] != Value::Null {
                println!("Result: {}", run["result"]);
            }
            return Ok(if run["state"] == "Completed" { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// "Finished in state X('message')" for a run that has ended.
fn finished(run: &Value) -> Option<String> {
    let state = run["state"].as_str().and_then(StateType::parse)?;
    if !state.is_terminal() {
        return None;
    }
    let message = run["message"].as_str().map(|m| format!("'{m}'")).unwrap_or_default();
    Some(format!("Finished in state {state}({message})"))
}
