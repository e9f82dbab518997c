//! Compiled `.dockerignore` patterns.
//!
//! moby/patternmatcher checks a pattern with Go's `filepath.Match` syntax and then
//! (`Pattern.compile`) classifies it: a plain string is compared exactly, `prefix**` and
//! `**suffix` use string operations, and anything else is translated into a Go regex
//! (`*` → `[^/]*`, `?` → `[^/]`, `**/` → `(.*/)?`, a final `**` → `.*`, `\x` kept as a regex
//! escape, `[`/`]` passed through, `.+()$` escaped) and matched with `MatchString`. We build
//! the same regex text and run it on [`Regex`], so even odd patterns (`*.js|*.ts`, `a{2}*`,
//! `[*]`) answer as they do in Docker (see [`super::go_regex`] for how Go's regex syntax is
//! carried over to `regex-automata`).

use std::iter::Peekable;
use std::str::CharIndices;

use super::go_regex::{Regex, RegexError};

/// How a pattern is matched, after moby's `matchType`.
#[derive(Debug, Clone)]
pub(crate) enum MatchKind {
    /// The path equals the pattern.
    Exact,
    /// `abc**`: the path starts with this text.
    Prefix(String),
    /// `**abc`: the path ends with this text (or, for `**/abc`, equals `abc`).
    Suffix(String),
    /// Anything with wildcards, classes or escapes, as moby's regex.
    Regex(Regex),
    /// Passes the syntax check but cannot be compiled; every match attempt fails with this
    /// reason (moby retries the regex compilation and fails each time).
    Unmatchable(Box<Unmatchable>),
}

/// Why a pattern is not valid `filepath.Match` syntax. Offsets count bytes in the cleaned
/// pattern ([`super::Pattern::as_str`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GlobSyntaxError {
    /// A `\` at the very end escapes nothing.
    #[error("trailing backslash at byte {offset} escapes nothing; write `\\\\` for a backslash")]
    TrailingBackslash { offset: usize },
    /// A `[` whose class never ends (or ends right after an item with no `]`).
    #[error("unterminated character class `[` at byte {offset}; close it with `]`")]
    UnterminatedClass { offset: usize },
    /// `-` or `]` where a class item must start (`[]a]`, `[-a]`, `[a-]`).
    #[error("`{character}` at byte {offset} cannot start an item of a character class; escape it")]
    ClassItemStart { character: char, offset: usize },
}

type Scan<'a> = Peekable<CharIndices<'a>>;

/// Why a pattern that passed the syntax check cannot be compiled.
#[derive(Debug, Clone)]
pub(crate) struct Unmatchable {
    /// The regex text moby would build.
    pub(crate) regex: String,
    pub(crate) error: RegexError,
    /// `regex `…`: error`, kept for [`super::Pattern::unmatchable_reason`].
    pub(crate) message: String,
}

/// Checks `pattern` against Go's `filepath.Match` syntax (Unix rules): classes must be closed
/// and hold at least one item, `-` and `]` cannot start an item, a range needs an end, and a
/// `\` needs a following character.
pub(crate) fn check_syntax(pattern: &str) -> Result<(), GlobSyntaxError> {
    let mut chars = pattern.char_indices().peekable();
    while let Some((offset, ch)) = chars.next() {
        match ch {
            '\\' => {
                chars
                    .next()
                    .ok_or(GlobSyntaxError::TrailingBackslash { offset })?;
            }
            '[' => check_class_syntax(&mut chars, offset)?,
            _ => {}
        }
    }
    Ok(())
}

fn check_class_syntax(chars: &mut Scan<'_>, class_offset: usize) -> Result<(), GlobSyntaxError> {
    if chars.peek().map(|&(_, ch)| ch) == Some('^') {
        chars.next();
    }
    let mut item_count = 0;
    loop {
        if chars.peek().map(|&(_, ch)| ch) == Some(']') && item_count > 0 {
            chars.next();
            return Ok(());
        }
        check_class_char(chars, class_offset)?;
        if chars.peek().map(|&(_, ch)| ch) == Some('-') {
            chars.next();
            check_class_char(chars, class_offset)?;
        }
        item_count += 1;
    }
}

/// Go `getEsc`: one class character, which must be followed by more pattern text.
fn check_class_char(chars: &mut Scan<'_>, class_offset: usize) -> Result<(), GlobSyntaxError> {
    let unterminated = GlobSyntaxError::UnterminatedClass {
        offset: class_offset,
    };
    match chars.next() {
        None => return Err(unterminated),
        Some((offset, character @ ('-' | ']'))) => {
            return Err(GlobSyntaxError::ClassItemStart { character, offset });
        }
        Some((offset, '\\')) => {
            if chars.next().is_none() {
                return Err(GlobSyntaxError::TrailingBackslash { offset });
            }
        }
        Some(_) => {}
    }
    if chars.peek().is_none() {
        return Err(unterminated);
    }
    Ok(())
}

/// What the scan of a pattern has decided so far (moby `detectedType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detected {
    Exact,
    Prefix,
    Suffix,
    Regex,
}

/// moby's `shouldEscape`: a bitmap meant for `.+()|{}$`, but indexed so that only bytes
/// below 64 fit; `|`, `{` and `}` therefore stay raw regex syntax.
fn is_escaped_for_regex(ch: char) -> bool {
    matches!(ch, '.' | '+' | '(' | ')' | '$')
}

/// Compiles a cleaned pattern (without its `!`) that passed [`check_syntax`]. With
/// `needs_prefix_checks` (a `!` pattern), a regex is also prepared for
/// [`Regex::may_match_with_prefix`].
pub(crate) fn compile(pattern: &str, needs_prefix_checks: bool) -> MatchKind {
    let mut regex = String::from("^");
    let mut detected = Detected::Exact;
    // Go's text/scanner skips a byte order mark at the start of its input.
    let scanned = pattern.strip_prefix('\u{feff}').unwrap_or(pattern);
    let mut chars = scanned.chars().peekable();
    let mut is_first = true;
    while let Some(ch) = chars.next() {
        let is_first_element = std::mem::replace(&mut is_first, false);
        match ch {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                // `**/` is treated as `**`.
                if chars.peek() == Some(&'/') {
                    chars.next();
                }
                if chars.peek().is_none() {
                    if detected == Detected::Exact {
                        detected = Detected::Prefix;
                    } else {
                        regex.push_str(".*");
                        detected = Detected::Regex;
                    }
                } else {
                    regex.push_str("(.*/)?");
                    detected = Detected::Regex;
                }
                if is_first_element {
                    detected = Detected::Suffix;
                }
            }
            '*' => {
                regex.push_str("[^/]*");
                detected = Detected::Regex;
            }
            '?' => {
                regex.push_str("[^/]");
                detected = Detected::Regex;
            }
            '\\' => {
                regex.push('\\');
                if let Some(escaped) = chars.next() {
                    regex.push(escaped);
                    detected = Detected::Regex;
                }
            }
            '[' | ']' => {
                regex.push(ch);
                detected = Detected::Regex;
            }
            ch if is_escaped_for_regex(ch) => {
                regex.push('\\');
                regex.push(ch);
            }
            other => regex.push(other),
        }
    }
    match detected {
        Detected::Exact => MatchKind::Exact,
        Detected::Prefix => {
            MatchKind::Prefix(pattern.strip_suffix("**").unwrap_or(pattern).to_owned())
        }
        Detected::Suffix => MatchKind::Suffix(pattern.get(2..).unwrap_or_default().to_owned()),
        Detected::Regex => {
            regex.push('$');
            match Regex::new(&regex, needs_prefix_checks) {
                Ok(regex) => MatchKind::Regex(regex),
                Err(error) => MatchKind::Unmatchable(Box::new(Unmatchable {
                    message: format!("regex `{regex}`: {error}"),
                    regex,
                    error,
                })),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regex(pattern: &str) -> Regex {
        match compile(pattern, true) {
            MatchKind::Regex(regex) => regex,
            other => panic!("{pattern} compiled to {other:?}"),
        }
    }

    fn compile_test(pattern: &str) -> MatchKind {
        compile(pattern, true)
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "[", "a[", "[]a]", "[x-]", "\\", "a\\", "[^]", "[a-\\", "[-a]",
        ] {
            assert!(check_syntax(bad).is_err(), "{bad}");
        }
        for good in [
            "[\\]a]",
            "[Local-Only]",
            "[[:alpha:]]",
            "a[*]",
            "[^a-c]",
            "*?",
        ] {
            assert!(check_syntax(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn kinds() {
        assert!(matches!(compile_test("abc"), MatchKind::Exact));
        assert!(matches!(compile_test("a.^b|{}"), MatchKind::Exact));
        assert!(matches!(compile_test("abc/**"), MatchKind::Prefix(prefix) if prefix == "abc/"));
        assert!(matches!(compile_test("**/abc"), MatchKind::Suffix(suffix) if suffix == "/abc"));
        assert!(matches!(compile_test("**"), MatchKind::Suffix(suffix) if suffix.is_empty()));
        assert!(matches!(compile_test("**/*.go"), MatchKind::Regex(_)));
        assert!(matches!(
            compile_test("[Local-Only]"),
            MatchKind::Unmatchable(_)
        ));
        assert!(matches!(
            compile_test("[[:nope:]]"),
            MatchKind::Unmatchable(_)
        ));
        assert!(matches!(compile_test("a\\q"), MatchKind::Unmatchable(_)));
        assert!(matches!(compile_test("*{2}"), MatchKind::Unmatchable(_)));
    }

    #[test]
    fn wildcards() {
        let star = regex("a*b");
        assert!(star.is_match("ab") && star.is_match("axxb") && !star.is_match("a/b"));
        let question = regex("a?b");
        assert!(question.is_match("a☺b") && !question.is_match("a/b") && !question.is_match("ab"));
        let middle = regex("a**b");
        assert!(middle.is_match("ab") && middle.is_match("a/x/b") && middle.is_match("ax/b"));
        assert!(!middle.is_match("axb"));
        let tail = regex("*/**");
        assert!(tail.is_match("a/b/c") && tail.is_match("a/") && !tail.is_match("a"));
        assert!(!regex("**/*x").is_match("a\nb/x") && regex("*x").is_match("a\nx"));
    }

    #[test]
    fn unescaped_regex_syntax_behaves_like_docker() {
        // `|` splits the whole regex: `^[^/]*\.js` or `[^/]*\.ts$`, each half-anchored.
        let alternation = regex("*.js|*.ts");
        assert!(alternation.is_match("a.js") && alternation.is_match("a.jsx/y"));
        assert!(alternation.is_match("dir/b.ts") && !alternation.is_match("a.py"));
        // `{js,ts}` is not a valid repetition, so it is literal text.
        let braces = regex("*.{js,ts}");
        assert!(braces.is_match("a.{js,ts}") && !braces.is_match("a.js"));
        // `{2}` is a counted repetition.
        let counted = regex("*a{2}");
        assert!(counted.is_match("xaa") && !counted.is_match("xa"));
    }

    #[test]
    fn classes_and_escapes() {
        let class = regex("[a-c]x");
        assert!(class.is_match("bx") && !class.is_match("dx"));
        let negated = regex("a[^b]c");
        assert!(negated.is_match("a/c") && negated.is_match("a\nc") && !negated.is_match("abc"));
        let posix = regex("[[:digit:]_]");
        assert!(posix.is_match("7") && posix.is_match("_") && !posix.is_match("x"));
        let escaped = regex("[\\]a]");
        assert!(escaped.is_match("]") && escaped.is_match("a") && !escaped.is_match("\\"));
        let perl = regex("\\d[\\w]");
        assert!(perl.is_match("1a") && !perl.is_match("a1"));
        let star_in_class = regex("[*]");
        // Docker's regex is `^[[^/]*]$`: the class `[[^/]` repeated, then a literal `]`.
        assert!(star_in_class.is_match("]") && star_in_class.is_match("[^]"));
        assert!(!star_in_class.is_match("*"));
    }

    #[test]
    fn prefix_viability() {
        let pattern = regex("dir/*/keep");
        assert!(pattern.may_match_with_prefix("dir/"));
        assert!(pattern.may_match_with_prefix("dir/sub/"));
        assert!(!pattern.may_match_with_prefix("other/"));
        assert!(!pattern.may_match_with_prefix("dir/sub/x/"));
        assert!(regex("**/*.go").may_match_with_prefix("any/where/"));
        // An empty alternative with `$` matches every path.
        assert!(regex("x*|").may_match_with_prefix("other/"));
    }
}
