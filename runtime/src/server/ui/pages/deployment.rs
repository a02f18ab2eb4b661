//! One deployment: what it runs and how, and its recent runs.

use super::deployments::toggle;
use super::runs::run_table;
use crate::core::pool::{DEFAULT_POOL, DEFAULT_QUEUE};
use crate::server::ui::data::{self, RunQuery};
use crate::server::ui::error::UiResult;
use crate::server::ui::layout::{self, Nav};
use crate::server::ui::session::{Role, Session};
use crate::server::ui::{Ui, words};
use axum::extract::{Path, State};
use maud::{Markup, html};
use serde_json::Value;

/// `GET /deployments/{flow}/{name}`.
pub async fn page(
    State(ui): State<Ui>,
    Path((flow, name)): Path<(String, String)>,
    session: Session,
) -> UiResult<Markup> {
    render(&ui, &session, &format!("{flow}/{name}"), None)
}

/// The deployment page, with a refusal of a schedule form shown beside it.
pub fn render(ui: &Ui, session: &Session, full: &str, schedule_refusal: Option<&str>) -> UiResult<Markup> {
    let full = full.to_string();
    let p = &session.principal;
    let d = data::deployment(&ui.dispatch, p, &full)?;
    let flow_description = data::flow_of(&ui.dispatch, p, &d).ok();
    let runs =
        data::runs(&ui.dispatch, p, &RunQuery { deployment: Some(full.clone()), limit: 20, ..Default::default() })?;
    let limits = &d.limits;
    let body = html! {
        h1 { (full) " " (toggle(session, &d)) }
        @if session.may(Role::Runner) {
            p {
                (layout::action(session, Role::Runner, &format!("/deployments/{full}/run"), "Run", "run"))
                " "
                a.button.secondary href={ "/deployments/" (full) "/custom-run" } { "Custom run" }
            }
        }
        div.grid {
            section.panel aria-labelledby="about" {
                h2 #about { "About" }
                dl.facts {
                    dt { "Description" } dd { @match &d.description { Some(text) => (text), None => span.muted { "none" } } }
                    dt { "Version" } dd { @match &d.version { Some(v) => (v), None => span.muted { "none" } } }
                    dt { "Flow" } dd { (d.flow) @if let Some(f) = &flow_description { " — " span.muted { (f.description) } } }
                    dt { "Artifact" } dd { a href={ "/artifacts/" (d.artifact) } { code { (d.artifact) } } }
                    dt { "Tags" } dd { @for tag in &d.tags { span.tag { (tag) } } @if d.tags.is_empty() { span.muted { "none" } } }
                    dt { "Created" } dd { (words::time(d.created)) }
                    dt { "Updated" } dd { (words::time(d.updated)) }
                }
            }
            section.panel aria-labelledby="how" {
                h2 #how { "How it runs" }
                dl.facts {
                    dt { "Schedule" } dd { @match &d.schedule { Some(s) => { (words::schedule(s)) (if d.paused { " (paused)" } else { "" }) }, None => span.muted { "none" } } }
                    dt { "Work pool" } dd { a href="/work-pools" { (d.pool.as_deref().unwrap_or(DEFAULT_POOL)) } }
                    dt { "Queue" } dd { (d.queue.as_deref().unwrap_or(DEFAULT_QUEUE)) @if d.queue.is_none() { span.muted { " (routed by tags)" } } }
                    dt { "Memory" } dd { @match limits.memory_mib { Some(m) => { (m) " MiB" }, None => span.muted { "engine default" } } }
                    dt { "Timeout" } dd { @match limits.timeout_seconds { Some(s) => { (s) " s" }, None => span.muted { "none" } } }
                    dt { "Concurrency" } dd { @match limits.concurrency { Some(n) => { (n) " at once" }, None => span.muted { "unlimited" } } }
                    dt { "Crash retries" } dd { (limits.crash_retries) " (after " (limits.crash_retry_delay_seconds) " s)" }
                    dt { "CPU per task" } dd { @match limits.task_cpu_ms { Some(ms) => { (ms) " ms" }, None => span.muted { "default" } } }
                    dt { "CPU per run" } dd { @match limits.run_cpu_ms { Some(ms) => { (ms) " ms" }, None => span.muted { "default" } } }
                    dt { "Logs" } dd { @match limits.log_mib { Some(m) => { (m) " MiB" }, None => span.muted { "default" } } }
                    dt { "Grants" } dd {
                        @if d.grants.is_empty() { span.muted { "none: its runs get no network and no secrets" } }
                        @if !d.grants.allow_hosts.is_empty() {
                            "HTTP to " @for (i, host) in d.grants.allow_hosts.iter().enumerate() { @if i > 0 { ", " } code { (host) } } br;
                        }
                        @if !d.grants.secrets.is_empty() {
                            "secrets " @for (i, name) in d.grants.secrets.iter().enumerate() { @if i > 0 { ", " } code { (name) } }
                        }
                    }
                }
            }
        }
        section.panel aria-labelledby="params" {
            h2 #params { "Default parameters" }
            (layout::json_block(&Value::Object(d.parameters.clone())))
            @if let Some(f) = &flow_description {
                details { summary { "Parameter schema" } (layout::json_block(&f.parameters_schema)) }
            }
        }
        (super::schedule::panel(session, &d, schedule_refusal))
        h2 { "Recent runs" }
        (run_table(&runs.runs))
        p { a href={ "/runs?deployment=" (words::url_encode(&full)) } { "All runs of " (full) } }
    };
    Ok(layout::page(&full, session, Nav::Deployments, body))
}
