//! Go's `time.ParseDuration`, for HEALTHCHECK's `--interval`, `--timeout`, `--start-period`
//! and `--start-interval` (`30s`, `1m30s`, `500ms`, `1.5h`).

/// Why a text is not a Go duration (the messages of Go's `time.ParseDuration`, each with the
/// fix).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("expected a number")]
    ExpectedNumber,
    #[error("number too large")]
    NumberTooLarge,
    #[error("expected digits")]
    ExpectedDigits,
    #[error("missing unit (ns, us, ms, s, m or h)")]
    MissingUnit,
    #[error("unknown unit `{0}` (ns, us, ms, s, m or h)")]
    UnknownUnit(String),
    #[error("duration out of range")]
    OutOfRange,
}

/// Parses a Go duration string into signed nanoseconds. The error says what is wrong.
pub(crate) fn parse_go_duration(text: &str) -> Result<i64, DurationError> {
    const LIMIT: u64 = 1 << 63;
    let mut s = text.as_bytes();
    let neg = match s.first() {
        Some(b'-') => {
            s = &s[1..];
            true
        }
        Some(b'+') => {
            s = &s[1..];
            false
        }
        _ => false,
    };
    if s == b"0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return Err(DurationError::ExpectedNumber);
        }
        let int_len = s.iter().take_while(|b| b.is_ascii_digit()).count();
        let mut v: u64 = 0;
        for &d in &s[..int_len] {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
                .filter(|&v| v <= LIMIT)
                .ok_or(DurationError::NumberTooLarge)?;
        }
        let pre = int_len > 0;
        s = &s[int_len..];
        let mut frac: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut post = false;
        if s.first() == Some(&b'.') {
            s = &s[1..];
            let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
            let mut overflow = false;
            for &d in &s[..n] {
                if overflow {
                    continue;
                }
                match frac
                    .checked_mul(10)
                    .and_then(|f| f.checked_add(u64::from(d - b'0')))
                {
                    Some(f) if f <= LIMIT => {
                        frac = f;
                        scale *= 10.0;
                    }
                    _ => overflow = true,
                }
            }
            post = n > 0;
            s = &s[n..];
        }
        if !pre && !post {
            return Err(DurationError::ExpectedDigits);
        }
        let unit_len = s
            .iter()
            .take_while(|&&b| b != b'.' && !b.is_ascii_digit())
            .count();
        if unit_len == 0 {
            return Err(DurationError::MissingUnit);
        }
        let unit_text = std::str::from_utf8(&s[..unit_len]).unwrap_or("");
        let unit: u64 = match unit_text {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            other => return Err(DurationError::UnknownUnit(other.to_owned())),
        };
        s = &s[unit_len..];
        if v > LIMIT / unit {
            return Err(DurationError::OutOfRange);
        }
        v *= unit;
        if frac > 0 {
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss,
                reason = "Go computes the fraction in float64 and truncates the same way"
            )]
            let extra = (frac as f64 * (unit as f64 / scale)) as u64;
            v = v
                .checked_add(extra)
                .filter(|&v| v <= LIMIT)
                .ok_or(DurationError::OutOfRange)?;
        }
        total = total
            .checked_add(v)
            .filter(|&t| t <= LIMIT)
            .ok_or(DurationError::OutOfRange)?;
    }
    if neg {
        return Ok(0i64.wrapping_sub_unsigned(total));
    }
    i64::try_from(total).map_err(|_| DurationError::OutOfRange)
}

#[cfg(test)]
mod tests {
    use super::parse_go_duration as d;

    #[test]
    fn parses_like_go() {
        assert_eq!(d("30s"), Ok(30_000_000_000));
        assert_eq!(d("1m30s"), Ok(90_000_000_000));
        assert_eq!(d("500ms"), Ok(500_000_000));
        assert_eq!(d("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(d(".5s"), Ok(500_000_000));
        assert_eq!(d("0"), Ok(0));
        assert_eq!(d("-2s"), Ok(-2_000_000_000));
        assert_eq!(d("1µs"), Ok(1_000));
        assert!(d("").is_err());
        assert!(d("10").is_err());
        assert!(d("5x").is_err());
        assert!(d("s").is_err());
        assert!(d(".s").is_err());
        assert!(d("9999999999h").is_err());
    }
}
