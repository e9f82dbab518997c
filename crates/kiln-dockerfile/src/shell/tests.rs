use super::*;
use std::collections::{BTreeMap, HashMap};

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("PWD", "/home"),
        ("FILE", "archive.tar.gz"),
        ("PATHS", "/usr/local/bin:/usr/bin:/bin"),
        ("EMPTY", ""),
        ("SPACED", "a  b"),
    ]
}

fn word(source: &str) -> Result<String, ExpandError> {
    ShellLexer::default().process_word(source, &env()[..])
}

#[test]
fn prefix_removal_shortest_and_longest() {
    assert_eq!(word("${FILE#*.}").unwrap(), "tar.gz");
    assert_eq!(word("${FILE##*.}").unwrap(), "gz");
    assert_eq!(word("${PATHS#*:}").unwrap(), "/usr/bin:/bin");
    assert_eq!(word("${PATHS##*:}").unwrap(), "/bin");
    assert_eq!(word("${FILE#nomatch}").unwrap(), "archive.tar.gz");
    assert_eq!(word("${UNSET#*}").unwrap(), "");
}

#[test]
fn suffix_removal_shortest_and_longest() {
    assert_eq!(word("${FILE%.*}").unwrap(), "archive.tar");
    assert_eq!(word("${FILE%%.*}").unwrap(), "archive");
    assert_eq!(word("${PWD%/*}").unwrap(), "");
    assert_eq!(word("${PATHS%:*}").unwrap(), "/usr/local/bin:/usr/bin");
}

#[test]
fn pattern_escapes() {
    let env = [("V", "a*b?c")];
    let lexer = ShellLexer::default();
    assert_eq!(lexer.process_word("${V#a\\*}", &env[..]).unwrap(), "b?c");
    assert_eq!(lexer.process_word("${V%\\?c}", &env[..]).unwrap(), "a*b");
    let error = lexer.process_word("${V#\\x}", &env[..]).unwrap_err();
    assert!(matches!(error, ExpandError::InvalidPattern { ref pattern, .. } if pattern == "\\x"));
}

#[test]
fn replacement_first_and_all() {
    assert_eq!(
        word("${PATHS/:/ }").unwrap(),
        "/usr/local/bin /usr/bin:/bin"
    );
    assert_eq!(
        word("${PATHS//:/ }").unwrap(),
        "/usr/local/bin /usr/bin /bin"
    );
    assert_eq!(
        word("${PATHS//\\//|}").unwrap(),
        "|usr|local|bin:|usr|bin:|bin"
    );
    assert_eq!(word("${FILE/.*/}").unwrap(), "archive");
    assert_eq!(word("${UNSET/a/b}").unwrap(), "");
    // The replacement is expanded before it is used.
    assert_eq!(word("${FILE/archive/$PWD}").unwrap(), "/home.tar.gz");
}

#[test]
fn replacement_errors() {
    assert!(matches!(
        word("${FILE/abc}").unwrap_err(),
        ExpandError::MissingSlash { position: 0, .. }
    ));
    assert!(matches!(
        word("x${FILE/a/b").unwrap_err(),
        ExpandError::MissingBrace { position: 1, .. }
    ));
}

#[test]
fn colon_with_pattern_is_unsupported() {
    for source in ["${FILE:#x}", "${FILE:%x}", "${FILE:=x}", "${FILE:/x}"] {
        assert!(
            matches!(
                word(source).unwrap_err(),
                ExpandError::UnsupportedModifier { .. }
            ),
            "{source}"
        );
    }
}

#[test]
fn required_variable_errors_name_variable_and_message() {
    let error = word("${UNSET?you must set it}").unwrap_err();
    assert_eq!(
        error,
        ExpandError::RequiredVariable {
            word: "${UNSET?you must set it}".to_owned(),
            position: 0,
            name: "UNSET".to_owned(),
            message: "you must set it".to_owned(),
        }
    );
    assert!(error.to_string().contains("UNSET: you must set it"));
    let error = word("ab${EMPTY:?}").unwrap_err();
    assert!(
        matches!(error, ExpandError::RequiredVariable { position: 2, ref message, .. } if message == "is not allowed to be empty")
    );
    let error = word("${UNSET:?}").unwrap_err();
    assert!(
        matches!(error, ExpandError::RequiredVariable { ref message, .. } if message == "is not allowed to be unset")
    );
    assert_eq!(word("${EMPTY?}").unwrap(), "");
}

#[test]
fn errors_carry_word_and_position() {
    let error = word("ab'cd").unwrap_err();
    assert_eq!(error.word(), "ab'cd");
    assert_eq!(error.position(), 2);
    assert!(matches!(
        error,
        ExpandError::UnterminatedQuote { quote: '\'', .. }
    ));
    let error = word("안녕\"x").unwrap_err();
    assert_eq!(error.position(), "안녕".len());
    assert!(matches!(
        word("a${}").unwrap_err(),
        ExpandError::BadSubstitution { position: 1, .. }
    ));
    assert!(matches!(
        word("a${").unwrap_err(),
        ExpandError::MissingBrace { position: 1, .. }
    ));
    assert!(matches!(
        word("${PWD").unwrap_err(),
        ExpandError::UnsupportedModifier { .. }
    ));
}

#[test]
fn matches_report_found_and_missing_names() {
    let lexer = ShellLexer::default();
    let expansion = lexer
        .process_word_with_matches("$PWD ${UNSET:-$EMPTY} ${OTHER+x} $1 $PWD", &env()[..])
        .unwrap();
    assert_eq!(expansion.value, "/home    /home");
    let matched: Vec<&str> = expansion.matched.iter().map(String::as_str).collect();
    let unmatched: Vec<&str> = expansion.unmatched.iter().map(String::as_str).collect();
    assert_eq!(matched, ["EMPTY", "PWD"]);
    assert_eq!(unmatched, ["1", "OTHER", "UNSET"]);
    // Quoted names are not looked up.
    let expansion = lexer
        .process_word_with_matches("'$PWD'", &env()[..])
        .unwrap();
    assert!(expansion.matched.is_empty() && expansion.unmatched.is_empty());
}

#[test]
fn skip_unset_env_keeps_references() {
    let lexer = ShellLexer::default().skip_unset_env(true);
    let env = env();
    assert_eq!(
        lexer.process_word("$UNSET/$PWD", &env[..]).unwrap(),
        "$UNSET//home"
    );
    assert_eq!(
        lexer.process_word("${UNSET}", &env[..]).unwrap(),
        "${UNSET}"
    );
    assert_eq!(
        lexer.process_word("${UNSET:-x}", &env[..]).unwrap(),
        "${UNSET:-x}"
    );
    assert_eq!(
        lexer.process_word("${UNSET//a/b}", &env[..]).unwrap(),
        "${UNSET/a/b}"
    );
    assert_eq!(
        lexer.process_word("${UNSET##*.}", &env[..]).unwrap(),
        "${UNSET##*.}"
    );
    // BuildKit returns the text before it checks the modifier.
    assert_eq!(
        lexer.process_word("${UNSET:=x}", &env[..]).unwrap(),
        "${UNSET:=x}"
    );
    assert!(lexer.process_word("${PWD:=x}", &env[..]).is_err());
}

#[test]
fn raw_quotes_and_escapes() {
    let env = env();
    let lexer = ShellLexer::default().raw_quotes(true);
    assert_eq!(
        lexer.process_word("'a b' \"$PWD\"", &env[..]).unwrap(),
        "'a b' \"/home\""
    );
    let lexer = ShellLexer::default().raw_escapes(true);
    assert_eq!(
        lexer.process_word("a\\ b\\$PWD", &env[..]).unwrap(),
        "a\\ b\\$PWD"
    );
    assert_eq!(
        lexer.process_words("a\\ b c", &env[..]).unwrap(),
        ["a\\ b", "c"]
    );
}

#[test]
fn skip_process_quotes_treats_quotes_as_text() {
    let lexer = ShellLexer::default().skip_process_quotes(true);
    let env = env();
    assert_eq!(
        lexer.process_word("'$PWD' \"x", &env[..]).unwrap(),
        "'/home' \"x"
    );
}

#[test]
fn backtick_escape_token() {
    let lexer = ShellLexer::new('`');
    let env = env();
    assert_eq!(
        lexer.process_word("a`$PWD\\b", &env[..]).unwrap(),
        "a$PWD\\b"
    );
    assert_eq!(lexer.process_word("\"`\"\"", &env[..]).unwrap(), "\"");
    assert_eq!(lexer.escape_token(), '`');
}

#[test]
fn words_split_on_unquoted_expansions_only() {
    let lexer = ShellLexer::default();
    let env = env();
    assert_eq!(
        lexer
            .process_words("x$SPACED\"$SPACED\"", &env[..])
            .unwrap(),
        ["xa", "ba  b"]
    );
    assert_eq!(lexer.process_words("'' \"\" a", &env[..]).unwrap(), ["a"]);
    // BuildKit loses `pre` here (shared buffer); we keep it.
    assert_eq!(
        lexer.process_words("pre${UNSET:-x y}z", &env[..]).unwrap(),
        ["prex", "yz"]
    );
    assert_eq!(
        lexer.process_words("8${UNSET:-0}/tcp", &env[..]).unwrap(),
        ["80/tcp"]
    );
}

#[test]
fn heredoc_marker_with_blanks_is_one_word() {
    let lexer = ShellLexer::default();
    assert_eq!(
        lexer.process_words("cat << EOF", &EmptyEnv).unwrap(),
        ["cat", "<< EOF"]
    );
    assert_eq!(lexer.process_word("a < b", &EmptyEnv).unwrap(), "a < b");
}

#[test]
fn leading_byte_order_mark_is_skipped() {
    assert_eq!(
        ShellLexer::default()
            .process_word("\u{feff}a", &EmptyEnv)
            .unwrap(),
        "a"
    );
}

#[test]
fn env_implementations_agree() {
    let mut hash = HashMap::new();
    hash.insert("A".to_owned(), "1".to_owned());
    let btree: BTreeMap<String, String> = hash.clone().into_iter().collect();
    let owned = [
        ("A".to_owned(), "0".to_owned()),
        ("A".to_owned(), "1".to_owned()),
    ];
    let lexer = ShellLexer::default();
    assert_eq!(lexer.process_word("$A", &hash).unwrap(), "1");
    assert_eq!(lexer.process_word("$A", &btree).unwrap(), "1");
    assert_eq!(lexer.process_word("$A", &owned[..]).unwrap(), "1");
    assert_eq!(lexer.process_word("$A", &&btree).unwrap(), "1");
}

#[test]
fn expanding_instructions() {
    for keyword in [
        "add",
        "arg",
        "copy",
        "env",
        "expose",
        "from",
        "label",
        "onbuild",
        "stopsignal",
        "user",
        "volume",
        "workdir",
    ] {
        assert!(instruction_expands(keyword), "{keyword}");
    }
    for keyword in [
        "run",
        "cmd",
        "entrypoint",
        "shell",
        "healthcheck",
        "maintainer",
        "COPY",
    ] {
        assert!(!instruction_expands(keyword), "{keyword}");
    }
}
