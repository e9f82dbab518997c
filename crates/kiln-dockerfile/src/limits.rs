//! The limits that bound the work and memory a hostile Dockerfile can cause (DESIGN.md §1.7).
//!
//! Each limit is far above what a real Dockerfile reaches and is checked *before* the work it
//! bounds: no recursion goes deeper than [`MAX_EXPANSION_DEPTH`] before the check, no string
//! grows past [`MAX_EXPANDED_WORD_LENGTH`] before the check. Breaking one is an error that
//! names the limit and its value, located at the instruction's `file:line:col`.
//!
//! | limit | value | BuildKit |
//! |---|---|---|
//! | [`MAX_LINE_LENGTH`] (physical line) | 65,535 B | the same (`bufio.Scanner` token size) |
//! | [`MAX_LOGICAL_LINE_LENGTH`] (continuations joined) | 1 MiB | none |
//! | [`MAX_INSTRUCTIONS`] | 250,000 | none |
//! | [`MAX_EXPANSION_DEPTH`] (`${a:-${b:-…}}`) | 64 | none (Go's stack grows to 1 GB) |
//! | [`MAX_EXPANDED_WORD_LENGTH`] | 1 MiB | none |
//! | [`MAX_PATTERN_STEPS`] (`#` `%` `/` matching, per word) | 4,000,000 | none (Go's RE2 is linear) |
//! | [`MAX_TOTAL_EXPANSION`] (per build, [`ExpansionBudget`]) | 64 MiB | none |

use std::sync::atomic::{AtomicUsize, Ordering};

/// BuildKit's scanner limit: `bufio.MaxScanTokenSize - 1` bytes per physical line.
pub const MAX_LINE_LENGTH: usize = 65_535;

/// Bytes in one logical line (physical lines joined by the escape token). BuildKit has no
/// limit of its own; the longest `RUN … \` chains in the wild are tens of kilobytes.
pub const MAX_LOGICAL_LINE_LENGTH: usize = 1 << 20;

/// Instructions in one Dockerfile (`ONBUILD` triggers count with their `ONBUILD`). BuildKit
/// has no limit; generated Dockerfiles stay in the thousands. Parsing and planning are linear,
/// so this bounds the memory of the syntax tree (about 1 KiB per instruction).
pub const MAX_INSTRUCTIONS: usize = 250_000;

/// Nesting of `${…}` inside `${…}` (`${A:-${B:-x}}` is depth 2). BuildKit's lexer recurses
/// without a limit on Go's growable stack; real Dockerfiles nest two or three levels. Checked
/// when a `${` opens, before recursing, so expansion never overflows the stack.
pub const MAX_EXPANSION_DEPTH: usize = 64;

/// Bytes in one expanded word: checked before a substitution is appended, so
/// `ARG A2=${A1}${A1}` chains stop here instead of doubling memory. The same size as
/// [`MAX_LOGICAL_LINE_LENGTH`]; BuildKit has no limit.
pub const MAX_EXPANDED_WORD_LENGTH: usize = 1 << 20;

/// Steps of the `#`, `%` and `/` pattern matcher for one word. kiln's matcher backtracks
/// (BuildKit compiles the pattern to a linear-time Go regexp); a real `${v%%/*}` takes a few
/// steps per character of the value.
pub const MAX_PATTERN_STEPS: usize = 4_000_000;

/// Bytes all expansions of one build may produce together (plus one per pattern step), see
/// [`ExpansionBudget`]. Bounds `ENV P=${P}:${P}`-style growth over many instructions, where
/// each word stays under [`MAX_EXPANDED_WORD_LENGTH`]. BuildKit has no limit.
pub const MAX_TOTAL_EXPANSION: usize = 64 << 20;

/// What expansion may still produce in one build; shared by every stage of the build.
///
/// [`crate::ShellLexer::budgeted`] charges it before each substitution is appended and for
/// each pattern step; once it is spent, expansion fails with
/// [`crate::ExpandError::BudgetExhausted`].
///
/// ```
/// use kiln_dockerfile::{ExpandError, ExpansionBudget, ShellLexer};
///
/// let budget = ExpansionBudget::new(8);
/// let env = [("A", "12345")];
/// let lexer = ShellLexer::new('\\');
/// assert_eq!(lexer.budgeted(&budget).process_word("$A", &env[..]).unwrap(), "12345");
/// let err = lexer.budgeted(&budget).process_word("$A", &env[..]).unwrap_err();
/// assert!(matches!(err, ExpandError::BudgetExhausted { limit: 8, .. }));
/// ```
#[derive(Debug)]
pub struct ExpansionBudget {
    limit: usize,
    remaining: AtomicUsize,
}

impl Default for ExpansionBudget {
    fn default() -> Self {
        Self::new(MAX_TOTAL_EXPANSION)
    }
}

impl ExpansionBudget {
    /// A budget of `limit` bytes (tests use small ones; builds [`MAX_TOTAL_EXPANSION`]).
    pub const fn new(limit: usize) -> Self {
        Self {
            limit,
            remaining: AtomicUsize::new(limit),
        }
    }

    /// The budget's size.
    pub const fn limit(&self) -> usize {
        self.limit
    }

    /// What is left.
    pub fn remaining(&self) -> usize {
        self.remaining.load(Ordering::Relaxed)
    }

    /// Takes `units` from the budget; `false` (and nothing taken) when fewer are left.
    pub fn try_charge(&self, units: usize) -> bool {
        self.remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(units)
            })
            .is_ok()
    }
}

/// Characters shown either side of the point of interest in a message excerpt.
const EXCERPT_RADIUS: usize = 48;

/// A window of about a hundred characters of `text` around byte `at`, with `…` where text
/// was cut, for messages that must stay short whatever the input.
///
/// ```
/// let long = "x".repeat(10_000) + "$" + &"y".repeat(10_000);
/// let shown = kiln_dockerfile::excerpt(&long, 10_000);
/// assert!(shown.starts_with('…') && shown.ends_with('…') && shown.contains("x$y"));
/// assert!(shown.chars().count() < 110);
/// assert_eq!(kiln_dockerfile::excerpt("short", 2), "short");
/// ```
pub fn excerpt(text: &str, at: usize) -> String {
    let at = floor_char_boundary(text, at.min(text.len()));
    let before = &text[..at];
    let after = &text[at..];
    let start = before
        .char_indices()
        .rev()
        .nth(EXCERPT_RADIUS - 1)
        .map_or(0, |(i, _)| i);
    let end = after
        .char_indices()
        .nth(EXCERPT_RADIUS)
        .map_or(text.len(), |(i, _)| at + i);
    let mut out = String::with_capacity(end - start + 8);
    if start > 0 {
        out.push('…');
    }
    out.push_str(&text[start..end]);
    if end < text.len() {
        out.push('…');
    }
    out
}

/// `excerpt` of the start of `text`: itself when short, else its first hundred characters,
/// `…` and its length.
pub(crate) fn clip(text: &str) -> String {
    if text.len() <= 2 * EXCERPT_RADIUS {
        return text.to_owned();
    }
    let shown = excerpt(text, 0);
    format!("{shown} ({} bytes)", text.len())
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_never_goes_below_zero() {
        let budget = ExpansionBudget::new(10);
        assert!(budget.try_charge(6));
        assert!(!budget.try_charge(5));
        assert_eq!(budget.remaining(), 4);
        assert!(budget.try_charge(4));
        assert!(!budget.try_charge(1));
    }

    #[test]
    fn excerpts_are_short_and_keep_the_point() {
        let text = format!("{}é{}", "a".repeat(500), "b".repeat(500));
        let at = text.find('é').unwrap() + 1; // inside the character
        let shown = excerpt(&text, at);
        assert!(shown.contains("aé") || shown.contains("éb"), "{shown}");
        assert!(shown.chars().count() <= 2 * EXCERPT_RADIUS + 2);
        assert_eq!(excerpt("", 5), "");
        assert!(clip(&"z".repeat(1000)).ends_with("(1000 bytes)"));
    }
}
