//! The dashboard: the last day's runs by state, late runs, failing
//! deployments, workers online and the newest runs.

use super::runs::run_table;
use crate::core::state::ALL_STATES;
use crate::server::ui::data;
use crate::server::ui::error::UiResult;
use crate::server::ui::layout::{self, Nav};
use crate::server::ui::session::Session;
use crate::server::ui::{Ui, words};
use axum::extract::State;
use chrono::Utc;
use maud::{Markup, html};

/// `GET /`.
pub async fn page(State(ui): State<Ui>, session: Session) -> UiResult<Markup> {
    let dash = data::dashboard(&ui.dispatch, &session.principal)?;
    let now = Utc::now();
    let total: u64 = dash.last_day.iter().map(|(_, n)| n).sum();
    let body = html! {
        h1 { "Dashboard" }
        div data-live {
            section aria-labelledby="day" {
                h2 #day { "Flow runs in the last 24 h: " (total) }
                ul.figures #runs-by-state {
                    @for state in ALL_STATES {
                        @let n = dash.last_day.iter().filter(|(s, _)| *s == Some(state)).map(|(_, n)| *n).sum::<u64>();
                        @if n > 0 {
                            li { a href={ "/runs?since=24h&state=" (state.name()) } {
                                span.n { (n) } (layout::badge(Some(state)))
                            } }
                        }
                    }
                    @if total == 0 { li { span.n { "0" } span.muted { "no runs" } } }
                }
            }
            div.grid {
                section.panel aria-labelledby="late" {
                    h2 #late { "Late runs: " (dash.late_count) }
                    @if dash.late.is_empty() { (layout::empty("None: every due run was taken.")) } @else {
                        ul { @for run in &dash.late {
                            li { (layout::run_link(&run.id, &run.name)) " "
                                @if let Some(d) = &run.deployment { span.muted { (d) } " " }
                                @if let Some(at) = run.scheduled { "due " (words::ago(at, now)) } }
                        } }
                        @if dash.late_count > dash.late.len() as u64 { a href="/runs?state=Late" { "All late runs" } }
                    }
                }
                section.panel aria-labelledby="failing" {
                    h2 #failing { "Failing deployments: " (dash.failing.len()) }
                    @if dash.failing.is_empty() { (layout::empty("None: every deployment's last run succeeded.")) } @else {
                        ul { @for (name, run) in &dash.failing {
                            li { (layout::deployment_link(name)) " " a href={ "/runs/" (run.id) } { (layout::badge(run.state)) }
                                @if let Some(m) = &run.message { " " span.muted { (m) } } }
                        } }
                    }
                }
                section.panel aria-labelledby="workers" {
                    h2 #workers { "Workers online: " (dash.workers.len()) }
                    @if dash.workers.is_empty() { (layout::empty("No worker sent a heartbeat in the last minute.")) } @else {
                        ul { @for w in &dash.workers {
                            li { (w.name) " " span.muted { "seen " (words::ago(w.last_seen, now)) ", running " (w.running) } }
                        } }
                    }
                }
            }
            h2 { "Newest flow runs" }
            (run_table(&dash.recent))
            p { a href="/runs" { "All flow runs" } }
        }
    };
    Ok(layout::page("Dashboard", &session, Nav::Dashboard, body))
}
