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

/// Adds what authentication answers to every operation of `document`: 401
/// (no valid token) and 403 (the role may not); the health check needs no
/// token at all.
pub fn add_auth_responses(document: &mut Document) {
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
            if path.ends_with("/health") {
                operation.security = Some(vec![SecurityRequirement::default()]);
                continue;
            }
            operation.responses.responses.entry("401".into()).or_insert_with(|| error("No valid token"));
            operation
                .responses
                .responses
                .entry("403".into())
                .or_insert_with(|| error("The token's role may not do this"));
        }
    }
}

/// A route serving `document` as JSON, serialized once.
pub fn serve<S: Clone + Send + Sync + 'static>(document: &Document) -> MethodRouter<S> {
    let json = Bytes::from(document.to_json().expect("the OpenAPI document serializes"));
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
