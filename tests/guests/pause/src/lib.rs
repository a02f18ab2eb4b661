//! Flows that pause for input. Every task counts its executions at a
//! counter the test serves (`GET {counter}/hit/{key}`), so the test sees
//! from the guest's side that a resumed run replays what it completed
//! before the pause instead of running it again.

// The hostile-io guest's plain GET: one copy of the wasi:http client for every guest.
#[path = "../../hostile-io/src/http.rs"]
mod http;

use serde::{Deserialize, Serialize};
use sluice_sdk::{Error, Result, flow, task};
use std::time::Duration;

/// What a person answers.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
struct Approval {
    /// Whether to deploy.
    approve: bool,
    /// Why.
    #[serde(default)]
    note: String,
}

/// Hits `key` at the counter; how many times it has been hit, this one included.
fn hit(counter: &str, key: &str) -> Result<u64> {
    let (status, body) = http::get(&format!("{counter}/hit/{key}")).map_err(Error::msg)?;
    if status != 200 {
        return Err(Error::msg(format!("the counter answered {status}: {body}")));
    }
    body.trim().parse().map_err(|e| Error::msg(format!("the counter said `{body}`: {e}")))
}

/// Prepares, asks for approval, then deploys or not.
#[flow]
fn approval(counter: String) -> Result<String> {
    let prepared = step("prepare".into(), counter.clone())?;
    let answer: Approval = sluice_sdk::pause("Approve the deploy?")?;
    if !answer.approve {
        return Ok(format!("not deployed ({}) after {prepared} preparation", answer.note));
    }
    step("deploy".into(), counter)?;
    Ok(format!("deployed ({}) after {prepared} preparation", answer.note))
}

/// Waits `wait_ms` for approval; then takes "not approved" when `with_default`, else fails.
#[flow]
fn approval_timeout(counter: String, wait_ms: u64, with_default: bool) -> Result<String> {
    step("prepare".into(), counter)?;
    let default = with_default.then(|| Approval { approve: false, note: "nobody answered".into() });
    let answer =
        sluice_sdk::pause_with_timeout("Approve within the timeout?", Duration::from_millis(wait_ms), default)?;
    Ok(format!("approve={} ({})", answer.approve, answer.note))
}

/// What the gate asks for: typed fields for the run page's generated form.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
struct Release {
    /// Whether to release.
    approve: bool,
    /// How many copies to ship.
    copies: u32,
}

/// Pauses at once for a release decision (no tasks): for the web UI's resume form.
#[flow]
fn gate() -> Result<String> {
    let release: Release = sluice_sdk::pause("Release how many copies?")?;
    Ok(format!("approve={} copies={}", release.approve, release.copies))
}

/// Ends at once: shows another run gets a slot while one is paused.
#[flow]
fn quick() -> Result<String> {
    Ok("quick done".into())
}

/// Tries to pause from a task, which only a top-level flow may do.
#[flow]
fn pause_in_task() -> Result<String> {
    pauses()
}

/// Calls `pause`: refused in a task.
#[task]
fn pauses() -> Result<String> {
    let answer: Approval = sluice_sdk::pause("from a task?")?;
    Ok(answer.note)
}

/// Emits a valid event, invalid ones and one that poses as Sluice's own
/// record of a state change, and returns what the host answered to each.
#[flow]
fn emits() -> Result<Vec<String>> {
    let answer = |r: Result<()>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    let good = answer(sluice_sdk::emit_event("deploy.started", &serde_json::json!({"by": "flow"})));
    let bad_name = answer(sluice_sdk::emit_event("two words", &serde_json::json!({})));
    let not_object = answer(sluice_sdk::emit_event("deploy.list", &[1, 2]));
    let forged = answer(sluice_sdk::emit_event("sluice.flow-run.Failed", &serde_json::json!({"state": "Failed"})));
    Ok(vec![good, bad_name, not_object, forged])
}

/// Counts its execution at the counter, under `name`.
#[task]
fn step(name: String, counter: String) -> Result<u64> {
    hit(&counter, &name)
}

sluice_sdk::export_flows! {
    flows: [approval, approval_timeout, gate, quick, pause_in_task, emits],
    tasks: [step, pauses],
}
