//! `sluice inspect`: what a component declares about itself.

use super::{CliError, Output, home, read_component};
use crate::core::policy::TaskPolicy;
use crate::sandbox::compile_cache::CompileCache;
use crate::sandbox::engine::EngineSettings;
use crate::sandbox::program::Sandbox;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `sluice inspect`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// The component (`.wasm`) to inspect.
    file: PathBuf,
    /// text for people, json for programs.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

/// Runs `sluice inspect`.
pub async fn run(args: InspectArgs) -> Result<ExitCode, CliError> {
    let bytes = read_component(&args.file)?;
    let sandbox = Sandbox::new(&EngineSettings::default(), CompileCache::in_dir(home::compile_cache_dir()))?;
    let program = sandbox
        .load(&bytes)
        .await
        .map_err(|e| CliError::usage(format!("cannot inspect `{}`: {e}", args.file.display())))?;
    let description = &program.description;
    if args.output == Output::Json {
        let report = serde_json::json!({
            "digest": program.digest,
            "size": bytes.len(),
            "version": description.version,
            "flows": description.flows,
            "tasks": description.tasks,
            "imports": program.imports,
            "wit": program.wit.number(),
        });
        println!("{}", serde_json::to_string_pretty(&report).expect("a report is JSON"));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Component {} ({} KiB, version {}, built against sluice:flow@{})",
        program.digest,
        bytes.len().div_ceil(1024),
        description.version,
        program.wit.number()
    );
    println!("\nFlows:");
    for flow in &description.flows {
        println!("  {}{}", flow.name, dash(&flow.description));
        let schema = serde_json::to_string_pretty(&flow.parameters_schema).expect("a schema is JSON");
        println!("    parameters schema:");
        for line in schema.lines() {
            println!("      {line}");
        }
    }
    println!("\nTasks:");
    for task in &description.tasks {
        println!("  {}{}", task.name, dash(&task.description));
        println!("    policy: {}", policy_words(&task.policy));
    }
    println!("\nImports:");
    for import in &program.imports {
        println!("  {import}");
    }
    Ok(ExitCode::SUCCESS)
}

fn dash(description: &str) -> String {
    match description.lines().next() {
        Some(first) if !first.is_empty() => format!(" - {first}"),
        _ => String::new(),
    }
}

fn policy_words(policy: &TaskPolicy) -> String {
    let mut words = vec![format!("retries {}", policy.retries)];
    if policy.retries > 0 {
        words.push(format!("retry delay {} ms", policy.retry_delay_ms));
        words.push(format!("backoff {}", policy.backoff));
        words.push(format!("jitter {}", policy.jitter));
    }
    words.push(match policy.timeout_ms {
        Some(ms) => format!("timeout {ms} ms"),
        None => "no timeout".to_string(),
    });
    words.push(match (policy.cache, policy.cache_expiration_ms) {
        (false, _) => "no cache".to_string(),
        (true, None) => "cached".to_string(),
        (true, Some(ms)) => format!("cached for {ms} ms"),
    });
    words.join(", ")
}
