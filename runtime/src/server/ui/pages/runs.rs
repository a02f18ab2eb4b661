//! The flow runs list: filters by state, flow, deployment, tag and time,
//! and keyset paging (a cursor, not an offset) so it stays fast at any depth.

use crate::core::state::{ALL_STATES, StateType};
use crate::server::ui::data::{self, RunQuery};
use crate::server::ui::error::UiResult;
use crate::server::ui::layout::{self, Nav};
use crate::server::ui::session::Session;
use crate::server::ui::{Ui, words};
use crate::store::FlowRunRow;
use axum::extract::{Query, State};
use chrono::{DateTime, Duration, Utc};
use maud::{Markup, html};
use serde::Deserialize;

/// Runs per page.
const PAGE: usize = 50;

/// The list's query string.
#[derive(Deserialize, Default)]
pub struct Filters {
    state: Option<String>,
    flow: Option<String>,
    deployment: Option<String>,
    tag: Option<String>,
    since: Option<String>,
    before: Option<String>,
}

const SINCE: [(&str, &str, i64); 5] = [
    ("", "Any time", 0),
    ("1h", "Last hour", 1),
    ("24h", "Last 24 h", 24),
    ("7d", "Last 7 days", 168),
    ("30d", "Last 30 days", 720),
];

fn non_empty(value: &Option<String>) -> Option<String> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_string)
}

impl Filters {
    /// The query, and what in the filters was not understood.
    fn query(&self, now: DateTime<Utc>) -> (RunQuery, Vec<String>) {
        let mut problems = Vec::new();
        let state = non_empty(&self.state).and_then(|s| {
            let parsed = StateType::parse(&s);
            if parsed.is_none() {
                problems.push(format!("`{s}` is not a state; pick one from the list"));
            }
            parsed
        });
        let since = non_empty(&self.since).and_then(|s| match SINCE.iter().find(|(key, ..)| *key == s) {
            Some((_, _, hours)) => Some(now - Duration::hours(*hours)),
            None => {
                problems.push(format!("`{s}` is not a time range; use 1h, 24h, 7d or 30d"));
                None
            }
        });
        let before = non_empty(&self.before).and_then(|cursor| {
            let parsed = cursor.split_once('|').and_then(|(at, id)| {
                Some((DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc), id.to_string()))
            });
            if parsed.is_none() {
                problems.push("the page cursor is damaged; showing the newest runs".into());
            }
            parsed
        });
        let query = RunQuery {
            state,
            flow: non_empty(&self.flow),
            deployment: non_empty(&self.deployment),
            tag: non_empty(&self.tag),
            since,
            before,
            limit: PAGE,
        };
        (query, problems)
    }

    /// This query string with another cursor.
    fn with_before(&self, cursor: Option<String>) -> String {
        let pairs = [
            ("state", non_empty(&self.state)),
            ("flow", non_empty(&self.flow)),
            ("deployment", non_empty(&self.deployment)),
            ("tag", non_empty(&self.tag)),
            ("since", non_empty(&self.since)),
            ("before", cursor),
        ];
        let query: Vec<String> =
            pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", words::url_encode(v)))).collect();
        format!("/runs?{}", query.join("&"))
    }
}

/// `GET /runs`.
pub async fn list(State(ui): State<Ui>, Query(filters): Query<Filters>, session: Session) -> UiResult<Markup> {
    let (query, problems) = filters.query(Utc::now());
    let page = data::runs(&ui.dispatch, &session.principal, &query)?;
    let selected_state = query.state.map(StateType::name);
    let since = non_empty(&filters.since).unwrap_or_default();
    let body = html! {
        h1 { "Flow runs" }
        form.filters.card method="get" action="/runs" role="search" aria-label="Filter runs" {
            div { label for="f-state" { "State" }
                select #f-state name="state" {
                    option value="" { "Any state" }
                    @for state in ALL_STATES {
                        option value=(state.name()) selected[selected_state == Some(state.name())] { (state.name()) }
                    }
                }
            }
            div { label for="f-flow" { "Flow" } input #f-flow type="text" name="flow" value=[non_empty(&filters.flow)]; }
            div { label for="f-deployment" { "Deployment" } input #f-deployment type="text" name="deployment" placeholder="flow/name" value=[non_empty(&filters.deployment)]; }
            div { label for="f-tag" { "Tag" } input #f-tag type="text" name="tag" value=[non_empty(&filters.tag)]; }
            div { label for="f-since" { "Created" }
                select #f-since name="since" {
                    @for (key, label, _) in SINCE { option value=(key) selected[since == key] { (label) } }
                }
            }
            div { button type="submit" { "Filter" } " " a href="/runs" { "Clear" } }
        }
        @for problem in &problems { p.alert.error-message role="alert" { (problem) } }
        div data-live[query.before.is_none()] {
            (run_table(&page.runs))
        }
        nav.pager aria-label="Pages" {
            @if query.before.is_some() { a href=(filters.with_before(None)) { "← Newest" } }
            @if let Some((created, id)) = &page.next {
                a rel="next" href=(filters.with_before(Some(format!("{}|{id}", created.to_rfc3339())))) { "Older →" }
            }
        }
    };
    Ok(layout::page("Flow runs", &session, Nav::Runs, body))
}

/// A table of flow runs.
pub fn run_table(runs: &[FlowRunRow]) -> Markup {
    let now = Utc::now();
    html! {
        @if runs.is_empty() {
            (layout::empty("No flow runs match."))
        } @else {
            div.table-wrap {
                table.runs {
                    thead { tr {
                        th scope="col" { "Run" }
                        th scope="col" { "State" }
                        th scope="col" { "Deployment / flow" }
                        th scope="col" .hide-narrow { "Created" }
                        th scope="col" { "Duration" }
                    } }
                    tbody {
                        @for run in runs {
                            tr data-run=(run.id) {
                                td { (layout::run_link(&run.id, &run.name)) }
                                td { (layout::badge(run.state)) }
                                td { @match &run.deployment { Some(d) => (layout::deployment_link(d)), None => (run.flow) } }
                                td.hide-narrow { time datetime=(run.created.to_rfc3339()) title=(words::time(run.created)) { (words::ago(run.created, now)) } }
                                td { @match (run.started, run.ended) {
                                    (Some(start), Some(end)) => (words::duration(start, end)),
                                    (Some(start), None) => { (words::duration(start, now)) "…" },
                                    _ => span.muted { "—" },
                                } }
                            }
                        }
                    }
                }
            }
        }
    }
}
