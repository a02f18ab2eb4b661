//! The sandbox holds: guests that loop, trap, allocate without end, recurse
//! without end or snoop end as recorded states with a clear reason, and the
//! host stays up. Also: a flow written without the SDK runs.

mod support;

use serde_json::json;
use support::{Sluice, guest, logs_of, states, task_run};

fn hostile(flow: &str, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec!["--flow", flow];
    args.extend_from_slice(extra);
    Sluice::new().exec_json(&guest("hostile_flow"), &args)
}

#[test]
fn an_infinite_loop_in_a_task_is_stopped_by_its_timeout() {
    let (code, report) = hostile("spin", &[]);
    assert_eq!(code, 1);
    let task = task_run(&report, "spin_forever-0");
    assert_eq!(states(task), ["Pending", "Running", "TimedOut"]);
    assert_eq!(task["message"], "task `spin_forever` exceeded its timeout of 300ms");
    assert_eq!(report["flow_run"]["state"], "Failed", "the flow passed the error on: it failed, it did not time out");
    assert!(report["flow_run"]["message"].as_str().unwrap().starts_with("timed out: "), "{report:#}");
}

#[test]
fn an_infinite_loop_in_the_flow_is_stopped_by_the_flow_timeout() {
    let (code, report) = hostile("spin_flow", &["--timeout", "0.5"]);
    assert_eq!(code, 1);
    assert_eq!(states(&report["flow_runs"][0]), ["Pending", "Running", "TimedOut"]);
    assert_eq!(report["flow_run"]["message"], "flow `spin_flow` exceeded its timeout of 500ms");
}

#[test]
fn a_trap_fails_the_task_after_its_retries_with_the_panic_in_the_log() {
    let (code, report) = hostile("trap", &[]);
    assert_eq!(code, 1);
    let task = task_run(&report, "explode-0");
    assert_eq!(states(task), ["Pending", "Running", "AwaitingRetry", "Retrying", "Failed"]);
    let message = task["message"].as_str().unwrap();
    assert!(message.contains("task `explode` crashed") && message.contains("unreachable"), "{message}");
    let logs = logs_of(&report, "explode-0");
    assert!(logs.iter().any(|l| l.contains("boom from inside the guest")), "{logs:?}");
}

#[test]
fn allocating_without_end_hits_the_memory_limit_by_name() {
    let (code, report) = hostile("hog", &["--memory", "32"]);
    assert_eq!(code, 1);
    let task = task_run(&report, "allocate-0");
    assert_eq!(task["state"], "Failed");
    let message = task["message"].as_str().unwrap();
    assert!(message.starts_with("memory limit of 32 MiB per instance reached"), "{message}");
}

#[test]
fn recursing_without_end_exhausts_the_stack_and_nothing_else() {
    let (code, report) = hostile("deep", &[]);
    assert_eq!(code, 1);
    let message = task_run(&report, "recurse-0")["message"].as_str().unwrap().to_string();
    assert!(message.contains("call stack exhausted"), "{message}");
}

#[test]
fn a_guest_sees_no_files_no_environment_no_network_and_no_stdin() {
    let output = Sluice::new()
        .command()
        .env("SECRET_OF_THE_HOST", "hunter2")
        .args(["exec", guest("hostile_flow").to_str().unwrap(), "--flow", "snoop", "--output", "json"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let seen: Vec<String> = serde_json::from_value(report["flow_run"]["result"].clone()).unwrap();
    assert!(seen[0].starts_with("files refused"), "{seen:?}");
    assert_eq!(seen[1], "environment variables: 0");
    assert!(seen[2].starts_with("network refused"), "{seen:?}");
    assert_eq!(seen[3], "stdin gave 0 bytes");
}

#[test]
fn guest_stdout_and_stderr_become_log_lines() {
    let (code, report) = hostile("chatter", &[]);
    assert_eq!(code, 0);
    let run_name = report["flow_run"]["name"].as_str().unwrap();
    let levels: Vec<(String, String)> = report["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["run_name"] == run_name)
        .map(|l| (l["level"].as_str().unwrap().to_string(), l["message"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        levels,
        [("Info".to_string(), "to stdout".to_string()), ("Warning".to_string(), "to stderr".to_string())]
    );
}

#[test]
fn a_python_flow_written_on_the_bare_wit_runs_its_tasks_in_parallel() {
    let component = support::python_greet();
    let (code, report) = Sluice::new().exec_json(&component, &["--param", r#"names=["Ford","Zaphod"]"#]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["flow_run"]["result"], json!(["Hello Ford!", "Hello Zaphod!"]));
    assert_eq!(states(task_run(&report, "shout-1")), ["Pending", "Running", "Completed"]);
    assert_eq!(logs_of(&report, "shout-0"), ["Hello Ford!"]);
}
