//! `.dockerignore` matching facts from moby/patternmatcher's tests
//! (`../shared/conformance/dockerignore/cases.tsv`, conformance README section 5), read in
//! place. Every row runs through `PatternMatcher::new` and `matches_or_parent_matches`. Without
//! the corpus the tests are skipped (`kiln_no_conformance`), or fail under `CI=true`.

use std::path::PathBuf;

use kiln_dockerfile::PatternMatcher;

/// The cases table (`kiln_test::require_conformance`).
fn cases_file() -> PathBuf {
    kiln_test::require_conformance().join("dockerignore/cases.tsv")
}

#[test]
#[cfg_attr(
    kiln_no_conformance,
    ignore = "needs the conformance corpus (KILN_CONFORMANCE_DIR)"
)]
fn every_cases_tsv_row_matches_like_moby() {
    let file = cases_file();
    let text = fs_err::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
    let mut lines = text.lines();
    let header = lines.next().expect("cases.tsv has a header line");
    assert_eq!(
        header.split('\t').collect::<Vec<_>>(),
        [
            "id", "source", "api", "platform", "expected", "path", "pattern1", "pattern2",
            "pattern3"
        ]
    );
    let mut ran = 0;
    let mut error_rows = 0;
    let mut failures = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 9, "cases.tsv row {line:?} must have 9 fields");
        let (id, platform, expected, path) = (fields[0], fields[3], fields[4], fields[5]);
        assert!(
            matches!(platform, "all" | "unix"),
            "{id}: unknown platform {platform:?}"
        );
        let patterns: Vec<&str> = fields[6..]
            .iter()
            .copied()
            .filter(|p| !p.is_empty())
            .collect();
        ran += 1;
        let result = PatternMatcher::new(&patterns)
            .and_then(|matcher| matcher.matches_or_parent_matches(path));
        match (expected, &result) {
            ("true", Ok(true)) | ("false", Ok(false)) | ("error", Err(_)) => {}
            ("true" | "false" | "error", _) => failures.push(format!(
                "{id}: patterns {patterns:?} path {path:?}: expected {expected}, got {result:?}"
            )),
            (other, _) => panic!("{id}: unknown expectation {other:?}"),
        }
        if expected == "error" {
            error_rows += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(ran, 62, "cases.tsv has 62 rows");
    assert_eq!(error_rows, 7, "7 rows expect an error");
}

#[test]
fn r62_fails_on_every_call_without_panicking() {
    let matcher = PatternMatcher::new(["[Local-Only]/"]).expect("passes the syntax check");
    for _ in 0..3 {
        assert!(matcher.matches_or_parent_matches("x").is_err());
    }
}
