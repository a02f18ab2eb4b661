//! A flow run's page: parameters, result, state history, a timeline of its
//! task runs and subflows (retries visible), the subflow tree, live logs
//! and Cancel. The live parts are re-rendered by the event stream (`sse.rs`).

use crate::core::state::StateType;
use crate::server::ui::data::{self, LogLine, RunDetail};
use crate::server::ui::error::UiResult;
use crate::server::ui::layout::{self, Nav};
use crate::server::ui::session::{Change, Role, Session};
use crate::server::ui::{Ui, words};
use crate::store::{FlowRunRow, StateRow};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use maud::{Markup, html};

/// Log lines shown when the page opens; later ones stream in.
pub const INITIAL_LOG_LINES: usize = 500;

/// `GET /runs/{id}`.
pub async fn page(State(ui): State<Ui>, Path(id): Path<String>, session: Session) -> UiResult<Markup> {
    let detail = data::run(&ui.dispatch, &session.principal, &id)?;
    let logs = data::last_logs(&ui.dispatch, &session.principal, &detail.run.id, INITIAL_LOG_LINES)?;
    let after = logs.last().map_or(-1, |l| l.seq);
    let run = &detail.run;
    let body = html! {
        // A finished run's page has nothing to follow.
        @let live = run.state.is_none_or(|s| !s.is_terminal());
        div data-stream=[live.then(|| format!("/runs/{}/events", run.id))] data-after=(after) {
            h1 { (run.name) " " span #stream-status .stream-status aria-live="polite" {} }
            dl.facts.card {
                dt { "Flow" } dd { (run.flow) }
                dt { "Deployment" } dd { @match &run.deployment { Some(d) => (layout::deployment_link(d)), None => span.muted { "none (ad hoc)" } } }
                @if let Some(parent) = &run.parent { dt { "Subflow of" } dd { a href={ "/runs/" (parent) } { "parent run" } } }
                dt { "Id" } dd { code { (run.id) } }
                dt { "Artifact" } dd { a href={ "/artifacts/" (run.artifact) } { code { (words::digest_prefix(&run.artifact)) } } }
                dt { "Created" } dd { (words::time(run.created)) }
            }
            section #run-live aria-live="off" { (panels(&session, &detail)) }
            section.panel aria-labelledby="params" {
                h2 #params { "Parameters" }
                (layout::json_block(&run.parameters))
            }
            section aria-labelledby="logs-title" {
                h2 #logs-title { "Logs" }
                div #logs .logs tabindex="0" role="region" aria-label="Log lines" {
                    table {
                        thead { tr { th scope="col" { "Time" } th scope="col" { "Level" } th scope="col" { "Run" } th scope="col" { "Message" } } }
                        tbody { (log_rows(&logs)) }
                    }
                    @if logs.is_empty() { p #logs-empty .empty { "No log lines yet." } }
                }
            }
        }
    };
    Ok(layout::page(&format!("Flow run {}", run.name), &session, Nav::Runs, body))
}

/// Log lines as table rows.
pub fn log_rows(lines: &[LogLine]) -> Markup {
    html! {
        @for line in lines {
            tr data-seq=(line.seq) class={ "level-" (line.row.level.name()) } {
                td { (words::clock(line.row.time)) }
                td { (line.row.level.name()) }
                td { (line.row.run_name) }
                td.message { (line.row.message) }
            }
        }
    }
}

fn cancellable(state: Option<StateType>) -> bool {
    state.is_some_and(|s| !s.is_terminal() && s != StateType::Cancelling)
}

fn retryable(run: &FlowRunRow) -> bool {
    run.parent.is_none()
        && matches!(
            run.state,
            Some(StateType::Failed | StateType::TimedOut | StateType::Crashed | StateType::Cancelled)
        )
}

/// The parts of the page that change while the run runs.
pub fn panels(session: &Session, detail: &RunDetail) -> Markup {
    let run = &detail.run;
    let now = Utc::now();
    html! {
        div.card.status {
            p #run-state { "State: " (layout::badge(run.state))
                @if let Some(message) = &run.message { " " span.muted { (message) } } }
            p { @match (run.started, run.ended) {
                (Some(start), Some(end)) => { "Ran " (words::duration(start, end)) ", ended " (words::time(end)) }
                (Some(start), None) => { "Running for " (words::duration(start, now)) }
                _ => { @if let Some(at) = run.scheduled { "Due " (words::ago(at, now)) } }
            } }
            @if run.attempt > 1 { p { "Attempt " (run.attempt) ": tasks and subflows earlier attempts completed were replayed from the journal, not run again." } }
            @if cancellable(run.state) {
                (layout::action(session, Role::Runner, &format!("/runs/{}/cancel", run.id), "Cancel run", "danger"))
            }
            @if run.state == Some(StateType::Paused) && session.may(Role::Runner) {
                p { a.button #resume-link href={ "/runs/" (run.id) "/resume" } { "Provide input and resume" } }
            }
            @if retryable(run) {
                (layout::action(session, Role::Runner, &format!("/runs/{}/retry", run.id), "Retry from the journal", "run"))
            }
        }
        @if let Some(result) = &run.result {
            section.panel aria-labelledby="result" { h2 #result { "Result" } (layout::json_block(result)) }
        }
        section.panel aria-labelledby="timeline-title" {
            h2 #timeline-title { "Timeline" }
            (timeline(detail, now))
        }
        div.grid {
            section.panel aria-labelledby="history" {
                h2 #history { "State history" }
                (history(&detail.states))
            }
            section.panel aria-labelledby="tree" {
                h2 #tree { "Subflows" }
                @if detail.subflows.is_empty() { (layout::empty("No subflows.")) } @else { (tree(&detail.subflows)) }
            }
        }
        section aria-labelledby="tasks-title" {
            h2 #tasks-title { "Task runs" }
            (task_table(detail))
        }
    }
}

fn history(states: &[StateRow]) -> Markup {
    html! {
        ol.history {
            @for s in states {
                li { (layout::badge(Some(s.state))) " " time datetime=(s.time.to_rfc3339()) { (words::clock(s.time)) }
                    @if s.attempt > 1 { " attempt " (s.attempt) }
                    @if let Some(m) = &s.message { " — " span.muted { (m) } } }
            }
        }
    }
}

fn tree(subflows: &[RunDetail]) -> Markup {
    html! {
        ul.tree {
            @for sub in subflows {
                li { (layout::run_link(&sub.run.id, &sub.run.name)) " " span.muted { (sub.run.flow) } " " (layout::badge(sub.run.state))
                    " " span.muted { (sub.tasks.len()) " task runs" }
                    @if !sub.subflows.is_empty() { (tree(&sub.subflows)) } }
            }
        }
    }
}

fn task_table(detail: &RunDetail) -> Markup {
    let mut rows = Vec::new();
    collect_tasks(detail, &mut rows);
    html! {
        @if rows.is_empty() { (layout::empty("No task runs.")) } @else {
            div.table-wrap { table #task-runs {
                thead { tr { th scope="col" { "Task run" } th scope="col" { "In" } th scope="col" { "State" } th scope="col" { "Attempts" } th scope="col" { "Run by" } th scope="col" .hide-narrow { "Message" } } }
                tbody { @for (owner, task) in rows {
                    tr data-task=(task.task.name) {
                        td { (task.task.name) }
                        td { (owner) }
                        td { (layout::badge(task.task.state)) }
                        td { (task.task.attempts) @if task.task.attempts > 1 { " " span.retries { "(retried)" } } }
                        td { (run_by(detail.run.attempt, task.task.call.as_ref())) }
                        td.hide-narrow { @if let Some(m) = &task.task.message { (m) } }
                    }
                } }
            } }
        }
    }
}

/// Which flow attempt ran a task run, and whether later attempts replayed it.
fn run_by(flow_attempt: u32, call: Option<&crate::core::journal::CallPosition>) -> Markup {
    let Some(call) = call else { return html! { span.muted { "-" } } };
    html! {
        "attempt " (call.flow_attempt)
        @if call.flow_attempt < flow_attempt { " " span.muted.replayed { "(replayed after)" } }
    }
}

fn collect_tasks<'a>(detail: &'a RunDetail, rows: &mut Vec<(&'a str, &'a data::TaskDetail)>) {
    for task in &detail.tasks {
        rows.push((&detail.run.name, task));
    }
    for sub in &detail.subflows {
        collect_tasks(sub, rows);
    }
}

/// One bar of the timeline.
struct Bar<'a> {
    label: String,
    depth: usize,
    states: &'a [StateRow],
    attempts: u32,
    link: Option<&'a FlowRunRow>,
}

fn bars<'a>(detail: &'a RunDetail, depth: usize, out: &mut Vec<Bar<'a>>) {
    // Tasks and subflows in the order they were created.
    let mut items: Vec<(DateTime<Utc>, Bar<'a>, Option<&'a RunDetail>)> = Vec::new();
    for task in &detail.tasks {
        let bar = Bar {
            label: task.task.name.clone(),
            depth,
            states: &task.states,
            attempts: task.task.attempts,
            link: None,
        };
        items.push((task.task.created, bar, None));
    }
    for sub in &detail.subflows {
        let bar = Bar {
            label: format!("{} (subflow)", sub.run.flow),
            depth,
            states: &sub.states,
            attempts: 1,
            link: Some(&sub.run),
        };
        items.push((sub.run.created, bar, Some(sub)));
    }
    items.sort_by_key(|(at, ..)| *at);
    for (_, bar, sub) in items {
        out.push(bar);
        if let Some(sub) = sub {
            bars(sub, depth + 1, out);
        }
    }
}

/// How long a task run or subflow took, from its first `Running` to its
/// final state (`None` while it runs, or when it never ran, as a cached task).
fn took(states: &[StateRow]) -> Option<String> {
    let started = states.iter().find(|s| s.state == StateType::Running)?.time;
    let last = states.last().filter(|s| s.state.is_terminal())?;
    Some(words::duration(started, last.time))
}

/// A Gantt chart in SVG (geometry in attributes, so no inline styles are needed).
fn timeline(detail: &RunDetail, now: DateTime<Utc>) -> Markup {
    let mut rows = Vec::new();
    bars(detail, 0, &mut rows);
    let run = &detail.run;
    let start =
        detail.states.iter().find(|s| !matches!(s.state, StateType::Scheduled | StateType::Late)).map(|s| s.time);
    let Some(start) = start.or(run.started) else {
        return layout::empty("Nothing has run yet.");
    };
    let end = run.ended.unwrap_or(now).max(start + chrono::Duration::milliseconds(1));
    let span = (end - start).num_microseconds().unwrap_or(1).max(1) as f64;
    let x =
        |at: DateTime<Utc>| (((at - start).num_microseconds().unwrap_or(0) as f64 / span) * 1000.0).clamp(0.0, 1000.0);
    html! {
        p.hint { (words::time(start)) " → " (if run.ended.is_some() { words::time(end) } else { "now".to_string() }) " (" (words::duration(start, end)) ")" }
        @if rows.is_empty() { (layout::empty("No task runs or subflows.")) }
        div.timeline role="list" {
            @for bar in &rows {
                div class={ "label depth-" (bar.depth.min(3)) } role="listitem" data-label=(bar.label) {
                    @match bar.link { Some(r) => (layout::run_link(&r.id, &bar.label)), None => (bar.label) }
                    @if bar.attempts > 1 { " " span.retries title="Attempts" { "×" (bar.attempts) " attempts" } }
                    @if let Some(took) = took(bar.states) { " " span.duration title="Duration" { (took) } }
                }
                svg viewBox="0 0 1000 10" preserveAspectRatio="none" role="img"
                    aria-label={ (bar.label) ": " (bar.states.last().map_or("no state", |s| s.state.name())) } {
                    @for (i, s) in bar.states.iter().enumerate() {
                        @let until = bar.states.get(i + 1).map(|n| n.time).unwrap_or(if s.state.is_terminal() { s.time } else { end });
                        @let left = x(s.time);
                        @let width = (x(until) - left).max(if s.state.is_terminal() { 3.0 } else { 1.0 });
                        rect x=(format!("{:.1}", left.min(1000.0 - width))) y="0" width=(format!("{width:.1}")) height="10" class={ "state-" (s.state.name()) } {
                            title { (s.state.name()) " at " (words::clock(s.time)) @if s.attempt > 1 { " (attempt " (s.attempt) ")" } }
                        }
                    }
                }
            }
        }
    }
}

/// `POST /runs/{id}/retry`.
pub async fn retry(
    State(ui): State<Ui>,
    Path(id): Path<String>,
    headers: HeaderMap,
    change: Change,
) -> UiResult<Response> {
    data::retry(&ui.dispatch, &change.session.principal, &id).await?;
    if super::from_script(&headers) {
        let detail = data::run(&ui.dispatch, &change.session.principal, &id)?;
        return Ok(panels(&change.session, &detail).into_response());
    }
    Ok(Redirect::to(&format!("/runs/{id}")).into_response())
}

/// `POST /runs/{id}/cancel`.
pub async fn cancel(
    State(ui): State<Ui>,
    Path(id): Path<String>,
    headers: HeaderMap,
    change: Change,
) -> UiResult<Response> {
    data::cancel(&ui.dispatch, &change.session.principal, &id)?;
    if super::from_script(&headers) {
        let detail = data::run(&ui.dispatch, &change.session.principal, &id)?;
        return Ok(panels(&change.session, &detail).into_response());
    }
    Ok(Redirect::to(&format!("/runs/{id}")).into_response())
}
