use super::*;

fn excluded(patterns: &[&str], path: &str) -> bool {
    PatternMatcher::new(patterns)
        .unwrap()
        .matches_or_parent_matches(path)
        .unwrap()
}

#[test]
fn clean_path_follows_go() {
    for (input, expected) in [
        ("", "."),
        (".", "."),
        ("./", "."),
        ("a//b/./c/", "a/b/c"),
        ("a/../..", ".."),
        ("../a/../b", "../b"),
        ("/..", "/"),
        ("/a/../../b", "/b"),
        ("//", "/"),
        ("**/", "**"),
        ("!./x", "!./x"),
    ] {
        assert_eq!(clean_path(input), expected, "{input:?}");
    }
}

#[test]
fn read_ignore_file_matches_upstream_example() {
    let text = "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! \n";
    assert_eq!(
        read_ignore_file(text).unwrap(),
        [
            "test1",
            "test2",
            "a/file/here",
            "lastfile",
            "!inverted/abs/path",
            "!",
            "!"
        ]
    );
}

#[test]
fn read_ignore_file_edge_cases() {
    assert_eq!(
        read_ignore_file("\u{feff}#c\r\n a \r\n/\n//x//\n!../y").unwrap(),
        ["a", "/", "x", "!../y"]
    );
    // A BOM only counts at the start of the file.
    assert_eq!(
        read_ignore_file("a\n\u{feff}#b").unwrap(),
        ["a", "\u{feff}#b"]
    );
    assert!(read_ignore_file("").unwrap().is_empty());
}

#[test]
fn lone_exclamation_is_rejected_with_its_index() {
    let error = PatternMatcher::new(["a", "", "!/"]).unwrap_err();
    assert_eq!(error, PatternError::LoneExclamation { index: 3 });
}

#[test]
fn syntax_errors_name_the_pattern() {
    let error = PatternMatcher::new(["ok", "src/[a-"]).unwrap_err();
    assert!(
        matches!(error, PatternError::Syntax { ref pattern, index: 2, .. } if pattern == "src/[a-")
    );
    assert!(error.to_string().contains("src/[a-"));
}

#[test]
fn unmatchable_patterns_fail_only_when_evaluated() {
    let matcher = PatternMatcher::new(["x", "![z-a]"]).unwrap();
    // Not excluded yet, so the exclusion pattern is skipped, like upstream.
    assert!(!matcher.matches_or_parent_matches("y").unwrap());
    assert!(matches!(
        matcher.matches_or_parent_matches("x"),
        Err(PatternError::Unmatchable { .. })
    ));
}

#[test]
fn last_match_wins_with_parents() {
    assert!(excluded(&["docs"], "docs/a/b.md"));
    assert!(!excluded(&["docs", "!docs/a"], "docs/a/b.md"));
    assert!(excluded(&["docs", "!docs/a", "docs/a/*.md"], "docs/a/b.md"));
    assert!(!excluded(&["*.md"], "docs/b.md"));
    assert!(excluded(&["**/*.md"], "docs/b.md"));
    assert!(!excluded(&["!x"], "x"));
    assert!(!excluded(&[], "x"));
    assert!(!excluded(&["*"], "."));
}

#[test]
fn leading_slash_and_dot_patterns_need_the_ignore_file_reader() {
    // `PatternMatcher` cleans but keeps a leading `/`, like moby; `read_ignore_file` strips it.
    assert!(!excluded(&["/a"], "a"));
    let patterns = read_ignore_file("/a\n./b\n").unwrap();
    assert!(excluded(
        &patterns.iter().map(String::as_str).collect::<Vec<_>>(),
        "a/x"
    ));
    assert!(excluded(
        &patterns.iter().map(String::as_str).collect::<Vec<_>>(),
        "b"
    ));
}

#[test]
fn pruning_without_exceptions() {
    let matcher = PatternMatcher::new(["node_modules", "**/__pycache__"]).unwrap();
    assert!(!matcher.has_exclusions());
    assert_eq!(
        matcher.exclusion_state("node_modules").unwrap(),
        DirDecision::Excluded {
            may_reinclude_children: false
        }
    );
    assert_eq!(
        matcher.exclusion_state("app/__pycache__").unwrap(),
        DirDecision::Excluded {
            may_reinclude_children: false
        }
    );
    assert_eq!(
        matcher.exclusion_state("app").unwrap(),
        DirDecision::Included
    );
}

#[test]
fn pruning_with_exceptions() {
    let matcher = PatternMatcher::new([
        "build",
        "!build/keep.txt",
        "cache",
        "!cache*/stay",
        "logs",
        "!**/*.important",
        "vendor",
        "!other/x",
        "tmp",
        "!tmp/*/re[a-c]",
    ])
    .unwrap();
    let reinclude = DirDecision::Excluded {
        may_reinclude_children: true,
    };
    assert!(matcher.has_exclusions());
    assert_eq!(matcher.exclusion_state("build").unwrap(), reinclude);
    assert_eq!(matcher.exclusion_state("cache").unwrap(), reinclude);
    assert_eq!(matcher.exclusion_state("logs").unwrap(), reinclude);
    assert_eq!(matcher.exclusion_state("tmp").unwrap(), reinclude);
    assert_eq!(matcher.exclusion_state("tmp/a").unwrap(), reinclude);
    // No exception can reach inside vendor/ (`!other/x` is elsewhere; `!**/*.important`
    // could, so check a matcher without it).
    let narrow =
        PatternMatcher::new(["vendor", "!other/x", "!tmp/*/re[a-c]", "!build/keep.txt"]).unwrap();
    assert_eq!(
        narrow.exclusion_state("vendor").unwrap(),
        DirDecision::Excluded {
            may_reinclude_children: false
        }
    );
    assert_eq!(
        narrow.exclusion_state("vendor/").unwrap(),
        DirDecision::Excluded {
            may_reinclude_children: false
        }
    );
    // And the decisions agree with per-path matching.
    assert!(!matcher.matches_or_parent_matches("build/keep.txt").unwrap());
    assert!(!matcher.matches_or_parent_matches("cache/stay").unwrap());
    assert!(
        !matcher
            .matches_or_parent_matches("logs/a/b.important")
            .unwrap()
    );
    assert!(!matcher.matches_or_parent_matches("tmp/x/reb").unwrap());
    assert!(matcher.matches_or_parent_matches("tmp/x/red").unwrap());
}

#[test]
fn pattern_accessors() {
    let matcher = PatternMatcher::new(["  a/ ", "!b", " "]).unwrap();
    let shown: Vec<(&str, bool)> = matcher
        .patterns()
        .iter()
        .map(|pattern| (pattern.as_str(), pattern.is_exclusion()))
        .collect();
    assert_eq!(shown, [("a", false), ("b", true)]);
    assert!(!matcher.is_empty());
    assert!(
        PatternMatcher::new(Vec::<String>::new())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn parent_dir_follows_go_dir() {
    for (input, expected) in [
        ("a", "."),
        ("a/b", "a"),
        ("a/b/c", "a/b"),
        ("/a", "/"),
        ("/a/b", "/a"),
        ("a//b", "a"),
        ("a/./b", "a"),
        ("a/../b", "."),
        ("a/b/", "a/b"),
        ("../a", ".."),
        ("./a", "."),
    ] {
        assert_eq!(parent_dir(input), expected, "{input:?}");
    }
}

#[test]
fn a_line_over_the_scanner_limit_is_an_error_naming_it() {
    let long = "x".repeat(MAX_IGNORE_LINE_BYTES + 1);
    let error = read_ignore_file(&format!("a\n# ok\n{long}*\nb\n")).unwrap_err();
    assert_eq!(
        error,
        PatternError::LineTooLong {
            line: 3,
            length: MAX_IGNORE_LINE_BYTES + 2
        }
    );
    let message = error.to_string();
    assert!(
        message.contains("line 3") && message.contains("65535"),
        "{message}"
    );
    // A comment line counts too: BuildKit's scanner fails before looking at it.
    assert!(read_ignore_file(&format!("#{long}")).is_err());
    // Exactly at the limit is fine, and the pattern works.
    let at_limit = format!("{}*", "x".repeat(MAX_IGNORE_LINE_BYTES - 1));
    let patterns = read_ignore_file(&format!("{at_limit}\r")).unwrap_err();
    assert!(matches!(
        patterns,
        PatternError::LineTooLong { line: 1, .. }
    ));
    let patterns = read_ignore_file(&at_limit).unwrap();
    let matcher = PatternMatcher::new(&patterns).unwrap();
    let name = format!("{}yz", "x".repeat(MAX_IGNORE_LINE_BYTES - 1));
    assert!(matcher.matches_or_parent_matches(&name).unwrap());
}

#[test]
fn names_with_invalid_utf8_match_by_their_bytes() {
    let name = encode_name(b"bad\xff\xfename");
    let other = encode_name(b"bad\xfe\xffname");
    // `*` and `?` cross invalid bytes; each byte is one `?`, like Go's regexp.
    assert!(excluded(&["bad*"], &name));
    assert!(excluded(&["bad??name"], &name));
    assert!(!excluded(&["bad?name"], &name));
    assert!(excluded(&["**/bad*"], &format!("dir/{name}")));
    // Exact patterns compare bytes, as moby's `path == pattern`: U+FFFD is not 0xff.
    assert!(!excluded(&["bad\u{fffd}\u{fffd}name"], &name));
    assert!(excluded(
        &["bad\u{fffd}\u{fffd}name"],
        "bad\u{fffd}\u{fffd}name"
    ));
    assert!(excluded(&["bad[^/]?name"], &other));
    // A class sees an invalid byte as U+FFFD (Go's RuneError), and so does a literal U+FFFD.
    assert!(excluded(&["bad[^a][^a]name"], &name));
    assert!(!excluded(&["bad[a-z][a-z]name"], &name));
    assert!(excluded(&["bad\u{fffd}\u{fffd}n*"], &name));
    // Directories with such names exclude what they hold, and `!` re-includes by bytes.
    let dir = encode_name(b"d\x80ir");
    assert!(excluded(&["d?ir"], &format!("{dir}/x")));
    assert!(!excluded(&["d?ir", "!d?ir/x"], &format!("{dir}/x")));
    // A real name with a character of the escape range is not confused with escaped bytes.
    let reserved = encode_text("r\u{10FFFF}");
    assert!(excluded(&["r\u{10FFFF}"], &reserved));
    assert!(!excluded(&["r\u{10FFFF}"], &encode_name(b"r\xff")));
}
