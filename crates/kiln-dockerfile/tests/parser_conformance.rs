//! BuildKit's parser golden files (`../shared/conformance/buildkit/parser`), read in place.
//!
//! Every `testfiles/<case>` must dump byte-identically to its `result`, every
//! `testfiles-negative/<case>` must fail, and `testfile-line` must report BuildKit's line
//! numbers. When the corpus is absent the tests say so loudly and pass.

use std::path::{Path, PathBuf};

use kiln_dockerfile::parse_syntax;

fn conformance_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("KILN_CONFORMANCE_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance"),
        PathBuf::from,
    );
    if dir.join("buildkit/parser").is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: conformance data not found at {} (set KILN_CONFORMANCE_DIR)",
            dir.display()
        );
        None
    }
}

fn cases(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn golden_testfiles_dump_byte_for_byte() {
    let Some(root) = conformance_dir() else {
        return;
    };
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
fn negative_testfiles_fail_with_a_message() {
    let Some(root) = conformance_dir() else {
        return;
    };
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
fn testfile_line_numbers_match_buildkit() {
    let Some(root) = conformance_dir() else {
        return;
    };
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
