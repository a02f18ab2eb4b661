//! Flows for durable execution (replay from the journal). Every task counts
//! its executions at a counter the test serves (`GET {counter}/hit/{key}`
//! answers how many times `key` was hit), so the test sees from the guest's
//! side which tasks ran again on a retry and which were replayed.

// The hostile-io guest's plain GET: one copy of the wasi:http client for both guests.
#[path = "../../hostile-io/src/http.rs"]
mod http;

use sluice_sdk::{Error, Result, flow, log, task, wait_all};

/// Hits `key` at the counter; how many times it has been hit, this one included.
fn hit(counter: &str, key: &str) -> Result<u64> {
    let (status, body) = http::get(&format!("{counter}/hit/{key}")).map_err(Error::msg)?;
    if status != 200 {
        return Err(Error::msg(format!("the counter answered {status}: {body}")));
    }
    body.trim().parse().map_err(|e| Error::msg(format!("the counter said `{body}`: {e}")))
}

/// Runs `count` steps one after another; step `fail_at` fails the first time it runs.
#[flow]
fn steps(count: u32, counter: String, #[default(u32::MAX)] fail_at: u32) -> Result<u64> {
    let mut total = 0;
    for i in 0..count {
        total += step(i, counter.clone(), fail_at)?;
    }
    Ok(total)
}

/// Counts its execution; fails (for good) the first time it runs when `i == fail_at`.
#[task]
fn step(i: u32, counter: String, fail_at: u32) -> Result<u64> {
    let runs = hit(&counter, &format!("step-{i}"))?;
    if i == fail_at && runs == 1 {
        return Err(Error::fatal(format!("step {i} fails on its first execution")));
    }
    Ok(u64::from(i) * 2)
}

/// Not deterministic on purpose: its second call depends on the attempt.
#[flow]
fn diverge(counter: String) -> Result<u64> {
    let first = step(0, counter.clone(), u32::MAX)?;
    if sluice_sdk::context().attempt == 1 {
        step(1, counter, u32::MAX)?;
        return Err(Error::msg("attempt 1 fails on purpose"));
    }
    Ok(first + other(1)?)
}

/// A task the second attempt of `diverge` calls instead of `step`.
#[task]
fn other(i: u32) -> u64 {
    u64::from(i)
}

/// Parallel steps, a cached task, then a subflow whose last task fails on
/// its first execution; logs what its flow code read of the clock and of
/// randomness, which a replay must read again exactly.
#[flow]
fn mixed(counter: String) -> Result<Vec<u64>> {
    let started = now_micros();
    let random = wasip2::random::random::get_random_u64();
    let parallel = step::map((0..5).map(|i| (i, counter.clone(), u32::MAX)));
    let mut results = wait_all(parallel).into_iter().collect::<Result<Vec<u64>>>()?;
    results.push(cached(7, counter.clone())?);
    let after = now_micros();
    log::info!("flow code saw clock {started} then {after} and random {random}");
    results.push(inner(counter)?);
    Ok(results)
}

fn now_micros() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or_default()
}

/// Counts its execution; its result is cached.
#[task(cache = true)]
fn cached(i: u32, counter: String) -> Result<u64> {
    hit(&counter, &format!("cached-{i}"))?;
    Ok(u64::from(i))
}

/// Two steps, then the gate.
#[flow]
fn inner(counter: String) -> Result<u64> {
    let a = step(100, counter.clone(), u32::MAX)?;
    let b = step(101, counter.clone(), u32::MAX)?;
    gate(counter)?;
    Ok(a + b)
}

/// Closed (fails for good) on its first execution, open after.
#[task]
fn gate(counter: String) -> Result<()> {
    if hit(&counter, "gate")? == 1 {
        return Err(Error::fatal("the gate is closed on its first execution"));
    }
    Ok(())
}

sluice_sdk::export_flows! {
    flows: [steps, diverge, mixed, inner],
    tasks: [step, other, cached, gate],
}
