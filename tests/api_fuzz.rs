//! Fuzzing the real server's API with proptest: random JSON (and random
//! bytes) as the body of every route that takes one, random fields in
//! otherwise valid bodies, and random parameter values for a real flow.
//! Whatever arrives, the answer is a 2xx or a 4xx, never a 5xx, and the
//! server keeps serving.

mod support;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use support::http::{get, post, request};
use support::{Sluice, guest};

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        (-1e300f64..1e300).prop_map(|x| json!(x)),
        ".{0,24}".prop_map(Value::String),
        Just(json!("sha256:".to_string() + &"0".repeat(64))),
        Just(json!("../../etc/passwd")),
    ];
    leaf.prop_recursive(3, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map("[a-z_]{1,12}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A body with the route's real field names, each present or not, each any value.
fn shaped(fields: &'static [&'static str]) -> impl Strategy<Value = Value> {
    vec(proptest::option::of(any_json()), fields.len()).prop_map(move |values| {
        let object = fields.iter().zip(values).filter_map(|(k, v)| v.map(|v| (k.to_string(), v))).collect();
        Value::Object(object)
    })
}

/// Routes that take a JSON body, with their real field names.
const ROUTES: &[(&str, &str, &[&str])] = &[
    (
        "POST",
        "/api/v1/deployments",
        &["artifact", "flow", "name", "parameters", "description", "tags", "schedule", "paused", "pool", "limits"],
    ),
    ("POST", "/api/v1/deployments/hello/leo/runs", &["parameters", "start"]),
    ("POST", "/api/v1/work-pools", &["name", "description"]),
    ("POST", "/api/v1/work-pools/default/queues", &["name", "tags", "priority", "concurrency_limit"]),
    ("POST", "/api/v1/workers/fuzz/claim", &["limit", "pool", "queues"]),
    ("POST", "/api/v1/workers/fuzz/heartbeat", &["running"]),
    ("POST", "/api/v1/workers/fuzz/events", &["FlowRunCreated", "TaskRunCreated", "State", "Log"]),
    ("POST", "/api/v1/tenants", &["name", "policy"]),
    ("PUT", "/api/v1/tenants/default/policy", &["allow_hosts", "max_memory_mib", "max_timeout_seconds"]),
    ("POST", "/api/v1/tokens", &["tenant", "role", "name", "expires"]),
    ("POST", "/api/v1/artifacts", &["bytes"]),
];

fn body_strategy() -> impl Strategy<Value = (usize, Vec<u8>)> {
    (0..ROUTES.len()).prop_flat_map(|route| {
        let fields = ROUTES[route].2;
        let body = prop_oneof![
            3 => shaped(fields).prop_map(|v| v.to_string().into_bytes()),
            2 => any_json().prop_map(|v| v.to_string().into_bytes()),
            1 => vec(any::<u8>(), 0..64),
        ];
        (Just(route), body)
    })
}

fn started_server() -> (Sluice, support::Process, String) {
    let sluice = Sluice::new();
    let hello = guest("hello_flow");
    let output =
        sluice.run(&["deploy", hello.to_str().unwrap(), "--flow", "hello", "--name", "leo", "--param", "name=Leo"]);
    assert!(output.status.success());
    let (server, address) = sluice.server(&["--workers", "0"]);
    (sluice, server, address)
}

/// The path of each route as the OpenAPI document lists it.
fn template(path: &str) -> String {
    path.replace("/hello/leo/", "/{flow}/{name}/")
        .replace("/fuzz/", "/{name}/")
        .replace("work-pools/default/", "work-pools/{pool}/")
        .replace("tenants/default/", "tenants/{name}/")
}

#[test]
fn no_body_makes_any_route_answer_a_server_error() {
    let (_sluice, _server, address) = started_server();
    let (_, document) = get(&address, "/api/openapi.json");
    let mut runner = TestRunner::new(Config { cases: 600, failure_persistence: None, ..Config::default() });
    runner
        .run(&body_strategy(), |(route, body)| {
            let (method, path, _) = ROUTES[route];
            let (status, answer) = request(&address, method, path, Some(&body));
            prop_assert!(
                status < 500,
                "{method} {path} with {:?} answered {status}: {answer}",
                String::from_utf8_lossy(&body)
            );
            if status >= 400 {
                prop_assert!(
                    answer["error"]["message"].is_string(),
                    "{method} {path}: an error is the JSON error body naming its cause: {answer}"
                );
            }
            let documented = &document["paths"][template(path)][method.to_lowercase()]["responses"];
            prop_assert!(
                documented[status.to_string()].is_object(),
                "{method} {path} answered {status}, which its document does not list: {answer}"
            );
            Ok(())
        })
        .unwrap();
    assert_eq!(get(&address, "/api/v1/health").0, 200, "still serving");
}

#[test]
fn any_parameter_value_is_accepted_or_refused_by_the_schema_never_a_crash() {
    let (_sluice, _server, address) = started_server();
    let mut runner = TestRunner::new(Config { cases: 300, failure_persistence: None, ..Config::default() });
    runner
        .run(&btree_map("[a-z]{1,6}|name", any_json(), 0..4), |parameters| {
            let body = json!({ "parameters": parameters }).to_string();
            let (status, answer) = post(&address, "/api/v1/deployments/hello/leo/runs", &body);
            let name_is_text = parameters.get("name").is_none_or(Value::is_string);
            let only_known = parameters.keys().all(|k| k == "name");
            if name_is_text && only_known {
                prop_assert_eq!(status, 201, "{}: {}", body, answer);
            } else {
                prop_assert_eq!(status, 422, "{}: {}", body, answer);
                prop_assert!(answer["error"]["message"].is_string());
            }
            Ok(())
        })
        .unwrap();
}
