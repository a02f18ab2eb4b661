//! `sluice push` and `sluice artifact ls|inspect`.

use super::{CliError, Output, backend, read_component};
use crate::core::deployment::ArtifactMeta;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `sluice push`.
#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// The component (`.wasm`) to store.
    file: PathBuf,
    /// text for people, json for programs.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

/// `sluice artifact` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ArtifactCommand {
    /// Lists pushed artifacts.
    Ls {
        /// text for people, json for programs.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Shows an artifact's metadata: flows, schemas, tasks, imports.
    Inspect {
        /// `sha256:<hex>`.
        digest: String,
    },
}

/// Runs `sluice push`.
pub async fn push(args: PushArgs) -> Result<ExitCode, CliError> {
    let bytes = read_component(&args.file)?;
    let backend = backend::backend()?;
    let bar = (std::io::stdout().is_terminal() && bytes.len() > 8 << 20).then(|| {
        let bar = indicatif::ProgressBar::new(bytes.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec}")
                .expect("a valid template"),
        );
        bar
    });
    let progress = |done: u64, _total: u64| {
        if let Some(bar) = &bar {
            bar.set_position(done);
        }
    };
    let pushed = backend
        .push(bytes, Some(&progress))
        .await
        .map_err(|e| CliError::from(e).context(&format!("cannot push `{}`", args.file.display())))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&pushed).expect("JSON"));
    } else {
        println!("{}", pushed.artifact.digest);
        if !pushed.newly_stored {
            eprintln!("already stored: the same bytes were pushed before; nothing new was written");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `sluice artifact …`.
pub async fn artifact(command: ArtifactCommand) -> Result<ExitCode, CliError> {
    let backend = backend::backend()?;
    match command {
        ArtifactCommand::Ls { output } => {
            let artifacts = backend.artifacts().await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&artifacts).expect("JSON"));
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:<20} {:>10}  {:<25} FLOWS", "DIGEST", "SIZE", "PUSHED");
            for meta in &artifacts {
                println!(
                    "{:<20} {:>10}  {:<25} {}",
                    short(&meta.digest),
                    meta.size,
                    meta.pushed_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    meta.description.flow_names()
                );
            }
        }
        ArtifactCommand::Inspect { digest } => {
            let meta: ArtifactMeta = backend.artifact(&digest).await?;
            println!("{}", serde_json::to_string_pretty(&meta).expect("JSON"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `sha256:` and the first 12 hex digits.
pub fn short(digest: &str) -> String {
    digest.chars().take("sha256:".len() + 12).collect()
}
