//! The Events page (the tenant's event log, filtered by name prefix and
//! deployment, paged by `seq`) and the Automations page (automations and
//! webhooks). Read-only: they are made with the CLI, the API or sluice.yaml.

use crate::server::ui::error::UiResult;
use crate::server::ui::layout::{self, Nav};
use crate::server::ui::session::Session;
use crate::server::ui::{Ui, words};
use crate::service::EventQuery;
use axum::extract::{Query, State};
use maud::{Markup, html};
use serde::Deserialize;

/// Events shown per page.
const PAGE: usize = 100;

/// The Events page's filters.
#[derive(Deserialize, Default)]
pub struct EventFilters {
    name: Option<String>,
    deployment: Option<String>,
    before: Option<i64>,
}

/// `GET /events`.
pub async fn events(State(ui): State<Ui>, session: Session, Query(f): Query<EventFilters>) -> UiResult<Markup> {
    let query = EventQuery {
        name: f.name.clone(),
        deployment: f.deployment.clone(),
        before: f.before,
        limit: Some(PAGE),
        ..EventQuery::default()
    };
    let events = ui.dispatch.service.events(&session.principal.tenant, query)?;
    let next = (events.len() == PAGE).then(|| events.last().map(|e| e.seq)).flatten();
    let body = html! {
        h1 { "Events" }
        form.filters method="get" action="/events" {
            label { "Name starts with " input type="text" name="name" value=[f.name.as_deref()] placeholder="sluice.flow-run."; }
            label { "Deployment " input type="text" name="deployment" value=[f.deployment.as_deref()] placeholder="flow/name"; }
            button type="submit" { "Filter" }
        }
        @if events.is_empty() { (layout::empty("No events yet. Runs, webhooks and flows that emit events add them.")) } @else {
            div.table-wrap { table #events {
                thead { tr { th scope="col" { "Time" } th scope="col" { "Event" } th scope="col" { "Deployment" }
                    th scope="col" { "Run" } th scope="col" .hide-narrow { "Payload" } } }
                tbody { @for e in &events {
                    tr data-seq=(e.seq) {
                        td { (words::time(e.time)) }
                        td { code { (e.name) } }
                        td { @if let Some(d) = &e.deployment { (layout::deployment_link(d)) } @else { span.muted { "-" } } }
                        td { @if let Some(run) = &e.flow_run { a href={ "/runs/" (run) } { code { (run.get(..8).unwrap_or(run)) } } } }
                        td.hide-narrow { code { (e.payload.to_string()) } }
                    }
                } }
            } }
            @if let Some(seq) = next {
                p { a href={ "/events?before=" (seq) "&name=" (f.name.as_deref().unwrap_or("")) "&deployment=" (f.deployment.as_deref().unwrap_or("")) } { "Older events" } }
            }
        }
    };
    Ok(layout::page("Events", &session, Nav::Events, body))
}

/// `GET /automations`.
pub async fn automations(State(ui): State<Ui>, session: Session) -> UiResult<Markup> {
    let tenant = &session.principal.tenant;
    let automations = ui.dispatch.service.automations(tenant)?;
    let hooks = ui.dispatch.service.webhooks(tenant)?;
    let body = html! {
        h1 { "Automations" }
        @if automations.is_empty() {
            (layout::empty("No automations. Make one with `sluice automation create` or `triggers:` in sluice.yaml."))
        } @else {
            div.table-wrap { table #automations {
                thead { tr { th scope="col" { "Name" } th scope="col" { "When" } th scope="col" { "Then" } th scope="col" .hide-narrow { "Created" } } }
                tbody { @for a in &automations {
                    tr {
                        td { (a.name) }
                        td { code { (a.trigger.event) }
                            @if let Some(d) = &a.trigger.deployment { " of " (layout::deployment_link(d)) }
                            @if !a.trigger.tags.is_empty() { " tagged " (a.trigger.tags.join(", ")) }
                            @if a.trigger.threshold > 1 { " " (a.trigger.threshold) " times within " (a.trigger.within_seconds.unwrap_or(0)) " s" } }
                        td { code { (serde_json::to_string(&a.action).unwrap_or_default()) } }
                        td.hide-narrow { (words::time(a.created)) }
                    }
                } }
            } }
        }
        h2 { "Webhooks" }
        @if hooks.is_empty() { (layout::empty("No webhooks. Make one with `sluice webhook create`.")) } @else {
            div.table-wrap { table #webhooks {
                thead { tr { th scope="col" { "URL" } th scope="col" { "Starts" } th scope="col" { "Signed" } th scope="col" .hide-narrow { "Parameters" } } }
                tbody { @for h in &hooks {
                    tr {
                        td { code { "/hooks/" (h.id) } }
                        td { (layout::deployment_link(&h.deployment)) }
                        td { @if h.signed { "yes" } @else { "no" } }
                        td.hide-narrow { code { (serde_json::Value::Object(h.param_map.clone()).to_string()) } }
                    }
                } }
            } }
        }
    };
    Ok(layout::page("Automations", &session, Nav::Automations, body))
}
