//! `GET /api/openapi.json`: the OpenAPI document of the real server lists
//! every route the router serves, with its methods, and the schemas of the
//! main resources and of the common error body.

mod support;

use serde_json::Value;
use support::Sluice;
use support::http::{get, request};

/// Every route under `/api/v1` with its methods, as `runtime/src/server/api.rs` serves them.
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
    ("/api/v1/flow-runs/{id}/cancel", &["post"]),
    ("/api/v1/work-pools", &["get", "post"]),
    ("/api/v1/work-pools/{pool}", &["get", "delete"]),
    ("/api/v1/work-pools/{pool}/pause", &["post"]),
    ("/api/v1/work-pools/{pool}/resume", &["post"]),
    ("/api/v1/work-pools/{pool}/queues", &["get", "post"]),
    ("/api/v1/work-pools/{pool}/queues/{name}", &["delete"]),
    ("/api/v1/work-pools/{pool}/queues/{name}/pause", &["post"]),
    ("/api/v1/work-pools/{pool}/queues/{name}/resume", &["post"]),
    ("/api/v1/workers/{name}/claim", &["post"]),
    ("/api/v1/workers/{name}/heartbeat", &["post"]),
    ("/api/v1/workers/{name}/events", &["post"]),
    ("/api/v1/tenants", &["get", "post"]),
    ("/api/v1/tenants/{name}", &["delete"]),
    ("/api/v1/tenants/{name}/policy", &["put"]),
    ("/api/v1/tokens", &["get", "post"]),
    ("/api/v1/tokens/{id}", &["delete"]),
    ("/api/v1/whoami", &["get"]),
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
            if path.ends_with("/health") {
                assert_eq!(operation["security"], serde_json::json!([{}]), "the health check is open");
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
    assert!(["artifact", "flow", "name"].iter().all(|f| required.contains(f)), "{deploy}");
}
