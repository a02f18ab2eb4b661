//! Artifacts: push (validated, stored once by digest), list, inspect, download (verified).

use super::*;

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
pub(super) async fn list_artifacts(State(d): State<AppState>, p: Principal) -> ApiResult<Json<Value>> {
    Ok(Json(json!(d.service.store.artifacts(Some(&p.tenant))?)))
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
        (status = 413, description = "Larger than the artifact limit", body = ErrorBody),
        (status = 422, description = "Not a flow component, or too large", body = ErrorBody),
        (status = 500, description = "A store failed", body = ErrorBody),
    )
)]
pub(super) async fn push_artifact(
    State(d): State<AppState>,
    p: Principal,
    bytes: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    p.require(Role::Deployer, "push artifacts")?;
    let pushed = d.service.push(&p.tenant, bytes.to_vec(), None).await?;
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
pub(super) async fn artifact(
    State(d): State<AppState>,
    p: Principal,
    Path(digest): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(d.service.artifact_meta(Some(&p.tenant), &digest)?)))
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
/// A worker of the operator fetches any tenant's artifacts (it runs them all).
pub(super) async fn artifact_content(
    State(d): State<AppState>,
    p: Principal,
    Path(digest): Path<String>,
) -> ApiResult<Response> {
    let scope = if p.is_operator() { None } else { Some(p.tenant.as_str()) };
    let meta = d.service.artifact_meta(scope, &digest)?;
    let digest = crate::artifact::Digest::parse(&meta.digest).map_err(ServiceError::Invalid)?;
    let bytes = d.service.artifacts.get(&digest).await.map_err(ServiceError::from)?;
    Ok(([(header::CONTENT_TYPE, "application/wasm")], bytes).into_response())
}
