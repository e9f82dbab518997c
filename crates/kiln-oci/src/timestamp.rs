//! RFC 3339 timestamps as image configs carry them (`created`, history `created`): written
//! the way Go's `time.Time` marshals them, read leniently for display.
//!
//! Written timestamps are hashed into config digests, so the output is fixed byte for byte:
//! `YYYY-MM-DDTHH:MM:SSZ` for whole seconds (`SOURCE_DATE_EPOCH`), and nine fraction digits
//! for a build's own clock (`….123456789Z`, as BuildKit writes it). The calendar arithmetic
//! is Howard Hinnant's `civil_from_days`/`days_from_civil` (proleptic Gregorian), a few lines
//! that keep the pure model free of a date-time dependency.

const SECONDS_PER_DAY: i64 = 86_400;
/// Days from 0000-03-01 to 1970-01-01 in Hinnant's shifted calendar.
const EPOCH_SHIFT_DAYS: i64 = 719_468;
/// Days in a 400-year Gregorian era.
const DAYS_PER_ERA: i64 = 146_097;

/// Formats seconds since the Unix epoch as RFC 3339 UTC (`1970-01-01T00:00:00Z`), the form
/// Go's `time.Time` marshals for a whole second (and so `SOURCE_DATE_EPOCH` timestamps).
///
/// ```
/// assert_eq!(kiln_oci::rfc3339_utc(1_709_251_200), "2024-03-01T00:00:00Z");
/// ```
pub fn rfc3339_utc(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(SECONDS_PER_DAY);
    let secs = unix_seconds.rem_euclid(SECONDS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Like [`rfc3339_utc`] with nine fraction digits (`….000000001Z`), as BuildKit writes a
/// build's own clock.
///
/// ```
/// assert_eq!(kiln_oci::rfc3339_utc_nanos(0, 5), "1970-01-01T00:00:00.000000005Z");
/// ```
pub fn rfc3339_utc_nanos(unix_seconds: i64, nanos: u32) -> String {
    let whole = rfc3339_utc(unix_seconds);
    let stem = &whole[..whole.len() - 1];
    format!("{stem}.{nanos:09}Z")
}

/// Seconds since the Unix epoch of `YYYY-MM-DD(T|t| )HH:MM:SS[.fraction](Z|z|±HH:MM)` (the
/// fraction is dropped); `None` when the text is not of that form. For display (`kiln
/// images`, `kiln history`): a base image may carry any offset.
///
/// ```
/// assert_eq!(kiln_oci::parse_rfc3339("2024-03-01T01:00:00.5+01:00"), Some(1_709_251_200));
/// ```
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let num = |s: &str| s.parse::<i64>().ok();
    let (date, time) = text.split_once(['T', 't', ' '])?;
    let mut date_parts = date.split('-');
    let (year, month, day) = (
        num(date_parts.next()?)?,
        num(date_parts.next()?)?,
        num(date_parts.next()?)?,
    );
    if date_parts.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let clock = time.get(..8)?;
    let mut clock_parts = clock.split(':');
    let (hour, minute, second) = (
        num(clock_parts.next()?)?,
        num(clock_parts.next()?)?,
        num(clock_parts.next()?)?,
    );
    let zone = time[8..].trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let offset = match zone.as_bytes().first() {
        None | Some(b'Z' | b'z') => 0,
        Some(sign @ (b'+' | b'-')) => {
            let (h, m) = zone[1..].split_once(':')?;
            let seconds = num(h)? * 3600 + num(m)? * 60;
            if *sign == b'+' { seconds } else { -seconds }
        }
        Some(_) => return None,
    };
    Some(
        days_from_civil(year, month, day) * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second
            - offset,
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + EPOCH_SHIFT_DAYS;
    let era = z.div_euclid(DAYS_PER_ERA);
    let doe = z.rem_euclid(DAYS_PER_ERA);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Day count since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * DAYS_PER_ERA + day_of_era - EPOCH_SHIFT_DAYS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(-1), "1969-12-31T23:59:59Z");
        assert_eq!(
            rfc3339_utc_nanos(1_700_000_000, 123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(rfc3339_utc_nanos(0, 0), "1970-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn parses_fractions_and_offsets() {
        assert_eq!(parse_rfc3339("1970-01-02T00:00:01Z"), Some(86_401));
        assert_eq!(parse_rfc3339("2024-03-01T00:00:00Z"), Some(1_709_251_200));
        assert_eq!(
            parse_rfc3339("2024-03-01T00:00:00.123456789Z"),
            Some(1_709_251_200)
        );
        assert_eq!(
            parse_rfc3339("2024-03-01T01:00:00+01:00"),
            Some(1_709_251_200)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29 23:00:00-01:00"),
            Some(1_709_251_200)
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1));
        for bad in [
            "",
            "2024-03-01",
            "2024-13-01T00:00:00Z",
            "2024-03-01T00:00",
            "x-y-zT1",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn format_and_parse_round_trip() {
        for secs in [-86_401, 0, 59, 951_868_799, 1_700_000_000, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&rfc3339_utc(secs)), Some(secs), "{secs}");
        }
    }
}
