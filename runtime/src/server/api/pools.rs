//! Work pools and their queues: create, list, inspect, pause, resume, delete.

use super::*;

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
pub(super) async fn list_pools(State(d): State<AppState>, p: Principal) -> ApiResult<Json<Value>> {
    Ok(Json(json!(d.service.store.work_pools(&p.tenant)?)))
}

/// A work pool to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PoolBody {
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
pub(super) async fn create_pool(
    State(d): State<AppState>,
    p: Principal,
    Body(body): Body<PoolBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    p.require(Role::Admin, "create work pools")?;
    Ok((StatusCode::CREATED, Json(json!(d.service.create_work_pool(&p.tenant, &body.name, body.description)?))))
}

/// A work pool and its queues.
#[derive(Serialize, ToSchema)]
pub(super) struct PoolDetail {
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
pub(super) async fn inspect_pool(
    State(d): State<AppState>,
    p: Principal,
    Path(pool): Path<String>,
) -> ApiResult<Json<PoolDetail>> {
    let found = d.service.work_pool(&p.tenant, &pool)?;
    Ok(Json(PoolDetail { pool: found, queues: d.service.store.work_queues(&p.tenant, Some(&pool))? }))
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
pub(super) async fn delete_pool(
    State(d): State<AppState>,
    p: Principal,
    Path(pool): Path<String>,
) -> ApiResult<StatusCode> {
    p.require(Role::Admin, "delete work pools")?;
    d.service.delete_work_pool(&p.tenant, &pool)?;
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
pub(super) async fn pause_pool(
    State(d): State<AppState>,
    p: Principal,
    Path(pool): Path<String>,
) -> ApiResult<Json<Value>> {
    p.require(Role::Admin, "pause work pools")?;
    Ok(Json(json!(d.service.set_work_pool_paused(&p.tenant, &pool, true)?)))
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
pub(super) async fn resume_pool(
    State(d): State<AppState>,
    p: Principal,
    Path(pool): Path<String>,
) -> ApiResult<Json<Value>> {
    p.require(Role::Admin, "resume work pools")?;
    let resumed = d.service.set_work_pool_paused(&p.tenant, &pool, false)?;
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
pub(super) async fn list_queues(
    State(d): State<AppState>,
    p: Principal,
    Path(pool): Path<String>,
) -> ApiResult<Json<Value>> {
    d.service.check_pool(&p.tenant, &pool)?;
    Ok(Json(json!(d.service.store.work_queues(&p.tenant, Some(&pool))?)))
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
pub(super) async fn create_queue(
    State(d): State<AppState>,
    p: Principal,
    Path(pool): Path<String>,
    Body(body): Body<QueueRequest>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    p.require(Role::Admin, "create work queues")?;
    Ok((StatusCode::CREATED, Json(json!(d.service.create_work_queue(&p.tenant, &pool, body)?))))
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
pub(super) async fn delete_queue(
    State(d): State<AppState>,
    p: Principal,
    Path((pool, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    p.require(Role::Admin, "delete work queues")?;
    d.service.delete_work_queue(&p.tenant, &pool, &name)?;
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
pub(super) async fn pause_queue(
    State(d): State<AppState>,
    p: Principal,
    Path((pool, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    p.require(Role::Admin, "pause work queues")?;
    Ok(Json(json!(d.service.set_work_queue_paused(&p.tenant, &pool, &name, true)?)))
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
pub(super) async fn resume_queue(
    State(d): State<AppState>,
    p: Principal,
    Path((pool, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    p.require(Role::Admin, "resume work queues")?;
    let resumed = d.service.set_work_queue_paused(&p.tenant, &pool, &name, false)?;
    d.work_available();
    Ok(Json(json!(resumed)))
}

/// The workers that asked this server for runs of the pool in the last
/// minute, with the queues they take runs from: who will run a new run.
#[utoipa::path(
    get,
    path = "/work-pools/{pool}/workers",
    tag = "work-pools",
    params(("pool" = String, Path, description = "The pool")),
    responses(
        (status = 200, body = Vec<crate::server::dispatch::PollingWorker>),
        (status = 404, description = "No such pool", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(super) async fn pool_workers(
    State(d): State<AppState>,
    p: Principal,
    Path(pool): Path<String>,
) -> ApiResult<Json<Vec<crate::server::dispatch::PollingWorker>>> {
    d.service.work_pool(&p.tenant, &pool)?;
    Ok(Json(d.polling_workers(&p.tenant, &pool)))
}
