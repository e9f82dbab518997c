//! BuildKit's parser golden files (`../shared/conformance/buildkit/parser`), read in place.
//!
//! Every `testfiles/<case>` must dump byte-identically to its `result`, every
//! `testfiles-negative/<case>` must fail, and `testfile-line` must report BuildKit's line
//! numbers. Without the corpus the tests are skipped (`kiln_no_conformance`), or fail under `CI=true`.

use std::path::{Path, PathBuf};

use kiln_dockerfile::parse_syntax;

/// The corpus (`kiln_test::require_conformance`): a test that calls this fails under CI
/// when the corpus is absent, and is skipped (`kiln_no_conformance`) elsewhere.
fn conformance_dir() -> PathBuf {
    kiln_test::require_conformance()
}

fn cases(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs_err::read_dir(dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

fn read(path: &Path) -> String {
    fs_err::read_to_string(path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
#[cfg_attr(
    kiln_no_conformance,
    ignore = "needs the conformance corpus (KILN_CONFORMANCE_DIR)"
)]
fn golden_testfiles_dump_byte_for_byte() {
    let root = conformance_dir();
    let cases = cases(&root.join("buildkit/parser/testfiles"));
    assert_eq!(cases.len(), 33, "expected BuildKit's 33 golden cases");
    let mut failures = Vec::new();
    for case in &cases {
        let src = read(&case.join("Dockerfile"));
        let expected = read(&case.join("result")).replace("\r\n", "\n");
        match parse_syntax(&src) {
            Ok(tree) => {
                let got = tree.dump_buildkit_ast() + "\n";
                if got != expected {
                    failures.push(format!(
                        "{}:\n--- expected\n{expected}--- got\n{got}",
                        case.display()
                    ));
                }
            }
            Err(e) => failures.push(format!(
                "{}: {}",
                case.display(),
                e.render("Dockerfile", &src)
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
#[cfg_attr(
    kiln_no_conformance,
    ignore = "needs the conformance corpus (KILN_CONFORMANCE_DIR)"
)]
fn negative_testfiles_fail_with_a_message() {
    let root = conformance_dir();
    let cases = cases(&root.join("buildkit/parser/testfiles-negative"));
    assert_eq!(cases.len(), 4);
    for case in &cases {
        let src = read(&case.join("Dockerfile"));
        let err =
            kiln_dockerfile::parse(&src).expect_err(&format!("{} must not parse", case.display()));
        let rendered = err.render("Dockerfile", &src);
        assert!(rendered.starts_with("error: "), "{rendered}");
        // The syntax level alone already rejects these, as BuildKit's parser does.
        assert!(parse_syntax(&src).is_err(), "{}", case.display());
    }
}

#[test]
#[cfg_attr(
    kiln_no_conformance,
    ignore = "needs the conformance corpus (KILN_CONFORMANCE_DIR)"
)]
fn testfile_line_numbers_match_buildkit() {
    let root = conformance_dir();
    let src = read(&root.join("buildkit/parser/testfile-line/Dockerfile"));
    let tree = parse_syntax(&src).expect("testfile-line parses");
    let lines: Vec<(u32, u32)> = tree
        .nodes
        .iter()
        .map(|n| (n.start_line, n.end_line))
        .collect();
    assert_eq!(lines, vec![(5, 5), (11, 12), (17, 31)]);
    assert_eq!(tree.nodes.first().map(|n| n.start_line), Some(5));
    assert_eq!(tree.nodes.last().map(|n| n.end_line), Some(31));
}
