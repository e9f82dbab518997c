//! Snapshot tests over kiln's own corpus: `testdata/dockerfiles/<case>/Dockerfile` must parse
//! (snapshot: BuildKit dump, directives, warnings and each typed command) and
//! `testdata/dockerfiles-negative/<case>/Dockerfile` must fail (snapshot: the rendered error).
//! Adding a case is adding a directory; review new snapshots with `cargo insta review`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn corpus(name: &str) -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(name);
    let mut cases: Vec<PathBuf> = fs_err::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.join("Dockerfile").is_file())
        .collect();
    cases.sort();
    cases
        .into_iter()
        .map(|p| {
            let name = p
                .file_name()
                .expect("case name")
                .to_string_lossy()
                .into_owned();
            let src =
                fs_err::read_to_string(p.join("Dockerfile")).unwrap_or_else(|e| panic!("{e}"));
            (name, src)
        })
        .collect()
}

fn describe(src: &str) -> String {
    let df =
        kiln_dockerfile::parse(src).unwrap_or_else(|e| panic!("{}", e.render("Dockerfile", src)));
    let mut out = String::from("--- buildkit-ast\n");
    out.push_str(&df.dump_buildkit_ast());
    out.push_str("\n--- directives\n");
    for d in &df.directives {
        let _ = writeln!(out, "{}={}", d.name, d.value);
    }
    out.push_str("--- warnings\n");
    for w in &df.warnings {
        let _ = writeln!(out, "{}:{} {}", w.span.line, w.span.column, w.message);
    }
    out.push_str("--- instructions\n");
    for inst in &df.instructions {
        let command = serde_json::to_string(&inst.command).expect("commands serialize");
        let _ = writeln!(
            out,
            "{}-{} {} expands={} {command}",
            inst.syntax.start_line,
            inst.syntax.end_line,
            inst.keyword(),
            inst.expands_variables()
        );
    }
    out
}

#[test]
fn corpus_has_enough_cases() {
    assert!(corpus("dockerfiles").len() >= 40);
    assert!(corpus("dockerfiles-negative").len() >= 30);
}

#[test]
fn positive_corpus_snapshots() {
    for (name, src) in corpus("dockerfiles") {
        let text = describe(&src);
        insta::assert_snapshot!(name.as_str(), text);
    }
}

#[test]
fn negative_corpus_rendered_errors() {
    for (name, src) in corpus("dockerfiles-negative") {
        let err = match kiln_dockerfile::parse(&src) {
            Ok(df) => panic!("{name} must fail, parsed as:\n{}", df.dump_buildkit_ast()),
            Err(err) => err,
        };
        let rendered = err.render("Dockerfile", &src);
        assert!(rendered.starts_with("error: "), "{rendered}");
        insta::assert_snapshot!(format!("negative-{name}"), rendered);
    }
}
