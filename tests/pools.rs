//! Work pools and queues: managed from the CLI, routing by tag, pausing,
//! and concurrency limits that make runs wait their turn.

mod support;

use serde_json::{Value, json};
use support::http::{get, post};
use support::{Sluice, eventually, guest, texts};

fn ok(sluice: &Sluice, args: &[&str]) -> String {
    let output = sluice.run(args);
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "sluice {args:?}:\n{stdout}\n{stderr}");
    stdout
}

fn refused(sluice: &Sluice, args: &[&str], expected: &str) {
    let output = sluice.run(args);
    let (_, stderr) = texts(&output);
    assert!(!output.status.success(), "sluice {args:?} should fail");
    assert!(stderr.contains(expected), "sluice {args:?}: expected `{expected}` in {stderr}");
}

#[test]
fn pools_and_queues_are_managed_from_the_cli() {
    let sluice = Sluice::new();
    ok(&sluice, &["work-pool", "create", "gpu", "--description", "big machines"]);
    ok(&sluice, &["work-queue", "create", "fast", "--pool", "gpu", "--tag", "fast", "--priority", "0", "--limit", "2"]);
    let pools = ok(&sluice, &["work-pool", "ls"]);
    assert!(pools.contains("default") && pools.contains("gpu") && pools.contains("big machines"), "{pools}");
    let queues = ok(&sluice, &["work-queue", "ls", "--pool", "gpu"]);
    assert!(queues.contains("gpu/default") && queues.contains("gpu/fast"), "{queues}");
    let inspected: Value = serde_json::from_str(&ok(&sluice, &["work-pool", "inspect", "gpu"])).unwrap();
    let fast = inspected["queues"].as_array().unwrap().iter().find(|q| q["name"] == "fast").unwrap().clone();
    assert_eq!((fast["priority"].as_i64(), fast["concurrency_limit"].as_u64()), (Some(0), Some(2)));
    assert_eq!(fast["tags"], serde_json::json!(["fast"]));
    ok(&sluice, &["work-queue", "pause", "fast", "--pool", "gpu"]);
    assert!(
        ok(&sluice, &["work-queue", "ls", "--pool", "gpu"])
            .lines()
            .any(|l| l.starts_with("gpu/fast") && l.ends_with("yes"))
    );
    ok(&sluice, &["work-pool", "pause", "gpu"]);
    let paused: Value = serde_json::from_str(&ok(&sluice, &["work-pool", "inspect", "gpu"])).unwrap();
    assert_eq!(paused["pool"]["paused"], true);
    ok(&sluice, &["work-pool", "resume", "gpu"]);

    refused(&sluice, &["work-pool", "create", "gpu"], "exists already");
    refused(&sluice, &["work-queue", "create", "q", "--pool", "nope"], "no work pool `nope`");
    refused(&sluice, &["work-pool", "delete", "default"], "cannot be deleted");
    let hello = guest("hello_flow");
    let hello = hello.to_str().unwrap();
    refused(&sluice, &["deploy", hello, "--flow", "hello", "--name", "x", "--pool", "nope"], "no work pool `nope`");
    refused(
        &sluice,
        &["deploy", hello, "--flow", "hello", "--name", "x", "--pool", "gpu", "--queue", "q"],
        "no work queue `q`",
    );
    ok(&sluice, &["deploy", hello, "--flow", "hello", "--name", "x", "--pool", "gpu", "--param", "name=A"]);
    refused(&sluice, &["work-pool", "delete", "gpu"], "used by hello/x");
    ok(&sluice, &["work-queue", "delete", "fast", "--pool", "gpu"]);
    ok(&sluice, &["deployment", "delete", "hello/x"]);
    ok(&sluice, &["work-pool", "delete", "gpu"]);
    refused(&sluice, &["work-pool", "inspect", "gpu"], "no work pool `gpu`");
}

fn create_runs(address: &str, deployment: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|_| {
            let (status, run) = post(address, &format!("/api/v1/deployments/{deployment}/runs"), "");
            assert_eq!(status, 201, "{run}");
            run["id"].as_str().unwrap().to_string()
        })
        .collect()
}

fn run(address: &str, id: &str) -> Value {
    get(address, &format!("/api/v1/flow-runs/{id}")).1["flow_run"].clone()
}

#[test]
fn queues_route_runs_by_tag_and_a_paused_queue_hands_out_nothing() {
    let sluice = Sluice::new();
    ok(&sluice, &["work-pool", "create", "p"]);
    ok(&sluice, &["work-queue", "create", "fast", "--pool", "p", "--tag", "fast"]);
    ok(&sluice, &["work-queue", "create", "slow", "--pool", "p", "--tag", "slow"]);
    let hello = guest("hello_flow");
    let hello = hello.to_str().unwrap();
    ok(
        &sluice,
        &["deploy", hello, "--flow", "hello", "--name", "a", "--pool", "p", "--tag", "fast", "--param", "name=A"],
    );
    ok(
        &sluice,
        &["deploy", hello, "--flow", "hello", "--name", "b", "--pool", "p", "--tag", "slow", "--param", "name=B"],
    );
    let (_server, address) = sluice.server(&["--workers", "0"]);
    let _fast = sluice.worker(&address, "wf", &["--pool", "p", "--queue", "fast"]);
    let _slow = sluice.worker(&address, "ws", &["--pool", "p", "--queue", "slow"]);
    let a = create_runs(&address, "hello/a", 5);
    let b = create_runs(&address, "hello/b", 5);
    // Each worker serves one queue, so the worker that took a run names the queue it was routed to.
    for (ids, worker, greeting) in [(&a, "wf", "Said hello to A"), (&b, "ws", "Said hello to B")] {
        for id in ids {
            let done =
                eventually(30, "a completed run", || Some(run(&address, id)).filter(|r| r["state"] == "Completed"));
            assert_eq!((&done["claimed_by"], &done["result"]), (&json!(worker), &json!(greeting)), "run {id}");
        }
    }

    let (status, paused) = post(&address, "/api/v1/work-pools/p/queues/fast/pause", "");
    assert_eq!((status, &paused["name"], &paused["paused"]), (200, &json!("fast"), &json!(true)), "{paused}");
    let waiting = create_runs(&address, "hello/a", 1).remove(0);
    // A claim without a wait is answered at once: the paused queue hands out
    // nothing, though the run is due. Had this claim taken the run, or had
    // worker wf taken it meanwhile, the run would show it.
    let body = json!({ "limit": 10, "wait_ms": 0, "pool": "p", "queues": ["fast"] }).to_string();
    let (status, claimed) = post(&address, "/api/v1/workers/probe/claim", &body);
    assert_eq!((status, &claimed), (200, &json!([])), "claiming from a paused queue");
    let still = run(&address, &waiting);
    assert_eq!((still["state"].as_str(), still["claimed_by"].as_str()), (Some("Scheduled"), None), "{still}");
    let (status, resumed) = post(&address, "/api/v1/work-pools/p/queues/fast/resume", "");
    assert_eq!((status, &resumed["paused"]), (200, &json!(false)), "{resumed}");
    let done =
        eventually(30, "the run after resume", || Some(run(&address, &waiting)).filter(|r| r["state"] == "Completed"));
    assert_eq!(done["claimed_by"], "wf");
}

fn assert_one_at_a_time(address: &str, ids: &[String]) {
    let runs: Vec<Value> = ids
        .iter()
        .map(|id| eventually(60, "an ended run", || Some(run(address, id)).filter(|r| !r["ended"].is_null())))
        .collect();
    let time = |run: &Value, field: &str| chrono::DateTime::parse_from_rfc3339(run[field].as_str().unwrap()).unwrap();
    let mut windows: Vec<_> = runs.iter().map(|r| (time(r, "started"), time(r, "ended"))).collect();
    windows.sort();
    for pair in windows.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "two runs of a limit-1 deployment overlapped: {pair:?}");
    }
}

#[test]
fn a_deployment_concurrency_limit_makes_runs_wait_their_turn() {
    let sluice = Sluice::new();
    let hostile = guest("hostile_flow");
    ok(&sluice, &["deploy", hostile.to_str().unwrap(), "--flow", "spin", "--name", "one", "--concurrency-limit", "1"]);
    let (_server, address) = sluice.server(&["--workers", "4"]);
    assert_one_at_a_time(&address, &create_runs(&address, "spin/one", 4));
}

#[test]
fn a_queue_concurrency_limit_holds_across_its_deployments() {
    let sluice = Sluice::new();
    ok(&sluice, &["work-queue", "create", "narrow", "--pool", "default", "--limit", "1", "--priority", "0"]);
    let hostile = guest("hostile_flow");
    for name in ["a", "b"] {
        ok(&sluice, &["deploy", hostile.to_str().unwrap(), "--flow", "spin", "--name", name, "--queue", "narrow"]);
    }
    let (_server, address) = sluice.server(&["--workers", "4"]);
    let mut ids = create_runs(&address, "spin/a", 2);
    ids.extend(create_runs(&address, "spin/b", 2));
    assert_one_at_a_time(&address, &ids);
}
