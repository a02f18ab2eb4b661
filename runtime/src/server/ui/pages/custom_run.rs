//! Custom run: a form generated from the flow's parameter schema, filled
//! with the deployment's parameters and the schema's defaults. Bad input is
//! shown again with each problem next to its field, and no run is created.

use crate::core::deployment::Deployment;
use crate::core::describe::FlowDescription;
use crate::server::ui::Ui;
use crate::server::ui::data;
use crate::server::ui::error::UiResult;
use crate::server::ui::layout::{self, Nav};
use crate::server::ui::schema_form::{self, FieldErrors, Shown};
use crate::server::ui::session::{Change, Session};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// The deployment's parameters over the schema's top-level defaults.
fn current(flow: &FlowDescription, deployment: &Deployment) -> Map<String, Value> {
    let mut values = deployment.parameters.clone();
    if let Some(properties) = flow.parameters_schema.get("properties").and_then(Value::as_object) {
        for (key, property) in properties {
            if let Some(default) = property.get("default")
                && !values.contains_key(key)
            {
                values.insert(key.clone(), default.clone());
            }
        }
    }
    values
}

fn form_page(
    session: &Session,
    deployment: &Deployment,
    flow: &FlowDescription,
    shown: &Shown<'_>,
    errors: &FieldErrors,
) -> Markup {
    let full = deployment.full_name();
    let general = errors.get("");
    let body = html! {
        h1 { "Custom run of " (layout::deployment_link(&full)) }
        p.muted { (flow.description) }
        @if !errors.is_empty() {
            div.alert.error-message role="alert" #form-errors {
                @match general {
                    Some(message) => (message),
                    None => {
                        "No run was created: some parameters are not right."
                        ul { @for (path, message) in errors.iter().filter(|(p, _)| !p.is_empty()) {
                            li { a href={ "#p-" (path.replace('.', "-")) } { code { (path) } } ": " (message) }
                        } }
                    }
                }
            }
        }
        form.card method="post" action={ "/deployments/" (full) "/custom-run" } novalidate {
            (layout::csrf(session))
            (schema_form::render(&flow.parameters_schema, shown, errors))
            p { button type="submit" { "Run" } " " a href="/deployments" { "Cancel" } }
        }
    };
    layout::page(&format!("Custom run of {full}"), session, Nav::Deployments, body)
}

/// `GET /deployments/{flow}/{name}/custom-run`.
pub async fn form(
    State(ui): State<Ui>,
    Path((flow, name)): Path<(String, String)>,
    session: Session,
) -> UiResult<Markup> {
    let deployment = data::deployment(&ui.dispatch, &session.principal, &format!("{flow}/{name}"))?;
    let description = data::flow_of(&ui.dispatch, &session.principal, &deployment)?;
    let values = Value::Object(current(&description, &deployment));
    Ok(form_page(&session, &deployment, &description, &Shown::Values(&values), &FieldErrors::new()))
}

/// `POST /deployments/{flow}/{name}/custom-run`: a run with these parameters, or the form with its errors.
pub async fn submit(
    State(ui): State<Ui>,
    Path((flow, name)): Path<(String, String)>,
    change: Change,
) -> UiResult<Response> {
    let p = &change.session.principal;
    let deployment = data::deployment(&ui.dispatch, p, &format!("{flow}/{name}"))?;
    let description = data::flow_of(&ui.dispatch, p, &deployment)?;
    let submitted: HashMap<String, String> = change.fields.iter().cloned().collect();
    let (params, mut errors) = schema_form::parse(&description.parameters_schema, &submitted);
    if errors.is_empty() {
        let mut merged = current(&description, &deployment);
        merged.extend(params.clone());
        if let Err(problems) = schema_form::validate(&description.parameters_schema, &Value::Object(merged)) {
            errors = problems;
        }
    }
    if !errors.is_empty() {
        let page = form_page(&change.session, &deployment, &description, &Shown::Submitted(&submitted), &errors);
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    }
    let run = data::create_run(&ui.dispatch, p, &deployment.full_name(), params).await?;
    Ok(Redirect::to(&format!("/runs/{}", run.id)).into_response())
}
