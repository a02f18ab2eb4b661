//! What an operator watches: `GET /metrics` on the server's and a worker's
//! own listen addresses, read with prometheus_client's parser (the
//! reference Python implementation, `tests/metrics/setup.sh`), whose counts
//! move by exactly what ran; `sluice flow-run logs --follow` against a
//! remote server, ending when the run ends; the host's own logs as JSON lines.

mod support;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::http::{get, post, use_token};
use support::{Process, Sluice, eventually, guest, repo, target_dir};

/// The venv `tests/metrics/setup.sh` makes.
fn venv_python() -> PathBuf {
    let venv = std::env::var_os("METRICS_VENV").map(PathBuf::from).unwrap_or_else(|| target_dir().join("metrics-venv"));
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "prometheus_client is not installed in {}: run `make metrics-deps` (tests/metrics/setup.sh)",
        venv.display()
    );
    python
}

/// One parsed sample.
#[derive(Debug, Clone)]
struct Sample {
    family_type: String,
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape, parsed by prometheus_client.
struct Scrape(Vec<Sample>);

impl Scrape {
    /// The value of `name` with exactly these labels (0 when absent: a series not yet created).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.0.iter().find(|s| s.name == name && s.labels == wanted).map_or(0.0, |s| s.value)
    }

    /// The sum of `name` over every series whose labels include these.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
            .map(|s| s.value)
            .sum()
    }

    fn families(&self) -> std::collections::BTreeSet<String> {
        self.0.iter().map(|s| s.name.clone()).collect()
    }
}

/// Fetches `http://address/metrics` and parses it with prometheus_client.
fn scrape(address: &str) -> Scrape {
    let mut stream = TcpStream::connect(address).expect("connecting to the metrics address");
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        support::http::dechunk(body)
    } else {
        body.into()
    };
    let mut parser = Command::new(venv_python())
        .arg(repo().join("tests/metrics/parse.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the parser");
    parser.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let output = parser.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "prometheus_client refused the metrics: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let samples: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    Scrape(
        samples
            .into_iter()
            .map(|s| Sample {
                family_type: s["type"].as_str().unwrap().to_string(),
                name: s["name"].as_str().unwrap().to_string(),
                labels: serde_json::from_value(s["labels"].clone()).unwrap(),
                value: s["value"].as_f64().unwrap(),
            })
            .collect(),
    )
}

/// A free port on 127.0.0.1 (bound, then released for the process under test).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn deploy(sluice: &Sluice, component: &str, flow: &str, name: &str, params: &[&str]) {
    let path = guest(component);
    let mut args = vec!["deploy", path.to_str().unwrap(), "--flow", flow, "--name", name];
    for param in params {
        args.extend_from_slice(&["--param", param]);
    }
    let output = sluice.run(&args);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

fn create_run(address: &str, deployment: &str) -> String {
    let (status, run) = post(address, &format!("/api/v1/deployments/{deployment}/runs"), "{}");
    assert_eq!(status, 201, "{run}");
    run["id"].as_str().unwrap().to_string()
}

fn wait_completed(address: &str, id: &str) {
    eventually(60, &format!("run {id} to complete"), || {
        let (_, run) = get(address, &format!("/api/v1/flow-runs/{id}"));
        let state = run["flow_run"]["state"].as_str().unwrap_or_default().to_string();
        assert!(!["Failed", "Crashed", "TimedOut", "Cancelled"].contains(&state.as_str()), "{run}");
        (state == "Completed").then_some(())
    });
}

/// The moves of every counter between two scrapes, for messages.
fn moved(before: &Scrape, after: &Scrape) -> String {
    let mut lines = Vec::new();
    for s in &after.0 {
        let old = before.value(&s.name, &s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>());
        if s.family_type == "counter" && s.value != old {
            lines.push(format!("{} {:?} +{}", s.name, s.labels, s.value - old));
        }
    }
    lines.join("\n")
}

const DEFAULT: (&str, &str) = ("tenant", "default");

#[test]
fn server_metrics_move_by_exactly_what_ran_and_are_not_on_the_api_address() {
    let sluice = Sluice::new();
    deploy(&sluice, "pipeline_flow", "pipeline", "p", &[]);
    deploy(&sluice, "hello_flow", "hello", "h", &["name=Leo"]);
    let hello = guest("hello_flow");
    let yearly = [
        "deploy",
        hello.to_str().unwrap(),
        "--flow",
        "hello",
        "--name",
        "yearly",
        "--cron",
        "0 0 1 1 *",
        "--param",
        "name=Leo",
    ];
    assert!(sluice.run(&yearly).status.success());
    let metrics = format!("127.0.0.1:{}", free_port());
    let (_server, address) = sluice.server(&["--metrics-listen", &metrics]);
    eventually(10, "the metrics endpoint", || TcpStream::connect(&metrics).ok());

    // The API's address does not serve them: they name every tenant.
    let (status, _) = get(&address, "/metrics");
    assert_eq!(status, 404);

    let before = scrape(&metrics);
    let runs =
        [create_run(&address, "pipeline/p"), create_run(&address, "pipeline/p"), create_run(&address, "hello/h")];
    for id in &runs {
        wait_completed(&address, id);
    }
    let p = [DEFAULT, ("deployment", "pipeline/p")];
    let h = [DEFAULT, ("deployment", "hello/h")];
    let ended = |scrape: &Scrape, labels: &[(&str, &str); 2]| {
        scrape.value("sluice_flow_runs_ended_total", &[labels[0], labels[1], ("state", "Completed")])
    };
    // Counted from committed events by a task of its own: give it a moment.
    let after = eventually(10, "the run counters to catch up", || {
        let after = scrape(&metrics);
        (ended(&after, &p) - ended(&before, &p) == 2.0 && ended(&after, &h) - ended(&before, &h) == 1.0)
            .then_some(after)
    });
    let delta = |name: &str, labels: &[(&str, &str)]| after.value(name, labels) - before.value(name, labels);
    let why = moved(&before, &after);
    assert_eq!(delta("sluice_flow_runs_created_total", &p), 2.0, "{why}");
    assert_eq!(delta("sluice_flow_runs_created_total", &h), 1.0, "{why}");
    assert_eq!(delta("sluice_flow_runs_started_total", &p), 2.0, "{why}");
    assert_eq!(delta("sluice_flow_runs_started_total", &h), 1.0, "{why}");
    assert_eq!(after.sum("sluice_flow_runs_ended_total", &[("state", "Failed")]), 0.0, "{why}");
    // Each pipeline run: two subflows of two tasks each, and a task that fails twice then completes.
    assert_eq!(delta("sluice_subflow_runs_created_total", &[]), 4.0, "{why}");
    assert_eq!(delta("sluice_task_attempts_total", &[("outcome", "completed")]), 2.0 * 5.0 + 1.0, "{why}");
    assert_eq!(delta("sluice_task_attempts_total", &[("outcome", "failed")]), 2.0 * 2.0, "{why}");
    assert_eq!(delta("sluice_task_retries_total", &[]), 2.0 * 2.0, "{why}");
    assert_eq!(delta("sluice_task_attempt_duration_seconds_count", &[]), 15.0, "{why}");
    assert_eq!(delta("sluice_flow_run_dispatch_lag_seconds_count", &[]), 3.0, "{why}");
    assert_eq!(delta("sluice_flow_run_duration_seconds_count", &[]), 3.0, "{why}");
    assert_eq!(
        delta(
            "sluice_http_requests_total",
            &[("route", "/api/v1/deployments/{flow}/{name}/runs"), ("method", "POST"), ("status", "201")]
        ),
        3.0,
        "{why}"
    );
    assert_eq!(
        delta("sluice_http_requests_total", &[("route", "unmatched"), ("method", "GET"), ("status", "404")]),
        0.0,
        "the scrape before the runs is not an API request: {why}"
    );
    assert!(delta("sluice_store_commit_writes_count", &[("backend", "sqlite")]) > 0.0, "{why}");
    assert!(delta("sluice_store_commit_seconds_count", &[("backend", "sqlite")]) > 0.0, "{why}");
    assert!(after.sum("sluice_compile_cache_lookups_total", &[]) >= 1.0, "{why}");
    assert_eq!(after.value("sluice_worker_slots", &[]), 4.0);
    assert_eq!(after.value("sluice_worker_slots_busy", &[]), 0.0, "every run ended");
    assert_eq!(after.value("sluice_instances_alive", &[]), 0.0, "every instance was dropped");
    assert_eq!(after.value("sluice_metrics_events_missed_total", &[]), 0.0);

    // The scheduler's runs (inserted by the store, not through the API) are counted too: a yearly
    // schedule, so that none is due during the test and the counts above stay exact.
    let yearly = [DEFAULT, ("deployment", "hello/yearly")];
    eventually(10, "the scheduler's runs to be counted", || {
        let (_, runs) = get(&address, "/api/v1/flow-runs?deployment=hello/yearly");
        let listed = runs.as_array().unwrap().len() as f64;
        (listed >= 3.0 && scrape(&metrics).value("sluice_flow_runs_created_total", &yearly) == listed).then_some(())
    });

    // A request no route serves is counted under one label, not its path.
    let (status, _) = get(&address, "/api/v1/no-such-thing/12345");
    assert_eq!(status, 404);
    let later = scrape(&metrics);
    assert_eq!(later.sum("sluice_http_requests_total", &[("route", "/api/v1/no-such-thing/12345")]), 0.0);
    assert!(later.sum("sluice_http_requests_total", &[("route", "unmatched"), ("status", "404")]) >= 1.0);
}

/// The dashboard in deploy/ names only metrics that `exported` (sample names of real scrapes) has.
fn check_dashboard(exported: &std::collections::BTreeSet<String>) {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("deploy/grafana/sluice.json")).unwrap()).unwrap();
    let mut named = Vec::new();
    collect_exprs(&dashboard, &mut named);
    assert!(named.len() >= 10, "the dashboard has panels: {named:?}");
    for expr in &named {
        for metric in metric_names(expr) {
            assert!(exported.contains(&metric), "the dashboard's `{expr}` names `{metric}`, which is not exported");
        }
    }
}

/// Every `expr` of the dashboard's panels.
fn collect_exprs(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => into.push(expr.clone()),
                    _ => collect_exprs(value, into),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_exprs(item, into)),
        _ => {}
    }
}

/// The `sluice_…` names a PromQL expression reads.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("sluice_") {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn a_remote_worker_serves_its_own_metrics_and_the_server_its_queue_depth() {
    let sluice = Sluice::new();
    deploy(&sluice, "pipeline_flow", "pipeline", "p", &[]);
    let metrics = format!("127.0.0.1:{}", free_port());
    let (_server, address) = sluice.server(&["--workers", "0", "--metrics-listen", &metrics]);
    eventually(10, "the metrics endpoint", || TcpStream::connect(&metrics).ok());
    let first = create_run(&address, "pipeline/p");
    let second = create_run(&address, "pipeline/p");
    // No worker yet: both wait in the default pool's default queue.
    let waiting = scrape(&metrics);
    assert_eq!(
        waiting.value("sluice_queue_depth", &[DEFAULT, ("pool", "default"), ("queue", "default")]),
        2.0,
        "{:?}",
        waiting.0.iter().filter(|s| s.name == "sluice_queue_depth").collect::<Vec<_>>()
    );

    let worker_port = free_port();
    let _worker = sluice.worker(&address, "w1", &["--metrics-port", &worker_port.to_string(), "--limit", "3"]);
    let worker_metrics = format!("127.0.0.1:{worker_port}");
    for id in [&first, &second] {
        wait_completed(&address, id);
    }
    let worker = scrape(&worker_metrics);
    assert_eq!(worker.value("sluice_task_attempts_total", &[("outcome", "completed")]), 10.0);
    assert_eq!(worker.value("sluice_task_attempts_total", &[("outcome", "failed")]), 4.0);
    assert_eq!(worker.value("sluice_task_retries_total", &[]), 4.0);
    assert_eq!(worker.value("sluice_worker_slots", &[]), 3.0);
    assert_eq!(worker.value("sluice_worker_slots_busy", &[]), 0.0);
    // One artifact: loaded once, or once per run when both runs arrive before either loaded it.
    let lookups = worker.sum("sluice_compile_cache_lookups_total", &[]);
    assert!((1.0..=2.0).contains(&lookups), "{lookups} compile cache lookups");
    assert_eq!(worker.value("sluice_instances_alive", &[]), 0.0);
    assert_eq!(worker.value("sluice_pool_slots", &[]), 1000.0, "the pool's slots: {:?}", worker.families());
    assert_eq!(worker.value("sluice_pool_component_instances", &[]), 0.0);
    // The worker runs no store and creates no runs: those are the server's.
    assert_eq!(worker.sum("sluice_flow_runs_created_total", &[]), 0.0);

    let server = eventually(10, "the server to count the remote runs", || {
        let server = scrape(&metrics);
        (server.value("sluice_flow_runs_ended_total", &[DEFAULT, ("deployment", "pipeline/p"), ("state", "Completed")])
            == 2.0)
            .then_some(server)
    });
    assert_eq!(server.value("sluice_flow_runs_started_total", &[DEFAULT, ("deployment", "pipeline/p")]), 2.0);
    assert_eq!(server.value("sluice_task_attempts_total", &[("outcome", "completed")]), 0.0, "ran on the worker");
    assert_eq!(server.sum("sluice_queue_depth", &[]), 0.0, "nothing waits any more");

    // The dashboard names only metrics the server and the worker export.
    let mut exported = waiting.families();
    exported.extend(server.families());
    exported.extend(worker.families());
    check_dashboard(&exported);
}

/// Starts `sluice server` with stderr piped, returning it, its address and its stderr lines.
fn server_with_stderr(
    sluice: &Sluice,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Process, String, BufReader<std::process::ChildStderr>) {
    let mut child = sluice
        .command()
        .envs(env.iter().copied())
        .args(["server", "--port", "0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting sluice server");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("the server prints its address").unwrap();
    let address = first.split("http://").nth(1).and_then(|rest| rest.split(' ').next()).unwrap().to_string();
    std::thread::spawn(move || for _ in lines {});
    use_token(&address, &sluice.admin_token());
    let stderr = BufReader::new(child.stderr.take().unwrap());
    (Process { child }, address, stderr)
}

#[test]
fn host_logs_in_json_are_one_object_per_line_and_a_bad_filter_is_refused() {
    let sluice = Sluice::new();
    deploy(&sluice, "hello_flow", "hello", "h", &["name=Leo"]);
    let (_server, address, stderr) = server_with_stderr(&sluice, &["--log-format", "json"], &[("SLUICE_LOG", "info")]);
    let id = create_run(&address, "hello/h");
    wait_completed(&address, &id);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else { continue };
        let parsed: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(parsed["timestamp"].is_string() && parsed["level"].is_string(), "{parsed}");
        let message = parsed["fields"]["message"].as_str().unwrap_or_default().to_string();
        let ended = message.contains("ended Completed") && parsed["fields"]["run"] == json!(id);
        seen.push(parsed);
        if ended {
            break;
        }
    }
    assert!(seen.iter().any(|l| l["fields"]["message"] == "server listening" && l["level"] == "INFO"), "{seen:#?}");
    assert!(
        seen.iter().any(|l| l["fields"]["run"] == json!(id) && l["fields"]["state"] == "Completed"),
        "the run's end is logged with its id and state: {seen:#?}"
    );

    let refused =
        sluice.command().env("SLUICE_LOG", "sluice=loudest").args(["server", "--port", "0"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("SLUICE_LOG") && message.contains("not a log filter"), "{message}");
}

#[test]
fn logs_follow_streams_from_a_remote_server_until_the_run_ends() {
    let sluice = Sluice::new();
    deploy(&sluice, "pipeline_flow", "pipeline", "p", &[]);
    let (_server, address) = sluice.server(&["--workers", "0"]);
    let id = create_run(&address, "pipeline/p");
    // Followed before it starts: nothing runs it until a worker comes.
    let mut follow = sluice
        .remote(&address)
        .args(["flow-run", "logs", &id, "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(follow.try_wait().unwrap().is_none(), "--follow waits while the run has not ended");
    let _worker = sluice.worker(&address, "w1", &[]);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = follow.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "--follow did not end with the run");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    follow.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let mut stderr = String::new();
    follow.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.matches("Ha ha ha!").count(), 2, "{stdout}");
    assert_eq!(stdout.matches("Running away!").count(), 2, "{stdout}");
    assert!(stdout.contains("worked on attempt 3"), "{stdout}");
    assert!(stderr.contains("ended in state Completed"), "{stderr}");
    let (_, run) = get(&address, &format!("/api/v1/flow-runs/{id}"));
    assert_eq!(run["flow_run"]["state"], "Completed");

    // The same lines, in the same order, as the plain logs command prints them.
    let plain = sluice.remote(&address).args(["flow-run", "logs", &id]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&plain.stdout), stdout);

    // Following a run that already ended prints it and stops at once; a missing run is a clear 404.
    let again = sluice.remote(&address).args(["flow-run", "logs", &id, "-f"]).output().unwrap();
    assert!(again.status.success());
    assert_eq!(String::from_utf8_lossy(&again.stdout), stdout);
    let missing = sluice.remote(&address).args(["flow-run", "logs", "no-such-run", "--follow"]).output().unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no flow run"), "{:?}", missing);
}
