//! `sluice serve`: one process deploys a flow, creates its scheduled runs
//! and executes them; a restart creates no duplicate.

mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use support::{Sluice, guest};

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
