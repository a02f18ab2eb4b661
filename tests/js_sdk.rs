//! Flows written in JavaScript with `sluice-sdk` (guest-sdk/js), built by
//! guest-sdk/js/build.mjs from examples/js-hello and run through the real
//! binary and a server: tasks through the host, retries, a failing task's
//! stack in the log, map, a subflow, FatalError, and parameters checked
//! against the schema the SDK exports (given explicitly or read from JSDoc);
//! `sluice build` of a TypeScript flow (examples/ts-hello), and JavaScript
//! guests that loop or allocate without end, contained; `pause` resumed
//! through a server, and `emitEvent` (tests/support/paused.rs).

#[path = "support/paused.rs"]
mod paused;
mod support;

use serde_json::Value;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
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
    // Named in the order the flow declares them (`name`, then `count`), not sorted.
    assert!(stderr.contains("it takes: name, count"), "{stderr}");
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

/// `sluice build ARGS…` with the toolchain `make js-example` installed (target/js-toolchain).
fn sluice_build(sluice: &Sluice, args: &[&str]) -> Output {
    sluice.command().env("SLUICE_TOOLCHAIN_DIR", target_dir()).arg("build").args(args).output().unwrap()
}

/// The component of a JavaScript or TypeScript flow (`examples/ts-hello/flow.ts`), built once per test process.
fn built(source: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<std::collections::HashMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(source) {
        return path.clone();
    }
    let name = Path::new(source).parent().unwrap().file_name().unwrap().to_string_lossy().replace('-', "_");
    let out = target_dir().join("wasm32-wasip2").join("guest").join(format!("{name}.wasm"));
    let file = repo().join(source);
    let output = sluice_build(&Sluice::new(), &[file.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "sluice build {source} failed:\n{stdout}\n{stderr}");
    built.insert(source.to_string(), out.clone());
    out
}

#[test]
fn sluice_build_strips_a_typescript_flow_and_its_typescript_imports() {
    let component = built("examples/ts-hello/flow.ts");
    let sluice = Sluice::new();
    let (code, report) = sluice.exec_json(&component, &["--param", "count=5"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["flow_run"]["flow"], "squares");
    let line = "5 squares, mean 11 (high)";
    assert_eq!(report["flow_run"]["result"], json!({ "squares": [1, 4, 9, 16, 25], "line": line }));
    assert_eq!(logs_of(&report, "report-0"), [line], "the enum and interface of stats.ts were compiled");
    // The JSDoc above the TypeScript function still gives the schema: a string count is refused.
    let output = sluice.run(&["exec", component.to_str().unwrap(), "--param", "count=many"]);
    let (_, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("parameter `count`") && stderr.contains("integer"), "{stderr}");
}

#[test]
fn a_typescript_syntax_error_names_the_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let flow = dir.path().join("flow.ts");
    std::fs::write(&flow, "import { flow } from 'sluice-sdk';\nflow(function f(x: number) {\n  return x +;\n});\n")
        .unwrap();
    let output =
        sluice_build(&Sluice::new(), &[flow.to_str().unwrap(), "-o", dir.path().join("f.wasm").to_str().unwrap()]);
    let (_, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("flow.ts:3:13: Expression expected."), "{stderr}");
    assert!(!dir.path().join("f.wasm").exists(), "nothing is written for a flow that does not parse");
}

fn ended(address: &str, id: &str) -> Value {
    eventually(120, &format!("run {id} to end"), || {
        let (_, run) = get(address, &format!("/api/v1/flow-runs/{id}"));
        run["flow_run"]["ended"].is_string().then_some(run)
    })
}

fn start(address: &str, deployment: &str, parameters: Value) -> String {
    let body = json!({ "parameters": parameters }).to_string();
    let (status, run) = post(address, &format!("/api/v1/deployments/{deployment}/runs"), &body);
    assert_eq!(status, 201, "{deployment}: {run}");
    run["id"].as_str().unwrap().to_string()
}

fn deploy(sluice: &Sluice, address: &str, component: &Path, flow: &str, name: &str, extra: &[&str]) {
    let output = sluice
        .remote(address)
        .args(["deploy", component.to_str().unwrap(), "--flow", flow, "--name", name])
        .args(extra)
        .output()
        .unwrap();
    assert!(output.status.success(), "deploy {flow}/{name}: {}", texts(&output).1);
}

#[test]
fn javascript_guests_that_loop_or_allocate_without_end_are_contained() {
    let hostile = built("tests/guests/js-hostile/flow.js");
    let good = js_hello();
    let sluice = Sluice::new();
    let (_server, address) = sluice.server(&["--workers", "4"]);
    let a = address.as_str();
    deploy(&sluice, a, &hostile, "spin", "loop", &[]);
    deploy(&sluice, a, &hostile, "hog", "mem", &["--memory", "96"]);
    deploy(&sluice, a, &good, "hello", "good", &[]);

    let spin = start(a, "spin/loop", json!({}));
    let hog = start(a, "hog/mem", json!({}));
    let beside = start(a, "hello/good", json!({ "name": "Kim", "count": 2 }));

    // The looping task is stopped at its one-second timeout; the flow passes the failure on.
    let run = ended(a, &spin);
    let looped =
        run["task_runs"].as_array().unwrap().iter().map(|t| &t["task_run"]).find(|t| t["name"] == "loop_forever-0");
    assert_eq!(looped.expect("the looping task's run")["state"], "TimedOut", "{run:#}");
    assert_eq!(run["flow_run"]["state"], "Failed", "{run:#}");
    // Allocating without end ends at the memory limit, recorded, not Completed.
    let run = ended(a, &hog);
    let message = run["flow_run"]["message"].as_str().unwrap_or("");
    assert!(matches!(run["flow_run"]["state"].as_str(), Some("Failed" | "Crashed")), "{run:#}");
    assert!(message.contains("memory"), "the message names memory: {message}");
    // A well-behaved JavaScript flow beside them completes intact.
    let run = ended(a, &beside);
    assert_eq!(run["flow_run"]["result"], json!({"greeting": "Hello Kim!", "length": 3, "squares": [1, 4], "sum": 5}));
}

#[test]
fn a_flow_pauses_for_typed_input_is_resumed_with_it_and_emits_events() {
    paused::pause_resume_and_emit(&built("tests/guests/js-pause/flow.js"));
}
