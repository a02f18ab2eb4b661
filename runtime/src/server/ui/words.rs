//! Values in words for people: schedules ("every 60 s", "at 02:00
//! Europe/Paris"), times, durations, sizes, digests.

use crate::core::schedule::Schedule;
use chrono::{DateTime, Utc};
use std::fmt::Write;

/// Percent-encodes a query value.
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~/".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// A schedule as a sentence.
pub fn schedule(schedule: &Schedule) -> String {
    match schedule {
        Schedule::Interval { seconds, .. } => interval(*seconds),
        Schedule::Cron { expression, timezone } => cron(expression, timezone),
    }
}

fn interval(seconds: u64) -> String {
    match seconds {
        s if s % 86_400 == 0 => plural(s / 86_400, "day"),
        s if s % 3_600 == 0 && s >= 3_600 => format!("every {} h", s / 3_600),
        s if s % 60 == 0 && s >= 600 => format!("every {} min", s / 60),
        s => format!("every {s} s"),
    }
}

fn plural(n: u64, unit: &str) -> String {
    if n == 1 { format!("every {unit}") } else { format!("every {n} {unit}s") }
}

/// Common cron shapes in words; anything else as the expression itself.
fn cron(expression: &str, timezone: &str) -> String {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let number = |f: &str| f.parse::<u32>().ok();
    let described = match fields.as_slice() {
        [every, "*", "*", "*", "*"] if every.starts_with("*/") => {
            every.strip_prefix("*/").and_then(number).map(|n| format!("every {n} min"))
        }
        [minute, hour, "*", "*", "*"] => match (number(minute), number(hour)) {
            (Some(m), Some(h)) => Some(format!("at {h:02}:{m:02}")),
            (Some(m), None) if *hour == "*" => Some(format!("hourly at :{m:02}")),
            _ => None,
        },
        [minute, hour, "*", "*", weekday] => match (number(minute), number(hour), weekday_name(weekday)) {
            (Some(m), Some(h), Some(day)) => Some(format!("at {h:02}:{m:02} on {day}")),
            _ => None,
        },
        _ => None,
    };
    match described {
        Some(words) => format!("{words} {timezone}"),
        None => format!("cron {expression} ({timezone})"),
    }
}

fn weekday_name(field: &str) -> Option<&'static str> {
    const DAYS: [&str; 7] = ["Sundays", "Mondays", "Tuesdays", "Wednesdays", "Thursdays", "Fridays", "Saturdays"];
    match field {
        "1-5" | "MON-FRI" => Some("weekdays"),
        _ => field.parse::<usize>().ok().and_then(|d| DAYS.get(d % 7).copied()),
    }
}

/// A time as shown: UTC, to the second.
pub fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A time of day with milliseconds, for log lines.
pub fn clock(at: DateTime<Utc>) -> String {
    at.format("%H:%M:%S%.3f").to_string()
}

/// A duration between two times, rounded for reading.
pub fn duration(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let ms = (to - from).num_milliseconds().max(0);
    match ms {
        ms if ms < 1_000 => format!("{ms} ms"),
        ms if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        ms if ms < 3_600_000 => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
        ms => format!("{} h {} min", ms / 3_600_000, (ms % 3_600_000) / 60_000),
    }
}

/// How long ago, roughly.
pub fn ago(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - at).num_seconds();
    match seconds {
        s if s < 0 => format!("in {}", duration(now, at)),
        s if s < 60 => format!("{s} s ago"),
        s if s < 3_600 => format!("{} min ago", s / 60),
        s if s < 86_400 => format!("{} h ago", s / 3_600),
        s => format!("{} days ago", s / 86_400),
    }
}

/// A size in bytes, in the largest unit that keeps a whole number in front.
pub fn bytes(size: u64) -> String {
    match size {
        s if s >= 1 << 20 => format!("{:.1} MiB", s as f64 / (1 << 20) as f64),
        s if s >= 1 << 10 => format!("{:.1} KiB", s as f64 / 1024.0),
        s => format!("{s} B"),
    }
}

/// `sha256:` and the first 12 hex digits: enough to tell artifacts apart.
pub fn digest_prefix(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    format!("sha256:{}", &hex[..hex.len().min(12)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_read_as_sentences() {
        assert_eq!(schedule(&Schedule::Interval { seconds: 60, anchor: None }), "every 60 s");
        assert_eq!(schedule(&Schedule::Interval { seconds: 3600, anchor: None }), "every 1 h");
        assert_eq!(schedule(&Schedule::Interval { seconds: 86_400, anchor: None }), "every day");
        assert_eq!(schedule(&Schedule::Interval { seconds: 900, anchor: None }), "every 15 min");
        let cron = |e: &str| Schedule::Cron { expression: e.into(), timezone: "Europe/Paris".into() };
        assert_eq!(schedule(&cron("0 2 * * *")), "at 02:00 Europe/Paris");
        assert_eq!(schedule(&cron("30 * * * *")), "hourly at :30 Europe/Paris");
        assert_eq!(schedule(&cron("*/5 * * * *")), "every 5 min Europe/Paris");
        assert_eq!(schedule(&cron("0 9 * * 1-5")), "at 09:00 on weekdays Europe/Paris");
        assert_eq!(schedule(&cron("0 0 1 * *")), "cron 0 0 1 * * (Europe/Paris)");
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(url_encode("/runs?state=Failed&x=a b"), "/runs%3Fstate%3DFailed%26x%3Da%20b");
    }
}
