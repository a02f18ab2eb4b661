//! The deployments list: schedule in words, next and last runs, the
//! active/paused toggle, Run (with defaults) and Custom run.

use super::fragment_or_back;
use crate::core::deployment::Deployment;
use crate::server::ui::data::{self, DeploymentSummary};
use crate::server::ui::error::{UiError, UiResult};
use crate::server::ui::layout::{self, Nav};
use crate::server::ui::session::{Change, Role, Session};
use crate::server::ui::{Ui, words};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::{Markup, html};

/// `GET /deployments`.
pub async fn list(State(ui): State<Ui>, session: Session) -> UiResult<Markup> {
    let rows = data::deployments(&ui.dispatch, &session.principal)?;
    Ok(layout::page("Deployments", &session, Nav::Deployments, table(&session, &rows)))
}

fn table(session: &Session, rows: &[DeploymentSummary]) -> Markup {
    let now = Utc::now();
    html! {
        h1 { "Deployments" }
        div data-live {
            @if rows.is_empty() {
                (layout::empty("No deployments yet. Create one with `sluice deploy FLOW.wasm --flow F --name N`."))
            } @else {
                div.table-wrap {
                    table #deployments {
                        thead { tr {
                            th scope="col" { "Deployment" }
                            th scope="col" .hide-narrow { "Artifact" }
                            th scope="col" { "Schedule" }
                            th scope="col" .hide-narrow { "Tags" }
                            th scope="col" { "Next run" }
                            th scope="col" { "Last run" }
                            th scope="col" { "Active" }
                            @if session.may(Role::Runner) { th scope="col" { span.muted { "Run" } } }
                        } }
                        tbody {
                            @for row in rows {
                                @let d = &row.deployment;
                                tr data-deployment=(d.full_name()) {
                                    td { (layout::deployment_link(&d.full_name())) }
                                    td.hide-narrow { a href={ "/artifacts/" (d.artifact) } { code { (words::digest_prefix(&d.artifact)) } } }
                                    td { @match &d.schedule { Some(s) => (words::schedule(s)), None => span.muted { "none" } } }
                                    td.hide-narrow { @for tag in &d.tags { span.tag { (tag) } } }
                                    td { @match row.next_run {
                                        Some(at) => time datetime=(at.to_rfc3339()) title=(words::time(at)) { (words::ago(at, now)) },
                                        None => span.muted { "—" },
                                    } }
                                    td { @match &row.last_run {
                                        Some((id, state)) => a href={ "/runs/" (id) } { (layout::badge(*state)) },
                                        None => span.muted { "never" },
                                    } }
                                    td { (toggle(session, d)) }
                                    @if session.may(Role::Runner) {
                                        td.actions {
                                            (layout::action(session, Role::Runner, &format!("/deployments/{}/run", d.full_name()), "Run", "run"))
                                            " "
                                            a.button.secondary href={ "/deployments/" (d.full_name()) "/custom-run" } { "Custom run" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The active/paused switch; read-only text for a token that may not change it.
pub fn toggle(session: &Session, deployment: &Deployment) -> Markup {
    let full = deployment.full_name();
    let active = !deployment.paused;
    let label = if active { "Active" } else { "Paused" };
    html! {
        @if session.may(Role::Deployer) {
            form.toggle.inline method="post" data-async
                action={ "/deployments/" (full) (if active { "/pause" } else { "/resume" }) } {
                (layout::csrf(session))
                button type="submit" role="switch" aria-checked=(active) aria-label={ "Schedule of " (full) " active" }
                    title=(if active { "Pause its schedule" } else { "Resume its schedule" }) {
                    span.track { span.thumb {} }
                    span.label { (label) }
                }
            }
        } @else {
            span.muted data-paused=(deployment.paused) { (label) }
        }
    }
}

async fn set_paused(ui: &Ui, change: &Change, headers: &HeaderMap, full: &str, paused: bool) -> UiResult<Response> {
    let deployment = data::set_paused(&ui.dispatch, &change.session.principal, full, paused)?;
    Ok(fragment_or_back(headers, toggle(&change.session, &deployment), "/deployments"))
}

/// `POST /deployments/{flow}/{name}/pause`.
pub async fn pause(
    State(ui): State<Ui>,
    Path((flow, name)): Path<(String, String)>,
    headers: HeaderMap,
    change: Change,
) -> UiResult<Response> {
    set_paused(&ui, &change, &headers, &format!("{flow}/{name}"), true).await
}

/// `POST /deployments/{flow}/{name}/resume`.
pub async fn resume(
    State(ui): State<Ui>,
    Path((flow, name)): Path<(String, String)>,
    headers: HeaderMap,
    change: Change,
) -> UiResult<Response> {
    set_paused(&ui, &change, &headers, &format!("{flow}/{name}"), false).await
}

/// `POST /deployments/{flow}/{name}/run`: a run with the deployment's defaults, then its page.
pub async fn quick_run(
    State(ui): State<Ui>,
    Path((flow, name)): Path<(String, String)>,
    change: Change,
) -> UiResult<Response> {
    let full = format!("{flow}/{name}");
    let run =
        data::create_run(&ui.dispatch, &change.session.principal, &full, Default::default()).await.map_err(|err| {
            match err {
                UiError::Invalid(message) => UiError::Invalid(format!(
                    "{full} cannot run with its defaults: {message}. Use Custom run to give the missing parameters."
                )),
                other => other,
            }
        })?;
    Ok(Redirect::to(&format!("/runs/{}", run.id)).into_response())
}
