//! Resuming a run paused for input: a form generated from the schema the
//! flow paused with (`schema_form`). Input that does not fit is shown again
//! with each problem next to its field, and the run stays paused.

use crate::core::pause::Waiting;
use crate::server::ui::Ui;
use crate::server::ui::data;
use crate::server::ui::error::UiResult;
use crate::server::ui::layout::{self, Nav};
use crate::server::ui::schema_form::{self, FieldErrors, Shown};
use crate::server::ui::session::{Change, Session};
use crate::store::FlowRunRow;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde_json::Value;
use std::collections::HashMap;

fn form_page(
    session: &Session,
    run: &FlowRunRow,
    waiting: &Waiting,
    shown: &Shown<'_>,
    errors: &FieldErrors,
) -> Markup {
    let schema = &waiting.request.input_schema;
    let body = html! {
        h1 { "Resume " a href={ "/runs/" (run.id) } { (run.name) } }
        p #pause-prompt .card { (waiting.request.prompt) }
        @if let Some(deadline) = waiting.deadline {
            p.muted { "Without input by " (deadline.to_rfc3339()) ", the run "
                @if waiting.request.default.is_some() { "goes on with the flow's default." } @else { "fails." } }
        }
        @if !errors.is_empty() {
            div.alert.error-message role="alert" #form-errors {
                "The run was not resumed: the input does not fit."
                ul { @for (path, message) in errors {
                    li { @if !path.is_empty() { code { (path) } ": " } (message) }
                } }
            }
        }
        form.card method="post" action={ "/runs/" (run.id) "/resume" } novalidate {
            (layout::csrf(session))
            (schema_form::render(schema, shown, errors))
            p { button type="submit" { "Resume" } " " a href={ "/runs/" (run.id) } { "Cancel" } }
        }
    };
    layout::page(&format!("Resume {}", run.name), session, Nav::Runs, body)
}

/// `GET /runs/{id}/resume`.
pub async fn form(State(ui): State<Ui>, Path(id): Path<String>, session: Session) -> UiResult<Markup> {
    let (run, waiting) = data::pause(&ui.dispatch, &session.principal, &id)?;
    let defaults = waiting.request.default.clone().unwrap_or(Value::Object(Default::default()));
    Ok(form_page(&session, &run, &waiting, &Shown::Values(&defaults), &FieldErrors::new()))
}

/// `POST /runs/{id}/resume`: resumes the run with the input, or shows the form with its errors.
pub async fn submit(State(ui): State<Ui>, Path(id): Path<String>, change: Change) -> UiResult<Response> {
    let p = &change.session.principal;
    let (run, waiting) = data::pause(&ui.dispatch, p, &id)?;
    let schema = &waiting.request.input_schema;
    let submitted: HashMap<String, String> = change.fields.iter().cloned().collect();
    let (input, mut errors) = schema_form::parse(schema, &submitted);
    let input = Value::Object(input);
    if errors.is_empty()
        && let Err(problems) = schema_form::validate(schema, &input)
    {
        errors = problems;
    }
    if !errors.is_empty() {
        let page = form_page(&change.session, &run, &waiting, &Shown::Submitted(&submitted), &errors);
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    }
    data::resume(&ui.dispatch, p, &run.id, input).await?;
    Ok(Redirect::to(&format!("/runs/{}", run.id)).into_response())
}
