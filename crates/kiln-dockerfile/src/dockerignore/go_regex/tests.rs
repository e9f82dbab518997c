use super::*;

fn matches(pattern: &str, text: &str) -> bool {
    Regex::new(pattern, true)
        .unwrap_or_else(|error| panic!("{pattern}: {error}"))
        .is_match(text)
}

#[test]
fn match_string_is_unanchored() {
    assert!(matches("b", "abc"));
    assert!(!matches("^b", "abc"));
    assert!(matches("c$", "abc"));
    assert!(!matches("b$", "abc"));
    assert!(matches("^a|c$", "xxc"));
    assert!(matches("", "anything"));
}

#[test]
fn repetitions() {
    assert!(matches("^a{2,3}$", "aa") && matches("^a{2,3}$", "aaa"));
    assert!(!matches("^a{2,3}$", "a") && !matches("^a{2,3}$", "aaaa"));
    assert!(matches("^a{2,}$", "aaaaa") && !matches("^a{2,}$", "a"));
    assert!(matches("^ab+c?$", "abbb") && !matches("^ab+c?$", "ac"));
    assert!(matches("^a*?b$", "aab"));
    assert!(matches("^(ab)*$", "abab") && !matches("^(ab)*$", "aba"));
    assert!(matches("^(a*)*$", "aaa"));
    // Not valid repetitions: literal braces.
    assert!(
        matches("^a{x}$", "a{x}") && matches("^a{01}$", "a{01}") && matches("^a{,2}$", "a{,2}")
    );
}

#[test]
fn syntax_errors_follow_go() {
    for bad in [
        "*a",
        "a**",
        "a*{2}",
        "a{2}*",
        "a??b?+",
        "(a",
        "a)",
        "a{1001}",
        "a{3,2}",
        "[a",
        "[z-a]",
        "[[:nope:]]",
        "\\",
        "\\q",
        "\\1",
        "\\x4",
        "\\x{}",
        "\\pL",
        "|+",
    ] {
        assert!(Regex::new(bad, false).is_err(), "{bad}");
    }
    for good in [
        "a*?",
        "a{2}?",
        "^*",
        "[]a]",
        "[a-]",
        "[-a]",
        "\\x41",
        "\\x{263a}",
        "\\101",
        "\\0",
        "\\Qa.b\\E",
        "a|",
        "()",
    ] {
        assert!(Regex::new(good, false).is_ok(), "{good}");
    }
}

#[test]
fn escapes() {
    assert!(matches("^\\x41\\x{263a}\\101$", "A☺A"));
    assert!(matches("^\\Qa.*\\E$", "a.*") && !matches("^\\Qa.*\\E$", "ab"));
    assert!(matches("^\\Qa.*$", "a.*$"));
    assert!(matches("^\\t\\n$", "\t\n"));
    assert!(matches("\\bfoo\\b", "a foo b") && !matches("\\bfoo\\b", "afoo"));
    assert!(matches("a\\B", "ab") && !matches("a\\B", "a b"));
    assert!(matches("\\Aab\\z", "ab") && !matches("\\Aab\\z", "abc"));
}

#[test]
fn classes() {
    assert!(matches("^[[^/]$", "^") && matches("^[[^/]$", "["));
    assert!(matches("^[^a]$", "\n") && !matches("^.$", "\n"));
    assert!(matches("^[\\d-]+$", "1-2") && matches("^[[:^alpha:]]$", "1"));
    assert!(matches("^[a\\]]+$", "a]a"));
}

#[test]
fn size_is_bounded() {
    let huge = "[^/]{1000}".repeat(200);
    let error = Regex::new(&huge, false).unwrap_err();
    assert_eq!(
        error,
        RegexError::TooLarge {
            limit: MAX_PATTERN_PROGRAM_BYTES
        }
    );
    assert!(error.to_string().contains("MAX_PATTERN_PROGRAM_BYTES"));
}

/// Where Go's syntax and Rust's `regex` syntax part ways, the Go reading wins.
#[test]
fn go_syntax_where_rust_regex_differs() {
    // `[` inside a class is a member, not a nested class.
    assert!(matches("^[a[b]$", "[") && matches("^[a[b]$", "b"));
    // `&&`, `--` and `~~` are members, not set operations.
    assert!(matches("^[a&&b]$", "&") && matches("^[a&&b]$", "a"));
    assert!(matches("^[+--]$", ",") && matches("^[x~~y]$", "~"));
    // `\<` and `\>` are literals, not word boundaries.
    assert!(matches("^\\<a\\>$", "<a>") && !matches("^\\<a\\>$", "a"));
    // Octal escapes and `\Q…\E`.
    assert!(matches("^\\012$", "\n") && matches("^a\\0$", "a\0"));
    assert!(matches("^\\Q[*]\\E$", "[*]"));
    // Braces that are not a Go repetition are literal text.
    assert!(matches("^a{$", "a{") && matches("^a{,2}$", "a{,2}") && matches("^a}$", "a}"));
    assert!(matches("^a{1,2$", "a{1,2"));
    // Perl classes, POSIX classes and word boundaries are ASCII.
    assert!(!matches("^\\d$", "٣") && !matches("^\\w$", "é") && matches("^\\W$", "é"));
    assert!(!matches("^\\s$", "\u{a0}") && !matches("^\\s$", "\x0b"));
    assert!(matches("^[[:space:]]$", "\x0b") && !matches("^[[:alpha:]]$", "é"));
    assert!(!matches("é\\b", "é") && matches("a\\b", "aé"));
    assert!(matches("^a\\Bb$", "ab") && matches("^é\\Bé$", "éé"));
    // Go only looks between characters: `\B` never holds inside `é` of `aéb`.
    assert!(!matches("\\B", "aéb") && matches("\\B", "ab"));
    // `.` stops at a newline, a negated class does not.
    assert!(!matches("^a.b$", "a\nb") && matches("^a[^x]b$", "a\nb"));
    // `[:alpha:]` outside brackets is a plain class of its characters.
    assert!(matches("^[:alpha:]$", "h") && !matches("^[:alpha:]$", "b"));
    // A class may start with `]` and end with `-`.
    assert!(matches("^[]a]$", "]") && matches("^[a-]$", "-"));
    // Named classes need a known name; Perl letters are not POSIX names.
    for bad in ["[[:d:]]", "\\C", "\\Z", "\\e", "\\8", "a{1001,}", "x{2}{3}"] {
        assert!(Regex::new(bad, false).is_err(), "{bad}");
    }
}

#[test]
fn errors_say_where() {
    assert_eq!(
        Regex::new("^a**", false).unwrap_err(),
        RegexError::NestedRepetition { offset: 3 }
    );
    assert_eq!(
        Regex::new("^ab[z-a]", false).unwrap_err(),
        RegexError::ClassRange {
            range: "z-a".to_owned(),
            offset: 4
        }
    );
    assert_eq!(
        Regex::new("x\\q", false).unwrap_err(),
        RegexError::Escape {
            escape: "\\q".to_owned(),
            offset: 1
        }
    );
    assert_eq!(
        Regex::new("a[b", false).unwrap_err(),
        RegexError::MissingBracket { offset: 1 }
    );
    assert_eq!(
        Regex::new("\\pL", false).unwrap_err().to_string(),
        "the Unicode class escape `\\p` at byte 0 is not supported by kiln; list the characters instead"
    );
}

#[test]
fn escaped_bytes_are_one_replacement_character() {
    let name = crate::encode_name(b"a\xffb");
    assert!(matches("^a.b$", &name) && matches("^a[^/]b$", &name));
    assert!(matches("^a\u{fffd}b$", &name) && matches("^a[\u{fffd}]b$", &name));
    assert!(!matches("^a[a-z]b$", &name) && matches("^a\\Wb$", &name));
    assert!(!matches("^a[^\u{fffd}]b$", &name) && !matches("^a\u{fffd}\u{fffd}b$", &name));
    // A pattern's own U+FFFD still matches a real U+FFFD.
    assert!(matches("^a\u{fffd}b$", "a\u{fffd}b"));
}

#[test]
fn prefix_viability_is_exact_for_anchored_regexes() {
    let regex = Regex::new("^dir/[^/]*/keep$", true).unwrap();
    assert!(regex.may_match_with_prefix("dir/"));
    assert!(regex.may_match_with_prefix("dir/sub/"));
    assert!(!regex.may_match_with_prefix("other/"));
    assert!(!regex.may_match_with_prefix("dir/sub/x/"));
    // Without the DFA (not asked for, or not anchored) the answer is a conservative yes.
    assert!(
        Regex::new("^dir/[^/]*/keep$", false)
            .unwrap()
            .may_match_with_prefix("other/")
    );
    assert!(
        Regex::new("^a|b$", true)
            .unwrap()
            .may_match_with_prefix("x/")
    );
}
