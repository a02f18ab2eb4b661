//! `sluice work-pool …` and `sluice work-queue …`.

use super::{CliError, Output, backend};
use crate::service::QueueRequest;
use std::process::ExitCode;

/// `sluice work-pool` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum PoolCommand {
    /// Creates a pool (with a `default` queue).
    Create {
        /// Its name.
        name: String,
        /// What it is for.
        #[arg(long)]
        description: Option<String>,
    },
    /// Lists pools.
    Ls {
        /// text for people, json for programs.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Shows a pool and its queues as JSON.
    Inspect {
        /// Its name.
        name: String,
    },
    /// Pauses a pool: it hands out no runs.
    Pause {
        /// Its name.
        name: String,
    },
    /// Resumes a pool.
    Resume {
        /// Its name.
        name: String,
    },
    /// Deletes a pool no deployment uses.
    Delete {
        /// Its name.
        name: String,
    },
}

/// `sluice work-queue` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum QueueCommand {
    /// Creates a queue in a pool.
    Create {
        /// Its name.
        name: String,
        /// The pool (default: `default`).
        #[arg(long, default_value = "default")]
        pool: String,
        /// It serves only deployments carrying this tag. Repeatable.
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Lower numbers are served first.
        #[arg(long)]
        priority: Option<i64>,
        /// Runs of this queue allowed at once.
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Lists queues (of one pool with --pool).
    Ls {
        /// Only this pool's queues.
        #[arg(long)]
        pool: Option<String>,
        /// text for people, json for programs.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Pauses a queue.
    Pause {
        /// Its name.
        name: String,
        /// The pool (default: `default`).
        #[arg(long, default_value = "default")]
        pool: String,
    },
    /// Resumes a queue.
    Resume {
        /// Its name.
        name: String,
        /// The pool (default: `default`).
        #[arg(long, default_value = "default")]
        pool: String,
    },
    /// Deletes a queue.
    Delete {
        /// Its name.
        name: String,
        /// The pool (default: `default`).
        #[arg(long, default_value = "default")]
        pool: String,
    },
}

fn print_json(value: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(value).expect("JSON"));
}

/// Runs `sluice work-pool …`.
pub async fn pool(command: PoolCommand) -> Result<ExitCode, CliError> {
    let backend = backend::backend()?;
    match command {
        PoolCommand::Create { name, description } => {
            backend.create_work_pool(&name, description).await?;
            println!("created work pool {name} (with queue default)");
        }
        PoolCommand::Ls { output } => {
            let pools = backend.work_pools().await?;
            if output == Output::Json {
                print_json(&pools);
            } else {
                println!("{:<24} {:<8} DESCRIPTION", "NAME", "PAUSED");
                for p in pools {
                    let paused = if p.paused { "yes" } else { "no" };
                    println!("{:<24} {:<8} {}", p.name, paused, p.description.unwrap_or_default());
                }
            }
        }
        PoolCommand::Inspect { name } => {
            print_json(&backend.inspect_pool(&name).await?);
        }
        PoolCommand::Pause { name } => {
            backend.set_work_pool_paused(&name, true).await?;
            println!("paused work pool {name}");
        }
        PoolCommand::Resume { name } => {
            backend.set_work_pool_paused(&name, false).await?;
            println!("resumed work pool {name}");
        }
        PoolCommand::Delete { name } => {
            backend.delete_work_pool(&name).await?;
            println!("deleted work pool {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `sluice work-queue …`.
pub async fn queue(command: QueueCommand) -> Result<ExitCode, CliError> {
    let backend = backend::backend()?;
    match command {
        QueueCommand::Create { name, pool, tags, priority, limit } => {
            let request = QueueRequest { name, tags, priority, concurrency_limit: limit };
            let queue = backend.create_work_queue(&pool, request).await?;
            println!("created work queue {}", queue.full_name());
        }
        QueueCommand::Ls { pool, output } => {
            let queues = backend.work_queues(pool.as_deref()).await?;
            if output == Output::Json {
                print_json(&queues);
            } else {
                println!("{:<32} {:<20} {:>8} {:>6} PAUSED", "QUEUE", "TAGS", "PRIORITY", "LIMIT");
                for q in queues {
                    let limit = q.concurrency_limit.map_or("-".to_string(), |l| l.to_string());
                    let tags = if q.tags.is_empty() { "-".to_string() } else { q.tags.join(",") };
                    let paused = if q.paused { "yes" } else { "no" };
                    println!("{:<32} {:<20} {:>8} {:>6} {paused}", q.full_name(), tags, q.priority, limit);
                }
            }
        }
        QueueCommand::Pause { name, pool } => {
            backend.set_work_queue_paused(&pool, &name, true).await?;
            println!("paused work queue {pool}/{name}");
        }
        QueueCommand::Resume { name, pool } => {
            backend.set_work_queue_paused(&pool, &name, false).await?;
            println!("resumed work queue {pool}/{name}");
        }
        QueueCommand::Delete { name, pool } => {
            backend.delete_work_queue(&pool, &name).await?;
            println!("deleted work queue {pool}/{name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
