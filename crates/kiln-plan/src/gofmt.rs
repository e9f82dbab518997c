//! Go's `fmt` renderings that BuildKit bakes into image history (`created_by`): `%q` of a
//! string slice, `%v` of a string slice, and `time.Duration.String()`.

use std::fmt::Write as _;

use kiln_dockerfile::go_quote;

/// Go `fmt.Sprintf("%q", []string{…})`: `["a" "b"]`.
pub(crate) fn quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go `fmt.Sprintf("%v", []string{…})`: `[a b]`.
pub(crate) fn plain_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// Go `time.Duration(ns).String()`: `0s`, `1.5s`, `1m30s`, `1h0m0s`, `250ms`, `10µs`, `3ns`.
pub(crate) fn duration(ns: i64) -> String {
    const NANOS_PER_SECOND: u64 = 1_000_000_000;
    let negative = ns < 0;
    let mut u = ns.unsigned_abs();
    let mut out = String::new();
    if u < NANOS_PER_SECOND {
        let (precision, unit) = match u {
            0 => return "0s".to_owned(),
            1..1_000 => (0, "ns"),
            1_000..1_000_000 => (3, "µs"),
            _ => (6, "ms"),
        };
        let (integer, fraction) = split_fraction(u, precision);
        let _ = write!(out, "{integer}{fraction}{unit}");
    } else {
        let (seconds, fraction) = split_fraction(u, 9);
        u = seconds;
        let secs = u % 60;
        u /= 60;
        if u > 0 {
            let minutes = u % 60;
            let hours = u / 60;
            if hours > 0 {
                let _ = write!(out, "{hours}h");
            }
            let _ = write!(out, "{minutes}m");
        }
        let _ = write!(out, "{secs}{fraction}s");
    }
    if negative {
        out.insert(0, '-');
    }
    out
}

/// Go `fmtFrac`: the integer part of `value / 10^precision` and its fraction as `.ddd` with
/// trailing zeros removed (empty when the fraction is zero).
fn split_fraction(value: u64, precision: u32) -> (u64, String) {
    let scale = 10_u64.pow(precision);
    let integer = value / scale;
    let fraction = value % scale;
    if fraction == 0 {
        return (integer, String::new());
    }
    let digits = format!("{fraction:0width$}", width = precision as usize);
    (integer, format!(".{}", digits.trim_end_matches('0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_match_go() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (1_000_000_000, "1s"),
            (1_500_000_000, "1.5s"),
            (30_000_000_000, "30s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_000_000_000, "1h2m3s"),
            (-1_500_000_000, "-1.5s"),
        ];
        for (ns, want) in cases {
            assert_eq!(duration(ns), want, "{ns}");
        }
    }

    #[test]
    fn quoting_matches_go() {
        // Go's strconv.Quote (kiln_dockerfile::go_quote) escapes non-printable runes.
        assert_eq!(
            quote_list(&["a\"b\\c\n\t".into(), "é\u{1}\u{a0}".into()]),
            r#"["a\"b\\c\n\t" "é\x01\u00a0"]"#
        );
        assert_eq!(
            quote_list(&["python".into(), "app.py".into()]),
            r#"["python" "app.py"]"#
        );
        assert_eq!(plain_list(&["/bin/sh".into(), "-c".into()]), "[/bin/sh -c]");
        assert_eq!(plain_list(&[]), "[]");
    }
}
