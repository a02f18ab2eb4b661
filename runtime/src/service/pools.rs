//! Work pools and queues: create, list, pause, resume, delete.

use super::deploy::check_name;
use super::{Service, ServiceError};
use crate::core::pool::{DEFAULT_POOL, WorkPool, WorkQueue};
use chrono::Utc;

/// A queue to create.
#[derive(Clone, Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueRequest {
    /// Its name.
    #[schema(pattern = "^[A-Za-z0-9_.-]+$")]
    pub name: String,
    /// It serves only deployments carrying all of these.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Lower numbers are served first (default 1).
    pub priority: Option<i64>,
    /// Runs of this queue allowed at once.
    pub concurrency_limit: Option<u32>,
}

impl Service {
    /// A pool by name.
    pub fn work_pool(&self, tenant: &str, name: &str) -> Result<WorkPool, ServiceError> {
        self.store.work_pools(tenant)?.into_iter().find(|p| p.name == name).ok_or_else(|| {
            ServiceError::NotFound(format!("no work pool `{name}`; create it with `sluice work-pool create {name}`"))
        })
    }

    /// Fails unless the pool exists.
    pub fn check_pool(&self, tenant: &str, name: &str) -> Result<(), ServiceError> {
        self.work_pool(tenant, name).map(|_| ())
    }

    /// Fails unless the pool (and the queue, when named) exist.
    pub fn check_pool_and_queue(
        &self,
        tenant: &str,
        pool: Option<&str>,
        queue: Option<&str>,
    ) -> Result<(), ServiceError> {
        let pool = pool.unwrap_or(DEFAULT_POOL);
        self.check_pool(tenant, pool)?;
        if let Some(queue) = queue {
            self.work_queue(tenant, pool, queue)?;
        }
        Ok(())
    }

    /// Creates a pool (with its `default` queue).
    pub fn create_work_pool(
        &self,
        tenant: &str,
        name: &str,
        description: Option<String>,
    ) -> Result<WorkPool, ServiceError> {
        check_name("work pool", name)?;
        let pool = WorkPool { name: name.to_string(), paused: false, description, created: Utc::now() };
        if !self.store.create_work_pool(tenant, &pool)? {
            return Err(ServiceError::Invalid(format!("a work pool named `{name}` exists already")));
        }
        Ok(pool)
    }

    /// Pauses or resumes a pool.
    pub fn set_work_pool_paused(&self, tenant: &str, name: &str, paused: bool) -> Result<WorkPool, ServiceError> {
        self.work_pool(tenant, name)?;
        self.store.set_work_pool_paused(tenant, name, paused)?;
        self.work_pool(tenant, name)
    }

    /// Deletes a pool no deployment uses.
    pub fn delete_work_pool(&self, tenant: &str, name: &str) -> Result<(), ServiceError> {
        self.work_pool(tenant, name)?;
        if name == DEFAULT_POOL {
            return Err(ServiceError::Invalid("the default work pool cannot be deleted".into()));
        }
        let users: Vec<String> = self
            .store
            .deployments(Some(tenant))?
            .into_iter()
            .filter(|d| d.pool.as_deref() == Some(name))
            .map(|d| d.full_name())
            .collect();
        if !users.is_empty() {
            return Err(ServiceError::Invalid(format!(
                "work pool `{name}` is used by {}; move or delete them first",
                users.join(", ")
            )));
        }
        self.store.delete_work_pool(tenant, name)?;
        Ok(())
    }

    /// A queue by pool and name.
    pub fn work_queue(&self, tenant: &str, pool: &str, name: &str) -> Result<WorkQueue, ServiceError> {
        self.store.work_queues(tenant, Some(pool))?.into_iter().find(|q| q.name == name).ok_or_else(|| {
            ServiceError::NotFound(format!(
                "no work queue `{name}` in pool `{pool}`; create it with `sluice work-queue create {name} --pool {pool}`"
            ))
        })
    }

    /// Creates a queue in a pool.
    pub fn create_work_queue(
        &self,
        tenant: &str,
        pool: &str,
        request: QueueRequest,
    ) -> Result<WorkQueue, ServiceError> {
        self.check_pool(tenant, pool)?;
        check_name("work queue", &request.name)?;
        let queue = WorkQueue {
            pool: pool.to_string(),
            name: request.name,
            tags: request.tags,
            priority: request.priority.unwrap_or(1),
            concurrency_limit: request.concurrency_limit,
            paused: false,
            created: Utc::now(),
        };
        if !self.store.create_work_queue(tenant, &queue)? {
            return Err(ServiceError::Invalid(format!("pool `{pool}` has a queue named `{}` already", queue.name)));
        }
        Ok(queue)
    }

    /// Pauses or resumes a queue.
    pub fn set_work_queue_paused(
        &self,
        tenant: &str,
        pool: &str,
        name: &str,
        paused: bool,
    ) -> Result<WorkQueue, ServiceError> {
        self.work_queue(tenant, pool, name)?;
        self.store.set_work_queue_paused(tenant, pool, name, paused)?;
        self.work_queue(tenant, pool, name)
    }

    /// Deletes a queue.
    pub fn delete_work_queue(&self, tenant: &str, pool: &str, name: &str) -> Result<(), ServiceError> {
        self.work_queue(tenant, pool, name)?;
        self.store.delete_work_queue(tenant, pool, name)?;
        Ok(())
    }
}
