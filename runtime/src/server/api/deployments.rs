//! Deployments: create or update, list, inspect, pause, resume, delete, and runs from them.

use super::*;

/// Every deployment, by name.
#[utoipa::path(
    get,
    path = "/deployments",
    tag = "deployments",
    responses(
        (status = 200, body = Vec<Deployment>),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(super) async fn list_deployments(State(d): State<AppState>, p: Principal) -> ApiResult<Json<Value>> {
    Ok(Json(json!(d.service.store.deployments(Some(&p.tenant))?)))
}

/// A deployment as the API takes it: the artifact by digest.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DeployBody {
    /// The artifact holding the flow, `sha256:<hex>`, pushed before.
    #[schema(pattern = "^(sha256:)?[0-9a-fA-F]{64}$")]
    artifact: String,
    /// The flow in it; left out, the artifact's only flow.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_.-]+$")]
    flow: Option<String>,
    /// The deployment's name, unique per flow: letters, digits, `_`, `-` and `.`.
    #[schema(pattern = "^[A-Za-z0-9_.-]+$")]
    name: String,
    /// Default parameters, checked against the flow's schema.
    #[serde(default)]
    parameters: Map<String, Value>,
    /// What it is for.
    description: Option<String>,
    /// Its version label.
    version: Option<String>,
    /// Tags, for filtering and queue routing.
    #[serde(default)]
    tags: Vec<String>,
    /// When it runs by itself.
    schedule: Option<Schedule>,
    /// Whether its schedule starts paused.
    #[serde(default)]
    paused: bool,
    /// Work pool (`default` when absent).
    pool: Option<String>,
    /// Work queue in the pool.
    queue: Option<String>,
    /// Limits of its runs.
    #[serde(default)]
    limits: Limits,
    /// Capabilities granted to its runs (outbound HTTP hosts, secrets as environment variables),
    /// within the tenant's policy.
    #[serde(default)]
    grants: Grants,
    /// Made by `sluice serve`: only a worker claiming this deployment by name takes its runs,
    /// never its pool's workers.
    #[serde(default)]
    served: bool,
}

/// Creates or updates `flow/name` (idempotent: the same settings change nothing).
#[utoipa::path(
    post,
    path = "/deployments",
    tag = "deployments",
    request_body = DeployBody,
    responses(
        (status = 200, body = Deployed),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 404, description = "The artifact was not pushed here", body = ErrorBody),
        (status = 409, description = "The stored artifact is corrupt", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "Invalid deployment, schedule or parameters", body = ErrorBody),
        (status = 500, description = "A store failed", body = ErrorBody),
    )
)]
pub(super) async fn deploy(
    State(d): State<AppState>,
    p: Principal,
    Body(body): Body<DeployBody>,
) -> ApiResult<Json<Value>> {
    p.require(Role::Deployer, "deploy")?;
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
        .deploy(
            &p.tenant,
            DeployRequest {
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
                grants: body.grants,
                served: body.served,
            },
        )
        .await?;
    d.work_available();
    Ok(Json(json!(deployed)))
}

/// One deployment.
#[utoipa::path(
    get,
    path = "/deployments/{flow}/{name}",
    tag = "deployments",
    params(
        ("flow" = String, Path, description = "The flow"),
        ("name" = String, Path, description = "The deployment"),
    ),
    responses(
        (status = 200, body = DeploymentDetail),
        (status = 404, description = "No such deployment", body = ErrorBody),
        (status = 422, description = "Not a deployment name (a `/` in it)", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(super) async fn deployment(
    State(d): State<AppState>,
    p: Principal,
    Path((flow, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(d.service.deployment_detail(&p.tenant, &format!("{flow}/{name}"))?)))
}

/// Deletes a deployment; its past runs stay in the history.
#[utoipa::path(
    delete,
    path = "/deployments/{flow}/{name}",
    tag = "deployments",
    params(
        ("flow" = String, Path, description = "The flow"),
        ("name" = String, Path, description = "The deployment"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such deployment", body = ErrorBody),
        (status = 422, description = "Not a deployment name (a `/` in it)", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(super) async fn delete_deployment(
    State(d): State<AppState>,
    p: Principal,
    Path((flow, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    p.require(Role::Deployer, "delete deployments")?;
    d.service.delete_deployment(&p.tenant, &format!("{flow}/{name}"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pauses a deployment's schedule (its future scheduled runs are removed).
#[utoipa::path(
    post,
    path = "/deployments/{flow}/{name}/pause",
    tag = "deployments",
    params(
        ("flow" = String, Path, description = "The flow"),
        ("name" = String, Path, description = "The deployment"),
    ),
    responses(
        (status = 200, body = Deployment),
        (status = 404, description = "No such deployment", body = ErrorBody),
        (status = 422, description = "Not a deployment name (a `/` in it)", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(super) async fn pause(
    State(d): State<AppState>,
    p: Principal,
    Path((flow, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    p.require(Role::Deployer, "pause deployments")?;
    Ok(Json(json!(d.service.set_paused(&p.tenant, &format!("{flow}/{name}"), true)?)))
}

/// Resumes a deployment's schedule.
#[utoipa::path(
    post,
    path = "/deployments/{flow}/{name}/resume",
    tag = "deployments",
    params(
        ("flow" = String, Path, description = "The flow"),
        ("name" = String, Path, description = "The deployment"),
    ),
    responses(
        (status = 200, body = Deployment),
        (status = 404, description = "No such deployment", body = ErrorBody),
        (status = 422, description = "Not a deployment name (a `/` in it)", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(super) async fn resume(
    State(d): State<AppState>,
    p: Principal,
    Path((flow, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    p.require(Role::Deployer, "resume deployments")?;
    let deployment = d.service.set_paused(&p.tenant, &format!("{flow}/{name}"), false)?;
    d.work_available();
    Ok(Json(json!(deployment)))
}

/// A run request: parameter overrides and an optional start time.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::server) struct RunBody {
    /// Overrides of the deployment's default parameters.
    #[serde(default)]
    parameters: Map<String, Value>,
    /// When to start it; now when absent.
    start: Option<DateTime<Utc>>,
}

/// Creates a flow run of a deployment; an embedded or remote worker runs it.
#[utoipa::path(
    post,
    path = "/deployments/{flow}/{name}/runs",
    tag = "deployments",
    params(
        ("flow" = String, Path, description = "The flow"),
        ("name" = String, Path, description = "The deployment"),
        CreateRunQuery,
    ),
    request_body(
        // A plain reference: an `Option` would document a JSON `null` body, which is refused.
        content = ref("#/components/schemas/RunBody"),
        content_type = "application/json",
        description = "Optional (an empty body runs with the deployment's defaults); read as JSON whatever its content type"
    ),
    responses(
        (status = 201, description = "Created: the run as its creation left it (`Scheduled`, or `Running` when a worker took it at once); with `wait`, as it is when it ended or the wait ran out", body = FlowRunRow),
        (status = 400, description = "A malformed `wait`, or an unknown query parameter", body = ErrorBody),
        (status = 404, description = "No such deployment, or its artifact is gone", body = ErrorBody),
        (status = 409, description = "The stored artifact is corrupt", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Invalid run request or parameters, or not a deployment name", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(super) async fn create_run(
    State(d): State<AppState>,
    p: Principal,
    Path((flow, name)): Path<(String, String)>,
    Query(q): Query<CreateRunQuery>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    p.require(Role::Runner, "start runs")?;
    let wait = super::runs::long_poll(q.wait)?;
    // The body is optional: no body runs with the deployment's defaults.
    let RunBody { parameters, start } = if body.iter().all(u8::is_ascii_whitespace) {
        RunBody::default()
    } else {
        let value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("invalid run request: {e}")))?;
        documented::<RunBody>(value)?
    };
    let deployment = format!("{flow}/{name}");
    let span = crate::observe::traces::enabled().then(|| create_run_span(&headers, &p.tenant, &deployment)).flatten();
    let traceparent = span.as_ref().map(|span| crate::observe::traces::traceparent(&span.context()));
    let run = d.create_run(&p.tenant, &deployment, parameters, start, traceparent).await;
    if let Some(mut span) = span {
        if let Ok(run) = &run {
            span.set_attribute(crate::observe::traces::attribute("sluice.run.id", run.id.clone()));
        }
        let state = if run.is_ok() { StateType::Completed } else { StateType::Failed };
        span.end(state, run.as_ref().err().map(ToString::to_string).as_deref());
    }
    let run = run?;
    let Some(wait) = wait else { return Ok((StatusCode::CREATED, Json(json!(run)))) };
    let run = super::runs::until_ended(&d, &p.tenant, &run.id, wait).await?;
    Ok((StatusCode::CREATED, Json(json!(run))))
}

/// Whether a run's creation answers at once or when the run ends.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateRunQuery {
    /// Create, then answer as soon as the run is in a final state, or
    /// after this many seconds (at most 60) with the run as it is then, as
    /// Prefect's `run_deployment` waits: one request instead of a creation
    /// and a long poll. Default 0: answer once it is created.
    wait: Option<f64>,
}

/// The server's span of a run's creation: a child of the caller's
/// `traceparent` when it sent one (a malformed one is ignored, as W3C asks),
/// and the parent of the run's spans wherever it runs.
fn create_run_span(
    headers: &axum::http::HeaderMap,
    tenant: &str,
    deployment: &str,
) -> Option<crate::observe::traces::RunSpan> {
    use crate::observe::traces::{RunSpan, attribute, parse_traceparent};
    let parent = headers.get("traceparent").and_then(|v| v.to_str().ok()).and_then(parse_traceparent);
    let attributes =
        vec![attribute("sluice.deployment", deployment.to_string()), attribute("sluice.tenant", tenant.to_string())];
    RunSpan::start("create flow run".to_string(), parent.as_ref(), attributes)
}
