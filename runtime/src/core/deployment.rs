//! Deployments (a named way to run one flow of one artifact) and the
//! metadata kept about each artifact.

use crate::core::describe::ComponentDescription;
pub use crate::core::grants::Grants;
use crate::core::schedule::Schedule;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What the host knows about a pushed artifact.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ArtifactMeta {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// What its `describe` said.
    pub description: ComponentDescription,
    /// The interfaces it imports.
    pub imports: Vec<String>,
    /// When it was first pushed.
    pub pushed_at: DateTime<Utc>,
}

/// When a flow run's records must be committed before the run goes on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Each task attempt's `Running` state is committed before its guest code
    /// runs: after a crash, the journal holds every task that started.
    #[default]
    Strict,
    /// Records are committed in the background in batches, within a few
    /// milliseconds, and the run does not wait for them; its final state is
    /// still committed before the run is reported ended. A crash loses at
    /// most the last batch, whose tasks a retry runs again.
    Batched,
}

impl std::str::FromStr for Durability {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "strict" => Ok(Durability::Strict),
            "batched" => Ok(Durability::Batched),
            other => Err(format!("`{other}` is not a durability: write strict (the default) or batched")),
        }
    }
}

/// Limits a deployment sets on its runs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Limits {
    /// Memory per instance, in MiB.
    pub memory_mib: Option<u32>,
    /// Wall-clock limit of a flow run, in seconds (at most 366 days).
    #[schema(maximum = 31_622_400)]
    pub timeout_seconds: Option<u64>,
    /// Runs of this deployment allowed at once.
    pub concurrency: Option<u32>,
    /// Times a run that crashed (its worker died) is scheduled again.
    #[serde(default)]
    pub crash_retries: u32,
    /// Seconds before a crashed run is run again.
    #[serde(default)]
    pub crash_retry_delay_seconds: u64,
    /// Times a flow run that ended `Failed`, `TimedOut` or `Crashed` runs again as
    /// its next attempt, replaying from its journal what earlier attempts completed.
    #[serde(default)]
    pub retries: u32,
    /// Seconds before the first flow retry.
    #[serde(default)]
    pub retry_delay_seconds: u64,
    /// Each later flow retry waits this many times longer than the one before (1 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_backoff: Option<f64>,
    /// CPU time one task attempt may use, in milliseconds (the host's default when absent).
    pub task_cpu_ms: Option<u64>,
    /// CPU time a whole flow run may use (its flow, subflows and tasks), in milliseconds
    /// (the host's default when absent).
    pub run_cpu_ms: Option<u64>,
    /// Log kept per flow run, in MiB (the host's default, 64, when absent); later lines are dropped.
    pub log_mib: Option<u32>,
    /// Task runs one flow run may start, subflows' included (the host's default, 100,000, when
    /// absent): recursive fan-out without end stops here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tasks: Option<u64>,
    /// Largest parameters, task input or result, in MiB (the host's default, 16, when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_mib: Option<u32>,
    /// When its records are committed (strict when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durability: Option<Durability>,
}

/// `flow/deployment`, with everything needed to start its runs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Deployment {
    /// The tenant that owns it.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// The flow it runs.
    pub flow: String,
    /// Its name, unique per flow.
    pub name: String,
    /// The artifact holding the flow.
    pub artifact: String,
    /// Default parameters (validated against the flow's schema).
    pub parameters: Map<String, Value>,
    /// What it is for.
    pub description: Option<String>,
    /// Its version label.
    pub version: Option<String>,
    /// Tags, for filtering and queue routing.
    pub tags: Vec<String>,
    /// When it runs by itself.
    pub schedule: Option<Schedule>,
    /// Whether its schedule is paused.
    pub paused: bool,
    /// Work pool.
    pub pool: Option<String>,
    /// Work queue in the pool.
    pub queue: Option<String>,
    /// Limits of its runs.
    pub limits: Limits,
    /// Capabilities granted to its runs (outbound HTTP hosts, secrets); none by default.
    #[serde(default)]
    pub grants: Grants,
    /// Made by `sluice serve`: its runs are taken only by the process serving
    /// it (a claim naming the deployment), never by its pool's workers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub served: bool,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// When it last changed.
    pub updated: DateTime<Utc>,
}

impl Deployment {
    /// `flow/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.flow, self.name)
    }

    /// Whether two versions of a deployment differ in anything but timestamps.
    pub fn same_settings(&self, other: &Deployment) -> bool {
        let strip =
            |d: &Deployment| Deployment { created: DateTime::UNIX_EPOCH, updated: DateTime::UNIX_EPOCH, ..d.clone() };
        strip(self) == strip(other)
    }
}

fn default_tenant() -> String {
    crate::core::tenant::DEFAULT_TENANT.to_string()
}

/// Splits `flow/deployment`.
pub fn split_full_name(text: &str) -> Result<(&str, &str), String> {
    match text.split_once('/') {
        Some((flow, name)) if !flow.is_empty() && !name.is_empty() && !name.contains('/') => Ok((flow, name)),
        _ => Err(format!("`{text}` is not a deployment name; write it as flow/deployment, for example hello/leo")),
    }
}
