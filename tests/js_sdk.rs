//! Flows written in JavaScript with `sluice-sdk` (guest-sdk/js), built by
//! guest-sdk/js/build.mjs from examples/js-hello and run through the real
//! binary and a server: tasks through the host, retries, a failing task's
//! stack in the log, map, a subflow, FatalError, and parameters checked
//! against the schema the SDK exports (given explicitly or read from JSDoc).

mod support;

use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use support::http::{get, post};
use support::{Sluice, eventually, logs_of, repo, states, target_dir, task_run, texts};

/// examples/js-hello built with build.mjs (`make js-example` builds it first;
/// build.mjs installs the pinned toolchain with `npm ci` when missing).
fn js_hello() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = target_dir().join("wasm32-wasip2").join("guest").join("js_hello.wasm");
            if std::env::var_os("SLUICE_EXAMPLES_BUILT").is_none() || !out.exists() {
                let status = Command::new("node")
                    .arg(repo().join("guest-sdk/js/build.mjs"))
                    .arg(repo().join("examples/js-hello/flow.js"))
                    .arg(&out)
                    .status()
                    .expect("running node guest-sdk/js/build.mjs");
                assert!(status.success(), "building the JavaScript example failed");
            }
            out
        })
        .clone()
}

fn exec(args: &[&str]) -> (i32, serde_json::Value) {
    Sluice::new().exec_json(&js_hello(), args)
}

#[test]
fn a_javascript_flow_calls_tasks_retries_a_flaky_one_maps_and_runs_a_subflow() {
    let (code, report) = exec(&["--param", "name=Ford", "--param", "count=3"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["flow_run"]["flow"], "hello", "the first flow registered is the default");
    assert_eq!(
        report["flow_run"]["result"],
        json!({"greeting": "Hello Ford!", "length": 4, "squares": [1, 4, 9], "sum": 14})
    );
    assert_eq!(logs_of(&report, "say_hello-0"), ["Hello Ford!"], "getRunLogger() reaches the task's log");

    let flaky = task_run(&report, "flaky_length-0");
    assert_eq!(states(flaky), ["Pending", "Running", "AwaitingRetry", "Retrying", "Completed"]);
    assert!(
        logs_of(&report, "flaky_length-0").contains(&"measured Ford on attempt 2".to_string()),
        "console.log reaches the run's log: {report:#}"
    );

    for i in 0..3 {
        assert_eq!(states(task_run(&report, &format!("square-{i}"))), ["Pending", "Running", "Completed"]);
    }
    let subflow = report["flow_runs"].as_array().unwrap().iter().find(|r| r["flow"] == "total").expect("a subflow run");
    assert_eq!(subflow["parent"], report["flow_run"]["id"]);
    assert_eq!(subflow["result"], 14);
}

#[test]
fn parameters_of_the_wrong_type_are_refused_before_the_run() {
    let sluice = Sluice::new();
    let component = js_hello();
    let output = sluice.run(&["exec", component.to_str().unwrap(), "--param", "count=abc"]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("parameter `count`") && stderr.contains("integer"), "{stderr}");
    assert!(!stdout.contains("Created flow run"), "refused before any run: {stdout}");
    let output = sluice.run(&["exec", component.to_str().unwrap(), "--param", "shoe_size=9"]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(2), "unknown parameters are refused: {stderr}");
    assert!(stderr.contains("shoe_size"), "{stderr}");
    assert!(!stdout.contains("Created flow run"), "refused before any run: {stdout}");
    // `fails` has no `parameters` option: its schema comes from its JSDoc (`@param {string} [message]`).
    let output = sluice.run(&["exec", component.to_str().unwrap(), "--flow", "fails", "--param", "message=5"]);
    let (_, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("parameter `message`") && stderr.contains("string"), "{stderr}");
}

#[test]
fn a_thrown_error_fails_the_task_after_its_retry_with_the_stack_in_the_log() {
    let (code, report) = exec(&["--flow", "fails", "--param", "message=kaboom"]);
    assert_eq!(code, 1, "{report:#}");
    let task = task_run(&report, "explode-0");
    assert_eq!(states(task), ["Pending", "Running", "AwaitingRetry", "Retrying", "Failed"]);
    assert_eq!(task["message"], "Error: kaboom");
    let logs = logs_of(&report, "explode-0");
    assert!(logs.iter().any(|l| l.contains("at explode@flow.js:")), "the stack names the flow's line: {logs:#?}");
    assert_eq!(report["flow_run"]["state"], "Failed");
    assert_eq!(report["flow_run"]["message"], "task explode failed: Error: kaboom");
}

#[test]
fn a_fatal_error_is_not_retried() {
    let (code, report) = exec(&["--flow", "fatal"]);
    assert_eq!(code, 1, "{report:#}");
    let task = task_run(&report, "refuse-0");
    assert_eq!(states(task), ["Pending", "Running", "Failed"], "retries: 3, but FatalError opts out");
    assert_eq!(task["message"], "FatalError: no point retrying");
}

#[test]
fn a_hundred_mapped_tasks_each_run_in_an_instance_of_their_own() {
    let (code, report) = exec(&["--flow", "many", "--param", "n=100"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["flow_run"]["result"], (0..100).map(|i| i * i).sum::<i64>());
    assert_eq!(report["task_runs"].as_array().unwrap().len(), 100);
}

#[test]
fn a_deployed_javascript_flow_runs_on_a_server_worker() {
    let sluice = Sluice::new();
    let component = js_hello();
    let output =
        sluice.run(&["deploy", component.to_str().unwrap(), "--flow", "hello", "--name", "js", "--param", "name=Leo"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let (_server, address) = sluice.server(&[]);
    let (status, run) = post(&address, "/api/v1/deployments/hello/js/runs", r#"{"parameters": {"count": 2}}"#);
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let done = eventually(60, "the JavaScript run to complete", || {
        let (status, run) = get(&address, &format!("/api/v1/flow-runs/{id}"));
        assert_eq!(status, 200, "{run}");
        (run["flow_run"]["state"] == "Completed").then_some(run)
    });
    assert_eq!(done["flow_run"]["result"], json!({"greeting": "Hello Leo!", "length": 3, "squares": [1, 4], "sum": 5}));
    let (_, logs) = get(&address, &format!("/api/v1/flow-runs/{id}/logs"));
    let messages: Vec<&str> = logs.as_array().unwrap().iter().filter_map(|l| l["message"].as_str()).collect();
    assert!(messages.contains(&"Hello Leo!"), "{messages:#?}");
}

#[test]
fn sluice_build_builds_a_javascript_flow_and_prints_its_digest() {
    let sluice = Sluice::new();
    let out = tempfile::tempdir().unwrap();
    let wasm = out.path().join("hello.wasm");
    let flow = repo().join("examples/js-hello/flow.js");
    let output = sluice
        .command()
        // Its js-toolchain is the one `make js-example` installed: not installed again per test.
        .env("SLUICE_TOOLCHAIN_DIR", target_dir())
        .args(["build", flow.to_str().unwrap(), "-o", wasm.to_str().unwrap()])
        .output()
        .unwrap();
    let (stdout, stderr) = support::texts(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let bytes = std::fs::read(&wasm).unwrap();
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    assert!(stdout.contains(&digest), "the digest is printed: {stdout}");
    let (code, report) = sluice.exec_json(&wasm, &["--flow", "total", "--param", "numbers=[1,2,3]"]);
    assert_eq!(code, 0, "{report:#}");

    let missing = sluice.command().args(["build", "no-such-flow.js"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(support::texts(&missing).1.contains("does not exist"), "{}", support::texts(&missing).1);
}
