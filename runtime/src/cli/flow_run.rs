//! `sluice flow-run ls|inspect|logs|cancel|retry|resume`: the history, from the state
//! store or the server.

use super::terminal::printable;
use super::{CliError, Output, backend};
use crate::core::state::StateType;
use crate::store::RunFilter;
use std::process::ExitCode;

/// `sluice flow-run` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum FlowRunCommand {
    /// Lists flow runs, newest first.
    Ls {
        /// Only runs of this flow.
        #[arg(long)]
        flow: Option<String>,
        /// Only runs of this deployment (flow/name).
        #[arg(long)]
        deployment: Option<String>,
        /// Only runs in this state (e.g. Completed, Failed).
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// text for people, json for programs.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Shows a run: parameters, result, state history, task runs, subflows.
    Inspect {
        /// The run's id or name.
        run: String,
    },
    /// Shows a run's logs (its tasks' and subflows' included).
    Logs {
        /// The run's id or name.
        run: String,
        /// Only the last N lines.
        #[arg(long, conflicts_with = "follow")]
        tail: Option<usize>,
        /// Keep printing lines as they are written until the run ends (exit code 0 when it completed, 1 otherwise).
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Stops a run: a scheduled one at once, a running one through its runner.
    Cancel {
        /// The run's id or name.
        run: String,
    },
    /// Runs a failed, timed-out, crashed or cancelled run again as its next
    /// attempt: it resumes from its journal, so tasks and subflows that
    /// completed are not run again.
    Retry {
        /// The run's id or name.
        run: String,
    },
    /// Resumes a run paused for input (`Paused`) with input that fits the
    /// schema the flow paused with; its next attempt replays the flow from
    /// its journal and goes on with the input.
    Resume {
        /// The run's id or name.
        run: String,
        /// The input as a JSON object, e.g. '{"approve": true}'.
        #[arg(long)]
        input: String,
    },
}

/// Runs `sluice flow-run …`.
pub async fn run(command: FlowRunCommand) -> Result<ExitCode, CliError> {
    let backend = backend::backend()?;
    match command {
        FlowRunCommand::Ls { flow, deployment, state, limit, output } => {
            let state = state
                .map(|s| StateType::parse(&s).ok_or_else(|| CliError::usage(format!("`{s}` is not a state name"))))
                .transpose()?;
            let runs = backend.flow_runs(&RunFilter { tenant: None, flow, deployment, state, limit }).await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&runs).expect("JSON"));
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:<38} {:<22} {:<16} {:<22} {:<14} CREATED", "ID", "NAME", "FLOW", "DEPLOYMENT", "STATE");
            for r in &runs {
                println!(
                    "{:<38} {:<22} {:<16} {:<22} {:<14} {}",
                    r.id,
                    r.name,
                    r.flow,
                    r.deployment.as_deref().unwrap_or("-"),
                    r.state.map_or("-", |s| s.name()),
                    r.created.format("%Y-%m-%d %H:%M:%S")
                );
            }
        }
        FlowRunCommand::Inspect { run } => {
            let report = backend.inspect_run(&run).await?;
            println!("{}", serde_json::to_string_pretty(&report).expect("JSON"));
        }
        FlowRunCommand::Logs { run, tail, follow: false } => {
            for line in backend.logs(&run, tail).await? {
                print_line(&line);
            }
        }
        FlowRunCommand::Logs { run, follow: true, .. } => {
            let ended = backend.follow_logs(&run, |line| print_line(&line.row)).await?;
            let state = ended.state.map_or("an unknown state", |s| s.name());
            let message = ended.message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default();
            eprintln!("{}", printable(&format!("Flow run '{run}' ended in state {state}{message}")));
            if ended.state != Some(StateType::Completed) {
                return Ok(ExitCode::from(1));
            }
        }
        FlowRunCommand::Cancel { run } => {
            let outcome = backend.cancel(&run).await?;
            println!("{run}: {outcome:?}");
        }
        FlowRunCommand::Retry { run } => {
            let retried = backend.retry(&run).await?;
            println!(
                "Flow run '{}' scheduled again as attempt {}: it resumes from its journal",
                retried.name, retried.attempt
            );
            return run_here(&backend, &retried).await;
        }
        FlowRunCommand::Resume { run, input } => {
            let input: serde_json::Value = serde_json::from_str(&input).map_err(|e| {
                CliError::usage(format!("--input is not JSON ({e}); pass an object like '{{\"approve\": true}}'"))
            })?;
            let resumed = backend.resume(&run, input).await?;
            println!(
                "Flow run '{}' resumed: attempt {} replays the flow from its journal and goes on with the input",
                resumed.name, resumed.attempt
            );
            return run_here(&backend, &resumed).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Without a server nobody else takes a rescheduled run: this process runs it.
async fn run_here(backend: &backend::Backend, run: &crate::store::FlowRunRow) -> Result<ExitCode, CliError> {
    let backend::Backend::Local(service) = backend else { return Ok(ExitCode::SUCCESS) };
    let outcome = service.execute_run(run, None).await?;
    let message = outcome.message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default();
    println!("{}", printable(&format!("Flow run '{}' finished in state {}{message}", outcome.name, outcome.state)));
    // A run that paused again waits for more input: not a failure.
    Ok(if matches!(outcome.state, StateType::Completed | StateType::Paused) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Prints a log line as Prefect does: time, level, which run, message.
fn print_line(line: &crate::store::LogRow) {
    let time = line.time.with_timezone(&chrono::Local).format("%H:%M:%S%.3f");
    let source = if line.task_run.is_some() { "Task run" } else { "Flow run" };
    let text = format!("{time} | {:<7} | {source} '{}' - {}", line.level.name(), line.run_name, line.message);
    println!("{}", printable(&text));
}
