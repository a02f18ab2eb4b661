//! `/api/v1/secrets`: set, list (names and dates only) and delete the
//! caller's tenant's secrets (admin tokens set and delete; deployers list).
//! No route returns a value: once set, a secret reaches only the sandbox of
//! a run whose deployment is granted it.

use super::{ApiResult, AppState, Body, ErrorBody};
use crate::core::tenant::{Principal, Role};
use crate::store::SecretInfo;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The secret routes, merged into `/api/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_secrets, set_secret)).routes(routes!(delete_secret))
}

/// A secret to set.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SecretBody {
    /// Its name, an environment variable name such as `API_TOKEN`.
    #[schema(pattern = "^[A-Za-z_][A-Za-z0-9_]*$")]
    name: String,
    /// Its value (at most 64 KiB); stored encrypted, never returned.
    value: String,
}

/// What setting a secret did.
#[derive(Serialize, ToSchema)]
struct SecretSet {
    /// The secret's name.
    name: String,
    /// True when it did not exist before.
    created: bool,
}

/// The secrets: names and dates, never values.
#[utoipa::path(
    get,
    path = "/secrets",
    tag = "secrets",
    responses(
        (status = 200, body = Vec<SecretInfo>),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn list_secrets(State(d): State<AppState>, p: Principal) -> ApiResult<Json<Vec<SecretInfo>>> {
    p.require(Role::Deployer, "list secrets")?;
    Ok(Json(d.service.secrets(&p.tenant)?))
}

/// Sets (creates or replaces) a secret.
#[utoipa::path(
    post,
    path = "/secrets",
    tag = "secrets",
    request_body = SecretBody,
    responses(
        (status = 200, body = SecretSet),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "Invalid name or value too large", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn set_secret(
    State(d): State<AppState>,
    p: Principal,
    Body(body): Body<SecretBody>,
) -> ApiResult<Json<SecretSet>> {
    p.require(Role::Admin, "set secrets")?;
    let created = d.service.set_secret(&p.tenant, &body.name, &body.value)?;
    Ok(Json(SecretSet { name: body.name, created }))
}

/// Deletes a secret; deployments granted it then fail to start, saying so.
#[utoipa::path(
    delete,
    path = "/secrets/{name}",
    tag = "secrets",
    params(("name" = String, Path, description = "The secret")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such secret", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
async fn delete_secret(State(d): State<AppState>, p: Principal, Path(name): Path<String>) -> ApiResult<StatusCode> {
    p.require(Role::Admin, "delete secrets")?;
    d.service.delete_secret(&p.tenant, &name)?;
    Ok(StatusCode::NO_CONTENT)
}
