use super::*;

fn matches(pattern: &str, text: &str) -> bool {
    Regex::new(pattern)
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
        assert!(Regex::new(bad).is_err(), "{bad}");
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
        assert!(Regex::new(good).is_ok(), "{good}");
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
    let huge = "a{1000}".repeat(200);
    assert!(Regex::new(&huge).is_err());
}
