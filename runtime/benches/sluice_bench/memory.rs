//! Resident memory (VmRSS) of the real processes: an idle `sluice server`
//! with its embedded worker, a server without one, an idle `sluice worker`,
//! and what each further flow running at once adds to a worker (K runs of
//! the `hold` flow, which sleeps on WASI's clock, all `Running` together).

use crate::processes::Server;
use anyhow::{Result, ensure};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const SETTLE: Duration = Duration::from_millis(1000);

/// Measures every figure once; `concurrent` flows run at once on the worker.
pub async fn memory(concurrent: usize) -> Result<Value> {
    let server = Server::start(&[], &[("sequential", "trivial", r#"{"count": 0}"#)])?;
    let id = server.create_run("sequential", "trivial").await?;
    server.wait_completed(&id).await?;
    tokio::time::sleep(SETTLE).await;
    let server_idle = server.process.rss_mb()?;
    drop(server);

    let hold_ms = 3000 + 200 * concurrent as u64;
    let hold = format!(r#"{{"ms": {hold_ms}}}"#);
    let server = Server::start(
        &["--workers", "0"],
        &[("sequential", "trivial", r#"{"count": 0}"#), ("hold", "hold", hold.as_str())],
    )?;
    let worker = server.worker(&["--limit", &concurrent.to_string()])?;
    tokio::time::sleep(SETTLE).await;
    let worker_idle = worker.rss_mb()?;
    let server_no_worker = server.process.rss_mb()?;
    // One run first, so the worker has fetched and compiled the artifact.
    let id = server.create_run("sequential", "trivial").await?;
    server.wait_completed(&id).await?;
    tokio::time::sleep(SETTLE).await;
    let worker_after_one = worker.rss_mb()?;

    let mut ids = Vec::new();
    for _ in 0..concurrent {
        ids.push(server.create_run("hold", "hold").await?);
    }
    let deadline = Instant::now() + Duration::from_millis(hold_ms);
    loop {
        let running = server.get(&format!("/flow-runs?state=Running&limit={}", concurrent + 1)).await?;
        let running = running.as_array().map_or(0, Vec::len);
        if running == concurrent {
            break;
        }
        ensure!(Instant::now() < deadline, "only {running} of {concurrent} hold runs were Running at once");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let worker_busy = worker.rss_mb()?;
    for id in &ids {
        server.wait_completed(id).await?;
    }
    Ok(json!({
        "server_idle_mb": server_idle,
        "server_without_worker_idle_mb": server_no_worker,
        "worker_idle_mb": worker_idle,
        "worker_after_one_run_mb": worker_after_one,
        "worker_busy_mb": worker_busy,
        "concurrent": concurrent,
        "per_running_flow_mb": (worker_busy - worker_after_one) / concurrent as f64,
    }))
}
