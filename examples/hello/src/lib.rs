//! The smallest flow: one task that says hello.

use sluice_sdk::{flow, log, task};

/// Says hello to someone, from a task of its own.
#[flow]
fn hello(name: String) -> sluice_sdk::Result<String> {
    say_hello(name.clone())?;
    Ok(format!("Said hello to {name}"))
}

/// Logs a greeting.
#[task]
fn say_hello(name: String) {
    log::info!("Hello {name}!");
}

sluice_sdk::export_flows! { flows: [hello], tasks: [say_hello] }
