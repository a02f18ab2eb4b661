//! The hostile-guest suite, through the real `sluice server`: guests of one
//! tenant that spin, allocate, recurse, trap, print without end, fork tasks
//! without end, reach for files, environment, sockets and unlisted hosts, or
//! return malformed JSON all run at once, each ends recorded with a clear
//! reason, and a well-behaved flow of another tenant running beside them
//! completes with its result intact. Also: the deploy-time import check,
//! grants within the tenant's policy, secrets kept secret, and grants that
//! reach a remote worker's sandbox.

mod support;

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use support::http::request_as;
use support::{Sluice, eventually, guest, texts};

/// One tenant's view of the server: its token on every call.
struct Api {
    address: String,
    token: String,
}

impl Api {
    /// The operator, with the admin token the server wrote on its first start.
    fn operator(sluice: &Sluice, address: &str) -> Self {
        let token = std::fs::read_to_string(sluice.home.path().join("admin-token")).expect("the server's admin token");
        Self { address: address.to_string(), token: token.trim().to_string() }
    }

    /// Creates tenant `name` with `policy` and returns its admin.
    fn tenant(&self, name: &str, policy: Value) -> Self {
        let (status, answer) = self.post("/api/v1/tenants", json!({ "name": name, "policy": policy }));
        assert!(status == 200 || status == 201, "{answer}");
        let (status, token) = self.post("/api/v1/tokens", json!({ "tenant": name, "role": "admin" }));
        assert_eq!(status, 201, "{token}");
        Self { address: self.address.clone(), token: token["token"].as_str().unwrap().to_string() }
    }

    fn get(&self, path: &str) -> (u16, Value) {
        request_as(&self.address, Some(&self.token), "GET", path, None)
    }

    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        request_as(&self.address, Some(&self.token), "POST", path, Some(body.to_string().as_bytes()))
    }

    fn delete(&self, path: &str) -> (u16, Value) {
        request_as(&self.address, Some(&self.token), "DELETE", path, None)
    }

    /// `sluice ARGS…` talking to the server as this tenant; must succeed.
    fn cli(&self, sluice: &Sluice, args: &[&str]) -> std::process::Output {
        let output = sluice
            .command()
            .env("SLUICE_API_URL", format!("http://{}", self.address))
            .env("SLUICE_API_TOKEN", &self.token)
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "sluice {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        output
    }

    /// `sluice deploy COMPONENT --flow FLOW --name NAME EXTRA…` as this tenant.
    fn deploy(&self, sluice: &Sluice, component: &str, flow: &str, name: &str, extra: &[&str]) {
        let path = guest(component);
        let mut args = vec!["deploy", path.to_str().unwrap(), "--flow", flow, "--name", name];
        args.extend_from_slice(extra);
        self.cli(sluice, &args);
    }

    fn start_run(&self, deployment: &str, parameters: Value) -> String {
        let (status, run) =
            self.post(&format!("/api/v1/deployments/{deployment}/runs"), json!({ "parameters": parameters }));
        assert_eq!(status, 201, "{deployment}: {run}");
        run["id"].as_str().unwrap().to_string()
    }

    fn wait_until_ended(&self, id: &str, seconds: u64) -> Value {
        eventually(seconds, &format!("run {id} to end"), || {
            let (_, run) = self.get(&format!("/api/v1/flow-runs/{id}"));
            run["flow_run"]["ended"].is_string().then_some(run)
        })
    }

    fn logs(&self, id: &str) -> Vec<String> {
        let (_, logs) = self.get(&format!("/api/v1/flow-runs/{id}/logs"));
        logs.as_array().unwrap().iter().map(|l| l["message"].as_str().unwrap().to_string()).collect()
    }
}

/// An HTTP server on 127.0.0.1 answering every request with a greeting; counts requests.
fn greeting_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).map(|n| n == 1).unwrap_or(false) {
                head.push(byte[0]);
            }
            let body = "hello from the test";
            let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            let _ = stream.write_all(reply.as_bytes());
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, served)
}

fn state_and_message(run: &Value) -> (String, String) {
    let row = &run["flow_run"];
    (row["state"].as_str().unwrap_or("").to_string(), row["message"].as_str().unwrap_or("").to_string())
}

/// The first task run named `name` (e.g. `spin_forever-0`) of an inspected run.
fn task<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["task_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["task_run"])
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task run {name} in {run:#}"))
}

#[test]
fn every_hostile_guest_is_contained_while_another_tenants_flow_completes_beside_them() {
    let sluice = Sluice::new();
    let (http_port, served) = greeting_server();
    let unused = TcpListener::bind("127.0.0.1:0").unwrap();
    let unused_port = unused.local_addr().unwrap().port();
    let listed = format!("127.0.0.1:{http_port}");

    let (_server, address) = sluice.server(&["--workers", "20"]);
    let operator = Api::operator(&sluice, &address);
    // Every port of the loopback address: the grants below name ports other than 80 and 443.
    let mallory = operator.tenant("mallory", json!({ "allow_hosts": ["127.0.0.1:*"] }));
    let alice = operator.tenant("alice", json!({}));
    mallory.cli(&sluice, &["secret", "set", "HOSTILE_TOKEN", "--value", "s3cr3t-value"]);

    alice.deploy(&sluice, "hello_flow", "hello", "good", &["--param", "name=Arthur"]);
    mallory.deploy(&sluice, "hostile_flow", "spin_flow", "cpu", &["--run-cpu-limit", "300ms"]);
    mallory.deploy(&sluice, "hostile_flow", "hog", "mem", &["--memory", "32"]);
    mallory.deploy(&sluice, "hostile_flow", "deep", "stack", &[]);
    mallory.deploy(&sluice, "hostile_flow", "trap", "panic", &[]);
    // Every hostile-io deployment needs the HTTP grant: the component imports wasi:http.
    let grant = ["--allow-host", listed.as_str()];
    let with = |extra: &[&'static str]| -> Vec<&str> { [&grant[..], extra].concat() };
    mallory.deploy(&sluice, "hostile_io_flow", "shout", "log", &with(&["--log-limit", "1", "--param", "mib=256"]));
    mallory.deploy(&sluice, "hostile_io_flow", "burn", "cpu", &with(&["--cpu-limit", "100ms"]));
    mallory.deploy(&sluice, "hostile_io_flow", "fork_bomb", "tasks", &grant);
    mallory.deploy(&sluice, "hostile_io_flow", "read_files", "files", &grant);
    mallory.deploy(&sluice, "hostile_io_flow", "read_env", "env", &with(&["--secret", "HOSTILE_TOKEN"]));
    let port = format!("port={unused_port}");
    mallory.deploy(&sluice, "hostile_io_flow", "open_sockets", "net", &[&grant[..], &["--param", &port]].concat());
    let url = format!("url=http://{listed}/hello");
    mallory.deploy(&sluice, "hostile_io_flow", "fetch", "http", &[&grant[..], &["--param", &url]].concat());
    mallory.deploy(&sluice, "hostile_io_flow", "garbage", "json", &grant);

    let good_before = alice.start_run("hello/good", json!({}));
    let ids: Vec<String> = [
        ("spin_flow/cpu", json!({})),
        ("burn/cpu", json!({})),
        ("hog/mem", json!({})),
        ("deep/stack", json!({})),
        ("trap/panic", json!({})),
        ("shout/log", json!({})),
        ("fork_bomb/tasks", json!({})),
        ("read_files/files", json!({})),
        ("read_env/env", json!({})),
        ("open_sockets/net", json!({})),
        ("fetch/http", json!({ "url": format!("http://127.0.0.1:{unused_port}/secret") })),
        ("fetch/http", json!({})),
        ("garbage/json", json!({})),
    ]
    .into_iter()
    .map(|(deployment, parameters)| mallory.start_run(deployment, parameters))
    .collect();
    let good_during = alice.start_run("hello/good", json!({ "name": "Ford" }));

    let ended: Vec<Value> = ids.iter().map(|id| mallory.wait_until_ended(id, 120)).collect();
    let by = |index: usize| state_and_message(&ended[index]);

    // A flow spinning is stopped at its run's CPU limit.
    assert_eq!(
        by(0),
        (
            "TimedOut".into(),
            "flow `spin_flow` stopped: the flow run exceeded its CPU limit of 300 ms (flow, subflows and tasks together)"
                .into()
        )
    );
    // A task spinning (with no timeout of its own) is stopped at its CPU limit; the flow passes the failure on.
    let spin_task = task(&ended[1], "burn_forever-0");
    assert_eq!(spin_task["state"], "TimedOut");
    assert_eq!(spin_task["message"], "task `burn_forever` exceeded its CPU limit of 100 ms per task attempt");
    assert_eq!(by(1).0, "Failed");
    // Allocating until refused names the memory limit.
    let hog = task(&ended[2], "allocate-0");
    assert!(hog["message"].as_str().unwrap().starts_with("memory limit of 32 MiB per instance reached"), "{hog}");
    // Recursing until the stack overflows.
    assert!(task(&ended[3], "recurse-0")["message"].as_str().unwrap().contains("call stack exhausted"));
    // A trap in a task, after its retry.
    let trap = task(&ended[4], "explode-0");
    assert_eq!((trap["state"].as_str(), trap["attempts"].as_u64()), (Some("Failed"), Some(2)));
    assert!(trap["message"].as_str().unwrap().contains("task `explode` crashed"), "{trap}");
    // Printing 256 MiB: the log keeps its 1 MiB and says where it stopped.
    assert_eq!(by(5), ("Completed".into(), String::new()));
    let printed = mallory.logs(&ids[5]);
    assert_eq!(printed.last().unwrap(), "[log limit of 1 MiB reached: further lines of this run are dropped]");
    let kept: usize = printed.iter().map(String::len).sum();
    assert!(kept <= (1 << 20) + 100, "{kept} bytes of log kept");
    // Forking tasks without end halts the run at its instance limit.
    let (state, message) = by(6);
    assert_eq!(state, "Failed");
    assert!(message.starts_with("instance limit reached: a flow run may have at most 250 instances"), "{message}");
    // Files: nothing is mounted.
    let files: Vec<String> = serde_json::from_value(ended[7]["flow_run"]["result"].clone()).unwrap();
    assert_eq!(files.len(), 7);
    assert!(files.iter().all(|f| f.contains("refused")), "{files:?}");
    // Environment: only the granted secret, whose value is never in the result.
    assert_eq!(ended[8]["flow_run"]["result"], json!({ "HOSTILE_TOKEN": "s3cr3t-value".len() }));
    // Sockets: TCP, UDP and DNS all refused inside the guest; nothing reached the listener.
    let sockets: Vec<String> = serde_json::from_value(ended[9]["flow_run"]["result"].clone()).unwrap();
    assert!(
        sockets[0].starts_with("tcp refused") && sockets[1].starts_with("udp") && sockets[2].starts_with("dns refused")
    );
    assert!(sockets.iter().all(|s| s.contains("refused")), "{sockets:?}");
    unused.set_nonblocking(true).unwrap();
    assert!(unused.accept().is_err(), "nothing connected to the unused port");
    // HTTP to an unlisted host fails inside the guest, with a warning in the log.
    assert_eq!(ended[10]["flow_run"]["result"], json!({ "error": "ErrorCode::HttpRequestDenied" }));
    let denied = mallory.logs(&ids[10]);
    assert!(denied.iter().any(|l| l.contains("not in this deployment's allow_hosts grant")), "{denied:?}");
    // HTTP to the listed host gets through.
    assert_eq!(ended[11]["flow_run"]["result"], json!({ "status": "200", "body": "hello from the test" }));
    assert_eq!(served.load(Ordering::SeqCst), 1, "only the listed request reached the test's server");
    // A malformed JSON result is refused by the host.
    let (state, message) = by(12);
    assert_eq!(state, "Failed");
    assert!(message.starts_with("result of `garbage` is not valid JSON"), "{message}");

    // The other tenant's flow, run before and during the storm, completed intact,
    // and neither tenant sees the other's runs.
    for (id, name) in [(&good_before, "Arthur"), (&good_during, "Ford")] {
        let run = alice.wait_until_ended(id, 60);
        assert_eq!(state_and_message(&run), ("Completed".into(), String::new()));
        assert_eq!(run["flow_run"]["result"], format!("Said hello to {name}"));
        assert_eq!(alice.logs(id), [format!("Hello {name}!")]);
        assert_eq!(mallory.get(&format!("/api/v1/flow-runs/{id}")).0, 404);
    }
    assert_eq!(alice.get(&format!("/api/v1/flow-runs/{}", ids[0])).0, 404);
    let good_after = alice.start_run("hello/good", json!({ "name": "Zaphod" }));
    let run = alice.wait_until_ended(&good_after, 30);
    assert_eq!(run["flow_run"]["result"], "Said hello to Zaphod");
    assert_eq!(alice.get("/api/v1/health").0, 200, "the server is still up");
}

#[test]
fn what_is_not_granted_or_beyond_the_tenants_policy_is_refused_at_deploy_time() {
    let sluice = Sluice::new();
    let path = guest("hostile_io_flow");
    let output = sluice.run(&["deploy", path.to_str().unwrap(), "--flow", "read_files", "--name", "nogrant"]);
    let (_, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("the component imports `wasi:http/"), "{stderr}");
    assert!(stderr.contains("--allow-host HOST"), "{stderr}");

    // The same through the API, as a tenant whose policy allows one host.
    let (_server, address) = sluice.server(&["--workers", "0"]);
    let acme = Api::operator(&sluice, &address).tenant("acme", json!({ "allow_hosts": ["*.example.com:*"] }));
    let pushed = acme.cli(&sluice, &["push", path.to_str().unwrap()]);
    let digest = texts(&pushed).0.split_whitespace().find(|w| w.starts_with("sha256:")).unwrap().to_string();
    let deploy = |name: &str, grants: Value| {
        acme.post(
            "/api/v1/deployments",
            json!({ "artifact": digest, "flow": "read_files", "name": name, "grants": grants }),
        )
    };
    let (status, answer) = deploy("nogrant", json!({}));
    assert_eq!(status, 422, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("the component imports `wasi:http/"), "{answer}");
    let (status, answer) =
        deploy("ghost", json!({ "allow_hosts": ["api.example.com"], "secrets": ["NO_SUCH_SECRET"] }));
    assert_eq!(status, 422, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("secret `NO_SUCH_SECRET`, which does not exist"), "{message}");
    let (status, answer) = deploy("typo", json!({ "allow_hosts": ["https://api.example.com/"] }));
    assert_eq!(status, 422, "{answer}");
    let (status, answer) = deploy("elsewhere", json!({ "allow_hosts": ["evil.com"] }));
    assert_eq!(status, 422, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("`evil.com`, which tenant `acme`'s policy does not allow"), "{message}");
    // Within the policy, it deploys, and inspect shows what was granted.
    let (status, answer) = deploy("granted", json!({ "allow_hosts": ["api.example.com:8443"] }));
    assert_eq!(status, 200, "{answer}");
    let (_, deployment) = acme.get("/api/v1/deployments/read_files/granted");
    assert_eq!(deployment["grants"], json!({ "allow_hosts": ["api.example.com:8443"], "secrets": [] }));
}

#[test]
fn secrets_are_stored_encrypted_per_tenant_and_never_returned() {
    let sluice = Sluice::new();
    let value = "correct-horse-battery-staple";
    let mut child = sluice
        .command()
        .args(["secret", "set", "API_TOKEN"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{value}\n").as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert_eq!(texts(&output).0.trim(), "secret API_TOKEN created");

    let (_server, address) = sluice.server(&["--workers", "0"]);
    let operator = Api::operator(&sluice, &address);
    let (status, answer) = operator.post("/api/v1/secrets", json!({ "name": "OTHER", "value": "second-value" }));
    assert_eq!((status, answer["created"].as_bool()), (200, Some(true)), "{answer}");
    let (status, answer) = operator.post("/api/v1/secrets", json!({ "name": "1BAD", "value": "x" }));
    assert_eq!(status, 422, "{answer}");
    let (_, listed) = operator.get("/api/v1/secrets");
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["API_TOKEN", "OTHER"]);
    assert!(!listed.to_string().contains(value) && !listed.to_string().contains("second-value"), "{listed}");
    // Another tenant sees none of them, and a viewer may not set one.
    let acme = operator.tenant("acme", json!({}));
    assert_eq!(acme.get("/api/v1/secrets").1, json!([]));
    let (_, viewer) = acme.post("/api/v1/tokens", json!({ "role": "viewer" }));
    let viewer = Api { address: address.clone(), token: viewer["token"].as_str().unwrap().to_string() };
    assert_eq!(viewer.post("/api/v1/secrets", json!({ "name": "X", "value": "y" })).0, 403);
    assert_eq!(operator.delete("/api/v1/secrets/OTHER").0, 204);
    assert_eq!(operator.delete("/api/v1/secrets/OTHER").0, 404);

    // At rest: the key file is private and no value is in the database in clear.
    let key = sluice.home.path().join("secrets.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    for entry in std::fs::read_dir(sluice.home.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            let found = bytes.windows(value.len()).any(|w| w == value.as_bytes());
            assert!(!found, "{} holds the secret in clear", path.display());
        }
    }
}

#[test]
fn a_remote_worker_runs_a_guest_with_its_grants_and_nothing_more() {
    let sluice = Sluice::new();
    let (http_port, served) = greeting_server();
    let listed = format!("127.0.0.1:{http_port}");
    let (_server, address) = sluice.server(&["--workers", "0"]);
    let operator = Api::operator(&sluice, &address);
    operator.cli(&sluice, &["secret", "set", "REMOTE_TOKEN", "--value", "for-the-worker"]);
    let grant = ["--allow-host", listed.as_str()];
    operator.deploy(
        &sluice,
        "hostile_io_flow",
        "read_env",
        "env",
        &[&grant[..], &["--secret", "REMOTE_TOKEN"]].concat(),
    );
    let url = format!("url=http://{listed}/from-the-worker");
    operator.deploy(&sluice, "hostile_io_flow", "fetch", "http", &[&grant[..], &["--param", &url]].concat());
    let _worker = sluice.worker(&address, "remote-1", &[]);

    let env = operator.start_run("read_env/env", json!({}));
    let fetched = operator.start_run("fetch/http", json!({}));
    let denied = operator.start_run("fetch/http", json!({ "url": "http://127.0.0.1:9/elsewhere" }));
    let env = operator.wait_until_ended(&env, 60);
    assert_eq!(env["flow_run"]["claimed_by"], "remote-1", "{env}");
    assert_eq!(env["flow_run"]["result"], json!({ "REMOTE_TOKEN": "for-the-worker".len() }));
    let fetched = operator.wait_until_ended(&fetched, 60);
    assert_eq!(fetched["flow_run"]["result"], json!({ "status": "200", "body": "hello from the test" }));
    let denied = operator.wait_until_ended(&denied, 60);
    assert_eq!(denied["flow_run"]["result"], json!({ "error": "ErrorCode::HttpRequestDenied" }));
    assert_eq!(served.load(Ordering::SeqCst), 1);
}

/// A field of /proc/PID/status in KiB (VmRSS, VmHWM).
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field} in {status}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_million_call_submit_is_refused_at_the_call_while_another_tenants_flow_runs() {
    let sluice = Sluice::new();
    let (server, address) = sluice.server(&["--workers", "4"]);
    let operator = Api::operator(&sluice, &address);
    let mallory = operator.tenant("mallory", json!({}));
    let alice = operator.tenant("alice", json!({}));
    alice.deploy(&sluice, "hello_flow", "hello", "good", &["--param", "name=Arthur"]);
    let fan_out = ["--memory", "512", "--param", "first=20", "--param", "count=1000000"];
    mallory.deploy(&sluice, "hostile_raw_flow", "fan_out", "million", &fan_out);
    let warm = alice.start_run("hello/good", json!({}));
    alice.wait_until_ended(&warm, 60);
    let before = memory_kib(server.child.id(), "VmRSS");

    let id = mallory.start_run("fan_out/million", json!({}));
    let beside = alice.start_run("hello/good", json!({ "name": "Ford" }));
    let run = mallory.wait_until_ended(&id, 120);
    let (state, message) = state_and_message(&run);
    assert_eq!(state, "Failed");
    assert!(
        message.starts_with(
            "task limit reached: a flow run may start at most 100000 task runs, and a `submit` of 1000000"
        ),
        "{message}"
    );
    // Only the batch before the refused one was created, and every one of its task runs ended.
    let task_runs = run["task_runs"].as_array().unwrap();
    assert_eq!(task_runs.len(), 20, "{run:#}");
    for task in task_runs {
        assert_eq!(task["task_run"]["state"], "Cancelled", "{task:#}");
    }
    let beside = alice.wait_until_ended(&beside, 60);
    assert_eq!(beside["flow_run"]["result"], "Said hello to Ford");
    // The host held the guest's list once, not a task per call: the guest's own
    // memory (up to 512 MiB) plus one copy of its 1,000,000 calls, far from the
    // gigabytes a task per call took.
    let peak = memory_kib(server.child.id(), "VmHWM");
    assert!(peak < before + (700 << 10), "the server grew from {before} KiB to a peak of {peak} KiB");
    assert_eq!(alice.get("/api/v1/health").0, 200);
}
