//! Two `sluice server` processes on one PostgreSQL database (this test
//! process's own cluster, `support/pg_cluster.rs`): a run created through
//! one server reaches an idle worker attached to the other at once (the
//! other server is woken by `LISTEN`/`NOTIFY`, not by its worker's 10 s
//! long-poll running out), and bad database URLs stop the binary with a
//! clear message.

#[path = "support/pg_cluster.rs"]
mod pg_cluster;
mod support;

use pg_cluster::Cluster;
use std::io::BufRead;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::http::{get, post, request_as, use_token};
use support::{Process, Sluice, eventually, guest};

fn server(sluice: &Sluice, url: &str) -> (Process, String) {
    let (process, address, _lines) = server_with_output(sluice, url);
    (process, address)
}

/// A server and the lines it prints after its address.
fn server_with_output(sluice: &Sluice, url: &str) -> (Process, String, std::sync::mpsc::Receiver<String>) {
    let mut child = sluice
        .command()
        .env("SLUICE_DATABASE_URL", url)
        .args(["server", "--port", "0", "--workers", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting sluice server");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("the server prints its address").unwrap();
    let address =
        first.split("http://").nth(1).and_then(|rest| rest.split(' ').next()).expect("an address").to_string();
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = send.send(line);
        }
    });
    (Process { child }, address, receive)
}

/// Whether `lines` say, within `within`, that their server took the scheduler.
fn says_it_leads(lines: &std::sync::mpsc::Receiver<String>, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains("runs the scheduler and crash detection") => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

#[test]
fn a_server_that_loses_its_database_reports_unhealthy_and_recovers_when_it_returns() {
    let cluster = Cluster::shared();
    let url = cluster.new_database();
    let name = url.rsplit('/').next().unwrap().to_string();
    let sluice = Sluice::new();
    let (_server, address) = server(&sluice, &url);
    let (status, body) = get(&address, "/api/v1/health");
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")), "{body}");

    // The database refuses new connections and drops the server's.
    let admin = cluster.url("postgres");
    cluster.psql(&admin, &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"));
    cluster.psql(&admin, &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"));
    let (status, body) = eventually(30, "the health check to say the database is gone", || {
        let (status, body) = get(&address, "/api/v1/health");
        (status == 503).then_some((status, body))
    });
    assert_eq!(body["status"], "unhealthy", "{status} {body}");
    assert!(body["reason"].as_str().is_some_and(|r| !r.is_empty()), "{body}");

    cluster.psql(&admin, &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"));
    eventually(30, "the health check to recover", || (get(&address, "/api/v1/health").0 == 200).then_some(()));
}

#[test]
fn one_server_runs_the_scheduler_and_another_takes_over_when_it_dies() {
    let url = Cluster::shared().new_database();
    let sluice = Sluice::new();
    let (first, _, first_lines) = server_with_output(&sluice, &url);
    assert!(says_it_leads(&first_lines, Duration::from_secs(10)), "the only server takes the lease");
    let (_second, _, second_lines) = server_with_output(&sluice, &url);
    assert!(!says_it_leads(&second_lines, Duration::from_secs(3)), "the lease is held: the second server waits");
    let mut first = first;
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let killed = Instant::now();
    assert!(says_it_leads(&second_lines, Duration::from_secs(15)), "the second server takes over");
    let took = killed.elapsed();
    eprintln!("the second server took over {took:?} after the first was killed");
    assert!(took < Duration::from_secs(8), "{took:?}: a 5 s term and a 1 s tick");
}

fn run_state(address: &str, id: &str) -> serde_json::Value {
    get(address, &format!("/api/v1/flow-runs/{id}")).1["flow_run"].clone()
}

fn create_run(address: &str) -> String {
    let (status, run) = post(address, "/api/v1/deployments/hello/leo/runs", "");
    assert!(status < 300, "{status} {run}");
    run["id"].as_str().or(run["flow_run"]["id"].as_str()).expect("a run id").to_string()
}

#[test]
fn a_run_created_through_one_server_reaches_an_idle_worker_of_another_within_milliseconds() {
    let url = Cluster::shared().new_database();
    let sluice = Sluice::new();
    let hello = guest("hello_flow");
    let deployed = sluice
        .command()
        .env("SLUICE_DATABASE_URL", &url)
        .args(["deploy", hello.to_str().unwrap(), "--flow", "hello", "--name", "leo", "--param", "name=Leo"])
        .output()
        .unwrap();
    assert!(deployed.status.success(), "{}", String::from_utf8_lossy(&deployed.stderr));
    let (_one, first) = server(&sluice, &url);
    let token = sluice.admin_token();
    let (_two, second) = server(&sluice, &url);
    use_token(&first, &token);
    use_token(&second, &token);
    let _worker = sluice.worker(&second, "w", &[]);
    // A worker's claim records its heartbeat, then waits (10 s when it runs nothing) for work.
    eventually(30, "the worker's first claim", || {
        (Cluster::shared().psql(&url, "SELECT count(*) FROM workers WHERE name = 'w'") == "1").then_some(())
    });

    let start = Instant::now();
    let id = create_run(&first);
    eventually(30, "the run to be taken", || Some(run_state(&first, &id)).filter(|r| r["claimed_by"].is_string()));
    let waited = start.elapsed();
    eprintln!("created on one server -> taken by a worker of the other: {waited:?}");
    // Without the wake-up, the worker's long-poll on the other server runs for its 10 s.
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    let done =
        eventually(60, "the run to complete", || Some(run_state(&second, &id)).filter(|r| r["state"] == "Completed"));
    assert_eq!(done["claimed_by"], "w");

    // The web UI's listings read the same database through either server.
    for address in [&first, &second] {
        let cookie = sign_in(address, &token);
        for (path, shows) in [
            ("/", "hello/leo"),
            ("/deployments", "hello/leo"),
            ("/runs", done["name"].as_str().unwrap()),
            ("/runs?state=Completed&deployment=hello/leo", done["name"].as_str().unwrap()),
            (&format!("/runs/{id}"), "Hello Leo"),
            ("/work-pools", "w"),
        ] {
            let (status, page) = page(address, &cookie, path);
            assert_eq!(status, 200, "{path} on {address}: {page}");
            assert!(page.contains(shows), "{path} on {address} does not show {shows}");
        }
    }
}

/// Sends one request and returns the status and the whole response.
fn send(address: &str, head_and_body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.write_all(head_and_body.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, response)
}

/// Signs in to the web UI of `address` with `token`; returns the session cookie.
fn sign_in(address: &str, token: &str) -> String {
    let body = format!("token={token}&next=%2F");
    let (status, response) = send(
        address,
        &format!(
            "POST /signin HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(status, 303, "{response}");
    let set = response
        .lines()
        .find_map(|line| line.to_ascii_lowercase().starts_with("set-cookie:").then(|| line[11..].trim().to_string()))
        .unwrap_or_else(|| panic!("no session cookie: {response}"));
    set.split(';').next().unwrap().to_string()
}

/// A web UI page, with a session `cookie`.
fn page(address: &str, cookie: &str, path: &str) -> (u16, String) {
    send(address, &format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"))
}

#[test]
fn an_unreachable_database_stops_the_command_with_the_host_and_the_reason() {
    let sluice = Sluice::new();
    let output = sluice
        .command()
        .env("SLUICE_DATABASE_URL", "postgres://sluice:hunter2@127.0.0.1:1/sluice")
        .args(["flow-run", "ls"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_ne!(output.status.code(), Some(101), "it panicked: {stderr}");
    assert!(stderr.contains("127.0.0.1:1/sluice") && stderr.contains("cannot connect"), "{stderr}");
    assert!(!stderr.contains("hunter2") && !stderr.contains("panicked"), "{stderr}");

    let output = sluice
        .command()
        .env("SLUICE_DATABASE_URL", "mysql://localhost/x")
        .args(["server", "--port", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && output.status.code() != Some(101), "{stderr}");
    assert!(stderr.contains("must be a postgres://"), "{stderr}");
}

/// A web UI event stream (`text/event-stream`), read on a thread of its own.
struct EventStream {
    events: std::sync::mpsc::Receiver<(String, String)>,
    /// Every event received so far: its name and data.
    seen: Vec<(String, String)>,
}

impl EventStream {
    /// Opens `path` on `address` with a session `cookie`; panics unless it answers 200 with an event stream.
    fn open(address: &str, cookie: &str, path: &str) -> EventStream {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut reader = std::io::BufReader::new(stream);
        let mut head = String::new();
        while !head.ends_with("\r\n\r\n") {
            let before = head.len();
            reader.read_line(&mut head).unwrap();
            assert!(head.len() > before, "the stream {path} closed before its head: {head}");
        }
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        assert!(head.to_ascii_lowercase().contains("content-type: text/event-stream"), "{path}: {head}");
        let (send, events) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // The body is chunked: a hexadecimal size line, that many bytes, CRLF.
            let mut text = String::new();
            loop {
                let mut size = String::new();
                if reader.read_line(&mut size).unwrap_or(0) == 0 {
                    return;
                }
                let Ok(size) = usize::from_str_radix(size.trim(), 16) else { return };
                if size == 0 {
                    return;
                }
                let mut chunk = vec![0; size + 2];
                if reader.read_exact(&mut chunk).is_err() {
                    return;
                }
                text.push_str(&String::from_utf8_lossy(&chunk[..size]));
                while let Some(end) = text.find("\n\n") {
                    let block: String = text.drain(..end + 2).collect();
                    let field = |name: &str| {
                        block
                            .lines()
                            .filter_map(|line| line.strip_prefix(name).map(|v| v.strip_prefix(' ').unwrap_or(v)))
                            .collect::<Vec<_>>()
                            .join("\n")
                    };
                    let (event, data) = (field("event:"), field("data:"));
                    // Keep-alive comments have neither.
                    if (!event.is_empty() || !data.is_empty()) && send.send((event, data)).is_err() {
                        return;
                    }
                }
            }
        });
        EventStream { events, seen: Vec::new() }
    }

    /// Waits until `deadline` for an event `wanted` accepts; returns when it came.
    fn wait_for(&mut self, deadline: Instant, mut wanted: impl FnMut(&str, &str) -> bool) -> Option<Instant> {
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok((event, data)) = self.events.recv_timeout(left) else { return None };
            let hit = wanted(&event, &data);
            self.seen.push((event, data));
            if hit {
                return Some(Instant::now());
            }
        }
        None
    }

    /// Takes in whatever has arrived by now.
    fn drain(&mut self) {
        self.seen.extend(self.events.try_iter());
    }
}

/// The list pages' stream refreshes by itself at least this often (`CHANGE_TICK` in `server/ui/sse.rs`).
const UI_CHANGE_TICK: Duration = Duration::from_secs(5);

#[test]
fn the_web_ui_of_one_server_follows_runs_made_through_another_and_shows_a_tenant_only_its_own() {
    let url = Cluster::shared().new_database();
    let sluice = Sluice::new();
    let hello = guest("hello_flow");
    let deployed = sluice
        .command()
        .env("SLUICE_DATABASE_URL", &url)
        .args(["deploy", hello.to_str().unwrap(), "--flow", "hello", "--name", "leo", "--param", "name=Leo"])
        .output()
        .unwrap();
    assert!(deployed.status.success(), "{}", String::from_utf8_lossy(&deployed.stderr));
    let (_one, first) = server(&sluice, &url);
    let token = sluice.admin_token();
    let (_two, second) = server(&sluice, &url);
    use_token(&first, &token);
    use_token(&second, &token);

    // Another tenant, with a run of its own that waits far in the future.
    let (status, body) = post(&first, "/api/v1/tenants", r#"{"name": "globex"}"#);
    assert_eq!(status, 201, "{body}");
    let (status, made) = post(&first, "/api/v1/tokens", r#"{"tenant": "globex", "role": "admin"}"#);
    assert_eq!(status, 201, "{made}");
    let globex = made["token"].as_str().unwrap().to_string();
    let bytes = std::fs::read(&hello).unwrap();
    let (status, pushed) = request_as(&first, Some(&globex), "POST", "/api/v1/artifacts", Some(&bytes));
    assert!(status < 300, "{pushed}");
    let digest = pushed["digest"].as_str().or(pushed["artifact"]["digest"].as_str()).expect("a digest").to_string();
    let deploy =
        format!(r#"{{"artifact": "{digest}", "flow": "hello", "name": "leo", "parameters": {{"name": "Globex"}}}}"#);
    let (status, body) = request_as(&first, Some(&globex), "POST", "/api/v1/deployments", Some(deploy.as_bytes()));
    assert!(status < 300, "{body}");
    let later = br#"{"start": "2099-01-01T00:00:00Z"}"#;
    let (status, waiting) =
        request_as(&first, Some(&globex), "POST", "/api/v1/deployments/hello/leo/runs", Some(later));
    assert!(status < 300, "{waiting}");
    let globex_run = waiting["id"].as_str().or(waiting["flow_run"]["id"].as_str()).expect("a run id").to_string();

    // Both tenants watch server one's list pages; the other tenant also its own run.
    let operator_cookie = sign_in(&first, &token);
    let globex_cookie = sign_in(&first, &globex);
    let mut operator_changes = EventStream::open(&first, &operator_cookie, "/ui/events");
    let opened = Instant::now();
    let mut globex_changes = EventStream::open(&first, &globex_cookie, "/ui/events");
    let mut globex_follows = EventStream::open(&first, &globex_cookie, &format!("/runs/{globex_run}/events"));
    assert!(
        globex_follows
            .wait_for(Instant::now() + Duration::from_secs(10), |e, d| e == "panels" && d.contains("Scheduled"))
            .is_some(),
        "the other tenant's run page shows its own waiting run: {:?}",
        globex_follows.seen
    );

    // A run made and run through server two only: its worker is attached there.
    let _worker = sluice.worker(&second, "w", &[]);
    let created = Instant::now();
    let id = create_run(&second);
    let changed = operator_changes.wait_for(opened + UI_CHANGE_TICK - Duration::from_millis(500), |e, _| e == "change");
    let changed = changed.unwrap_or_else(|| {
        panic!(
            "server one's list pages were not told of a run created through server two before their own {UI_CHANGE_TICK:?} \
             refresh: {:?}",
            operator_changes.seen
        )
    });
    eprintln!("created through server two -> `change` on server one: {:?}", changed - created);

    // Server one's page of that run follows it to its end, logs included.
    let mut follows = EventStream::open(&first, &operator_cookie, &format!("/runs/{id}/events"));
    let ended = follows.wait_for(Instant::now() + Duration::from_secs(60), |e, _| e == "end");
    assert!(ended.is_some(), "server one's run page did not see the run end: {:?}", follows.seen);
    let done = run_state(&second, &id);
    assert_eq!(done["state"], "Completed", "{done}");
    assert!(follows.seen.iter().any(|(e, d)| e == "panels" && d.contains("Completed")), "{:?}", follows.seen);
    assert!(follows.seen.iter().any(|(e, d)| e == "logs" && d.contains("Hello Leo")), "{:?}", follows.seen);

    // The other tenant cannot follow that run, and its streams never carried it.
    let (status, _) = page(&first, &globex_cookie, &format!("/runs/{id}/events"));
    assert_eq!(status, 404, "another tenant's run stream is not found");
    let name = done["name"].as_str().unwrap();
    globex_changes.drain();
    globex_follows.drain();
    for (event, data) in globex_changes.seen.iter().chain(&globex_follows.seen) {
        assert!(
            !data.contains(&id) && !data.contains(name),
            "the other tenant's stream carried the run: {event} {data}"
        );
        assert!(!data.contains("Hello Leo"), "the other tenant's stream carried the run's logs: {event} {data}");
    }
    assert!(globex_changes.seen.iter().all(|(e, d)| e == "change" && d == "change"), "{:?}", globex_changes.seen);
}

/// Events on two servers sharing PostgreSQL: each event fires its automations
/// once (it is evaluated by the one server that committed it), and a webhook
/// delivery sent again to the other server is still a duplicate.
#[test]
fn with_two_servers_an_event_fires_its_automation_once_and_a_redelivery_is_caught_by_either() {
    let url = Cluster::shared().new_database();
    let sluice = Sluice::new();
    let hello = guest("hello_flow");
    for name in ["leo", "follow"] {
        let deployed = sluice
            .command()
            .env("SLUICE_DATABASE_URL", &url)
            .args(["deploy", hello.to_str().unwrap(), "--flow", "hello", "--name", name, "--param", "name=Leo"])
            .output()
            .unwrap();
        assert!(deployed.status.success(), "{}", String::from_utf8_lossy(&deployed.stderr));
    }
    let (_one, first) = server(&sluice, &url);
    let token = sluice.admin_token();
    let (_two, second) = server(&sluice, &url);
    use_token(&first, &token);
    use_token(&second, &token);
    let _workers = [sluice.worker(&first, "w1", &[]), sluice.worker(&second, "w2", &[])];
    let rule = serde_json::json!({"name": "follow", "trigger": {"event": "sluice.flow-run.Completed", "deployment": "hello/leo"},
        "action": {"kind": "run-deployment", "deployment": "hello/follow"}});
    let (status, made) = post(&first, "/api/v1/automations", &rule.to_string());
    assert_eq!(status, 201, "{made}");

    let ids: Vec<String> = [&first, &second, &first].iter().map(|address| create_run(address)).collect();
    for id in &ids {
        eventually(60, "a run of hello/leo to complete", || {
            Some(run_state(&second, id)).filter(|r| r["state"] == "Completed")
        });
    }
    let follows = |address: &str| get(address, "/api/v1/flow-runs?deployment=hello/follow").1.as_array().unwrap().len();
    eventually(30, "three runs of hello/follow", || (follows(&first) == 3).then_some(()));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(follows(&second), 3, "one run per completion, not one per server");

    let hook = serde_json::json!({"deployment": "hello/leo", "unsigned": true, "dedupe_header": "X-Delivery"});
    let (status, made) = post(&first, "/api/v1/webhooks", &hook.to_string());
    assert_eq!(status, 201, "{made}");
    let path = made["path"].as_str().unwrap();
    let deliver = |address: &str| {
        send(
            address,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: {address}\r\nX-Delivery: same\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
            ),
        )
    };
    let (status, answer) = deliver(&first);
    assert_eq!(status, 202, "{answer}");
    let (status, again) = deliver(&second);
    assert_eq!(status, 202, "{again}");
    assert!(again.contains("\"duplicate\":true"), "{again}");
}
