//! HTTP request metrics: a middleware counting every answer by the route
//! template axum matched (`/api/v1/flow-runs/{id}`, never the id itself, so
//! the series are bounded by the routes served), the method and the status.

use super::metrics;
use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;

/// The route label of requests no route matched (404s of any path).
pub const UNMATCHED: &str = "unmatched";

/// Counts and times one request. Install with `axum::middleware::from_fn(http::record)`
/// on the router whose routes it names (layers added with `route_layer` see no unmatched request).
pub async fn record(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|path| path.as_str().to_owned());
    let method = method_label(request.method());
    let start = Instant::now();
    let response = next.run(request).await;
    let route = route.as_deref().unwrap_or(UNMATCHED);
    let status = response.status();
    metrics().http_requests.with_label_values(&[route, method, status.as_str()]).inc();
    metrics().http_request_seconds.with_label_values(&[route, method]).observe(start.elapsed().as_secs_f64());
    response
}

/// The method as a label: the standard ones by name, anything else as `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
