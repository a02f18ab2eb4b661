//! Work pools and queues, and which queue serves a deployment's runs: a
//! queue with tags serves only deployments carrying all of them; a
//! deployment naming a queue is served by that queue only; among the
//! queues that fit, the lowest priority number goes first.

use crate::core::deployment::Deployment;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The pool (and queue) used when a deployment names none.
pub const DEFAULT_POOL: &str = "default";
/// The queue every pool starts with.
pub const DEFAULT_QUEUE: &str = "default";

/// A work pool: a set of queues that workers take runs from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct WorkPool {
    /// Its name.
    pub name: String,
    /// A paused pool hands out nothing.
    pub paused: bool,
    /// What it is for.
    pub description: Option<String>,
    /// When it was created.
    pub created: DateTime<Utc>,
}

/// A queue in a pool.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct WorkQueue {
    /// The pool it belongs to.
    pub pool: String,
    /// Its name, unique in the pool.
    pub name: String,
    /// It serves only deployments carrying all of these.
    pub tags: Vec<String>,
    /// Lower numbers are served first.
    pub priority: i64,
    /// Runs of this queue allowed at once.
    pub concurrency_limit: Option<u32>,
    /// A paused queue hands out nothing.
    pub paused: bool,
    /// When it was created.
    pub created: DateTime<Utc>,
}

impl WorkQueue {
    /// `pool/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.pool, self.name)
    }

    /// Whether this queue may serve `deployment`'s runs (pausing aside).
    pub fn serves(&self, deployment: &Deployment) -> bool {
        let pool = deployment.pool.as_deref().unwrap_or(DEFAULT_POOL);
        pool == self.pool
            && deployment.queue.as_deref().is_none_or(|queue| queue == self.name)
            && self.tags.iter().all(|tag| deployment.tags.contains(tag))
    }
}

/// The queue that serves `deployment`, among `queues` (paused ones skipped).
pub fn route<'a>(deployment: &Deployment, queues: &'a [WorkQueue]) -> Option<&'a WorkQueue> {
    queues
        .iter()
        .filter(|q| !q.paused && q.serves(deployment))
        .min_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(pool: Option<&str>, queue: Option<&str>, tags: &[&str]) -> Deployment {
        Deployment {
            tenant: "default".into(),
            flow: "f".into(),
            name: "d".into(),
            artifact: "sha256:00".into(),
            parameters: Default::default(),
            description: None,
            version: None,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            schedule: None,
            paused: false,
            pool: pool.map(str::to_string),
            queue: queue.map(str::to_string),
            limits: Default::default(),
            grants: Default::default(),
            served: false,
            created: Utc::now(),
            updated: Utc::now(),
        }
    }

    fn queue(pool: &str, name: &str, tags: &[&str], priority: i64) -> WorkQueue {
        WorkQueue {
            pool: pool.into(),
            name: name.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            priority,
            concurrency_limit: None,
            paused: false,
            created: Utc::now(),
        }
    }

    #[test]
    fn tagged_queues_serve_only_deployments_with_their_tags() {
        let queues = [queue("p", "fast", &["fast"], 1), queue("p", "slow", &["slow"], 1)];
        let fast = deployment(Some("p"), None, &["fast", "nightly"]);
        let slow = deployment(Some("p"), None, &["slow"]);
        let untagged = deployment(Some("p"), None, &[]);
        assert_eq!(route(&fast, &queues).unwrap().name, "fast");
        assert_eq!(route(&slow, &queues).unwrap().name, "slow");
        assert!(route(&untagged, &queues).is_none());
    }

    #[test]
    fn a_named_queue_pool_and_pause_are_respected() {
        let mut queues = vec![queue("default", "default", &[], 1), queue("default", "urgent", &[], 0)];
        let anywhere = deployment(None, None, &[]);
        assert_eq!(route(&anywhere, &queues).unwrap().name, "urgent", "lower priority number first");
        let named = deployment(None, Some("default"), &[]);
        assert_eq!(route(&named, &queues).unwrap().name, "default");
        queues[0].paused = true;
        assert!(route(&named, &queues).is_none(), "its queue is paused");
        let elsewhere = deployment(Some("gpu"), None, &[]);
        assert!(route(&elsewhere, &queues).is_none(), "another pool");
    }
}
