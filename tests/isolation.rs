//! What one tenant can reach of another's through a shared server. What a
//! worker may report (`POST /api/v1/workers/{name}/events`) is decided by
//! the store and never by the batch: runs of another tenant, runs that
//! ended, runs another worker holds, and ids that already exist are all
//! refused, whatever parent links the batch itself claims. Cached task
//! results stay within the tenant that computed them.

mod support;

use serde_json::{Value, json};
use support::http::{post, request_as};
use support::{Sluice, guest};

fn tenant_with_admin(address: &str, name: &str) -> String {
    let (status, body) = post(address, "/api/v1/tenants", &json!({ "name": name }).to_string());
    assert_eq!(status, 201, "{body}");
    let (status, made) = post(address, "/api/v1/tokens", &json!({ "tenant": name, "role": "admin" }).to_string());
    assert_eq!(status, 201, "{made}");
    made["token"].as_str().unwrap().to_string()
}

fn call(address: &str, token: &str, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    request_as(address, Some(token), method, path, body.map(str::as_bytes))
}

/// Pushes `hello`, deploys it as `hello/leo` and starts a run; returns the run's id.
fn deployed_run(address: &str, token: &str) -> String {
    let bytes = std::fs::read(guest("hello_flow")).unwrap();
    let (status, pushed) = request_as(address, Some(token), "POST", "/api/v1/artifacts", Some(&bytes));
    assert!(status == 200 || status == 201, "{pushed}");
    let digest = pushed["artifact"]["digest"].as_str().unwrap();
    let body = json!({ "artifact": digest, "flow": "hello", "name": "leo", "parameters": { "name": "Leo" } });
    let (status, body) = call(address, token, "POST", "/api/v1/deployments", Some(&body.to_string()));
    assert_eq!(status, 200, "{body}");
    new_run(address, token)
}

fn new_run(address: &str, token: &str) -> String {
    let (status, run) = call(address, token, "POST", "/api/v1/deployments/hello/leo/runs", Some(""));
    assert_eq!(status, 201, "{run}");
    run["id"].as_str().unwrap().to_string()
}

/// Claims one run as worker `worker`; returns its id.
fn claim(address: &str, token: &str, worker: &str) -> String {
    let (status, claimed) =
        call(address, token, "POST", &format!("/api/v1/workers/{worker}/claim"), Some(r#"{"limit": 1}"#));
    assert_eq!(status, 200, "{claimed}");
    claimed[0]["run"]["id"].as_str().unwrap_or_else(|| panic!("a run to claim: {claimed}")).to_string()
}

fn report(address: &str, token: &str, worker: &str, events: &Value) -> (u16, Value) {
    call(address, token, "POST", &format!("/api/v1/workers/{worker}/events"), Some(&events.to_string()))
}

fn created(id: &str, parent: Option<&str>) -> Value {
    json!({ "FlowRunCreated": { "id": id, "name": "forged-run", "flow": "hello", "parent": parent,
        "deployment": null, "parameters": {}, "artifact_digest": format!("sha256:{}", "a".repeat(64)),
        "created": chrono::Utc::now(), "scheduled": null } })
}

fn task_created(id: &str, flow_run: &str) -> Value {
    json!({ "TaskRunCreated": { "id": id, "flow_run": flow_run, "task": "say_hello", "name": "say_hello-9",
        "input": "{}", "created": chrono::Utc::now() } })
}

fn state(run: &str, kind: &str, state: &str) -> Value {
    json!({ "State": { "run": run, "kind": kind, "state": state, "message": "forged", "attempt": 1,
        "result": if state == "Completed" { Some("\"forged\"") } else { None }, "time": chrono::Utc::now() } })
}

fn log(flow_run: &str, message: &str) -> Value {
    json!({ "Log": { "flow_run": flow_run, "task_run": null, "level": "Info", "message": message,
        "time": chrono::Utc::now() } })
}

fn uuid() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn run_of(address: &str, token: &str, id: &str) -> Value {
    let (status, run) = call(address, token, "GET", &format!("/api/v1/flow-runs/{id}"), None);
    assert_eq!(status, 200, "{run}");
    run
}

fn logs_of(address: &str, token: &str, id: &str) -> String {
    call(address, token, "GET", &format!("/api/v1/flow-runs/{id}/logs"), None).1.to_string()
}

#[test]
fn recreating_another_tenants_run_under_a_held_run_does_not_let_a_worker_write_to_it() {
    let sluice = Sluice::new();
    let (_server, address) = sluice.server(&["--workers", "0"]);
    let acme = tenant_with_admin(&address, "acme");
    let globex = tenant_with_admin(&address, "globex");
    let waiting = deployed_run(&address, &acme);
    let ended = new_run(&address, &acme);
    let (status, body) = call(&address, &acme, "POST", &format!("/api/v1/flow-runs/{ended}/cancel"), Some(""));
    assert_eq!(status, 200, "{body}");
    assert_eq!(run_of(&address, &acme, &ended)["flow_run"]["state"], "Cancelled");
    deployed_run(&address, &globex);
    let held = claim(&address, &globex, "w");

    for (victim, parent) in [(&waiting, Some(held.as_str())), (&ended, Some(held.as_str())), (&waiting, None)] {
        let batch = json!([
            created(victim, parent),
            state(victim, "Flow", "Running"),
            state(victim, "Flow", "Completed"),
            log(victim, "forged by globex"),
        ]);
        let (status, body) = report(&address, &globex, "w", &batch);
        assert_eq!(status, 409, "a batch re-creating {victim} must be refused: {body}");
        assert!(body["error"]["message"].as_str().unwrap_or_default().contains(victim.as_str()), "{body}");
    }
    let waiting_run = run_of(&address, &acme, &waiting);
    assert_eq!(waiting_run["flow_run"]["state"], "Scheduled", "{waiting_run}");
    assert_eq!(waiting_run["flow_run"]["parent"], Value::Null);
    assert_eq!(run_of(&address, &acme, &ended)["flow_run"]["state"], "Cancelled");
    for victim in [&waiting, &ended] {
        assert!(!logs_of(&address, &acme, victim).contains("forged"), "{}", logs_of(&address, &acme, victim));
    }
}

#[test]
fn a_worker_creates_runs_only_with_new_ids_under_runs_it_holds() {
    let sluice = Sluice::new();
    let (_server, address) = sluice.server(&["--workers", "0"]);
    let acme = tenant_with_admin(&address, "acme");
    let globex = tenant_with_admin(&address, "globex");
    let acme_run = deployed_run(&address, &acme);
    deployed_run(&address, &globex);
    let held = claim(&address, &globex, "w");

    // What a real worker does: a subflow under its run, a task in the subflow, their states and logs.
    let (subflow, task) = (uuid(), uuid());
    let batch = json!([
        state(&held, "Flow", "Running"),
        created(&subflow, Some(&held)),
        task_created(&task, &subflow),
        state(&task, "Task", "Running"),
        log(&subflow, "a subflow's line"),
    ]);
    let (status, body) = report(&address, &globex, "w", &batch);
    assert_eq!(status, 204, "{body}");
    let subflow_run = run_of(&address, &globex, &subflow);
    assert_eq!(subflow_run["flow_run"]["parent"], held.as_str());
    assert_eq!(subflow_run["flow_run"]["tenant"], "globex");
    assert!(logs_of(&address, &globex, &subflow).contains("a subflow's line"));

    let refused = [
        ("a top-level run", json!([created(&uuid(), None)])),
        ("a subflow under another tenant's run", json!([created(&uuid(), Some(&acme_run))])),
        ("a subflow under a run nobody has", json!([created(&uuid(), Some(&uuid()))])),
        ("a task run in another tenant's run", json!([task_created(&uuid(), &acme_run)])),
        ("a task run whose id exists", json!([task_created(&task, &held)])),
        ("a subflow whose id exists", json!([created(&subflow, Some(&held))])),
        ("a subflow created twice in one batch", {
            let twice = uuid();
            json!([created(&twice, Some(&held)), created(&twice, Some(&held))])
        }),
        ("a state of another tenant's run", json!([state(&acme_run, "Flow", "Failed")])),
        ("a log of another tenant's run", json!([log(&acme_run, "forged")])),
        ("a state of a task run nobody created", json!([state(&uuid(), "Task", "Completed")])),
        ("a subflow named with terminal escapes", {
            let mut named = created(&uuid(), Some(&held));
            named["FlowRunCreated"]["name"] = json!("\u{1b}[2Jowned");
            json!([named])
        }),
        ("a task run with a 10 KB name", {
            let mut named = task_created(&uuid(), &held);
            named["TaskRunCreated"]["name"] = json!("x".repeat(10_000));
            json!([named])
        }),
    ];
    for (what, batch) in refused {
        let (status, body) = report(&address, &globex, "w", &batch);
        assert_eq!(status, 409, "{what} must be refused: {body}");
    }
    // A refused batch writes nothing, not even its valid events before the bad one.
    let sneaky = uuid();
    let batch = json!([log(&held, "before the bad event"), created(&sneaky, Some(&held)), created(&uuid(), None)]);
    assert_eq!(report(&address, &globex, "w", &batch).0, 409);
    assert!(!logs_of(&address, &globex, &held).contains("before the bad event"));
    assert_eq!(call(&address, &globex, "GET", &format!("/api/v1/flow-runs/{sneaky}"), None).0, 404);
    assert_eq!(run_of(&address, &acme, &acme_run)["flow_run"]["state"], "Scheduled");
    assert!(!logs_of(&address, &acme, &acme_run).contains("forged"));
}

#[test]
fn another_worker_of_the_same_tenant_and_the_holder_after_the_end_are_refused() {
    let sluice = Sluice::new();
    let (_server, address) = sluice.server(&["--workers", "0"]);
    let globex = tenant_with_admin(&address, "globex");
    deployed_run(&address, &globex);
    let held = claim(&address, &globex, "w");
    let subflow = uuid();
    let (status, body) =
        report(&address, &globex, "w", &json!([state(&held, "Flow", "Running"), created(&subflow, Some(&held))]));
    assert_eq!(status, 204, "{body}");

    for batch in [json!([log(&held, "from w2")]), json!([state(&subflow, "Flow", "Failed")])] {
        let (status, body) = report(&address, &globex, "w2", &batch);
        assert_eq!(status, 409, "w2 does not hold {held}: {body}");
    }
    assert!(!logs_of(&address, &globex, &held).contains("from w2"));

    // The subflow ends, then the root; nothing more may be written to either.
    let end = json!([state(&subflow, "Flow", "Completed"), state(&held, "Flow", "Completed")]);
    assert_eq!(report(&address, &globex, "w", &end).0, 204);
    for (what, batch) in [
        ("the ended root", json!([log(&held, "after the end")])),
        ("the ended subflow", json!([log(&subflow, "after the end")])),
        ("a new subflow of the ended root", json!([created(&uuid(), Some(&held))])),
    ] {
        let (status, body) = report(&address, &globex, "w", &batch);
        assert_eq!(status, 409, "{what}: {body}");
    }
    assert!(!logs_of(&address, &globex, &held).contains("after the end"));
    assert_eq!(run_of(&address, &globex, &held)["flow_run"]["state"], "Completed");
}

#[test]
fn a_cached_task_result_is_never_served_to_another_tenant() {
    let sluice = Sluice::new();
    let (_server, address) = sluice.server(&["--workers", "1"]);
    let bytes = std::fs::read(guest("etl_flow")).unwrap();
    let mut cached_by_tenant = Vec::new();
    for tenant in ["acme", "globex"] {
        let token = tenant_with_admin(&address, tenant);
        // The same bytes, so the same digest, task and input: only the tenant differs.
        let (status, pushed) = request_as(&address, Some(&token), "POST", "/api/v1/artifacts", Some(&bytes));
        assert!(status == 200 || status == 201, "{pushed}");
        let body = json!({ "artifact": pushed["artifact"]["digest"], "flow": "etl", "name": "nightly" });
        let (status, body) = call(&address, &token, "POST", "/api/v1/deployments", Some(&body.to_string()));
        assert_eq!(status, 200, "{body}");
        let (status, run) = call(&address, &token, "POST", "/api/v1/deployments/etl/nightly/runs", Some(""));
        assert_eq!(status, 201, "{run}");
        let id = run["id"].as_str().unwrap().to_string();
        let detail = support::eventually(60, "the etl run to end", || {
            let detail = run_of(&address, &token, &id);
            let state = detail["flow_run"]["state"].as_str().unwrap_or_default().to_string();
            ["Completed", "Failed", "Crashed"].contains(&state.as_str()).then_some(detail)
        });
        assert_eq!(detail["flow_run"]["state"], "Completed", "{detail}");
        let states: Vec<(String, String)> = detail["task_runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| &t["task_run"])
            .filter(|t| t["task"] == "exchange_rate")
            .map(|t| (t["name"].as_str().unwrap().to_string(), t["state"].as_str().unwrap().to_string()))
            .collect();
        cached_by_tenant.push(states);
    }
    let expected = vec![
        ("exchange_rate-0".to_string(), "Completed".to_string()),
        ("exchange_rate-1".to_string(), "Cached".to_string()),
    ];
    assert_eq!(cached_by_tenant[0], expected, "acme computes the rate once, then reads its own cache");
    assert_eq!(cached_by_tenant[1], expected, "globex computes its own rate: acme's cached result is not served");
}
