//! Artifacts, deployments and runs from deployments on the embedded store:
//! push, deploy from flags and from sluice.yaml, run with overrides, watch,
//! history and logs, tampering, cross-run caching, and a crash mid-run.

mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use support::{Sluice, guest, texts};

fn ok(sluice: &Sluice, args: &[&str]) -> String {
    let output = sluice.run(args);
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "sluice {args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

fn refused(sluice: &Sluice, args: &[&str], expected: &str) -> String {
    let output = sluice.run(args);
    let (stdout, stderr) = texts(&output);
    assert!(!output.status.success(), "sluice {args:?} should fail:\n{stdout}");
    assert!(stderr.contains(expected), "sluice {args:?}: expected `{expected}` in:\n{stderr}");
    stderr
}

fn json(sluice: &Sluice, args: &[&str]) -> Value {
    serde_json::from_str(&ok(sluice, args)).expect("JSON output")
}

fn object_files(sluice: &Sluice) -> Vec<std::path::PathBuf> {
    let dir = sluice.home.path().join("artifacts/artifacts/sha256");
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn pushing_the_same_bytes_twice_stores_one_object() {
    let sluice = Sluice::new();
    let hello = guest("hello_flow");
    let first = ok(&sluice, &["push", hello.to_str().unwrap()]);
    let digest = first.trim();
    let expected = format!("sha256:{}", sha256_hex(&std::fs::read(&hello).unwrap()));
    assert_eq!(digest, expected);
    let again = sluice.run(&["push", hello.to_str().unwrap()]);
    let (stdout, stderr) = texts(&again);
    assert_eq!(stdout.trim(), digest);
    assert!(stderr.contains("already stored"), "{stderr}");
    assert_eq!(object_files(&sluice).len(), 1);
    let listed = json(&sluice, &["artifact", "ls", "--output", "json"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let meta = json(&sluice, &["artifact", "inspect", digest]);
    assert_eq!(meta["description"]["flows"][0]["name"], "hello");
    assert!(meta["imports"].as_array().unwrap().iter().any(|i| i == "sluice:flow/host@0.2.0"));
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn invalid_files_are_refused_and_nothing_is_stored() {
    let sluice = Sluice::new();
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    refused(&sluice, &["push", core.to_str().unwrap()], "core WebAssembly module, not a component");
    assert!(object_files(&sluice).is_empty());
    let listed = json(&sluice, &["artifact", "ls", "--output", "json"]);
    assert!(listed.as_array().unwrap().is_empty());
    refused(&sluice, &["artifact", "inspect", "sha256:1234"], "not a digest");
}

#[test]
fn one_flow_many_deployments_each_with_its_parameters() {
    let sluice = Sluice::new();
    let hello = guest("hello_flow");
    let hello = hello.to_str().unwrap();
    let created =
        ok(&sluice, &["deploy", hello, "--flow", "hello", "--name", "leo", "--param", "name=Leo", "--tag", "demo"]);
    assert!(created.contains("hello/leo created"), "{created}");
    let digest = ok(&sluice, &["push", hello]).trim().to_string();
    ok(
        &sluice,
        &["deploy", &digest, "--flow", "hello", "--name", "marvin", "--param", "name=Marvin", "--interval", "60"],
    );
    let again =
        ok(&sluice, &["deploy", hello, "--flow", "hello", "--name", "leo", "--param", "name=Leo", "--tag", "demo"]);
    assert!(again.contains("hello/leo unchanged"), "{again}");

    let table = ok(&sluice, &["deployment", "ls"]);
    assert!(table.contains("hello/leo") && table.contains("hello/marvin"), "{table}");
    assert!(table.contains("every 60 s"), "{table}");

    let leo = ok(&sluice, &["run", "hello/leo", "--watch"]);
    assert!(leo.contains("Task run 'say_hello-0' - Hello Leo!"), "{leo}");
    assert!(leo.contains("finished in state Completed()"), "{leo}");
    let marvin = ok(&sluice, &["run", "hello/marvin", "--watch"]);
    assert!(marvin.contains("Hello Marvin!"), "{marvin}");
    let zaphod = ok(&sluice, &["run", "hello/leo", "--param", "name=Zaphod", "--watch"]);
    assert!(zaphod.contains("Hello Zaphod!") && zaphod.contains("\"name\":\"Zaphod\""), "{zaphod}");

    let runs = json(&sluice, &["flow-run", "ls", "--deployment", "hello/leo", "--output", "json"]);
    assert_eq!(runs.as_array().unwrap().len(), 2);
    assert_eq!(runs[0]["state"], "Completed");
    let name = runs[0]["name"].as_str().unwrap();
    let inspected = json(&sluice, &["flow-run", "inspect", name]);
    let history: Vec<&str> =
        inspected["states"].as_array().unwrap().iter().map(|s| s["state"].as_str().unwrap()).collect();
    assert_eq!(history, ["Scheduled", "Pending", "Running", "Completed"]);
    assert_eq!(inspected["flow_run"]["parameters"]["name"], "Zaphod");
    assert_eq!(inspected["task_runs"][0]["task_run"]["name"], "say_hello-0");
    let logs = ok(&sluice, &["flow-run", "logs", name]);
    assert!(logs.contains("Task run 'say_hello-0' - Hello Zaphod!"), "{logs}");
}

#[test]
fn deployments_pause_resume_and_delete() {
    let sluice = Sluice::new();
    let hello = guest("hello_flow");
    ok(&sluice, &["deploy", hello.to_str().unwrap(), "--flow", "hello", "--name", "leo", "--param", "name=Leo"]);
    ok(&sluice, &["deployment", "pause", "hello/leo"]);
    assert_eq!(json(&sluice, &["deployment", "inspect", "hello/leo"])["paused"], true);
    ok(&sluice, &["deployment", "resume", "hello/leo"]);
    assert_eq!(json(&sluice, &["deployment", "inspect", "hello/leo"])["paused"], false);
    ok(&sluice, &["deployment", "delete", "hello/leo"]);
    refused(&sluice, &["run", "hello/leo"], "no deployment `hello/leo`");
    refused(&sluice, &["deployment", "inspect", "leo"], "flow/deployment");
}

#[test]
fn bad_deployments_are_refused_and_nothing_is_written() {
    let sluice = Sluice::new();
    let etl = guest("etl_flow");
    let etl = etl.to_str().unwrap();
    refused(&sluice, &["deploy", etl, "--flow", "etl", "--name", "x", "--param", "sources=3"], "parameter `sources`");
    refused(&sluice, &["deploy", etl, "--flow", "nope", "--name", "x"], "no flow named `nope`");
    refused(&sluice, &["deploy", etl, "--flow", "etl", "--name", "x", "--cron", "61 * * * *"], "61 * * * *");
    refused(
        &sluice,
        &["deploy", etl, "--flow", "etl", "--name", "x", "--cron", "0 * * * *", "--timezone", "Mars/Base"],
        "Mars/Base",
    );
    let missing = format!("sha256:{}", "ab".repeat(32));
    refused(&sluice, &["deploy", &missing, "--flow", "etl", "--name", "x"], "push it");
    assert_eq!(json(&sluice, &["deployment", "ls", "--output", "json"]), serde_json::json!([]));
    ok(&sluice, &["deploy", etl, "--flow", "etl", "--name", "x"]);
    refused(&sluice, &["run", "etl/x", "--param", "settings={\"currency\":\"GBP\"}"], "settings.currency");
    assert_eq!(json(&sluice, &["flow-run", "ls", "--output", "json"]), serde_json::json!([]), "no run was created");
}

#[test]
fn sluice_yaml_deploys_everything_idempotently_and_refuses_unknown_keys() {
    let sluice = Sluice::new();
    let project = tempfile::tempdir().unwrap();
    let hello = guest("hello_flow");
    let file = project.path().join("sluice.yaml");
    let write = |text: &str| std::fs::write(&file, text).unwrap();
    let good = format!(
        "deployments:\n  - name: leo\n    flow: hello\n    artifact: {0}\n    parameters: {{name: Leo}}\n    tags: [demo]\n  - name: marvin\n    flow: hello\n    artifact: {0}\n    parameters: {{name: Marvin}}\n    schedule: {{cron: \"0 2 * * *\", timezone: Europe/Paris}}\n",
        hello.display()
    );
    write(&good);
    let file_arg = file.to_str().unwrap();
    let first = ok(&sluice, &["deploy", "--all", "--file", file_arg]);
    assert!(first.contains("hello/leo created") && first.contains("hello/marvin created"), "{first}");
    let second = ok(&sluice, &["deploy", "--all", "--file", file_arg]);
    assert!(second.contains("hello/leo unchanged") && second.contains("hello/marvin unchanged"), "{second}");
    let table = ok(&sluice, &["deployment", "ls"]);
    assert!(table.contains("at 02:00 Europe/Paris"), "{table}");

    write(&good.replace("    tags: [demo]\n", "    tags: [demo]\n    paramters: {}\n").replace("Marvin", "Trillian"));
    refused(&sluice, &["deploy", "--all", "--file", file_arg], "line 7");
    let marvin = json(&sluice, &["deployment", "inspect", "hello/marvin"]);
    assert_eq!(marvin["parameters"]["name"], "Marvin", "nothing half-written");

    let init_dir = tempfile::tempdir().unwrap();
    let starter = init_dir.path().join("sluice.yaml");
    ok(&sluice, &["init", "--file", starter.to_str().unwrap()]);
    assert!(std::fs::read_to_string(&starter).unwrap().contains("deployments:"));
    refused(&sluice, &["init", "--file", starter.to_str().unwrap()], "--force");
}

#[test]
fn a_tampered_artifact_is_refused_and_never_run() {
    let sluice = Sluice::new();
    let hello = guest("hello_flow");
    ok(&sluice, &["deploy", hello.to_str().unwrap(), "--flow", "hello", "--name", "leo", "--param", "name=Leo"]);
    let objects = object_files(&sluice);
    assert_eq!(objects.len(), 1);
    let mut bytes = std::fs::read(&objects[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&objects[0], bytes).unwrap();
    let output = sluice.run(&["run", "hello/leo", "--watch"]);
    let (stdout, stderr) = texts(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("corrupt") || stderr.contains("tampered"), "{stderr}");
    assert!(!stdout.contains("Hello Leo!"), "{stdout}");
    let runs = json(&sluice, &["flow-run", "ls", "--output", "json"]);
    assert_eq!(runs[0]["state"], "Failed", "{runs:#}");
    assert!(runs[0]["message"].as_str().unwrap().contains("corrupt"), "{runs:#}");
}

#[test]
fn a_cached_task_result_is_reused_by_a_later_run() {
    let sluice = Sluice::new();
    let etl = guest("etl_flow");
    ok(&sluice, &["deploy", etl.to_str().unwrap(), "--flow", "etl", "--name", "nightly"]);
    ok(&sluice, &["run", "etl/nightly", "--watch"]);
    let second = ok(&sluice, &["run", "etl/nightly", "--watch"]);
    assert!(second.contains("Task run 'exchange_rate-0' - Finished in state Cached()"), "{second}");
    assert!(!second.contains("asking the rate service"), "the cached task did not run: {second}");
}

#[test]
fn a_run_scheduled_for_later_waits_in_scheduled() {
    let sluice = Sluice::new();
    let hello = guest("hello_flow");
    ok(&sluice, &["deploy", hello.to_str().unwrap(), "--flow", "hello", "--name", "leo", "--param", "name=Leo"]);
    let created = ok(&sluice, &["run", "hello/leo", "--start-in", "5m"]);
    assert!(created.contains("scheduled:"), "{created}");
    let runs = json(&sluice, &["flow-run", "ls", "--output", "json"]);
    assert_eq!(runs[0]["state"], "Scheduled");
    let scheduled = chrono::DateTime::parse_from_rfc3339(runs[0]["scheduled"].as_str().unwrap()).unwrap();
    let ahead = scheduled.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(ahead > chrono::Duration::minutes(4) && ahead <= chrono::Duration::minutes(5), "{ahead}");
    refused(&sluice, &["run", "hello/leo", "--start-in", "soon"], "soon");
}

#[test]
fn killing_the_process_mid_run_loses_no_acknowledged_state() {
    let sluice = Sluice::new();
    let bench = guest("bench_flow");
    ok(
        &sluice,
        &["deploy", bench.to_str().unwrap(), "--flow", "sequential", "--name", "long", "--param", "count=1000000"],
    );
    let mut child = sluice
        .command()
        .args(["run", "sequential/long", "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut completed = Vec::new();
    let mut run_name = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("Created flow run '") {
            run_name = rest.split('\'').next().unwrap().to_string();
        }
        if let Some((_, rest)) = line.split_once("Task run '")
            && rest.ends_with("Finished in state Completed()")
        {
            completed.push(rest.split('\'').next().unwrap().to_string());
            if completed.len() == 300 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL: no chance to flush anything more.
    child.wait().unwrap();
    assert_eq!(completed.len(), 300);

    let inspected = json(&sluice, &["flow-run", "inspect", &run_name]);
    assert_eq!(inspected["flow_run"]["state"], "Running", "the run was cut short, not finished");
    let tasks = inspected["task_runs"].as_array().unwrap();
    for name in &completed {
        let task =
            tasks.iter().find(|t| t["task_run"]["name"] == name.as_str()).unwrap_or_else(|| panic!("{name} lost"));
        assert_eq!(task["task_run"]["state"], "Completed", "{name}");
        let history: Vec<&str> =
            task["states"].as_array().unwrap().iter().map(|s| s["state"].as_str().unwrap()).collect();
        assert_eq!(history, ["Pending", "Running", "Completed"], "{name}");
    }
}

#[test]
fn an_artifact_store_that_cannot_be_used_is_reported_by_url() {
    let sluice = Sluice::new();
    let hello = guest("hello_flow");
    let output = sluice
        .command()
        .env("SLUICE_STORE_URL", "ftp://example.com/artifacts")
        .args(["push", hello.to_str().unwrap()])
        .output()
        .unwrap();
    let (_, stderr) = texts(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("ftp://example.com/artifacts") && stderr.contains("s3://"), "{stderr}");

    let output = sluice
        .command()
        .env("SLUICE_STORE_URL", "s3://sluice-test/artifacts")
        .env("AWS_ENDPOINT", "http://127.0.0.1:9")
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .args(["push", hello.to_str().unwrap()])
        .output()
        .unwrap();
    let (_, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("s3://sluice-test/artifacts"), "the error names the store: {stderr}");
    assert!(json(&sluice, &["artifact", "ls", "--output", "json"]).as_array().unwrap().is_empty(), "nothing recorded");
}

#[test]
fn a_deployments_task_and_payload_limits_end_its_runs_with_the_limit_named() {
    let sluice = Sluice::new();
    let bench = guest("bench_flow");
    let bench = bench.to_str().unwrap();
    ok(
        &sluice,
        &["deploy", bench, "--flow", "sequential", "--name", "capped", "--param", "count=10", "--max-tasks", "3"],
    );
    let capped = sluice.run(&["run", "sequential/capped", "--watch"]);
    let (stdout, stderr) = texts(&capped);
    assert!(!capped.status.success(), "{stdout}");
    assert!(format!("{stdout}{stderr}").contains("a flow run may start at most 3 task runs"), "{stdout}\n{stderr}");
    let runs = json(&sluice, &["flow-run", "ls", "--output", "json"]);
    assert_eq!(runs[0]["state"], "Failed", "{runs}");

    ok(
        &sluice,
        &["deploy", bench, "--flow", "sequential", "--name", "roomy", "--param", "count=3", "--max-tasks", "3"],
    );
    ok(&sluice, &["run", "sequential/roomy", "--watch"]);
    let shown = json(&sluice, &["deployment", "inspect", "sequential/capped"]);
    assert_eq!(shown["limits"]["max_tasks"], 3, "{shown}");
}
