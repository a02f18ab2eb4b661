//! The HTTP JSON API under `/api/v1`: one handler per service call, the
//! same errors everywhere (`{"error": {"status", "message"}}`), and a body
//! limit per route. Each handler carries its OpenAPI description
//! (`#[utoipa::path]`); the router collects them, so the document served at
//! `/api/openapi.json` lists exactly the routes served.
//!
//! Every route but the health check needs a token (`Authorization: Bearer`):
//! its tenant scopes what the call sees (another tenant's object is 404, as
//! if it did not exist) and its role what it may change (403).

mod artifacts;
mod contract;
mod deployments;
mod events;
mod follow;
mod pools;
mod runs;
mod secrets;
mod tenants;
mod workers;

pub(super) use deployments::RunBody;

use artifacts::*;
use deployments::*;
use follow::*;
use pools::*;
use runs::*;
use tenants::*;
use workers::*;

use super::dispatch::{Asked, ClaimedRun, Dispatch};
use super::openapi::{FlowRunDetail, WasmComponent};
use crate::core::deployment::{ArtifactMeta, Deployment, Grants, Limits};
use crate::core::pool::{WorkPool, WorkQueue};
use crate::core::record::Event;
use crate::core::schedule::Schedule;
use crate::core::state::StateType;
use crate::core::tenant::{Denied, Principal, Role};
use crate::service::{
    ArtifactSource, AuthError, DeployRequest, Deployed, DeploymentDetail, Pushed, QueueRequest, ServiceError,
};
use crate::store::{CancelOutcome, FlowRunRow, LogRow, RunFilter};
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
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
            ServiceError::Denied(_) => StatusCode::FORBIDDEN,
            ServiceError::Artifact(crate::artifact::StoreError::NotFound(_)) => StatusCode::NOT_FOUND,
            ServiceError::Artifact(crate::artifact::StoreError::Corrupt { .. }) => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, err.to_string())
    }
}

impl From<Denied> for ApiError {
    fn from(err: Denied) -> Self {
        Self::new(StatusCode::FORBIDDEN, err.0)
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Store(err) => err.into(),
            other => Self::new(StatusCode::UNAUTHORIZED, other.to_string()),
        }
    }
}

/// Every authenticated route starts here: the bearer token becomes the
/// caller's tenant and role, or the request ends with 401.
impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(header::AUTHORIZATION).ok_or(AuthError::Missing)?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or(AuthError::Invalid(" (send it as `Authorization: Bearer <token>`)"))?;
        Ok(state.service.authenticate(token.trim())?)
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

/// A JSON body, checked against its documented schema before it is read,
/// whose rejections use the API's error shape.
pub struct Body<T>(T);

impl<T: serde::de::DeserializeOwned + utoipa::PartialSchema + 'static, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<Value>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Body(documented(value)?)),
            Err(rejection) => Err(ApiError::new(rejection_status(&rejection), rejection.body_text())),
        }
    }
}

/// Reads `value` as `T` once it fits `T`'s documented schema (422 otherwise).
fn documented<T: serde::de::DeserializeOwned + utoipa::PartialSchema + 'static>(value: Value) -> ApiResult<T> {
    contract::check::<T>(&value).map_err(|problems| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("the body does not fit the API's schema: {problems}"))
    })?;
    serde_json::from_value(value)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("invalid body: {e}")))
}

/// Any error answered under `/api` in the API's JSON shape: axum's own
/// rejections (a malformed path or query string, a body over its limit,
/// a method the route does not serve) are plain text otherwise.
async fn json_errors(request: Request, next: axum::middleware::Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = match text.trim() {
        "" => parts.status.canonical_reason().unwrap_or("error").to_string(),
        text => text.to_string(),
    };
    let mut json = ApiError::new(status, message).into_response();
    // Keep what the rejection said besides its body (`Allow` on a 405).
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            json.headers_mut().insert(name.clone(), value.clone());
        }
    }
    json
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

/// The API's routes, and the OpenAPI document describing them at `/api/openapi.json`.
pub fn router(dispatch: Arc<Dispatch>) -> Router {
    let (router, mut document) = OpenApiRouter::with_openapi(super::openapi::base())
        .nest("/api/v1", api_routes())
        .merge(events::hook_routes().layer(DefaultBodyLimit::max(MAX_JSON_BYTES)))
        .split_for_parts();
    super::openapi::add_common_responses(&mut document);
    let document = super::openapi::finish(&document);
    contract::install(&document);
    router
        .route(super::openapi::DOCUMENT_PATH, super::openapi::serve(&document))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route; the API lives under /api/v1") })
        .layer(axum::middleware::from_fn(json_errors))
        .with_state(dispatch.clone())
        .merge(super::ui::router(dispatch))
        .layer(axum::middleware::from_fn(super::ui::security_headers))
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
        .routes(routes!(follow_logs))
        .routes(routes!(cancel_run))
        .routes(routes!(retry_run))
        .routes(routes!(resume_run))
        .routes(routes!(list_pools, create_pool))
        .routes(routes!(inspect_pool, delete_pool))
        .routes(routes!(pool_workers))
        .routes(routes!(pause_pool))
        .routes(routes!(resume_pool))
        .routes(routes!(list_queues, create_queue))
        .routes(routes!(delete_queue))
        .routes(routes!(pause_queue))
        .routes(routes!(resume_queue))
        .routes(routes!(claim))
        .routes(routes!(heartbeat))
        .routes(routes!(record_events))
        .routes(routes!(worker_started))
        .routes(routes!(worker_stopped))
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(delete_tenant))
        .routes(routes!(set_tenant_policy))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(whoami))
        .merge(secrets::routes())
        .merge(events::routes())
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES))
}

/// The server's answer to a health check.
#[derive(Serialize, ToSchema)]
pub(super) struct Health {
    /// `ok`, or `unhealthy` when the state store cannot be read or written.
    #[schema(example = "ok")]
    status: &'static str,
    /// What is wrong, when unhealthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Whether the server is up and its state store answers: a read of the
/// store, and whether its latest commit failed. A load balancer takes a
/// server that answers 503 out of rotation until it recovers.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    responses(
        (status = 200, description = "Serving", body = Health),
        (status = 503, description = "The state store cannot be read or written", body = Health),
    )
)]
pub(super) async fn health(State(d): State<AppState>) -> (StatusCode, Json<Health>) {
    let store = &d.service.store;
    let problem = match store.next_due() {
        Err(err) => Some(err.to_string()),
        Ok(_) => store.failure(),
    };
    match problem {
        None => (StatusCode::OK, Json(Health { status: "ok", reason: None })),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, Json(Health { status: "unhealthy", reason: Some(reason) })),
    }
}
