//! Parser directives: `# syntax=`, `# escape=`, `# check=`.
//!
//! BuildKit recognizes directives only in the leading run of `# key=value` lines; the first
//! other line (blank, ordinary comment, instruction, unknown key) ends the scan. Keys are
//! case-insensitive and may appear once. [`detect_syntax`] mirrors BuildKit's
//! `DetectSyntax`, which also skips a `#!` shebang and accepts `//` and JSON forms.

use serde::Serialize;

use crate::span::Span;

/// A parser directive found at the top of the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directive {
    /// The key, lowercased: `syntax`, `escape` or `check`.
    pub name: String,
    /// The value with surrounding whitespace removed.
    pub value: String,
    /// The whole directive line.
    pub span: Span,
}

/// The directive keys BuildKit knows.
const KNOWN: [&str; 3] = ["syntax", "escape", "check"];

/// Whitespace of Go's RE2 `\s`.
fn is_re_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')
}

/// A directive line's key (lowercased), value, and the value's byte offset in the line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DirectiveLine<'a> {
    pub(crate) name: String,
    pub(crate) value: &'a str,
    pub(crate) value_offset: usize,
}

/// Why a directive line is rejected.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DirectiveError {
    Duplicate(String),
}

/// The state of BuildKit's `DirectiveParser`.
#[derive(Debug)]
pub(crate) struct DirectiveScanner {
    prefix: &'static str,
    seen: Vec<String>,
    done: bool,
}

impl DirectiveScanner {
    pub(crate) fn new(prefix: &'static str) -> Self {
        Self {
            prefix,
            seen: Vec::new(),
            done: false,
        }
    }

    /// Feeds one line; returns the directive it holds, if any.
    pub(crate) fn parse_line<'a>(
        &mut self,
        line: &'a str,
    ) -> Result<Option<DirectiveLine<'a>>, DirectiveError> {
        if self.done {
            return Ok(None);
        }
        let Some(after) = line.strip_prefix(self.prefix) else {
            self.done = true;
            return Ok(None);
        };
        let body = after.trim_start();
        let base = line.len() - body.len();
        let Some((name, value, value_offset)) = match_directive(body) else {
            self.done = true;
            return Ok(None);
        };
        let name = name.to_ascii_lowercase();
        if !KNOWN.contains(&name.as_str()) {
            self.done = true;
            return Ok(None);
        }
        if self.seen.contains(&name) {
            return Err(DirectiveError::Duplicate(name));
        }
        self.seen.push(name.clone());
        Ok(Some(DirectiveLine {
            name,
            value,
            value_offset: base + value_offset,
        }))
    }
}

/// `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`: returns key, value and the value's offset.
fn match_directive(body: &str) -> Option<(&str, &str, usize)> {
    let bytes = body.as_bytes();
    if !bytes.first()?.is_ascii_alphabetic() {
        return None;
    }
    let key_end = bytes
        .iter()
        .position(|b| !b.is_ascii_alphanumeric())
        .unwrap_or(bytes.len());
    let mut i = key_end;
    while i < bytes.len() && is_re_space(bytes[i]) {
        i += 1;
    }
    if bytes.get(i) != Some(&b'=') {
        return None;
    }
    let value_start = i + 1;
    let rest = &bytes[value_start..];
    if rest.is_empty() {
        return None;
    }
    let lead = rest.iter().take_while(|&&b| is_re_space(b)).count();
    if lead == rest.len() {
        // `(.+?)` must take at least one character: the last blank.
        let at = value_start + rest.len() - 1;
        return Some((&body[..key_end], &body[at..], at));
    }
    let start = value_start + lead;
    let trail = rest.iter().rev().take_while(|&&b| is_re_space(b)).count();
    let end = value_start + rest.len() - trail;
    Some((&body[..key_end], &body[start..end], start))
}

/// BuildKit's `DetectSyntax`: the `syntax` directive's full value, looking at `# syntax=`,
/// then `// syntax=`, then a whole-file JSON object `{"syntax": "..."}`. A BOM is ignored
/// and a first line starting with `#!` is skipped.
///
/// ```
/// use kiln_dockerfile::detect_syntax;
/// assert_eq!(detect_syntax("#!/usr/bin/env kiln\n# syntax=docker/dockerfile:1\nFROM a").as_deref(),
///            Some("docker/dockerfile:1"));
/// assert_eq!(detect_syntax("FROM a\n# syntax=x"), None);
/// ```
pub fn detect_syntax(src: &str) -> Option<String> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let src = match src.split_once('\n') {
        Some((first, rest)) if first.starts_with("#!") => rest,
        None if src.starts_with("#!") => "",
        _ => src,
    };
    for prefix in ["#", "//"] {
        let mut scanner = DirectiveScanner::new(prefix);
        for line in src.split('\n') {
            if scanner.done {
                break;
            }
            let line = line.strip_suffix('\r').unwrap_or(line);
            match scanner.parse_line(line) {
                Ok(Some(d)) if d.name == "syntax" => return Some(d.value.to_owned()),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    let value: serde_json::Value = serde_json::from_str(src).ok()?;
    value.get("syntax")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> Option<(String, String)> {
        let mut scanner = DirectiveScanner::new("#");
        scanner
            .parse_line(s)
            .unwrap()
            .map(|d| (d.name, d.value.to_owned()))
    }

    #[test]
    fn matches_directive_lines() {
        assert_eq!(line("# escape = `"), Some(("escape".into(), "`".into())));
        assert_eq!(line("#ESCAPE=\\"), Some(("escape".into(), "\\".into())));
        assert_eq!(
            line("# syntax=a b  "),
            Some(("syntax".into(), "a b".into()))
        );
        assert_eq!(line("# escape= "), Some(("escape".into(), " ".into())));
        assert_eq!(line("# escape="), None);
        assert_eq!(line("# foo=bar"), None);
        assert_eq!(line("# hello"), None);
    }

    #[test]
    fn first_other_line_ends_the_scan_and_duplicates_fail() {
        let mut scanner = DirectiveScanner::new("#");
        assert!(scanner.parse_line("# check=skip=all").unwrap().is_some());
        assert_eq!(
            scanner.parse_line("# CHECK=x"),
            Err(DirectiveError::Duplicate("check".into()))
        );
        assert!(scanner.parse_line("# comment").unwrap().is_none());
        assert!(scanner.parse_line("# escape=`").unwrap().is_none());
    }

    #[test]
    fn detect_syntax_fallbacks() {
        assert_eq!(
            detect_syntax("\u{feff}# syntax = a\n").as_deref(),
            Some("a")
        );
        assert_eq!(detect_syntax("// syntax=b\nFROM x").as_deref(), Some("b"));
        assert_eq!(detect_syntax(r#"{"syntax": "c"}"#).as_deref(), Some("c"));
        assert_eq!(detect_syntax("#!/bin/x\n\n# syntax=d"), None);
        assert_eq!(
            detect_syntax("# syntax=e\n# syntax=f").as_deref(),
            Some("e")
        );
    }
}
