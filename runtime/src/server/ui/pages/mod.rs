//! One module per page (or family of pages), each with its handlers.

pub mod artifacts;
pub mod custom_run;
pub mod dashboard;
pub mod deployment;
pub mod deployments;
pub mod events;
pub mod pools;
pub mod resume;
pub mod run;
pub mod runs;
pub mod schedule;

use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::Markup;

/// Whether the page's script made this request (it wants a fragment back).
pub fn from_script(headers: &HeaderMap) -> bool {
    headers.contains_key("x-requested-with")
}

/// After a form post without the script: back to the page it came from
/// (when that page is on this site), else to `fallback`.
pub fn back(headers: &HeaderMap, fallback: &str) -> Response {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let referer = headers.get(header::REFERER).and_then(|r| r.to_str().ok()).unwrap_or_default();
    let path = ["http://", "https://"]
        .iter()
        .find_map(|scheme| referer.strip_prefix(scheme)?.strip_prefix(host))
        .filter(|path| path.starts_with('/') && !path.starts_with("//"));
    Redirect::to(path.unwrap_or(fallback)).into_response()
}

/// A fragment for the script, or the page it came from for a plain form.
pub fn fragment_or_back(headers: &HeaderMap, fragment: Markup, fallback: &str) -> Response {
    if from_script(headers) { fragment.into_response() } else { back(headers, fallback) }
}
