//! A Prefect user's first hour (issue 22), end to end through the real
//! binary: `sluice init` in a flow crate, deploying without `--flow`, the
//! doc comment as description, `deployment inspect` with the schema,
//! unknown parameters named, a worker's SIGTERM goodbye, a restarted
//! server crashing its previous process's runs at once, and `sluice serve`
//! running the runs it announces and pausing its schedule when it stops.

mod support;

use serde_json::{Value, json};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::http::{get, post};
use support::{Process, Sluice, eventually, guest, repo, texts};

fn ok(output: &std::process::Output, what: &str) -> String {
    let (stdout, stderr) = texts(output);
    assert!(output.status.success(), "{what} failed:\n{stdout}\n{stderr}");
    stdout
}

/// A child's stdout lines, as they come.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = send.send(line);
        }
    });
    receive
}

/// Waits for a line containing `needle`; every line read goes into `seen`.
fn wait_line(lines: &mpsc::Receiver<String>, seen: &mut Vec<String>, needle: &str, seconds: u64) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !seen.iter().any(|l| l.contains(needle)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("no line with `{needle}` within {seconds} s; saw:\n{}", seen.join("\n")),
        }
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

fn run_state(address: &str, id: &str) -> (String, Value) {
    let (status, detail) = get(address, &format!("/api/v1/flow-runs/{id}"));
    assert_eq!(status, 200, "{detail}");
    (detail["flow_run"]["state"].as_str().unwrap_or_default().to_string(), detail)
}

#[test]
fn init_names_the_flows_and_artifact_of_the_crate_it_runs_in() {
    let sluice = Sluice::new();
    let crate_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(crate_dir.path().join("src")).unwrap();
    std::fs::copy(repo().join("examples/pipeline/Cargo.toml"), crate_dir.path().join("Cargo.toml")).unwrap();
    std::fs::copy(repo().join("examples/pipeline/src/lib.rs"), crate_dir.path().join("src/lib.rs")).unwrap();
    let output = sluice.command().arg("init").current_dir(crate_dir.path()).output().unwrap();
    ok(&output, "sluice init");
    let yaml = std::fs::read_to_string(crate_dir.path().join("sluice.yaml")).unwrap();
    for flow in ["pipeline", "subflow_1", "subflow_2"] {
        assert!(yaml.contains(&format!("    flow: {flow}\n")), "{flow} is not named:\n{yaml}");
    }
    assert!(yaml.contains("artifact: target/wasm32-wasip2/release/pipeline_flow.wasm"), "{yaml}");
    assert!(yaml.contains("Runs two subflows, then a task that needs its retries."), "the doc comment: {yaml}");
    assert!(!yaml.contains("flow: hello"), "{yaml}");

    // The starter is a valid project file: with the component where it says, it deploys as written.
    let release = crate_dir.path().join("target/wasm32-wasip2/release");
    std::fs::create_dir_all(&release).unwrap();
    std::fs::copy(guest("pipeline_flow"), release.join("pipeline_flow.wasm")).unwrap();
    let no_build = yaml.replace("build:\n  command: cargo build --release --target wasm32-wasip2\n", "");
    std::fs::write(crate_dir.path().join("sluice.yaml"), no_build).unwrap();
    let output = sluice.command().args(["deploy", "--all"]).current_dir(crate_dir.path()).output().unwrap();
    let stdout = ok(&output, "deploy --all of the starter");
    assert!(stdout.contains("pipeline/default") && stdout.contains("subflow_2/default"), "{stdout}");

    // Anywhere else: the generic, commented starter.
    let elsewhere = tempfile::tempdir().unwrap();
    ok(&sluice.command().arg("init").current_dir(elsewhere.path()).output().unwrap(), "init elsewhere");
    let yaml = std::fs::read_to_string(elsewhere.path().join("sluice.yaml")).unwrap();
    assert!(yaml.contains("flow: hello"), "{yaml}");
}

#[test]
fn deploy_takes_the_only_flow_and_its_doc_comment_and_inspect_shows_the_schema() {
    let sluice = Sluice::new();
    let hello = guest("hello_flow");
    ok(&sluice.run(&["deploy", hello.to_str().unwrap(), "--name", "leo", "--param", "name=Leo"]), "deploy");
    let inspected = ok(&sluice.run(&["deployment", "inspect", "hello/leo"]), "inspect");
    let detail: Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(detail["flow"], "hello");
    assert_eq!(detail["description"], "Says hello to someone, from a task of its own.");
    assert_eq!(detail["parameters_schema"]["properties"]["name"]["type"], "string", "{detail:#}");
    assert_eq!(detail["parameters"], json!({"name": "Leo"}));

    // A description given is kept.
    let args =
        ["deploy", hello.to_str().unwrap(), "--name", "ada", "--param", "name=Ada", "--description", "Greets Ada"];
    ok(&sluice.run(&args), "deploy with a description");
    let detail: Value =
        serde_json::from_str(&ok(&sluice.run(&["deployment", "inspect", "hello/ada"]), "inspect")).unwrap();
    assert_eq!(detail["description"], "Greets Ada");

    // Several flows: the user must choose, and is told which there are.
    let pipeline = guest("pipeline_flow");
    let output = sluice.run(&["deploy", pipeline.to_str().unwrap(), "--name", "nightly"]);
    let (_, stderr) = texts(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("several flows (pipeline, subflow_1, subflow_2); choose one with --flow"), "{stderr}");

    // The same through a server's API: GET /deployments/{flow}/{name} carries the schema.
    let (_server, address) = sluice.server(&["--workers", "0"]);
    let (status, detail) = get(&address, "/api/v1/deployments/hello/leo");
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["description"], "Says hello to someone, from a task of its own.");
    assert_eq!(detail["parameters_schema"]["required"], json!(["name"]), "{detail:#}");
    // And a deploy body without `flow` takes the artifact's only flow.
    let body = json!({"artifact": detail["artifact"], "name": "api", "parameters": {"name": "Api"}}).to_string();
    let (status, deployed) = post(&address, "/api/v1/deployments", &body);
    assert_eq!(status, 200, "{deployed}");
    assert_eq!(deployed["deployment"]["flow"], "hello");
}

#[test]
fn unknown_parameters_name_the_field_everywhere() {
    let sluice = Sluice::new();
    let (hello, pipeline) = (guest("hello_flow"), guest("pipeline_flow"));
    ok(&sluice.run(&["deploy", hello.to_str().unwrap(), "--name", "leo", "--param", "name=Leo"]), "deploy hello");
    ok(&sluice.run(&["deploy", pipeline.to_str().unwrap(), "--flow", "pipeline", "--name", "p"]), "deploy p");
    let refused = |output: std::process::Output, expected: &str| {
        let (stdout, stderr) = texts(&output);
        assert_eq!(output.status.code(), Some(2), "{stdout}{stderr}");
        assert!(stderr.contains(expected), "expected `{expected}` in:\n{stderr}");
        assert!(!stderr.contains("False schema"), "{stderr}");
    };
    let no_params = "unknown parameter `nam` for flow `pipeline`; it takes no parameters";
    refused(sluice.run(&["run", "pipeline/p", "--param", "nam=1"]), no_params);
    refused(sluice.run(&["exec", pipeline.to_str().unwrap(), "--param", "nam=1"]), no_params);
    refused(
        sluice.run(&["run", "hello/leo", "--param", "nam=1"]),
        "unknown parameter `nam` for flow `hello`; it takes: name",
    );

    let (_server, address) = sluice.server(&["--workers", "0"]);
    refused(sluice.remote(&address).args(["run", "pipeline/p", "--param", "nam=1"]).output().unwrap(), no_params);
    let (status, body) = post(&address, "/api/v1/deployments/pipeline/p/runs", r#"{"parameters": {"nam": 1}}"#);
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains(no_params), "{body}");
}

#[test]
fn a_worker_stopped_by_sigterm_says_goodbye_and_gives_back_its_runs_at_once() {
    let sluice = Sluice::new();
    let fixtures = guest("ui_fixtures_flow");
    let args = ["deploy", fixtures.to_str().unwrap(), "--flow", "slow", "--name", "long"];
    ok(&sluice.run(&args), "deploy");
    let (_server, address) = sluice.server(&["--workers", "0"]);

    // Without --api, --token or a profile, the worker says what it needs.
    let output = sluice.run(&["worker"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(texts(&output).1.contains("no server to work for"), "{}", texts(&output).1);

    // With only the saved profile of `sluice login`.
    let token = sluice.admin_token();
    let login = sluice.run(&["login", "--api", &format!("http://{address}"), "--token", &token]);
    ok(&login, "login");
    let mut worker = sluice
        .command()
        .args(["worker", "--name", "w1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut worker);
    let mut seen = Vec::new();
    wait_line(&lines, &mut seen, "Worker 'w1' taking runs from pool 'default'", 30);
    assert!(seen.last().unwrap().contains("queues 'default' (any tags)"), "{seen:?}");

    let body = json!({"parameters": {"steps": 200, "interval_ms": 250}}).to_string();
    let (status, run) = post(&address, "/api/v1/deployments/slow/long/runs", &body);
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    wait_line(&lines, &mut seen, "Took flow run '", 30);
    assert!(seen.last().unwrap().contains(&format!("({id}) of slow/long")), "{seen:?}");
    eventually(30, "the run to be running", || (run_state(&address, &id).0 == "Running").then_some(()));

    let stopped_at = Instant::now();
    signal(&worker, "TERM");
    wait_line(&lines, &mut seen, "stopping (SIGTERM): saying goodbye to the server", 10);
    wait_line(&lines, &mut seen, &format!("flow run {id} it was running ended Crashed"), 10);
    wait_line(&lines, &mut seen, "Worker 'w1' stopped", 10);
    assert!(worker.wait().unwrap().success());
    let (state, _) = run_state(&address, &id);
    assert_eq!(state, "Crashed");
    assert!(stopped_at.elapsed() < Duration::from_secs(10), "not at once: {:?}", stopped_at.elapsed());
}

#[test]
fn a_restarted_server_crashes_its_previous_processs_runs_at_once_and_retries_them() {
    let sluice = Sluice::new();
    let fixtures = guest("ui_fixtures_flow");
    let args = ["deploy", fixtures.to_str().unwrap(), "--flow", "slow", "--name", "long", "--retries", "1"];
    ok(&sluice.run(&args), "deploy");
    let (server, address) = sluice.server(&[]);
    let body = json!({"parameters": {"steps": 400, "interval_ms": 250}}).to_string();
    let (status, run) = post(&address, "/api/v1/deployments/slow/long/runs", &body);
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    eventually(30, "the run to be running", || (run_state(&address, &id).0 == "Running").then_some(()));
    drop(server); // SIGKILL: the embedded worker dies with its server

    let restarted_at = Instant::now();
    let (_server, address) = sluice.server(&[]);
    // Well inside the 30 s heartbeat timeout: Crashed, then retried as attempt 2.
    let detail = eventually(10, "the run to be crashed and retried", || {
        let (_, detail) = run_state(&address, &id);
        let states = detail["states"].as_array().cloned().unwrap_or_default();
        let crashed = states.iter().any(|s| s["state"] == "Crashed");
        let second = states.iter().any(|s| s["attempt"] == 2);
        (crashed && second).then_some(detail)
    });
    assert!(restarted_at.elapsed() < Duration::from_secs(20), "{:?}", restarted_at.elapsed());
    let crashed = detail["states"].as_array().unwrap().iter().find(|s| s["state"] == "Crashed").unwrap();
    assert_eq!(crashed["attempt"], 1, "{detail:#}");
    assert_eq!(detail["flow_run"]["attempt"], 2, "{detail:#}");
}

#[test]
fn serve_runs_the_runs_it_announces_and_pauses_its_schedule_when_it_stops() {
    let sluice = Sluice::new();
    let hello = guest("hello_flow");
    let mut serve: Process = Process {
        child: sluice
            .command()
            .args(["serve", hello.to_str().unwrap(), "--name", "served", "--interval", "3600"])
            .args(["--param", "name=Served"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    };
    let lines = lines_of(&mut serve.child);
    let mut seen = Vec::new();
    wait_line(&lines, &mut seen, "Your deployment 'hello/served' is being served (every 60 min)", 30);

    // The run it tells the user to start goes to it, not to the caller.
    let output = sluice.run(&["run", "hello/served", "--param", "name=Caller", "--watch"]);
    let stdout = ok(&output, "sluice run of a served deployment");
    assert!(stdout.contains("`sluice serve` (") && stdout.contains("serves hello/served and runs it"), "{stdout}");
    assert!(stdout.contains("finished in state Completed()"), "{stdout}");
    wait_line(&lines, &mut seen, "Hello Caller!", 30);

    // Stopped, it says its schedule is paused, and it is.
    signal(&serve.child, "INT");
    wait_line(&lines, &mut seen, "Paused 'hello/served': its schedule makes no runs until it is served again", 30);
    assert!(serve.child.wait().unwrap().success());
    let detail: Value =
        serde_json::from_str(&ok(&sluice.run(&["deployment", "inspect", "hello/served"]), "inspect")).unwrap();
    assert_eq!(detail["paused"], true, "{detail:#}");
    let scheduled = ok(&sluice.run(&["flow-run", "ls", "--deployment", "hello/served", "--state", "Scheduled"]), "ls");
    assert_eq!(scheduled.lines().count(), 1, "only the header: no run is left waiting for nobody:\n{scheduled}");
}

/// Starts `sluice server` on `port` (a restart must come back at the same address).
fn server_on(sluice: &Sluice, port: u16) -> Process {
    let mut child = sluice
        .command()
        .args(["server", "--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut child);
    let mut seen = Vec::new();
    wait_line(&lines, &mut seen, "Sluice server listening on", 30);
    std::thread::spawn(move || for _ in lines {});
    let address = format!("127.0.0.1:{port}");
    support::http::use_token(&address, &sluice.admin_token());
    Process { child }
}

#[test]
fn a_remote_watch_prints_what_a_local_one_does_in_order_and_survives_a_server_restart() {
    let sluice = Sluice::new();
    let (pipeline, fixtures) = (guest("pipeline_flow"), guest("ui_fixtures_flow"));
    ok(&sluice.run(&["deploy", pipeline.to_str().unwrap(), "--flow", "pipeline", "--name", "p"]), "deploy p");
    let args = ["deploy", fixtures.to_str().unwrap(), "--flow", "slow", "--name", "long", "--retries", "1"];
    ok(&sluice.run(&args), "deploy long");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = server_on(&sluice, port);
    let address = format!("127.0.0.1:{port}");

    let output = sluice.remote(&address).args(["run", "pipeline/p", "--watch"]).output().unwrap();
    let stdout = ok(&output, "remote run --watch");
    for expected in [
        "| INFO    | sluice.engine - Created flow run '",
        "| INFO    | sluice.engine - Created subflow run '",
        "| INFO    | Task run 'laugh-0' - Ha ha ha!",
        "| WARNING | Task run 'flaky-0' - ",
        "| INFO    | Task run 'flaky-0' - worked on attempt 3",
        "- Finished in state Completed()",
    ] {
        assert!(stdout.contains(expected), "`{expected}` missing:\n{stdout}");
    }
    let times: Vec<&str> = stdout.lines().filter(|l| l.len() > 15 && &l[12..15] == " | ").map(|l| &l[..12]).collect();
    assert!(times.len() >= 15, "{stdout}");
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "lines are in event-time order:\n{stdout}");

    let mut watch = sluice
        .remote(&address)
        .args(["run", "slow/long", "--param", "steps=24", "--param", "interval_ms=250", "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut watch);
    let mut seen = Vec::new();
    wait_line(&lines, &mut seen, "Beginning flow run", 30);
    drop(server); // SIGKILL: the run's worker dies too
    std::thread::sleep(Duration::from_secs(1));
    let _server = server_on(&sluice, port);
    wait_line(&lines, &mut seen, &format!("Reconnected to http://{address}"), 30);
    wait_line(&lines, &mut seen, "Finished in state Crashed(", 30);
    let status = watch.wait().unwrap();
    for line in lines.try_iter() {
        seen.push(line);
    }
    assert!(status.success(), "the watch ends with the retried run Completed:\n{}", seen.join("\n"));
    assert!(seen.iter().any(|l| l.contains("Finished in state Completed()")), "{}", seen.join("\n"));
}
