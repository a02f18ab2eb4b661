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

/// Geometry of the runs chart, in SVG user units.
const BAR_SLOT: f64 = 40.0;
const BAR_WIDTH: f64 = 30.0;
const CHART_HEIGHT: f64 = 120.0;

/// One hour's segments, bottom up: state name, count, top and height.
fn stack(hour: &data::HourOfRuns, scale: f64) -> Vec<(&'static str, u64, f64, f64)> {
    let mut top = CHART_HEIGHT - 16.0;
    hour.counts
        .iter()
        .map(|(state, n)| {
            let height = (*n as f64 * scale).max(1.0);
            top -= height;
            (state.map_or("Unknown", |s| s.name()), *n, top, height)
        })
        .collect()
}

/// Prefect's bar chart of flow runs per interval, drawn here as SVG: one
/// stacked bar per hour of the last 24, a segment per state (its count in
/// the segment's title), and hour marks every 6 hours. No script is needed.
fn chart(hours: &[data::HourOfRuns]) -> Markup {
    let tallest = hours.iter().map(|h| h.counts.iter().map(|(_, n)| n).sum::<u64>()).max().unwrap_or(0).max(1);
    let scale = (CHART_HEIGHT - 20.0) / tallest as f64;
    let width = BAR_SLOT * hours.len() as f64;
    html! {
        figure.runs-chart {
            svg #runs-chart viewBox={ "0 0 " (width) " " (CHART_HEIGHT) } role="img"
                aria-label={ "Flow runs per hour of the last 24 hours; the tallest hour has " (tallest) } {
                @for (i, hour) in hours.iter().enumerate() {
                    @let x = i as f64 * BAR_SLOT + (BAR_SLOT - BAR_WIDTH) / 2.0;
                    @let label = hour.start.with_timezone(&chrono::Local).format("%H:00").to_string();
                    g data-hour=(label) {
                        @for (name, n, top, height) in stack(hour, scale) {
                            rect x=(format!("{x:.1}")) y=(format!("{top:.1}")) width=(BAR_WIDTH) height=(format!("{height:.1}"))
                                class={ "state-" (name) } data-count=(n) {
                                title { (label) ": " (n) " " (name) }
                            }
                        }
                        @if i % 6 == 0 {
                            text x=(format!("{:.1}", x + BAR_WIDTH / 2.0)) y=(CHART_HEIGHT - 3.0) text-anchor="middle" { (label) }
                        }
                    }
                }
            }
        }
    }
}

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
                (chart(&dash.by_hour))
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
