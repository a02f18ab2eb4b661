//! `sluice server` and `sluice worker` as real processes on 127.0.0.1: runs
//! through the API, API errors, workers racing, a killed worker, cancel,
//! and a restart that loses nothing.

mod support;

use serde_json::{Value, json};
use support::http::{get, post, request};
use support::{Sluice, eventually, guest};

fn deploy(sluice: &Sluice, component: &str, flow: &str, name: &str, params: &[&str]) {
    let path = guest(component);
    let mut args = vec!["deploy", path.to_str().unwrap(), "--flow", flow, "--name", name];
    for param in params {
        args.extend_from_slice(&["--param", param]);
    }
    let output = sluice.run(&args);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

fn run_state(address: &str, id: &str) -> Value {
    let (status, run) = get(address, &format!("/api/v1/flow-runs/{id}"));
    assert_eq!(status, 200, "{run}");
    run
}

fn wait_for_state(address: &str, id: &str, state: &str, seconds: u64) -> Value {
    eventually(seconds, &format!("run {id} to be {state}"), || {
        let run = run_state(address, id);
        (run["flow_run"]["state"] == state).then_some(run)
    })
}

#[test]
fn a_run_created_through_the_api_completes_on_the_embedded_worker() {
    let sluice = Sluice::new();
    deploy(&sluice, "hello_flow", "hello", "leo", &["name=Leo"]);
    let (_server, address) = sluice.server(&[]);
    let (status, run) = post(&address, "/api/v1/deployments/hello/leo/runs", r#"{"parameters": {"name": "Ford"}}"#);
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap();
    let done = wait_for_state(&address, id, "Completed", 30);
    let states: Vec<&str> = done["states"].as_array().unwrap().iter().map(|s| s["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["Scheduled", "Pending", "Running", "Completed"]);
    let (_, logs) = get(&address, &format!("/api/v1/flow-runs/{id}/logs"));
    assert_eq!(logs[0]["message"], "Hello Ford!");
    let (status, health) = get(&address, "/api/v1/health");
    assert_eq!((status, health), (200, json!({"status": "ok"})));
}

#[test]
fn a_long_poll_answers_when_the_run_ends_and_not_before() {
    let sluice = Sluice::new();
    deploy(&sluice, "hello_flow", "hello", "leo", &["name=Leo"]);
    let (_server, address) = sluice.server(&["--workers", "0"]);
    let (status, run) = post(&address, "/api/v1/deployments/hello/leo/runs", "");
    assert_eq!(status, 201, "{run}");
    let path = format!("/api/v1/flow-runs/{}", run["id"].as_str().unwrap());
    // Nobody runs it: the poll waits its full time, then answers with the run as it is.
    let asked = std::time::Instant::now();
    let (status, waiting) = get(&address, &format!("{path}?wait=0.6"));
    assert_eq!(status, 200, "{waiting}");
    assert_eq!(waiting["flow_run"]["state"], "Scheduled");
    assert!(asked.elapsed() >= std::time::Duration::from_millis(550), "answered after {:?}", asked.elapsed());
    // A worker takes it while the poll waits: the answer comes when it ends, not at the deadline.
    let _worker = sluice.worker(&address, "w1", &[]);
    let asked = std::time::Instant::now();
    let (status, done) = get(&address, &format!("{path}?wait=60"));
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["flow_run"]["state"], "Completed", "{done}");
    assert!(asked.elapsed() < std::time::Duration::from_secs(30), "answered after {:?}", asked.elapsed());
    for bad in ["-1", "61", "soon", "NaN"] {
        let (status, answer) = get(&address, &format!("{path}?wait={bad}"));
        assert_eq!(status, 400, "wait={bad}: {answer}");
    }
}

#[test]
fn a_creation_that_waits_answers_with_the_run_once_it_ended_or_the_wait_ran_out() {
    let sluice = Sluice::new();
    deploy(&sluice, "hello_flow", "hello", "leo", &["name=Leo"]);
    let (_server, address) = sluice.server(&["--workers", "0"]);
    let runs = || get(&address, "/api/v1/flow-runs").1.as_array().unwrap().len();
    // A malformed wait is refused before anything is created.
    for bad in ["-1", "61", "soon", "NaN"] {
        let (status, answer) = post(&address, &format!("/api/v1/deployments/hello/leo/runs?wait={bad}"), "");
        assert_eq!(status, 400, "wait={bad}: {answer}");
    }
    let (status, answer) = post(&address, "/api/v1/deployments/hello/leo/runs?wiat=1", "");
    assert_eq!(status, 400, "an unknown parameter: {answer}");
    assert_eq!(runs(), 0, "a refused request created a run");
    // Nobody runs it: the answer comes when the wait ran out, with the run as it is.
    let asked = std::time::Instant::now();
    let (status, waiting) = post(&address, "/api/v1/deployments/hello/leo/runs?wait=0.6", "");
    assert_eq!(status, 201, "{waiting}");
    assert_eq!(waiting["state"], "Scheduled", "{waiting}");
    assert!(asked.elapsed() >= std::time::Duration::from_millis(550), "answered after {:?}", asked.elapsed());
    // With a worker, the one request answers with the ended run.
    let _worker = sluice.worker(&address, "w1", &[]);
    wait_for_state(&address, waiting["id"].as_str().unwrap(), "Completed", 30);
    let (status, done) =
        post(&address, "/api/v1/deployments/hello/leo/runs?wait=60", r#"{"parameters": {"name": "Ford"}}"#);
    assert_eq!(status, 201, "{done}");
    assert_eq!(done["state"], "Completed", "{done}");
    let id = done["id"].as_str().unwrap();
    let history = run_state(&address, id);
    let states: Vec<&str> =
        history["states"].as_array().unwrap().iter().map(|s| s["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["Scheduled", "Pending", "Running", "Completed"]);
    let (_, logs) = get(&address, &format!("/api/v1/flow-runs/{id}/logs"));
    assert_eq!(logs[0]["message"], "Hello Ford!");
    assert_eq!(runs(), 2);
}

#[test]
fn bad_requests_get_a_clear_4xx_body_and_the_server_stays_up() {
    let sluice = Sluice::new();
    deploy(&sluice, "hello_flow", "hello", "leo", &["name=Leo"]);
    let (_server, address) = sluice.server(&["--workers", "0"]);
    let cases: Vec<(&str, &str, Option<&str>, u16, &str)> = vec![
        ("POST", "/api/v1/deployments/hello/nope/runs", None, 404, "no deployment `hello/nope`"),
        ("POST", "/api/v1/deployments/hello/leo/runs", Some("{\"parameters\":"), 422, "invalid run request"),
        ("POST", "/api/v1/deployments/hello/leo/runs", Some(r#"{"parameters": {"name": 7}}"#), 422, "parameter `name`"),
        ("POST", "/api/v1/deployments/hello/leo/runs", Some(r#"{"colour": 1}"#), 422, "'colour' was unexpected"),
        ("GET", "/api/v1/flow-runs/no-such-run", None, 404, "no flow run"),
        ("GET", "/api/v1/flow-runs?state=Done", None, 400, "not a state"),
        ("GET", "/api/v1/artifacts/sha256:12", None, 422, "not a digest"),
        ("POST", "/api/v1/workers/w/claim", Some("[]"), 422, ""),
        (
            "POST",
            "/api/v1/deployments",
            Some(r#"{"artifact": "sha256:00", "flow": "x"}"#),
            422,
            "\"name\" is a required property",
        ),
        ("GET", "/nowhere", None, 404, "/api/v1"),
    ];
    for (method, path, body, expected_status, expected_text) in cases {
        let (status, answer) = request(&address, method, path, body.map(str::as_bytes));
        assert_eq!(status, expected_status, "{method} {path}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_else(|| panic!("{method} {path}: {answer}"));
        assert!(message.contains(expected_text), "{method} {path}: {message}");
        assert_eq!(answer["error"]["status"], expected_status);
    }
    let huge = vec![b'x'; 5 << 20];
    let (status, _) = request(&address, "POST", "/api/v1/deployments/hello/leo/runs", Some(&huge));
    assert_eq!(status, 413, "bodies over the stated limit are refused");
    assert_eq!(get(&address, "/api/v1/health").0, 200, "still serving");
}

#[test]
fn runs_created_while_the_embedded_worker_has_a_free_slot_are_taken_at_creation_and_never_overfill_it() {
    let sluice = Sluice::new();
    deploy(&sluice, "etl_flow", "etl", "slow", &[]);
    let (_server, address) = sluice.server(&["--workers", "2"]);
    let path = "/api/v1/deployments/etl/slow/runs";
    // A first run, so the embedded worker is surely up.
    let (_, first) = post(&address, path, "");
    wait_for_state(&address, first["id"].as_str().unwrap(), "Completed", 30);
    let slow = r#"{"parameters": {"settings": {"warehouse_latency_ms": 300}}}"#;
    let created: Vec<Value> = (0..6)
        .map(|_| {
            let (status, run) = post(&address, path, slow);
            assert_eq!(status, 201, "{run}");
            run
        })
        .collect();
    // Both slots were free: the first run was taken by the commit that
    // created it, which started it too: the answer already says Running.
    let taker = created[0]["claimed_by"].as_str().unwrap_or_default();
    assert!(taker.starts_with("embedded worker of"), "{}", created[0]);
    assert_eq!(created[0]["state"], "Running", "{}", created[0]);
    let mut spans = Vec::new();
    for run in &created {
        let done = wait_for_state(&address, run["id"].as_str().unwrap(), "Completed", 60);
        // Started by its claim or not, each state is recorded once, in order.
        let states: Vec<&str> =
            done["states"].as_array().unwrap().iter().map(|s| s["state"].as_str().unwrap()).collect();
        assert_eq!(states, ["Scheduled", "Pending", "Running", "Completed"], "{done}");
        let time = |state: &str| {
            let states = done["states"].as_array().unwrap();
            let entry = states.iter().find(|s| s["state"] == state).unwrap_or_else(|| panic!("{state}: {done}"));
            entry["time"].as_str().unwrap().to_string()
        };
        spans.push((time("Running"), time("Completed")));
    }
    // Never more than its 2 slots at once, whoever took the runs.
    for (start, _) in &spans {
        let overlapping = spans.iter().filter(|(s, end)| s <= start && start < end).count();
        assert!(overlapping <= 2, "{overlapping} runs at {start}: {spans:?}");
    }
    // And both slots kept busy: a waiting run starts when one frees, not at
    // the worker's next heartbeat (2 s). Six runs of 300 ms one after the
    // other would take 1.8 s; two at a time, about 0.9 s.
    let time = |text: &str| chrono::DateTime::parse_from_rfc3339(text).unwrap();
    let first = spans.iter().map(|(start, _)| time(start)).min().unwrap();
    let last = spans.iter().map(|(_, end)| time(end)).max().unwrap();
    assert!(last - first < chrono::Duration::milliseconds(1800), "{spans:?}");
}

#[test]
fn a_run_started_by_its_claim_whose_artifact_is_tampered_fails_once_and_the_server_goes_on() {
    let sluice = Sluice::new();
    deploy(&sluice, "hello_flow", "hello", "leo", &["name=Leo"]);
    deploy(&sluice, "etl_flow", "etl", "nightly", &[]);
    let hello = std::fs::read(guest("hello_flow")).unwrap();
    let objects = sluice.home.path().join("artifacts/artifacts/sha256");
    for object in std::fs::read_dir(objects).unwrap().map(|entry| entry.unwrap().path()) {
        if std::fs::read(&object).unwrap() == hello {
            let mut tampered = hello.clone();
            *tampered.last_mut().unwrap() ^= 0xff;
            std::fs::write(&object, tampered).unwrap();
        }
    }
    let (_server, address) = sluice.server(&["--workers", "2"]);
    let (status, run) = post(&address, "/api/v1/deployments/hello/leo/runs", "");
    assert_eq!(status, 201, "{run}");
    let failed = wait_for_state(&address, run["id"].as_str().unwrap(), "Failed", 30);
    let states: Vec<&str> = failed["states"].as_array().unwrap().iter().map(|s| s["state"].as_str().unwrap()).collect();
    // Its claim recorded Pending and Running; the failure follows them, once.
    assert_eq!(states, ["Scheduled", "Pending", "Running", "Failed"], "{failed}");
    let message = failed["flow_run"]["message"].as_str().unwrap();
    assert!(message.contains("corrupt") || message.contains("tampered"), "{failed}");
    let (status, other) = post(&address, "/api/v1/deployments/etl/nightly/runs", "");
    assert_eq!(status, 201, "{other}");
    wait_for_state(&address, other["id"].as_str().unwrap(), "Completed", 30);
}

#[test]
fn three_workers_racing_run_every_one_of_300_runs_exactly_once() {
    let sluice = Sluice::new();
    deploy(&sluice, "bench_flow", "sequential", "one", &["count=1"]);
    let (_server, address) = sluice.server(&["--workers", "0"]);
    let _workers: Vec<_> =
        ["w1", "w2", "w3"].iter().map(|name| sluice.worker(&address, name, &["--limit", "4"])).collect();
    let ids: Vec<String> = (0..300)
        .map(|_| {
            let (status, run) = post(&address, "/api/v1/deployments/sequential/one/runs", "");
            assert_eq!(status, 201, "{run}");
            run["id"].as_str().unwrap().to_string()
        })
        .collect();
    eventually(120, "300 completed runs", || {
        let (_, runs) = get(&address, "/api/v1/flow-runs?state=Completed&limit=1000");
        (runs.as_array().unwrap().len() == 300).then_some(())
    });
    for id in &ids {
        let run = run_state(&address, id);
        let states: Vec<&str> =
            run["states"].as_array().unwrap().iter().map(|s| s["state"].as_str().unwrap()).collect();
        assert_eq!(states, ["Scheduled", "Pending", "Running", "Completed"], "run {id} ran once");
        assert_eq!(run["task_runs"].as_array().unwrap().len(), 1, "run {id}: one task run");
        let taker = run["flow_run"]["claimed_by"].as_str().unwrap();
        assert!(["w1", "w2", "w3"].contains(&taker), "{taker}");
    }
}

#[test]
fn a_worker_killed_mid_run_has_its_run_marked_crashed() {
    let sluice = Sluice::new();
    deploy(&sluice, "hostile_flow", "spin_flow", "forever", &[]);
    let (_server, address) = sluice.server(&["--workers", "0", "--heartbeat-timeout", "2"]);
    let mut worker = sluice.worker(&address, "doomed", &["--heartbeat", "1"]);
    let (_, run) = post(&address, "/api/v1/deployments/spin_flow/forever/runs", "");
    let id = run["id"].as_str().unwrap();
    wait_for_state(&address, id, "Running", 30);
    worker.child.kill().unwrap(); // SIGKILL
    worker.child.wait().unwrap();
    let crashed = wait_for_state(&address, id, "Crashed", 30);
    let message = crashed["flow_run"]["message"].as_str().unwrap();
    assert!(message.contains("`doomed` stopped sending heartbeats"), "{message}");
}

#[test]
fn cancel_stops_a_running_infinite_loop_and_a_scheduled_run() {
    let sluice = Sluice::new();
    deploy(&sluice, "hostile_flow", "spin_flow", "forever", &[]);
    let (_server, address) = sluice.server(&[]);
    let (_, run) = post(&address, "/api/v1/deployments/spin_flow/forever/runs", "");
    let id = run["id"].as_str().unwrap();
    wait_for_state(&address, id, "Running", 30);
    let (status, answer) = post(&address, &format!("/api/v1/flow-runs/{id}/cancel"), "");
    assert_eq!((status, &answer["outcome"]), (200, &json!("Cancelling")));
    let cancelled = wait_for_state(&address, id, "Cancelled", 30);
    let states: Vec<&str> =
        cancelled["states"].as_array().unwrap().iter().map(|s| s["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["Scheduled", "Pending", "Running", "Cancelling", "Cancelled"]);

    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (_, run) = post(&address, "/api/v1/deployments/spin_flow/forever/runs", &format!(r#"{{"start": "{later}"}}"#));
    let id = run["id"].as_str().unwrap();
    let (_, answer) = post(&address, &format!("/api/v1/flow-runs/{id}/cancel"), "");
    assert_eq!(answer["outcome"], "Cancelled");
    assert_eq!(run_state(&address, id)["flow_run"]["state"], "Cancelled");
}

#[test]
fn a_restarted_server_keeps_every_run_and_runs_what_was_waiting() {
    let sluice = Sluice::new();
    deploy(&sluice, "hello_flow", "hello", "leo", &["name=Leo"]);
    let (server, address) = sluice.server(&["--workers", "0"]);
    let ids: Vec<String> = (0..5)
        .map(|_| post(&address, "/api/v1/deployments/hello/leo/runs", "").1["id"].as_str().unwrap().to_string())
        .collect();
    drop(server); // SIGKILL
    let (_server, address) = sluice.server(&[]);
    for id in &ids {
        wait_for_state(&address, id, "Completed", 30);
    }
}

#[test]
fn a_crashed_run_is_scheduled_again_when_its_deployment_allows_retries() {
    let sluice = Sluice::new();
    let hostile = guest("hostile_flow");
    let output = sluice.run(&[
        "deploy",
        hostile.to_str().unwrap(),
        "--flow",
        "spin_flow",
        "--name",
        "retried",
        "--retries",
        "1",
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let (_server, address) = sluice.server(&["--workers", "0", "--heartbeat-timeout", "2"]);
    let mut first = sluice.worker(&address, "first", &["--heartbeat", "1"]);
    let (_, run) = post(&address, "/api/v1/deployments/spin_flow/retried/runs", "");
    let id = run["id"].as_str().unwrap();
    wait_for_state(&address, id, "Running", 30);
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let _second = sluice.worker(&address, "second", &["--heartbeat", "1"]);
    let retried = eventually(30, "the retry running on the second worker", || {
        let run = run_state(address.as_str(), id);
        (run["flow_run"]["state"] == "Running" && run["flow_run"]["claimed_by"] == "second").then_some(run)
    });
    let states: Vec<&str> =
        retried["states"].as_array().unwrap().iter().map(|s| s["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["Scheduled", "Pending", "Running", "Crashed", "Scheduled", "Pending", "Running"]);
    assert!(retried["states"][4]["message"].as_str().unwrap().starts_with("Retry 1/1 after a crash"));
    post(&address, &format!("/api/v1/flow-runs/{id}/cancel"), "");
    wait_for_state(&address, id, "Cancelled", 30);
}

#[test]
fn a_worker_reporting_on_a_run_it_does_not_hold_is_refused() {
    let sluice = Sluice::new();
    deploy(&sluice, "hello_flow", "hello", "leo", &["name=Leo"]);
    let (_server, address) = sluice.server(&[]);
    let (_, run) = post(&address, "/api/v1/deployments/hello/leo/runs", "");
    let id = run["id"].as_str().unwrap();
    wait_for_state(&address, id, "Completed", 30);
    let forged = json!([{ "Log": {
        "flow_run": id, "task_run": null, "level": "Info", "message": "forged", "time": chrono::Utc::now(),
    }}]);
    let (status, answer) = post(&address, "/api/v1/workers/intruder/events", &forged.to_string());
    assert_eq!(status, 409, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("not held by `intruder`"), "{answer}");
    let (_, logs) = get(&address, &format!("/api/v1/flow-runs/{id}/logs"));
    assert!(!logs.to_string().contains("forged"), "nothing was recorded");
}

#[test]
fn a_worker_fetches_from_the_shared_store_when_told_and_checks_the_digest() {
    let sluice = Sluice::new();
    deploy(&sluice, "hello_flow", "hello", "leo", &["name=Leo"]);
    let store = sluice.home.path().join("artifacts");
    let tampered_store = tempfile::tempdir().unwrap();
    let objects = store.join("artifacts/sha256");
    let copy = tampered_store.path().join("artifacts/sha256");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(&objects).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[100] ^= 0xff;
        std::fs::write(copy.join(path.file_name().unwrap()), bytes).unwrap();
    }
    let (_server, address) = sluice.server(&["--workers", "0"]);
    let tampered_url = tampered_store.path().to_str().unwrap().to_string();
    let mut fooled = sluice.worker(&address, "fooled", &["--store-url", &tampered_url]);
    let (_, run) = post(&address, "/api/v1/deployments/hello/leo/runs", "");
    let failed = wait_for_state(&address, run["id"].as_str().unwrap(), "Failed", 30);
    assert!(failed["flow_run"]["message"].as_str().unwrap().contains("corrupt"), "{failed}");
    fooled.child.kill().unwrap();
    fooled.child.wait().unwrap();

    let _shared = sluice.worker(&address, "shared", &["--store-url", store.to_str().unwrap()]);
    let (_, run) = post(&address, "/api/v1/deployments/hello/leo/runs", "");
    let done = wait_for_state(&address, run["id"].as_str().unwrap(), "Completed", 30);
    assert_eq!(done["flow_run"]["claimed_by"], "shared");
}

#[test]
fn keep_runs_deletes_ended_runs_once_they_are_old_enough_and_keeps_running_ones() {
    let sluice = Sluice::new();
    deploy(&sluice, "hello_flow", "hello", "leo", &["name=Leo"]);
    deploy(&sluice, "hostile_flow", "spin_flow", "forever", &[]);
    let (_server, address) = sluice.server(&["--keep-runs", "3s"]);
    let (_, spinning) = post(&address, "/api/v1/deployments/spin_flow/forever/runs", "");
    let spinning = spinning["id"].as_str().unwrap();
    wait_for_state(&address, spinning, "Running", 30);
    let (_, done) = post(&address, "/api/v1/deployments/hello/leo/runs", "");
    let done = done["id"].as_str().unwrap();
    let completed = wait_for_state(&address, done, "Completed", 30);
    let ended = completed["flow_run"]["ended"].as_str().unwrap().to_string();
    let (_, logs) = get(&address, &format!("/api/v1/flow-runs/{done}/logs"));
    assert_eq!(logs[0]["message"], "Hello Leo!", "the run is there, with its logs, before it expires");
    eventually(30, "the ended run to be deleted", || {
        (get(&address, &format!("/api/v1/flow-runs/{done}")).0 == 404).then_some(())
    });
    let gone_at = chrono::Utc::now();
    let ended = chrono::DateTime::parse_from_rfc3339(&ended).unwrap();
    assert!(gone_at.signed_duration_since(ended).num_milliseconds() >= 3_000, "deleted before it was 3 s old");
    assert_eq!(run_state(&address, spinning)["flow_run"]["state"], "Running", "a running run is kept");
    let (_, listed) = get(&address, "/api/v1/flow-runs?limit=100");
    let ids: Vec<&str> = listed.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [spinning], "only the running run is listed");
}
