//! Artifacts: digest, size, the flows each holds with their parameter
//! schemas, the imports it needs, and the deployments that run it.

use crate::server::ui::data;
use crate::server::ui::error::UiResult;
use crate::server::ui::layout::{self, Nav};
use crate::server::ui::session::Session;
use crate::server::ui::{Ui, words};
use axum::extract::{Path, State};
use maud::{Markup, html};

/// `GET /artifacts`.
pub async fn list(State(ui): State<Ui>, session: Session) -> UiResult<Markup> {
    let artifacts = data::artifacts(&ui.dispatch, &session.principal)?;
    let users = data::deployments_per_artifact(&ui.dispatch, &session.principal)?;
    let body = html! {
        h1 { "Artifacts" }
        @if artifacts.is_empty() { (layout::empty("No artifacts yet. Push one with `sluice push FLOW.wasm`.")) } @else {
            div.table-wrap { table #artifacts {
                thead { tr { th scope="col" { "Digest" } th scope="col" { "Size" } th scope="col" { "Flows" }
                    th scope="col" .hide-narrow { "Pushed" } th scope="col" { "Deployments" } } }
                tbody { @for a in &artifacts {
                    tr {
                        td { a href={ "/artifacts/" (a.digest) } { code { (words::digest_prefix(&a.digest)) } } }
                        td { (words::bytes(a.size)) }
                        td { (a.description.flow_names()) }
                        td.hide-narrow { (words::time(a.pushed_at)) }
                        td { (users.get(&a.digest).copied().unwrap_or(0)) }
                    }
                } }
            } }
        }
    };
    Ok(layout::page("Artifacts", &session, Nav::Artifacts, body))
}

/// `GET /artifacts/{digest}`.
pub async fn detail(State(ui): State<Ui>, Path(digest): Path<String>, session: Session) -> UiResult<Markup> {
    let (meta, users) = data::artifact(&ui.dispatch, &session.principal, &digest)?;
    let body = html! {
        h1 { "Artifact " code { (words::digest_prefix(&meta.digest)) } }
        dl.facts.card {
            dt { "Digest" } dd { code { (meta.digest) } }
            dt { "Size" } dd { (words::bytes(meta.size)) " (" (meta.size) " bytes)" }
            dt { "Version" } dd { (meta.description.version) }
            dt { "Pushed" } dd { (words::time(meta.pushed_at)) }
            dt { "Imports" } dd { @if meta.imports.is_empty() { span.muted { "none" } }
                ul { @for i in &meta.imports { li { code { (i) } } } } }
            dt { "Deployments" } dd { @if users.is_empty() { span.muted { "none" } }
                ul { @for d in &users { li { (layout::deployment_link(&d.full_name())) } } } }
        }
        h2 { "Flows" }
        @for flow in &meta.description.flows {
            section.panel data-flow=(flow.name) {
                h3 { (flow.name) }
                p { (flow.description) }
                details { summary { "Parameter schema" } (layout::json_block(&flow.parameters_schema)) }
            }
        }
        h2 { "Tasks" }
        div.table-wrap { table {
            thead { tr { th scope="col" { "Task" } th scope="col" { "Description" } th scope="col" { "Retries" } th scope="col" .hide-narrow { "Policy" } } }
            tbody { @for task in &meta.description.tasks {
                tr { td { (task.name) } td { (task.description) } td { (task.policy.retries) }
                    td.hide-narrow { code { (serde_json::to_string(&task.policy).unwrap_or_default()) } } }
            } }
        } }
    };
    Ok(layout::page("Artifact", &session, Nav::Artifacts, body))
}
