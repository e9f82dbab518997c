//! BuildKit's shell-word expansion (`frontend/dockerfile/shell/lex.go`).
//!
//! Dockerfile instructions such as `COPY`, `ENV` or `WORKDIR` expand `$VAR` and `${VAR…}`
//! themselves, without a shell. [`ShellLexer`] reproduces BuildKit's lexer: quote removal,
//! escapes (`\` or a backtick after `# escape=`), `$v`, `${v}`, the `-` `+` `?` modifiers with
//! and without `:`, the `#` `##` `%` `%%` `/` `//` pattern forms, special and positional
//! parameters, and the options BuildKit's dispatcher uses ([`ShellLexer::raw_quotes`],
//! [`ShellLexer::raw_escapes`], [`ShellLexer::skip_unset_env`],
//! [`ShellLexer::skip_process_quotes`]).
//!
//! Variables are looked up through the [`Env`] trait, which distinguishes an unset variable
//! (`None`) from one set to the empty string (`Some("")`).
//! [`ShellLexer::process_word_with_matches`] also reports which names were found and which were
//! not, for "unused build arg" warnings and cache keys. [`instruction_expands`] says which
//! instructions go through this expansion at all.
//!
//! Known differences from BuildKit, all deliberate:
//! - BuildKit's `ProcessWords` shares one word buffer between nested `${v:-…}` scans, so a word
//!   prefix before such a substitution is lost (`8${X:-0}` splits to `["0"]`). We keep it
//!   (`["80"]`), which is what BuildKit intends and what its tests assume.
//! - Names use Unicode letters and digits; we classify them with Rust's `is_alphabetic` and
//!   `is_numeric`, which differ from Go's `IsLetter`/`IsDigit` only for rare characters
//!   (combining vowel signs, superscript digits).

mod env;
mod error;
mod expander;
mod pattern;

use crate::limits::ExpansionBudget;

pub use env::{EmptyEnv, Env};
pub use error::ExpandError;
use expander::Expander;
pub use expander::{ShellLexer, WordExpansion};

impl Default for ShellLexer {
    fn default() -> Self {
        Self::new('\\')
    }
}

impl ShellLexer {
    /// A lexer with the given escape token (`\` by default, or `` ` `` after
    /// `# escape=``) and all options off.
    pub const fn new(escape_token: char) -> Self {
        Self {
            escape_token,
            is_raw_quotes: false,
            is_raw_escapes: false,
            is_skip_unset_env: false,
            is_skip_process_quotes: false,
        }
    }

    /// Keep the quote characters in the output (`RawQuotes`).
    #[must_use]
    pub const fn raw_quotes(mut self, yes: bool) -> Self {
        self.is_raw_quotes = yes;
        self
    }

    /// Keep escape tokens in the output (`RawEscapes`).
    #[must_use]
    pub const fn raw_escapes(mut self, yes: bool) -> Self {
        self.is_raw_escapes = yes;
        self
    }

    /// Leave references to unset variables as written, e.g. `$FOO` or `${FOO:-x}`
    /// (`SkipUnsetEnv`).
    #[must_use]
    pub const fn skip_unset_env(mut self, yes: bool) -> Self {
        self.is_skip_unset_env = yes;
        self
    }

    /// Treat quotes as ordinary characters (`SkipProcessQuotes`; BuildKit uses it to expand
    /// heredoc bodies).
    #[must_use]
    pub const fn skip_process_quotes(mut self, yes: bool) -> Self {
        self.is_skip_process_quotes = yes;
        self
    }

    /// The escape token.
    pub const fn escape_token(&self) -> char {
        self.escape_token
    }

    /// Expands one word: quotes removed, escapes processed, variables replaced, no splitting
    /// (BuildKit `ProcessWord`).
    pub fn process_word<E: Env + ?Sized>(
        &self,
        word: &str,
        env: &E,
    ) -> Result<String, ExpandError> {
        Expander::new(self, word, env, false, None).word()
    }

    /// Expands a word and then splits it at whitespace that is neither quoted, escaped nor
    /// inside a quoted expansion; empty words are dropped (BuildKit `ProcessWords`).
    pub fn process_words<E: Env + ?Sized>(
        &self,
        word: &str,
        env: &E,
    ) -> Result<Vec<String>, ExpandError> {
        Expander::new(self, word, env, false, None).words()
    }

    /// Like [`ShellLexer::process_word`], and also reports the names that were looked up
    /// (BuildKit `ProcessWordWithMatches`).
    pub fn process_word_with_matches<E: Env + ?Sized>(
        &self,
        word: &str,
        env: &E,
    ) -> Result<WordExpansion, ExpandError> {
        Expander::new(self, word, env, true, None).word_with_matches()
    }

    /// The same lexer charging everything it produces to a build's [`ExpansionBudget`]
    /// (the per-word limits apply either way).
    pub fn budgeted<'budget>(&self, budget: &'budget ExpansionBudget) -> BudgetedLexer<'budget> {
        BudgetedLexer {
            lexer: *self,
            budget,
        }
    }
}

/// A [`ShellLexer`] that charges a shared [`ExpansionBudget`]; see [`ShellLexer::budgeted`].
#[derive(Debug, Clone, Copy)]
pub struct BudgetedLexer<'budget> {
    lexer: ShellLexer,
    budget: &'budget ExpansionBudget,
}

impl BudgetedLexer<'_> {
    /// [`ShellLexer::process_word`], charged to the budget.
    pub fn process_word<E: Env + ?Sized>(
        &self,
        word: &str,
        env: &E,
    ) -> Result<String, ExpandError> {
        Expander::new(&self.lexer, word, env, false, Some(self.budget)).word()
    }

    /// [`ShellLexer::process_words`], charged to the budget.
    pub fn process_words<E: Env + ?Sized>(
        &self,
        word: &str,
        env: &E,
    ) -> Result<Vec<String>, ExpandError> {
        Expander::new(&self.lexer, word, env, false, Some(self.budget)).words()
    }

    /// [`ShellLexer::process_word_with_matches`], charged to the budget.
    pub fn process_word_with_matches<E: Env + ?Sized>(
        &self,
        word: &str,
        env: &E,
    ) -> Result<WordExpansion, ExpandError> {
        Expander::new(&self.lexer, word, env, true, Some(self.budget)).word_with_matches()
    }
}

/// The instructions (lowercase keywords) whose arguments BuildKit expands with the build's
/// variables, as listed in the Dockerfile reference: `ADD COPY ENV EXPOSE FROM LABEL
/// STOPSIGNAL USER VOLUME WORKDIR ONBUILD`, plus `ARG` (its default value).
///
/// `RUN`, `CMD`, `ENTRYPOINT`, `SHELL`, `HEALTHCHECK` and `MAINTAINER` are not expanded: the
/// container's shell does it at run time. (BuildKit does expand the values of `RUN --mount`
/// flags; that is flag handling, not argument expansion, and is not covered here.) `ONBUILD`
/// is listed because its trigger is expanded when it runs, as the instruction it wraps.
pub const EXPANDING_INSTRUCTIONS: [&str; 12] = [
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
];

/// Whether the instruction with this lowercase keyword expands variables in its arguments
/// (see [`EXPANDING_INSTRUCTIONS`]).
pub fn instruction_expands(keyword_lowercase: &str) -> bool {
    EXPANDING_INSTRUCTIONS.contains(&keyword_lowercase)
}

#[cfg(test)]
mod tests;
