//! `sluice exec` and `sluice inspect` over the example flows: states, logs,
//! results and exit codes, retries, caching, subflows, parallel maps and
//! every kind of bad input.

mod support;

use serde_json::{Value, json};
use support::{Sluice, guest, logs_of, states, task_run, texts};

#[test]
fn hello_runs_its_task_in_text_mode_like_prefect_prints_it() {
    let sluice = Sluice::new();
    let output = sluice.run(&["exec", guest("hello_flow").to_str().unwrap(), "--param", "name=Leo"]);
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("Created flow run '"), "{stdout}");
    assert!(stdout.contains("Task run 'say_hello-0' - Hello Leo!"), "{stdout}");
    assert!(stdout.contains("Task run 'say_hello-0' - Finished in state Completed()"), "{stdout}");
    assert!(stdout.contains("- Finished in state Completed()"), "{stdout}");
    assert!(stdout.contains("Result: \"Said hello to Leo\""), "{stdout}");
}

#[test]
fn hello_records_every_state_of_flow_and_task() {
    let (code, report) = Sluice::new().exec_json(&guest("hello_flow"), &["--param", "name=Marvin"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["flow_run"]["state"], "Completed");
    assert_eq!(report["flow_run"]["result"], "Said hello to Marvin");
    let name = report["flow_run"]["name"].as_str().unwrap();
    let (adjective, animal) = name.split_once('-').expect("an adjective-animal name");
    assert!(!adjective.is_empty() && !animal.is_empty());
    assert_eq!(states(&report["flow_runs"][0]), ["Pending", "Running", "Completed"]);
    assert_eq!(report["flow_runs"][0]["parameters"], json!({"name": "Marvin"}));
    let task = task_run(&report, "say_hello-0");
    assert_eq!(states(task), ["Pending", "Running", "Completed"]);
    assert_eq!(task["input"], json!({"name": "Marvin"}));
    assert_eq!(logs_of(&report, "say_hello-0"), ["Hello Marvin!"]);
}

#[test]
fn pipeline_records_subflows_and_the_retried_task() {
    let (code, report) = Sluice::new().exec_json(&guest("pipeline_flow"), &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        report["flow_run"]["result"],
        json!(["laughed", "ran", "laughed", "ran", "flaky succeeded on attempt 3"])
    );
    let flows = report["flow_runs"].as_array().unwrap();
    assert_eq!(flows.len(), 3, "the flow and its two subflows");
    let root = &flows[0];
    for subflow in &flows[1..] {
        assert_eq!(subflow["parent"], root["id"]);
        assert_eq!(subflow["state"], "Completed");
        let tasks: Vec<&str> = report["task_runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["flow_run"] == subflow["id"])
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(tasks, ["laugh-0", "run-0"], "each subflow runs its own tasks");
    }
    assert_eq!(flows[1]["flow"], "subflow_1");
    assert_eq!(flows[2]["flow"], "subflow_2");
    let flaky = task_run(&report, "flaky-0");
    assert_eq!(
        states(flaky),
        ["Pending", "Running", "AwaitingRetry", "Retrying", "AwaitingRetry", "Retrying", "Completed"]
    );
    assert_eq!(flaky["attempts"], 3);
    let retry_message = flaky["states"][2]["message"].as_str().unwrap();
    assert!(retry_message.contains("Retry 1/2"), "{retry_message}");
    assert!(retry_message.contains("service unavailable on attempt 1"), "{retry_message}");
}

#[test]
fn etl_maps_in_parallel_caches_and_fills_nested_defaults() {
    let params = r#"{"settings": {"extract_latency_ms": 400}}"#;
    let (code, report) = Sluice::new().exec_json(&guest("etl_flow"), &["--params", params]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        report["flow_run"]["result"],
        json!({"rows": [300, 200], "total_cents": 46000, "loaded_to": "warehouse"})
    );
    assert_eq!(report["flow_runs"][0]["parameters"]["sources"][0]["name"], "orders", "defaults are recorded");

    // The two reads each sleep 400 ms; they overlap only if they ran in parallel.
    let window = |name: &str| {
        let run = task_run(&report, name);
        let time = |state: &str| {
            let s = run["states"].as_array().unwrap().iter().find(|s| s["state"] == state).unwrap();
            chrono::DateTime::parse_from_rfc3339(s["time"].as_str().unwrap()).unwrap()
        };
        (time("Running"), time("Completed"))
    };
    let (start_a, end_a) = window("extract-0");
    let (start_b, end_b) = window("extract-1");
    assert!(start_a.max(start_b) < end_a.min(end_b), "the mapped tasks did not overlap");

    assert_eq!(states(task_run(&report, "exchange_rate-0")), ["Pending", "Running", "Completed"]);
    assert_eq!(states(task_run(&report, "exchange_rate-1")), ["Pending", "Cached"]);
    assert_eq!(task_run(&report, "exchange_rate-1")["result"], 92);
    assert!(logs_of(&report, "exchange_rate-1").is_empty(), "a cached task does not run");
}

#[test]
fn etl_load_times_out_and_the_flow_fails() {
    let params = r#"{"settings": {"warehouse_latency_ms": 5000, "currency": "USD"}}"#;
    let (code, report) = Sluice::new().exec_json(&guest("etl_flow"), &["--params", params]);
    assert_eq!(code, 1);
    let load = task_run(&report, "load-0");
    assert_eq!(states(load), ["Pending", "Running", "TimedOut"]);
    assert!(load["message"].as_str().unwrap().contains("timeout of 1s"), "{load:#}");
    assert_eq!(report["flow_run"]["state"], "Failed");
    assert!(report["flow_run"]["message"].as_str().unwrap().contains("timed out"), "{report:#}");
}

#[test]
fn bad_parameters_are_refused_before_anything_runs() {
    let sluice = Sluice::new();
    let etl = guest("etl_flow");
    let etl = etl.to_str().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["--param", "sources=5"], "parameter `sources`"),
        (&["--param", "colour=red"], "unknown parameter `colour`"),
        (&["--params", "{not json"], "not valid JSON"),
        (&["--param", r#"settings={"currency":"GBP"}"#], "parameter `settings.currency`"),
        (&["--flow", "nope"], "no flow named `nope`"),
    ];
    for (args, expected) in cases {
        let mut all = vec!["exec", etl];
        all.extend_from_slice(args);
        let output = sluice.run(&all);
        let (stdout, stderr) = texts(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: expected `{expected}` in: {stderr}");
        assert!(!stdout.contains("Created flow run"), "{args:?}: nothing may run: {stdout}");
    }
}

#[test]
fn files_that_are_not_flow_components_are_refused_with_the_reason() {
    let sluice = Sluice::new();
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], &str); 4] = [
        ("text.wasm", b"hello, I am text", "not a WebAssembly file"),
        ("core.wasm", b"\0asm\x01\0\0\0", "core WebAssembly module, not a component"),
        ("empty-component.wasm", b"\0asm\x0d\0\x01\0", "does not implement the world sluice:flow/flow"),
        ("broken-component.wasm", b"\0asm\x0d\0\x01\0\xff\xff", "not valid WebAssembly"),
    ];
    for (name, bytes, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        for command in ["exec", "inspect"] {
            let output = sluice.run(&[command, path.to_str().unwrap()]);
            let (_, stderr) = texts(&output);
            assert_eq!(output.status.code(), Some(2), "{command} {name}: {stderr}");
            assert!(stderr.contains(expected), "{command} {name}: expected `{expected}` in: {stderr}");
        }
    }
    let output = sluice.run(&["exec", dir.path().join("missing.wasm").to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(texts(&output).1.contains("cannot read"));
}

#[test]
fn inspect_shows_flows_schemas_policies_and_imports() {
    let sluice = Sluice::new();
    let output = sluice.run(&["inspect", guest("pipeline_flow").to_str().unwrap(), "--output", "json"]);
    assert!(output.status.success(), "{}", texts(&output).1);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let flows: Vec<&str> = report["flows"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(flows, ["pipeline", "subflow_1", "subflow_2"]);
    assert_eq!(report["flows"][0]["description"], "Runs two subflows, then a task that needs its retries.");
    let flaky = report["tasks"].as_array().unwrap().iter().find(|t| t["name"] == "flaky").unwrap();
    assert_eq!(flaky["policy"]["retries"], 2);
    assert_eq!(flaky["policy"]["retry_delay_ms"], 50);
    assert_eq!(flaky["policy"]["backoff"], 2.0);
    let imports: Vec<&str> = report["imports"].as_array().unwrap().iter().map(|i| i.as_str().unwrap()).collect();
    assert!(imports.contains(&"sluice:flow/host@0.2.0"), "the SDK builds against the newest contract: {imports:?}");
    assert_eq!(report["wit"], "0.2.0");
    assert!(report["digest"].as_str().unwrap().starts_with("sha256:"));

    let output = sluice.run(&["inspect", guest("etl_flow").to_str().unwrap()]);
    let (stdout, _) = texts(&output);
    assert!(stdout.contains("etl - Extracts every source in parallel"), "{stdout}");
    assert!(stdout.contains("\"warehouse_latency_ms\""), "the schema is shown: {stdout}");
    assert!(stdout.contains("exchange_rate - Cents per unit"), "{stdout}");
    assert!(stdout.contains("cached for 3600000 ms"), "{stdout}");
    assert!(stdout.contains("load - Writes the total") && stdout.contains("timeout 1000 ms"), "{stdout}");
}

#[test]
fn the_second_exec_loads_compiled_code_from_the_cache() {
    let sluice = Sluice::new();
    let cache = tempfile::tempdir().unwrap();
    let hello = guest("hello_flow");
    let exec = || {
        let output = sluice
            .command()
            .env("SLUICE_CACHE_DIR", cache.path())
            .args(["exec", hello.to_str().unwrap(), "--param", "name=Leo", "--output", "json"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", texts(&output).1);
        serde_json::from_slice::<Value>(&output.stdout).unwrap()
    };
    assert_eq!(exec()["compile"], "compiled");
    let cached: Vec<_> = std::fs::read_dir(cache.path()).unwrap().collect();
    assert_eq!(cached.len(), 1, "one compiled artifact in the cache");
    assert_eq!(exec()["compile"], "cached");
}
