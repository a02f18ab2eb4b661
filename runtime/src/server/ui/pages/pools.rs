//! Work pools, their queues and the workers: status, pause and resume,
//! last heartbeat, runs held.

use super::fragment_or_back;
use crate::server::ui::data;
use crate::server::ui::error::UiResult;
use crate::server::ui::layout::{self, Nav};
use crate::server::ui::session::{Change, Role, Session};
use crate::server::ui::{Ui, words};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{Duration, Utc};
use maud::{Markup, html};

/// A worker silent longer than this is shown offline.
const ONLINE_WITHIN: i64 = 60;

fn switch(session: &Session, action_base: &str, paused: bool, label: &str) -> Markup {
    let active = !paused;
    html! {
        @if session.may(Role::Admin) {
            form.toggle.inline method="post" data-async action={ (action_base) (if active { "/pause" } else { "/resume" }) } {
                (layout::csrf(session))
                button type="submit" role="switch" aria-checked=(active) aria-label={ (label) " active" } {
                    span.track { span.thumb {} } span.label { (if active { "Active" } else { "Paused" }) }
                }
            }
        } @else {
            span.muted { (if active { "Active" } else { "Paused" }) }
        }
    }
}

/// `GET /work-pools`.
pub async fn page(State(ui): State<Ui>, session: Session) -> UiResult<Markup> {
    let pools = data::pools(&ui.dispatch, &session.principal)?;
    let workers = data::workers(&ui.dispatch, &session.principal)?;
    let now = Utc::now();
    let body = html! {
        h1 { "Work pools" }
        @for (pool, queues) in &pools {
            section.panel data-pool=(pool.name) {
                h2 { (pool.name) " " (switch(&session, &format!("/work-pools/{}", pool.name), pool.paused, &format!("Pool {}", pool.name))) }
                @if let Some(d) = &pool.description { p.muted { (d) } }
                div.table-wrap { table {
                    thead { tr { th scope="col" { "Queue" } th scope="col" { "Priority" } th scope="col" { "Tags" } th scope="col" { "Limit" } th scope="col" { "Active" } } }
                    tbody { @for q in queues {
                        tr data-queue=(q.name) {
                            td { (q.name) } td { (q.priority) }
                            td { @for t in &q.tags { span.tag { (t) } } @if q.tags.is_empty() { span.muted { "any" } } }
                            td { @match q.concurrency_limit { Some(n) => (n), None => span.muted { "none" } } }
                            td { (switch(&session, &format!("/work-pools/{}/queues/{}", q.pool, q.name), q.paused, &format!("Queue {}", q.full_name()))) }
                        }
                    } }
                } }
            }
        }
        h2 { "Workers" }
        @if workers.is_empty() { (layout::empty("No worker has sent a heartbeat yet.")) } @else {
            div.table-wrap { table #workers {
                thead { tr { th scope="col" { "Worker" } th scope="col" { "Status" } th scope="col" { "Last heartbeat" } th scope="col" { "Running" } th scope="col" .hide-narrow { "Since" } } }
                tbody { @for w in &workers {
                    @let online = w.last_seen > now - Duration::seconds(ONLINE_WITHIN);
                    tr {
                        td { (w.name) }
                        td { @if online { span.badge.state-Completed { "Online" } } @else { span.badge.state-Cancelled { "Offline" } } }
                        td { time datetime=(w.last_seen.to_rfc3339()) title=(words::time(w.last_seen)) { (words::ago(w.last_seen, now)) } }
                        td { (w.running) }
                        td.hide-narrow { (words::time(w.started)) }
                    }
                } }
            } }
        }
    };
    Ok(layout::page("Work pools", &session, Nav::Pools, body))
}

async fn pool_paused(ui: Ui, pool: String, headers: HeaderMap, change: Change, paused: bool) -> UiResult<Response> {
    data::set_pool_paused(&ui.dispatch, &change.session.principal, &pool, paused)?;
    let fragment = switch(&change.session, &format!("/work-pools/{pool}"), paused, &format!("Pool {pool}"));
    Ok(fragment_or_back(&headers, fragment, "/work-pools"))
}

async fn queue_paused(
    ui: Ui,
    (pool, queue): (String, String),
    headers: HeaderMap,
    change: Change,
    paused: bool,
) -> UiResult<Response> {
    data::set_queue_paused(&ui.dispatch, &change.session.principal, &pool, &queue, paused)?;
    let base = format!("/work-pools/{pool}/queues/{queue}");
    let fragment = switch(&change.session, &base, paused, &format!("Queue {pool}/{queue}"));
    Ok(fragment_or_back(&headers, fragment, "/work-pools"))
}

/// `POST /work-pools/{pool}/pause`.
pub async fn pause_pool(
    State(ui): State<Ui>,
    Path(pool): Path<String>,
    headers: HeaderMap,
    change: Change,
) -> UiResult<Response> {
    pool_paused(ui, pool, headers, change, true).await
}

/// `POST /work-pools/{pool}/resume`.
pub async fn resume_pool(
    State(ui): State<Ui>,
    Path(pool): Path<String>,
    headers: HeaderMap,
    change: Change,
) -> UiResult<Response> {
    pool_paused(ui, pool, headers, change, false).await
}

/// `POST /work-pools/{pool}/queues/{queue}/pause`.
pub async fn pause_queue(
    State(ui): State<Ui>,
    Path(names): Path<(String, String)>,
    headers: HeaderMap,
    change: Change,
) -> UiResult<Response> {
    queue_paused(ui, names, headers, change, true).await
}

/// `POST /work-pools/{pool}/queues/{queue}/resume`.
pub async fn resume_queue(
    State(ui): State<Ui>,
    Path(names): Path<(String, String)>,
    headers: HeaderMap,
    change: Change,
) -> UiResult<Response> {
    queue_paused(ui, names, headers, change, false).await
}
