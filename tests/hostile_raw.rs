//! A guest written straight against the WIT, without the SDK
//! (tests/guests/hostile-raw), through the real `sluice` binary: a submit
//! far past the task limit, submitted tasks left behind, log lines of
//! megabytes and terminal escapes, task inputs that break their schema, a
//! result past the payload limit, and descriptions with hostile names,
//! schemas and sizes. Each is refused or contained with a clear reason.

mod support;

use serde_json::Value;
use std::path::PathBuf;
use support::{Sluice, guest, states, task_run, texts};

fn raw(flow: &str, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["--flow", flow];
    args.extend_from_slice(extra);
    Sluice::new().exec_json(&guest("hostile_raw_flow"), &args)
}

fn is_final(state: &str) -> bool {
    ["Completed", "Cached", "Failed", "TimedOut", "Crashed", "Cancelled"].contains(&state)
}

/// Raw control characters that must never reach the operator's terminal.
fn assert_no_raw_controls(text: &str, what: &str) {
    let raw: Vec<char> = text.chars().filter(|c| c.is_control() && *c != '\n').collect();
    assert!(raw.is_empty(), "{what} printed raw control characters {raw:?}");
}

#[test]
fn a_million_call_submit_is_refused_at_the_call_and_every_task_run_it_started_ends() {
    // 20 slow tasks first (left running), then one submit of 1,000,000 calls.
    let (code, report) = raw("fan_out", &["--memory", "512", "--param", "first=20", "--param", "count=1000000"]);
    assert_eq!(code, 1, "{report:#}");
    let run = &report["flow_run"];
    assert_eq!(run["state"], "Failed", "{run:#}");
    let message = run["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "task limit reached: a flow run may start at most 100000 task runs, and a `submit` of 1000000 calls \
             would pass it (20 started before); the run was stopped"
        ),
        "{message}"
    );
    // Nothing was created for the refused batch; the 20 before it ended with the run.
    let task_runs = report["task_runs"].as_array().unwrap();
    assert_eq!(task_runs.len(), 20, "only the first batch was created");
    for task in task_runs {
        let state = task["state"].as_str().unwrap_or("none");
        assert!(is_final(state), "task run {} left in state {state}: {task:#}", task["name"]);
        assert_eq!(state, "Cancelled");
        assert!(task["message"].as_str().unwrap().starts_with("stopped with its flow run: task limit reached"));
    }
}

#[test]
fn waiting_on_millions_of_handles_never_submitted_is_refused_at_the_call() {
    let (code, report) = raw("wait_flood", &["--param", "count=2000000"]);
    assert_eq!(code, 1, "{report:#}");
    let message = report["flow_run"]["message"].as_str().unwrap();
    assert!(message.contains("`wait` was given 2000000 handles but only 0 submitted tasks are pending"), "{message}");
}

#[test]
fn tasks_a_flow_submits_and_leaves_behind_end_with_it() {
    let (code, report) = raw("abandon", &["--param", "count=30"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["flow_run"]["result"], 30);
    let task_runs = report["task_runs"].as_array().unwrap();
    assert_eq!(task_runs.len(), 30);
    for task in task_runs {
        assert_eq!(task["state"], "Cancelled", "{task:#}");
        let message = task["message"].as_str().unwrap();
        assert!(message.contains("ended without waiting for it"), "{message}");
    }
}

#[test]
fn task_input_that_breaks_the_task_schema_is_refused_before_the_task_runs() {
    let (code, report) = raw("bad_input", &[]);
    assert_eq!(code, 0, "{report:#}");
    let seen: Vec<String> = serde_json::from_value(report["flow_run"]["result"].clone()).unwrap();
    assert_eq!(seen.len(), 3);
    for (answer, detail) in seen.iter().zip(["[1,2] is not of type \"object\"", "field `n`", "\"n\" is a required"]) {
        assert!(answer.starts_with("invalid input: the input of task `noop` does not fit its schema"), "{answer}");
        assert!(answer.contains(detail), "{answer} should name {detail}");
    }
    for name in ["noop-0", "noop-1", "noop-2"] {
        let task = task_run(&report, name);
        assert_eq!(states(task), ["Pending", "Failed"], "the guest never ran: {task:#}");
    }
}

#[test]
fn a_result_past_the_payload_limit_is_refused_by_name_whatever_its_size() {
    // 200 MiB is past what wasmtime copies out of a guest at all; 20 MiB is copied, then refused.
    for (mib, exact) in [(200, true), (20, false)] {
        let (code, report) = raw("big_result", &["--memory", "512", "--param", &format!("mib={mib}")]);
        assert_eq!(code, 1);
        let task = task_run(&report, "big-0");
        assert_eq!(task["state"], "Failed", "{task:#}");
        let message = task["message"].as_str().unwrap();
        assert!(message.starts_with("result of `big` exceeds the payload limit of 16 MiB"), "{mib} MiB: {message}");
        assert_eq!(exact, message == "result of `big` exceeds the payload limit of 16 MiB", "{message}");
    }
}

#[test]
fn log_lines_are_capped_and_counted_and_escaped_on_every_terminal() {
    // exec, as text: the 10 MiB line is cut, the escapes arrive escaped.
    let sluice = Sluice::new();
    let component = guest("hostile_raw_flow");
    let path = component.to_str().unwrap();
    let output = sluice.run(&["exec", path, "--flow", "log_flood", "--param", "bytes=10485760"]);
    let (stdout, _) = texts(&output);
    assert!(output.status.success(), "{stdout}");
    assert_no_raw_controls(&stdout, "exec");
    assert!(stdout.len() < 64 << 10, "exec printed {} bytes", stdout.len());
    assert!(stdout.contains("[line cut at 16 KiB]"), "{stdout}");
    assert!(stdout.contains("\\u{1b}[2J\\u{1b}]0;pwned\\u{7}cleared\\rNUL\\u{0}here\\n12:00:00.000"), "{stdout}");
    assert!(stdout.contains("stdout \\u{1b}[31mred\\u{1b}[0m\\r overwritten"), "{stdout}");

    // Deployed with a 1 MiB log limit, run with --watch, then read back with flow-run logs:
    // the cut line counts 16 KiB against the limit, so the lines after it are kept.
    let deployed = sluice.run(&[
        "deploy",
        path,
        "--flow",
        "log_flood",
        "--name",
        "flood",
        "--log-limit",
        "1",
        "--param",
        "bytes=10485760",
    ]);
    assert!(deployed.status.success(), "{}", texts(&deployed).1);
    let watched = sluice.run(&["run", "log_flood/flood", "--watch"]);
    let (stdout, stderr) = texts(&watched);
    assert!(watched.status.success(), "{stdout}{stderr}");
    assert_no_raw_controls(&stdout, "run --watch");
    assert!(stdout.contains("\\u{1b}[2J") && stdout.contains("forged line"), "{stdout}");
    let listed = sluice.run(&["flow-run", "ls", "--output", "json"]);
    let runs: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let id = runs[0]["id"].as_str().unwrap();
    let logs = sluice.run(&["flow-run", "logs", id]);
    let (stdout, _) = texts(&logs);
    assert!(logs.status.success());
    assert_no_raw_controls(&stdout, "flow-run logs");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "the cut line, the forged one and stdout's: {stdout}");
    assert!(lines[0].ends_with(" [line cut at 16 KiB]") && lines[0].len() < (16 << 10) + 100, "{}", lines[0].len());
    assert!(lines[1].contains("\\n12:00:00.000 | INFO    | forged line"), "{}", lines[1]);
}

/// A copy of the raw guest whose `describe` answers in `mode`.
fn described_as(dir: &std::path::Path, mode: &str) -> PathBuf {
    let mut bytes = std::fs::read(guest("hostile_raw_flow")).unwrap();
    let marker = b"describe:normal\0\0\0\0\0\0\0\0\0";
    let at = bytes.windows(marker.len()).position(|w| w == marker).expect("the mode marker in the component");
    let mut patched = format!("describe:{mode}").into_bytes();
    assert!(patched.len() <= marker.len());
    patched.resize(marker.len(), 0);
    bytes[at..at + marker.len()].copy_from_slice(&patched);
    let path = dir.join(format!("{mode}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn hostile_descriptions_are_refused_at_push_with_the_offending_name() {
    let sluice = Sluice::new();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("huge", "`describe` returned 40960 KiB of names, descriptions and schemas; the limit is 1024 KiB"),
        ("badschema", "the schema of the input of task `noop` is not valid JSON Schema"),
        ("fileref", "the schema of the parameters of flow `fan_out` refers to \"file:///etc/passwd\""),
        ("httpref", "the schema of the input of task `slow` refers to \"http://127.0.0.1:9/s.json\""),
        ("traversal", "`describe` declares a flow named \"../../etc/passwd\", which is not a valid name"),
        ("nulname", "`describe` declares a task named \"evil\\0\\u{1b}[31mname\", which is not a valid name"),
        (
            "longname",
            "… (10240 bytes), which is not a valid name: names must match ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$",
        ),
    ];
    for (mode, expected) in cases {
        let path = described_as(dir.path(), mode);
        let output = sluice.run(&["push", path.to_str().unwrap()]);
        let (stdout, stderr) = texts(&output);
        assert!(!output.status.success(), "{mode} was stored: {stdout}");
        assert!(stderr.contains(expected), "{mode}: {stderr}");
        assert_no_raw_controls(&stderr, mode);
        assert!(stderr.len() < 2048, "{mode}: {} bytes of error", stderr.len());
    }
    // The same component describing itself normally is stored.
    let output = sluice.run(&["push", described_as(dir.path(), "normal").to_str().unwrap()]);
    assert!(output.status.success(), "{}", texts(&output).1);
}
