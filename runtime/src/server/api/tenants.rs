//! Tenants (the operator's to manage) and tokens (each tenant's admins
//! manage their own; the operator any tenant's), and `whoami`.

use super::*;
use crate::core::tenant::{NewToken, Tenant, TenantPolicy, TokenInfo};
use crate::service::TokenRequest;

/// Every tenant (operator only).
#[utoipa::path(
    get,
    path = "/tenants",
    tag = "tenants",
    responses((status = 200, body = Vec<Tenant>), (status = 500, description = "The store failed", body = ErrorBody))
)]
pub(super) async fn list_tenants(State(d): State<AppState>, p: Principal) -> ApiResult<Json<Vec<Tenant>>> {
    p.require_operator("list tenants")?;
    Ok(Json(d.service.tenants()?))
}

/// A tenant to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TenantBody {
    /// Its name: letters, digits, `_`, `-` and `.`.
    #[schema(pattern = "^[A-Za-z0-9_.-]+$")]
    name: String,
    /// What its deployments may ask for, and its quotas.
    #[serde(default)]
    policy: TenantPolicy,
}

/// Creates a tenant with its own `default` work pool (operator only).
#[utoipa::path(
    post,
    path = "/tenants",
    tag = "tenants",
    request_body = TenantBody,
    responses(
        (status = 201, body = Tenant),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "Invalid name or policy, or the tenant exists", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(super) async fn create_tenant(
    State(d): State<AppState>,
    p: Principal,
    Body(body): Body<TenantBody>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    p.require_operator("create tenants")?;
    Ok((StatusCode::CREATED, Json(d.service.create_tenant(&body.name, body.policy)?)))
}

/// Deletes a tenant, its tokens and everything it owns (operator only; not while its runs run).
#[utoipa::path(
    delete,
    path = "/tenants/{name}",
    tag = "tenants",
    params(("name" = String, Path, description = "The tenant")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 422, description = "The default tenant, or one with running runs", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(super) async fn delete_tenant(
    State(d): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    p.require_operator("delete tenants")?;
    d.service.delete_tenant(&name)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces a tenant's policy (operator only).
#[utoipa::path(
    put,
    path = "/tenants/{name}/policy",
    tag = "tenants",
    params(("name" = String, Path, description = "The tenant")),
    request_body = TenantPolicy,
    responses(
        (status = 200, body = Tenant),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "Invalid policy", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(super) async fn set_tenant_policy(
    State(d): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    Body(policy): Body<TenantPolicy>,
) -> ApiResult<Json<Tenant>> {
    p.require_operator("change tenant policies")?;
    Ok(Json(d.service.set_tenant_policy(&name, policy)?))
}

/// Which tokens to list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenQuery {
    /// Only this tenant's (the operator sees every tenant's otherwise).
    tenant: Option<String>,
}

/// The tokens of the caller's tenant (an admin's), or of any tenant (the operator's); never their secrets.
#[utoipa::path(
    get,
    path = "/tokens",
    tag = "tenants",
    params(TokenQuery),
    responses((status = 200, body = Vec<TokenInfo>), (status = 500, description = "The store failed", body = ErrorBody))
)]
pub(super) async fn list_tokens(
    State(d): State<AppState>,
    p: Principal,
    Query(q): Query<TokenQuery>,
) -> ApiResult<Json<Vec<TokenInfo>>> {
    p.require(Role::Admin, "list tokens")?;
    let tenant = if p.is_operator() { q.tenant } else { Some(p.tenant.clone()) };
    Ok(Json(d.service.tokens(tenant.as_deref())?))
}

/// A token to make.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenBody {
    /// Its tenant: the caller's when absent; another only for the operator.
    tenant: Option<String>,
    /// What it may do.
    role: Role,
    /// A label for people.
    name: Option<String>,
    /// When it stops working.
    expires: Option<DateTime<Utc>>,
}

/// Makes a token; the answer holds its secret, which is never shown again.
#[utoipa::path(
    post,
    path = "/tokens",
    tag = "tenants",
    request_body = TokenBody,
    responses(
        (status = 201, body = NewToken),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "Invalid token request", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(super) async fn create_token(
    State(d): State<AppState>,
    p: Principal,
    Body(body): Body<TokenBody>,
) -> ApiResult<(StatusCode, Json<NewToken>)> {
    p.require(Role::Admin, "make tokens")?;
    let tenant = body.tenant.unwrap_or_else(|| p.tenant.clone());
    if tenant != p.tenant {
        p.require_operator("make tokens for another tenant")?;
    }
    let request = TokenRequest { tenant, role: body.role, name: body.name, expires: body.expires };
    Ok((StatusCode::CREATED, Json(d.service.create_token(request)?)))
}

/// Revokes a token at once.
#[utoipa::path(
    delete,
    path = "/tokens/{id}",
    tag = "tenants",
    params(("id" = String, Path, description = "The token's id (its public part)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such active token in the caller's tenant", body = ErrorBody),
        (status = 422, description = "The operator's last admin token: make another first", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(super) async fn revoke_token(
    State(d): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    p.require(Role::Admin, "revoke tokens")?;
    let tenant = (!p.is_operator()).then_some(p.tenant.as_str());
    d.service.revoke_token(tenant, &id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who the caller's token speaks for.
#[derive(Serialize, ToSchema)]
pub(super) struct WhoAmI {
    /// Its tenant.
    tenant: String,
    /// Its role.
    role: Role,
    /// Whether it manages the whole server.
    operator: bool,
}

/// The caller's tenant and role.
#[utoipa::path(get, path = "/whoami", tag = "tenants", responses((status = 200, body = WhoAmI)))]
pub(super) async fn whoami(p: Principal) -> Json<WhoAmI> {
    Json(WhoAmI { operator: p.is_operator(), tenant: p.tenant, role: p.role })
}
