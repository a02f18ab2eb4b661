//! Flow runs: list, inspect with history, logs, cancel.

use super::*;

/// Which flow runs to list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct RunQuery {
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
        (status = 400, description = "Not a state, or a malformed or unknown query parameter", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(super) async fn list_runs(
    State(d): State<AppState>,
    p: Principal,
    Query(q): Query<RunQuery>,
) -> ApiResult<Json<Value>> {
    let state = q
        .state
        .map(|s| {
            StateType::parse(&s).ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, format!("`{s}` is not a state")))
        })
        .transpose()?;
    let filter = RunFilter {
        tenant: Some(p.tenant),
        flow: q.flow,
        deployment: q.deployment,
        state,
        limit: q.limit.unwrap_or(50).min(1000),
    };
    Ok(Json(json!(d.service.store.flow_runs(&filter)?)))
}

/// A flow run with its state history, task runs and subflow runs.
#[utoipa::path(
    get,
    path = "/flow-runs/{id}",
    tag = "flow-runs",
    params(("id" = String, Path, description = "The run's id, or its name (the newest run of that name)"), InspectQuery),
    responses(
        (status = 200, body = FlowRunDetail),
        (status = 400, description = "A malformed `wait`, or an unknown query parameter", body = ErrorBody),
        (status = 404, description = "No such flow run", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(super) async fn inspect_run(
    State(d): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    Query(q): Query<InspectQuery>,
) -> ApiResult<Json<Value>> {
    if let Some(wait) = long_poll(q.wait)? {
        until_ended(&d, &p.tenant, &id, wait).await?;
    }
    Ok(Json(d.service.inspect_run(&p.tenant, &id)?))
}

/// A request's `wait` (seconds, from 0 to 60), checked; none for 0 or none given.
pub(super) fn long_poll(wait: Option<f64>) -> ApiResult<Option<Duration>> {
    let wait = wait.unwrap_or(0.0);
    if !(0.0..=MAX_WAIT.as_secs_f64()).contains(&wait) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("`wait` is {wait}: give seconds from 0 to {}", MAX_WAIT.as_secs()),
        ));
    }
    Ok((wait > 0.0).then(|| Duration::from_secs_f64(wait)))
}

/// Whether `GET /flow-runs/{id}` answers at once or when the run ends.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct InspectQuery {
    /// A long poll: answer as soon as the run is in a final state, or after
    /// this many seconds (at most 60) if it is not; default 0, at once.
    wait: Option<f64>,
}

/// The longest `wait`: under common proxies' idle timeouts.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// How often a waiting request looks again when nothing woke it.
const WAIT_TICK: Duration = Duration::from_millis(500);

/// Returns when run `id` of `tenant` has ended, or after `wait`, with the
/// run as it last read it. Woken by the commits that concern the run (here
/// or, on PostgreSQL, announced by another server): no polling on the way.
pub(super) async fn until_ended(d: &AppState, tenant: &str, id: &str, wait: Duration) -> ApiResult<FlowRunRow> {
    let deadline = tokio::time::Instant::now() + wait;
    // Subscribed before the first read: an end committed in between still wakes it.
    let mut committed = d.service.store.subscribe();
    let mut other_servers = d.service.store.subscribe_other_servers();
    let mut run = d.service.flow_run(tenant, id)?;
    let mut known = std::collections::HashSet::from([run.id.clone()]);
    while !run.state.is_some_and(StateType::is_terminal) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        let concerns = |record: &Event, known: &mut std::collections::HashSet<String>| matches!(record, Event::State(state) if known.contains(&state.run.to_string()));
        crate::server::wakeups::until_news(
            &mut committed,
            &mut other_servers,
            &mut known,
            concerns,
            left.min(WAIT_TICK),
            std::future::pending(),
        )
        .await;
        run = d.service.flow_run(tenant, &run.id)?;
    }
    Ok(run)
}

/// Which log lines to return.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct LogQuery {
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
        (status = 400, description = "A malformed or unknown query parameter", body = ErrorBody),
        (status = 404, description = "No such flow run", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(super) async fn run_logs(
    State(d): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Json<Value>> {
    let run = d.service.flow_run(&p.tenant, &id)?;
    Ok(Json(json!(d.service.store.logs(&run.id, q.tail)?)))
}

/// What a cancel request did.
#[derive(Serialize, ToSchema)]
pub(super) struct CancelReply {
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
pub(super) async fn cancel_run(
    State(d): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<CancelReply>> {
    p.require(Role::Runner, "cancel runs")?;
    let run = d.service.flow_run(&p.tenant, &id)?;
    let outcome = d.cancel(&run.id)?;
    Ok(Json(CancelReply { outcome }))
}

/// Runs an ended, not completed, flow run again as its next attempt: it
/// resumes from its journal, replaying the tasks and subflows earlier
/// attempts completed instead of running them again.
#[utoipa::path(
    post,
    path = "/flow-runs/{id}/retry",
    tag = "flow-runs",
    params(("id" = String, Path, description = "The run's id or name")),
    responses(
        (status = 200, description = "Scheduled again, now", body = FlowRunRow),
        (status = 404, description = "No such flow run", body = ErrorBody),
        (status = 422, description = "The run completed, has not ended, or is a subflow run", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(super) async fn retry_run(
    State(d): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<FlowRunRow>> {
    p.require(Role::Runner, "retry runs")?;
    let run = d.service.retry_by_hand(&p.tenant, &id).await?;
    d.work_available();
    Ok(Json(run))
}

/// The input that resumes a run paused for input.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ResumeBody {
    /// The input, as JSON; it must fit the schema the flow paused with.
    #[schema(value_type = Object)]
    input: Value,
}

/// Resumes a run paused for input (`Paused`): the input is checked against
/// the pause's schema, and the run's next attempt, due now, replays the flow
/// from its journal up to the pause and goes on with the input.
#[utoipa::path(
    post,
    path = "/flow-runs/{id}/resume",
    tag = "flow-runs",
    params(("id" = String, Path, description = "The run's id or name")),
    request_body = ResumeBody,
    responses(
        (status = 200, description = "Resumed: scheduled again, now", body = FlowRunRow),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 404, description = "No such flow run", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "The run is not paused, or the input does not fit the pause's schema (the message names the field); the run stays paused", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(super) async fn resume_run(
    State(d): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    Body(body): Body<ResumeBody>,
) -> ApiResult<Json<FlowRunRow>> {
    p.require(Role::Runner, "resume runs")?;
    let run = d.service.resume(&p.tenant, &id, body.input).await?;
    d.work_available();
    Ok(Json(run))
}
