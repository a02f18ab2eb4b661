//! Prefect's classic shape: a flow calling two subflows, each calling the
//! tasks `laugh` and `run`; then a flaky task that fails twice and succeeds
//! on its third attempt under `retries = 2`.

use sluice_sdk::{flow, log, task};

/// Runs two subflows, then a task that needs its retries.
#[flow]
fn pipeline() -> sluice_sdk::Result<Vec<String>> {
    let mut said = subflow_1()?;
    said.extend(subflow_2()?);
    said.push(flaky()?);
    Ok(said)
}

/// Laughs, then runs.
#[flow]
fn subflow_1() -> sluice_sdk::Result<Vec<String>> {
    Ok(vec![laugh()?, run()?])
}

/// Laughs, then runs, once more.
#[flow]
fn subflow_2() -> sluice_sdk::Result<Vec<String>> {
    Ok(vec![laugh()?, run()?])
}

/// Ha!
#[task]
fn laugh() -> String {
    log::info!("Ha ha ha!");
    "laughed".to_string()
}

/// Off it goes.
#[task]
fn run() -> String {
    log::info!("Running away!");
    "ran".to_string()
}

/// Fails on its first two attempts, as a flaky service would.
#[task(retries = 2, retry_delay = "50ms", backoff = 2.0, jitter = 0.1)]
fn flaky() -> sluice_sdk::Result<String> {
    let attempt = sluice_sdk::context().attempt;
    if attempt < 3 {
        return Err(sluice_sdk::Error::msg(format!("service unavailable on attempt {attempt}")));
    }
    log::info!("worked on attempt {attempt}");
    Ok(format!("flaky succeeded on attempt {attempt}"))
}

sluice_sdk::export_flows! {
    flows: [pipeline, subflow_1, subflow_2],
    tasks: [laugh, run, flaky],
}
