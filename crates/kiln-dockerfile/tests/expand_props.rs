//! Property tests: the word expander and the `.dockerignore` matcher never panic on any
//! input, and their answers keep the invariants callers rely on.

use kiln_dockerfile::{DirDecision, PatternMatcher, ShellLexer, read_ignore_file};
use proptest::prelude::*;

/// Strings built mostly from the characters the lexer treats specially.
fn shell_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(
            prop_oneof![
                Just("$".to_owned()),
                Just("{".to_owned()),
                Just("}".to_owned()),
                Just(":".to_owned()),
                Just("-".to_owned()),
                Just("+".to_owned()),
                Just("?".to_owned()),
                Just("#".to_owned()),
                Just("%".to_owned()),
                Just("/".to_owned()),
                Just("*".to_owned()),
                Just("\\".to_owned()),
                Just("`".to_owned()),
                Just("'".to_owned()),
                Just("\"".to_owned()),
                Just("<".to_owned()),
                Just(" ".to_owned()),
                Just("\n".to_owned()),
                Just("A".to_owned()),
                Just("EMPTY".to_owned()),
                Just("1".to_owned()),
                Just("é".to_owned()),
                Just("\u{feff}".to_owned()),
            ],
            0..24,
        )
        .prop_map(|parts| parts.concat()),
    ]
}

fn lexers() -> impl Strategy<Value = ShellLexer> {
    (
        prop_oneof![Just('\\'), Just('`')],
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(escape, raw_quotes, raw_escapes, skip_unset, skip_quotes)| {
                ShellLexer::new(escape)
                    .raw_quotes(raw_quotes)
                    .raw_escapes(raw_escapes)
                    .skip_unset_env(skip_unset)
                    .skip_process_quotes(skip_quotes)
            },
        )
}

/// Path-like strings over a small alphabet, so patterns and paths often meet.
fn path_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("a"),
            Just("b"),
            Just("/"),
            Just("."),
            Just("*"),
            Just("**"),
            Just("?"),
            Just("!"),
            Just("["),
            Just("]"),
            Just("^"),
            Just("-"),
            Just("\\"),
            Just(":"),
            Just(" "),
            Just("\n"),
            Just("é"),
        ],
        0..12,
    )
    .prop_map(|parts| parts.concat())
}

/// Patterns that look like real ones: a few components of names and wildcards, sometimes
/// negated.
fn glob_pattern() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        proptest::collection::vec(
            prop_oneof![
                Just("a"),
                Just("b"),
                Just("ab"),
                Just(".x"),
                Just("*"),
                Just("**"),
                Just("?"),
                Just("a*"),
                Just("[ab]"),
                Just("[^a]*"),
            ],
            1..4,
        ),
    )
        .prop_map(|(is_negated, parts)| {
            format!("{}{}", if is_negated { "!" } else { "" }, parts.join("/"))
        })
}

/// Clean relative paths made of `a`/`b` components.
fn clean_path() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![Just("a"), Just("b"), Just("ab"), Just(".x")],
        1..5,
    )
    .prop_map(|parts| parts.join("/"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn expander_never_panics(lexer in lexers(), word in shell_text()) {
        let env = [("A", "x y"), ("EMPTY", ""), ("1", "one")];
        let single = lexer.process_word(&word, &env[..]);
        let with_matches = lexer.process_word_with_matches(&word, &env[..]);
        let split = lexer.process_words(&word, &env[..]);
        // The three entry points agree on success and on the value.
        prop_assert_eq!(single.is_ok(), split.is_ok());
        match (single, with_matches) {
            (Ok(value), Ok(expansion)) => prop_assert_eq!(value, expansion.value),
            (Err(error), Err(other)) => {
                prop_assert_eq!(&error, &other);
                prop_assert!(error.position() <= word.len());
                prop_assert_eq!(error.word(), word.as_str());
            }
            (single, with_matches) => prop_assert!(false, "{single:?} vs {with_matches:?}"),
        }
        if let Ok(words) = split {
            prop_assert!(words.iter().all(|word| !word.is_empty()));
        }
    }

    #[test]
    fn plain_text_expands_to_itself(word in "[a-zA-Z0-9_./=,:@ -]{0,40}") {
        let lexer = ShellLexer::default();
        prop_assert_eq!(lexer.process_word(&word, &[("A", "1")][..]).unwrap(), word.clone());
        let words: Vec<&str> = word.split_whitespace().collect();
        prop_assert_eq!(lexer.process_words(&word, &[("A", "1")][..]).unwrap(), words);
    }

    #[test]
    fn matcher_never_panics(patterns in proptest::collection::vec(path_text(), 0..4), path in path_text()) {
        if let Ok(matcher) = PatternMatcher::new(&patterns) {
            let _ = matcher.matches_or_parent_matches(&path);
            let _ = matcher.exclusion_state(&path);
            for pattern in matcher.patterns() {
                let _ = pattern.matches(&path);
            }
        }
        let text = patterns.join("\n");
        if let Ok(patterns) = read_ignore_file(&text) {
            let _ = PatternMatcher::new(patterns);
        }
    }

    /// The pruning promise: when a directory is excluded and no `!` pattern can re-include
    /// anything inside, every path below it is excluded too.
    #[test]
    fn pruned_directories_hold_only_excluded_paths(
        patterns in proptest::collection::vec(
            prop_oneof![
                path_text(),
                path_text().prop_map(|p| format!("!{p}")),
                glob_pattern(),
                glob_pattern(),
            ],
            1..5,
        ),
        dir in clean_path(),
        child in clean_path(),
    ) {
        let Ok(matcher) = PatternMatcher::new(&patterns) else { return Ok(()) };
        let Ok(decision) = matcher.exclusion_state(&dir) else { return Ok(()) };
        let path = format!("{dir}/{child}");
        let Ok(is_excluded) = matcher.matches_or_parent_matches(&path) else { return Ok(()) };
        match decision {
            DirDecision::Excluded { may_reinclude_children: false } => {
                prop_assert!(is_excluded, "{patterns:?}: {dir} pruned but {path} is included");
            }
            DirDecision::Excluded { may_reinclude_children: true } => {}
            DirDecision::Included => {
                prop_assert!(!matcher.matches_or_parent_matches(&dir).unwrap());
            }
        }
    }
}
