//! Tenants on one real `sluice server`: tokens on every route, tenants that
//! cannot see (or guess) each other's objects, roles, revoked and expired
//! tokens, identical bytes pushed by two tenants, fair claims when one
//! tenant floods the queue, and the CLI's tenant/token commands.

mod support;

use serde_json::{Value, json};
use support::http::{get, post, request, request_as};
use support::{Sluice, eventually, guest, texts};

/// Makes a tenant and an admin token for it with the operator's token; returns the token.
fn tenant_with_admin(address: &str, name: &str, policy: Value) -> String {
    let (status, body) = post(address, "/api/v1/tenants", &json!({ "name": name, "policy": policy }).to_string());
    assert_eq!(status, 201, "{body}");
    token(address, None, name, "admin")
}

/// Makes a token of `tenant` with `role`, as `as_token` (the operator's by default).
fn token(address: &str, as_token: Option<&str>, tenant: &str, role: &str) -> String {
    let body = json!({ "tenant": tenant, "role": role }).to_string();
    let (status, made) = match as_token {
        Some(t) => request_as(address, Some(t), "POST", "/api/v1/tokens", Some(body.as_bytes())),
        None => post(address, "/api/v1/tokens", &body),
    };
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["info"]["role"], role);
    made["token"].as_str().unwrap().to_string()
}

fn call(address: &str, token: &str, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    request_as(address, Some(token), method, path, body.map(str::as_bytes))
}

fn push(address: &str, token: &str, component: &str) -> (u16, Value) {
    let bytes = std::fs::read(guest(component)).unwrap();
    request_as(address, Some(token), "POST", "/api/v1/artifacts", Some(&bytes))
}

fn deploy(address: &str, token: &str, digest: &str) -> (u16, Value) {
    let body = json!({ "artifact": digest, "flow": "hello", "name": "leo", "parameters": { "name": "Leo" } });
    call(address, token, "POST", "/api/v1/deployments", Some(&body.to_string()))
}

fn wait_completed(address: &str, token: &str, id: &str) -> Value {
    eventually(30, &format!("run {id} to complete"), || {
        let (_, run) = call(address, token, "GET", &format!("/api/v1/flow-runs/{id}"), None);
        (run["flow_run"]["state"] == "Completed").then_some(run)
    })
}

#[test]
fn every_route_but_health_refuses_a_missing_or_bad_token() {
    let sluice = Sluice::new();
    let (_server, address) = sluice.server(&["--workers", "0"]);
    let digest = format!("sha256:{}", "a".repeat(64));
    let routes = [
        ("GET", "/api/v1/artifacts".to_string()),
        ("POST", "/api/v1/artifacts".to_string()),
        ("GET", format!("/api/v1/artifacts/{digest}")),
        ("GET", format!("/api/v1/artifacts/{digest}/content")),
        ("GET", "/api/v1/deployments".into()),
        ("POST", "/api/v1/deployments".into()),
        ("GET", "/api/v1/deployments/hello/leo".into()),
        ("DELETE", "/api/v1/deployments/hello/leo".into()),
        ("POST", "/api/v1/deployments/hello/leo/pause".into()),
        ("POST", "/api/v1/deployments/hello/leo/resume".into()),
        ("POST", "/api/v1/deployments/hello/leo/runs".into()),
        ("GET", "/api/v1/flow-runs".into()),
        ("GET", "/api/v1/flow-runs/x".into()),
        ("GET", "/api/v1/flow-runs/x/logs".into()),
        ("POST", "/api/v1/flow-runs/x/cancel".into()),
        ("POST", "/api/v1/flow-runs/x/resume".into()),
        ("GET", "/api/v1/work-pools".into()),
        ("POST", "/api/v1/work-pools".into()),
        ("GET", "/api/v1/work-pools/default".into()),
        ("DELETE", "/api/v1/work-pools/p".into()),
        ("POST", "/api/v1/work-pools/default/pause".into()),
        ("POST", "/api/v1/work-pools/default/resume".into()),
        ("GET", "/api/v1/work-pools/default/queues".into()),
        ("POST", "/api/v1/work-pools/default/queues".into()),
        ("DELETE", "/api/v1/work-pools/default/queues/q".into()),
        ("POST", "/api/v1/work-pools/default/queues/default/pause".into()),
        ("POST", "/api/v1/work-pools/default/queues/default/resume".into()),
        ("POST", "/api/v1/workers/w/claim".into()),
        ("POST", "/api/v1/workers/w/heartbeat".into()),
        ("POST", "/api/v1/workers/w/events".into()),
        ("GET", "/api/v1/tenants".into()),
        ("POST", "/api/v1/tenants".into()),
        ("DELETE", "/api/v1/tenants/t".into()),
        ("PUT", "/api/v1/tenants/t/policy".into()),
        ("GET", "/api/v1/tokens".into()),
        ("POST", "/api/v1/tokens".into()),
        ("DELETE", "/api/v1/tokens/x".into()),
        ("GET", "/api/v1/whoami".into()),
    ];
    let forged = "sluice_0123456789ab_0123456789abcdef0123456789abcdef";
    for (method, path) in &routes {
        for token in [None, Some("not-a-token"), Some(forged)] {
            let (status, body) = request_as(&address, token, method, path, Some(b"{}"));
            assert_eq!(status, 401, "{method} {path} with {token:?}: {body}");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("token"), "{method} {path}: the message says what is missing: {body}");
        }
    }
    assert_eq!(request_as(&address, None, "GET", "/api/v1/health", None).0, 200);
    // The operator's token opens every door.
    let (status, me) = get(&address, "/api/v1/whoami");
    assert_eq!((status, me["tenant"].as_str(), me["operator"].as_bool()), (200, Some("default"), Some(true)));
}

#[test]
fn the_first_admin_token_is_private_and_survives_a_restart() {
    use std::os::unix::fs::PermissionsExt;
    let sluice = Sluice::new();
    let (server, _) = sluice.server(&["--workers", "0"]);
    let first = sluice.admin_token();
    let mode = std::fs::metadata(sluice.home.path().join("admin-token")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "only its owner may read it");
    drop(server);
    let (_server, address) = sluice.server(&["--workers", "0"]);
    assert_eq!(sluice.admin_token(), first, "a restart keeps the working token");
    assert_eq!(request_as(&address, Some(&first), "GET", "/api/v1/whoami", None).0, 200);
}

#[test]
fn a_tenant_cannot_see_or_touch_another_tenants_objects() {
    let sluice = Sluice::new();
    let (_server, address) = sluice.server(&["--workers", "2"]);
    let acme = tenant_with_admin(&address, "acme", json!({}));
    let globex = tenant_with_admin(&address, "globex", json!({}));

    let (status, pushed) = push(&address, &acme, "hello_flow");
    assert_eq!(status, 201, "{pushed}");
    let digest = pushed["artifact"]["digest"].as_str().unwrap().to_string();
    assert_eq!(deploy(&address, &acme, &digest).0, 200);
    let (status, run) = call(&address, &acme, "POST", "/api/v1/deployments/hello/leo/runs", Some(""));
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let name = run["name"].as_str().unwrap().to_string();
    wait_completed(&address, &acme, &id);

    // Lists are empty, and every object by id or name is 404, as if it did not exist.
    for path in ["/api/v1/deployments", "/api/v1/flow-runs", "/api/v1/artifacts"] {
        let (status, list) = call(&address, &globex, "GET", path, None);
        assert_eq!((status, list.as_array().map(Vec::len)), (200, Some(0)), "{path}: {list}");
    }
    let hidden = [
        ("GET", "/api/v1/deployments/hello/leo".to_string()),
        ("POST", "/api/v1/deployments/hello/leo/pause".to_string()),
        ("POST", "/api/v1/deployments/hello/leo/runs".to_string()),
        ("DELETE", "/api/v1/deployments/hello/leo".to_string()),
        ("GET", format!("/api/v1/flow-runs/{id}")),
        ("GET", format!("/api/v1/flow-runs/{name}")),
        ("GET", format!("/api/v1/flow-runs/{id}/logs")),
        ("POST", format!("/api/v1/flow-runs/{id}/cancel")),
        ("GET", format!("/api/v1/artifacts/{digest}")),
        ("GET", format!("/api/v1/artifacts/{digest}/content")),
    ];
    for (method, path) in &hidden {
        let (status, body) = call(&address, &globex, method, path, Some(""));
        assert_eq!(status, 404, "{method} {path}: {body}");
    }
    let resume = format!("/api/v1/flow-runs/{id}/resume");
    let (status, body) = call(&address, &globex, "POST", &resume, Some(r#"{"input": {}}"#));
    assert_eq!(status, 404, "POST {resume}: {body}");
    // Its digest is of no use to globex until globex pushes the bytes itself.
    let (status, refused) = deploy(&address, &globex, &digest);
    assert_eq!(status, 404, "{refused}");
    let (status, pushed) = push(&address, &globex, "hello_flow");
    assert_eq!(status, 201, "new to globex, whoever else has the bytes: {pushed}");
    assert_eq!(pushed["newly_stored"], true);
    assert_eq!(deploy(&address, &globex, &digest).0, 200, "now it may");
    // Same names, separate objects: acme's deployment and history are untouched.
    let (_, acme_runs) = call(&address, &acme, "GET", "/api/v1/flow-runs", None);
    assert_eq!(acme_runs.as_array().unwrap().len(), 1);
    let (_, globex_runs) = call(&address, &globex, "GET", "/api/v1/flow-runs", None);
    assert_eq!(globex_runs.as_array().unwrap().len(), 0);
    // Claims across tenants are tested on runs that wait to be taken, in
    // a_worker_cannot_report_on_another_tenants_runs_or_move_them.
}

#[test]
fn roles_limit_what_a_token_may_do() {
    let sluice = Sluice::new();
    let (_server, address) = sluice.server(&["--workers", "1"]);
    let admin = tenant_with_admin(&address, "acme", json!({}));
    let viewer = token(&address, Some(&admin), "acme", "viewer");
    let runner = token(&address, Some(&admin), "acme", "runner");
    let deployer = token(&address, Some(&admin), "acme", "deployer");

    let (status, body) = push(&address, &viewer, "hello_flow");
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("viewer token may not push artifacts"), "{body}");
    assert_eq!(push(&address, &runner, "hello_flow").0, 403);
    let (status, pushed) = push(&address, &deployer, "hello_flow");
    assert_eq!(status, 201);
    let digest = pushed["artifact"]["digest"].as_str().unwrap();
    assert_eq!(deploy(&address, &viewer, digest).0, 403);
    assert_eq!(deploy(&address, &runner, digest).0, 403);
    assert_eq!(deploy(&address, &deployer, digest).0, 200);
    let run_path = "/api/v1/deployments/hello/leo/runs";
    assert_eq!(call(&address, &viewer, "POST", run_path, Some("")).0, 403);
    assert_eq!(call(&address, &runner, "POST", run_path, Some("")).0, 201);
    assert_eq!(call(&address, &viewer, "GET", "/api/v1/flow-runs", None).0, 200, "a viewer reads");
    let pool = r#"{"name": "gpu"}"#;
    assert_eq!(call(&address, &deployer, "POST", "/api/v1/work-pools", Some(pool)).0, 403);
    assert_eq!(call(&address, &admin, "POST", "/api/v1/work-pools", Some(pool)).0, 201);
    // A tenant's admin manages its own tokens, nothing of the server's.
    assert_eq!(call(&address, &admin, "GET", "/api/v1/tenants", None).0, 403);
    assert_eq!(call(&address, &admin, "POST", "/api/v1/tenants", Some(r#"{"name": "evil"}"#)).0, 403);
    let other = json!({ "tenant": "default", "role": "admin" }).to_string();
    assert_eq!(call(&address, &admin, "POST", "/api/v1/tokens", Some(&other)).0, 403);
    let (_, tokens) = call(&address, &admin, "GET", "/api/v1/tokens?tenant=default", None);
    assert!(tokens.as_array().unwrap().iter().all(|t| t["tenant"] == "acme"), "{tokens}");
    assert!(!tokens.to_string().contains("sluice_"), "no secret is ever listed: {tokens}");
}

#[test]
fn revoked_and_expired_tokens_are_refused_at_once() {
    let sluice = Sluice::new();
    let (_server, address) = sluice.server(&["--workers", "0"]);
    let admin = tenant_with_admin(&address, "acme", json!({}));
    let viewer = token(&address, Some(&admin), "acme", "viewer");
    assert_eq!(call(&address, &viewer, "GET", "/api/v1/deployments", None).0, 200);
    let id = viewer.split('_').nth(1).unwrap();
    assert_eq!(call(&address, &admin, "DELETE", &format!("/api/v1/tokens/{id}"), None).0, 204);
    let (status, body) = call(&address, &viewer, "GET", "/api/v1/deployments", None);
    assert_eq!(status, 401);
    assert!(body["error"]["message"].as_str().unwrap().contains("revoked"), "{body}");

    let expires = chrono::Utc::now() + chrono::Duration::milliseconds(2000);
    let body = json!({ "role": "viewer", "expires": expires.to_rfc3339() }).to_string();
    let (status, made) = call(&address, &admin, "POST", "/api/v1/tokens", Some(&body));
    assert_eq!(status, 201, "{made}");
    let brief = made["token"].as_str().unwrap();
    // Polled until refused: every answer must match the clock around it,
    // accepted only if asked before the expiry, refused only once past it.
    let mut accepted = 0;
    let refusal = eventually(30, "the brief token to expire", || {
        let asked = chrono::Utc::now();
        let (status, body) = call(&address, brief, "GET", "/api/v1/deployments", None);
        let answered = chrono::Utc::now();
        match status {
            200 => {
                assert!(asked < expires, "accepted when asked at {asked}, after its expiry at {expires}");
                accepted += 1;
                None
            }
            401 => {
                assert!(answered >= expires, "refused at {answered}, before its expiry at {expires}: {body}");
                Some(body)
            }
            other => panic!("unexpected answer {other}: {body}"),
        }
    });
    assert!(accepted > 0, "the token was never accepted before its expiry");
    assert!(refusal["error"]["message"].as_str().unwrap().contains("expired"), "{refusal}");
    let past = json!({ "role": "viewer", "expires": "2001-01-01T00:00:00Z" }).to_string();
    assert_eq!(call(&address, &admin, "POST", "/api/v1/tokens", Some(&past)).0, 422);
}

#[test]
fn a_flood_of_one_tenants_runs_does_not_hold_back_another_tenants_run() {
    let sluice = Sluice::new();
    let (_server, address) = sluice.server(&["--workers", "0"]);
    let big = tenant_with_admin(&address, "big", json!({}));
    let small = tenant_with_admin(&address, "small", json!({}));
    for token in [&big, &small] {
        let digest = push(&address, token, "hello_flow").1["artifact"]["digest"].as_str().unwrap().to_string();
        assert_eq!(deploy(&address, token, &digest).0, 200);
    }
    // 1,000 runs of big queued first, then one of small; then a worker
    // with two slots (the operator's: it serves every tenant) starts.
    for _ in 0..1000 {
        assert_eq!(call(&address, &big, "POST", "/api/v1/deployments/hello/leo/runs", Some("")).0, 201);
    }
    let (status, run) = call(&address, &small, "POST", "/api/v1/deployments/hello/leo/runs", Some(""));
    assert_eq!(status, 201);
    let _worker = sluice.worker(&address, "w", &["--limit", "2"]);
    let small_run = wait_completed(&address, &small, run["id"].as_str().unwrap());
    let small_started = small_run["flow_run"]["started"].as_str().unwrap().to_string();
    // Fair share: small's run goes in the first round, beside at most a
    // round of big's, not after big's backlog.
    let (_, big_runs) = call(&address, &big, "GET", "/api/v1/flow-runs?limit=1000", None);
    let big_runs = big_runs.as_array().unwrap();
    let before = big_runs.iter().filter_map(|r| r["started"].as_str()).filter(|at| *at < small_started.as_str());
    let before = before.count();
    assert!(before <= 2, "{before} of big's runs started before small's waiting run");
    let waiting = big_runs.iter().filter(|r| r["state"] == "Scheduled").count();
    assert!(waiting > 500, "big's backlog was still queued when small's run finished ({waiting} waiting)");
}

#[test]
fn the_cli_manages_tenants_and_tokens_and_logs_in_with_one() {
    let operator = Sluice::new();
    let (_server, address) = operator.server(&["--workers", "1"]);
    let ok = |sluice: &Sluice, args: &[&str]| {
        let output = sluice.remote(&address).args(args).output().unwrap();
        let (stdout, stderr) = texts(&output);
        assert!(output.status.success(), "sluice {args:?}:\n{stdout}\n{stderr}");
        stdout
    };
    ok(&operator, &["tenant", "create", "acme", "--max-memory", "128", "--max-concurrent-runs", "3"]);
    assert!(ok(&operator, &["tenant", "ls"]).contains("acme"));
    let token = ok(&operator, &["token", "create", "--tenant", "acme", "--role", "deployer"]).trim().to_string();
    assert!(token.starts_with("sluice_"), "{token}");

    let user = Sluice::new();
    let login =
        user.command().args(["login", "--api", &format!("http://{address}"), "--token", &token]).output().unwrap();
    let (stdout, stderr) = texts(&login);
    assert!(login.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("as a deployer of tenant `acme`"), "{stdout}");
    let profile = user.home.path().join("profile.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&profile).unwrap().permissions().mode() & 0o777, 0o600);
    let hello = guest("hello_flow");
    let deployed = user
        .command()
        .args(["deploy", hello.to_str().unwrap(), "--flow", "hello", "--name", "leo", "--param", "name=Leo"])
        .output();
    assert!(deployed.unwrap().status.success());
    let listed = user.command().args(["deployment", "ls"]).output().unwrap();
    assert!(texts(&listed).0.contains("hello/leo"));
    // The policy caps what a deployment may ask for, with the limit named.
    let greedy =
        ["deploy", hello.to_str().unwrap(), "--flow", "hello", "--name", "big", "--memory", "512", "--param", "name=X"];
    let greedy = user.command().args(greedy).output().unwrap();
    assert!(!greedy.status.success());
    assert!(texts(&greedy).1.contains("at most 128"), "{}", texts(&greedy).1);
    // The operator's view of acme's deployments is its own tenant's: none.
    assert!(!ok(&operator, &["deployment", "ls"]).contains("hello/leo"));

    let listed = ok(&operator, &["token", "ls", "--tenant", "acme"]);
    assert!(!listed.contains(&token), "token ls never shows a secret:\n{listed}");
    let id = token.split('_').nth(1).unwrap();
    ok(&operator, &["token", "revoke", id]);
    let refused = user.command().args(["deployment", "ls"]).output().unwrap();
    assert!(!refused.status.success());
    assert!(texts(&refused).1.contains("revoked"), "{}", texts(&refused).1);
}

#[test]
fn the_embedded_path_needs_no_token() {
    let sluice = Sluice::new();
    let hello = guest("hello_flow");
    let output =
        sluice.run(&["deploy", hello.to_str().unwrap(), "--flow", "hello", "--name", "leo", "--param", "name=Leo"]);
    assert!(output.status.success(), "{}", texts(&output).1);
    let output = sluice.run(&["run", "hello/leo", "--param", "name=Ada", "--watch"]);
    assert!(output.status.success(), "{}", texts(&output).1);
    assert!(texts(&output).0.contains("Completed"), "{}", texts(&output).0);
}

#[test]
fn a_worker_cannot_report_on_another_tenants_runs_or_move_them() {
    let sluice = Sluice::new();
    let (_server, address) = sluice.server(&["--workers", "0"]);
    let acme = tenant_with_admin(&address, "acme", json!({}));
    let globex = tenant_with_admin(&address, "globex", json!({}));
    let digest = push(&address, &acme, "hello_flow").1["artifact"]["digest"].as_str().unwrap().to_string();
    deploy(&address, &acme, &digest);
    let (_, run) = call(&address, &acme, "POST", "/api/v1/deployments/hello/leo/runs", Some(""));
    let id = run["id"].as_str().unwrap();
    let globex_digest = push(&address, &globex, "hello_flow").1["artifact"]["digest"].as_str().unwrap().to_string();
    deploy(&address, &globex, &globex_digest);
    let (_, globex_run) = call(&address, &globex, "POST", "/api/v1/deployments/hello/leo/runs", Some(""));
    let globex_id = globex_run["id"].as_str().unwrap();
    // Both runs are due and nobody else claims (no embedded workers). globex's
    // worker, even one named like the operator's, takes its own run only, and
    // holds it under a name prefixed with its tenant.
    let claim = r#"{"limit": 5, "wait_ms": 0}"#;
    let (status, claimed) = call(&address, &globex, "POST", "/api/v1/workers/w/claim", Some(claim));
    assert_eq!(status, 200, "{claimed}");
    let taken: Vec<&str> = claimed.as_array().unwrap().iter().map(|c| c["run"]["id"].as_str().unwrap()).collect();
    assert_eq!(taken, [globex_id], "{claimed}");
    let (_, held) = call(&address, &globex, "GET", &format!("/api/v1/flow-runs/{globex_id}"), None);
    assert_eq!(held["flow_run"]["claimed_by"], "globex:w", "{held}");
    let (_, untouched) = call(&address, &acme, "GET", &format!("/api/v1/flow-runs/{id}"), None);
    assert_eq!(
        (&untouched["flow_run"]["state"], &untouched["flow_run"]["claimed_by"]),
        (&json!("Scheduled"), &Value::Null)
    );
    // globex cannot write acme's run either.
    let forged = json!([{ "Log": { "flow_run": id, "task_run": null, "level": "Info",
        "message": "forged", "time": chrono::Utc::now() } }]);
    let (status, _) = call(&address, &globex, "POST", "/api/v1/workers/w/events", Some(&forged.to_string()));
    assert_eq!(status, 409);
    let (_, logs) = call(&address, &acme, "GET", &format!("/api/v1/flow-runs/{id}/logs"), None);
    assert!(!logs.to_string().contains("forged"));
    let (_, after) = call(&address, &acme, "GET", &format!("/api/v1/flow-runs/{id}"), None);
    assert_eq!(after["flow_run"]["tenant"], "acme");
    // The operator's token reads its own tenant: acme's run is not there either.
    assert_eq!(request(&address, "GET", &format!("/api/v1/flow-runs/{id}"), None).0, 404);
    // The run globex could not take was there to be taken: acme's worker takes it.
    let (_, claimed) = call(&address, &acme, "POST", "/api/v1/workers/w/claim", Some(claim));
    let taken: Vec<&str> = claimed.as_array().unwrap().iter().map(|c| c["run"]["id"].as_str().unwrap()).collect();
    assert_eq!(taken, [id], "{claimed}");
}

#[test]
fn deleting_a_tenant_removes_its_objects_and_refuses_its_tokens() {
    let sluice = Sluice::new();
    let (_server, address) = sluice.server(&["--workers", "1"]);
    let acme = tenant_with_admin(&address, "acme", json!({}));
    let digest = push(&address, &acme, "hello_flow").1["artifact"]["digest"].as_str().unwrap().to_string();
    assert_eq!(deploy(&address, &acme, &digest).0, 200);
    let (_, run) = call(&address, &acme, "POST", "/api/v1/deployments/hello/leo/runs", Some(""));
    wait_completed(&address, &acme, run["id"].as_str().unwrap());

    let (status, body) = request(&address, "DELETE", "/api/v1/tenants/default", None);
    assert_eq!(status, 422, "the operator's own tenant stays: {body}");
    assert_eq!(request(&address, "DELETE", "/api/v1/tenants/acme", None).0, 204);
    let (status, body) = call(&address, &acme, "GET", "/api/v1/deployments", None);
    assert_eq!(status, 401, "its tokens went with it: {body}");
    let (_, tenants) = get(&address, "/api/v1/tenants");
    assert!(tenants.as_array().unwrap().iter().all(|t| t["name"] != "acme"), "{tenants}");
    // The name is free again, and a new acme starts empty.
    let again = tenant_with_admin(&address, "acme", json!({}));
    let (_, runs) = call(&address, &again, "GET", "/api/v1/flow-runs", None);
    assert_eq!(runs, json!([]));
    let (_, artifacts) = call(&address, &again, "GET", "/api/v1/artifacts", None);
    assert_eq!(artifacts, json!([]));
}
