//! A deployment's schedule from its page: set (add or replace) an interval
//! or a cron expression with its time zone, or remove it; pausing is the
//! page's active/paused switch. Input is checked by `core/schedule.rs`, as
//! the CLI's is, and a refusal is shown next to the form.

use super::deployment::render;
use crate::core::deployment::Deployment;
use crate::core::duration::parse_duration;
use crate::core::schedule::Schedule;
use crate::server::ui::error::UiResult;
use crate::server::ui::session::{Change, Role, Session};
use crate::server::ui::{Ui, data, layout};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

/// The schedule panel: the form (deployers only) and a refusal, if any.
pub fn panel(session: &Session, d: &Deployment, refusal: Option<&str>) -> Markup {
    let full = d.full_name();
    let (interval, cron, timezone) = match &d.schedule {
        Some(Schedule::Interval { seconds, .. }) => (seconds.to_string(), String::new(), "UTC".to_string()),
        Some(Schedule::Cron { expression, timezone }) => (String::new(), expression.clone(), timezone.clone()),
        None => (String::new(), String::new(), "UTC".to_string()),
    };
    let cron_checked = matches!(d.schedule, Some(Schedule::Cron { .. }));
    html! {
        @if session.may(Role::Deployer) {
            section.panel #schedule aria-labelledby="schedule-title" {
                h2 #schedule-title { @if d.schedule.is_some() { "Edit the schedule" } @else { "Add a schedule" } }
                @if let Some(refusal) = refusal { p.error role="alert" #schedule-error { (refusal) } }
                form method="post" action={ "/deployments/" (full) "/schedule" } {
                    (layout::csrf(session))
                    fieldset {
                        legend { "Kind" }
                        label { input type="radio" name="kind" value="interval" checked[!cron_checked]; " every" }
                        " "
                        label { input type="radio" name="kind" value="cron" checked[cron_checked]; " cron" }
                    }
                    label for="schedule-interval" { "Interval (seconds, or 30s, 5m, 2h, 1d)" }
                    input #schedule-interval name="interval" value=(interval) placeholder="60";
                    label for="schedule-cron" { "Cron expression" }
                    input #schedule-cron name="cron" value=(cron) placeholder="0 2 * * *";
                    label for="schedule-timezone" { "Time zone of the cron expression" }
                    input #schedule-timezone name="timezone" value=(timezone) placeholder="Europe/Paris";
                    button type="submit" { "Save schedule" }
                }
                @if d.schedule.is_some() {
                    (layout::action(session, Role::Deployer, &format!("/deployments/{full}/schedule/remove"), "Remove schedule", "secondary remove-schedule"))
                }
            }
        }
    }
}

/// The schedule the form describes, checked as the CLI checks `--interval`
/// and `--cron` / `--timezone`.
fn read(fields: &[(String, String)]) -> Result<Schedule, String> {
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.trim());
    match field("kind") {
        "interval" => {
            let text = field("interval");
            if text.is_empty() {
                return Err("give an interval, such as 60 or 5m".to_string());
            }
            let seconds = match text.parse::<u64>() {
                Ok(seconds) => seconds,
                Err(_) => parse_duration(text).map_err(|e| format!("the interval `{text}`: {e}"))?.as_secs(),
            };
            Schedule::interval(seconds)
        }
        "cron" => {
            let timezone = Some(field("timezone")).filter(|t| !t.is_empty());
            Schedule::cron(field("cron"), timezone)
        }
        other => Err(format!("`{other}` is not a kind of schedule: choose every (an interval) or cron")),
    }
}

/// `POST /deployments/{flow}/{name}/schedule`: sets the schedule, or shows
/// the page again with the refusal (422).
pub async fn set(
    State(ui): State<Ui>,
    Path((flow, name)): Path<(String, String)>,
    change: Change,
) -> UiResult<Response> {
    let full = format!("{flow}/{name}");
    match read(&change.fields) {
        Ok(schedule) => {
            data::set_schedule(&ui.dispatch, &change.session.principal, &full, Some(schedule))?;
            Ok(Redirect::to(&format!("/deployments/{full}")).into_response())
        }
        Err(refusal) => {
            let page = render(&ui, &change.session, &full, Some(&refusal))?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

/// `POST /deployments/{flow}/{name}/schedule/remove`.
pub async fn remove(
    State(ui): State<Ui>,
    Path((flow, name)): Path<(String, String)>,
    change: Change,
) -> UiResult<Response> {
    let full = format!("{flow}/{name}");
    data::set_schedule(&ui.dispatch, &change.session.principal, &full, None)?;
    Ok(Redirect::to(&format!("/deployments/{full}")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn intervals_and_crons_are_checked_like_the_cli() {
        assert_eq!(
            read(&fields(&[("kind", "interval"), ("interval", "5m")])).unwrap(),
            Schedule::interval(300).unwrap()
        );
        assert_eq!(
            read(&fields(&[("kind", "interval"), ("interval", "90")])).unwrap(),
            Schedule::interval(90).unwrap()
        );
        assert!(read(&fields(&[("kind", "interval"), ("interval", "0")])).unwrap_err().contains("at least 1 s"));
        let cron = read(&fields(&[("kind", "cron"), ("cron", "0 2 * * *"), ("timezone", "Europe/Paris")])).unwrap();
        assert_eq!(cron, Schedule::cron("0 2 * * *", Some("Europe/Paris")).unwrap());
        assert!(read(&fields(&[("kind", "cron"), ("cron", "0 2 * *"), ("timezone", "UTC")])).is_err());
        assert!(read(&fields(&[("kind", "cron"), ("cron", "0 2 * * *"), ("timezone", "Mars/Olympus")])).is_err());
    }
}
