//! Events, webhooks and automations on a real `sluice server` over real
//! HTTP on 127.0.0.1: state changes in the event log with their resources,
//! a signed webhook that starts a run with mapped parameters (a wrong
//! signature, a replayed delivery, a body the schema refuses and a
//! flood over the rate start nothing, each recorded), an automation from
//! `triggers:` in sluice.yaml that starts deployment B when A's run
//! completes, one that fires on the third failure within its window, the
//! Events and Automations pages, and tenants that cannot see or trigger
//! each other's hooks and automations.

mod support;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use support::http::{get, post, request, request_as};
use support::{Sluice, eventually, guest, texts};

/// One raw request with extra header lines: status and body (JSON when it parses).
fn send(address: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value, String) {
    let mut stream = TcpStream::connect(address).expect("connecting");
    let extra: String = headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        support::http::dechunk(body)
    } else {
        body.into()
    };
    (status, serde_json::from_str(&body).unwrap_or(Value::Null), body)
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn deploy(sluice: &Sluice, component: &str, flow: &str, name: &str, extra: &[&str]) {
    let path = guest(component);
    let mut args = vec!["deploy", path.to_str().unwrap(), "--flow", flow, "--name", name];
    args.extend_from_slice(extra);
    let output = sluice.run(&args);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

fn runs_of(address: &str, deployment: &str) -> Vec<Value> {
    let (status, runs) = get(address, &format!("/api/v1/flow-runs?deployment={deployment}"));
    assert_eq!(status, 200, "{runs}");
    runs.as_array().unwrap().clone()
}

fn wait_state(address: &str, id: &str, state: &str) -> Value {
    eventually(30, &format!("run {id} to be {state}"), || {
        let (_, run) = get(address, &format!("/api/v1/flow-runs/{id}"));
        (run["flow_run"]["state"] == state).then_some(run)
    })
}

fn events(address: &str, query: &str) -> Vec<Value> {
    let (status, events) = get(address, &format!("/api/v1/events?{query}"));
    assert_eq!(status, 200, "{events}");
    events.as_array().unwrap().clone()
}

fn names(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn a_signed_webhook_starts_a_run_and_every_refused_or_replayed_delivery_starts_nothing() {
    let sluice = Sluice::new();
    let (_server, address) = sluice.server(&[]);
    deploy(&sluice, "hello_flow", "hello", "leo", &["--param", "name=Leo", "--tag", "greeting"]);

    let request_body = json!({
        "deployment": "hello/leo",
        "param_map": {"name": "$.user.name"},
        "dedupe_header": "X-GitHub-Delivery",
    });
    let (status, made) = post(&address, "/api/v1/webhooks", &request_body.to_string());
    assert_eq!(status, 201, "{made}");
    let secret = made["secret"].as_str().expect("a generated secret, shown once").to_string();
    let path = made["path"].as_str().unwrap().to_string();
    assert_eq!(made["hook"]["id"].as_str().unwrap().len(), 32, "128 random bits: {made}");
    let (_, listed) = get(&address, "/api/v1/webhooks");
    assert!(!listed.to_string().contains(&secret), "a listing never shows the secret: {listed}");

    // Signed: a run of hello/leo with the name from the body.
    let body = br#"{"user": {"name": "Ada"}, "action": "opened"}"#;
    let signature = sign(&secret, body);
    let delivery = [("X-Hub-Signature-256", signature.as_str()), ("X-GitHub-Delivery", "d-1")];
    let (status, started, raw) = send(&address, "POST", &path, &delivery, body);
    assert_eq!(status, 202, "{raw}");
    let run_id = started["run"].as_str().expect("the run's id").to_string();
    let run = wait_state(&address, &run_id, "Completed");
    assert_eq!(run["flow_run"]["parameters"]["name"], "Ada", "{run}");

    // The same delivery again: nothing new.
    let (status, again, raw) = send(&address, "POST", &path, &delivery, body);
    assert_eq!((status, &again["duplicate"]), (202, &json!(true)), "{raw}");
    // A wrong signature, no signature, another body under the first signature: 401.
    let wrong = sign("not-the-secret-at-all", body);
    for headers in
        [vec![("X-Hub-Signature-256", wrong.as_str())], vec![], vec![("X-Hub-Signature-256", signature.as_str())]]
    {
        let other = br#"{"user": {"name": "Eve"}}"#;
        let sent: &[u8] = if headers.is_empty() { body } else { other };
        let (status, refused, raw) = send(&address, "POST", &path, &headers, sent);
        assert_eq!(status, 401, "{raw}");
        assert!(refused["error"]["message"].as_str().unwrap().contains("X-Hub-Signature-256"), "{raw}");
    }
    // Signed but not fitting the flow's parameters (a number for a string), or missing the mapped field: 422.
    for (bad, why) in [(&br#"{"user": {"name": 7}}"#[..], "name"), (&br#"{"user": {}}"#[..], "$.user.name")] {
        let signature = sign(&secret, bad);
        let headers = [("X-Hub-Signature-256", signature.as_str()), ("X-GitHub-Delivery", "d-bad")];
        let (status, refused, raw) = send(&address, "POST", &path, &headers, bad);
        assert_eq!(status, 422, "{raw}");
        assert!(refused["error"]["message"].as_str().unwrap().contains(why), "{raw}");
    }
    // An unknown hook is 404, and says nothing more.
    let (status, _, unknown) = send(&address, "POST", "/hooks/0123456789abcdef0123456789abcdef", &[], b"{}");
    assert_eq!(status, 404, "{unknown}");

    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(runs_of(&address, "hello/leo").len(), 1, "only the first delivery started a run");

    // Every attempt on the hook is in the event log; the run's state changes too, with its resources.
    let deliveries = events(&address, "name=sluice.webhook.");
    let mut seen = names(&deliveries);
    seen.sort();
    let mut expected = vec!["sluice.webhook.received", "sluice.webhook.duplicate"];
    expected.extend(["sluice.webhook.rejected"; 5]);
    expected.sort();
    assert_eq!(seen, expected, "{deliveries:?}");
    let states = events(&address, "name=sluice.flow-run.&deployment=hello/leo");
    let completed = states.iter().find(|e| e["name"] == "sluice.flow-run.Completed").expect("a Completed event");
    assert_eq!(completed["flow_run"], run_id.as_str());
    assert_eq!(completed["flow"], "hello");
    assert_eq!(completed["tags"], json!(["greeting"]));
    assert_eq!(completed["payload"]["state"], "Completed");
    assert!(names(&states).contains(&"sluice.flow-run.Running".to_string()), "{states:?}");
    // Paged by seq, newest first.
    let first = events(&address, "limit=2");
    let second = events(&address, &format!("limit=2&before={}", first[1]["seq"]));
    assert!(second[0]["seq"].as_i64() < first[1]["seq"].as_i64(), "{first:?} {second:?}");

    // And from the CLI.
    let output = sluice.remote(&address).args(["event", "ls", "--name", "sluice.flow-run.Completed"]).output().unwrap();
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("sluice.flow-run.Completed") && stdout.contains("hello/leo"), "{stdout}");
}

#[test]
fn a_hook_over_its_rate_is_refused_with_429_and_a_dedupe_field_reads_the_body() {
    let sluice = Sluice::new();
    let (_server, address) = sluice.server(&["--workers", "0"]);
    deploy(&sluice, "hello_flow", "hello", "leo", &["--param", "name=Leo"]);
    let output = sluice
        .remote(&address)
        .args(["webhook", "create", "--deployment", "hello/leo", "--unsigned", "--rate", "2/min"])
        .args(["--dedupe-field", "$.id", "--param-map", "name=$.who", "--output", "json"])
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stderr}");
    let made: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(made["secret"], Value::Null, "an unsigned hook has no secret");
    let path = made["path"].as_str().unwrap();
    let (first, _, raw) = send(&address, "POST", path, &[], br#"{"id": 1, "who": "A"}"#);
    assert_eq!(first, 202, "{raw}");
    let (again, body, raw) = send(&address, "POST", path, &[], br#"{"id": 1, "who": "B"}"#);
    assert_eq!((again, &body["duplicate"]), (202, &json!(true)), "the same $.id: {raw}");
    let (third, _, raw) = send(&address, "POST", path, &[], br#"{"id": 2, "who": "C"}"#);
    assert_eq!(third, 429, "{raw}");
    assert_eq!(runs_of(&address, "hello/leo").len(), 1);
    let output = sluice.remote(&address).args(["webhook", "ls"]).output().unwrap();
    assert!(texts(&output).0.contains("hello/leo"), "{}", texts(&output).0);
    let id = made["hook"]["id"].as_str().unwrap();
    assert!(sluice.remote(&address).args(["webhook", "rm", id]).output().unwrap().status.success());
    let (gone, _, _) = send(&address, "POST", path, &[], br#"{"id": 3, "who": "D"}"#);
    assert_eq!(gone, 404, "a deleted hook is gone");
}

#[test]
fn a_trigger_in_sluice_yaml_starts_deployment_b_when_a_run_of_a_completes() {
    let sluice = Sluice::new();
    let (_server, address) = sluice.server(&[]);
    let component = guest("hello_flow");
    let project = format!(
        r#"deployments:
  - name: leo
    flow: hello
    artifact: {path}
    parameters: {{name: Leo}}
  - name: follow
    flow: hello
    artifact: {path}
    parameters: {{name: nobody}}
    triggers:
      - event: sluice.flow-run.Completed
        deployment: hello/leo
        parameters: {{name: "$.flow_run"}}
"#,
        path = component.display()
    );
    let file = sluice.home.path().join("sluice.yaml");
    std::fs::write(&file, project).unwrap();
    let output = sluice.remote(&address).args(["deploy", "--all", "--file", file.to_str().unwrap()]).output().unwrap();
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("automation hello-follow-trigger-1 set"), "{stdout}");

    let (_, run) = post(&address, "/api/v1/deployments/hello/leo/runs", "");
    let a = run["id"].as_str().unwrap().to_string();
    wait_state(&address, &a, "Completed");
    let b = eventually(30, "the automation's run of hello/follow", || runs_of(&address, "hello/follow").pop());
    assert_eq!(b["parameters"]["name"], a.as_str(), "the parameter came from the event: {b}");
    wait_state(&address, b["id"].as_str().unwrap(), "Completed");
    // B's own completion is not of hello/leo: nothing more fires.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(runs_of(&address, "hello/follow").len(), 1);
    let fired = events(&address, "name=sluice.automation.fired");
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0]["payload"]["run"], b["id"]);

    // Deploying again replaces the trigger's automation rather than adding one.
    let output = sluice.remote(&address).args(["deploy", "--all", "--file", file.to_str().unwrap()]).output().unwrap();
    assert!(output.status.success(), "{}", texts(&output).1);
    let (_, automations) = get(&address, "/api/v1/automations");
    assert_eq!(automations.as_array().unwrap().len(), 1, "{automations}");
}

#[test]
fn an_automation_fires_on_the_third_failure_within_its_window_and_only_then() {
    let sluice = Sluice::new();
    let (_server, address) = sluice.server(&[]);
    deploy(&sluice, "hostile_flow", "trap", "boom", &[]);
    deploy(&sluice, "hello_flow", "hello", "pager", &["--param", "name=oncall"]);
    let output = sluice
        .remote(&address)
        .args(["automation", "create", "page-on-failures", "--on", "sluice.flow-run.Failed", "--of", "trap/boom"])
        .args(["--threshold", "3", "--within", "1m", "--run", "hello/pager"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", texts(&output).1);
    let output = sluice.remote(&address).args(["automation", "ls"]).output().unwrap();
    assert!(texts(&output).0.contains("page-on-failures"), "{}", texts(&output).0);

    for failure in 1..=3 {
        let (_, run) = post(&address, "/api/v1/deployments/trap/boom/runs", "");
        wait_state(&address, run["id"].as_str().unwrap(), "Failed");
        if failure < 3 {
            std::thread::sleep(std::time::Duration::from_millis(300));
            assert!(runs_of(&address, "hello/pager").is_empty(), "fired after only {failure} failures");
        }
    }
    eventually(30, "the page after the third failure", || runs_of(&address, "hello/pager").pop());
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(runs_of(&address, "hello/pager").len(), 1, "the third failure fires once");
    assert!(sluice.remote(&address).args(["automation", "rm", "page-on-failures"]).output().unwrap().status.success());
    let (_, left) = get(&address, "/api/v1/automations");
    assert_eq!(left, json!([]));
}

/// Makes a tenant and an admin token for it; returns the token.
fn tenant_admin(address: &str, name: &str) -> String {
    let (status, body) = post(address, "/api/v1/tenants", &json!({ "name": name }).to_string());
    assert_eq!(status, 201, "{body}");
    let (status, made) = post(address, "/api/v1/tokens", &json!({ "tenant": name, "role": "admin" }).to_string());
    assert_eq!(status, 201, "{made}");
    made["token"].as_str().unwrap().to_string()
}

#[test]
fn tenant_b_cannot_see_or_trigger_tenant_a_hooks_automations_or_events() {
    let sluice = Sluice::new();
    let (_server, address) = sluice.server(&[]);
    let a = tenant_admin(&address, "alpha");
    let b = tenant_admin(&address, "beta");
    let wasm = std::fs::read(guest("hello_flow")).unwrap();
    for token in [&a, &b] {
        let (status, pushed) = request_as(&address, Some(token), "POST", "/api/v1/artifacts", Some(&wasm));
        assert!(status == 200 || status == 201, "{pushed}");
        let digest = pushed["artifact"]["digest"].as_str().unwrap();
        let body = json!({"artifact": digest, "flow": "hello", "name": "leo", "parameters": {"name": "Leo"}});
        let (status, made) =
            request_as(&address, Some(token), "POST", "/api/v1/deployments", Some(body.to_string().as_bytes()));
        assert_eq!(status, 200, "{made}");
        let body = json!({"deployment": "hello/leo", "param_map": {"name": "$.name"}, "unsigned": true});
        let (status, _) =
            request_as(&address, Some(token), "POST", "/api/v1/webhooks", Some(body.to_string().as_bytes()));
        assert_eq!(status, 201);
    }
    // B: an automation on every completion, which must never see A's.
    let rule = json!({"name": "echo", "trigger": {"event": "sluice.flow-run.Completed"},
        "action": {"kind": "run-deployment", "deployment": "hello/leo"}});
    let (status, made) =
        request_as(&address, Some(&b), "POST", "/api/v1/automations", Some(rule.to_string().as_bytes()));
    assert_eq!(status, 201, "{made}");
    let a_rule = json!({"name": "a-rule", "trigger": {"event": "x"}, "action": {"kind": "cancel-run"}});
    let (status, a_made) =
        request_as(&address, Some(&a), "POST", "/api/v1/automations", Some(a_rule.to_string().as_bytes()));
    assert_eq!(status, 201, "{a_made}");

    let (_, a_hooks) = request_as(&address, Some(&a), "GET", "/api/v1/webhooks", None);
    let (_, b_hooks) = request_as(&address, Some(&b), "GET", "/api/v1/webhooks", None);
    assert_eq!((a_hooks.as_array().unwrap().len(), b_hooks.as_array().unwrap().len()), (1, 1));
    let a_hook = a_hooks[0]["id"].as_str().unwrap().to_string();
    assert_ne!(a_hook, b_hooks[0]["id"].as_str().unwrap());

    // A's run through A's hook.
    let (status, started, raw) = send(&address, "POST", &format!("/hooks/{a_hook}"), &[], br#"{"name": "Ada"}"#);
    assert_eq!(status, 202, "{raw}");
    let (_, run) =
        request_as(&address, Some(&a), "GET", &format!("/api/v1/flow-runs/{}", started["run"].as_str().unwrap()), None);
    assert_eq!(run["flow_run"]["tenant"], "alpha", "{run}");
    eventually(30, "A's run to complete", || {
        let (_, run) = request_as(
            &address,
            Some(&a),
            "GET",
            &format!("/api/v1/flow-runs/{}", started["run"].as_str().unwrap()),
            None,
        );
        (run["flow_run"]["state"] == "Completed").then_some(())
    });

    // B sees none of it: not A's hook, automation, run or events; B's automation did not fire.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (status, _) = request_as(&address, Some(&b), "DELETE", &format!("/api/v1/webhooks/{a_hook}"), None);
    assert_eq!(status, 404, "another tenant's hook is not found");
    let a_rule_id = a_made["id"].as_str().unwrap();
    let (status, _) = request_as(&address, Some(&b), "DELETE", &format!("/api/v1/automations/{a_rule_id}"), None);
    assert_eq!(status, 404, "another tenant's automation is not found");
    let (_, b_rules) = request_as(&address, Some(&b), "GET", "/api/v1/automations", None);
    assert_eq!(names(b_rules.as_array().unwrap()), ["echo"]);
    let (_, b_events) = request_as(&address, Some(&b), "GET", "/api/v1/events", None);
    assert_eq!(b_events, json!([]), "B's log holds nothing of A's");
    let (_, b_runs) = request_as(&address, Some(&b), "GET", "/api/v1/flow-runs", None);
    assert_eq!(b_runs, json!([]), "B's automation never saw A's completion");
    let (_, a_events) = request_as(&address, Some(&a), "GET", "/api/v1/events?name=sluice.flow-run.Completed", None);
    assert_eq!(a_events.as_array().unwrap().len(), 1, "{a_events}");
    // And a hook id of another tenant answers exactly like one that does not exist.
    let b_hook = b_hooks[0]["id"].as_str().unwrap();
    let (_, _, deleted) = request_as_raw(&address, &b, "DELETE", &format!("/api/v1/webhooks/{b_hook}"));
    assert!(deleted.is_empty() || deleted == "null", "{deleted}");
    let (gone, _, gone_body) = send(&address, "POST", &format!("/hooks/{b_hook}"), &[], b"{}");
    let (never, _, never_body) = send(&address, "POST", "/hooks/ffffffffffffffffffffffffffffffff", &[], b"{}");
    assert_eq!((gone, &gone_body), (never, &never_body));

    // The pages show each tenant its own.
    let (status, _, page) = ui_page(&address, &b, "/automations");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("echo") && !page.contains("a-rule") && !page.contains(&a_hook), "{page}");
    let (status, _, page) = ui_page(&address, &a, "/events?name=sluice.flow-run.");
    assert_eq!(status, 200);
    assert!(page.contains("sluice.flow-run.Completed") && page.contains("href=\"/automations\""), "{page}");
    let (_, _, page) = ui_page(&address, &b, "/events");
    assert!(!page.contains("sluice.flow-run.Completed"), "{page}");
}

fn request_as_raw(address: &str, token: &str, method: &str, path: &str) -> (u16, Value, String) {
    let auth = format!("Bearer {token}");
    send(address, method, path, &[("Authorization", &auth)], b"")
}

/// A UI page as the tenant of `token` sees it: signs in, then gets the page.
fn ui_page(address: &str, token: &str, path: &str) -> (u16, Value, String) {
    let encoded: String = token
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    let form = format!("token={encoded}&next=/");
    let mut stream = TcpStream::connect(address).unwrap();
    let head = format!(
        "POST /signin HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let cookie = response
        .lines()
        .find_map(|l| l.to_ascii_lowercase().starts_with("set-cookie:").then(|| l[11..].trim().to_string()))
        .expect("a session cookie");
    let cookie = cookie.split(';').next().unwrap().to_string();
    send(address, "GET", path, &[("Cookie", &cookie)], b"")
}

#[test]
fn a_bad_automation_or_webhook_is_refused_saying_why() {
    let sluice = Sluice::new();
    let (_server, address) = sluice.server(&["--workers", "0"]);
    deploy(&sluice, "hello_flow", "hello", "leo", &["--param", "name=Leo"]);
    let cases = [
        (
            "/api/v1/automations",
            json!({"name": "n", "trigger": {"event": "a*b*"}, "action": {"kind": "cancel-run"}}),
            422,
            "prefix ending in one `*`",
        ),
        (
            "/api/v1/automations",
            json!({"name": "n", "trigger": {"event": "x", "threshold": 3}, "action": {"kind": "cancel-run"}}),
            422,
            "needs a window",
        ),
        (
            "/api/v1/automations",
            json!({"name": "n", "trigger": {"event": "x"}, "action": {"kind": "run-deployment", "deployment": "hello/nope"}}),
            404,
            "no deployment",
        ),
        (
            "/api/v1/webhooks",
            json!({"deployment": "hello/leo", "param_map": {"name": "user.name"}}),
            422,
            "does not start with `$`",
        ),
        ("/api/v1/webhooks", json!({"deployment": "hello/leo", "secret": "short"}), 422, "at least 16"),
    ];
    for (path, body, status, why) in cases {
        let (got, answer) = request(&address, "POST", path, Some(body.to_string().as_bytes()));
        assert_eq!(got, status, "{body} -> {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains(why), "{answer}");
    }
}

#[test]
fn events_a_worker_reports_a_flow_emitted_are_kept_like_logs_and_fire_automations() {
    let sluice = Sluice::new();
    let (_server, address) = sluice.server(&["--workers", "0"]);
    deploy(&sluice, "hello_flow", "hello", "leo", &["--param", "name=Leo", "--tag", "team-a"]);
    deploy(&sluice, "hello_flow", "hello", "ack", &["--param", "name=nobody"]);
    let rule = json!({"name": "on-approval", "trigger": {"event": "deploy.approved", "tags": ["team-a"]},
        "action": {"kind": "run-deployment", "deployment": "hello/ack", "param_map": {"name": "$.payload.by"}}});
    let (status, made) = post(&address, "/api/v1/automations", &rule.to_string());
    assert_eq!(status, 201, "{made}");
    let (_, run) = post(&address, "/api/v1/deployments/hello/leo/runs", "");
    let (_, other) = post(&address, "/api/v1/deployments/hello/leo/runs", r#"{"start": "2999-01-01T00:00:00Z"}"#);
    let (status, claimed) = post(&address, "/api/v1/workers/w1/claim", r#"{"limit": 1}"#);
    assert_eq!(status, 200, "{claimed}");
    let held = claimed[0]["run"]["id"].as_str().expect("a claimed run").to_string();
    assert_eq!(held, run["id"].as_str().unwrap());
    let emitted = |run: &str, name: &str, payload: Value| {
        json!([{"Emitted": {"flow_run": run, "task_run": null, "name": name, "payload": payload,
            "time": chrono::Utc::now()}}])
        .to_string()
    };

    // Not held by this worker, a bad name, a payload that is no object: refused, nothing kept.
    let not_held = emitted(other["id"].as_str().unwrap(), "deploy.approved", json!({"by": "mallory"}));
    // A name of Sluice's own state events would pose as the run's state change.
    let forged = emitted(&held, "sluice.flow-run.Completed", json!({"state": "Completed"}));
    for bad in [not_held, emitted(&held, "has space", json!({})), emitted(&held, "ok", json!([1])), forged] {
        let (status, refused) = post(&address, "/api/v1/workers/w1/events", &bad);
        assert_eq!(status, 409, "{refused}");
    }
    assert!(events(&address, "name=deploy.").is_empty() && events(&address, "name=ok").is_empty());
    assert!(events(&address, "name=sluice.flow-run.Completed").is_empty());

    let (status, answer) =
        post(&address, "/api/v1/workers/w1/events", &emitted(&held, "deploy.approved", json!({"by": "Ada"})));
    assert_eq!(status, 204, "{answer}");
    let kept = events(&address, "name=deploy.approved");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["flow_run"], held.as_str());
    assert_eq!((&kept[0]["deployment"], &kept[0]["tags"]), (&json!("hello/leo"), &json!(["team-a"])));
    assert_eq!(kept[0]["payload"], json!({"by": "Ada"}));
    let ack = eventually(30, "the automation's run of hello/ack", || runs_of(&address, "hello/ack").pop());
    assert_eq!(ack["parameters"]["name"], "Ada", "{ack}");
}
