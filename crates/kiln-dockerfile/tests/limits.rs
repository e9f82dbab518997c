//! Every limit of `limits.rs` (DESIGN.md §1.7): reached, it is an error naming the limit and
//! its value at the right line, never a stack overflow, a hang or a huge message.

use kiln_dockerfile::{
    ExpandError, ExpansionBudget, MAX_EXPANDED_WORD_LENGTH, MAX_EXPANSION_DEPTH, MAX_INSTRUCTIONS,
    MAX_LINE_LENGTH, MAX_LOGICAL_LINE_LENGTH, MAX_PATTERN_STEPS, ParseErrorKind, ShellLexer, parse,
};

fn nested(depth: usize, open: &str, close: &str) -> String {
    format!("{}x{}", open.repeat(depth), close.repeat(depth))
}

#[test]
fn nesting_up_to_the_limit_expands_and_beyond_is_an_error() {
    let lexer = ShellLexer::new('\\');
    let env: [(&str, &str); 0] = [];
    let ok = nested(MAX_EXPANSION_DEPTH, "${Y:-", "}");
    assert_eq!(lexer.process_word(&ok, &env[..]).unwrap(), "x");
    for word in [
        nested(MAX_EXPANSION_DEPTH + 1, "${Y:-", "}"),
        nested(3_000, "${Y:-", "}"),
        nested(100_000, "\"${Y:-", "}\""),
        nested(100_000, "${Y/", "/x}"),
    ] {
        let err = lexer.process_word(&word, &env[..]).unwrap_err();
        assert!(
            matches!(
                err,
                ExpandError::NestingTooDeep {
                    limit: MAX_EXPANSION_DEPTH,
                    ..
                }
            ),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("MAX_EXPANSION_DEPTH") && message.contains("64"),
            "{message}"
        );
        assert!(message.len() < 400, "{} bytes", message.len());
    }
}

#[test]
fn doubling_stops_at_the_word_limit() {
    let lexer = ShellLexer::new('\\');
    let mut value = "xx".to_owned();
    let err = loop {
        let env = [("A", value.as_str())];
        match lexer.process_word("${A}${A}", &env[..]) {
            Ok(doubled) => value = doubled,
            Err(err) => break err,
        }
    };
    assert_eq!(value.len(), MAX_EXPANDED_WORD_LENGTH);
    assert!(
        matches!(err, ExpandError::WordTooLong { position: 4, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("MAX_EXPANDED_WORD_LENGTH"));
    // A replacement that multiplies the value is stopped the same way.
    let env = [("A", "a".repeat(1_000))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let word = format!("${{A//a/{}}}", "b".repeat(2_000));
    let err = lexer.process_word(&word, &env[..]).unwrap_err();
    assert!(matches!(err, ExpandError::WordTooLong { .. }), "{err:?}");
}

#[test]
fn backtracking_patterns_stop_at_the_step_limit() {
    let lexer = ShellLexer::new('\\');
    let value = "a".repeat(50_000);
    let env = [("V", value.as_str())];
    let word = format!("${{V//{}b/x}}", "*a".repeat(8));
    let err = lexer.process_word(&word, &env[..]).unwrap_err();
    assert!(
        matches!(
            err,
            ExpandError::PatternTooComplex {
                limit: MAX_PATTERN_STEPS,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("MAX_PATTERN_STEPS"));
}

#[test]
fn the_build_budget_is_shared_and_charged_before_appending() {
    let budget = ExpansionBudget::new(1_000);
    let lexer = ShellLexer::new('\\');
    let value = "v".repeat(300);
    let env = [("V", value.as_str())];
    for _ in 0..3 {
        lexer
            .budgeted(&budget)
            .process_word("$V", &env[..])
            .unwrap();
    }
    let err = lexer
        .budgeted(&budget)
        .process_word("$V", &env[..])
        .unwrap_err();
    assert!(
        matches!(err, ExpandError::BudgetExhausted { limit: 1_000, .. }),
        "{err:?}"
    );
    assert_eq!(budget.remaining(), 100);
    assert!(err.to_string().contains("MAX_TOTAL_EXPANSION"));
}

#[test]
fn logical_lines_are_bounded() {
    let piece = format!("{} \\\n", "a".repeat(60_000));
    let count = MAX_LOGICAL_LINE_LENGTH / 60_000 + 2;
    let src = format!("FROM scratch\nRUN {}true\n", piece.repeat(count));
    let err = parse(&src).unwrap_err();
    assert!(
        matches!(
            err.kind,
            ParseErrorKind::LogicalLineTooLong {
                max: MAX_LOGICAL_LINE_LENGTH,
                start_line: 2
            }
        ),
        "{:?}",
        err.kind
    );
    let rendered = err.render("Dockerfile", &src);
    assert!(rendered.contains("MAX_LOGICAL_LINE_LENGTH") && rendered.contains("--> Dockerfile:"));
    assert!(rendered.len() < 1_000, "{} bytes", rendered.len());
}

#[test]
fn a_10_mb_line_renders_a_short_snippet() {
    let src = format!("FROM scratch\nRUN {}\n", "x".repeat(10_000_000));
    let err = parse(&src).unwrap_err();
    assert!(matches!(
        err.kind,
        ParseErrorKind::LineTooLong {
            max: MAX_LINE_LENGTH
        }
    ));
    let rendered = err.render("Dockerfile", &src);
    assert!(rendered.contains("--> Dockerfile:2:"), "{rendered}");
    assert!(rendered.contains("MAX_LINE_LENGTH") && rendered.contains('…'));
    assert!(rendered.len() < 1_000, "{} bytes", rendered.len());
    assert!(err.to_string().len() < 500);
}

#[test]
fn instruction_count_is_bounded() {
    let src = "FROM scratch\n".to_owned() + &"ENV A=1\n".repeat(MAX_INSTRUCTIONS);
    let err = parse(&src).unwrap_err();
    assert!(matches!(
        err.kind,
        ParseErrorKind::TooManyInstructions {
            max: MAX_INSTRUCTIONS
        }
    ));
    assert_eq!(err.span.line as usize, MAX_INSTRUCTIONS + 1);
    assert!(err.render("Dockerfile", &src).contains("MAX_INSTRUCTIONS"));
    let fits = "FROM scratch\n".to_owned() + &"ENV A=1\n".repeat(MAX_INSTRUCTIONS - 1);
    assert_eq!(parse(&fits).unwrap().instructions.len(), MAX_INSTRUCTIONS);
}

#[test]
fn onbuild_chains_and_deep_heredoc_words_do_not_recurse() {
    let src = format!("FROM scratch\n{}RUN true\n", "ONBUILD ".repeat(8_000));
    let err = parse(&src).unwrap_err();
    assert!(
        matches!(err.kind, ParseErrorKind::OnbuildTrigger { .. }),
        "{:?}",
        err.kind
    );
    let src = format!("FROM scratch\nRUN <<{}\nEOF\n", nested(5_000, "${A:-", "}"));
    let err = parse(&src).unwrap_err();
    assert!(err.to_string().contains("MAX_EXPANSION_DEPTH"), "{err}");
}

#[test]
fn long_words_in_messages_are_clipped() {
    let word = "w".repeat(60_000);
    let src = format!("FROM scratch\nENV {word}\n");
    let err = parse(&src).unwrap_err();
    let rendered = err.render("Dockerfile", &src);
    assert!(rendered.len() < 1_000, "{} bytes", rendered.len());
    let lexer = ShellLexer::new('\\');
    let env: [(&str, &str); 0] = [];
    let err = lexer
        .process_word(&format!("{word}${{"), &env[..])
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.len() < 400 && message.contains("…w"),
        "{} bytes",
        message.len()
    );
}
