//! Outbound HTTP from guests (`wasi:http`), through the real `sluice server`:
//! a grant reaches what it names and nothing more (a name that resolves to
//! loopback does not reach it unless the grant names the address; an entry
//! without a port covers 80 and 443 only), https works against a certificate
//! the operator trusts (`SLUICE_EXTRA_CA_CERTS`), a host call that never
//! returns still ends at the run's timeout and on cancel, and a panic in a
//! host task serving a guest ends its run `Crashed`. Every server here
//! listens on 127.0.0.1, and every request goes there.

mod support;

use serde_json::{Value, json};
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::http::{get, post, request_as};
use support::{Sluice, eventually, guest, texts};

/// A server on 127.0.0.1 answering every request with one body, over TLS
/// when given a config, or (silent) accepting connections and never answering.
struct Origin {
    port: u16,
    /// Requests answered, or connections accepted when silent.
    count: Arc<AtomicUsize>,
}

impl Origin {
    fn plain(body: &'static str) -> Self {
        Self::start(Some(body), None)
    }

    fn tls(body: &'static str, config: Arc<rustls::ServerConfig>) -> Self {
        Self::start(Some(body), Some(config))
    }

    fn silent() -> Self {
        Self::start(None, None)
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    fn start(body: Option<&'static str>, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let count = Arc::new(AtomicUsize::new(0));
        let counter = count.clone();
        // Silent connections are kept open (never answered) until the test process ends.
        let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let Some(body) = body else {
                    held.lock().unwrap().push(stream);
                    counter.fetch_add(1, Ordering::SeqCst);
                    continue;
                };
                let (tls, counter) = (tls.clone(), counter.clone());
                std::thread::spawn(move || {
                    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    let answered = match tls {
                        Some(config) => {
                            let connection = rustls::ServerConnection::new(config).unwrap();
                            answer(rustls::StreamOwned::new(connection, stream), body)
                        }
                        None => answer(stream, body),
                    };
                    if answered {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        Self { port, count }
    }
}

/// Reads one request head and answers it with `body`; false when the client went away first.
fn answer(mut stream: impl Read + Write, body: &str) -> bool {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
    }
    let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    stream.write_all(reply.as_bytes()).and_then(|()| stream.flush()).is_ok()
}

/// A certificate authority of the test's own and a server certificate it
/// signed for `localhost` and 127.0.0.1.
struct TestPki {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

impl TestPki {
    fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "Sluice egress test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        leaf.subject_alt_names.push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        let server_cert = leaf.signed_by(&server_key, &issuer).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rustls::pki_types::PrivateKeyDer::try_from(server_key.serialize_der()).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![server_cert.der().clone(), ca_cert.der().clone()], key)
            .unwrap();
        Self { ca_pem: ca_cert.pem(), server: Arc::new(server) }
    }
}

/// Deploys the hostile-io `fetch` flow as `fetch/NAME` with these grants.
fn deploy_fetch(sluice: &Sluice, address: &str, name: &str, hosts: &[&str], extra: &[&str]) {
    let path = guest("hostile_io_flow");
    // Runs give their own URL; the default is there because the flow needs one.
    let mut args = vec!["deploy", path.to_str().unwrap(), "--flow", "fetch", "--name", name, "--param", "url=http://-"];
    for host in hosts {
        args.extend_from_slice(&["--allow-host", host]);
    }
    args.extend_from_slice(extra);
    let output = sluice.remote(address).args(&args).output().unwrap();
    assert!(output.status.success(), "deploy {name}: {}", texts(&output).1);
}

/// Starts a run of `fetch/NAME` getting `url`; its id.
fn start(address: &str, name: &str, url: &str) -> String {
    let body = json!({ "parameters": { "url": url } }).to_string();
    let (status, run) = post(address, &format!("/api/v1/deployments/fetch/{name}/runs"), &body);
    assert_eq!(status, 201, "{run}");
    run["id"].as_str().unwrap().to_string()
}

fn ended(address: &str, id: &str, seconds: u64) -> Value {
    eventually(seconds, &format!("run {id} to end"), || {
        let (_, run) = get(address, &format!("/api/v1/flow-runs/{id}"));
        run["flow_run"]["ended"].is_string().then_some(run)
    })
}

/// Runs `fetch/NAME` on `url` to its end: the run's state and result.
fn fetch(address: &str, name: &str, url: &str) -> (String, Value) {
    let run = ended(address, &start(address, name, url), 60);
    (run["flow_run"]["state"].as_str().unwrap().to_string(), run["flow_run"]["result"].clone())
}

fn logs(address: &str, id: &str) -> Vec<String> {
    let (_, logs) = get(address, &format!("/api/v1/flow-runs/{id}/logs"));
    logs.as_array().unwrap().iter().map(|l| l["message"].as_str().unwrap().to_string()).collect()
}

fn refused(code: &str) -> (String, Value) {
    ("Completed".to_string(), json!({ "error": format!("ErrorCode::{code}") }))
}

fn answered(body: &str) -> (String, Value) {
    ("Completed".to_string(), json!({ "status": "200", "body": body }))
}

#[test]
fn a_granted_name_that_resolves_to_loopback_reaches_it_only_when_the_grant_names_the_address() {
    let sluice = Sluice::new();
    let origin = Origin::plain("a local service");
    let (_server, address) = sluice.server(&[]);
    let api_port = address.rsplit(':').next().unwrap();
    let (by_name, api_by_name) = (format!("localhost:{}", origin.port), format!("localhost:{api_port}"));
    deploy_fetch(&sluice, &address, "by-name", &[&by_name, &api_by_name], &[]);
    let by_address = format!("127.0.0.1:{}", origin.port);
    deploy_fetch(&sluice, &address, "by-address", &[&by_name, &by_address], &[]);

    // `localhost` is granted, but it resolves to loopback: neither the local
    // service nor Sluice's own API is reached through it.
    let service = format!("http://localhost:{}/private", origin.port);
    let id = start(&address, "by-name", &service);
    let run = ended(&address, &id, 60);
    assert_eq!(run["flow_run"]["result"], json!({ "error": "ErrorCode::DestinationIpProhibited" }), "{run}");
    let warning = logs(&address, &id).into_iter().find(|l| l.contains("refused")).expect("a warning in the log");
    assert!(warning.contains("127.0.0.1 (loopback)"), "{warning}");
    assert!(warning.contains(&format!("--allow-host 127.0.0.1:{}", origin.port)), "{warning}");
    let api = format!("http://localhost:{api_port}/api/v1/health");
    assert_eq!(fetch(&address, "by-name", &api), refused("DestinationIpProhibited"));
    assert_eq!(origin.count(), 0, "nothing reached the local service");

    // Granting the address itself is what lets the name reach it.
    assert_eq!(fetch(&address, "by-address", &service), answered("a local service"));
    assert_eq!(origin.count(), 1);
}

#[test]
fn a_grant_without_a_port_covers_only_ports_80_and_443() {
    let sluice = Sluice::new();
    let origin = Origin::plain("port-specific");
    let (_server, address) = sluice.server(&[]);
    deploy_fetch(&sluice, &address, "web-ports", &["127.0.0.1"], &[]);
    deploy_fetch(&sluice, &address, "every-port", &["127.0.0.1:*"], &[]);
    let url = format!("http://127.0.0.1:{}/", origin.port);

    let id = start(&address, "web-ports", &url);
    let run = ended(&address, &id, 60);
    assert_eq!(run["flow_run"]["result"], json!({ "error": "ErrorCode::HttpRequestDenied" }), "{run}");
    let warning = logs(&address, &id).into_iter().find(|l| l.contains("denied")).expect("a warning in the log");
    assert!(warning.contains("covers ports 80 and 443 only"), "{warning}");
    assert_eq!(origin.count(), 0);
    assert_eq!(fetch(&address, "every-port", &url), answered("port-specific"));
    assert_eq!(origin.count(), 1);

    // A tenant policy entry without a port does not cover a grant of another port.
    let (_, _) = post(
        &address,
        "/api/v1/tenants",
        &json!({ "name": "acme", "policy": { "allow_hosts": ["127.0.0.1"] } }).to_string(),
    );
    let (status, token) = post(&address, "/api/v1/tokens", &json!({ "tenant": "acme", "role": "admin" }).to_string());
    assert_eq!(status, 201, "{token}");
    let token = token["token"].as_str().unwrap();
    let path = guest("hostile_io_flow");
    let grant = format!("127.0.0.1:{}", origin.port);
    let output = sluice
        .remote(&address)
        .env("SLUICE_API_TOKEN", token)
        .args(["deploy", path.to_str().unwrap(), "--flow", "fetch", "--name", "x", "--param", "url=http://-"])
        .args(["--allow-host", &grant])
        .output()
        .unwrap();
    let stderr = texts(&output).1;
    assert!(!output.status.success(), "a grant of port {} is beyond a policy of 80 and 443", origin.port);
    assert!(stderr.contains("tenant `acme`'s policy does not allow"), "{stderr}");
    let (status, answer) = request_as(&address, Some(token), "GET", "/api/v1/deployments", None);
    assert_eq!((status, answer), (200, json!([])));
}

#[test]
fn https_reaches_a_server_whose_certificate_the_operator_trusts() {
    let sluice = Sluice::new();
    let pki = TestPki::new();
    let ca_file = sluice.home.path().join("extra-ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let origin = Origin::tls("hello over TLS", pki.server.clone());
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (_server, address) = sluice.server_with_env(&[], &[("SLUICE_EXTRA_CA_CERTS", ca_file.as_os_str())]);
    let (name, ip) = (format!("localhost:{}", origin.port), format!("127.0.0.1:{}", origin.port));
    deploy_fetch(&sluice, &address, "tls", &[&name, &ip, &format!("127.0.0.1:{closed}")], &[]);

    assert_eq!(fetch(&address, "tls", &format!("https://localhost:{}/", origin.port)), answered("hello over TLS"));
    assert_eq!(fetch(&address, "tls", &format!("https://127.0.0.1:{}/", origin.port)), answered("hello over TLS"));
    assert_eq!(origin.count(), 2);
    // A TLS host that cannot be reached fails inside the guest; the run itself ends.
    assert_eq!(fetch(&address, "tls", &format!("https://127.0.0.1:{closed}/")), refused("ConnectionRefused"));

    // Without the operator's trust the same server's certificate is refused.
    let url = format!("url=https://localhost:{}/", origin.port);
    let path = guest("hostile_io_flow");
    let exec = |env: &[(&str, &OsStr)]| {
        let output = sluice
            .command()
            .envs(env.iter().copied())
            .args(["exec", path.to_str().unwrap(), "--flow", "fetch", "--param", &url, "--output", "json"])
            .args(["--allow-host", &name, "--allow-host", &ip])
            .output()
            .unwrap();
        let (stdout, stderr) = texts(&output);
        (output.status.code(), stdout, stderr)
    };
    let (code, stdout, stderr) = exec(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["flow_run"]["result"], json!({ "error": "ErrorCode::TlsCertificateError" }), "{report}");
    let warning = report["logs"][0]["message"].as_str().unwrap();
    assert!(warning.contains("certificate is not trusted") && warning.contains("SLUICE_EXTRA_CA_CERTS"), "{warning}");
    assert_eq!(origin.count(), 2);
    let (code, _, stderr) = exec(&[("SLUICE_EXTRA_CA_CERTS", ca_file.as_os_str())]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(origin.count(), 3);
    // A setting that names no usable certificate stops the process at start, saying why.
    let missing = sluice.home.path().join("no-such-ca.pem");
    let (code, _, stderr) = exec(&[("SLUICE_EXTRA_CA_CERTS", missing.as_os_str())]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("SLUICE_EXTRA_CA_CERTS") && stderr.contains("no-such-ca.pem"), "{stderr}");
}

#[test]
fn a_host_call_that_never_returns_ends_at_the_timeout_and_on_cancel() {
    let sluice = Sluice::new();
    let silent = Origin::silent();
    let (_server, address) = sluice.server(&[]);
    let grant = format!("127.0.0.1:{}", silent.port);
    deploy_fetch(&sluice, &address, "bounded", &[&grant], &["--timeout", "2s"]);
    deploy_fetch(&sluice, &address, "unbounded", &[&grant], &[]);
    let url = format!("https://127.0.0.1:{}/", silent.port);
    let timed = start(&address, "bounded", &url);
    let cancelled = start(&address, "unbounded", &url);

    // Both guests are blocked in the host once the server holds both connections.
    eventually(30, "both guests to connect", || (silent.count() >= 2).then_some(()));
    let (status, answer) = post(&address, &format!("/api/v1/flow-runs/{cancelled}/cancel"), "");
    assert_eq!((status, &answer["outcome"]), (200, &json!("Cancelling")), "{answer}");
    let run = ended(&address, &cancelled, 30);
    assert_eq!(run["flow_run"]["state"], "Cancelled", "{run}");
    let run = ended(&address, &timed, 30);
    assert_eq!(run["flow_run"]["state"], "TimedOut", "{run}");
    assert_eq!(run["flow_run"]["message"], "flow `fetch` exceeded its timeout of 2s");
}

/// The panic is provoked by a hook that only debug builds have
/// (`SLUICE_TEST_PANIC_IN_OUTBOUND_HTTP`): with a process-wide TLS crypto
/// provider installed, no request a guest can make panics the host anymore.
#[test]
fn a_panic_in_a_host_task_serving_a_guest_ends_the_run_crashed() {
    let sluice = Sluice::new();
    let origin = Origin::plain("never reached");
    let (_server, address) = sluice.server_with_env(&[], &[("SLUICE_TEST_PANIC_IN_OUTBOUND_HTTP", OsStr::new("1"))]);
    deploy_fetch(&sluice, &address, "panics", &[&format!("127.0.0.1:{}", origin.port)], &[]);
    let id = start(&address, "panics", &format!("http://127.0.0.1:{}/", origin.port));
    let run = ended(&address, &id, 60);
    assert_eq!(run["flow_run"]["state"], "Crashed", "{run}");
    let message = run["flow_run"]["message"].as_str().unwrap();
    assert!(message.starts_with("flow `fetch` crashed: the host panicked while serving it"), "{message}");
    assert!(message.contains("test hook: outbound HTTP panics"), "{message}");
    assert_eq!(origin.count(), 0);
    // The server carries on: the next run is taken and ends too.
    let again = ended(&address, &start(&address, "panics", "http://127.0.0.1:9/"), 60);
    assert_eq!(again["flow_run"]["result"], json!({ "error": "ErrorCode::HttpRequestDenied" }));
}
