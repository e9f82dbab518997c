//! `insta` filters for output that changes from run to run.

use std::path::Path;

/// Filters for `insta::Settings::add_filter` (or `with_settings!({filters => …})`): each
/// `temp` path (longest first, so nested ones win) becomes `[TEMP<n>]`, a sha256 digest
/// `sha256:[DIGEST]`, a bare 64-hex string `[HEX]`, an RFC 3339 time `[TIME]` and a duration
/// such as `0.42s` or `13ms` `[DURATION]`.
pub fn snapshot_filters(temp: &[&Path]) -> Vec<(String, String)> {
    let mut paths: Vec<(usize, String)> = temp
        .iter()
        .enumerate()
        .map(|(i, p)| (i, p.display().to_string()))
        .collect();
    paths.sort_by_key(|(_, p)| std::cmp::Reverse(p.len()));
    let mut filters: Vec<(String, String)> = paths
        .into_iter()
        .map(|(i, p)| (escape(&p), format!("[TEMP{i}]")))
        .collect();
    filters.extend(
        [
            (r"sha256:[0-9a-f]{64}", "sha256:[DIGEST]"),
            (r"\b[0-9a-f]{64}\b", "[HEX]"),
            (
                r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})",
                "[TIME]",
            ),
            (r"\b\d+(\.\d+)?(ns|µs|us|ms|s)\b", "[DURATION]"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned())),
    );
    filters
}

/// `text` as a regex matching itself.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_paths_times_and_durations_are_replaced() {
        let tmp = Path::new("/tmp/.tmpA1b2C3");
        let text = format!(
            "wrote {}/store/blobs sha256:{} at 2024-01-02T03:04:05Z in 0.42s (13ms)\n",
            tmp.display(),
            "ab".repeat(32)
        );
        let mut settings = insta::Settings::clone_current();
        for (pattern, replacement) in snapshot_filters(&[tmp]) {
            settings.add_filter(&pattern, replacement);
        }
        settings.bind(|| {
            insta::assert_snapshot!(text, @"wrote [TEMP0]/store/blobs sha256:[DIGEST] at [TIME] in [DURATION] ([DURATION])");
        });
    }

    #[test]
    fn a_nested_temp_path_wins_over_its_parent() {
        let filters = snapshot_filters(&[Path::new("/t"), Path::new("/t/inner")]);
        assert_eq!(filters[0], ("/t/inner".to_owned(), "[TEMP1]".to_owned()));
        assert_eq!(filters[1], ("/t".to_owned(), "[TEMP0]".to_owned()));
    }
}
