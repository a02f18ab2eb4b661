//! `sluice flow-run ls|inspect|logs`: the history, from the state store.

use super::{CliError, Output, context};
use crate::core::state::StateType;
use crate::service::ServiceError;
use crate::store::{FlowRunRow, RunFilter, StateStore};
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
        #[arg(long)]
        tail: Option<usize>,
    },
}

fn find(store: &dyn StateStore, run: &str) -> Result<FlowRunRow, CliError> {
    store
        .flow_run(run)
        .map_err(ServiceError::from)?
        .ok_or_else(|| CliError::usage(format!("no flow run with id or name `{run}`; `sluice flow-run ls` lists them")))
}

/// Runs `sluice flow-run …`.
pub fn run(command: FlowRunCommand) -> Result<ExitCode, CliError> {
    let service = context::service()?;
    let store: &dyn StateStore = service.store.as_ref();
    match command {
        FlowRunCommand::Ls { flow, deployment, state, limit, output } => {
            let state = state
                .map(|s| StateType::parse(&s).ok_or_else(|| CliError::usage(format!("`{s}` is not a state name"))))
                .transpose()?;
            let runs = store.flow_runs(&RunFilter { flow, deployment, state, limit }).map_err(ServiceError::from)?;
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
            let report = service.inspect_run(&run)?;
            println!("{}", serde_json::to_string_pretty(&report).expect("JSON"));
        }
        FlowRunCommand::Logs { run, tail } => {
            let row = find(store, &run)?;
            for line in store.logs(&row.id, tail).map_err(ServiceError::from)? {
                let time = line.time.with_timezone(&chrono::Local).format("%H:%M:%S%.3f");
                let source = if line.task_run.is_some() { "Task run" } else { "Flow run" };
                println!("{time} | {:<7} | {source} '{}' - {}", line.level.name(), line.run_name, line.message);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
