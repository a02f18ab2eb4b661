//! The web UI, served by `sluice server` at `/`: server-rendered pages
//! (maud, which escapes every value), one small embedded script for
//! progressive enhancement, and live updates over Server-Sent Events.
//! Every asset is compiled into the binary; nothing is fetched at run time.

mod assets;
mod data;
mod error;
mod layout;
mod pages;
mod schema_form;
mod session;
mod sse;
mod words;

use super::dispatch::Dispatch;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use std::sync::Arc;

/// What every UI handler gets.
#[derive(Clone)]
pub struct Ui {
    dispatch: Arc<Dispatch>,
}

/// The UI's routes; the server wraps them, and everything else it answers, in [`security_headers`].
pub fn router(dispatch: Arc<Dispatch>) -> Router {
    Router::new()
        .route("/", get(pages::dashboard::page))
        .route("/signin", get(session::signin_page).post(session::sign_in))
        .route("/signout", post(session::sign_out))
        .route("/deployments", get(pages::deployments::list))
        .route("/deployments/{flow}/{name}", get(pages::deployment::page))
        .route("/deployments/{flow}/{name}/pause", post(pages::deployments::pause))
        .route("/deployments/{flow}/{name}/resume", post(pages::deployments::resume))
        .route("/deployments/{flow}/{name}/run", post(pages::deployments::quick_run))
        .route("/deployments/{flow}/{name}/custom-run", get(pages::custom_run::form).post(pages::custom_run::submit))
        .route("/deployments/{flow}/{name}/schedule", post(pages::schedule::set))
        .route("/deployments/{flow}/{name}/schedule/remove", post(pages::schedule::remove))
        .route("/runs", get(pages::runs::list))
        .route("/runs/{id}", get(pages::run::page))
        .route("/runs/{id}/events", get(sse::run_events))
        .route("/runs/{id}/cancel", post(pages::run::cancel))
        .route("/runs/{id}/retry", post(pages::run::retry))
        .route("/runs/{id}/resume", get(pages::resume::form).post(pages::resume::submit))
        .route("/artifacts", get(pages::artifacts::list))
        .route("/artifacts/{digest}", get(pages::artifacts::detail))
        .route("/work-pools", get(pages::pools::page))
        .route("/work-pools/{pool}/pause", post(pages::pools::pause_pool))
        .route("/work-pools/{pool}/resume", post(pages::pools::resume_pool))
        .route("/work-pools/{pool}/queues/{queue}/pause", post(pages::pools::pause_queue))
        .route("/work-pools/{pool}/queues/{queue}/resume", post(pages::pools::resume_queue))
        .route("/events", get(pages::events::events))
        .route("/automations", get(pages::events::automations))
        .route("/ui/events", get(sse::changes))
        .route("/ui/assets/{file}", get(assets::serve))
        .with_state(Ui { dispatch })
}

/// Scripts only from this origin and never inline, so markup a guest wrote
/// cannot run even if it slipped past escaping; no framing; no sniffing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Adds the headers above to a response: every response of the server, the
/// API's and its 404s included, so no page of this origin goes without them.
pub(super) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}
