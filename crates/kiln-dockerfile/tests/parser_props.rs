//! Property tests: no input makes the parser, the typed view, the dump or the error
//! renderer panic, and every span they report lies inside the source on character
//! boundaries.

use kiln_dockerfile::{Span, parse, parse_syntax};
use proptest::prelude::*;

fn check_span(src: &str, span: Span) {
    assert!(
        span.start <= span.end && span.end <= src.len(),
        "{span:?} outside {}",
        src.len()
    );
    assert!(src.is_char_boundary(span.start) && src.is_char_boundary(span.end));
    assert!(span.line >= 1 && span.column >= 1);
}

fn exercise(src: &str) {
    match parse_syntax(src) {
        Ok(tree) => {
            let _ = tree.dump_buildkit_ast();
            for node in &tree.nodes {
                check_span(src, node.span);
                check_span(src, node.keyword_span);
                assert!(node.start_line <= node.end_line);
                for flag in &node.flags {
                    check_span(src, flag.span);
                }
                for arg in &node.args {
                    check_span(src, arg.span);
                }
            }
        }
        Err(err) => {
            check_span(src, err.span);
            let _ = err.render("Dockerfile", src);
        }
    }
    match parse(src) {
        Ok(df) => {
            let _ = serde_json::to_string(&df).expect("AST serializes");
        }
        Err(err) => {
            check_span(src, err.span);
            let rendered = err.render("Dockerfile", src);
            assert!(rendered.starts_with("error: "));
        }
    }
}

/// Fragments that hit the parser's special cases when glued together.
const FRAGMENTS: &[&str] = &[
    "FROM alpine AS b\n",
    "RUN ",
    "COPY ",
    "ADD ",
    "ONBUILD ",
    "HEALTHCHECK ",
    "ENV ",
    "LABEL ",
    "ARG ",
    "CMD ",
    "SHELL ",
    "--mount=type=cache,target=/x ",
    "--from=a ",
    "--link ",
    "--interval=1s ",
    "-- ",
    "<<EOF",
    "<<-'E'",
    "3<<A",
    "EOF\n",
    "\tE\n",
    "A\n",
    "[\"a\", \"b\"]",
    "[1, [\"x\"]]",
    "[\"\\u0000\\ud800\"]",
    "a=b ",
    "\"q uoted\" ",
    "'single' ",
    "${VAR:-x} ",
    "\\\n",
    "`\n",
    "\\",
    "# comment\n",
    "# escape=`\n",
    "# syntax=x\n",
    "\n",
    "   \n",
    "\r\n",
    " ",
    "\u{a0}",
    "\u{feff}",
    "é",
    "\u{800}",
];

fn dockerfile_ish() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        4 => prop::sample::select(FRAGMENTS).prop_map(str::to_owned),
        1 => "[a-zA-Z0-9=$/.-]{0,8}",
    ];
    prop::collection::vec(fragment, 0..40).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_never_panic(src in any::<String>()) {
        exercise(&src);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        exercise(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn dockerfile_like_input_never_panics(src in dockerfile_ish()) {
        exercise(&src);
    }
}

#[test]
fn overlong_line_is_an_error_at_its_line() {
    let src = format!("FROM alpine\nRUN echo {}\n", "x".repeat(70_000));
    let err = parse_syntax(&src).unwrap_err();
    assert_eq!(err.span.line, 2);
    assert!(err.to_string().contains("65535"), "{err}");
    let ok = format!("FROM alpine\nRUN {}\n", "x".repeat(65_531));
    assert!(parse_syntax(&ok).is_ok());
    let too_long = format!("FROM alpine\nRUN {}\n", "x".repeat(65_532));
    assert!(parse_syntax(&too_long).is_err());
}
