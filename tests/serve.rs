//! `sluice serve`: one process deploys a flow, creates its scheduled runs
//! and executes them; a restart creates no duplicate. With a server
//! configured, it deploys there and executes that deployment's runs itself,
//! and only it does.

mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use std::time::Instant;
use support::http::get;
use support::{Sluice, guest, texts};

/// Stops the server with Ctrl-C (SIGINT) and waits for it.
fn interrupt(mut child: Child) {
    let _ = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let _ = child.wait();
}

/// Starts `sluice serve` and returns it with the lines it prints.
fn serve(sluice: &Sluice) -> (Child, mpsc::Receiver<String>) {
    let hello = guest("hello_flow");
    let mut child = sluice
        .command()
        .args(["serve", hello.to_str().unwrap(), "--name", "every-second", "--interval", "1", "--param", "name=Leo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    (child, lines)
}

fn wait_for_completed_runs(lines: &mpsc::Receiver<String>, wanted: usize) -> Vec<String> {
    let mut seen = Vec::new();
    while seen.len() < wanted {
        let line = lines.recv_timeout(Duration::from_secs(30)).expect("serve printed nothing for 30 s");
        if line.contains("Task run 'say_hello-0' - Hello Leo!") {
            seen.push(line);
        }
    }
    seen
}

#[test]
fn serve_runs_the_flow_on_its_schedule_and_a_restart_duplicates_nothing() {
    let sluice = Sluice::new();
    let (child, lines) = serve(&sluice);
    let first = lines.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(first.contains("Your deployment 'hello/every-second' is being served (every 1 s)"), "{first}");
    wait_for_completed_runs(&lines, 2);
    interrupt(child);

    let list = |sluice: &Sluice| -> Vec<Value> {
        let output =
            sluice.run(&["flow-run", "ls", "--deployment", "hello/every-second", "--limit", "500", "--output", "json"]);
        serde_json::from_slice::<Value>(&output.stdout).unwrap().as_array().unwrap().clone()
    };
    let runs = list(&sluice);
    let completed: Vec<&Value> = runs.iter().filter(|r| r["state"] == "Completed").collect();
    assert!(completed.len() >= 2, "{runs:#?}");
    for run in &completed {
        assert_eq!(run["parameters"]["name"], "Leo");
    }

    let (child, lines) = serve(&sluice);
    wait_for_completed_runs(&lines, 1);
    interrupt(child);
    let runs = list(&sluice);
    let mut times: Vec<&str> = runs.iter().map(|r| r["scheduled"].as_str().unwrap()).collect();
    let total = times.len();
    times.sort();
    times.dedup();
    assert_eq!(times.len(), total, "one run per scheduled time, across restarts");
}

/// Waits for a line containing `needle`; every line read goes into `seen`.
fn wait_line(lines: &mpsc::Receiver<String>, seen: &mut Vec<String>, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.iter().any(|l| l.contains(needle)) {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("no line with `{needle}` within 30 s; saw:\n{}", seen.join("\n")),
        }
    }
}

#[test]
fn serve_against_a_server_deploys_there_and_runs_that_deployments_runs_itself() {
    let sluice = Sluice::new();
    // With its embedded worker: it must not take the served deployment's runs.
    let (_server, address) = sluice.server(&[]);
    let hello = guest("hello_flow");
    let mut serve = sluice
        .remote(&address)
        .args(["serve", hello.to_str().unwrap(), "--name", "served", "--interval", "3600", "--param", "name=Served"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let stdout = serve.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut seen = Vec::new();
    wait_line(
        &lines,
        &mut seen,
        &format!("'hello/served' is being served (every 60 min) by this process, through http://{address}"),
    );
    wait_line(&lines, &mut seen, "taking the runs of hello/served");
    let (status, deployment) = get(&address, "/api/v1/deployments/hello/served");
    assert_eq!(status, 200, "deployed on the server: {deployment}");
    assert_eq!((deployment["served"].clone(), deployment["paused"].clone()), (Value::Bool(true), Value::Bool(false)));

    // A run started from another process runs in the serving one.
    let output =
        sluice.remote(&address).args(["run", "hello/served", "--param", "name=Caller", "--watch"]).output().unwrap();
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("Finished in state Completed()"), "{stdout}");
    assert!(!stderr.contains("will wait"), "the serving process serves it: {stderr}");
    let id = stdout.lines().find_map(|l| l.trim().strip_prefix("id:")).expect("the run's id").trim().to_string();
    wait_line(&lines, &mut seen, "Took flow run '");
    assert!(seen.last().unwrap().contains(&format!("({id}) of hello/served")), "{seen:?}");
    wait_line(&lines, &mut seen, "Task run 'say_hello-0' - Hello Caller!");
    let (_, detail) = get(&address, &format!("/api/v1/flow-runs/{id}"));
    let taker = detail["flow_run"]["claimed_by"].as_str().unwrap_or_default().to_string();
    assert!(taker.starts_with("serve-"), "taken by the serving process, not {taker:?}: {detail:#}");

    // Stopped, it says goodbye and pauses the deployment on the server.
    let _ = std::process::Command::new("kill").args(["-TERM", &serve.id().to_string()]).status();
    wait_line(&lines, &mut seen, "Paused 'hello/served': its schedule makes no runs until it is served again");
    assert!(serve.wait().unwrap().success());
    let (_, deployment) = get(&address, "/api/v1/deployments/hello/served");
    assert_eq!(deployment["paused"], true, "{deployment:#}");

    // Nobody serves it now: a run waits, untaken by the server's own worker, and `run` says why.
    let output = sluice.remote(&address).args(["run", "hello/served"]).output().unwrap();
    let (stdout, stderr) = texts(&output);
    assert!(stderr.contains("no `sluice serve` process serves hello/served"), "{stdout}\n{stderr}");
    let id = stdout.lines().find_map(|l| l.trim().strip_prefix("id:")).expect("the run's id").trim().to_string();
    std::thread::sleep(Duration::from_secs(2));
    let (_, detail) = get(&address, &format!("/api/v1/flow-runs/{id}"));
    assert_eq!(detail["flow_run"]["state"], "Scheduled", "{detail:#}");
}
