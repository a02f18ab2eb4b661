//! The worker protocol: claim runs (long-poll), heartbeats, and the events of the runs they hold.

use super::*;
use crate::service::Refusal;

/// A worker's request for runs.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ClaimBody {
    /// At most this many runs (at least 1; more than 100 is served as 100).
    #[schema(minimum = 1)]
    limit: usize,
    /// How long to wait for a run when none is due, in ms (at most 30 s).
    #[serde(default)]
    #[schema(maximum = 30000)]
    wait_ms: u64,
    /// The pool to take runs from.
    #[serde(default = "default_pool")]
    #[schema(default = "default")]
    pool: String,
    /// Only these queues of the pool (all when empty).
    #[serde(default)]
    queues: Vec<String>,
    /// Instead of a pool: the runs of this served deployment (`flow/name`, of the token's
    /// tenant), for the `sluice serve` process serving it; no pool's worker takes them.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")]
    deployment: Option<String>,
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
pub(super) async fn claim(
    State(d): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    Body(body): Body<ClaimBody>,
) -> ApiResult<Json<Vec<ClaimedRun>>> {
    p.require(Role::Runner, "take runs as a worker")?;
    let wait = Duration::from_millis(body.wait_ms);
    let worker = worker_name(&p, &name);
    let (tenant, asked) = match &body.deployment {
        // Even the operator's serving process claims in its own tenant, where it deployed.
        Some(deployment) => (Some(p.tenant.as_str()), Asked::Deployment(deployment)),
        None => {
            let tenant = (!p.is_operator()).then_some(p.tenant.as_str());
            (tenant, Asked::Pool { pool: &body.pool, queues: &body.queues })
        }
    };
    Ok(Json(d.claim(tenant, &worker, asked, body.limit.min(100), wait).await?))
}

/// The name a worker is known by: a tenant's workers are prefixed with
/// it, so no tenant can speak for another's (or the operator's) worker.
fn worker_name(p: &Principal, name: &str) -> String {
    if p.is_operator() { name.to_string() } else { format!("{}:{name}", p.tenant) }
}

/// A worker's heartbeat.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct HeartbeatBody {
    /// Ids of the runs it is running.
    #[serde(default)]
    running: Vec<String>,
}

/// The runs a worker must stop.
#[derive(Serialize, ToSchema)]
pub(super) struct HeartbeatReply {
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
pub(super) async fn heartbeat(
    State(d): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    Body(body): Body<HeartbeatBody>,
) -> ApiResult<Json<HeartbeatReply>> {
    p.require(Role::Runner, "send worker heartbeats")?;
    Ok(Json(HeartbeatReply { cancel: d.heartbeat(&worker_name(&p, &name), &body.running)? }))
}

/// Records what a remote worker's runs did (run creations, states, logs),
/// durably, in order. The whole batch is refused (409), and nothing of it
/// written, when any event touches a run the store says this worker does not
/// hold: another tenant's, one that ended (say, marked Crashed after its
/// heartbeats stopped, or cancelled), one handed to another worker, or an
/// existing id reported as created.
#[utoipa::path(
    post,
    path = "/workers/{name}/events",
    tag = "workers",
    params(("name" = String, Path, description = "The worker's name")),
    request_body = Vec<Event>,
    responses(
        (status = 204, description = "Recorded"),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 409, description = "The worker does not hold a run it reports on; nothing was recorded", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "Not a list of events", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store could not commit the batch; nothing was recorded: send it again", body = ErrorBody),
    )
)]
pub(super) async fn record_events(
    State(d): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    Body(mut events): Body<Vec<Event>>,
) -> ApiResult<StatusCode> {
    p.require(Role::Runner, "report run events as a worker")?;
    let name = worker_name(&p, &name);
    let tenant = (!p.is_operator()).then_some(p.tenant.as_str());
    match crate::service::check_report(d.service.store.as_ref(), &name, tenant, &mut events) {
        Ok(()) => {}
        Err(Refusal::NotHeld(message)) => return Err(ApiError::new(StatusCode::CONFLICT, message)),
        Err(Refusal::Store(err)) => return Err(err.into()),
    }
    let ended: Vec<String> = events
        .iter()
        .filter_map(|event| match event {
            // A run paused for input frees its slot too.
            Event::State(s)
                if s.kind == crate::core::record::RunKind::Flow
                    && (s.state.is_terminal() || s.state == crate::core::state::StateType::Paused) =>
            {
                Some(s.run.to_string())
            }
            _ => None,
        })
        .collect();
    // Acknowledged only once committed: the worker sends the batch again otherwise.
    d.service.store.record_durably(&events).map_err(|err| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{err}; nothing of this batch was recorded, send it again"),
        )
    })?;
    if !ended.is_empty() {
        // A run that failed may be retried by its deployment's flow retries.
        for id in &ended {
            d.service.retry_ended(id, chrono::Utc::now())?;
        }
        // A concurrency slot is free for a waiting run.
        d.work_available();
    }
    Ok(StatusCode::NO_CONTENT)
}

/// What a worker's start did to the runs it held before.
#[derive(Serialize, ToSchema)]
pub(super) struct StartedReply {
    /// Runs the worker held when it stopped: now `Crashed`, and scheduled again where their deployments allow.
    crashed: Vec<String>,
}

/// Says that worker `name` has (re)started and so runs nothing yet: runs it
/// held end `Crashed` at once, instead of after the heartbeat timeout, and
/// are retried from their journals where their deployments say so.
#[utoipa::path(
    post,
    path = "/workers/{name}/started",
    tag = "workers",
    params(("name" = String, Path, description = "The worker")),
    responses(
        (status = 200, body = StartedReply),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(super) async fn worker_started(
    State(d): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<StartedReply>> {
    p.require(Role::Runner, "start as a worker")?;
    let worker = worker_name(&p, &name);
    Ok(Json(StartedReply { crashed: d.worker_started(&worker)? }))
}

/// Says goodbye for worker `name`, stopping (SIGTERM): it shows offline at
/// once, and the runs it still held end `Crashed` and retry (from their
/// journals) where their deployments say so, without the heartbeat timeout.
#[utoipa::path(
    post,
    path = "/workers/{name}/stopped",
    tag = "workers",
    params(("name" = String, Path, description = "The worker")),
    responses(
        (status = 200, body = StartedReply),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(super) async fn worker_stopped(
    State(d): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<StartedReply>> {
    p.require(Role::Runner, "stop as a worker")?;
    let worker = worker_name(&p, &name);
    Ok(Json(StartedReply { crashed: d.worker_stopped(&worker)? }))
}
