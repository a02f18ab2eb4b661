//! The worker protocol: claim runs (long-poll), heartbeats, and the events of the runs they hold.

use super::*;

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
    let tenant = (!p.is_operator()).then_some(p.tenant.as_str());
    Ok(Json(d.claim(tenant, &worker, &body.pool, &body.queues, body.limit.min(100), wait).await?))
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
pub(super) async fn record_events(
    State(d): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    Body(mut events): Body<Vec<Event>>,
) -> ApiResult<StatusCode> {
    p.require(Role::Runner, "report run events as a worker")?;
    let name = worker_name(&p, &name);
    // Subflow runs created in this batch are checked through their parent.
    let mut parents = std::collections::HashMap::new();
    let mut task_flows = std::collections::HashMap::new();
    for event in &mut events {
        match event {
            Event::FlowRunCreated(run) => {
                // A run's tenant is the server's to say, never the worker's.
                run.tenant = None;
                if let Some(parent) = run.parent {
                    parents.insert(run.id, parent);
                }
            }
            Event::TaskRunCreated(run) => {
                task_flows.insert(run.id, run.flow_run);
            }
            _ => {}
        }
    }
    let root = |mut id| {
        while let Some(parent) = parents.get(&id) {
            id = *parent;
        }
        id
    };
    let mut checked = std::collections::HashSet::new();
    for event in &events {
        let flow_run = match event {
            Event::FlowRunCreated(run) => root(run.parent.unwrap_or(run.id)),
            Event::TaskRunCreated(run) => root(run.flow_run),
            Event::Log(log) => root(log.flow_run),
            Event::State(state) if state.kind == crate::core::record::RunKind::Flow => root(state.run),
            Event::State(state) => match task_flows.get(&state.run) {
                Some(flow_run) => root(*flow_run),
                None => {
                    let flow_run = d.service.store.task_flow_run(&state.run.to_string())?;
                    match flow_run.as_deref().and_then(crate::core::ids::RunId::parse) {
                        Some(flow_run) => root(flow_run),
                        None => {
                            return Err(ApiError::new(
                                StatusCode::CONFLICT,
                                format!("there is no task run {}; report its creation first", state.run),
                            ));
                        }
                    }
                }
            },
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
