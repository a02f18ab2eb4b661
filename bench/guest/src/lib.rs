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

/// Returns its input.
#[task]
fn noop(i: u32) -> u32 {
    i
}

sluice_sdk::export_flows! { flows: [sequential, parallel], tasks: [noop] }
