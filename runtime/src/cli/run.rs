//! `sluice run flow/deployment`: create a flow run, and, with no server,
//! run it in this process; `--watch` follows its states and logs as they
//! are committed to the state store.

use super::console::{Console, Stream};
use super::{CliError, context};
use crate::core::duration::parse_duration;
use crate::core::record::Recorder;
use crate::core::state::StateType;
use crate::params;
use chrono::{DateTime, Utc};
use std::process::ExitCode;
use std::sync::Arc;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

/// Arguments of `sluice run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// flow/deployment
    deployment: String,
    /// A parameter overriding the deployment's default, as key=value. Repeatable.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Parameters as a JSON object or @FILE.
    #[arg(long = "params", value_name = "JSON|@FILE")]
    params_object: Option<String>,
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
    let overrides = params::collect(args.params_object.as_deref(), &args.params).map_err(CliError::usage)?;
    let start = start_time(&args)?;
    let service = context::service()?;
    let run = service.create_run(&args.deployment, overrides, start).await?;
    println!("Created flow run '{}' for deployment {}", run.name, args.deployment);
    println!("  id:         {}", run.id);
    println!("  parameters: {}", run.parameters);
    if let Some(scheduled) = run.scheduled {
        println!("  scheduled:  {}", scheduled.to_rfc3339());
    }
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
    let service = Arc::new(service);
    let running = {
        let (service, run) = (service.clone(), run.clone());
        tokio::spawn(async move { service.execute_run(&run, None).await })
    };
    tokio::pin!(running);
    let outcome = loop {
        tokio::select! {
            event = committed.recv(), if args.watch => match event {
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
    if args.watch {
        loop {
            match committed.try_recv() {
                Ok(event) => console.record(&event),
                Err(TryRecvError::Lagged(_)) => continue,
                Err(_) => break,
            }
        }
    }
    let message = outcome.message.as_deref().map(|m| format!("('{m}')")).unwrap_or_else(|| "()".into());
    println!("Flow run '{}' finished in state {}{message}", outcome.name, outcome.state);
    if let Some(result) = &outcome.result {
        println!("Result: {result}");
    }
    Ok(if !args.watch || outcome.state == StateType::Completed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
