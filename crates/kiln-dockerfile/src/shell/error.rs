//! [`ExpandError`]: why a word could not be expanded.

/// Why a word could not be expanded. Positions are byte offsets into `word`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExpandError {
    /// A `'` or `"` opened at `position` is never closed.
    #[error(
        "failed to process {word:?}: unexpected end of statement while looking for the quote \
         {quote:?} opened at byte {position}; close the quote or escape it"
    )]
    UnterminatedQuote {
        word: String,
        position: usize,
        quote: char,
    },
    /// A `${` opened at `position` has no closing `}`.
    #[error(
        "failed to process {word:?}: syntax error: missing '}}' for the `${{` at byte {position}"
    )]
    MissingBrace { word: String, position: usize },
    /// A `${name/pattern…` opened at `position` has no `/` before the replacement.
    #[error(
        "failed to process {word:?}: syntax error: missing '/' in the `${{` at byte {position}; \
         the form is ${{name/pattern/replacement}}"
    )]
    MissingSlash { word: String, position: usize },
    /// `${}`, `${:…}`, `${{…}` and the like.
    #[error(
        "failed to process {word:?}: syntax error: bad substitution at byte {position}; \
         a variable name must follow `${{`"
    )]
    BadSubstitution { word: String, position: usize },
    /// A modifier BuildKit does not support, such as `${v:=x}` or `${v:#x}`.
    #[error(
        "failed to process {word:?}: unsupported modifier ({modifier}) in substitution at byte \
         {position}; supported are - + ? :- :+ :? # ## % %% / //"
    )]
    UnsupportedModifier {
        word: String,
        position: usize,
        modifier: String,
    },
    /// `${name?message}` with `name` unset, or `${name:?message}` with `name` unset or empty.
    #[error("failed to process {word:?}: {name}: {message}")]
    RequiredVariable {
        word: String,
        position: usize,
        name: String,
        message: String,
    },
    /// The pattern of a `#`, `%` or `/` substitution is not valid.
    #[error(
        "failed to process {word:?}: invalid pattern ({pattern}) in substitution at byte \
         {position}: {reason}"
    )]
    InvalidPattern {
        word: String,
        position: usize,
        pattern: String,
        reason: String,
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
            | Self::InvalidPattern { position, .. } => *position,
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
            | Self::InvalidPattern { word, .. } => word,
        }
    }
}
