//! Parse errors with source spans, and their rustc-style rendering.
//!
//! [`ParseError`] pairs a [`ParseErrorKind`] (what went wrong, naming its subject) with the
//! [`Span`] of the offending bytes. [`ParseError::render`] prints the source line with a
//! caret, the way BuildKit's location errors and rustc do.

use std::fmt;

use serde::Serialize;

use crate::span::Span;

/// A Dockerfile that could not be parsed, with the location of the problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ParseError {
    /// What went wrong.
    pub kind: ParseErrorKind,
    /// Where: the offending bytes of the source.
    pub span: Span,
    /// A hint shown under the caret (for example `did you mean `COPY`?`).
    pub help: Option<String>,
}

impl ParseError {
    pub(crate) fn new(kind: ParseErrorKind, span: Span) -> Self {
        Self {
            kind,
            span,
            help: None,
        }
    }

    pub(crate) fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Renders the error like rustc: message, `--> file:line:col`, the source line and a
    /// caret under the offending bytes.
    ///
    /// ```
    /// let src = "FROM alpine\nCOPPY app /app\n";
    /// let err = kiln_dockerfile::parse(src).unwrap_err();
    /// let text = err.render("Dockerfile", src);
    /// assert!(text.starts_with("error: unknown instruction `COPPY`\n --> Dockerfile:2:1\n"));
    /// assert!(text.contains("2 | COPPY app /app\n  | ^^^^^ did you mean `COPY`?"));
    /// ```
    pub fn render(&self, file_name: &str, src: &str) -> String {
        let line_no = self.span.line.max(1) as usize;
        let source_line = src
            .split('\n')
            .nth(line_no - 1)
            .unwrap_or("")
            .trim_end_matches(['\r', '\n']);
        let gutter = line_no.to_string().len();
        let pad = " ".repeat(gutter);
        let col = self.span.column.max(1) as usize;
        // A window of the line around the column, so a 64 KiB line prints a hundred
        // characters, not all of it.
        let skipped = (col - 1).saturating_sub(SNIPPET_BEFORE);
        let mut shown: String = source_line
            .chars()
            .skip(skipped)
            .take(SNIPPET_BEFORE + SNIPPET_AFTER)
            .collect();
        let is_cut_after = source_line
            .chars()
            .nth(skipped + SNIPPET_BEFORE + SNIPPET_AFTER)
            .is_some();
        // Keep tabs in the caret prefix so the caret lines up under tab-indented text.
        let mut prefix: String = shown
            .chars()
            .take(col - 1 - skipped)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let available = shown.chars().count().saturating_sub(col - 1 - skipped);
        if skipped > 0 {
            shown.insert(0, '…');
            prefix.insert(0, ' ');
        }
        if is_cut_after {
            shown.push('…');
        }
        let span_chars = src.get(self.span.start..self.span.end).map_or(0, |s| {
            s.split('\n')
                .next()
                .unwrap_or("")
                .chars()
                .take(available + 1)
                .count()
        });
        let carets = "^".repeat(span_chars.min(available).max(1));
        let mut out = format!(
            "error: {}\n{pad}--> {file_name}:{line_no}:{col}\n{pad} |\n{line_no} | {shown}\n{pad} | {prefix}{carets}",
            shorten(&self.kind.to_string())
        );
        if let Some(help) = &self.help {
            out.push(' ');
            out.push_str(&shorten(help));
        }
        out.push('\n');
        out
    }
}

/// Characters of the source line shown before the error's column.
const SNIPPET_BEFORE: usize = 60;
/// Characters shown from the error's column on.
const SNIPPET_AFTER: usize = 60;
/// Bytes of a message kept whole; longer ones (a 64 KiB word quoted in a message) keep their
/// start and end around a `…`.
const MAX_MESSAGE_LENGTH: usize = 400;

/// `message`, or its first and last parts when longer than [`MAX_MESSAGE_LENGTH`].
pub(crate) fn shorten(message: &str) -> std::borrow::Cow<'_, str> {
    if message.len() <= MAX_MESSAGE_LENGTH {
        return std::borrow::Cow::Borrowed(message);
    }
    let head = crate::span::floor_boundary(message, MAX_MESSAGE_LENGTH / 2);
    let mut tail = message.len() - MAX_MESSAGE_LENGTH / 4;
    while !message.is_char_boundary(tail) {
        tail += 1;
    }
    std::borrow::Cow::Owned(format!("{}…{}", &message[..head], &message[tail..]))
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}:{}: {}",
            self.span.line,
            self.span.column,
            shorten(&self.kind.to_string())
        )?;
        if let Some(help) = &self.help {
            write!(f, " ({})", shorten(help))?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseError {}

/// What made a Dockerfile invalid. Each variant names its subject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The file holds no instruction (empty, or only comments and blank lines).
    #[error("file with no instructions")]
    NoInstructions,
    /// A physical line exceeds BuildKit's scanner limit.
    #[error("dockerfile line greater than max allowed size of {max} bytes (MAX_LINE_LENGTH)")]
    LineTooLong {
        /// The limit in bytes.
        max: usize,
    },
    /// A logical line (physical lines joined by the escape token) longer than
    /// [`crate::MAX_LOGICAL_LINE_LENGTH`].
    #[error(
        "the instruction starting at line {start_line} is longer than the limit of {max} bytes \
         (MAX_LOGICAL_LINE_LENGTH) once its continuation lines are joined"
    )]
    LogicalLineTooLong {
        /// The limit in bytes.
        max: usize,
        /// Where the instruction starts.
        start_line: u64,
    },
    /// More instructions than [`crate::MAX_INSTRUCTIONS`].
    #[error("the Dockerfile has more than the limit of {max} instructions (MAX_INSTRUCTIONS)")]
    TooManyInstructions {
        /// The limit.
        max: usize,
    },
    /// `# escape=` with a value other than `\` or `` ` ``.
    #[error("invalid escape token `{value}` does not match ` or \\")]
    InvalidEscapeToken {
        /// The rejected value.
        value: String,
    },
    /// The same parser directive appears twice.
    #[error("only one {name} parser directive can be used")]
    DuplicateDirective {
        /// The lowercased directive name.
        name: String,
    },
    /// The file ended before the heredoc's terminator line.
    #[error("unterminated heredoc `{name}`: no line equal to `{name}` follows")]
    UnterminatedHeredoc {
        /// The heredoc word.
        name: String,
    },
    /// A heredoc word could not be lexed.
    #[error("malformed heredoc `{word}`: {reason}")]
    MalformedHeredoc {
        /// The word after `<<`.
        word: String,
        /// Why it failed.
        reason: String,
    },
    /// A heredoc used where the instruction does not accept one.
    #[error("{instruction} cannot accept a heredoc as {position}")]
    HeredocNotAllowed {
        /// The instruction.
        instruction: String,
        /// Where it was used, e.g. `a destination`.
        position: String,
    },
    /// A JSON (exec form) array with an element that is not a string.
    #[error(
        "{instruction}: when using JSON array syntax, arrays must be comprised of strings only"
    )]
    JsonNotStringArray {
        /// The instruction.
        instruction: String,
    },
    /// `ENV name` / `LABEL name` in the legacy form without a value.
    #[error(
        "{instruction} must have two arguments (`{instruction} name value` or `{instruction} name=value`)"
    )]
    MissingValue {
        /// The instruction.
        instruction: String,
    },
    /// A word without `=` in the `name=value` form of ENV or LABEL.
    #[error("syntax error - can't find = in `{word}`. Must be of the form: name=value")]
    MissingEquals {
        /// The offending word.
        word: String,
    },
    /// An instruction keyword BuildKit does not know.
    #[error("unknown instruction `{name}`")]
    UnknownInstruction {
        /// The keyword as written.
        name: String,
    },
    /// A logical line that is empty (for example a lone line continuation at the end).
    #[error("empty instruction")]
    EmptyInstruction,
    /// A flag the instruction does not accept.
    #[error("unknown flag `{flag}` for {instruction}")]
    UnknownFlag {
        /// The instruction.
        instruction: String,
        /// The flag name with its dashes, e.g. `--form`.
        flag: String,
    },
    /// A single-valued flag given twice.
    #[error("duplicate flag specified: `{flag}`")]
    DuplicateFlag {
        /// The flag name with its dashes.
        flag: String,
    },
    /// `--flag` without `=value`, or `--bool=`.
    #[error("missing a value on flag `{flag}`")]
    FlagMissingValue {
        /// The flag name with its dashes.
        flag: String,
    },
    /// A boolean flag with a value other than `true`/`false`.
    #[error("expecting boolean value for flag `{flag}`, not: `{value}`")]
    FlagNotBool {
        /// The flag name with its dashes.
        flag: String,
        /// The rejected value.
        value: String,
    },
    /// Wrong number of arguments.
    #[error("{instruction} requires {expected}")]
    ArgumentCount {
        /// The instruction.
        instruction: String,
        /// What it requires, e.g. `exactly one argument`.
        expected: String,
    },
    /// A stage name that BuildKit rejects.
    #[error(
        "invalid name for build stage `{name}`: name can't start with a number or contain symbols"
    )]
    InvalidStageName {
        /// The name as written.
        name: String,
    },
    /// `ENV =x`, `ARG =x`.
    #[error("{instruction} names can not be blank")]
    BlankName {
        /// The instruction.
        instruction: String,
    },
    /// `ONBUILD ONBUILD`, `ONBUILD FROM`, `ONBUILD MAINTAINER`.
    #[error("{trigger} isn't allowed as an ONBUILD trigger")]
    OnbuildTrigger {
        /// The nested instruction.
        trigger: String,
    },
    /// `HEALTHCHECK NONE` followed by arguments.
    #[error("HEALTHCHECK NONE takes no arguments")]
    HealthcheckNoneArguments,
    /// `HEALTHCHECK CMD` without a command.
    #[error("missing command after HEALTHCHECK CMD")]
    HealthcheckMissingCommand,
    /// `HEALTHCHECK FOO ...`.
    #[error("unknown type `{kind}` in HEALTHCHECK (try CMD)")]
    HealthcheckType {
        /// The type word as written.
        kind: String,
    },
    /// A duration flag that is not a Go duration (`30s`, `1m30s`, `500ms`).
    #[error("invalid duration `{value}` for `{flag}`: {reason}")]
    InvalidDuration {
        /// The flag name with its dashes.
        flag: String,
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// `--retries` that is not a non-negative 32-bit integer.
    #[error("invalid value `{value}` for `--retries`: {reason}")]
    InvalidRetries {
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// `SHELL` not in JSON form.
    #[error("SHELL requires the arguments to be in JSON form")]
    ShellNotJson,
    /// `VOLUME [""]`.
    #[error("VOLUME specified can not be an empty string")]
    EmptyVolume,
    /// An invalid `RUN --mount` specification.
    #[error("invalid mount `{spec}`: {reason}")]
    InvalidMount {
        /// The specification as written.
        spec: String,
        /// Why it was rejected.
        reason: String,
    },
    /// An invalid `RUN --device` specification.
    #[error("invalid device `{spec}`: {reason}")]
    InvalidDevice {
        /// The specification as written.
        spec: String,
        /// Why it was rejected.
        reason: String,
    },
    /// `RUN --network` with an unknown mode.
    #[error("invalid network mode `{value}` (expected default, none or host)")]
    InvalidNetwork {
        /// The rejected value.
        value: String,
    },
    /// `RUN --security` with an unknown mode.
    #[error("security `{value}` is not valid (expected insecure or sandbox)")]
    InvalidSecurity {
        /// The rejected value.
        value: String,
    },
    /// An instruction other than ARG before the first FROM.
    #[error("{instruction} before the first FROM: no build stage in current context")]
    NoBuildStage {
        /// The instruction.
        instruction: String,
    },
}

/// Levenshtein distance between two strings, by characters.
pub(crate) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// BuildKit's `suggest.Search`: the closest option within edit distance 2, in the case of
/// `value` when matching case-insensitively. `None` on an exact match or no close option.
pub(crate) fn suggest(value: &str, options: &[&str], case_sensitive: bool) -> Option<String> {
    let needle = if case_sensitive {
        value.to_owned()
    } else {
        value.to_lowercase()
    };
    let mut best: Option<(usize, &str)> = None;
    for opt in options {
        let candidate = if case_sensitive {
            (*opt).to_owned()
        } else {
            opt.to_lowercase()
        };
        if candidate == needle {
            return None;
        }
        let dist = levenshtein(&needle, &candidate);
        if dist < 3 && best.is_none_or(|(d, _)| dist < d) {
            best = Some((dist, opt));
        }
    }
    let (_, found) = best?;
    if case_sensitive {
        return Some(found.to_owned());
    }
    Some(if value == value.to_lowercase() {
        found.to_lowercase()
    } else if value == value.to_uppercase() {
        found.to_uppercase()
    } else {
        found.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_follow_buildkit() {
        let names = ["COPY", "CMD", "RUN"];
        assert_eq!(suggest("COPPY", &names, false).as_deref(), Some("COPY"));
        assert_eq!(suggest("coppy", &names, false).as_deref(), Some("copy"));
        assert_eq!(suggest("COPY", &names, false), None);
        assert_eq!(suggest("XYZZY", &names, false), None);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
    }
}
