//! Shell patterns of the `${v#p}`, `${v%p}` and `${v/p/r}` substitutions.
//!
//! BuildKit (`shell/lex.go`, `convertShellPatternToRegex`) turns the pattern into a Go regular
//! expression: `*` is `.*?` (shortest) or `.*` (longest), `?` is `.`, `\*` `\?` `\\` are
//! literal, `\}` and `\/` drop their backslash, any other escape is an error, and every other
//! character is literal (bracket expressions are not supported). Go's `.` does not match a
//! newline, and matches follow Perl's leftmost-first priority. This module reproduces exactly
//! that with a small backtracking matcher instead of a regex engine.

use std::collections::HashSet;

/// One element of a compiled shell pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// A literal character.
    Literal(char),
    /// `?`: any one character except a newline (Go's `.`).
    AnyChar,
    /// `*`: any run of characters without a newline (Go's `.*` or `.*?`).
    Star,
}

/// Why a substitution pattern was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InvalidPattern {
    pub(crate) reason: String,
}

/// Why a substitution failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PatternFailure {
    /// The pattern is not valid.
    Invalid(InvalidPattern),
    /// The matcher used up the steps it was given.
    OutOfSteps,
    /// The result would exceed the length it was given.
    TooLong,
}

impl From<InvalidPattern> for PatternFailure {
    fn from(invalid: InvalidPattern) -> Self {
        Self::Invalid(invalid)
    }
}

/// Takes `units` steps from `steps`, or takes all and fails when fewer are left.
fn spend(steps: &mut usize, units: usize) -> Result<(), PatternFailure> {
    if let Some(left) = steps.checked_sub(units) {
        *steps = left;
        Ok(())
    } else {
        *steps = 0;
        Err(PatternFailure::OutOfSteps)
    }
}

/// A compiled `#`/`%`/`/` pattern.
#[derive(Debug, Clone)]
pub(crate) struct ShellPattern {
    tokens: Vec<Token>,
    /// `*` prefers the longest run (`##`, `%%`, `/`) instead of the shortest (`#`, `%`).
    is_greedy: bool,
}

impl ShellPattern {
    pub(crate) fn compile(pattern: &str, is_greedy: bool) -> Result<Self, InvalidPattern> {
        let mut tokens = Vec::with_capacity(pattern.len());
        let mut chars = pattern.chars().peekable();
        while let Some(ch) = chars.next() {
            match ch {
                '*' => tokens.push(Token::Star),
                '?' => tokens.push(Token::AnyChar),
                '\\' => match chars.peek().copied() {
                    // BuildKit: `}` and `/` are escaped only to get past the `${}` parser; the
                    // backslash is not part of the pattern and the character stays literal.
                    Some('}' | '/') => {}
                    Some(next @ ('*' | '?' | '\\')) => {
                        chars.next();
                        tokens.push(Token::Literal(next));
                    }
                    Some(other) => {
                        return Err(InvalidPattern {
                            reason: format!("invalid escape '\\{other}'"),
                        });
                    }
                    None => {
                        return Err(InvalidPattern {
                            reason: "invalid escape '\\' at the end of the pattern".to_owned(),
                        });
                    }
                },
                other => tokens.push(Token::Literal(other)),
            }
        }
        Ok(Self { tokens, is_greedy })
    }

    /// Matches the pattern at `start` and returns the end (a char index) of the
    /// highest-priority match, as a backtracking regex engine would. Every state visited and
    /// every alternative pushed is a step taken from `steps`.
    fn match_at(
        &self,
        text: &[char],
        start: usize,
        steps: &mut usize,
    ) -> Result<Option<usize>, PatternFailure> {
        let token_count = self.tokens.len();
        // (token index, char position) pairs already explored; revisiting one means it failed.
        let mut seen: HashSet<(usize, usize)> = HashSet::new();
        let mut stack = vec![(0_usize, start)];
        while let Some((token_index, position)) = stack.pop() {
            spend(steps, 1)?;
            if token_index == token_count {
                return Ok(Some(position));
            }
            if !seen.insert((token_index, position)) {
                continue;
            }
            let next = token_index + 1;
            match self.tokens[token_index] {
                Token::Literal(expected) => {
                    if text.get(position) == Some(&expected) {
                        stack.push((next, position + 1));
                    }
                }
                Token::AnyChar => {
                    if text.get(position).is_some_and(|&ch| ch != '\n') {
                        stack.push((next, position + 1));
                    }
                }
                Token::Star => {
                    let run_end = text[position..]
                        .iter()
                        .position(|&ch| ch == '\n')
                        .map_or(text.len(), |offset| position + offset);
                    spend(steps, run_end - position + 1)?;
                    // The stack pops the last push first: push the preferred length last.
                    if self.is_greedy {
                        stack.extend((position..=run_end).map(|end| (next, end)));
                    } else {
                        stack.extend((position..=run_end).rev().map(|end| (next, end)));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Leftmost match at or after `from`: `(start, end)` as char indices.
    fn find_from(
        &self,
        text: &[char],
        from: usize,
        steps: &mut usize,
    ) -> Result<Option<(usize, usize)>, PatternFailure> {
        for start in from..=text.len() {
            if let Some(end) = self.match_at(text, start, steps)? {
                return Ok(Some((start, end)));
            }
        }
        Ok(None)
    }
}

/// `${value#pattern}` / `${value##pattern}`: remove the shortest/longest matching prefix.
pub(crate) fn trim_prefix(
    pattern: &str,
    value: &str,
    is_greedy: bool,
    steps: &mut usize,
) -> Result<String, PatternFailure> {
    let compiled = ShellPattern::compile(pattern, is_greedy)?;
    spend(steps, value.len())?;
    let text: Vec<char> = value.chars().collect();
    Ok(match compiled.match_at(&text, 0, steps)? {
        Some(end) => text[end..].iter().collect(),
        None => value.to_owned(),
    })
}

/// `${value%pattern}` / `${value%%pattern}`: remove the shortest/longest matching suffix.
///
/// BuildKit reverses both the pattern (keeping `\x` pairs in order) and the value and trims a
/// prefix, which is what we do too so the same matches are found.
pub(crate) fn trim_suffix(
    pattern: &str,
    value: &str,
    is_greedy: bool,
    steps: &mut usize,
) -> Result<String, PatternFailure> {
    let reversed_pattern = reverse_pattern(pattern);
    spend(steps, value.len())?;
    let reversed_value: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reversed_pattern, &reversed_value, is_greedy, steps)?;
    Ok(trimmed.chars().rev().collect())
}

/// Reverses a pattern without breaking escapes: `a\*c` becomes `c\*a` (BuildKit
/// `reversePattern`).
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = vec!['\0'; chars.len()];
    let Some(last) = chars.len().checked_sub(1) else {
        return String::new();
    };
    let mut index = 0;
    while index <= last {
        let ch = chars[index];
        let out_index = last - index;
        if ch == '\\' && index != last {
            out[out_index - 1] = ch;
            out[out_index] = chars[index + 1];
            index += 2;
        } else {
            out[out_index] = ch;
            index += 1;
        }
    }
    out.into_iter().collect()
}

/// `${value/pattern/replacement}` (first match) and `${value//pattern/replacement}` (all).
///
/// The single form inserts the replacement literally. The all form goes through Go's
/// `Regexp.ReplaceAllString`, so `$$` in the replacement is a `$`, `$0`/`${0}` is the whole
/// match and any other `$name` is empty (the pattern has no capture groups); we mirror that.
///
/// The result is never longer than `max_len` ([`PatternFailure::TooLong`] before it grows
/// past it).
pub(crate) fn replace(
    pattern: &str,
    value: &str,
    replacement: &str,
    is_replace_all: bool,
    steps: &mut usize,
    max_len: usize,
) -> Result<String, PatternFailure> {
    let compiled = ShellPattern::compile(pattern, true)?;
    spend(steps, value.len())?;
    let text: Vec<char> = value.chars().collect();
    if !is_replace_all {
        return match compiled.find_from(&text, 0, steps)? {
            Some((start, end)) => {
                let kept: usize = text[..start]
                    .iter()
                    .chain(&text[end..])
                    .map(|ch| ch.len_utf8())
                    .sum();
                if kept.saturating_add(replacement.len()) > max_len {
                    return Err(PatternFailure::TooLong);
                }
                let mut out: String = text[..start].iter().collect();
                out.push_str(replacement);
                out.extend(&text[end..]);
                Ok(out)
            }
            None => Ok(value.to_owned()),
        };
    }
    // Go regexp.ReplaceAllString: an empty match right after the previous match is not
    // replaced, and the search always advances by at least one character.
    let mut out = String::with_capacity(value.len());
    let mut last_match_end = 0;
    let mut search_from = 0;
    while search_from <= text.len() {
        let Some((start, end)) = compiled.find_from(&text, search_from, steps)? else {
            break;
        };
        push_chars(&mut out, &text[last_match_end..start], max_len)?;
        if end > last_match_end || start == 0 {
            expand_template(&mut out, replacement, &text[start..end], max_len)?;
        }
        last_match_end = end;
        search_from = if search_from + 1 > end {
            search_from + 1
        } else {
            end
        };
    }
    push_chars(&mut out, &text[last_match_end.min(text.len())..], max_len)?;
    Ok(out)
}

/// Appends `chars` unless that makes `out` longer than `max_len`.
fn push_chars(out: &mut String, chars: &[char], max_len: usize) -> Result<(), PatternFailure> {
    let len: usize = chars.iter().map(|ch| ch.len_utf8()).sum();
    push_checked(out, len, max_len)?;
    out.extend(chars);
    Ok(())
}

/// Checks that `len` more bytes keep `out` within `max_len`.
fn push_checked(out: &str, len: usize, max_len: usize) -> Result<(), PatternFailure> {
    if out.len().saturating_add(len) > max_len {
        return Err(PatternFailure::TooLong);
    }
    Ok(())
}

/// Go `Regexp.Expand` for a regex without capture groups.
fn expand_template(
    out: &mut String,
    template: &str,
    whole_match: &[char],
    max_len: usize,
) -> Result<(), PatternFailure> {
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        push_checked(out, dollar + 1, max_len)?;
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let (name, remainder) = if let Some(braced) = rest.strip_prefix('{') {
            match braced.find('}') {
                Some(close) if is_template_name(&braced[..close]) => {
                    (&braced[..close], &braced[close + 1..])
                }
                _ => ("", rest),
            }
        } else {
            let len = rest
                .char_indices()
                .find(|&(_, ch)| !(ch.is_alphanumeric() || ch == '_'))
                .map_or(rest.len(), |(index, _)| index);
            (&rest[..len], &rest[len..])
        };
        if name.is_empty() {
            // Malformed reference: Go keeps the `$` as text.
            out.push('$');
            continue;
        }
        // Only `0` names the whole match; Go rejects leading zeros, so `00` is a (missing)
        // named group and expands to nothing, like every other name here.
        if name == "0" {
            push_chars(out, whole_match, max_len)?;
        }
        rest = remainder;
    }
    push_checked(out, rest.len(), max_len)?;
    out.push_str(rest);
    Ok(())
}

fn is_template_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|ch| ch.is_alphanumeric() || ch == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    // The functions with unlimited steps and length, as most tests want them.
    fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, PatternFailure> {
        super::trim_prefix(pattern, value, greedy, &mut { usize::MAX })
    }

    fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, PatternFailure> {
        super::trim_suffix(pattern, value, greedy, &mut { usize::MAX })
    }

    fn replace(
        pattern: &str,
        value: &str,
        with: &str,
        all: bool,
    ) -> Result<String, PatternFailure> {
        super::replace(pattern, value, with, all, &mut { usize::MAX }, usize::MAX)
    }

    #[test]
    fn backtracking_stops_when_its_steps_run_out() {
        // `*a*a*…b` against a long run of `a`s backtracks through every split.
        let value = "a".repeat(2_000);
        let pattern = "*a".repeat(20) + "b";
        let mut steps = 100_000;
        assert_eq!(
            super::replace(&pattern, &value, "x", true, &mut steps, usize::MAX),
            Err(PatternFailure::OutOfSteps)
        );
        assert_eq!(steps, 0);
        let mut steps = 1_000;
        assert_eq!(
            super::trim_prefix("*/", "a/b", true, &mut steps).as_deref(),
            Ok("b")
        );
        assert!(
            steps > 900,
            "a short match takes a few steps, took {}",
            1_000 - steps
        );
    }

    #[test]
    fn replacement_output_is_bounded() {
        let value = "a".repeat(1_000);
        let grow = |template: &str, all: bool| {
            super::replace("a", &value, template, all, &mut { usize::MAX }, 10_000)
        };
        assert_eq!(grow(&"$0".repeat(100), true), Err(PatternFailure::TooLong));
        assert_eq!(
            grow(&"b".repeat(20_000), false),
            Err(PatternFailure::TooLong)
        );
        assert_eq!(grow("bb", true).map(|s| s.len()), Ok(2_000));
    }

    #[test]
    fn prefix_shortest_and_longest() {
        assert_eq!(trim_prefix("*/", "a/b/c", false).unwrap(), "b/c");
        assert_eq!(trim_prefix("*/", "a/b/c", true).unwrap(), "c");
        assert_eq!(trim_prefix("x*", "a/b/c", true).unwrap(), "a/b/c");
        assert_eq!(trim_prefix("?", "abc", false).unwrap(), "bc");
    }

    #[test]
    fn suffix_shortest_and_longest() {
        assert_eq!(trim_suffix(".*", "file.tar.gz", false).unwrap(), "file.tar");
        assert_eq!(trim_suffix(".*", "file.tar.gz", true).unwrap(), "file");
        assert_eq!(trim_suffix("\\*c", "ab*c", false).unwrap(), "ab");
    }

    #[test]
    fn star_does_not_cross_newlines() {
        assert_eq!(trim_prefix("*b", "a\nb", true).unwrap(), "a\nb");
        assert_eq!(trim_prefix("a?b", "a\nb", true).unwrap(), "a\nb");
    }

    #[test]
    fn regex_metacharacters_are_literal() {
        assert_eq!(trim_prefix("a.c", "abc", false).unwrap(), "abc");
        assert_eq!(trim_prefix("a.c", "a.cd", false).unwrap(), "d");
        assert_eq!(trim_prefix("[a]", "[a]b", false).unwrap(), "b");
    }

    #[test]
    fn bad_escapes_are_errors() {
        assert!(ShellPattern::compile("\\a", true).is_err());
        assert!(ShellPattern::compile("a\\", true).is_err());
        assert!(ShellPattern::compile("\\}", true).is_ok());
    }

    #[test]
    fn replace_first_and_all() {
        assert_eq!(replace("o", "foo boo", "0", false).unwrap(), "f0o boo");
        assert_eq!(replace("o", "foo boo", "0", true).unwrap(), "f00 b00");
        assert_eq!(replace("x", "abc", "y", true).unwrap(), "abc");
        // Greedy star takes the longest run.
        assert_eq!(replace("b*", "abcbd", "X", false).unwrap(), "aX");
    }

    #[test]
    fn replace_all_empty_matches_follow_go() {
        // Go: regexp.MustCompile("").ReplaceAllString("abc", "-") == "-a-b-c-"
        assert_eq!(replace("", "abc", "-", true).unwrap(), "-a-b-c-");
        // Go: regexp.MustCompile(".*").ReplaceAllString("abc", "-") == "-"
        assert_eq!(replace("*", "abc", "-", true).unwrap(), "-");
    }

    #[test]
    fn replace_all_expands_go_templates() {
        assert_eq!(replace("b", "abc", "[$0]", true).unwrap(), "a[b]c");
        assert_eq!(replace("b", "abc", "[${0}]", true).unwrap(), "a[b]c");
        assert_eq!(replace("b", "abc", "$$", true).unwrap(), "a$c");
        assert_eq!(replace("b", "abc", "$x.", true).unwrap(), "a.c");
        assert_eq!(replace("b", "abc", "$", true).unwrap(), "a$c");
        // The single replacement is literal.
        assert_eq!(replace("b", "abc", "$0", false).unwrap(), "a$0c");
    }

    #[test]
    fn reverse_pattern_keeps_escapes() {
        assert_eq!(reverse_pattern("a\\*c"), "c\\*a");
        assert_eq!(reverse_pattern(""), "");
        assert_eq!(reverse_pattern("ab\\"), "\\ba");
    }
}
