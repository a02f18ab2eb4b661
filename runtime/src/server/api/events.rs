//! The event log (`GET /api/v1/events`), webhooks and automations under
//! `/api/v1`, and the one route without a token: `POST /hooks/{id}`, where
//! the hook's id (unguessable) and its signature stand in for a token.

use super::{ApiError, ApiResult, AppState, Body, ErrorBody};
use crate::core::events::{Automation, EventRow, Webhook};
use crate::core::tenant::{Principal, Role};
use crate::service::{AutomationRequest, Delivery, EventQuery, WebhookCreated, WebhookRequest};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The routes under `/api/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_events))
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(delete_webhook))
        .routes(routes!(list_automations, create_automation))
        .routes(routes!(delete_automation))
}

/// The webhook delivery route, outside `/api/v1`.
pub fn hook_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(deliver_hook))
}

/// The caller's tenant's events, newest first: state changes of its runs,
/// events its flows emitted, webhook deliveries and automation firings.
#[utoipa::path(
    get,
    path = "/events",
    tag = "events",
    params(EventQuery),
    responses(
        (status = 200, body = Vec<EventRow>),
        (status = 422, description = "A limit out of range", body = ErrorBody),
    )
)]
async fn list_events(
    State(d): State<AppState>,
    p: Principal,
    Query(q): Query<EventQuery>,
) -> ApiResult<Json<Vec<EventRow>>> {
    p.require(Role::Viewer, "read events")?;
    Ok(Json(d.service.events(&p.tenant, q)?))
}

/// The caller's tenant's webhooks (their secrets are never shown).
#[utoipa::path(get, path = "/webhooks", tag = "events", responses((status = 200, body = Vec<Webhook>)))]
async fn list_webhooks(State(d): State<AppState>, p: Principal) -> ApiResult<Json<Vec<Webhook>>> {
    p.require(Role::Viewer, "list webhooks")?;
    Ok(Json(d.service.webhooks(&p.tenant)?))
}

/// Makes a webhook that starts a deployment; a generated secret is in the answer, once.
#[utoipa::path(
    post,
    path = "/webhooks",
    tag = "events",
    request_body = WebhookRequest,
    responses(
        (status = 201, body = WebhookCreated),
        (status = 404, description = "No such deployment", body = ErrorBody),
        (status = 422, description = "A bad map, path, rate or secret", body = ErrorBody),
    )
)]
async fn create_webhook(
    State(d): State<AppState>,
    p: Principal,
    Body(body): Body<WebhookRequest>,
) -> ApiResult<(StatusCode, Json<WebhookCreated>)> {
    p.require(Role::Deployer, "make webhooks")?;
    Ok((StatusCode::CREATED, Json(d.service.create_webhook(&p.tenant, body)?)))
}

/// Deletes a webhook: its URL answers 404 from then on.
#[utoipa::path(
    delete,
    path = "/webhooks/{id}",
    tag = "events",
    params(("id" = String, Path, description = "The webhook")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such webhook", body = ErrorBody))
)]
async fn delete_webhook(State(d): State<AppState>, p: Principal, Path(id): Path<String>) -> ApiResult<StatusCode> {
    p.require(Role::Deployer, "delete webhooks")?;
    d.service.delete_webhook(&p.tenant, &id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's tenant's automations.
#[utoipa::path(get, path = "/automations", tag = "events", responses((status = 200, body = Vec<Automation>)))]
async fn list_automations(State(d): State<AppState>, p: Principal) -> ApiResult<Json<Vec<Automation>>> {
    p.require(Role::Viewer, "list automations")?;
    Ok(Json(d.service.automations(&p.tenant)?))
}

/// Makes an automation.
#[utoipa::path(
    post,
    path = "/automations",
    tag = "events",
    request_body = AutomationRequest,
    responses(
        (status = 201, body = Automation),
        (status = 404, description = "No such deployment", body = ErrorBody),
        (status = 422, description = "A bad name, trigger or map, or the name is taken", body = ErrorBody),
    )
)]
async fn create_automation(
    State(d): State<AppState>,
    p: Principal,
    Body(body): Body<AutomationRequest>,
) -> ApiResult<(StatusCode, Json<Automation>)> {
    p.require(Role::Deployer, "make automations")?;
    Ok((StatusCode::CREATED, Json(d.service.create_automation(&p.tenant, body)?)))
}

/// Deletes an automation, by id or name.
#[utoipa::path(
    delete,
    path = "/automations/{id}",
    tag = "events",
    params(("id" = String, Path, description = "The automation's id or name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such automation", body = ErrorBody),
    )
)]
async fn delete_automation(State(d): State<AppState>, p: Principal, Path(id): Path<String>) -> ApiResult<StatusCode> {
    p.require(Role::Deployer, "delete automations")?;
    d.service.delete_automation(&p.tenant, &id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// A webhook delivery: starts the hook's deployment with parameters from
/// the JSON body. No token: the hook's id and, for a signed hook,
/// `X-Hub-Signature-256: sha256=<HMAC-SHA256(secret, body) in hex>` stand for one.
#[utoipa::path(
    post,
    path = "/hooks/{id}",
    tag = "events",
    security(()),
    params(("id" = String, Path, description = "The webhook's id")),
    request_body(
        content = Object,
        content_type = "application/json",
        description = "Any JSON object; read as JSON whatever its content type"
    ),
    responses(
        (status = 202, description = "A run was started (`run` is its id), or the delivery was a duplicate (`duplicate: true`)"),
        (status = 400, description = "The body is not a JSON object", body = ErrorBody),
        (status = 401, description = "A missing or wrong signature", body = ErrorBody),
        (status = 404, description = "No such webhook", body = ErrorBody),
        (status = 422, description = "The body does not give the deployment valid parameters", body = ErrorBody),
        (status = 429, description = "Over the hook's rate", body = ErrorBody),
    )
)]
async fn deliver_hook(
    State(d): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (outcome, event) = d.service.deliver(&id, header, &body).await;
    if let Some(event) = event {
        let dispatch = d.clone();
        // Automations on deliveries are evaluated after the answer is on its way.
        tokio::spawn(async move { crate::server::automations::react(&dispatch, &event).await });
    }
    match outcome {
        Delivery::Started(run) => {
            d.work_available();
            Ok((StatusCode::ACCEPTED, Json(json!({"run": run.id, "duplicate": false}))))
        }
        Delivery::Duplicate(key) => Ok((StatusCode::ACCEPTED, Json(json!({"duplicate": true, "dedupe_key": key})))),
        Delivery::Refused(status, reason) => {
            Err(ApiError::new(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), reason))
        }
    }
}
