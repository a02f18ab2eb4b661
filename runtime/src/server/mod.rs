//! `sluice server`: the HTTP API, the scheduler, crash detection and (by
//! default) embedded workers, in one process over the embedded stores.

mod api;
mod dispatch;
mod openapi;
mod secrets_api;

pub use api::router;
pub use dispatch::{ClaimedRun, Dispatch};

use crate::service::Service;
use chrono::Utc;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How the server runs.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Address to listen on.
    pub address: SocketAddr,
    /// Embedded workers (runs executed in this process at once).
    pub workers: usize,
    /// A worker silent this long has its runs marked `Crashed`.
    pub heartbeat_timeout: Duration,
}

/// Serves until the process is stopped; prints the bound address first.
pub async fn serve(service: Service, options: ServerOptions) -> anyhow::Result<()> {
    let dispatch = Arc::new(Dispatch::new(Arc::new(service), options.heartbeat_timeout));
    let listener = tokio::net::TcpListener::bind(options.address).await?;
    let address = listener.local_addr()?;
    println!("Sluice server listening on http://{address} (API under /api/v1)");
    tokio::spawn(housekeeping(dispatch.clone()));
    if options.workers > 0 {
        tokio::spawn(dispatch::embedded_worker(dispatch.clone(), options.workers));
    }
    axum::serve(listener, router(dispatch)).await?;
    Ok(())
}

/// The scheduler and the crash detector, once a second.
async fn housekeeping(dispatch: Arc<Dispatch>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = Utc::now();
        match dispatch.service.schedule(now) {
            Ok(pass) => {
                for problem in pass.problems {
                    eprintln!("scheduler: {problem}");
                }
                if pass.created > 0 || pass.late > 0 {
                    dispatch.work_available();
                }
            }
            Err(err) => eprintln!("scheduler: {err}"),
        }
        if let Err(err) = dispatch.detect_crashes(now) {
            eprintln!("crash detection: {err}");
        }
    }
}
