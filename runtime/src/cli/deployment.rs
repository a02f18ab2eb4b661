//! `sluice deployment ls|inspect|pause|resume|delete`.

use super::{CliError, Output, backend};
use std::process::ExitCode;

/// `sluice deployment` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum DeploymentCommand {
    /// Lists deployments: name, flow, artifact, schedule, tags, paused.
    Ls {
        /// text for people, json for programs.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Shows one deployment as JSON.
    Inspect {
        /// flow/deployment
        name: String,
    },
    /// Pauses a deployment's schedule.
    Pause {
        /// flow/deployment
        name: String,
    },
    /// Resumes a deployment's schedule.
    Resume {
        /// flow/deployment
        name: String,
    },
    /// Deletes a deployment; its past runs stay in the history.
    Delete {
        /// flow/deployment
        name: String,
    },
}

/// Runs `sluice deployment …`.
pub async fn run(command: DeploymentCommand) -> Result<ExitCode, CliError> {
    let backend = backend::backend()?;
    match command {
        DeploymentCommand::Ls { output } => {
            let deployments = backend.deployments().await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&deployments).expect("JSON"));
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:<28} {:<16} {:<20} {:<28} {:<16} PAUSED", "NAME", "FLOW", "ARTIFACT", "SCHEDULE", "TAGS");
            for d in &deployments {
                let schedule = d.schedule.as_ref().map_or_else(|| "-".to_string(), |s| s.words());
                println!(
                    "{:<28} {:<16} {:<20} {:<28} {:<16} {}",
                    d.full_name(),
                    d.flow,
                    super::push::short(&d.artifact),
                    schedule,
                    if d.tags.is_empty() { "-".to_string() } else { d.tags.join(",") },
                    if d.paused { "yes" } else { "no" }
                );
            }
        }
        DeploymentCommand::Inspect { name } => {
            let deployment = backend.deployment_detail(&name).await?;
            println!("{}", serde_json::to_string_pretty(&deployment).expect("JSON"));
        }
        DeploymentCommand::Pause { name } => {
            backend.set_paused(&name, true).await?;
            println!("paused {name}");
        }
        DeploymentCommand::Resume { name } => {
            backend.set_paused(&name, false).await?;
            println!("resumed {name}");
        }
        DeploymentCommand::Delete { name } => {
            backend.delete_deployment(&name).await?;
            println!("deleted {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
