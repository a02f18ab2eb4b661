//! `docs/tutorial.md` cannot rot: every `sh` block of it runs, in order, in
//! one bash shell, against the real `sluice` binary and a real server on
//! 127.0.0.1 (its port 4200 swapped for a free one), and what the steps
//! promise is checked in their output.

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{repo, target_dir};

/// The `sh` blocks of a markdown text, in order.
fn shell_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an `sh` block of the tutorial is not closed");
    blocks
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn the_tutorial_runs_as_written() {
    support::guest("pipeline_flow"); // built once for every test; the tutorial's cargo build is then a no-op
    let markdown = std::fs::read_to_string(repo().join("docs/tutorial.md")).expect("docs/tutorial.md");
    let blocks = shell_blocks(&markdown);
    assert!(blocks.len() >= 8, "the tutorial lost its steps: {} sh blocks", blocks.len());
    let port = free_port().to_string();
    let mut script = String::from("set -euo pipefail\nset -x\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n");
    for block in &blocks {
        script.push_str(&block.replace("4200", &port));
    }
    let target = target_dir();
    if target != repo().join("target") {
        script = script.replace("$PWD/target/", &format!("{}/", target.display()));
    }
    let temp = tempfile::tempdir().unwrap();
    let sluice = std::path::Path::new(env!("CARGO_BIN_EXE_sluice"));
    let path = format!("{}:{}", sluice.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(repo())
        .env("PATH", path)
        .env("TMPDIR", temp.path())
        .env("SLUICE_CACHE_DIR", target.join("test-compile-cache"))
        .env_remove("SLUICE_API_URL")
        .env_remove("SLUICE_API_TOKEN")
        .env_remove("SLUICE_HOME")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        out.read_to_string(&mut text).unwrap();
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        err.read_to_string(&mut text).unwrap();
        text
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the tutorial did not finish in 300 s:\n{}", err_reader.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (stdout, stderr) = (reader.join().unwrap(), err_reader.join().unwrap());
    assert!(status.success(), "the tutorial failed ({status}).\nstdout:\n{stdout}\nstderr (commands):\n{stderr}");

    let expect = |what: &str, needle: &str| {
        assert!(stdout.contains(needle), "{what}: `{needle}` not in the tutorial's output:\n{stdout}");
    };
    // 2: the flow ran here with its subflows and the flaky task's retries.
    expect("exec runs the pipeline's subflows", "sluice.engine - Created subflow run '");
    expect("the flaky task is retried", "worked on attempt 3");
    expect("exec ends", "Finished in state Completed()");
    // 4: deploy without --flow, the doc comment as description, inspect with the schema.
    expect(
        "the description defaults to the doc comment",
        "\"description\": \"Says hello to someone, from a task of its own.\"",
    );
    expect("inspect shows the parameter schema", "\"parameters_schema\"");
    expect("run names the run's page", &format!("in the UI:  http://127.0.0.1:{port}/runs/"));
    expect("the remote watch ends", "Finished in state Completed()");
    // 6: a run nobody will take says so; the queue commands worked on the default pool.
    assert!(
        stderr.contains("warning: this run will wait: no worker serves pool `tutorial`"),
        "no warning for the run of an unserved pool:\n{stderr}"
    );
    // 6: the queue commands worked on the default pool.
    expect("work-queue create defaults to the default pool", "created work queue default/fast");
    expect("work-queue pause defaults to the default pool", "paused work queue default/fast");
    expect("work-queue delete defaults to the default pool", "deleted work queue default/fast");
    // 6 and 8: the worker's banner, its run lines and its goodbye.
    expect("the banner names pool and queue tags", "taking runs from pool 'tutorial' of http://127.0.0.1:");
    expect("the banner names the queue and its tags", "'tutorial_queue' (tags tutorial)");
    expect("a line per run taken", "Took flow run '");
    expect("a line per run ended", "ended Completed after");
    expect("SIGTERM says goodbye", "Worker 'tutorial-worker' stopping (SIGTERM): saying goodbye to the server");
    expect("the worker stops", "Worker 'tutorial-worker' stopped");
    // 7: the run found by name was inspected.
    expect("flow-run inspect shows the history", "Completed");
}
