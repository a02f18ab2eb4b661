//! When a deployment runs by itself: every N seconds from an anchor, or on a cron expression
//! read in a time zone. Pure: callers pass the current time in.

use crate::core::duration;
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The time zone of a cron schedule that names none.
pub const DEFAULT_TIMEZONE: &str = "UTC";

/// A deployment's schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// Every `seconds`, at `anchor + k × seconds`.
    Interval {
        /// The period, at least 1.
        seconds: u64,
        /// An instant the schedule passes through; the Unix epoch when `None`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        anchor: Option<DateTime<Utc>>,
    },
    /// On a cron expression, read in a time zone.
    Cron {
        /// Five fields (minute hour day-of-month month day-of-week), or six with seconds first.
        expression: String,
        /// An IANA time zone name such as `Europe/Paris`.
        #[serde(default = "default_timezone")]
        timezone: String,
    },
}

fn default_timezone() -> String {
    DEFAULT_TIMEZONE.to_string()
}

impl Schedule {
    /// Every `seconds` seconds, anchored at the Unix epoch. Refuses 0.
    pub fn interval(seconds: u64) -> Result<Schedule, String> {
        if seconds == 0 {
            return Err("an interval schedule needs at least 1 s between runs; got 0".to_string());
        }
        // Refused here so `next_after` never has to fail on a period chrono cannot add.
        if i64::try_from(seconds).ok().and_then(TimeDelta::try_seconds).is_none() {
            return Err(format!("an interval of {seconds} s is too long"));
        }
        Ok(Schedule::Interval { seconds, anchor: None })
    }

    /// On `expression`, read in `timezone` (UTC when `None`). Both are checked.
    pub fn cron(expression: &str, timezone: Option<&str>) -> Result<Schedule, String> {
        let expression = expression.trim();
        parse_cron(expression)?;
        let timezone = parse_timezone(timezone.unwrap_or(DEFAULT_TIMEZONE))?;
        Ok(Schedule::Cron { expression: expression.to_string(), timezone: timezone.name().to_string() })
    }

    /// The next fire time strictly after `after`, or `None` if there is none (a cron
    /// expression that never matches again, or a stored schedule that no longer parses).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Interval { seconds, anchor } => {
                // Fire times are `anchor + k × period` rather than "last run + period", so
                // they stay the same across restarts and however late the scheduler looks.
                let anchor = anchor.unwrap_or(DateTime::UNIX_EPOCH);
                if after < anchor {
                    return Some(anchor);
                }
                let period = i64::try_from(*seconds).ok().filter(|&s| s > 0)?;
                // Whole seconds since the anchor, rounded down: the next multiple above is
                // strictly after `after` even when `after` has a fraction of a second.
                let periods = (after - anchor).num_seconds() / period + 1;
                anchor.checked_add_signed(TimeDelta::try_seconds(periods.checked_mul(period)?)?)
            }
            Schedule::Cron { expression, timezone } => {
                let cron = parse_cron(expression).ok()?;
                let zone = parse_timezone(timezone).ok()?;
                // croner walks the wall clock of the zone, so DST gaps and overlaps are
                // handled there: a time skipped by the clock runs right after the gap, and a
                // time repeated by it runs once.
                let next = cron.find_next_occurrence(&after.with_timezone(&zone), false).ok()?;
                Some(next.with_timezone(&Utc)).filter(|next| *next > after)
            }
        }
    }

    /// The runs to create after `after`, by Prefect's rule: at least `min_runs`, and every
    /// run within `horizon`, but never more than `max_runs`.
    pub fn upcoming(
        &self,
        after: DateTime<Utc>,
        max_runs: usize,
        horizon: chrono::Duration,
        min_runs: usize,
    ) -> Vec<DateTime<Utc>> {
        let end = after.checked_add_signed(horizon).unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mut runs = Vec::new();
        let mut cursor = after;
        while runs.len() < max_runs {
            let Some(next) = self.next_after(cursor) else { break };
            if runs.len() >= min_runs && next > end {
                break;
            }
            runs.push(next);
            cursor = next;
        }
        runs
    }

    /// The schedule in words: "every 5 min", "at 02:00 Europe/Paris",
    /// "every hour at :15 (UTC)", or "cron `0 2 * * 1-5` (Europe/Paris)".
    pub fn words(&self) -> String {
        match self {
            Schedule::Interval { seconds, .. } => {
                format!("every {}", duration::words(Duration::from_secs(*seconds)))
            }
            Schedule::Cron { expression, timezone } => {
                let fields: Vec<&str> = expression.split_whitespace().collect();
                let plain = |field: &str, max: u32| field.parse::<u32>().ok().filter(|&value| value <= max);
                if let [minute, hour, "*", "*", "*"] = fields[..] {
                    match (plain(minute, 59), plain(hour, 23), hour) {
                        (Some(minute), Some(hour), _) => return format!("at {hour:02}:{minute:02} {timezone}"),
                        (Some(minute), None, "*") => return format!("every hour at :{minute:02} ({timezone})"),
                        _ => {}
                    }
                }
                format!("cron `{expression}` ({timezone})")
            }
        }
    }
}

/// Parses a cron expression of 5 fields, or 6 with seconds first.
fn parse_cron(expression: &str) -> Result<Cron, String> {
    // croner would also take a 7th field for years; nobody schedules flows by year, and
    // refusing it keeps expressions portable to other cron readers.
    let parser = CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build();
    parser.parse(expression).map_err(|error| {
        format!(
            "`{expression}` is not a cron expression ({error}); write 5 fields, minute hour day-of-month month \
             day-of-week, for example \"0 * * * *\" (every hour) or \"30 2 * * 1-5\" (02:30 on weekdays)"
        )
    })
}

/// Parses an IANA time zone name.
fn parse_timezone(name: &str) -> Result<Tz, String> {
    name.trim().parse::<Tz>().map_err(|_| {
        format!("`{name}` is not a time zone; use an IANA name such as Europe/Paris, America/New_York or UTC")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn interval_fires_on_multiples_of_the_period_from_the_epoch() {
        let every_minute = Schedule::interval(60).unwrap();
        assert_eq!(every_minute.next_after(at("2026-01-01T10:00:30Z")), Some(at("2026-01-01T10:01:00Z")));
        // Strictly after: a fire time is never returned again.
        assert_eq!(every_minute.next_after(at("2026-01-01T10:01:00Z")), Some(at("2026-01-01T10:02:00Z")));
        assert_eq!(every_minute.next_after(at("2026-01-01T10:01:59.999Z")), Some(at("2026-01-01T10:02:00Z")));
        let every_7_s = Schedule::interval(7).unwrap();
        let next = every_7_s.next_after(at("2026-01-01T00:00:00Z")).unwrap();
        assert_eq!(next.timestamp() % 7, 0);
    }

    #[test]
    fn anchored_interval_is_stable_across_restarts() {
        let schedule = Schedule::Interval { seconds: 3600, anchor: Some(at("2026-01-01T00:15:00Z")) };
        // Before the anchor, the anchor itself is next.
        assert_eq!(schedule.next_after(at("2025-12-31T00:00:00Z")), Some(at("2026-01-01T00:15:00Z")));
        // Asking from any moment in the same hour gives the same time, as a restarted
        // scheduler would.
        for now in ["2026-03-05T09:15:00Z", "2026-03-05T09:15:01Z", "2026-03-05T09:40:00Z", "2026-03-05T10:14:59Z"] {
            assert_eq!(schedule.next_after(at(now)), Some(at("2026-03-05T10:15:00Z")), "{now}");
        }
    }

    #[test]
    fn cron_follows_the_wall_clock_across_dst_in_paris() {
        // Paris moves from UTC+1 to UTC+2 on 2026-03-29 at 02:00 local time.
        let nine = Schedule::cron("0 9 * * *", Some("Europe/Paris")).unwrap();
        let runs = nine.upcoming(at("2026-03-27T12:00:00Z"), 3, chrono::Duration::zero(), 3);
        assert_eq!(runs, vec![at("2026-03-28T08:00:00Z"), at("2026-03-29T07:00:00Z"), at("2026-03-30T07:00:00Z")]);
        // 02:30 does not exist that day: it runs when the clock resumes, at 03:00 CEST.
        let half_past_two = Schedule::cron("30 2 * * *", Some("Europe/Paris")).unwrap();
        let runs = half_past_two.upcoming(at("2026-03-28T12:00:00Z"), 2, chrono::Duration::zero(), 2);
        assert_eq!(runs, vec![at("2026-03-29T01:00:00Z"), at("2026-03-30T00:30:00Z")]);
        // 02:30 happens twice on 2026-10-25 (back to UTC+1): it runs once.
        let runs = half_past_two.upcoming(at("2026-10-24T12:00:00Z"), 2, chrono::Duration::zero(), 2);
        assert_eq!(runs, vec![at("2026-10-25T00:30:00Z"), at("2026-10-26T01:30:00Z")]);
    }

    #[test]
    fn cron_defaults_to_utc_and_takes_seconds() {
        let hourly = Schedule::cron(" 0 * * * * ", None).unwrap();
        assert_eq!(hourly, Schedule::Cron { expression: "0 * * * *".into(), timezone: "UTC".into() });
        assert_eq!(hourly.next_after(at("2026-01-01T10:00:00Z")), Some(at("2026-01-01T11:00:00Z")));
        let every_ten_seconds = Schedule::cron("*/10 * * * * *", None).unwrap();
        assert_eq!(every_ten_seconds.next_after(at("2026-01-01T10:00:05.5Z")), Some(at("2026-01-01T10:00:10Z")));
    }

    #[test]
    fn bad_schedules_are_refused_with_an_example() {
        let message = Schedule::interval(0).unwrap_err();
        assert!(message.contains("at least 1 s"), "{message}");
        assert!(Schedule::interval(u64::MAX).unwrap_err().contains("too long"));
        for bad in ["61 * * * *", "0 2 * *", "every day", "", "0 0 0 1 1 * 2030"] {
            let message = Schedule::cron(bad, None).unwrap_err();
            assert!(message.contains(&format!("`{bad}`")), "{message}");
            assert!(message.contains("\"0 * * * *\""), "{message}");
        }
        let message = Schedule::cron("0 2 * * *", Some("Europe/Pariss")).unwrap_err();
        assert!(message.contains("`Europe/Pariss`") && message.contains("Europe/Paris,"), "{message}");
    }

    #[test]
    fn upcoming_keeps_min_runs_and_the_horizon_within_max_runs() {
        let hourly = Schedule::interval(3600).unwrap();
        let now = at("2026-01-01T00:30:00Z");
        // The horizon holds 24 runs; max_runs caps them.
        assert_eq!(hourly.upcoming(now, 100, chrono::Duration::hours(24), 3).len(), 24);
        assert_eq!(hourly.upcoming(now, 10, chrono::Duration::hours(24), 3).len(), 10);
        // A short horizon still gets min_runs.
        let runs = hourly.upcoming(now, 100, chrono::Duration::minutes(10), 3);
        assert_eq!(runs, vec![at("2026-01-01T01:00:00Z"), at("2026-01-01T02:00:00Z"), at("2026-01-01T03:00:00Z")]);
        // max_runs wins over min_runs.
        assert_eq!(hourly.upcoming(now, 2, chrono::Duration::zero(), 5).len(), 2);
        // A run exactly at the horizon is inside it.
        assert_eq!(hourly.upcoming(now, 100, chrono::Duration::minutes(90), 0).len(), 2);
    }

    #[test]
    fn words_read_naturally() {
        assert_eq!(Schedule::interval(60).unwrap().words(), "every 60 s");
        assert_eq!(Schedule::interval(300).unwrap().words(), "every 5 min");
        assert_eq!(Schedule::interval(7200).unwrap().words(), "every 2 h");
        assert_eq!(Schedule::cron("0 2 * * *", Some("Europe/Paris")).unwrap().words(), "at 02:00 Europe/Paris");
        assert_eq!(Schedule::cron("0 * * * *", None).unwrap().words(), "every hour at :00 (UTC)");
        assert_eq!(
            Schedule::cron("0 2 * * 1-5", Some("Europe/Paris")).unwrap().words(),
            "cron `0 2 * * 1-5` (Europe/Paris)"
        );
        assert_eq!(Schedule::cron("*/5 * * * *", None).unwrap().words(), "cron `*/5 * * * *` (UTC)");
    }

    #[test]
    fn serializes_with_a_kind_tag() {
        let cron = Schedule::cron("0 2 * * *", Some("Europe/Paris")).unwrap();
        let json = serde_json::to_value(&cron).unwrap();
        assert_eq!(json, serde_json::json!({"kind": "cron", "expression": "0 2 * * *", "timezone": "Europe/Paris"}));
        let interval: Schedule = serde_json::from_str(r#"{"kind": "interval", "seconds": 60}"#).unwrap();
        assert_eq!(interval, Schedule::interval(60).unwrap());
        assert_eq!(serde_json::from_value::<Schedule>(serde_json::to_value(&cron).unwrap()).unwrap(), cron);
    }
}
