//! `.dockerignore` files and Docker's context exclusion rules (moby `patternmatcher` and
//! `patternmatcher/ignorefile`).
//!
//! [`read_ignore_file`] turns the file's text into patterns; [`PatternMatcher`] decides
//! whether a context path is excluded: patterns are evaluated in order, the last one that
//! matches wins, `!pattern` re-includes, and a pattern that matches a parent directory
//! matches everything under it. This is not gitignore: `*.md` matches only at the top level,
//! `**` is needed to cross directories.
//!
//! For a context walker, [`PatternMatcher::exclusion_state`] tells whether an excluded
//! directory can be skipped entirely or must still be descended because a `!` pattern may
//! re-include something inside it.
//!
//! Paths are matched in the escaped form of [`encode_name`], so a name with bytes that are not
//! UTF-8 keeps them, and `*`/`?` match such a byte as Go's `regexp` does (one character, seen
//! as U+FFFD by classes).

mod context_name;
mod glob;
mod go_regex;

use std::borrow::Cow;

pub use glob::GlobSyntaxError;
use glob::MatchKind;

pub use context_name::{
    class_char, decode_name, display_name, encode_name, encode_text, escaped_byte,
};
pub use go_regex::{MAX_PATTERN_PROGRAM_BYTES, RegexError};

/// The longest `.dockerignore` line, in bytes (without its `\n`): BuildKit reads the file
/// with a `bufio.Scanner`, whose 64 KiB token buffer must hold the line and its newline, and
/// fails the build with `bufio.Scanner: token too long` on a longer one.
pub const MAX_IGNORE_LINE_BYTES: usize = 65_535;

/// Why a pattern list was rejected or a pattern could not be matched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// A pattern that is only `!` (number `index`, counted from 1).
    #[error(
        "illegal exclusion pattern \"!\" (pattern {index}): an exclusion needs a path after the \
         `!`"
    )]
    LoneExclamation { index: usize },
    /// The pattern is not valid `filepath.Match` syntax.
    #[error("syntax error in ignore pattern {pattern:?} (pattern {index}): {reason}")]
    Syntax {
        pattern: String,
        index: usize,
        reason: GlobSyntaxError,
    },
    /// A line of the ignore file is longer than [`MAX_IGNORE_LINE_BYTES`] (number `line`,
    /// counted from 1).
    #[error(
        "line {line} is {length} bytes long, over the limit of {MAX_IGNORE_LINE_BYTES} bytes \
         per .dockerignore line (BuildKit fails the same way: \"token too long\"); shorten the \
         pattern, for example with a `*` wildcard, or split it into several lines"
    )]
    LineTooLong { line: usize, length: usize },
    /// The pattern passed the syntax check but cannot be matched (Docker fails the same way,
    /// on every match).
    #[error("ignore pattern {pattern:?} cannot be matched: regex `{regex}`: {reason}")]
    Unmatchable {
        pattern: String,
        /// The Go regex moby builds from the pattern.
        regex: String,
        reason: RegexError,
    },
}

/// Reads the text of a `.dockerignore` file into patterns (moby `ignorefile.ReadAll`).
///
/// A BOM is stripped; a line is a comment only when its first character is `#`; lines are
/// trimmed and empty ones skipped; for `!` lines the rest is trimmed again; the path is
/// cleaned (`filepath.Clean`) and one leading `/` removed, then the `!` is put back. A lone
/// `!` is kept here and rejected by [`PatternMatcher::new`].
///
/// A line longer than [`MAX_IGNORE_LINE_BYTES`] is an error ([`PatternError::LineTooLong`]),
/// as in BuildKit, never skipped: the files it was meant to exclude would be sent.
///
/// ```
/// use kiln_dockerfile::read_ignore_file;
///
/// let text = "\u{feff}# comment\n/target/\n  ./docs//api  \n! /docs/api/README.md\n #x\n";
/// assert_eq!(
///     read_ignore_file(text)?,
///     ["target", "docs/api", "!docs/api/README.md", "#x"]
/// );
/// # Ok::<(), kiln_dockerfile::PatternError>(())
/// ```
pub fn read_ignore_file(text: &str) -> Result<Vec<String>, PatternError> {
    let mut patterns = Vec::new();
    for (index, line) in text.split('\n').enumerate() {
        // The scanner's limit counts the raw line: a BOM and a `\r` included.
        if line.len() > MAX_IGNORE_LINE_BYTES {
            return Err(PatternError::LineTooLong {
                line: index + 1,
                length: line.len(),
            });
        }
        let line = if index == 0 {
            line.strip_prefix('\u{feff}').unwrap_or(line)
        } else {
            line
        };
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('#') {
            continue;
        }
        let mut pattern = line.trim();
        if pattern.is_empty() {
            continue;
        }
        let is_exclusion = pattern.starts_with('!');
        if is_exclusion {
            pattern = pattern[1..].trim();
        }
        let mut cleaned = String::new();
        if !pattern.is_empty() {
            cleaned = clean_path(pattern);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
        }
        if is_exclusion {
            cleaned.insert(0, '!');
        }
        patterns.push(cleaned);
    }
    Ok(patterns)
}

/// One compiled pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    cleaned: String,
    is_exclusion: bool,
    kind: MatchKind,
}

impl Pattern {
    /// The cleaned pattern, without its `!`.
    pub fn as_str(&self) -> &str {
        &self.cleaned
    }

    /// Whether this is a `!` pattern that re-includes paths.
    pub fn is_exclusion(&self) -> bool {
        self.is_exclusion
    }

    /// Why the pattern can never be evaluated (Go's `filepath.Match` would return
    /// `ErrBadPattern` for it, e.g. the range in `[Local-Only]`), if so. Matching a path
    /// against it is an error; a caller that must not copy what the user meant to exclude
    /// refuses such a matcher up front.
    pub fn unmatchable_reason(&self) -> Option<&str> {
        match &self.kind {
            MatchKind::Unmatchable(unmatchable) => Some(&unmatchable.message),
            _ => None,
        }
    }

    /// Whether the pattern matches exactly this path (no parent matching).
    pub fn matches(&self, path: &str) -> Result<bool, PatternError> {
        Ok(match &self.kind {
            MatchKind::Exact => path == self.cleaned,
            MatchKind::Prefix(prefix) => path.starts_with(prefix.as_str()),
            MatchKind::Suffix(suffix) => {
                // `**/foo` also matches `foo` itself.
                path.ends_with(suffix.as_str()) || suffix.strip_prefix('/') == Some(path)
            }
            MatchKind::Regex(regex) => regex.is_match(path),
            MatchKind::Unmatchable(unmatchable) => {
                return Err(PatternError::Unmatchable {
                    pattern: self.cleaned.clone(),
                    regex: unmatchable.regex.clone(),
                    reason: unmatchable.error.clone(),
                });
            }
        })
    }

    /// Whether some path strictly inside `dir` could match. Conservative: it may say yes when
    /// nothing can match, never no when something can.
    fn may_match_inside(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        match &self.kind {
            MatchKind::Exact => self.cleaned.starts_with(&prefix),
            MatchKind::Prefix(pattern_prefix) => {
                pattern_prefix.starts_with(&prefix) || prefix.starts_with(pattern_prefix.as_str())
            }
            MatchKind::Suffix(_) | MatchKind::Unmatchable(_) => true,
            MatchKind::Regex(regex) => regex.may_match_with_prefix(&prefix),
        }
    }
}

/// What a context walker may do with a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirDecision {
    /// The directory is in the context; its entries must still be checked one by one.
    Included,
    /// The directory is excluded. When `may_reinclude_children` is false nothing below it can
    /// be re-included and the walker can skip it; when true a `!` pattern may re-include
    /// something inside, so the walker must descend and check each entry.
    Excluded { may_reinclude_children: bool },
}

/// An ordered list of `.dockerignore` patterns (moby `patternmatcher.PatternMatcher`).
///
/// ```
/// use kiln_dockerfile::{DirDecision, PatternMatcher};
///
/// let matcher = PatternMatcher::new(["docs", "!docs/README.md", "**/*.pyc"]).unwrap();
/// assert!(matcher.matches_or_parent_matches("docs/api/index.md").unwrap());
/// assert!(!matcher.matches_or_parent_matches("docs/README.md").unwrap());
/// assert!(matcher.matches_or_parent_matches("app/x/mod.pyc").unwrap());
/// assert!(!matcher.matches_or_parent_matches("app/main.py").unwrap());
/// assert_eq!(
///     matcher.exclusion_state("docs").unwrap(),
///     DirDecision::Excluded { may_reinclude_children: true }
/// );
/// ```
#[derive(Debug, Clone, Default)]
pub struct PatternMatcher {
    patterns: Vec<Pattern>,
    has_exclusions: bool,
}

impl PatternMatcher {
    /// Compiles the patterns in order. Each is trimmed (empty ones are skipped), cleaned like
    /// a path, split from its leading `!`, and checked against `filepath.Match` syntax.
    pub fn new<I, S>(patterns: I) -> Result<Self, PatternError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut matcher = Self::default();
        for (offset, pattern) in patterns.into_iter().enumerate() {
            let index = offset + 1;
            let pattern = pattern.as_ref().trim();
            if pattern.is_empty() {
                continue;
            }
            // moby cleans before looking at the `!`, so `!./x` keeps its `./`. Names are
            // matched in their escaped form (see `encode_name`), so the pattern is too.
            let mut cleaned = clean_path(&encode_text(pattern));
            let is_exclusion = cleaned.starts_with('!');
            if is_exclusion {
                if cleaned.len() == 1 {
                    return Err(PatternError::LoneExclamation { index });
                }
                cleaned.remove(0);
                matcher.has_exclusions = true;
            }
            glob::check_syntax(&cleaned).map_err(|reason| PatternError::Syntax {
                pattern: pattern.to_owned(),
                index,
                reason,
            })?;
            let kind = glob::compile(&cleaned, is_exclusion);
            matcher.patterns.push(Pattern {
                cleaned,
                is_exclusion,
                kind,
            });
        }
        Ok(matcher)
    }

    /// Whether any pattern is a `!` exclusion.
    pub fn has_exclusions(&self) -> bool {
        self.has_exclusions
    }

    /// The compiled patterns, in order.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether there are no patterns at all (nothing is ever excluded).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` (slash-separated, relative to the context root, in the escaped form of
    /// [`encode_name`], which is the plain text for UTF-8 names) is excluded: the last
    /// pattern that matches the path or one of its parent directories decides
    /// (moby `MatchesOrParentMatches`). The context root `.` is never excluded, as in moby's
    /// package-level function.
    pub fn matches_or_parent_matches(&self, path: &str) -> Result<bool, PatternError> {
        if path == "." {
            return Ok(false);
        }
        let parent = parent_dir(path);
        let parent = parent.as_ref();
        let mut is_matched = false;
        for pattern in &self.patterns {
            // An include pattern cannot change an excluded result and an exclusion cannot
            // change an included one; moby skips them, which also decides which broken
            // patterns get to report their error.
            if pattern.is_exclusion != is_matched {
                continue;
            }
            let mut is_match = pattern.matches(path)?;
            if !is_match && parent != "." {
                is_match =
                    ancestors(parent).any(|ancestor| pattern.matches(ancestor).unwrap_or(false));
            }
            if is_match {
                is_matched = !pattern.is_exclusion;
            }
        }
        Ok(is_matched)
    }

    /// What a walker may do with the directory `dir` (slash-separated, relative to the
    /// context root): see [`DirDecision`]. Never prunes a directory that holds a path a `!`
    /// pattern re-includes.
    pub fn exclusion_state(&self, dir: &str) -> Result<DirDecision, PatternError> {
        if !self.matches_or_parent_matches(dir)? {
            return Ok(DirDecision::Included);
        }
        let dir = dir.trim_end_matches('/');
        let may_reinclude_children = self
            .patterns
            .iter()
            .any(|pattern| pattern.is_exclusion && pattern.may_match_inside(dir));
        Ok(DirDecision::Excluded {
            may_reinclude_children,
        })
    }
}

/// The ancestors of a cleaned directory path, shortest first: `a/b/c` gives `a`, `a/b`,
/// `a/b/c` (moby joins the first 1..=n components).
fn ancestors(dir: &str) -> impl Iterator<Item = &str> {
    dir.match_indices('/')
        .map(move |(index, _)| &dir[..index])
        .chain(std::iter::once(dir))
}

/// Go `filepath.Dir`: everything before the last `/`, cleaned.
fn parent_dir(path: &str) -> Cow<'_, str> {
    match path.rfind('/') {
        // Walkers pass clean paths; skip the allocation then.
        Some(index) if index > 0 && is_clean(&path[..index]) => Cow::Borrowed(&path[..index]),
        Some(index) => Cow::Owned(clean_path(&path[..=index])),
        None => Cow::Borrowed("."),
    }
}

/// Whether `clean_path(path) == path` for a non-empty path without a trailing `/`.
fn is_clean(path: &str) -> bool {
    !path.is_empty()
        && !path.ends_with('/')
        && path
            .split('/')
            .enumerate()
            .all(|(index, segment)| match segment {
                "" => index == 0,
                "." | ".." => false,
                _ => true,
            })
}

/// Go `filepath.Clean` on Unix: collapse `//`, drop `.` segments, resolve `..` lexically,
/// drop a trailing `/`; the empty path becomes `.`.
pub(crate) fn clean_path(path: &str) -> String {
    let is_rooted = path.starts_with('/');
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => match segments.last() {
                Some(&last) if last != ".." => {
                    segments.pop();
                }
                _ => {
                    if !is_rooted {
                        segments.push("..");
                    }
                }
            },
            other => segments.push(other),
        }
    }
    let joined = segments.join("/");
    match (is_rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests;
