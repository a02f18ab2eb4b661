//! The OpenAPI 3 document of the HTTP API, served at `/api/openapi.json`.
//! Its paths and schemas come from the handlers' `#[utoipa::path]`
//! attributes, collected by the router (`api.rs`); this module adds what no
//! handler says: the title, the version, the tags, and the schemas of
//! bodies built as plain JSON elsewhere.

use super::api::{ErrorBody, RunBody};
use crate::store::{FlowRunRow, StateRow, TaskRunRow};
use axum::body::Bytes;
use axum::http::header;
use axum::routing::{MethodRouter, get};
use utoipa::openapi::OpenApi as Document;
use utoipa::{OpenApi, ToSchema};

/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/api/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice API",
        version = env!("CARGO_PKG_VERSION"),
        description = "Sluice's server: artifacts, deployments, flow runs, work pools and queues, and the \
                       calls workers make. Every error is `{\"error\": {\"status\", \"message\"}}`."
    ),
    components(schemas(ErrorBody, FlowRunDetail, RunBody)),
    modifiers(&BearerTokens),
    security(("token" = [])),
    tags(
        (name = "health", description = "Whether the server is up"),
        (name = "artifacts", description = "Flow components, stored by sha256"),
        (name = "deployments", description = "Named ways to run a flow, and their runs"),
        (name = "flow-runs", description = "Run history, logs and cancellation"),
        (name = "work-pools", description = "Work pools and their queues"),
        (name = "workers", description = "What workers call: claims, heartbeats, events"),
        (name = "secrets", description = "Secrets granted to deployments as environment variables; values are never returned"),
        (name = "tenants", description = "Tenants, their policies and tokens"),
        (name = "events", description = "The event log, webhooks (`POST /hooks/{id}`, no token) and automations"),
    )
)]
struct ApiDoc;

/// Every route needs a bearer token, except the health check.
struct BearerTokens;

impl utoipa::Modify for BearerTokens {
    fn modify(&self, document: &mut Document) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = document.components.get_or_insert_with(Default::default);
        components.add_security_scheme("token", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The document's base: everything but the routes' paths.
pub fn base() -> Document {
    ApiDoc::openapi()
}

/// Adds to every operation of `document` what any route may answer besides
/// its own outcomes, so every status the server can send is documented:
/// 401 (no valid token) and 403 (the role may not) where a token is needed
/// (the health check needs none), 500 (a store failed), 400 where a path or
/// query parameter can be malformed, and 400/413/415/422 where a JSON body
/// is read (413 for any body). A response left without a description gets
/// its status's reason phrase (OpenAPI requires one).
pub fn add_common_responses(document: &mut Document) {
    use utoipa::openapi::{RefOr, ResponseBuilder, content::Content, security::SecurityRequirement};
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content("application/json", Content::new(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody"))))
                .build(),
        )
    };
    for (path, item) in document.paths.paths.iter_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            let has_parameters = operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let body_types: Vec<String> = match &operation.request_body {
                Some(RefOr::T(body)) => body.content.keys().cloned().collect(),
                _ => Vec::new(),
            };
            let responses = &mut operation.responses.responses;
            let mut add = |status: &str, description: &str| {
                responses.entry(status.into()).or_insert_with(|| error(description));
            };
            // A webhook delivery needs no token: its id and signature stand for one.
            let open = path.ends_with("/health") || path.starts_with("/hooks/");
            if path.starts_with("/hooks/") {
                add("401", "A missing or wrong signature");
                add("500", "A store failed");
            } else if !open {
                add("401", "No valid token");
                add("403", "The token's role may not do this");
                add("500", "A store failed");
            }
            if has_parameters {
                add("400", "A malformed path or query parameter");
            }
            if !body_types.is_empty() {
                add("413", "Body too large");
            }
            if body_types.iter().any(|t| t == "application/json") {
                add("400", "Malformed JSON");
                add("415", "Not `application/json`");
                add("422", "The body does not fit its schema");
            }
            for (status, response) in responses.iter_mut() {
                if let RefOr::T(response) = response
                    && response.description.is_empty()
                {
                    let reason = status.parse().ok().and_then(|s| axum::http::StatusCode::from_u16(s).ok());
                    response.description = reason.and_then(|s| s.canonical_reason()).unwrap_or("The answer").into();
                }
            }
            if path.ends_with("/health") {
                operation.security = Some(vec![SecurityRequirement::default()]);
            }
        }
    }
}

/// The document as served: `document` as JSON, with the range of every
/// `int32`/`int64` integer written out as its `maximum` where none is set.
/// Unsigned fields are documented with those formats, so without it a
/// `u32` would be documented up to 2^31-1 yet read up to 2^32-1; with it,
/// the request check ([`super::api`]'s contract) refuses what the format
/// cannot hold, as the document says.
pub fn finish(document: &Document) -> serde_json::Value {
    let mut json = serde_json::to_value(document).expect("the OpenAPI document serializes");
    write_integer_ranges(&mut json);
    json
}

/// Writes the `maximum` of every `int32`/`int64` integer schema in `value` (see [`finish`]).
pub(super) fn write_integer_ranges(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let is_integer = match map.get("type") {
                Some(Value::String(kind)) => kind == "integer",
                Some(Value::Array(kinds)) => kinds.iter().any(|k| k == "integer"),
                _ => false,
            };
            let most = match map.get("format").and_then(Value::as_str) {
                Some("int32") => Some(i64::from(i32::MAX)),
                Some("int64") => Some(i64::MAX),
                _ => None,
            };
            if is_integer && let Some(most) = most {
                map.entry("maximum").or_insert(most.into());
            }
            map.values_mut().for_each(write_integer_ranges);
        }
        Value::Array(items) => items.iter_mut().for_each(write_integer_ranges),
        _ => {}
    }
}

/// A route serving the finished `document`, serialized once.
pub fn serve<S: Clone + Send + Sync + 'static>(document: &serde_json::Value) -> MethodRouter<S> {
    let json = Bytes::from(serde_json::to_vec(document).expect("the OpenAPI document serializes"));
    get(move || {
        let json = json.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], json) }
    })
}

/// A component's bytes.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // describes raw bytes read and written as `Bytes`
pub struct WasmComponent(Vec<u8>);

// The shapes below document the JSON that `Service::inspect_run` builds.

/// A flow run as inspected: the run, its state history, its task runs and subflow runs.
#[derive(ToSchema)]
#[allow(dead_code)] // describes JSON built with `json!` in `service::runs`
pub struct FlowRunDetail {
    /// The run.
    flow_run: FlowRunRow,
    /// Its states, oldest first.
    states: Vec<StateRow>,
    /// Its task runs, in creation order.
    task_runs: Vec<TaskRunDetail>,
    /// Its subflow runs.
    subflow_runs: Vec<SubflowRunDetail>,
}

/// A task run with its state history.
#[derive(ToSchema)]
#[allow(dead_code)]
struct TaskRunDetail {
    /// The task run.
    task_run: TaskRunRow,
    /// Its states, oldest first.
    states: Vec<StateRow>,
}

/// A subflow run with its state history.
#[derive(ToSchema)]
#[allow(dead_code)]
struct SubflowRunDetail {
    /// The subflow run.
    flow_run: FlowRunRow,
    /// Its states, oldest first.
    states: Vec<StateRow>,
}
