//! [`ExpandError`]: why a word could not be expanded.

use crate::limits::{clip, excerpt};

/// Why a word could not be expanded. Positions are byte offsets into `word`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExpandError {
    /// A `'` or `"` opened at `position` is never closed.
    #[error(
        "failed to process `{}`: unexpected end of statement while looking for the quote \
         {quote:?} opened at byte {position}; close the quote or escape it",
        excerpt(.word, *.position)
    )]
    UnterminatedQuote {
        word: String,
        position: usize,
        quote: char,
    },
    /// A `${` opened at `position` has no closing `}`.
    #[error(
        "failed to process `{}`: syntax error: missing '}}' for the `${{` at byte {position}",
        excerpt(.word, *.position)
    )]
    MissingBrace { word: String, position: usize },
    /// A `${name/pattern…` opened at `position` has no `/` before the replacement.
    #[error(
        "failed to process `{}`: syntax error: missing '/' in the `${{` at byte {position}; \
         the form is ${{name/pattern/replacement}}",
        excerpt(.word, *.position)
    )]
    MissingSlash { word: String, position: usize },
    /// `${}`, `${:…}`, `${{…}` and the like.
    #[error(
        "failed to process `{}`: syntax error: bad substitution at byte {position}; \
         a variable name must follow `${{`",
        excerpt(.word, *.position)
    )]
    BadSubstitution { word: String, position: usize },
    /// A modifier BuildKit does not support, such as `${v:=x}` or `${v:#x}`.
    #[error(
        "failed to process `{}`: unsupported modifier ({modifier}) in substitution at byte \
         {position}; supported are - + ? :- :+ :? # ## % %% / //",
        excerpt(.word, *.position)
    )]
    UnsupportedModifier {
        word: String,
        position: usize,
        modifier: String,
    },
    /// `${name?message}` with `name` unset, or `${name:?message}` with `name` unset or empty.
    #[error("failed to process `{}`: {name}: {}", excerpt(.word, *.position), clip(.message))]
    RequiredVariable {
        word: String,
        position: usize,
        name: String,
        message: String,
    },
    /// The pattern of a `#`, `%` or `/` substitution is not valid.
    #[error(
        "failed to process `{}`: invalid pattern ({}) in substitution at byte {position}: \
         {reason}",
        excerpt(.word, *.position),
        clip(.pattern)
    )]
    InvalidPattern {
        word: String,
        position: usize,
        pattern: String,
        reason: String,
    },
    /// `${` nested deeper than [`crate::MAX_EXPANSION_DEPTH`] (`position`: the `${` that
    /// opened one level too many).
    #[error(
        "failed to process `{}`: `${{…}}` nested deeper than the limit of {limit} levels \
         (MAX_EXPANSION_DEPTH) at byte {position}",
        excerpt(.word, *.position)
    )]
    NestingTooDeep {
        word: String,
        position: usize,
        limit: usize,
    },
    /// The expanded word would grow past [`crate::MAX_EXPANDED_WORD_LENGTH`] bytes.
    #[error(
        "failed to process `{}`: the expanded word would exceed the limit of {limit} bytes \
         (MAX_EXPANDED_WORD_LENGTH) at the substitution at byte {position}",
        excerpt(.word, *.position)
    )]
    WordTooLong {
        word: String,
        position: usize,
        limit: usize,
    },
    /// A `#`, `%` or `/` substitution needs more than [`crate::MAX_PATTERN_STEPS`] matcher
    /// steps.
    #[error(
        "failed to process `{}`: the pattern of the substitution at byte {position} needs more \
         than the limit of {limit} matching steps (MAX_PATTERN_STEPS); simplify its `*`s",
        excerpt(.word, *.position)
    )]
    PatternTooComplex {
        word: String,
        position: usize,
        limit: usize,
    },
    /// The build's [`crate::ExpansionBudget`] is spent.
    #[error(
        "failed to process `{}`: expansions of this build would produce more than the limit \
         of {limit} bytes (MAX_TOTAL_EXPANSION) at the substitution at byte {position}",
        excerpt(.word, *.position)
    )]
    BudgetExhausted {
        word: String,
        position: usize,
        limit: usize,
    },
}

impl ExpandError {
    /// The byte offset in the word where the offending construct starts.
    pub fn position(&self) -> usize {
        match self {
            Self::UnterminatedQuote { position, .. }
            | Self::MissingBrace { position, .. }
            | Self::MissingSlash { position, .. }
            | Self::BadSubstitution { position, .. }
            | Self::UnsupportedModifier { position, .. }
            | Self::RequiredVariable { position, .. }
            | Self::InvalidPattern { position, .. }
            | Self::NestingTooDeep { position, .. }
            | Self::WordTooLong { position, .. }
            | Self::PatternTooComplex { position, .. }
            | Self::BudgetExhausted { position, .. } => *position,
        }
    }

    /// The word that failed to expand.
    pub fn word(&self) -> &str {
        match self {
            Self::UnterminatedQuote { word, .. }
            | Self::MissingBrace { word, .. }
            | Self::MissingSlash { word, .. }
            | Self::BadSubstitution { word, .. }
            | Self::UnsupportedModifier { word, .. }
            | Self::RequiredVariable { word, .. }
            | Self::InvalidPattern { word, .. }
            | Self::NestingTooDeep { word, .. }
            | Self::WordTooLong { word, .. }
            | Self::PatternTooComplex { word, .. }
            | Self::BudgetExhausted { word, .. } => word,
        }
    }
}
