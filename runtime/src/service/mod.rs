//! The service layer: push, deploy and run, over the artifact store, the
//! state store and the sandbox. The CLI calls it directly on a single
//! machine; a server would call the same functions behind its API.

mod automations;
mod deploy;
mod events;
mod follow;
mod pause;
mod pools;
mod push;
mod reports;
mod runs;
mod schedule;
mod secrets;
mod sessions;
mod tenants;
mod webhooks;

pub use automations::{AutomationRequest, Performed};
pub use deploy::{ArtifactSource, DeployRequest, Deployed, DeploymentDetail, Prepared, check_name};
pub use events::EventQuery;
pub use follow::{FollowedLine, LogsEnded, log_line};
pub use pools::QueueRequest;
pub use push::Pushed;
pub use reports::{Refusal, check_report};
pub use runs::{execute, record_unstarted_failure};
pub use schedule::{LATE_AFTER, SchedulerPass};
pub use sessions::{NewSession, SESSION_LIFETIME};
pub use tenants::{AuthError, TokenRequest};
pub use webhooks::{Delivery, SIGNATURE_HEADER, WebhookCreated, WebhookRequest};

use crate::artifact::{ArtifactStore, Digest};
use crate::core::deployment::ArtifactMeta;
use crate::sandbox::compile_cache::CompileCache;
use crate::sandbox::engine::EngineSettings;
use crate::sandbox::program::{LoadError, Program, ProgramCache, Sandbox};
use crate::store::{Backend, StoreError};
use std::path::PathBuf;
use std::sync::Arc;

/// Largest artifact accepted by `push`.
pub const MAX_ARTIFACT_BYTES: usize = 256 << 20;

/// Why a service call failed; the CLI turns the kind into an exit code.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A thing named by the caller does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The caller has no valid token, or its role may not do this.
    #[error("{0}")]
    Denied(String),
    /// The caller's input is wrong.
    #[error("{0}")]
    Invalid(String),
    /// The artifact store failed or holds a bad object.
    #[error("{0}")]
    Artifact(#[from] crate::artifact::StoreError),
    /// The state store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl From<LoadError> for ServiceError {
    fn from(err: LoadError) -> Self {
        ServiceError::Invalid(err.to_string())
    }
}

/// Where the service keeps things.
#[derive(Clone, Debug)]
pub struct Config {
    /// The data folder (`SLUICE_HOME`).
    pub home: PathBuf,
    /// URL of the artifact store; the `artifacts` folder in `home` when `None`.
    pub store_url: Option<String>,
    /// Folder of compiled machine code.
    pub compile_cache: PathBuf,
}

/// This machine's host name (for naming runners and workers).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Push, deploy, run.
pub struct Service {
    /// Run records, deployments and artifact metadata: SQLite in `home`,
    /// or the PostgreSQL database `SLUICE_DATABASE_URL` names.
    pub store: Arc<dyn Backend>,
    /// Artifact bytes.
    pub artifacts: ArtifactStore,
    /// The engine that loads and runs components.
    pub sandbox: Arc<Sandbox>,
    /// Who this process is when it takes runs.
    taker: String,
    /// Programs loaded so far, by digest.
    programs: ProgramCache,
    /// The data folder, where the secrets key lives.
    home: PathBuf,
    /// Webhook deliveries this minute, for their rate limits.
    hook_rates: webhooks::RateLimits,
}

impl Service {
    /// Opens the stores named by `config`.
    pub fn open(config: &Config) -> Result<Self, ServiceError> {
        let store = crate::store::open(&config.home)?;
        let url = match &config.store_url {
            Some(url) => url.clone(),
            None => config.home.join("artifacts").display().to_string(),
        };
        let artifacts = ArtifactStore::open(&url)?;
        let sandbox = Sandbox::new(&EngineSettings::default(), CompileCache::in_dir(&config.compile_cache))
            .map_err(|e| ServiceError::Other(format!("cannot start the sandbox: {e:#}")))?;
        let taker = format!("process {} on {}", std::process::id(), hostname());
        let home = config.home.clone();
        Ok(Self {
            store,
            artifacts,
            sandbox: Arc::new(sandbox),
            taker,
            programs: Default::default(),
            home,
            hook_rates: Default::default(),
        })
    }

    /// The data folder (`SLUICE_HOME`).
    pub fn home(&self) -> &std::path::Path {
        &self.home
    }

    /// Who this process is when it takes runs.
    pub fn taker(&self) -> &str {
        &self.taker
    }

    /// The metadata of an artifact `tenant` pushed (`None`: any tenant).
    pub fn artifact_meta(&self, tenant: Option<&str>, digest: &str) -> Result<ArtifactMeta, ServiceError> {
        let digest = Digest::parse(digest).map_err(ServiceError::Invalid)?;
        self.store.artifact(tenant, &digest.to_string())?.ok_or_else(|| {
            ServiceError::NotFound(format!(
                "no artifact {digest} has been pushed here; push it with `sluice push FILE.wasm`"
            ))
        })
    }

    /// Fetches (verifying its digest) and loads an artifact, once: later
    /// runs of the same digest reuse the loaded program.
    pub async fn load_program(&self, digest: &str) -> Result<Arc<Program>, ServiceError> {
        let digest = Digest::parse(digest).map_err(ServiceError::Invalid)?;
        if let Some(program) = self.programs.get(&digest) {
            return Ok(program);
        }
        let bytes = self.artifacts.get(&digest).await?;
        let program = Arc::new(self.sandbox.load(&bytes).await?);
        self.programs.insert(program.clone());
        Ok(program)
    }
}
