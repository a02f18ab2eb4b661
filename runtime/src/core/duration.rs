//! Durations as people write them (`250ms`, `30s`, `5m`, `2h`, `1d`, `1h30m`, or a bare
//! number of seconds) and as messages show them (`250 ms`, `30 s`, `5 min`, `2 h`).

use std::time::Duration;

/// The units accepted by [`parse_duration`], with their length in milliseconds.
const PARSE_UNITS: [(&str, u64); 6] =
    [("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

/// The units [`words`] uses, largest first.
const WORD_UNITS: [(u128, &str); 5] = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "min"), (1_000, "s"), (1, "ms")];

/// Parses `250ms`, `30s`, `5m` (or `5min`), `2h`, `1d`, combinations largest unit first such as
/// `1h30m`, or a bare integer meaning seconds. Spaces between the parts are allowed, so what
/// [`words`] writes parses back.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let refuse = || {
        format!(
            "`{text}` is not a duration; write for example 250ms, 30s, 5m, 2h, 1d or 1h30m (a bare number means seconds)"
        )
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(refuse());
    }
    if trimmed.bytes().all(|b| b.is_ascii_digit()) {
        let seconds: u64 = trimmed.parse().map_err(|_| format!("`{text}` is too long a duration"))?;
        return Ok(Duration::from_secs(seconds));
    }

    let mut rest = trimmed;
    let mut total: u64 = 0;
    // Each unit must be smaller than the one before, so `1h30m` is read one way only and
    // slips such as `30m1h` or `5m5m` are caught rather than summed.
    let mut previous_unit = u64::MAX;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(refuse());
        }
        let count: u64 = rest[..digits].parse().map_err(|_| format!("`{text}` is too long a duration"))?;
        rest = rest[digits..].trim_start();
        let letters = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
        let unit = PARSE_UNITS
            .iter()
            .find(|(name, _)| *name == &rest[..letters])
            .map(|&(_, millis)| millis)
            .ok_or_else(refuse)?;
        if unit >= previous_unit {
            return Err(format!(
                "`{text}` is not a duration; write its units largest first and once each, as in 1h30m"
            ));
        }
        previous_unit = unit;
        total = count
            .checked_mul(unit)
            .and_then(|millis| total.checked_add(millis))
            .ok_or_else(|| format!("`{text}` is too long a duration"))?;
        rest = rest[letters..].trim_start();
    }
    Ok(Duration::from_millis(total))
}

/// A duration in one unit: the largest that divides it evenly ("250 ms", "30 s", "5 min",
/// "2 h"), except that one minute, hour or day is said in the unit below ("60 s", "60 min",
/// "24 h"), which reads better in "every 60 s".
pub fn words(d: Duration) -> String {
    if d.is_zero() {
        return "0 s".to_string();
    }
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        // Below a millisecond nothing reads better than Debug's "1.5ms".
        return format!("{d:?}");
    }
    let millis = d.as_millis();
    let mut index =
        WORD_UNITS.iter().position(|(unit, _)| millis.is_multiple_of(*unit)).unwrap_or(WORD_UNITS.len() - 1);
    if millis == WORD_UNITS[index].0 && WORD_UNITS[index].0 >= 60_000 {
        index += 1;
    }
    let (unit, name) = WORD_UNITS[index];
    format!("{} {name}", millis / unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit_and_bare_seconds() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("5min"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration(" 0s "), Ok(Duration::ZERO));
    }

    #[test]
    fn parses_combinations_largest_first() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1d2h3m4s5ms"), Ok(Duration::from_millis(93_784_005)));
    }

    #[test]
    fn refuses_anything_else_with_an_example() {
        for bad in ["", "  ", "s", "1.5s", "-5s", "5 weeks", "5x", "h1", "10 s x"] {
            let message = parse_duration(bad).unwrap_err();
            assert!(message.contains("1h30m"), "{bad}: {message}");
        }
        assert!(parse_duration("30m1h").unwrap_err().contains("largest first"));
        assert!(parse_duration("5m5m").unwrap_err().contains("largest first"));
        assert!(parse_duration("99999999999999999999d").unwrap_err().contains("too long"));
        assert!(parse_duration("999999999999999d").unwrap_err().contains("too long"));
    }

    #[test]
    fn words_picks_one_readable_unit() {
        assert_eq!(words(Duration::from_millis(250)), "250 ms");
        assert_eq!(words(Duration::from_secs(1)), "1 s");
        assert_eq!(words(Duration::from_secs(30)), "30 s");
        assert_eq!(words(Duration::from_secs(60)), "60 s");
        assert_eq!(words(Duration::from_secs(300)), "5 min");
        assert_eq!(words(Duration::from_secs(5400)), "90 min");
        assert_eq!(words(Duration::from_secs(3600)), "60 min");
        assert_eq!(words(Duration::from_secs(7200)), "2 h");
        assert_eq!(words(Duration::from_secs(86_400)), "24 h");
        assert_eq!(words(Duration::from_secs(2 * 86_400)), "2 d");
        assert_eq!(words(Duration::from_millis(1500)), "1500 ms");
        assert_eq!(words(Duration::ZERO), "0 s");
        assert_eq!(words(Duration::from_micros(1500)), "1.5ms");
    }

    #[test]
    fn words_parse_back() {
        for millis in [250, 1000, 3_600_000, 86_400_000, 60_000, 300_000, 5_400_000, 7_200_000, 172_800_000, 1500] {
            let d = Duration::from_millis(millis);
            assert_eq!(parse_duration(&words(d)), Ok(d));
        }
    }
}
