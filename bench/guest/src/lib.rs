//! Flows whose tasks do nothing, so what is measured is the host's cost.

use sluice_sdk::{flow, task, wait_all};

/// Calls `noop` `count` times, one after another.
#[flow]
fn sequential(count: u32) -> sluice_sdk::Result<u32> {
    for i in 0..count {
        noop(i)?;
    }
    Ok(count)
}

/// Submits `count` `noop`s at once and waits for all of them.
#[flow]
fn parallel(count: u32) -> sluice_sdk::Result<u32> {
    let results = wait_all(noop::map(0..count));
    results.into_iter().collect::<sluice_sdk::Result<Vec<u32>>>()?;
    Ok(count)
}

/// Stays running for `ms` milliseconds without using the CPU (WASI's
/// monotonic clock), so concurrent runs can be counted in memory.
#[flow]
fn hold(ms: u64) -> sluice_sdk::Result<u64> {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    Ok(ms)
}

/// Returns its input.
#[task]
fn noop(i: u32) -> u32 {
    i
}

sluice_sdk::export_flows! { flows: [sequential, parallel, hold], tasks: [noop] }
