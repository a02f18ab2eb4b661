//! `sluice run flow/deployment`: create a flow run, and, with no server,
//! run it in this process; `--watch` follows its states and logs as they
//! are committed to the state store.

use super::CliError;
use super::backend::{self, Backend};
use super::console::{Console, Stream};
use super::shared_args::ParamArgs;
use super::terminal::printable;
use crate::core::duration::parse_duration;
use crate::core::record::Recorder;
use crate::core::state::StateType;
use chrono::{DateTime, Utc};
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
            println!("  in the UI:  {}/runs/{}", api.url(), run.id);
            if let Some(warning) = unserved(&api, &args.deployment).await {
                eprintln!("warning: {warning}");
            }
            if !args.watch {
                println!("The server runs it; follow it with `sluice flow-run inspect {}`.", run.name);
                return Ok(ExitCode::SUCCESS);
            }
            return super::remote_watch::watch(&api, &run.id).await;
        }
    };
    if let Some(server) = super::serve::served_by(&service, &args.deployment) {
        // `sluice serve` claims its deployment's runs: it runs this one, not this shell.
        println!("`sluice serve` ({server}) serves {} and runs it.", args.deployment);
        if !args.watch {
            return Ok(ExitCode::SUCCESS);
        }
        return watch_served(&service, &run.id).await;
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

/// "this run will wait: …" when no worker asked the server for runs of the
/// deployment's pool (and queue) in the last minute. Best effort: nothing
/// is said when the server cannot tell.
async fn unserved(api: &crate::client::ApiClient, deployment: &str) -> Option<String> {
    use crate::core::pool::DEFAULT_POOL;
    let deployment = api.deployment(deployment).await.ok()?;
    let pool = deployment.pool.as_deref().unwrap_or(DEFAULT_POOL);
    let workers = api.pool_workers(pool).await.ok()?;
    if deployment.served {
        // Only the `sluice serve` process claiming it by name runs it.
        let full_name = deployment.full_name();
        if workers.iter().any(|w| w["deployment"] == full_name.as_str()) {
            return None;
        }
        return Some(format!(
            "this run will wait: no `sluice serve` process serves {full_name} now; serve it again to run it"
        ));
    }
    let serves = |w: &serde_json::Value| {
        let queues: Vec<&str> = w["queues"].as_array().into_iter().flatten().filter_map(|q| q.as_str()).collect();
        // A `sluice serve` takes only its own deployment's runs.
        let serving = !w["deployment"].is_null();
        !serving && (queues.is_empty() || deployment.queue.as_deref().is_none_or(|q| queues.contains(&q)))
    };
    if workers.iter().any(serves) {
        return None;
    }
    let queue = deployment.queue.as_deref().map(|q| format!(" queue `{q}`")).unwrap_or_default();
    Some(format!(
        "this run will wait: no worker serves pool `{pool}`{queue}; start one with `sluice worker --pool {pool}`{}",
        deployment.queue.as_deref().map(|q| format!(" --queue {q}")).unwrap_or_default()
    ))
}

/// Follows a run another process (`sluice serve`) runs, through the store,
/// until it ends.
async fn watch_served(service: &crate::service::Service, id: &str) -> Result<ExitCode, CliError> {
    let mut last = None;
    loop {
        let run = service.flow_run(backend::LOCAL, id)?;
        if run.state != last {
            last = run.state;
            if let Some(state) = run.state {
                println!("Flow run '{}' - {}", run.name, state);
            }
        }
        if run.state.is_some_and(StateType::is_terminal) {
            let message = run.message.as_deref().map(|m| format!("('{m}')")).unwrap_or_else(|| "()".into());
            let state = run.state.expect("checked");
            println!("{}", printable(&format!("Flow run '{}' finished in state {state}{message}", run.name)));
            if let Some(result) = &run.result {
                println!("Result: {}", printable(&result.to_string()));
            }
            return Ok(if state == StateType::Completed { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
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
