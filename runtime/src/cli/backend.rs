//! Where the CLI's commands go: the embedded service on this machine, or a
//! server when `SLUICE_API_URL` names one. Both answer the same calls with
//! the same types, so every command behaves the same either way.

use super::{CliError, context};
use crate::client::ApiClient;
use crate::core::deployment::{ArtifactMeta, Deployment};
use crate::core::pool::{WorkPool, WorkQueue};
use crate::service::{ArtifactSource, DeployRequest, Deployed, Pushed, QueueRequest, Service, ServiceError};
use crate::store::{CancelOutcome, FlowRunRow, LogRow, RunFilter};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// The embedded service or a server.
pub enum Backend {
    /// This machine's SQLite and artifact folder.
    Local(Arc<Service>),
    /// A `sluice server`.
    Remote(ApiClient),
}

/// The backend the environment asks for: `SLUICE_API_URL`, else the saved
/// profile (`sluice login`), else the embedded store.
pub fn backend() -> std::result::Result<Backend, CliError> {
    match server()? {
        Some((url, token)) => Ok(Backend::Remote(ApiClient::new(&url, token.as_deref())?)),
        None => Ok(Backend::Local(Arc::new(context::service()?))),
    }
}

/// The server the environment names and the token sent to it:
/// `SLUICE_API_URL` (and `SLUICE_API_TOKEN`), else the saved profile; `None`
/// for the embedded store.
pub fn server() -> std::result::Result<Option<(String, Option<String>)>, CliError> {
    let profile = super::profile::load()?.unwrap_or_default();
    let from_env = |name: &str| std::env::var(name).ok().filter(|value| !value.trim().is_empty());
    let url = from_env("SLUICE_API_URL").or(profile.api_url);
    let token = from_env("SLUICE_API_TOKEN").or(profile.token);
    Ok(url.map(|url| (url, token)))
}

/// How often a followed log is read again with no server (another process writes the store).
const LOCAL_FOLLOW_PERIOD: std::time::Duration = std::time::Duration::from_millis(250);

/// The embedded path acts for the operator, in the default tenant.
pub(super) const LOCAL: &str = crate::core::tenant::DEFAULT_TENANT;

type Answer<T> = std::result::Result<T, ServiceError>;

fn read(path: &std::path::Path) -> Answer<Vec<u8>> {
    std::fs::read(path).map_err(|e| ServiceError::Invalid(format!("cannot read `{}`: {e}", path.display())))
}

impl Backend {
    /// Stores a component.
    pub async fn push(&self, bytes: Vec<u8>, progress: Option<&(dyn Fn(u64, u64) + Sync)>) -> Answer<Pushed> {
        match self {
            Backend::Local(service) => service.push(LOCAL, bytes, progress).await,
            Backend::Remote(api) => api.push(bytes).await,
        }
    }

    /// Every pushed artifact.
    pub async fn artifacts(&self) -> Answer<Vec<ArtifactMeta>> {
        match self {
            Backend::Local(service) => Ok(service.store.artifacts(Some(LOCAL))?),
            Backend::Remote(api) => api.artifacts().await,
        }
    }

    /// One artifact.
    pub async fn artifact(&self, digest: &str) -> Answer<ArtifactMeta> {
        match self {
            Backend::Local(service) => service.artifact_meta(Some(LOCAL), digest),
            Backend::Remote(api) => api.artifact(digest).await,
        }
    }

    /// Makes or replaces an automation by name (a `triggers:` entry).
    pub async fn put_automation(
        &self,
        request: crate::service::AutomationRequest,
    ) -> Answer<crate::core::events::Automation> {
        match self {
            Backend::Local(service) => service.put_automation(LOCAL, request),
            Backend::Remote(api) => {
                match api.delete_automation(&request.name).await {
                    Ok(()) | Err(ServiceError::NotFound(_)) => {}
                    Err(err) => return Err(err),
                }
                api.create_automation(&request).await
            }
        }
    }

    /// Creates or updates deployments: every one is checked before any is written.
    pub async fn deploy_all(&self, requests: Vec<DeployRequest>) -> Answer<Vec<Deployed>> {
        match self {
            Backend::Local(service) => {
                let mut prepared = Vec::new();
                for request in requests {
                    let name = match &request.flow {
                        Some(flow) => format!("{flow}/{}", request.name),
                        None => request.name.clone(),
                    };
                    prepared.push(service.prepare_deploy(LOCAL, request).await.map_err(|e| prefixed(&name, e))?);
                }
                prepared.into_iter().map(|p| service.commit_deploy(p)).collect()
            }
            Backend::Remote(api) => {
                let mut bodies = Vec::new();
                for request in requests {
                    let name = match &request.flow {
                        Some(flow) => format!("{flow}/{}", request.name),
                        None => request.name.clone(),
                    };
                    let digest = match &request.artifact {
                        ArtifactSource::File(path) => {
                            api.push(read(path)?).await.map_err(|e| prefixed(&name, e))?.artifact.digest
                        }
                        ArtifactSource::Digest(digest) => digest.clone(),
                    };
                    bodies.push((name, deploy_body(&request, &digest)));
                }
                let mut deployed = Vec::new();
                for (name, body) in bodies {
                    deployed.push(api.deploy(&body).await.map_err(|e| prefixed(&name, e))?);
                }
                Ok(deployed)
            }
        }
    }

    /// Every deployment.
    pub async fn deployments(&self) -> Answer<Vec<Deployment>> {
        match self {
            Backend::Local(service) => Ok(service.store.deployments(Some(LOCAL))?),
            Backend::Remote(api) => api.deployments().await,
        }
    }

    /// One deployment with its flow's parameter schema.
    pub async fn deployment_detail(&self, full_name: &str) -> Answer<crate::service::DeploymentDetail> {
        match self {
            Backend::Local(service) => service.deployment_detail(LOCAL, full_name),
            Backend::Remote(api) => {
                crate::core::deployment::split_full_name(full_name).map_err(ServiceError::Invalid)?;
                api.deployment_detail(full_name).await
            }
        }
    }

    /// Pauses or resumes a deployment.
    pub async fn set_paused(&self, full_name: &str, paused: bool) -> Answer<Deployment> {
        match self {
            Backend::Local(service) => service.set_paused(LOCAL, full_name, paused),
            Backend::Remote(api) => api.set_paused(full_name, paused).await,
        }
    }

    /// Deletes a deployment.
    pub async fn delete_deployment(&self, full_name: &str) -> Answer<()> {
        match self {
            Backend::Local(service) => service.delete_deployment(LOCAL, full_name),
            Backend::Remote(api) => api.delete_deployment(full_name).await,
        }
    }

    /// Creates a run of a deployment.
    pub async fn create_run(
        &self,
        full_name: &str,
        overrides: Map<String, Value>,
        start: Option<DateTime<Utc>>,
    ) -> Answer<FlowRunRow> {
        match self {
            Backend::Local(service) => service.create_run(LOCAL, full_name, overrides, start).await,
            Backend::Remote(api) => api.create_run(full_name, overrides, start).await,
        }
    }

    /// Flow runs, newest first.
    pub async fn flow_runs(&self, filter: &RunFilter) -> Answer<Vec<FlowRunRow>> {
        match self {
            Backend::Local(service) => {
                Ok(service.store.flow_runs(&RunFilter { tenant: Some(LOCAL.into()), ..filter.clone() })?)
            }
            Backend::Remote(api) => api.flow_runs(filter).await,
        }
    }

    /// A run with its history, task runs and subflows.
    pub async fn inspect_run(&self, id_or_name: &str) -> Answer<Value> {
        match self {
            Backend::Local(service) => service.inspect_run(LOCAL, id_or_name),
            Backend::Remote(api) => api.inspect_run(id_or_name).await,
        }
    }

    /// A run's logs.
    pub async fn logs(&self, id_or_name: &str, tail: Option<usize>) -> Answer<Vec<LogRow>> {
        match self {
            Backend::Local(service) => {
                let run = service.flow_run(LOCAL, id_or_name)?;
                Ok(service.store.logs(&run.id, tail)?)
            }
            Backend::Remote(api) => api.logs(id_or_name, tail).await,
        }
    }

    /// Follows a run's logs until it ends: from the server's stream, or
    /// (no server) by reading the store as another process writes it.
    pub async fn follow_logs(
        &self,
        id_or_name: &str,
        mut on_line: impl FnMut(crate::service::FollowedLine),
    ) -> Answer<crate::service::LogsEnded> {
        match self {
            Backend::Remote(api) => api.follow_logs(id_or_name, on_line).await,
            Backend::Local(service) => {
                let run = service.flow_run(LOCAL, id_or_name)?;
                let mut after = -1;
                loop {
                    // The state first: every line of a run that ended was committed before its end.
                    let row = service.flow_run(LOCAL, &run.id)?;
                    loop {
                        let lines = service.logs_after(LOCAL, &run.id, after, 1_000)?;
                        let more = lines.len() == 1_000;
                        for line in lines {
                            after = line.seq;
                            on_line(line);
                        }
                        if !more {
                            break;
                        }
                    }
                    if row.state.is_some_and(|s| s.is_terminal()) {
                        return Ok(crate::service::LogsEnded { state: row.state, message: row.message });
                    }
                    tokio::time::sleep(LOCAL_FOLLOW_PERIOD).await;
                }
            }
        }
    }

    /// Asks a run to stop.
    pub async fn cancel(&self, id_or_name: &str) -> Answer<CancelOutcome> {
        match self {
            Backend::Local(service) => {
                let run = service.flow_run(LOCAL, id_or_name)?;
                Ok(service.store.request_cancel(&run.id, Utc::now())?)
            }
            Backend::Remote(api) => api.cancel(id_or_name).await,
        }
    }

    /// Runs an ended, not completed run again as its next attempt.
    pub async fn retry(&self, id_or_name: &str) -> Answer<FlowRunRow> {
        match self {
            Backend::Local(service) => service.retry_by_hand(LOCAL, id_or_name).await,
            Backend::Remote(api) => api.retry(id_or_name).await,
        }
    }

    /// Resumes a run paused for input with `input`.
    pub async fn resume(&self, id_or_name: &str, input: serde_json::Value) -> Answer<FlowRunRow> {
        match self {
            Backend::Local(service) => service.resume(LOCAL, id_or_name, input).await,
            Backend::Remote(api) => api.resume(id_or_name, &input).await,
        }
    }

    /// Every work pool.
    pub async fn work_pools(&self) -> Answer<Vec<WorkPool>> {
        match self {
            Backend::Local(service) => Ok(service.store.work_pools(LOCAL)?),
            Backend::Remote(api) => api.work_pools().await,
        }
    }

    /// One pool and its queues.
    pub async fn inspect_pool(&self, name: &str) -> Answer<Value> {
        match self {
            Backend::Local(service) => {
                let pool = service.work_pool(LOCAL, name)?;
                Ok(json!({ "pool": pool, "queues": service.store.work_queues(LOCAL, Some(name))? }))
            }
            Backend::Remote(api) => api.inspect_pool(name).await,
        }
    }

    /// Creates a pool.
    pub async fn create_work_pool(&self, name: &str, description: Option<String>) -> Answer<WorkPool> {
        match self {
            Backend::Local(service) => service.create_work_pool(LOCAL, name, description),
            Backend::Remote(api) => api.create_work_pool(name, description).await,
        }
    }

    /// Pauses or resumes a pool.
    pub async fn set_work_pool_paused(&self, name: &str, paused: bool) -> Answer<WorkPool> {
        match self {
            Backend::Local(service) => service.set_work_pool_paused(LOCAL, name, paused),
            Backend::Remote(api) => api.set_work_pool_paused(name, paused).await,
        }
    }

    /// Deletes a pool.
    pub async fn delete_work_pool(&self, name: &str) -> Answer<()> {
        match self {
            Backend::Local(service) => service.delete_work_pool(LOCAL, name),
            Backend::Remote(api) => api.delete_work_pool(name).await,
        }
    }

    /// Queues of a pool, or of every pool.
    pub async fn work_queues(&self, pool: Option<&str>) -> Answer<Vec<WorkQueue>> {
        match self {
            Backend::Local(service) => {
                if let Some(pool) = pool {
                    service.check_pool(LOCAL, pool)?;
                }
                Ok(service.store.work_queues(LOCAL, pool)?)
            }
            Backend::Remote(api) => api.work_queues(pool).await,
        }
    }

    /// Creates a queue.
    pub async fn create_work_queue(&self, pool: &str, request: QueueRequest) -> Answer<WorkQueue> {
        match self {
            Backend::Local(service) => service.create_work_queue(LOCAL, pool, request),
            Backend::Remote(api) => api.create_work_queue(pool, &request).await,
        }
    }

    /// Pauses or resumes a queue.
    pub async fn set_work_queue_paused(&self, pool: &str, name: &str, paused: bool) -> Answer<WorkQueue> {
        match self {
            Backend::Local(service) => service.set_work_queue_paused(LOCAL, pool, name, paused),
            Backend::Remote(api) => api.set_work_queue_paused(pool, name, paused).await,
        }
    }

    /// Deletes a queue.
    pub async fn delete_work_queue(&self, pool: &str, name: &str) -> Answer<()> {
        match self {
            Backend::Local(service) => service.delete_work_queue(LOCAL, pool, name),
            Backend::Remote(api) => api.delete_work_queue(pool, name).await,
        }
    }
}

fn prefixed(name: &str, err: ServiceError) -> ServiceError {
    match err {
        ServiceError::NotFound(m) => ServiceError::NotFound(format!("{name}: {m}")),
        ServiceError::Invalid(m) => ServiceError::Invalid(format!("{name}: {m}")),
        other => ServiceError::Other(format!("{name}: {other}")),
    }
}

pub(super) fn deploy_body(request: &DeployRequest, digest: &str) -> Value {
    json!({
        "artifact": digest,
        "flow": request.flow,
        "name": request.name,
        "parameters": request.parameters,
        "description": request.description,
        "version": request.version,
        "tags": request.tags,
        "schedule": request.schedule,
        "paused": request.paused,
        "pool": request.pool,
        "queue": request.queue,
        "limits": request.limits,
        "grants": request.grants,
        "served": request.served,
    })
}
