//! The HTTP JSON API under `/api/v1`: one handler per service call, the
//! same errors everywhere (`{"error": {"status", "message"}}`), and a body
//! limit per route.

use super::dispatch::{ClaimedRun, Dispatch};
use crate::core::deployment::Limits;
use crate::core::record::{Event, Recorder};
use crate::core::schedule::Schedule;
use crate::core::state::StateType;
use crate::service::{ArtifactSource, DeployRequest, ServiceError};
use crate::store::{RunFilter, StateStore};
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Largest JSON body accepted.
pub const MAX_JSON_BYTES: usize = 4 << 20;

type AppState = Arc<Dispatch>;

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
        let body = json!({ "error": { "status": self.status.as_u16(), "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

/// A JSON body whose rejections use the API's error shape.
pub struct Body<T>(T);

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

type ApiResult<T> = Result<T, ApiError>;

/// The API's routes.
pub fn router(dispatch: Arc<Dispatch>) -> Router {
    let api = Router::new()
        .route("/health", get(|| async { Json(json!({ "status": "ok" })) }))
        .route(
            "/artifacts",
            get(list_artifacts)
                .post(push_artifact)
                .layer(DefaultBodyLimit::max(crate::service::MAX_ARTIFACT_BYTES + 1)),
        )
        .route("/artifacts/{digest}", get(artifact))
        .route("/artifacts/{digest}/content", get(artifact_content))
        .route("/deployments", get(list_deployments).post(deploy))
        .route("/deployments/{flow}/{name}", get(deployment).delete(delete_deployment))
        .route("/deployments/{flow}/{name}/pause", post(pause))
        .route("/deployments/{flow}/{name}/resume", post(resume))
        .route("/deployments/{flow}/{name}/runs", post(create_run))
        .route("/flow-runs", get(list_runs))
        .route("/flow-runs/{id}", get(inspect_run))
        .route("/flow-runs/{id}/logs", get(run_logs))
        .route("/flow-runs/{id}/cancel", post(cancel_run))
        .route("/work-pools", get(list_pools).post(create_pool))
        .route("/work-pools/{pool}", get(inspect_pool).delete(delete_pool))
        .route("/work-pools/{pool}/pause", post(pause_pool))
        .route("/work-pools/{pool}/resume", post(resume_pool))
        .route("/work-pools/{pool}/queues", get(list_queues).post(create_queue))
        .route("/work-pools/{pool}/queues/{name}", axum::routing::delete(delete_queue))
        .route("/work-pools/{pool}/queues/{name}/pause", post(pause_queue))
        .route("/work-pools/{pool}/queues/{name}/resume", post(resume_queue))
        .route("/workers/{name}/claim", post(claim))
        .route("/workers/{name}/heartbeat", post(heartbeat))
        .route("/events", post(record_events))
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES));
    Router::new()
        .nest("/api/v1", api)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route; the API lives under /api/v1") })
        .with_state(dispatch)
}

async fn list_artifacts(State(d): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(d.service.store.artifacts()?)))
}

async fn push_artifact(State(d): State<AppState>, bytes: Bytes) -> ApiResult<(StatusCode, Json<Value>)> {
    let pushed = d.service.push(bytes.to_vec(), None).await?;
    let status = if pushed.newly_stored { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!(pushed))))
}

async fn artifact(State(d): State<AppState>, Path(digest): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(d.service.artifact_meta(&digest)?)))
}

async fn artifact_content(State(d): State<AppState>, Path(digest): Path<String>) -> ApiResult<Response> {
    let meta = d.service.artifact_meta(&digest)?;
    let digest = crate::artifact::Digest::parse(&meta.digest).map_err(ServiceError::Invalid)?;
    let bytes = d.service.artifacts.get(&digest).await.map_err(ServiceError::from)?;
    Ok(([(header::CONTENT_TYPE, "application/wasm")], bytes).into_response())
}

async fn list_deployments(State(d): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(d.service.store.deployments()?)))
}

/// A deployment as the API takes it: the artifact by digest.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployBody {
    artifact: String,
    flow: String,
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    description: Option<String>,
    version: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    schedule: Option<Schedule>,
    #[serde(default)]
    paused: bool,
    pool: Option<String>,
    queue: Option<String>,
    #[serde(default)]
    limits: Limits,
}

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
        })
        .await?;
    d.work_available();
    Ok(Json(json!(deployed)))
}

async fn deployment(State(d): State<AppState>, Path((flow, name)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(d.service.deployment(&format!("{flow}/{name}"))?)))
}

async fn delete_deployment(
    State(d): State<AppState>,
    Path((flow, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    d.service.delete_deployment(&format!("{flow}/{name}"))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn pause(State(d): State<AppState>, Path((flow, name)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(d.service.set_paused(&format!("{flow}/{name}"), true)?)))
}

async fn resume(State(d): State<AppState>, Path((flow, name)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let deployment = d.service.set_paused(&format!("{flow}/{name}"), false)?;
    d.work_available();
    Ok(Json(json!(deployment)))
}

/// A run request: parameter overrides and an optional start time.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RunBody {
    #[serde(default)]
    parameters: Map<String, Value>,
    start: Option<DateTime<Utc>>,
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunQuery {
    flow: Option<String>,
    deployment: Option<String>,
    state: Option<String>,
    limit: Option<usize>,
}

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

async fn inspect_run(State(d): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(d.service.inspect_run(&id)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    tail: Option<usize>,
}

async fn run_logs(
    State(d): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Json<Value>> {
    let run = d.service.store.flow_run(&id)?.ok_or_else(|| ServiceError::NotFound(format!("no flow run `{id}`")))?;
    Ok(Json(json!(d.service.store.logs(&run.id, q.tail)?)))
}

async fn cancel_run(State(d): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let outcome = d.cancel(&id)?;
    Ok(Json(json!({ "outcome": outcome })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimBody {
    limit: usize,
    #[serde(default)]
    wait_ms: u64,
    #[serde(default = "default_pool")]
    pool: String,
    #[serde(default)]
    queues: Vec<String>,
}

fn default_pool() -> String {
    crate::core::pool::DEFAULT_POOL.to_string()
}

async fn claim(
    State(d): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<ClaimBody>,
) -> ApiResult<Json<Vec<ClaimedRun>>> {
    let wait = Duration::from_millis(body.wait_ms);
    Ok(Json(d.claim(&name, &body.pool, &body.queues, body.limit.min(100), wait).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeartbeatBody {
    #[serde(default)]
    running: Vec<String>,
}

async fn heartbeat(
    State(d): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<HeartbeatBody>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "cancel": d.heartbeat(&name, &body.running)? })))
}

async fn record_events(State(d): State<AppState>, Body(events): Body<Vec<Event>>) -> ApiResult<StatusCode> {
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

async fn list_pools(State(d): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(d.service.store.work_pools()?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolBody {
    name: String,
    description: Option<String>,
}

async fn create_pool(State(d): State<AppState>, Body(body): Body<PoolBody>) -> ApiResult<(StatusCode, Json<Value>)> {
    Ok((StatusCode::CREATED, Json(json!(d.service.create_work_pool(&body.name, body.description)?))))
}

async fn inspect_pool(State(d): State<AppState>, Path(pool): Path<String>) -> ApiResult<Json<Value>> {
    let found = d.service.work_pool(&pool)?;
    Ok(Json(json!({ "pool": found, "queues": d.service.store.work_queues(Some(&pool))? })))
}

async fn delete_pool(State(d): State<AppState>, Path(pool): Path<String>) -> ApiResult<StatusCode> {
    d.service.delete_work_pool(&pool)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn pause_pool(State(d): State<AppState>, Path(pool): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(d.service.set_work_pool_paused(&pool, true)?)))
}

async fn resume_pool(State(d): State<AppState>, Path(pool): Path<String>) -> ApiResult<Json<Value>> {
    let resumed = d.service.set_work_pool_paused(&pool, false)?;
    d.work_available();
    Ok(Json(json!(resumed)))
}

async fn list_queues(State(d): State<AppState>, Path(pool): Path<String>) -> ApiResult<Json<Value>> {
    d.service.check_pool(&pool)?;
    Ok(Json(json!(d.service.store.work_queues(Some(&pool))?)))
}

async fn create_queue(
    State(d): State<AppState>,
    Path(pool): Path<String>,
    Body(body): Body<crate::service::QueueRequest>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    Ok((StatusCode::CREATED, Json(json!(d.service.create_work_queue(&pool, body)?))))
}

async fn delete_queue(State(d): State<AppState>, Path((pool, name)): Path<(String, String)>) -> ApiResult<StatusCode> {
    d.service.delete_work_queue(&pool, &name)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn pause_queue(State(d): State<AppState>, Path((pool, name)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(d.service.set_work_queue_paused(&pool, &name, true)?)))
}

async fn resume_queue(State(d): State<AppState>, Path((pool, name)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let resumed = d.service.set_work_queue_paused(&pool, &name, false)?;
    d.work_available();
    Ok(Json(json!(resumed)))
}
