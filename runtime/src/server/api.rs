//! The HTTP JSON API under `/api/v1`: one handler per service call, the
//! same errors everywhere (`{"error": {"status", "message"}}`), and a body
//! limit per route. Each handler carries its OpenAPI description
//! (`#[utoipa::path]`); the router collects them, so the document served at
//! `/api/openapi.json` lists exactly the routes served.

use super::dispatch::{ClaimedRun, Dispatch};
use super::openapi::{FlowRunDetail, WasmComponent};
use crate::core::deployment::{ArtifactMeta, Deployment, Grants, Limits};
use crate::core::pool::{WorkPool, WorkQueue};
use crate::core::record::{Event, Recorder};
use crate::core::schedule::Schedule;
use crate::core::state::StateType;
use crate::service::{ArtifactSource, DeployRequest, Deployed, Pushed, QueueRequest, ServiceError};
use crate::store::{CancelOutcome, FlowRunRow, LogRow, RunFilter, StateStore};
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

/// Largest JSON body accepted.
pub const MAX_JSON_BYTES: usize = 4 << 20;

pub(super) type AppState = Arc<Dispatch>;

/// An error as every route returns it.
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        let status = match &err {
            ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
            ServiceError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ServiceError::Artifact(crate::artifact::StoreError::NotFound(_)) => StatusCode::NOT_FOUND,
            ServiceError::Artifact(crate::artifact::StoreError::Corrupt { .. }) => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, err.to_string())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(err: crate::store::StoreError) -> Self {
        ServiceError::from(err).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { message: self.message, status: self.status.as_u16() } };
        (self.status, Json(body)).into_response()
    }
}

/// The body of every error response.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    error: ErrorDetail,
}

/// What went wrong, for people.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Why, in a sentence.
    message: String,
    /// The HTTP status again.
    status: u16,
}

/// A JSON body whose rejections use the API's error shape.
pub struct Body<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(ApiError::new(rejection_status(&rejection), rejection.body_text())),
        }
    }
}

fn rejection_status(rejection: &JsonRejection) -> StatusCode {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        JsonRejection::JsonDataError(_) => StatusCode::UNPROCESSABLE_ENTITY,
        JsonRejection::BytesRejection(_) => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    }
}

pub(super) type ApiResult<T> = Result<T, ApiError>;

/// The API's routes, and the OpenAPI document describing them at `/api/openapi.json`.
pub fn router(dispatch: Arc<Dispatch>) -> Router {
    let (router, document) =
        OpenApiRouter::with_openapi(super::openapi::base()).nest("/api/v1", api_routes()).split_for_parts();
    router
        .route(super::openapi::DOCUMENT_PATH, super::openapi::serve(&document))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route; the API lives under /api/v1") })
        .with_state(dispatch)
}

/// The routes under `/api/v1`; a `routes!` groups the handlers of one path.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(
            routes!(list_artifacts, push_artifact).layer(DefaultBodyLimit::max(crate::service::MAX_ARTIFACT_BYTES + 1)),
        )
        .routes(routes!(artifact))
        .routes(routes!(artifact_content))
        .routes(routes!(list_deployments, deploy))
        .routes(routes!(deployment, delete_deployment))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(create_run))
        .routes(routes!(list_runs))
        .routes(routes!(inspect_run))
        .routes(routes!(run_logs))
        .routes(routes!(cancel_run))
        .routes(routes!(list_pools, create_pool))
        .routes(routes!(inspect_pool, delete_pool))
        .routes(routes!(pause_pool))
        .routes(routes!(resume_pool))
        .routes(routes!(list_queues, create_queue))
        .routes(routes!(delete_queue))
        .routes(routes!(pause_queue))
        .routes(routes!(resume_queue))
        .routes(routes!(claim))
        .routes(routes!(heartbeat))
        .routes(routes!(record_events))
        .merge(super::secrets_api::routes())
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES))
}

/// The server's answer to a health check.
#[derive(Serialize, ToSchema)]
struct Health {
    /// Always `ok`.
    #[schema(example = "ok")]
    status: &'static str,
}

/// Whether the server is up.
#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, body = Health)))]
async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Every pushed artifact, newest first.
#[utoipa::path(
    get,
    path = "/artifacts",
    tag = "artifacts",
    responses(
        (status = 200, body = Vec<ArtifactMeta>),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn list_artifacts(State(d): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(d.service.store.artifacts()?)))
}

/// Pushes a component: validated, then stored under its sha256 (identical bytes are stored once).
#[utoipa::path(
    post,
    path = "/artifacts",
    tag = "artifacts",
    request_body(
        description = "The component's bytes (whatever the content type)",
        content(
            (inline(WasmComponent) = "application/wasm"),
            (inline(WasmComponent) = "application/octet-stream"),
        )
    ),
    responses(
        (status = 201, description = "Stored", body = Pushed),
        (status = 200, description = "The same bytes were already stored", body = Pushed),
        (status = 409, description = "The stored object is corrupt", body = ErrorBody),
        (status = 413, description = "Larger than the artifact limit (axum's plain-text rejection)", body = String, content_type = "text/plain"),
        (status = 422, description = "Not a flow component, or too large", body = ErrorBody),
        (status = 500, description = "A store failed", body = ErrorBody),
    )
)]
async fn push_artifact(State(d): State<AppState>, bytes: Bytes) -> ApiResult<(StatusCode, Json<Value>)> {
    let pushed = d.service.push(bytes.to_vec(), None).await?;
    let status = if pushed.newly_stored { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!(pushed))))
}

/// One artifact's metadata.
#[utoipa::path(
    get,
    path = "/artifacts/{digest}",
    tag = "artifacts",
    params(("digest" = String, Path, description = "`sha256:<hex>` (or the bare hex)", pattern = "^(sha256:)?[0-9a-fA-F]{64}$")),
    responses(
        (status = 200, body = ArtifactMeta),
        (status = 404, description = "Not pushed here", body = ErrorBody),
        (status = 422, description = "Not a digest", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn artifact(State(d): State<AppState>, Path(digest): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(d.service.artifact_meta(&digest)?)))
}

/// An artifact's bytes, checked against its digest.
#[utoipa::path(
    get,
    path = "/artifacts/{digest}/content",
    tag = "artifacts",
    params(("digest" = String, Path, description = "`sha256:<hex>` (or the bare hex)", pattern = "^(sha256:)?[0-9a-fA-F]{64}$")),
    responses(
        (status = 200, description = "The component", body = inline(WasmComponent), content_type = "application/wasm"),
        (status = 404, description = "Not pushed here", body = ErrorBody),
        (status = 409, description = "The stored object does not match its digest", body = ErrorBody),
        (status = 422, description = "Not a digest", body = ErrorBody),
        (status = 500, description = "A store failed", body = ErrorBody),
    )
)]
async fn artifact_content(State(d): State<AppState>, Path(digest): Path<String>) -> ApiResult<Response> {
    let meta = d.service.artifact_meta(&digest)?;
    let digest = crate::artifact::Digest::parse(&meta.digest).map_err(ServiceError::Invalid)?;
    let bytes = d.service.artifacts.get(&digest).await.map_err(ServiceError::from)?;
    Ok(([(header::CONTENT_TYPE, "application/wasm")], bytes).into_response())
}

/// Every deployment, by name.
#[utoipa::path(
    get,
    path = "/deployments",
    tag = "deployments",
    responses(
        (status = 200, body = Vec<Deployment>),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn list_deployments(State(d): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(d.service.store.deployments()?)))
}

/// A deployment as the API takes it: the artifact by digest.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DeployBody {
    /// The artifact holding the flow, `sha256:<hex>`, pushed before.
    #[schema(pattern = "^(sha256:)?[0-9a-fA-F]{64}$")]
    artifact: String,
    /// The flow in it.
    #[schema(pattern = "^[A-Za-z0-9_.-]+$")]
    flow: String,
    /// The deployment's name, unique per flow: letters, digits, `_`, `-` and `.`.
    #[schema(pattern = "^[A-Za-z0-9_.-]+$")]
    name: String,
    /// Default parameters, checked against the flow's schema.
    #[serde(default)]
    parameters: Map<String, Value>,
    /// What it is for.
    description: Option<String>,
    /// Its version label.
    version: Option<String>,
    /// Tags, for filtering and queue routing.
    #[serde(default)]
    tags: Vec<String>,
    /// When it runs by itself.
    schedule: Option<Schedule>,
    /// Whether its schedule starts paused.
    #[serde(default)]
    paused: bool,
    /// Work pool (`default` when absent).
    pool: Option<String>,
    /// Work queue in the pool.
    queue: Option<String>,
    /// Limits of its runs.
    #[serde(default)]
    limits: Limits,
    /// Capabilities granted to its runs: outbound HTTP hosts, secrets as environment variables.
    #[serde(default)]
    grants: Grants,
}

/// Creates or updates `flow/name` (idempotent: the same settings change nothing).
#[utoipa::path(
    post,
    path = "/deployments",
    tag = "deployments",
    request_body = DeployBody,
    responses(
        (status = 200, body = Deployed),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 404, description = "The artifact was not pushed here", body = ErrorBody),
        (status = 409, description = "The stored artifact is corrupt", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "Invalid deployment, schedule or parameters", body = ErrorBody),
        (status = 500, description = "A store failed", body = ErrorBody),
    )
)]
async fn deploy(State(d): State<AppState>, Body(body): Body<DeployBody>) -> ApiResult<Json<Value>> {
    let schedule = match body.schedule {
        Some(Schedule::Interval { seconds, anchor }) => {
            Some(Schedule::interval(seconds).map_err(ServiceError::Invalid).map(|s| match s {
                Schedule::Interval { seconds, .. } => Schedule::Interval { seconds, anchor },
                other => other,
            })?)
        }
        Some(Schedule::Cron { expression, timezone }) => {
            Some(Schedule::cron(&expression, Some(&timezone)).map_err(ServiceError::Invalid)?)
        }
        None => None,
    };
    let deployed = d
        .service
        .deploy(DeployRequest {
            artifact: ArtifactSource::Digest(body.artifact),
            flow: body.flow,
            name: body.name,
            parameters: body.parameters,
            description: body.description,
            version: body.version,
            tags: body.tags,
            schedule,
            paused: body.paused,
            pool: body.pool,
            queue: body.queue,
            limits: body.limits,
            grants: body.grants,
        })
        .await?;
    d.work_available();
    Ok(Json(json!(deployed)))
}

/// One deployment.
#[utoipa::path(
    get,
    path = "/deployments/{flow}/{name}",
    tag = "deployments",
    params(
        ("flow" = String, Path, description = "The flow"),
        ("name" = String, Path, description = "The deployment"),
    ),
    responses(
        (status = 200, body = Deployment),
        (status = 404, description = "No such deployment", body = ErrorBody),
        (status = 422, description = "Not a deployment name (a `/` in it)", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn deployment(State(d): State<AppState>, Path((flow, name)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(d.service.deployment(&format!("{flow}/{name}"))?)))
}

/// Deletes a deployment; its past runs stay in the history.
#[utoipa::path(
    delete,
    path = "/deployments/{flow}/{name}",
    tag = "deployments",
    params(
        ("flow" = String, Path, description = "The flow"),
        ("name" = String, Path, description = "The deployment"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such deployment", body = ErrorBody),
        (status = 422, description = "Not a deployment name (a `/` in it)", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn delete_deployment(
    State(d): State<AppState>,
    Path((flow, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    d.service.delete_deployment(&format!("{flow}/{name}"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pauses a deployment's schedule (its future scheduled runs are removed).
#[utoipa::path(
    post,
    path = "/deployments/{flow}/{name}/pause",
    tag = "deployments",
    params(
        ("flow" = String, Path, description = "The flow"),
        ("name" = String, Path, description = "The deployment"),
    ),
    responses(
        (status = 200, body = Deployment),
        (status = 404, description = "No such deployment", body = ErrorBody),
        (status = 422, description = "Not a deployment name (a `/` in it)", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn pause(State(d): State<AppState>, Path((flow, name)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(d.service.set_paused(&format!("{flow}/{name}"), true)?)))
}

/// Resumes a deployment's schedule.
#[utoipa::path(
    post,
    path = "/deployments/{flow}/{name}/resume",
    tag = "deployments",
    params(
        ("flow" = String, Path, description = "The flow"),
        ("name" = String, Path, description = "The deployment"),
    ),
    responses(
        (status = 200, body = Deployment),
        (status = 404, description = "No such deployment", body = ErrorBody),
        (status = 422, description = "Not a deployment name (a `/` in it)", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn resume(State(d): State<AppState>, Path((flow, name)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let deployment = d.service.set_paused(&format!("{flow}/{name}"), false)?;
    d.work_available();
    Ok(Json(json!(deployment)))
}

/// A run request: parameter overrides and an optional start time.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RunBody {
    /// Overrides of the deployment's default parameters.
    #[serde(default)]
    parameters: Map<String, Value>,
    /// When to start it; now when absent.
    start: Option<DateTime<Utc>>,
}

/// Creates a flow run of a deployment; an embedded or remote worker runs it.
#[utoipa::path(
    post,
    path = "/deployments/{flow}/{name}/runs",
    tag = "deployments",
    params(
        ("flow" = String, Path, description = "The flow"),
        ("name" = String, Path, description = "The deployment"),
    ),
    request_body(
        // A plain reference: an `Option` would document a JSON `null` body, which is refused.
        content = ref("#/components/schemas/RunBody"),
        content_type = "application/json",
        description = "Optional (an empty body runs with the deployment's defaults); read as JSON whatever its content type"
    ),
    responses(
        (status = 201, description = "Created (`Scheduled`)", body = FlowRunRow),
        (status = 404, description = "No such deployment, or its artifact is gone", body = ErrorBody),
        (status = 409, description = "The stored artifact is corrupt", body = ErrorBody),
        (status = 413, description = "Body too large", body = String, content_type = "text/plain"),
        (status = 422, description = "Invalid run request or parameters, or not a deployment name", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn create_run(
    State(d): State<AppState>,
    Path((flow, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    // The body is optional: no body runs with the deployment's defaults.
    let RunBody { parameters, start } = if body.iter().all(u8::is_ascii_whitespace) {
        RunBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("invalid run request: {e}")))?
    };
    let run = d.service.create_run(&format!("{flow}/{name}"), parameters, start).await?;
    d.work_available();
    Ok((StatusCode::CREATED, Json(json!(run))))
}

/// Which flow runs to list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct RunQuery {
    /// Only runs of this flow.
    flow: Option<String>,
    /// Only runs of this deployment, `flow/name`.
    deployment: Option<String>,
    /// Only runs in this state (any case).
    #[param(value_type = Option<StateType>)]
    state: Option<String>,
    /// At most this many, newest first (default 50, at most 1000).
    limit: Option<usize>,
}

/// Flow runs (not subflow runs), newest first.
#[utoipa::path(
    get,
    path = "/flow-runs",
    tag = "flow-runs",
    params(RunQuery),
    responses(
        (status = 200, body = Vec<FlowRunRow>),
        (status = 400, description = "Not a state (the API's error body), or a malformed or unknown query parameter (axum's plain-text rejection)", content(
            (ErrorBody = "application/json"),
            (String = "text/plain"),
        )),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn list_runs(State(d): State<AppState>, Query(q): Query<RunQuery>) -> ApiResult<Json<Value>> {
    let state = q
        .state
        .map(|s| {
            StateType::parse(&s).ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, format!("`{s}` is not a state")))
        })
        .transpose()?;
    let filter = RunFilter { flow: q.flow, deployment: q.deployment, state, limit: q.limit.unwrap_or(50).min(1000) };
    Ok(Json(json!(d.service.store.flow_runs(&filter)?)))
}

/// A flow run with its state history, task runs and subflow runs.
#[utoipa::path(
    get,
    path = "/flow-runs/{id}",
    tag = "flow-runs",
    params(("id" = String, Path, description = "The run's id, or its name (the newest run of that name)")),
    responses(
        (status = 200, body = FlowRunDetail),
        (status = 404, description = "No such flow run", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn inspect_run(State(d): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(d.service.inspect_run(&id)?))
}

/// Which log lines to return.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    /// Only the last this many lines.
    tail: Option<usize>,
}

/// A flow run's logs, its tasks' and subflows' included, oldest first.
#[utoipa::path(
    get,
    path = "/flow-runs/{id}/logs",
    tag = "flow-runs",
    params(("id" = String, Path, description = "The run's id or name"), LogQuery),
    responses(
        (status = 200, body = Vec<LogRow>),
        (status = 400, description = "A malformed or unknown query parameter (axum's plain-text rejection)", body = String, content_type = "text/plain"),
        (status = 404, description = "No such flow run", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn run_logs(
    State(d): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Json<Value>> {
    let run = d.service.store.flow_run(&id)?.ok_or_else(|| ServiceError::NotFound(format!("no flow run `{id}`")))?;
    Ok(Json(json!(d.service.store.logs(&run.id, q.tail)?)))
}

/// What a cancel request did.
#[derive(Serialize, ToSchema)]
struct CancelReply {
    /// Cancelled at once, cancelling (its runner stops it), or already ended.
    outcome: CancelOutcome,
}

/// Asks a flow run to stop: one not started ends `Cancelled`, a running one becomes `Cancelling`.
#[utoipa::path(
    post,
    path = "/flow-runs/{id}/cancel",
    tag = "flow-runs",
    params(("id" = String, Path, description = "The run's id or name")),
    responses(
        (status = 200, body = CancelReply),
        (status = 404, description = "No such flow run", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn cancel_run(State(d): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<CancelReply>> {
    let outcome = d.cancel(&id)?;
    Ok(Json(CancelReply { outcome }))
}

/// A worker's request for runs.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ClaimBody {
    /// At most this many runs (at least 1, at most 100).
    limit: usize,
    /// How long to wait for a run when none is due, in ms (at most 30 s).
    #[serde(default)]
    wait_ms: u64,
    /// The pool to take runs from.
    #[serde(default = "default_pool")]
    #[schema(default = "default")]
    pool: String,
    /// Only these queues of the pool (all when empty).
    #[serde(default)]
    queues: Vec<String>,
}

fn default_pool() -> String {
    crate::core::pool::DEFAULT_POOL.to_string()
}

/// Takes due runs for worker `name`, waiting up to `wait_ms` for one; also a heartbeat.
#[utoipa::path(
    post,
    path = "/workers/{name}/claim",
    tag = "workers",
    params(("name" = String, Path, description = "The worker")),
    request_body = ClaimBody,
    responses(
        (status = 200, description = "The runs taken (none when the wait ran out)", body = Vec<ClaimedRun>),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 404, description = "No such work pool", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "Invalid claim", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn claim(
    State(d): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<ClaimBody>,
) -> ApiResult<Json<Vec<ClaimedRun>>> {
    let wait = Duration::from_millis(body.wait_ms);
    Ok(Json(d.claim(&name, &body.pool, &body.queues, body.limit.min(100), wait).await?))
}

/// A worker's heartbeat.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct HeartbeatBody {
    /// Ids of the runs it is running.
    #[serde(default)]
    running: Vec<String>,
}

/// The runs a worker must stop.
#[derive(Serialize, ToSchema)]
struct HeartbeatReply {
    /// Ids of those of its runs that were asked to stop (`Cancelling`).
    cancel: Vec<String>,
}

/// Notes that worker `name` is alive; answers which of its runs must stop.
#[utoipa::path(
    post,
    path = "/workers/{name}/heartbeat",
    tag = "workers",
    params(("name" = String, Path, description = "The worker")),
    request_body = HeartbeatBody,
    responses(
        (status = 200, body = HeartbeatReply),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "Invalid heartbeat", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn heartbeat(
    State(d): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<HeartbeatBody>,
) -> ApiResult<Json<HeartbeatReply>> {
    Ok(Json(HeartbeatReply { cancel: d.heartbeat(&name, &body.running)? }))
}

/// Records what a remote worker's runs did (run creations, states, logs),
/// durably, in order. Refused (409) when the worker no longer holds a run
/// it reports on: the run was marked Crashed after its heartbeats stopped,
/// cancelled, or handed to another worker.
#[utoipa::path(
    post,
    path = "/workers/{name}/events",
    tag = "workers",
    params(("name" = String, Path, description = "The worker's name")),
    request_body = Vec<Event>,
    responses(
        (status = 204, description = "Recorded"),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 409, description = "The worker no longer holds a run it reports on", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "Not a list of events", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn record_events(
    State(d): State<AppState>,
    Path(name): Path<String>,
    Body(events): Body<Vec<Event>>,
) -> ApiResult<StatusCode> {
    let mut checked = std::collections::HashSet::new();
    for event in &events {
        let flow_run = match event {
            Event::FlowRunCreated(run) => run.parent.unwrap_or(run.id),
            Event::TaskRunCreated(run) => run.flow_run,
            Event::Log(log) => log.flow_run,
            Event::State(state) if state.kind == crate::core::record::RunKind::Flow => state.run,
            // A task's state is covered by its creation and its flow run's events.
            Event::State(_) => continue,
        };
        if checked.insert(flow_run)
            && let Some(reason) = d.service.store.lease_lost(&name, &flow_run.to_string())?
        {
            return Err(ApiError::new(StatusCode::CONFLICT, format!("lease lost: {reason}; stop running it")));
        }
    }
    let mut ended = false;
    for event in &events {
        d.service.store.record(event);
        ended |=
            matches!(event, Event::State(s) if s.kind == crate::core::record::RunKind::Flow && s.state.is_terminal());
    }
    d.service.store.flush().await;
    if ended {
        // A concurrency slot is free for a waiting run.
        d.work_available();
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Every work pool.
#[utoipa::path(
    get,
    path = "/work-pools",
    tag = "work-pools",
    responses(
        (status = 200, body = Vec<WorkPool>),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn list_pools(State(d): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(d.service.store.work_pools()?)))
}

/// A work pool to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PoolBody {
    /// Its name: letters, digits, `_`, `-` and `.`.
    #[schema(pattern = "^[A-Za-z0-9_.-]+$")]
    name: String,
    /// What it is for.
    description: Option<String>,
}

/// Creates a work pool, with its `default` queue.
#[utoipa::path(
    post,
    path = "/work-pools",
    tag = "work-pools",
    request_body = PoolBody,
    responses(
        (status = 201, body = WorkPool),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "Invalid name, or the pool exists", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn create_pool(State(d): State<AppState>, Body(body): Body<PoolBody>) -> ApiResult<(StatusCode, Json<Value>)> {
    Ok((StatusCode::CREATED, Json(json!(d.service.create_work_pool(&body.name, body.description)?))))
}

/// A work pool and its queues.
#[derive(Serialize, ToSchema)]
struct PoolDetail {
    /// The pool.
    pool: WorkPool,
    /// Its queues.
    queues: Vec<WorkQueue>,
}

/// A work pool with its queues.
#[utoipa::path(
    get,
    path = "/work-pools/{pool}",
    tag = "work-pools",
    params(("pool" = String, Path, description = "The pool")),
    responses(
        (status = 200, body = PoolDetail),
        (status = 404, description = "No such pool", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn inspect_pool(State(d): State<AppState>, Path(pool): Path<String>) -> ApiResult<Json<PoolDetail>> {
    let found = d.service.work_pool(&pool)?;
    Ok(Json(PoolDetail { pool: found, queues: d.service.store.work_queues(Some(&pool))? }))
}

/// Deletes a work pool and its queues; refused for `default` and for a pool a deployment uses.
#[utoipa::path(
    delete,
    path = "/work-pools/{pool}",
    tag = "work-pools",
    params(("pool" = String, Path, description = "The pool")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such pool", body = ErrorBody),
        (status = 422, description = "The default pool, or one in use", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn delete_pool(State(d): State<AppState>, Path(pool): Path<String>) -> ApiResult<StatusCode> {
    d.service.delete_work_pool(&pool)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pauses a work pool: it hands out nothing.
#[utoipa::path(
    post,
    path = "/work-pools/{pool}/pause",
    tag = "work-pools",
    params(("pool" = String, Path, description = "The pool")),
    responses(
        (status = 200, body = WorkPool),
        (status = 404, description = "No such pool", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn pause_pool(State(d): State<AppState>, Path(pool): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(d.service.set_work_pool_paused(&pool, true)?)))
}

/// Resumes a work pool.
#[utoipa::path(
    post,
    path = "/work-pools/{pool}/resume",
    tag = "work-pools",
    params(("pool" = String, Path, description = "The pool")),
    responses(
        (status = 200, body = WorkPool),
        (status = 404, description = "No such pool", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn resume_pool(State(d): State<AppState>, Path(pool): Path<String>) -> ApiResult<Json<Value>> {
    let resumed = d.service.set_work_pool_paused(&pool, false)?;
    d.work_available();
    Ok(Json(json!(resumed)))
}

/// A work pool's queues.
#[utoipa::path(
    get,
    path = "/work-pools/{pool}/queues",
    tag = "work-pools",
    params(("pool" = String, Path, description = "The pool")),
    responses(
        (status = 200, body = Vec<WorkQueue>),
        (status = 404, description = "No such pool", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn list_queues(State(d): State<AppState>, Path(pool): Path<String>) -> ApiResult<Json<Value>> {
    d.service.check_pool(&pool)?;
    Ok(Json(json!(d.service.store.work_queues(Some(&pool))?)))
}

/// Creates a queue in a work pool.
#[utoipa::path(
    post,
    path = "/work-pools/{pool}/queues",
    tag = "work-pools",
    params(("pool" = String, Path, description = "The pool")),
    request_body = QueueRequest,
    responses(
        (status = 201, body = WorkQueue),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 404, description = "No such pool", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "Invalid name, or the queue exists", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn create_queue(
    State(d): State<AppState>,
    Path(pool): Path<String>,
    Body(body): Body<QueueRequest>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    Ok((StatusCode::CREATED, Json(json!(d.service.create_work_queue(&pool, body)?))))
}

/// Deletes a queue.
#[utoipa::path(
    delete,
    path = "/work-pools/{pool}/queues/{name}",
    tag = "work-pools",
    params(
        ("pool" = String, Path, description = "The pool"),
        ("name" = String, Path, description = "The queue"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such pool or queue", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn delete_queue(State(d): State<AppState>, Path((pool, name)): Path<(String, String)>) -> ApiResult<StatusCode> {
    d.service.delete_work_queue(&pool, &name)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pauses a queue: it hands out nothing.
#[utoipa::path(
    post,
    path = "/work-pools/{pool}/queues/{name}/pause",
    tag = "work-pools",
    params(
        ("pool" = String, Path, description = "The pool"),
        ("name" = String, Path, description = "The queue"),
    ),
    responses(
        (status = 200, body = WorkQueue),
        (status = 404, description = "No such pool or queue", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn pause_queue(State(d): State<AppState>, Path((pool, name)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(d.service.set_work_queue_paused(&pool, &name, true)?)))
}

/// Resumes a queue.
#[utoipa::path(
    post,
    path = "/work-pools/{pool}/queues/{name}/resume",
    tag = "work-pools",
    params(
        ("pool" = String, Path, description = "The pool"),
        ("name" = String, Path, description = "The queue"),
    ),
    responses(
        (status = 200, body = WorkQueue),
        (status = 404, description = "No such pool or queue", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn resume_queue(State(d): State<AppState>, Path((pool, name)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let resumed = d.service.set_work_queue_paused(&pool, &name, false)?;
    d.work_available();
    Ok(Json(json!(resumed)))
}
