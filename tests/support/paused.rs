//! One scenario for every SDK's pause and events (`sluice:flow@0.2.0`): a
//! guest with the flows `approval` (a task, then a pause for
//! `{approve: bool, note?: string}`), `timed` (a pause for an integer that
//! times out to the default 7 and returns it times 6) and `emits` (a good
//! event name and a bad one, answering how each went) runs through a real
//! server; wrong input is refused with 422 and leaves the run Paused, the
//! CLI resumes it, and the flow completes with the input.

use crate::support::http::{get, post};
use crate::support::{Sluice, eventually, texts};
use serde_json::{Value, json};
use std::path::Path;

fn run_of(address: &str, id: &str) -> Value {
    let (status, run) = get(address, &format!("/api/v1/flow-runs/{id}"));
    assert_eq!(status, 200, "{run}");
    run
}

fn wait_for_state(address: &str, id: &str, state: &str) -> Value {
    eventually(120, &format!("run {id} to be {state}"), || {
        let run = run_of(address, id);
        (run["flow_run"]["state"] == state).then_some(run)
    })
}

fn start(address: &str, deployment: &str) -> String {
    let (status, run) = post(address, &format!("/api/v1/deployments/{deployment}/runs"), r#"{"parameters": {}}"#);
    assert_eq!(status, 201, "{deployment}: {run}");
    run["id"].as_str().unwrap().to_string()
}

fn pause_task(run: &Value) -> &Value {
    run["task_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["task_run"])
        .find(|t| t["task"] == "sluice:pause")
        .unwrap_or_else(|| panic!("no pause task run in {run:#}"))
}

/// Runs the scenario above against `component`, built by an SDK.
pub fn pause_resume_and_emit(component: &Path) {
    let sluice = Sluice::new();
    let inspected = sluice.run(&["inspect", component.to_str().unwrap(), "--output", "json"]);
    assert!(inspected.status.success(), "{}", texts(&inspected).1);
    let described: Value = serde_json::from_slice(&inspected.stdout).unwrap();
    assert_eq!(described["wit"], "0.2.0", "the SDK builds against sluice:flow@0.2.0: {described:#}");
    let (_server, address) = sluice.server(&["--workers", "2"]);
    let a = address.as_str();
    for flow in ["approval", "timed"] {
        let output = sluice
            .remote(a)
            .args(["deploy", component.to_str().unwrap(), "--flow", flow, "--name", "sdk"])
            .output()
            .unwrap();
        assert!(output.status.success(), "deploy {flow}: {}", texts(&output).1);
    }
    let id = start(a, "approval/sdk");
    let timed = start(a, "timed/sdk");

    let run = wait_for_state(a, &id, "Paused");
    assert_eq!(run["flow_run"]["claimed_by"], Value::Null, "a paused run is held by nobody");
    let pause = pause_task(&run);
    assert_eq!(pause["result"]["prompt"], "Approve the deploy?");
    assert_eq!(pause["result"]["input_schema"]["required"], json!(["approve"]), "{pause:#}");

    // Input that does not fit the schema the SDK sent is refused; the run stays paused.
    let path = format!("/api/v1/flow-runs/{id}/resume");
    let (status, error) = post(a, &path, r#"{"input": {"approve": "yes"}}"#);
    assert_eq!(status, 422, "{error}");
    assert!(error.to_string().contains("`approve`"), "{error}");
    let cli =
        sluice.remote(a).args(["flow-run", "resume", &id, "--input", r#"{"note": "no answer"}"#]).output().unwrap();
    assert!(!cli.status.success(), "a bad input from the CLI is refused too");
    assert!(texts(&cli).1.contains("approve"), "{}", texts(&cli).1);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(run_of(a, &id)["flow_run"]["state"], "Paused");

    // The CLI resumes it and the flow goes on with the input, typed.
    let input = r#"{"approve": true, "note": "ship it"}"#;
    let cli = sluice.remote(a).args(["flow-run", "resume", &id, "--input", input]).output().unwrap();
    assert!(cli.status.success(), "{}", texts(&cli).1);
    let run = wait_for_state(a, &id, "Completed");
    assert_eq!(run["flow_run"]["result"], "prepared prod; deployed (ship it)", "{run:#}");
    assert_eq!(pause_task(&run)["result"], json!({"approve": true, "note": "ship it"}));

    // Nobody answers the timed pause: the flow's default comes back as its type.
    let run = wait_for_state(a, &timed, "Completed");
    assert_eq!(run["flow_run"]["result"], 42, "{run:#}");

    // A bad event name is refused by the host; a good one is taken.
    let (code, report) = sluice.exec_json(component, &["--flow", "emits"]);
    assert_eq!(code, 0, "{report:#}");
    let answers = report["flow_run"]["result"].as_array().unwrap();
    let good = answers[0].as_str().unwrap();
    assert_eq!(good, "ok", "{answers:?}");
    assert!(answers[1].as_str().unwrap().contains("\"two words\" is not valid"), "{answers:?}");
}
