//! Durable execution through the real binary, server and workers: a retried
//! flow run replays from its journal what earlier attempts completed. Every
//! task of the `durable_flow` guest counts its executions at a counter this
//! test serves, so what ran again is seen from the guest's side, not from
//! the host's records.

#[path = "support/counter.rs"]
mod counter;
mod support;

use counter::Counter;
use serde_json::Value;
use support::http::{get, post};
use support::{Sluice, eventually, guest, texts};

/// Deploys a flow of the durable guest with the counter granted.
fn deploy(sluice: &Sluice, counter: &Counter, flow: &str, name: &str, extra: &[&str]) {
    let path = guest("durable_flow");
    let param = format!("counter={}", counter.url);
    let mut args = vec!["deploy", path.to_str().unwrap(), "--flow", flow, "--name", name, "--param", &param];
    args.extend_from_slice(&["--allow-host", &counter.grant]);
    args.extend_from_slice(extra);
    let output = sluice.run(&args);
    assert!(output.status.success(), "deploy {flow}/{name}: {}", texts(&output).1);
}

fn start(address: &str, deployment: &str, parameters: &str) -> String {
    let (status, run) = post(address, &format!("/api/v1/deployments/{deployment}/runs"), parameters);
    assert_eq!(status, 201, "{run}");
    run["id"].as_str().unwrap().to_string()
}

fn inspect(address: &str, id: &str) -> Value {
    let (status, run) = get(address, &format!("/api/v1/flow-runs/{id}"));
    assert_eq!(status, 200, "{run}");
    run
}

/// Waits until the run's attempt `attempt` has ended (a failed attempt may be retried at once after).
fn wait_for_end(address: &str, id: &str, attempt: u64, seconds: u64) -> Value {
    eventually(seconds, &format!("attempt {attempt} of run {id} to end"), || {
        let run = inspect(address, id);
        let state = run["flow_run"]["state"].as_str().unwrap_or("").to_string();
        let ended = ["Completed", "Failed", "Crashed", "TimedOut", "Cancelled"].contains(&state.as_str());
        (ended && run["flow_run"]["attempt"] == attempt).then_some(run)
    })
}

fn logs(address: &str, id: &str) -> Vec<String> {
    let (status, lines) = get(address, &format!("/api/v1/flow-runs/{id}/logs"));
    assert_eq!(status, 200, "{lines}");
    lines.as_array().unwrap().iter().map(|line| line["message"].as_str().unwrap().to_string()).collect()
}

fn steps_total(count: u64) -> u64 {
    (0..count).map(|i| i * 2).sum()
}

#[test]
fn a_flow_that_fails_at_task_500_replays_tasks_1_to_499_on_its_retry() {
    let sluice = Sluice::new();
    let counter = Counter::start();
    let by_hand = Counter::start();
    deploy(&sluice, &by_hand, "steps", "halfway", &["--param", "count=1000", "--param", "fail_at=500"]);
    deploy(
        &sluice,
        &counter,
        "steps",
        "halfway-retried",
        &["--param", "count=1000", "--param", "fail_at=500", "--flow-retries", "1"],
    );
    let (_server, address) = sluice.server(&[]);

    let id = start(&address, "steps/halfway-retried", "");
    let run = wait_for_end(&address, &id, 2, 300);
    assert_eq!(run["flow_run"]["state"], "Completed", "{}", run["flow_run"]);
    assert_eq!(run["flow_run"]["result"], steps_total(1000));
    assert_eq!(run["flow_run"]["attempt"], 2);
    for i in 0..1000 {
        let expected = if i == 500 { 2 } else { 1 };
        assert_eq!(counter.count(&format!("step-{i}")), expected, "executions of step {i}");
    }
    let task_runs = run["task_runs"].as_array().unwrap();
    assert_eq!(task_runs.len(), 501 + 500, "attempt 1 made calls 0..=500, attempt 2 calls 500..1000");
    let of_attempt = |n: u64| task_runs.iter().filter(|t| t["task_run"]["call"]["flow_attempt"] == n).count();
    assert_eq!((of_attempt(1), of_attempt(2)), (501, 500));
    let states: Vec<&str> = run["states"].as_array().unwrap().iter().map(|s| s["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["Scheduled", "Pending", "Running", "Failed", "Scheduled", "Pending", "Running", "Completed"]);
    let retry = run["states"][4]["message"].as_str().unwrap();
    assert!(retry.starts_with("Flow retry 1/1"), "{retry}");
    assert!(run["states"][6]["message"].as_str().unwrap().contains("500 completed calls"), "{}", run["states"][6]);
    let logs = logs(&address, &id);
    assert!(logs.iter().any(|l| l.contains("Attempt 2 replayed 500 calls")), "{logs:?}");

    // Without flow retries it fails, and a retry by hand resumes it the same way.
    let id = start(&address, "steps/halfway", "");
    let failed = wait_for_end(&address, &id, 1, 300);
    assert_eq!(failed["flow_run"]["state"], "Failed");
    let retry = sluice.remote(&address).args(["flow-run", "retry", &id]).output().unwrap();
    assert!(retry.status.success(), "{}", texts(&retry).1);
    assert!(texts(&retry).0.contains("attempt 2"), "{}", texts(&retry).0);
    let run = wait_for_end(&address, &id, 2, 300);
    assert_eq!(run["flow_run"]["state"], "Completed", "{}", run["flow_run"]);
    for i in 0..1000 {
        let expected = if i == 500 { 2 } else { 1 };
        assert_eq!(by_hand.count(&format!("step-{i}")), expected, "executions of step {i} retried by hand");
    }

    let again = sluice.remote(&address).args(["flow-run", "retry", &id]).output().unwrap();
    assert!(!again.status.success(), "a completed run cannot be retried");
    assert!(texts(&again).1.contains("nothing to retry"), "{}", texts(&again).1);
}

#[test]
fn a_worker_killed_in_a_2000_task_sequence_resumes_on_another_worker_without_redoing_completed_tasks() {
    let sluice = Sluice::new();
    let counter = Counter::start();
    deploy(&sluice, &counter, "steps", "long", &["--param", "count=2000", "--retries", "1"]);
    let (_server, address) = sluice.server(&["--workers", "0", "--heartbeat-timeout", "2"]);
    let mut first = sluice.worker(&address, "first", &["--heartbeat", "1"]);
    let id = start(&address, "steps/long", "");
    eventually(300, "a few hundred tasks to run", || (counter.total() >= 300).then_some(()));
    first.child.kill().unwrap(); // SIGKILL, mid-sequence
    first.child.wait().unwrap();
    let executed_before_kill = counter.total();
    let _second = sluice.worker(&address, "second", &["--heartbeat", "1"]);

    let run = wait_for_end(&address, &id, 2, 600);
    assert_eq!(run["flow_run"]["state"], "Completed", "{}", run["flow_run"]);
    assert_eq!(run["flow_run"]["result"], steps_total(2000));
    assert_eq!(
        (run["flow_run"]["attempt"].as_u64(), run["flow_run"]["claimed_by"].as_str()),
        (Some(2), Some("second"))
    );
    let mut twice = Vec::new();
    for i in 0..2000 {
        match counter.count(&format!("step-{i}")) {
            1 => {}
            2 => twice.push(i),
            n => panic!("step {i} executed {n} times"),
        }
    }
    assert!(twice.len() <= 1, "only the task in flight at the kill may run twice: {twice:?}");
    if let Some(i) = twice.first() {
        assert!(*i as u64 + 1 >= executed_before_kill - 1, "the one run twice was in flight at the kill: {i}");
    }
}

#[test]
fn a_worker_started_again_under_its_name_resumes_its_runs_at_once() {
    let sluice = Sluice::new();
    let counter = Counter::start();
    deploy(&sluice, &counter, "steps", "restart", &["--param", "count=200", "--retries", "1"]);
    // A heartbeat timeout far longer than the test waits: only the restart can resume the run.
    let (_server, address) = sluice.server(&["--workers", "0", "--heartbeat-timeout", "600"]);
    let mut worker = sluice.worker(&address, "steady", &[]);
    let id = start(&address, "steps/restart", "");
    eventually(120, "some tasks to run", || (counter.total() >= 40).then_some(()));
    worker.child.kill().unwrap();
    worker.child.wait().unwrap();
    let _restarted = sluice.worker(&address, "steady", &[]);
    let run = wait_for_end(&address, &id, 2, 120);
    assert_eq!(run["flow_run"]["state"], "Completed", "{}", run["flow_run"]);
    let crashed = run["states"].as_array().unwrap().iter().find(|s| s["state"] == "Crashed").expect("a crash");
    assert!(crashed["message"].as_str().unwrap().contains("`steady` started again"), "{crashed}");
    let again = (0..200).filter(|i| counter.count(&format!("step-{i}")) > 1).count();
    assert!(again <= 1, "{again} steps ran twice");
}

#[test]
fn a_flow_whose_calls_change_between_attempts_fails_naming_the_divergence() {
    let sluice = Sluice::new();
    let counter = Counter::start();
    deploy(&sluice, &counter, "diverge", "branchy", &["--flow-retries", "1"]);
    let (_server, address) = sluice.server(&[]);
    let id = start(&address, "diverge/branchy", "");
    let run = wait_for_end(&address, &id, 2, 120);
    assert_eq!(run["flow_run"]["state"], "Failed", "{}", run["flow_run"]);
    let message = run["flow_run"]["message"].as_str().unwrap();
    assert!(message.contains("diverged from its journal at call 1"), "{message}");
    assert!(message.contains("attempt 1 called task `step`") && message.contains("calls task `other`"), "{message}");
    assert_eq!((counter.count("step-0"), counter.count("step-1")), (1, 1), "step 0 was replayed, `other` never ran");
}

#[test]
fn parallel_cached_and_subflow_calls_replay_and_flow_code_reads_the_same_clock_and_randomness() {
    let sluice = Sluice::new();
    let counter = Counter::start();
    deploy(&sluice, &counter, "mixed", "everything", &["--flow-retries", "1"]);
    let (_server, address) = sluice.server(&[]);
    let id = start(&address, "mixed/everything", "");
    let run = wait_for_end(&address, &id, 2, 120);
    assert_eq!(run["flow_run"]["state"], "Completed", "{}", run["flow_run"]);
    assert_eq!(run["flow_run"]["result"], serde_json::json!([0, 2, 4, 6, 8, 7, 402]));
    for key in ["step-0", "step-1", "step-2", "step-3", "step-4", "cached-7", "step-100", "step-101"] {
        assert_eq!(counter.count(key), 1, "{key} ran once and was replayed after");
    }
    assert_eq!(counter.count("gate"), 2, "the gate failed on attempt 1 and ran again on attempt 2");
    let subflows = run["subflow_runs"].as_array().unwrap();
    assert_eq!(subflows.len(), 1, "the failed subflow resumed under its own id: {subflows:?}");
    assert_eq!(subflows[0]["flow_run"]["state"], "Completed");

    let seen: Vec<String> = logs(&address, &id).into_iter().filter(|l| l.starts_with("flow code saw clock")).collect();
    assert_eq!(seen.len(), 2, "one line per attempt: {seen:?}");
    assert_eq!(seen[0], seen[1], "a replayed flow reads the clock and randomness its first attempt read");
}

#[test]
fn sluice_run_without_a_server_follows_the_flow_retries_of_its_deployment() {
    let sluice = Sluice::new();
    let counter = Counter::start();
    deploy(
        &sluice,
        &counter,
        "steps",
        "local",
        &["--param", "count=20", "--param", "fail_at=10", "--flow-retries", "1"],
    );
    let output = sluice.run(&["run", "steps/local", "--watch"]);
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("Flow retry 1/1"), "{stdout}");
    assert!(stdout.contains("finished in state Completed"), "{stdout}");
    for i in 0..20 {
        assert_eq!(counter.count(&format!("step-{i}")), if i == 10 { 2 } else { 1 }, "executions of step {i}");
    }
}

#[test]
fn a_batched_run_killed_mid_sequence_loses_only_a_contiguous_last_batch_and_resumes() {
    let sluice = Sluice::new();
    let counter = Counter::start();
    let extra = ["--param", "count=1000", "--retries", "1", "--durability", "batched"];
    deploy(&sluice, &counter, "steps", "batched", &extra);
    let (_server, address) = sluice.server(&["--workers", "0", "--heartbeat-timeout", "2"]);
    let (_, deployment) = get(&address, "/api/v1/deployments/steps/batched");
    assert_eq!(deployment["limits"]["durability"], "batched", "{deployment}");
    let mut first = sluice.worker(&address, "first", &["--heartbeat", "1"]);
    let id = start(&address, "steps/batched", "");
    eventually(300, "a few hundred tasks to run", || (counter.total() >= 300).then_some(()));
    first.child.kill().unwrap(); // SIGKILL, mid-sequence, records in flight
    first.child.wait().unwrap();
    let _second = sluice.worker(&address, "second", &["--heartbeat", "1"]);

    let run = wait_for_end(&address, &id, 2, 600);
    assert_eq!(run["flow_run"]["state"], "Completed", "{}", run["flow_run"]);
    assert_eq!(run["flow_run"]["result"], steps_total(1000));
    let mut twice = Vec::new();
    for i in 0..1000 {
        match counter.count(&format!("step-{i}")) {
            1 => {}
            2 => twice.push(i),
            n => panic!("step {i} executed {n} times"),
        }
    }
    // What the crash lost is the tail of the record: a run of consecutive
    // steps, never a gap before steps that stayed recorded.
    if let (Some(first), Some(last)) = (twice.first(), twice.last()) {
        assert_eq!(last - first + 1, twice.len(), "the steps run twice are not consecutive: {twice:?}");
        assert!(twice.len() <= 300, "a batch is milliseconds of records, not {} tasks", twice.len());
    }
    let replayed = logs(&address, &id);
    assert!(replayed.iter().any(|l| l.contains("Attempt 2 replayed")), "{replayed:?}");
}
