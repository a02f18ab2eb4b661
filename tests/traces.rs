//! OpenTelemetry traces of real runs, received by a real OTLP/HTTP receiver
//! built here from the `opentelemetry-proto` definitions (an OpenTelemetry
//! Collector binary does not install on this machine): a run created with a
//! caller's `traceparent` on the server and run by a remote worker, with two
//! subflows and a task retried twice, gives one trace whose spans link
//! caller → server → worker → subflows → task attempts.

mod support;

use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::Value;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use support::http::get;
use support::{Process, Sluice, eventually, guest};

/// A span as received, with its process's `service.name`.
#[derive(Clone, Debug)]
struct Received {
    service: String,
    trace: String,
    id: String,
    parent: String,
    name: String,
    attributes: HashMap<String, String>,
    error: bool,
}

fn text(value: &KeyValue) -> String {
    match value.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(n)) => n.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// Serves OTLP/HTTP's `POST /v1/traces` (protobuf) on 127.0.0.1; returns its address and what it received.
fn receiver(runtime: &tokio::runtime::Runtime) -> (String, Arc<Mutex<Vec<Received>>>) {
    let received: Arc<Mutex<Vec<Received>>> = Arc::default();
    let store = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let store = store.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
                let mut store = store.lock().unwrap();
                for resource_spans in request.resource_spans {
                    let service = resource_spans
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|kv| kv.key == "service.name")
                        .map(text)
                        .unwrap_or_default();
                    for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                        store.push(Received {
                            service: service.clone(),
                            trace: hex(&span.trace_id),
                            id: hex(&span.span_id),
                            parent: hex(&span.parent_span_id),
                            name: span.name,
                            attributes: span.attributes.iter().map(|kv| (kv.key.clone(), text(kv))).collect(),
                            error: span.status.is_some_and(|s| s.code == 2),
                        });
                    }
                }
                ([("content-type", "application/x-protobuf")], Vec::<u8>::new())
            }
        }),
    );
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let address = listener.local_addr().unwrap().to_string();
    runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (address, received)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `POST path` with a `traceparent` header (and the admin token); returns the status and body.
fn post_traced(address: &str, path: &str, traceparent: Option<&str>) -> (u16, Value) {
    let token = support::http::token_for(address).unwrap();
    let mut stream = TcpStream::connect(address).unwrap();
    let header = traceparent.map(|t| format!("traceparent: {t}\r\n")).unwrap_or_default();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n{header}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn wait_completed(address: &str, id: &str) {
    eventually(60, &format!("run {id} to complete"), || {
        let (_, run) = get(address, &format!("/api/v1/flow-runs/{id}"));
        let state = run["flow_run"]["state"].as_str().unwrap_or_default().to_string();
        assert!(!["Failed", "Crashed", "TimedOut", "Cancelled"].contains(&state.as_str()), "{run}");
        (state == "Completed").then_some(())
    });
}

#[test]
fn a_run_with_subflows_and_retries_on_a_remote_worker_is_one_trace_under_the_callers() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (collector, received) = receiver(&runtime);
    let sluice = Sluice::new();
    let path = guest("pipeline_flow");
    let deployed = sluice.run(&["deploy", path.to_str().unwrap(), "--flow", "pipeline", "--name", "p"]);
    assert!(deployed.status.success(), "{}", String::from_utf8_lossy(&deployed.stderr));
    let endpoint = format!("http://{collector}");
    let env: [(&str, &OsStr); 2] =
        [("OTEL_EXPORTER_OTLP_ENDPOINT", OsStr::new(&endpoint)), ("OTEL_BSP_SCHEDULE_DELAY", OsStr::new("100"))];
    let (_server, address) = sluice.server_with_env(&["--workers", "0"], &env);
    let worker = sluice
        .remote(&address)
        .envs(env)
        .args(["worker", "--api", &format!("http://{address}"), "--name", "traced"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _worker = Process { child: worker };

    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{caller_trace}-{caller_span}-01");
    let (status, run) = post_traced(&address, "/api/v1/deployments/pipeline/p/runs", Some(&traceparent));
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    wait_completed(&address, &id);

    // 1 server span, the flow run, 2 subflows, 4 tasks in them, 3 attempts of the flaky one.
    let spans = eventually(20, "the run's spans to be exported", || {
        let spans: Vec<Received> =
            received.lock().unwrap().iter().filter(|s| s.trace == caller_trace).cloned().collect();
        (spans.len() >= 11).then_some(spans)
    });
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(spans.len(), 11, "{names:?}");
    let one = |name: &str| {
        let found: Vec<&Received> = spans.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "one `{name}` span: {names:?}");
        found[0]
    };
    let created = one("create flow run");
    assert_eq!(created.service, "sluice-server");
    assert_eq!(created.parent, caller_span, "the server's span is a child of the caller's");
    assert_eq!(created.attributes["sluice.run.id"], id);
    assert_eq!(created.attributes["sluice.deployment"], "pipeline/p");

    let flow = one("flow pipeline");
    assert_eq!(flow.service, "sluice-worker", "the remote worker ran it");
    assert_eq!(flow.parent, created.id, "the worker's span hangs under the server's, across processes");
    assert_eq!(flow.attributes["sluice.run.id"], id);
    assert_eq!(flow.attributes["sluice.run.kind"], "flow");
    assert_eq!(flow.attributes["sluice.attempt"], "1");
    assert_eq!(flow.attributes["sluice.state"], "Completed");
    assert!(!flow.error);

    for subflow in ["flow subflow_1", "flow subflow_2"] {
        let sub = one(subflow);
        assert_eq!(sub.parent, flow.id, "{subflow} is a child of the flow run");
        assert_eq!(sub.attributes["sluice.run.kind"], "subflow");
        let tasks: Vec<&str> = spans.iter().filter(|s| s.parent == sub.id).map(|s| s.name.as_str()).collect::<Vec<_>>();
        let mut sorted = tasks.clone();
        sorted.sort();
        assert_eq!(sorted, ["task laugh", "task run"], "{subflow}'s tasks");
    }

    let mut flaky: Vec<&Received> = spans.iter().filter(|s| s.name == "task flaky").collect();
    flaky.sort_by_key(|s| s.attributes["sluice.attempt"].clone());
    assert_eq!(flaky.len(), 3, "one span per attempt");
    for (n, attempt) in flaky.iter().enumerate() {
        assert_eq!(attempt.parent, flow.id);
        assert_eq!(attempt.attributes["sluice.attempt"], (n + 1).to_string());
        assert_eq!(attempt.attributes["sluice.task"], "flaky");
        assert_eq!(attempt.attributes["sluice.run.id"], flaky[0].attributes["sluice.run.id"], "one task run");
    }
    assert_eq!(
        flaky.iter().map(|s| (s.attributes["sluice.state"].as_str(), s.error)).collect::<Vec<_>>(),
        [("AwaitingRetry", true), ("AwaitingRetry", true), ("Completed", false)]
    );

    // Without a caller's context the run gets a trace of its own, rooted at the server's span.
    let (status, run) = post_traced(&address, "/api/v1/deployments/pipeline/p/runs", None);
    assert_eq!(status, 201, "{run}");
    let second = run["id"].as_str().unwrap().to_string();
    wait_completed(&address, &second);
    let (root, flow) = eventually(20, "the second run's spans", || {
        let spans = received.lock().unwrap().clone();
        let root = spans.iter().find(|s| s.name == "create flow run" && s.attributes["sluice.run.id"] == second)?;
        let flow = spans.iter().find(|s| s.name == "flow pipeline" && s.attributes["sluice.run.id"] == second)?;
        Some((root.clone(), flow.clone()))
    });
    assert_eq!(root.parent, "", "a root span");
    assert_ne!(root.trace, caller_trace);
    assert_eq!((flow.trace.as_str(), flow.parent.as_str()), (root.trace.as_str(), root.id.as_str()));
}

#[test]
fn an_https_trace_endpoint_is_refused_at_start_saying_why() {
    let sluice = Sluice::new();
    let refused = sluice
        .command()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector.example:4318")
        .args(["server", "--port", "0"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("only http:// endpoints are supported"), "{message}");
}
