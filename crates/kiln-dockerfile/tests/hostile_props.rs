//! Property tests with hostile shapes (DESIGN.md §1.7): nesting thousands deep and fragments
//! repeated tens of thousands of times, in words and in whole Dockerfiles. Whatever the
//! shape, expansion and parsing return (no stack overflow, no panic), results respect the
//! limits, and messages stay short. `PROPTEST_CASES` raises the case count for long runs.

use kiln_dockerfile::{
    ExpandError, ExpansionBudget, MAX_EXPANDED_WORD_LENGTH, MAX_EXPANSION_DEPTH, ShellLexer, parse,
};
use proptest::prelude::*;

/// Longest message or rendered error accepted, whatever the input.
const MAX_MESSAGE: usize = 2_000;

/// The opening half of a nesting level and its closing half.
fn level() -> impl Strategy<Value = (&'static str, &'static str)> {
    prop_oneof![
        Just(("${A:-", "}")),
        Just(("${U-", "}")),
        Just(("${A+", "}")),
        Just(("${U:?", "}")),
        Just(("\"${U:-", "}\"")),
        Just(("${A/", "/x}")),
        Just(("${A//", "/$0$0}")),
        Just(("${A#", "}")),
        Just(("${A%%", "}")),
        Just(("'", "'")),
        Just(("\\", "")),
    ]
}

/// A word nested `depth` deep from a few level kinds, closed or not.
fn deep_word() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(level(), 1..4),
        0_usize..5_000,
        any::<bool>(),
        "[a-z$*?]{0,3}",
    )
        .prop_map(|(levels, depth, is_closed, middle)| {
            let mut open = String::new();
            let mut close = String::new();
            for i in 0..depth {
                let (o, c) = levels[i % levels.len()];
                open.push_str(o);
                close.insert_str(0, c);
            }
            if is_closed {
                open + &middle + &close
            } else {
                open + &middle
            }
        })
}

/// A fragment repeated up to 50,000 times.
fn repeated_word() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("$A"),
            Just("${A}${A}"),
            Just("${B}"),
            Just("${B//?/$0$0}"),
            Just("${B##*a}"),
            Just("\"$B\" "),
            Just("x"),
            Just("${"),
        ],
        1_usize..50_000,
    )
        .prop_map(|(fragment, count)| fragment.repeat(count))
}

fn check(word: &str, result: &Result<String, ExpandError>) -> Result<(), TestCaseError> {
    match result {
        Ok(value) => prop_assert!(value.len() <= MAX_EXPANDED_WORD_LENGTH.max(word.len())),
        Err(err) => {
            prop_assert!(err.position() <= word.len());
            let message = err.to_string();
            prop_assert!(message.len() < MAX_MESSAGE, "{} bytes", message.len());
            if let ExpandError::NestingTooDeep { limit, .. } = err {
                prop_assert_eq!(*limit, MAX_EXPANSION_DEPTH);
            }
        }
    }
    Ok(())
}

/// Dockerfiles made of one hostile line repeated.
fn hostile_dockerfile() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("ONBUILD ".to_owned()),
            Just("ENV A=${A:-".to_owned()),
            Just("RUN x \\\n".to_owned()),
            Just("ARG A=1 B=2 ".to_owned()),
            Just("LABEL a=b ".to_owned()),
            Just("EXPOSE 80 ".to_owned()),
            Just("RUN <<${A:-".to_owned()),
            Just("\\\n".to_owned()),
            Just("é".to_owned()),
            Just("COPY --chmod=7 a /a\n".to_owned()),
        ],
        1_usize..20_000,
        any::<bool>(),
    )
        .prop_map(|(line, count, has_newline)| {
            let body = line.repeat(count);
            format!(
                "FROM scratch\n{body}{}",
                if has_newline { "\n" } else { "" }
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn deep_nesting_never_overflows(word in deep_word()) {
        let lexer = ShellLexer::new('\\');
        let env = [("A", "a b"), ("B", "aaaa")];
        check(&word, &lexer.process_word(&word, &env[..]))?;
        let words = lexer.process_words(&word, &env[..]);
        prop_assert!(words.is_ok() || words.unwrap_err().to_string().len() < MAX_MESSAGE);
    }

    #[test]
    fn huge_repetition_is_bounded(word in repeated_word()) {
        let lexer = ShellLexer::new('\\');
        let big = "ab".repeat(20_000);
        let env = [("A", big.as_str()), ("B", "aaaa")];
        check(&word, &lexer.process_word(&word, &env[..]))?;
        let budget = ExpansionBudget::new(1 << 20);
        let budgeted = lexer.budgeted(&budget).process_word(&word, &env[..]);
        check(&word, &budgeted)?;
        prop_assert!(budget.remaining() <= budget.limit());
    }

    #[test]
    fn hostile_dockerfiles_parse_or_fail_briefly(src in hostile_dockerfile()) {
        if let Err(err) = parse(&src) {
            prop_assert!(err.span.end <= src.len());
            let rendered = err.render("Dockerfile", &src);
            prop_assert!(rendered.len() < MAX_MESSAGE, "{} bytes", rendered.len());
        }
    }
}
