//! `GET /metrics` on a listen address of its own (`sluice server
//! --metrics-listen 127.0.0.1:9464`, `sluice worker --metrics-port 9465`),
//! never on the API's. The metrics name tenants and deployments of every
//! tenant, so they are the operator's: served apart, they are reachable
//! only where the operator binds them (loopback by default, or a network
//! only Prometheus reaches), and Prometheus needs no API token to scrape.

use super::metrics;
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;

/// Work done before each scrape, such as reading gauges from the store.
pub type BeforeScrape = Arc<dyn Fn() + Send + Sync>;

/// The Prometheus text format's content type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The metrics router: `GET /metrics`, after `before` has run.
pub fn router(before: Option<BeforeScrape>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let before = before.clone();
            async move {
                if let Some(before) = before {
                    // Reads the store: off the async threads.
                    let _ = tokio::task::spawn_blocking(move || before()).await;
                }
                ([(header::CONTENT_TYPE, TEXT_FORMAT)], metrics().encode()).into_response()
            }
        }),
    )
}

/// Binds `address` and serves the metrics there until the process ends;
/// returns the bound address (the port may have been 0).
pub async fn serve(address: SocketAddr, before: Option<BeforeScrape>) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {address}: {e}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router(before)).await {
            tracing::error!("the metrics endpoint stopped: {err}");
        }
    });
    Ok(bound)
}
