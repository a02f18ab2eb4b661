//! Deployment run latency: a trivial run (the `sequential` flow with no
//! task) created through `sluice server`'s API, timed from the POST until a
//! GET reads `Completed`, one run at a time, on a server with its default
//! embedded worker, its state in SQLite or in PostgreSQL (a database of
//! this process's durable cluster). The server lives across requests, so
//! the orchestrator can interleave blocks of runs with Prefect's.

use crate::processes::Server;
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::time::Instant;

/// A server with the deployment `sequential/trivial`, warmed by one run.
pub struct LatencyServer {
    server: Server,
}

fn time_of(value: &Value) -> Result<DateTime<Utc>> {
    let text = value.as_str().with_context(|| format!("not a time: {value}"))?;
    Ok(DateTime::parse_from_rfc3339(text)?.with_timezone(&Utc))
}

impl LatencyServer {
    /// Starts the server (on PostgreSQL when `postgres`) and runs the deployment once (not counted).
    pub async fn start(postgres: bool) -> Result<Self> {
        let database = postgres.then(|| crate::pg_cluster::Cluster::durable().new_database());
        let server = Server::start_on(database.as_deref(), &[], &[("sequential", "trivial", r#"{"count": 0}"#)])?;
        let this = Self { server };
        this.runs(1).await?;
        Ok(this)
    }

    /// `n` runs, one after another: the client's and the server's view of each, in seconds.
    pub async fn runs(&self, n: usize) -> Result<Value> {
        let (mut client, mut recorded) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..n {
            let start = Instant::now();
            let id = self.server.create_run("sequential", "trivial").await?;
            let run = self.server.wait_completed(&id).await?;
            client.push(start.elapsed().as_secs_f64());
            let created = time_of(&run["flow_run"]["created"])?;
            let ended = time_of(&run["flow_run"]["ended"])?;
            recorded.push((ended - created).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6);
        }
        Ok(json!({ "client_s": client, "server_s": recorded }))
    }
}
