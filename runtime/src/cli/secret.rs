//! `sluice secret set|ls|rm`: secrets granted to deployments (`--secret
//! NAME`) as environment variables. Values go in (from stdin or `--value`)
//! and are never printed or returned.

use super::backend::{Backend, backend};
use super::{CliError, Output};
use crate::core::tenant::DEFAULT_TENANT;
use std::io::Read;
use std::process::ExitCode;

/// `sluice secret` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum SecretCommand {
    /// Sets a secret: its value from stdin (a trailing newline is dropped) unless --value is given.
    Set {
        /// Its name, the guest's environment variable: letters, digits and `_`, such as API_TOKEN.
        name: String,
        /// The value (it may end up in shell history: prefer stdin).
        #[arg(long)]
        value: Option<String>,
    },
    /// Lists secrets: names and dates, never values.
    Ls {
        /// text for people, json for programs.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Deletes a secret; deployments granted it then fail to start, saying so.
    Rm {
        /// The secret's name.
        name: String,
    },
}

fn read_value(value: Option<String>) -> Result<String, CliError> {
    if let Some(value) = value {
        return Ok(value);
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| CliError::usage(format!("cannot read the secret's value from stdin: {e}; or pass --value")))?;
    let trimmed = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
    Ok(trimmed.to_string())
}

/// Runs `sluice secret …`.
pub async fn run(command: SecretCommand) -> Result<ExitCode, CliError> {
    let backend = backend()?;
    match command {
        SecretCommand::Set { name, value } => {
            let value = read_value(value)?;
            let created = match &backend {
                Backend::Local(service) => service.set_secret(DEFAULT_TENANT, &name, &value)?,
                Backend::Remote(api) => api.set_secret(&name, &value).await?,
            };
            println!("secret {name} {}", if created { "created" } else { "updated" });
        }
        SecretCommand::Ls { output } => {
            let secrets = match &backend {
                Backend::Local(service) => service.secrets(DEFAULT_TENANT)?,
                Backend::Remote(api) => api.secrets().await?,
            };
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&secrets).expect("JSON"));
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:<32} {:<26} UPDATED", "NAME", "CREATED");
            for secret in secrets {
                println!("{:<32} {:<26} {}", secret.name, secret.created.to_rfc3339(), secret.updated.to_rfc3339());
            }
        }
        SecretCommand::Rm { name } => {
            match &backend {
                Backend::Local(service) => service.delete_secret(DEFAULT_TENANT, &name)?,
                Backend::Remote(api) => api.delete_secret(&name).await?,
            }
            println!("deleted secret {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
