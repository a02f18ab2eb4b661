//! `deploy`: create or update `flow/deployment` from an artifact file or
//! digest, with its default parameters checked against the flow's schema.

use super::{Pushed, Service, ServiceError};
use crate::core::deployment::{Deployment, Grants, Limits, split_full_name};
use crate::core::describe::{ComponentDescription, FlowDescription};
use crate::core::grants::check_imports;
use crate::core::schedule::Schedule;
use crate::params;
use crate::store::Change;
use serde::Serialize;
use serde_json::{Map, Value};
use std::path::PathBuf;

/// Where a deployment's artifact comes from.
#[derive(Clone, Debug)]
pub enum ArtifactSource {
    /// A component file, pushed if needed.
    File(PathBuf),
    /// A digest already pushed.
    Digest(String),
}

/// Everything a deployment is made from.
#[derive(Clone, Debug)]
pub struct DeployRequest {
    /// The artifact.
    pub artifact: ArtifactSource,
    /// The flow in it; `None` picks the component's only flow.
    pub flow: Option<String>,
    /// The deployment's name.
    pub name: String,
    /// Default parameters.
    pub parameters: Map<String, Value>,
    /// What it is for.
    pub description: Option<String>,
    /// Its version label.
    pub version: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Its schedule.
    pub schedule: Option<Schedule>,
    /// Whether its schedule starts paused.
    pub paused: bool,
    /// Work pool.
    pub pool: Option<String>,
    /// Work queue.
    pub queue: Option<String>,
    /// Limits of its runs.
    pub limits: Limits,
    /// Capabilities granted to its runs.
    pub grants: Grants,
    /// For `sluice serve`: only the serving process takes its runs.
    pub served: bool,
}

/// What a deploy did.
#[derive(Clone, Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Deployed {
    /// The deployment as stored.
    pub deployment: Deployment,
    /// Created, updated or unchanged.
    pub change: Change,
    /// The push, when a file was given.
    pub pushed: Option<Pushed>,
}

/// A deployment with what its flow takes: what `deployment inspect` shows.
#[derive(Clone, Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct DeploymentDetail {
    /// The deployment as stored.
    #[serde(flatten)]
    pub deployment: Deployment,
    /// The JSON Schema of its flow's parameters (null when its artifact's flow is gone).
    pub parameters_schema: Option<Value>,
}

/// Names of flows and deployments: letters, digits, `_`, `-`, `.`.
pub fn check_name(what: &str, name: &str) -> Result<(), ServiceError> {
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if valid {
        Ok(())
    } else {
        Err(ServiceError::Invalid(format!(
            "`{name}` is not a valid {what} name: use letters, digits, `_`, `-` and `.`"
        )))
    }
}

/// The flow `name`, or without a name the component's only flow (several
/// flows need a name: guessing one would deploy the wrong code).
fn only_or_named_flow<'a>(
    description: &'a ComponentDescription,
    name: Option<&str>,
) -> Result<&'a FlowDescription, String> {
    match (name, description.flows.as_slice()) {
        (Some(name), _) => description.flow(Some(name)),
        (None, [only]) => Ok(only),
        (None, []) => Err("the component declares no flows".to_string()),
        (None, _) => {
            Err(format!("the component has several flows ({}); choose one with --flow", description.flow_names()))
        }
    }
}

/// A deployment checked and ready to be stored.
pub struct Prepared {
    deployment: Deployment,
    pushed: Option<Pushed>,
}

impl Service {
    /// Creates or updates a deployment.
    pub async fn deploy(&self, tenant: &str, request: DeployRequest) -> Result<Deployed, ServiceError> {
        let prepared = self.prepare_deploy(tenant, request).await?;
        self.commit_deploy(prepared)
    }

    /// Checks a deployment (pushing its artifact file if needed) without
    /// storing it, so several can be checked before any is written.
    pub async fn prepare_deploy(&self, tenant: &str, request: DeployRequest) -> Result<Prepared, ServiceError> {
        check_name("deployment", &request.name)?;
        if let Some(flow) = &request.flow {
            check_name("flow", flow)?;
        }
        self.check_pool_and_queue(tenant, request.pool.as_deref(), request.queue.as_deref())?;
        let policy = self.check_policy(tenant, &request.limits)?;
        let (meta, pushed) = match &request.artifact {
            ArtifactSource::File(path) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| ServiceError::Invalid(format!("cannot read `{}`: {e}", path.display())))?;
                let pushed = self.push(tenant, bytes, None).await?;
                (pushed.artifact.clone(), Some(pushed))
            }
            ArtifactSource::Digest(digest) => {
                let meta = self.artifact_meta(Some(tenant), digest)?;
                let digest = crate::artifact::Digest::parse(&meta.digest).map_err(ServiceError::Invalid)?;
                if !self.artifacts.contains(&digest).await? {
                    return Err(ServiceError::NotFound(format!(
                        "artifact {digest} is recorded but missing from the artifact store at {}; push the file again",
                        self.artifacts.url()
                    )));
                }
                (meta, None)
            }
        };
        let flow = only_or_named_flow(&meta.description, request.flow.as_deref())
            .map_err(|e| ServiceError::Invalid(format!("{e} (artifact {})", meta.digest)))?;
        let resolved = params::resolve(&flow.name, &flow.parameters_schema, request.parameters.clone())
            .map_err(|e| ServiceError::Invalid(format!("default {e}")))?;
        // Kept in the flow's order, as resolving orders them (defaults are not frozen in).
        let mut given = request.parameters;
        let mut parameters: Map<String, Value> =
            resolved.as_object().into_iter().flat_map(|r| r.keys()).filter_map(|key| given.remove_entry(key)).collect();
        parameters.append(&mut given);
        request.grants.validate().map_err(ServiceError::Invalid)?;
        self.check_grants_policy(tenant, &request.grants, &policy)?;
        check_imports(&meta.imports, &request.grants)
            .map_err(|e| ServiceError::Invalid(format!("{e} (artifact {})", meta.digest)))?;
        self.check_secrets_exist(tenant, &request.grants.secrets)?;
        let now = chrono::Utc::now();
        let deployment = Deployment {
            tenant: tenant.to_string(),
            flow: flow.name.clone(),
            name: request.name,
            artifact: meta.digest.clone(),
            parameters,
            // As Prefect copies the docstring: the flow's doc comment unless one is given.
            description: request
                .description
                .or_else(|| Some(flow.description.clone()).filter(|d| !d.trim().is_empty())),
            version: request.version,
            tags: request.tags,
            schedule: request.schedule,
            paused: request.paused,
            pool: request.pool,
            queue: request.queue,
            limits: request.limits,
            grants: request.grants,
            served: request.served,
            created: now,
            updated: now,
        };
        Ok(Prepared { deployment, pushed })
    }

    /// Stores a prepared deployment.
    pub fn commit_deploy(&self, prepared: Prepared) -> Result<Deployed, ServiceError> {
        let change = self.store.upsert_deployment(&prepared.deployment)?;
        if change == Change::Updated {
            // Runs made for the old settings go; the next pass makes new ones.
            let deployment = &prepared.deployment;
            self.store.unschedule_future(&deployment.tenant, &deployment.full_name(), chrono::Utc::now())?;
        }
        let stored = self.deployment(&prepared.deployment.tenant, &prepared.deployment.full_name())?;
        Ok(Deployed { deployment: stored, change, pushed: prepared.pushed })
    }

    /// A tenant's deployment by `flow/name`.
    pub fn deployment(&self, tenant: &str, full_name: &str) -> Result<Deployment, ServiceError> {
        let (flow, name) = split_full_name(full_name).map_err(ServiceError::Invalid)?;
        self.store.deployment(tenant, flow, name)?.ok_or_else(|| {
            ServiceError::NotFound(format!("no deployment `{full_name}`; `sluice deployment ls` lists them"))
        })
    }

    /// A tenant's deployment with its flow's parameter schema.
    pub fn deployment_detail(&self, tenant: &str, full_name: &str) -> Result<DeploymentDetail, ServiceError> {
        let deployment = self.deployment(tenant, full_name)?;
        let meta = self.artifact_meta(Some(tenant), &deployment.artifact)?;
        let parameters_schema = meta.description.flow(Some(&deployment.flow)).ok().map(|f| f.parameters_schema.clone());
        Ok(DeploymentDetail { deployment, parameters_schema })
    }

    /// Sets (or with `None` removes) a deployment's schedule; its future
    /// scheduled runs go, and the scheduler's next pass makes the new ones.
    pub fn set_schedule(
        &self,
        tenant: &str,
        full_name: &str,
        schedule: Option<Schedule>,
    ) -> Result<Deployment, ServiceError> {
        let mut deployment = self.deployment(tenant, full_name)?;
        deployment.schedule = schedule;
        deployment.updated = chrono::Utc::now();
        self.store.upsert_deployment(&deployment)?;
        self.store.unschedule_future(tenant, &deployment.full_name(), chrono::Utc::now())?;
        Ok(deployment)
    }

    /// Pauses or resumes a deployment's schedule.
    pub fn set_paused(&self, tenant: &str, full_name: &str, paused: bool) -> Result<Deployment, ServiceError> {
        let mut deployment = self.deployment(tenant, full_name)?;
        deployment.paused = paused;
        deployment.updated = chrono::Utc::now();
        self.store.upsert_deployment(&deployment)?;
        if paused {
            self.store.unschedule_future(tenant, &deployment.full_name(), chrono::Utc::now())?;
        }
        Ok(deployment)
    }

    /// Deletes a deployment (its past runs stay in the history).
    pub fn delete_deployment(&self, tenant: &str, full_name: &str) -> Result<(), ServiceError> {
        let deployment = self.deployment(tenant, full_name)?;
        self.store.delete_deployment(tenant, &deployment.flow, &deployment.name)?;
        Ok(())
    }
}
