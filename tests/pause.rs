//! Flows that pause for input (`sluice:flow@0.2.0`'s `suspend`) and the
//! contract's versions, through the real binary, server and workers: a
//! paused run holds no worker slot, survives a server restart, resumes with
//! input checked against its schema (CLI and API), and a timeout fails it or
//! resumes it with the flow's default. A component file built against
//! `sluice:flow@0.1.0` (checked into `tests/fixtures/`) still runs.

#[path = "support/counter.rs"]
mod counter;
mod support;

use counter::Counter;
use serde_json::{Value, json};
use std::path::PathBuf;
use support::http::{get, post};
use support::{Sluice, eventually, guest, repo, texts};

/// The hello example as built by the SDK of `sluice:flow@0.1.0`, before 0.2.0 existed. Never rebuild it.
fn wit_0_1_fixture() -> PathBuf {
    repo().join("tests/fixtures/hello-flow-wit-0.1.0.wasm")
}

/// Deploys a flow of the pause guest as `flow/name`, with the counter granted and passed.
fn deploy(sluice: &Sluice, counter: &Counter, flow: &str, extra: &[&str]) {
    let path = guest("pause_flow");
    let param = format!("counter={}", counter.url);
    // Every flow of the guest may reach the counter; `quick` and `emits` take no parameters.
    let mut args =
        vec!["deploy", path.to_str().unwrap(), "--flow", flow, "--name", "test", "--allow-host", &counter.grant];
    if !["quick", "emits"].contains(&flow) {
        args.extend_from_slice(&["--param", &param]);
    }
    args.extend_from_slice(extra);
    let output = sluice.run(&args);
    assert!(output.status.success(), "deploy {flow}: {}", texts(&output).1);
}

fn start(address: &str, deployment: &str, parameters: Value) -> String {
    let body = json!({ "parameters": parameters }).to_string();
    let (status, run) = post(address, &format!("/api/v1/deployments/{deployment}/test/runs"), &body);
    assert_eq!(status, 201, "{run}");
    run["id"].as_str().unwrap().to_string()
}

fn inspect(address: &str, id: &str) -> Value {
    let (status, run) = get(address, &format!("/api/v1/flow-runs/{id}"));
    assert_eq!(status, 200, "{run}");
    run
}

fn wait_for_state(address: &str, id: &str, state: &str, seconds: u64) -> Value {
    eventually(seconds, &format!("run {id} to be {state}"), || {
        let run = inspect(address, id);
        (run["flow_run"]["state"] == state).then_some(run)
    })
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

#[test]
fn a_component_built_against_wit_0_1_0_still_runs_beside_0_2_0_ones() {
    let sluice = Sluice::new();
    let fixture = wit_0_1_fixture();
    let (code, report) = sluice.exec_json(&fixture, &["--param", "name=Ada"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["flow_run"]["result"], "Said hello to Ada");
    for (component, version) in [(fixture.clone(), "0.1.0"), (guest("pause_flow"), "0.2.0")] {
        let output = sluice.run(&["inspect", component.to_str().unwrap(), "--output", "json"]);
        assert!(output.status.success(), "{}", texts(&output).1);
        let described: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(described["wit"], version, "{described:#}");
        let host = format!("sluice:flow/host@{version}");
        assert!(described["imports"].as_array().unwrap().iter().any(|i| i == host.as_str()), "{described:#}");
    }

    // Through a server and its worker too, beside a 0.2.0 component.
    let output =
        sluice.run(&["deploy", fixture.to_str().unwrap(), "--flow", "hello", "--name", "old", "--param", "name=Bo"]);
    assert!(output.status.success(), "{}", texts(&output).1);
    let (_server, address) = sluice.server(&["--workers", "1"]);
    let (status, run) = post(&address, "/api/v1/deployments/hello/old/runs", "");
    assert_eq!(status, 201, "{run}");
    let run = wait_for_state(&address, run["id"].as_str().unwrap(), "Completed", 60);
    assert_eq!(run["flow_run"]["result"], "Said hello to Bo");
}

#[test]
fn a_paused_run_frees_its_slot_survives_a_restart_and_resumes_with_checked_input() {
    let sluice = Sluice::new();
    let counter = Counter::start();
    deploy(&sluice, &counter, "approval", &[]);
    deploy(&sluice, &counter, "quick", &[]);
    let (server, address) = sluice.server(&["--workers", "1"]);
    let id = start(&address, "approval", json!({}));
    let run = wait_for_state(&address, &id, "Paused", 60);
    assert_eq!(run["flow_run"]["claimed_by"], Value::Null, "a paused run is held by nobody");
    let pause = pause_task(&run);
    assert_eq!(pause["state"], "Paused");
    assert_eq!(pause["result"]["prompt"], "Approve the deploy?");
    assert_eq!(pause["result"]["input_schema"]["required"], json!(["approve"]));
    assert_eq!(counter.count("prepare"), 1);

    // The only slot is free: another run goes through while this one waits.
    let quick = start(&address, "quick", json!({}));
    let quick = wait_for_state(&address, &quick, "Completed", 60);
    assert_eq!(quick["flow_run"]["result"], "quick done");

    // It waits across a restart of the server.
    drop(server);
    let (_server, address) = sluice.server(&["--workers", "1"]);
    assert_eq!(inspect(&address, &id)["flow_run"]["state"], "Paused");

    // Input that does not fit the schema is refused, naming the field; the run stays paused.
    let path = format!("/api/v1/flow-runs/{id}/resume");
    let (status, error) = post(&address, &path, r#"{"input": {"approve": "yes"}}"#);
    assert_eq!(status, 422, "{error}");
    assert!(error["error"]["message"].as_str().unwrap_or_default().contains("`approve`"), "{error}");
    let (status, error) = post(&address, &path, r#"{"input": {"note": "no answer"}}"#);
    assert_eq!(status, 422, "{error}");
    assert!(error.to_string().contains("approve"), "{error}");
    let cli =
        sluice.remote(&address).args(["flow-run", "resume", &id, "--input", r#"{"approve": 1}"#]).output().unwrap();
    assert!(!cli.status.success(), "a bad input from the CLI is refused too");
    assert!(texts(&cli).1.contains("`approve`"), "{}", texts(&cli).1);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(inspect(&address, &id)["flow_run"]["state"], "Paused");

    // The CLI resumes it; the next attempt replays `prepare` and goes on with the input.
    let input = r#"{"approve": true, "note": "ship it"}"#;
    let cli = sluice.remote(&address).args(["flow-run", "resume", &id, "--input", input]).output().unwrap();
    assert!(cli.status.success(), "{}", texts(&cli).1);
    assert!(texts(&cli).0.contains("attempt 2"), "{}", texts(&cli).0);
    let run = wait_for_state(&address, &id, "Completed", 60);
    assert_eq!(run["flow_run"]["result"], "deployed (ship it) after 1 preparation");
    assert_eq!((counter.count("prepare"), counter.count("deploy")), (1, 1), "prepare was replayed, not run again");
    let states: Vec<&str> = run["states"].as_array().unwrap().iter().map(|s| s["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["Scheduled", "Pending", "Running", "Paused", "Scheduled", "Pending", "Running", "Completed"]);
    assert_eq!(pause_task(&run)["result"], json!({"approve": true, "note": "ship it"}));

    // Only a paused run can be resumed.
    let (status, error) = post(&address, &path, r#"{"input": {"approve": true}}"#);
    assert_eq!(status, 422, "{error}");
    assert!(error.to_string().contains("not Paused"), "{error}");
}

#[test]
fn a_remote_worker_reports_the_pause_and_takes_another_run_in_its_one_slot() {
    let sluice = Sluice::new();
    let counter = Counter::start();
    deploy(&sluice, &counter, "approval", &[]);
    deploy(&sluice, &counter, "quick", &[]);
    let (_server, address) = sluice.server(&["--workers", "0"]);
    let _worker = sluice.worker(&address, "solo", &["--limit", "1", "--heartbeat", "1"]);
    let id = start(&address, "approval", json!({}));
    wait_for_state(&address, &id, "Paused", 60);
    let quick = start(&address, "quick", json!({}));
    let quick = wait_for_state(&address, &quick, "Completed", 60);
    assert_eq!(quick["flow_run"]["claimed_by"], "solo");

    let (status, resumed) =
        post(&address, &format!("/api/v1/flow-runs/{id}/resume"), r#"{"input": {"approve": false, "note": "later"}}"#);
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["state"], "Scheduled");
    let run = wait_for_state(&address, &id, "Completed", 60);
    assert_eq!(run["flow_run"]["result"], "not deployed (later) after 1 preparation");
    assert_eq!((run["flow_run"]["claimed_by"].as_str(), counter.count("prepare")), (Some("solo"), 1));
}

#[test]
fn a_pause_that_times_out_fails_or_goes_on_with_the_flows_default() {
    let sluice = Sluice::new();
    let counter = Counter::start();
    deploy(&sluice, &counter, "approval_timeout", &["--param", "wait_ms=1000", "--param", "with_default=false"]);
    let (_server, address) = sluice.server(&["--workers", "1"]);
    let failing = start(&address, "approval_timeout", json!({"wait_ms": 1000, "with_default": false}));
    let defaulted = start(&address, "approval_timeout", json!({"wait_ms": 1000, "with_default": true}));

    let run = wait_for_state(&address, &failing, "Failed", 60);
    let message = run["flow_run"]["message"].as_str().unwrap();
    assert!(message.contains("no input came within the timeout"), "{message}");
    assert_eq!(pause_task(&run)["state"], "TimedOut");

    let run = wait_for_state(&address, &defaulted, "Completed", 60);
    assert_eq!(run["flow_run"]["result"], "approve=false (nobody answered)");
    assert_eq!(counter.count("prepare"), 2, "each run prepared once; the resumed one replayed it");
}

#[test]
fn pausing_outside_a_top_level_flow_fails_and_emitted_events_are_checked() {
    let sluice = Sluice::new();
    let (code, report) =
        sluice.exec_json(&guest("pause_flow"), &["--flow", "pause_in_task", "--allow-host", "127.0.0.1:9"]);
    assert_eq!(code, 1, "{report:#}");
    let message = report["flow_run"]["message"].as_str().unwrap();
    assert!(message.contains("only a top-level flow can pause"), "{message}");

    let (code, report) = sluice.exec_json(&guest("pause_flow"), &["--flow", "emits", "--allow-host", "127.0.0.1:9"]);
    assert_eq!(code, 0, "{report:#}");
    let answers = report["flow_run"]["result"].as_array().unwrap();
    assert_eq!(answers[0], "ok", "{answers:?}");
    assert!(answers[1].as_str().unwrap().contains("\"two words\" is not valid"), "{answers:?}");
    assert!(answers[2].as_str().unwrap().contains("must be a JSON object"), "{answers:?}");
    assert!(answers[3].as_str().unwrap().contains("`sluice.` is kept for"), "{answers:?}");

    // Through a server, the valid event lands in the tenant's event log with its run; the others do not.
    let counter = Counter::start();
    deploy(&sluice, &counter, "emits", &[]);
    let (_server, address) = sluice.server(&[]);
    let id = start(&address, "emits", json!({}));
    wait_for_state(&address, &id, "Completed", 60);
    let events = eventually(30, "the emitted event in the log", || {
        let (status, events) = get(&address, &format!("/api/v1/events?flow_run={id}&name=deploy."));
        assert_eq!(status, 200, "{events}");
        (!events.as_array().unwrap().is_empty()).then_some(events)
    });
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 1, "only the valid event is recorded: {events:?}");
    assert_eq!(events[0]["name"], "deploy.started");
    assert_eq!(events[0]["payload"], json!({"by": "flow"}));
    assert_eq!(events[0]["deployment"], "emits/test");
    let (status, forged) = get(&address, &format!("/api/v1/events?flow_run={id}&name=sluice.flow-run.Failed"));
    assert_eq!(status, 200, "{forged}");
    assert_eq!(forged, json!([]), "a flow that completed has no Failed event, whatever it emitted");
}
