//! `GET /api/openapi.json`: the OpenAPI document of the real server lists
//! every route the router serves, with its methods, and the schemas of the
//! main resources and of the common error body.

mod support;

use serde_json::Value;
use support::Sluice;
use support::http::{get, request};

/// Every route under `/api/v1` (and the webhook deliveries' `/hooks/{id}`) with its methods, as `runtime/src/server/api.rs` serves them.
const ROUTES: &[(&str, &[&str])] = &[
    ("/api/v1/health", &["get"]),
    ("/api/v1/secrets", &["get", "post"]),
    ("/api/v1/secrets/{name}", &["delete"]),
    ("/api/v1/artifacts", &["get", "post"]),
    ("/api/v1/artifacts/{digest}", &["get"]),
    ("/api/v1/artifacts/{digest}/content", &["get"]),
    ("/api/v1/deployments", &["get", "post"]),
    ("/api/v1/deployments/{flow}/{name}", &["get", "delete"]),
    ("/api/v1/deployments/{flow}/{name}/pause", &["post"]),
    ("/api/v1/deployments/{flow}/{name}/resume", &["post"]),
    ("/api/v1/deployments/{flow}/{name}/runs", &["post"]),
    ("/api/v1/flow-runs", &["get"]),
    ("/api/v1/flow-runs/{id}", &["get"]),
    ("/api/v1/flow-runs/{id}/logs", &["get"]),
    ("/api/v1/flow-runs/{id}/logs/follow", &["get"]),
    ("/api/v1/flow-runs/{id}/cancel", &["post"]),
    ("/api/v1/flow-runs/{id}/retry", &["post"]),
    ("/api/v1/flow-runs/{id}/resume", &["post"]),
    ("/api/v1/work-pools", &["get", "post"]),
    ("/api/v1/work-pools/{pool}", &["get", "delete"]),
    ("/api/v1/work-pools/{pool}/workers", &["get"]),
    ("/api/v1/work-pools/{pool}/pause", &["post"]),
    ("/api/v1/work-pools/{pool}/resume", &["post"]),
    ("/api/v1/work-pools/{pool}/queues", &["get", "post"]),
    ("/api/v1/work-pools/{pool}/queues/{name}", &["delete"]),
    ("/api/v1/work-pools/{pool}/queues/{name}/pause", &["post"]),
    ("/api/v1/work-pools/{pool}/queues/{name}/resume", &["post"]),
    ("/api/v1/workers/{name}/claim", &["post"]),
    ("/api/v1/workers/{name}/heartbeat", &["post"]),
    ("/api/v1/workers/{name}/started", &["post"]),
    ("/api/v1/workers/{name}/stopped", &["post"]),
    ("/api/v1/workers/{name}/events", &["post"]),
    ("/api/v1/tenants", &["get", "post"]),
    ("/api/v1/tenants/{name}", &["delete"]),
    ("/api/v1/tenants/{name}/policy", &["put"]),
    ("/api/v1/tokens", &["get", "post"]),
    ("/api/v1/tokens/{id}", &["delete"]),
    ("/api/v1/whoami", &["get"]),
    ("/api/v1/events", &["get"]),
    ("/api/v1/webhooks", &["get", "post"]),
    ("/api/v1/webhooks/{id}", &["delete"]),
    ("/api/v1/automations", &["get", "post"]),
    ("/api/v1/automations/{id}", &["delete"]),
    ("/hooks/{id}", &["post"]),
];

const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// The schema a `$ref` names, from `components.schemas`.
fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.strip_prefix("#/components/schemas/").expect("a local schema reference");
            &document["components"]["schemas"][name]
        }
        None => schema,
    }
}

#[test]
fn the_server_serves_an_openapi_document_of_every_route() {
    let sluice = Sluice::new();
    let (_server, address) = sluice.server(&["--workers", "0"]);
    let (status, document) = get(&address, "/api/openapi.json");
    assert_eq!(status, 200, "{document}");

    let version = document["openapi"].as_str().expect("an `openapi` version");
    assert!(version.starts_with("3."), "OpenAPI 3.x, got {version}");
    assert_eq!(document["info"]["title"], "Sluice API");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));

    // Exactly the routes served, each with exactly its methods.
    let paths = document["paths"].as_object().expect("paths");
    for (path, methods) in ROUTES {
        let item = paths.get(*path).unwrap_or_else(|| panic!("{path} is missing from the document"));
        let mut listed: Vec<&str> = METHODS.iter().copied().filter(|m| item.get(*m).is_some()).collect();
        let mut expected = methods.to_vec();
        listed.sort_unstable();
        expected.sort_unstable();
        assert_eq!(listed, expected, "methods of {path}");
        for method in *methods {
            let responses = item[*method]["responses"].as_object().expect("responses");
            assert!(!responses.is_empty(), "{method} {path} documents no response");
        }
    }
    let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
    let mut expected: Vec<&str> = ROUTES.iter().map(|(path, _)| *path).collect();
    documented.sort_unstable();
    expected.sort_unstable();
    assert_eq!(documented, expected, "the document lists a route the router does not serve, or the reverse");

    // And the server serves each of them: no fallback 404, no 405 (path
    // parameters name nothing that exists, so nothing changes).
    for (path, methods) in ROUTES {
        let concrete = path.replace("{digest}", "nope").replace("{flow}", "nope").replace("{name}", "nope");
        let concrete = concrete.replace("{id}", "nope").replace("{pool}", "nope");
        for method in *methods {
            let (status, body) = request(&address, &method.to_uppercase(), &concrete, None);
            let fallback = body["error"]["message"].as_str().is_some_and(|m| m.starts_with("no such route"));
            assert!(status != 405 && !fallback, "{method} {concrete} is not served: {status} {body}");
        }
    }

    // Every route but the health check needs a bearer token, and says what refusing looks like.
    assert_eq!(document["components"]["securitySchemes"]["token"]["scheme"], "bearer");
    assert_eq!(document["security"][0]["token"], serde_json::json!([]));
    for (path, methods) in ROUTES {
        for method in *methods {
            let operation = &paths[*path][*method];
            if path.ends_with("/health") || path.starts_with("/hooks/") {
                // The health check is open; a webhook delivery is signed, not authorized.
                assert_eq!(operation["security"], serde_json::json!([{}]), "{path} is open");
            } else {
                assert!(operation["responses"]["401"].is_object(), "{method} {path} documents no 401");
                assert!(operation["responses"]["403"].is_object(), "{method} {path} documents no 403");
            }
        }
    }

    // The main resources' schemas.
    let schemas = document["components"]["schemas"].as_object().expect("component schemas");
    let names =
        ["Deployment", "FlowRunRow", "FlowRunDetail", "WorkPool", "WorkQueue", "ArtifactMeta", "ErrorBody", "Tenant"];
    for name in names {
        assert!(schemas.contains_key(name), "no {name} schema among {:?}", schemas.keys().collect::<Vec<_>>());
    }
    let deployment = &schemas["Deployment"]["properties"];
    for field in ["flow", "name", "artifact", "parameters", "schedule", "limits"] {
        assert!(deployment.get(field).is_some(), "Deployment has no {field}: {deployment}");
    }
    let run = &schemas["FlowRunRow"]["properties"];
    for field in ["id", "name", "flow", "state", "parameters", "created"] {
        assert!(run.get(field).is_some(), "FlowRunRow has no {field}: {run}");
    }

    // The common error body: {"error": {"status": u16, "message": string}}.
    let error = resolve(&document, &schemas["ErrorBody"]["properties"]["error"]);
    assert_eq!(error["properties"]["status"]["type"], "integer", "{error}");
    assert_eq!(error["properties"]["message"]["type"], "string", "{error}");
    let deployment_get = &paths["/api/v1/deployments/{flow}/{name}"]["get"]["responses"];
    let not_found = &deployment_get["404"]["content"]["application/json"]["schema"]["$ref"];
    assert_eq!(not_found, "#/components/schemas/ErrorBody", "{deployment_get}");

    // And it is what an error really looks like.
    let (status, body) = get(&address, "/api/v1/deployments/no/such");
    assert_eq!(status, 404);
    assert_eq!(body["error"]["status"], 404, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");

    // A request body is documented: a deployment to create.
    let deploy = &paths["/api/v1/deployments"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    let deploy = resolve(&document, deploy);
    let required: Vec<&str> =
        deploy["required"].as_array().expect("required").iter().filter_map(Value::as_str).collect();
    assert!(["artifact", "name"].iter().all(|f| required.contains(f)), "{deploy}");
    // `flow` may be left out: the artifact's only flow is taken.
    assert!(!required.contains(&"flow") && deploy["properties"]["flow"].is_object(), "{deploy}");
}

/// One raw request: status, lower-cased header lines, body. The body is
/// sent only once the server asks for it (`Expect: 100-continue`), so a
/// refusal by size arrives whole instead of racing a reset connection.
fn raw(address: &str, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let authorization = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let expect = if body.is_empty() { "" } else { "Expect: 100-continue\r\n" };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{authorization}{expect}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut response = Vec::new();
    if !body.is_empty() {
        let mut byte = [0u8; 1];
        while !response.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
            response.push(byte[0]);
        }
        if response.starts_with(b"HTTP/1.1 100") {
            response.clear();
            stream.write_all(body).unwrap();
        }
    }
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// The largest value the document allows for an integer property: its
/// `maximum`, else what its `format` can hold.
fn documented_maximum(property: &Value) -> u128 {
    if let Some(maximum) = property["maximum"].as_u64() {
        return maximum.into();
    }
    match property["format"].as_str() {
        Some("int32") => i32::MAX as u128,
        Some("uint32") => u32::MAX as u128,
        Some("int64") => i64::MAX as u128,
        Some("uint64") => u64::MAX as u128,
        other => panic!("an integer without a documented range ({other:?}): {property}"),
    }
}

#[test]
fn the_server_refuses_what_its_document_refuses_in_the_documented_shape() {
    let sluice = Sluice::new();
    let (_server, address) = sluice.server(&["--workers", "0"]);
    let token = sluice.admin_token();
    let (_, document) = get(&address, "/api/openapi.json");
    let schemas = &document["components"]["schemas"];

    // Integers one past the documented maximum are refused with the error body.
    let cases = [
        ("TenantPolicy", "max_timeout_seconds", "PUT", "/api/v1/tenants/default/policy", serde_json::json!({})),
        (
            "QueueRequest",
            "concurrency_limit",
            "POST",
            "/api/v1/work-pools/default/queues",
            serde_json::json!({"name": "q"}),
        ),
        ("ClaimBody", "wait_ms", "POST", "/api/v1/workers/w/claim", serde_json::json!({"limit": 1})),
    ];
    for (schema, field, method, path, mut body) in cases {
        let maximum = documented_maximum(&schemas[schema]["properties"][field]);
        body[field] = serde_json::from_str(&(maximum + 1).to_string()).unwrap();
        let (status, answer) = request(&address, method, path, Some(body.to_string().as_bytes()));
        assert_eq!(status, 422, "{field} = {} (documented maximum {maximum}) was not refused: {answer}", maximum + 1);
        assert!(answer["error"]["message"].as_str().is_some_and(|m| m.contains(field)), "{answer}");
    }

    // A JSON array where the document says object: refused, top level or nested.
    for (method, path, body) in [
        ("POST", "/api/v1/workers/w/claim", r#"[1, 0, "default", []]"#),
        ("POST", "/api/v1/work-pools", r#"["arrays"]"#),
        ("POST", "/api/v1/tenants", r#"{"name": "t", "policy": [[], null, 60, null]}"#),
        ("POST", "/api/v1/deployments/no/such/runs", r#"[{}]"#),
    ] {
        let (status, answer) = request(&address, method, path, Some(body.as_bytes()));
        assert_eq!(status, 422, "{method} {path} {body}: {answer}");
        assert!(answer["error"]["message"].as_str().is_some_and(|m| m.contains("object")), "{answer}");
    }
    let (status, answer) = get(&address, "/api/v1/tenants");
    assert_eq!(status, 200);
    assert!(answer.as_array().unwrap().iter().all(|t| t["name"] != "t"), "the array-shaped policy made a tenant");

    // Every refusal axum makes itself is the JSON error body too, with a documented status.
    let big = vec![b' '; (4 << 20) + 16];
    let refusals: [(&str, &str, &str, &[u8], u16); 6] = [
        ("GET", "/api/v1/flow-runs?bogus=1", "/api/v1/flow-runs", b"", 400),
        ("GET", "/api/v1/flow-runs?limit=-1", "/api/v1/flow-runs", b"", 400),
        ("GET", "/api/v1/tokens?tenant=a&x=1", "/api/v1/tokens", b"", 400),
        ("POST", "/api/v1/deployments/hello/leo/runs", "/api/v1/deployments/{flow}/{name}/runs", &big, 413),
        ("POST", "/api/v1/tenants", "/api/v1/tenants", &big, 413),
        ("GET", "/api/v1/flow-runs/%FF", "/api/v1/flow-runs/{id}", b"", 400),
    ];
    for (method, path, template, body, expected) in refusals {
        let (status, head, text) = raw(&address, method, path, Some(&token), body);
        assert_eq!(status, expected, "{method} {path}: {text}");
        assert!(head.contains("content-type: application/json"), "{method} {path} answered {head}\n{text}");
        let answer: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"));
        assert_eq!(answer["error"]["status"], expected, "{answer}");
        let responses = &document["paths"][template][method.to_lowercase()]["responses"];
        assert!(responses[expected.to_string()].is_object(), "{method} {template} does not document {expected}");
    }

    // Paths that are not the UI's carry the UI's security headers too.
    for path in ["/nope", "/api/v1/nope", "/api/v1/health"] {
        let (_, head, _) = raw(&address, "GET", path, None, b"");
        for header in ["content-security-policy:", "x-frame-options: deny", "x-content-type-options: nosniff"] {
            assert!(head.contains(header), "{path} has no {header}: {head}");
        }
    }
}

#[test]
fn every_response_of_the_document_is_described_and_every_schema_is_an_object() {
    let sluice = Sluice::new();
    let (_server, address) = sluice.server(&["--workers", "0"]);
    let (_, document) = get(&address, "/api/openapi.json");
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                let described = response["description"].as_str().is_some_and(|d| !d.is_empty());
                assert!(described, "{method} {path} {status} has no description: {response}");
            }
        }
    }
    // Generators refuse boolean schemas (`items: false`): none anywhere.
    fn no_boolean_schema(at: &str, value: &Value) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    let schema_keyword = ["items", "not", "contains"].contains(&key.as_str());
                    assert!(!(schema_keyword && inner.is_boolean()), "a boolean schema at {at}/{key}");
                    no_boolean_schema(&format!("{at}/{key}"), inner);
                }
            }
            Value::Array(items) => {
                items.iter().enumerate().for_each(|(i, v)| no_boolean_schema(&format!("{at}/{i}"), v))
            }
            _ => {}
        }
    }
    no_boolean_schema("#", &document);
}
