//! A worker whose server goes away: what it recorded meanwhile, and what it
//! was handed, must not be lost, doubled or left hanging. A proxy that loses
//! one answer (`support/lossy_proxy.rs`) stands for a server that died
//! between committing a request and answering it.

#[path = "support/lossy_proxy.rs"]
mod lossy_proxy;
mod support;

use std::time::{Duration, Instant};
use support::guest;

/// A worker whose server is gone for longer than its event sender's retries
/// (about 11 s) but shorter than the heartbeat timeout (30 s by default)
/// keeps its runs: when the server returns, what the worker recorded
/// meanwhile (here: the run's end) must reach it, or the run stays `Running`
/// for ever, held by a worker that heartbeats and no longer runs it.
#[test]
fn a_run_ends_when_its_worker_outlives_a_long_server_outage() {
    use std::io::BufRead;
    use std::process::Stdio;
    use support::http::{get, post};
    use support::{Process, Sluice, eventually};

    let sluice = Sluice::new();
    let hold = guest("bench_flow");
    let deployed =
        sluice.run(&["deploy", hold.to_str().unwrap(), "--flow", "hold", "--name", "three", "--param", "ms=3000"]);
    assert!(deployed.status.success(), "{}", support::texts(&deployed).1);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let server_args = ["--workers", "0", "--port", &port];
    let start_server = || {
        let mut child = sluice
            .command()
            .arg("server")
            .args(server_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        assert!(lines.next().unwrap().unwrap().contains(&format!("127.0.0.1:{port}")));
        std::thread::spawn(move || for _ in lines {});
        Process { child }
    };
    let mut server = start_server();
    let address = format!("127.0.0.1:{port}");
    support::http::use_token(&address, &sluice.admin_token());
    let mut worker = sluice
        .remote(&address)
        .args(["worker", "--api", &format!("http://{address}"), "--name", "w", "--heartbeat", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (said, worker_lines) = std::sync::mpsc::channel();
    let stderr = std::io::BufReader::new(worker.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            eprintln!("{line}");
            let _ = said.send(line);
        }
    });
    let _worker = Process { child: worker };

    let (status, run) = post(&address, "/api/v1/deployments/hold/three/runs", "");
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let state = |id: &str| get(&address, &format!("/api/v1/flow-runs/{id}")).1["flow_run"]["state"].clone();
    eventually(60, "the run to be running", || (state(&id) == "Running").then_some(()));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    // The run ends on the worker 3 s later, while the server is down. The
    // outage lasts 20 of the worker's heartbeats: longer than the worker's
    // retries of what it has to send, shorter than the heartbeat timeout.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut failed_heartbeats = 0;
    while failed_heartbeats < 20 {
        let left = deadline.checked_duration_since(Instant::now()).expect("20 failed heartbeats within 60 s");
        if worker_lines.recv_timeout(left).expect("the worker's stderr").contains("heartbeat failed") {
            failed_heartbeats += 1;
        }
    }
    let _server = start_server();
    let ended = (0..60).find_map(|_| {
        let now = state(&id);
        if now != "Running" {
            return Some(now);
        }
        std::thread::sleep(Duration::from_millis(500));
        None
    });
    assert_eq!(
        ended,
        Some(serde_json::json!("Completed")),
        "30 s after the server returned, the run is still Running: its end was dropped by the worker"
    );
}

/// A worker's report that reached the server, whose answer was lost on the
/// way back (the server died after committing it, or the connection broke),
/// is sent again; it must be recorded once.
#[test]
fn a_report_sent_again_after_its_answer_was_lost_is_recorded_once() {
    use support::http::{get, post};
    use support::{Sluice, eventually};

    let sluice = Sluice::new();
    let hold = guest("bench_flow");
    let deployed =
        sluice.run(&["deploy", hold.to_str().unwrap(), "--flow", "hold", "--name", "short", "--param", "ms=500"]);
    assert!(deployed.status.success(), "{}", support::texts(&deployed).1);
    let (_server, address) = sluice.server(&["--workers", "0"]);
    // The worker's first report of a run (its Pending and Running) goes through, its answer does not.
    let proxy = lossy_proxy::lose_one_answer(address.parse().unwrap(), "POST /api/v1/workers/w/events", "");
    let worker = sluice
        .remote(&address)
        .args(["worker", "--api", &format!("http://{proxy}"), "--name", "w"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _worker = support::Process { child: worker };
    let (status, run) = post(&address, "/api/v1/deployments/hold/short/runs", "");
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let done = eventually(60, "the run to complete", || {
        Some(get(&address, &format!("/api/v1/flow-runs/{id}")).1).filter(|r| r["flow_run"]["state"] == "Completed")
    });
    let states = support::states(&done);
    assert_eq!(states, ["Scheduled", "Pending", "Running", "Completed"], "the history of run {id}");
}

/// A claim the server committed but whose answer the worker never got (the
/// server died before answering, or the connection broke) hands runs to a
/// worker that does not know it has them: they must still run (be handed
/// out again, or crash and be retried), not wait for ever under a worker
/// that heartbeats.
#[test]
fn runs_claimed_by_a_request_whose_answer_was_lost_still_run() {
    use support::http::{get, post};
    use support::{Sluice, eventually};

    let sluice = Sluice::new();
    let hold = guest("bench_flow");
    let deploy = [hold.to_str().unwrap(), "--flow", "hold", "--name", "short", "--param", "ms=100"];
    let deployed = sluice.run(&[&["deploy"][..], &deploy, &["--retries", "1", "--retry-delay", "0"]].concat());
    assert!(deployed.status.success(), "{}", support::texts(&deployed).1);
    let (_server, address) = sluice.server(&["--workers", "0", "--heartbeat-timeout", "5"]);
    // The first claim that hands out a run goes through; its answer does not.
    let proxy = lossy_proxy::lose_one_answer(address.parse().unwrap(), "POST /api/v1/workers/w/claim", "\"artifact\"");
    let worker = sluice
        .remote(&address)
        .args(["worker", "--api", &format!("http://{proxy}"), "--name", "w", "--heartbeat", "1"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _worker = support::Process { child: worker };
    let (status, run) = post(&address, "/api/v1/deployments/hold/short/runs", "");
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let run = |id: &str| get(&address, &format!("/api/v1/flow-runs/{id}")).1["flow_run"].clone();
    eventually(30, "the run to be claimed", || run(&id)["claimed_by"].is_string().then_some(()));
    let ended = (0..90).find_map(|_| {
        let now = run(&id);
        if !now["ended"].is_null() {
            return Some(now["state"].clone());
        }
        std::thread::sleep(Duration::from_millis(500));
        None
    });
    assert_eq!(
        ended,
        Some(serde_json::json!("Completed")),
        "45 s later, run {id} is still {}, claimed by {}: taken by a claim whose answer was lost, it never ran",
        run(&id)["state"],
        run(&id)["claimed_by"]
    );
}
