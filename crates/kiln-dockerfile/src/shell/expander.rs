//! The expansion itself: one pass over a word, BuildKit's `shellWord` state machine —
//! quotes, escapes, `$name`, `${name…}` with its modifiers and pattern forms — against an
//! [`Env`], within the lexer's options ([`ShellLexer`], whose expanding methods are in the
//! parent module) and the expansion budget.

use std::collections::BTreeSet;

use super::env::Env;
use super::error::ExpandError;
use super::pattern;
use crate::limits::{
    ExpansionBudget, MAX_EXPANDED_WORD_LENGTH, MAX_EXPANSION_DEPTH, MAX_PATTERN_STEPS,
};

/// The result of [`ShellLexer::process_word_with_matches`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WordExpansion {
    /// The expanded word.
    pub value: String,
    /// Names that were looked up and set (possibly to the empty string).
    pub matched: BTreeSet<String>,
    /// Names that were looked up and unset.
    pub unmatched: BTreeSet<String>,
}

/// BuildKit's shell-word lexer (`shell.Lex`).
///
/// ```
/// use kiln_dockerfile::ShellLexer;
///
/// let env = [("NAME", "world"), ("EMPTY", "")];
/// let lexer = ShellLexer::new('\\');
/// assert_eq!(lexer.process_word("'hi' \"${NAME}\"!", &env[..]).unwrap(), "hi world!");
/// assert_eq!(lexer.process_word("${EMPTY:-dflt} ${EMPTY-dflt}.", &env[..]).unwrap(), "dflt .");
/// assert_eq!(lexer.process_words("a ${NAME}  b", &env[..]).unwrap(), ["a", "world", "b"]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "mirrors BuildKit's four independent Lex options"
)]
pub struct ShellLexer {
    pub(super) escape_token: char,
    pub(super) is_raw_quotes: bool,
    pub(super) is_raw_escapes: bool,
    pub(super) is_skip_unset_env: bool,
    pub(super) is_skip_process_quotes: bool,
}

/// Names seen during [`ShellLexer::process_word_with_matches`].
#[derive(Debug, Default)]
struct Capture {
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

/// Word splitting state (BuildKit `wordsStruct`).
#[derive(Debug, Default)]
struct Words {
    finished: Vec<String>,
    buffer: String,
    is_in_word: bool,
}

impl Words {
    /// An unquoted character: whitespace ends the current word.
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.is_in_word && !self.buffer.is_empty() {
                self.finished.push(std::mem::take(&mut self.buffer));
                self.is_in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    /// A quoted or escaped character: never splits.
    fn add_raw_char(&mut self, ch: char) {
        self.buffer.push(ch);
        self.is_in_word = true;
    }

    fn add_str(&mut self, text: &str) {
        for ch in text.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_str(&mut self, text: &str) {
        self.buffer.push_str(text);
        self.is_in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buffer.is_empty() {
            self.finished.push(self.buffer);
        }
        self.finished
    }
}

/// Go's `text/scanner` over one word, plus the expansion state (BuildKit `shellWord`).
pub(super) struct Expander<'lexer, 'word, 'env, E: ?Sized> {
    lexer: &'lexer ShellLexer,
    word: &'word str,
    position: usize,
    env: &'env E,
    is_raw_escapes: bool,
    capture: Option<Capture>,
    /// `${` opened and not yet closed ([`MAX_EXPANSION_DEPTH`]).
    depth: usize,
    /// Pattern-matching steps left for this word ([`MAX_PATTERN_STEPS`]).
    pattern_steps: usize,
    budget: Option<&'lexer ExpansionBudget>,
}

impl<'lexer, 'word, 'env, E: Env + ?Sized> Expander<'lexer, 'word, 'env, E> {
    pub(super) fn new(
        lexer: &'lexer ShellLexer,
        word: &'word str,
        env: &'env E,
        is_capturing: bool,
        budget: Option<&'lexer ExpansionBudget>,
    ) -> Self {
        // Go's text/scanner skips a byte order mark at the very start of its input.
        let position = if word.starts_with('\u{feff}') {
            '\u{feff}'.len_utf8()
        } else {
            0
        };
        Self {
            lexer,
            word,
            position,
            env,
            is_raw_escapes: lexer.is_raw_escapes,
            capture: is_capturing.then(Capture::default),
            depth: 0,
            pattern_steps: MAX_PATTERN_STEPS,
            budget,
        }
    }

    pub(super) fn word(mut self) -> Result<String, ExpandError> {
        let is_raw_escapes = self.lexer.is_raw_escapes;
        self.process_stop_on(None, is_raw_escapes, 0, None)
    }

    pub(super) fn words(mut self) -> Result<Vec<String>, ExpandError> {
        let mut words = Words::default();
        let is_raw_escapes = self.lexer.is_raw_escapes;
        self.process_stop_on(None, is_raw_escapes, 0, Some(&mut words))?;
        Ok(words.finish())
    }

    pub(super) fn word_with_matches(mut self) -> Result<WordExpansion, ExpandError> {
        let is_raw_escapes = self.lexer.is_raw_escapes;
        let value = self.process_stop_on(None, is_raw_escapes, 0, None)?;
        let capture = self.capture.unwrap_or_default();
        Ok(WordExpansion {
            value,
            matched: capture.matched,
            unmatched: capture.unmatched,
        })
    }

    /// Appends a substitution's value to the word being built, after checking it keeps the
    /// word under [`MAX_EXPANDED_WORD_LENGTH`] and charging the build's budget.
    fn append(&self, result: &mut String, value: &str, at: usize) -> Result<(), ExpandError> {
        if result.len().saturating_add(value.len()) > MAX_EXPANDED_WORD_LENGTH {
            return Err(ExpandError::WordTooLong {
                word: self.error_word(),
                position: at,
                limit: MAX_EXPANDED_WORD_LENGTH,
            });
        }
        self.charge(value.len(), at)?;
        result.push_str(value);
        Ok(())
    }

    /// Takes `units` from the build's budget, if there is one.
    fn charge(&self, units: usize, at: usize) -> Result<(), ExpandError> {
        match self.budget {
            Some(budget) if !budget.try_charge(units) => Err(ExpandError::BudgetExhausted {
                word: self.error_word(),
                position: at,
                limit: budget.limit(),
            }),
            _ => Ok(()),
        }
    }

    /// Runs one `#`/`%`/`/` substitution with the pattern steps left for this word (no more
    /// than what is left of the build's budget), then charges the steps it took.
    fn run_pattern(
        &mut self,
        pattern: &str,
        at: usize,
        substitute: impl FnOnce(&mut usize) -> Result<String, pattern::PatternFailure>,
    ) -> Result<String, ExpandError> {
        let budget_left = self.budget.map_or(usize::MAX, ExpansionBudget::remaining);
        let allowed = self.pattern_steps.min(budget_left);
        let mut left = allowed;
        let result = substitute(&mut left);
        let used = allowed - left;
        self.pattern_steps -= used;
        self.charge(used, at)?;
        result.map_err(|failure| match failure {
            pattern::PatternFailure::Invalid(invalid) => ExpandError::InvalidPattern {
                word: self.error_word(),
                position: at,
                pattern: pattern.to_owned(),
                reason: invalid.reason,
            },
            pattern::PatternFailure::OutOfSteps if budget_left < MAX_PATTERN_STEPS => {
                ExpandError::BudgetExhausted {
                    word: self.error_word(),
                    position: at,
                    limit: self.budget.map_or(0, ExpansionBudget::limit),
                }
            }
            pattern::PatternFailure::OutOfSteps => ExpandError::PatternTooComplex {
                word: self.error_word(),
                position: at,
                limit: MAX_PATTERN_STEPS,
            },
            pattern::PatternFailure::TooLong => ExpandError::WordTooLong {
                word: self.error_word(),
                position: at,
                limit: MAX_EXPANDED_WORD_LENGTH,
            },
        })
    }

    fn peek(&self) -> Option<char> {
        self.word[self.position..].chars().next()
    }

    fn next_char(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.position += ch.len_utf8();
        Some(ch)
    }

    fn is_at_end(&self) -> bool {
        self.position >= self.word.len()
    }

    fn error_word(&self) -> String {
        self.word.to_owned()
    }

    /// Processes characters until `stop` (consumed) or the end of the word. `open_position`
    /// is where the enclosing `${` starts, for the error when `stop` never comes.
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        is_raw_escapes: bool,
        open_position: usize,
        mut words: Option<&mut Words>,
    ) -> Result<String, ExpandError> {
        let saved_raw_escapes = std::mem::replace(&mut self.is_raw_escapes, is_raw_escapes);
        let result = self.process_stop_on_inner(stop, open_position, &mut words);
        self.is_raw_escapes = saved_raw_escapes;
        result
    }

    fn process_stop_on_inner(
        &mut self,
        stop: Option<char>,
        open_position: usize,
        words: &mut Option<&mut Words>,
    ) -> Result<String, ExpandError> {
        let mut result = String::new();
        let process_quotes = !self.lexer.is_skip_process_quotes;
        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.next_char();
                return Ok(result);
            }
            match ch {
                '$' => {
                    let at = self.position;
                    let value = self.process_dollar()?;
                    self.append(&mut result, &value, at)?;
                    if let Some(words) = words.as_deref_mut() {
                        words.add_str(&value);
                    }
                }
                '<' => {
                    let value = self.process_possible_heredoc();
                    if let Some(words) = words.as_deref_mut() {
                        words.add_raw_str(&value);
                    }
                    result.push_str(&value);
                }
                '\'' | '"' if process_quotes => {
                    let value = if ch == '\'' {
                        self.process_single_quote()?
                    } else {
                        self.process_double_quote()?
                    };
                    if let Some(words) = words.as_deref_mut() {
                        words.add_raw_str(&value);
                    }
                    result.push_str(&value);
                }
                _ => {
                    self.next_char();
                    if ch == self.lexer.escape_token {
                        if self.is_raw_escapes {
                            if let Some(words) = words.as_deref_mut() {
                                words.add_raw_char(ch);
                            }
                            result.push(ch);
                        }
                        // The escape token makes the next character literal; a trailing one
                        // is dropped.
                        let Some(escaped) = self.next_char() else {
                            break;
                        };
                        if let Some(words) = words.as_deref_mut() {
                            words.add_raw_char(escaped);
                        }
                        result.push(escaped);
                    } else {
                        if let Some(words) = words.as_deref_mut() {
                            words.add_char(ch);
                        }
                        result.push(ch);
                    }
                }
            }
        }
        match stop {
            None => Ok(result),
            Some('/') => Err(ExpandError::MissingSlash {
                word: self.error_word(),
                position: open_position,
            }),
            Some(_) => Err(ExpandError::MissingBrace {
                word: self.error_word(),
                position: open_position,
            }),
        }
    }

    /// Consumes an opening quote: its position (for [`Self::unterminated_quote`]) and the
    /// start of the quoted text, which keeps the quote itself when quotes stay raw.
    fn open_quote(&mut self) -> (usize, String) {
        let open_position = self.position;
        let mut result = String::new();
        let quote = self.next_char();
        if self.lexer.is_raw_quotes {
            result.extend(quote);
        }
        (open_position, result)
    }

    /// The error for a `quote` opened at `open_position` that the word never closes.
    fn unterminated_quote(&self, open_position: usize, quote: char) -> ExpandError {
        ExpandError::UnterminatedQuote {
            word: self.error_word(),
            position: open_position,
            quote,
        }
    }

    /// `'…'`: everything literal up to the next `'`.
    fn process_single_quote(&mut self) -> Result<String, ExpandError> {
        let (open_position, mut result) = self.open_quote();
        loop {
            match self.next_char() {
                None => {
                    return Err(self.unterminated_quote(open_position, '\''));
                }
                Some('\'') => {
                    if self.lexer.is_raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(ch) => result.push(ch),
            }
        }
    }

    /// `"…"`: literal except `$` expansions; the escape token escapes only `"`, `$` and
    /// itself and stays literal before anything else.
    fn process_double_quote(&mut self) -> Result<String, ExpandError> {
        let (open_position, mut result) = self.open_quote();
        loop {
            match self.peek() {
                None => {
                    return Err(self.unterminated_quote(open_position, '"'));
                }
                Some('"') => {
                    self.next_char();
                    if self.lexer.is_raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let at = self.position;
                    let value = self.process_dollar()?;
                    self.append(&mut result, &value, at)?;
                }
                Some(mut ch) => {
                    self.next_char();
                    if ch == self.lexer.escape_token {
                        if self.is_raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            // An escape at the very end: dropped, and the quote is unterminated.
                            None => continue,
                            Some(next)
                                if next == '"'
                                    || next == '$'
                                    || next == self.lexer.escape_token =>
                            {
                                self.next_char();
                                ch = next;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    /// `<<` followed by blanks stays one unsplittable piece, so a heredoc marker written as
    /// `<< EOF` is not split (BuildKit `processPossibleHeredoc`).
    fn process_possible_heredoc(&mut self) -> String {
        self.next_char();
        if self.peek() != Some('<') {
            return "<".to_owned();
        }
        self.next_char();
        let mut result = "<<".to_owned();
        while let Some(ch @ ('\t' | '\r' | ' ')) = self.peek() {
            self.next_char();
            result.push(ch);
        }
        result
    }

    /// A variable name: a run of digits (positional), one special parameter character, or
    /// letters, digits and `_`.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_digit(ch) {
                while let Some(digit) = self.peek().filter(|&digit| is_digit(digit)) {
                    self.next_char();
                    name.push(digit);
                }
                return name;
            }
            if name.is_empty() && is_special_parameter(ch) {
                self.next_char();
                name.push(ch);
                return name;
            }
            if !(ch.is_alphabetic() || is_digit(ch) || ch == '_') {
                break;
            }
            self.next_char();
            name.push(ch);
        }
        name
    }

    fn get_env(&mut self, name: &str) -> Option<&'env str> {
        let env: &'env E = self.env;
        let value = env.get(name);
        if let Some(capture) = &mut self.capture {
            let set = if value.is_some() {
                &mut capture.matched
            } else {
                &mut capture.unmatched
            };
            if !set.contains(name) {
                set.insert(name.to_owned());
            }
        }
        value
    }

    /// `$name` or `${…}`, starting at the `$`.
    fn process_dollar(&mut self) -> Result<String, ExpandError> {
        let open_position = self.position;
        self.next_char();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(match self.get_env(&name) {
                Some(value) => value.to_owned(),
                None if self.lexer.is_skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next_char();
        match self.peek() {
            None => {
                return Err(ExpandError::MissingBrace {
                    word: self.error_word(),
                    position: open_position,
                });
            }
            Some('{' | '}' | ':') => {
                return Err(ExpandError::BadSubstitution {
                    word: self.error_word(),
                    position: open_position,
                });
            }
            Some(_) => {}
        }
        if self.depth >= MAX_EXPANSION_DEPTH {
            return Err(ExpandError::NestingTooDeep {
                word: self.error_word(),
                position: open_position,
                limit: MAX_EXPANSION_DEPTH,
            });
        }
        self.depth += 1;
        let result = self.process_braced(open_position);
        self.depth -= 1;
        result
    }

    /// `${name…}` after the `{`.
    fn process_braced(&mut self, open_position: usize) -> Result<String, ExpandError> {
        let name = self.process_name();
        let modifier_position = self.position;
        let first = self.next_char();
        match first {
            Some('}') => Ok(match self.get_env(&name) {
                Some(value) => value.to_owned(),
                None if self.lexer.is_skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':' | '+' | '-' | '?' | '#' | '%') => {
                self.process_modifier(&name, first, open_position, modifier_position)
            }
            Some('/') => self.process_replacement(&name, open_position),
            _ => Err(self.unsupported_modifier(&modifier_text(&[first]), modifier_position)),
        }
    }

    fn unsupported_modifier(&self, modifier: &str, position: usize) -> ExpandError {
        ExpandError::UnsupportedModifier {
            word: self.error_word(),
            position,
            modifier: modifier.to_owned(),
        }
    }

    /// `${name:-word}` and friends; `first` is the character after the name.
    fn process_modifier(
        &mut self,
        name: &str,
        first: Option<char>,
        open_position: usize,
        modifier_position: usize,
    ) -> Result<String, ExpandError> {
        let is_null_unset = first == Some(':');
        let operator = if is_null_unset {
            self.next_char()
        } else {
            first
        };
        let modifier = if is_null_unset {
            modifier_text(&[first, operator])
        } else {
            modifier_text(&[first])
        };
        // BuildKit keeps escapes in `#`/`%` patterns so `\*` reaches the pattern compiler.
        let is_pattern = matches!(operator, Some('#' | '%'));
        if is_null_unset && is_pattern {
            return Err(self.unsupported_modifier(&modifier, modifier_position));
        }
        let word = self.process_inner('}', is_pattern, open_position)?;
        let value = self.get_env(name);
        if value.is_none() && self.lexer.is_skip_unset_env {
            return Ok(format!("${{{name}{modifier}{word}}}"));
        }
        let is_unset_or_null = value.is_none_or(|value| is_null_unset && value.is_empty());
        match operator {
            Some('-') => Ok(match value {
                Some(value) if !is_unset_or_null => value.to_owned(),
                _ => word,
            }),
            Some('+') => Ok(if is_unset_or_null {
                String::new()
            } else {
                word
            }),
            Some('?') => {
                if let Some(value) = value.filter(|_| !is_unset_or_null) {
                    return Ok(value.to_owned());
                }
                let message = if !word.is_empty() {
                    word
                } else if value.is_none() {
                    "is not allowed to be unset".to_owned()
                } else {
                    "is not allowed to be empty".to_owned()
                };
                Err(ExpandError::RequiredVariable {
                    word: self.error_word(),
                    position: open_position,
                    name: name.to_owned(),
                    message,
                })
            }
            Some(operator @ ('#' | '%')) => {
                // `##` and `%%` remove the longest match, `#` and `%` the shortest.
                let (pattern, is_greedy) = match word.strip_prefix(operator) {
                    Some(rest) => (rest, true),
                    None => (word.as_str(), false),
                };
                let value = value.unwrap_or_default();
                self.run_pattern(pattern, open_position, |steps| {
                    if operator == '%' {
                        pattern::trim_suffix(pattern, value, is_greedy, steps)
                    } else {
                        pattern::trim_prefix(pattern, value, is_greedy, steps)
                    }
                })
            }
            _ => Err(self.unsupported_modifier(&modifier, modifier_position)),
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`, after the first `/`.
    fn process_replacement(
        &mut self,
        name: &str,
        open_position: usize,
    ) -> Result<String, ExpandError> {
        let is_replace_all = self.peek() == Some('/');
        if is_replace_all {
            self.next_char();
        }
        let pattern = self.process_inner('/', true, open_position)?;
        let replacement = self.process_inner('}', true, open_position)?;
        let Some(value) = self
            .get_env(name)
            .map(str::to_owned)
            .or_else(|| (!self.lexer.is_skip_unset_env).then(String::new))
        else {
            // BuildKit writes a single `/` here even for `//`.
            return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
        };
        self.run_pattern(&pattern, open_position, |steps| {
            pattern::replace(
                &pattern,
                &value,
                &replacement,
                is_replace_all,
                steps,
                MAX_EXPANDED_WORD_LENGTH,
            )
        })
    }

    /// The text of a `${…}` part up to `stop`; any failure at the end of the word is reported
    /// as the missing `stop` of the `${` at `open_position`.
    fn process_inner(
        &mut self,
        stop: char,
        is_raw_escapes: bool,
        open_position: usize,
    ) -> Result<String, ExpandError> {
        self.process_stop_on(Some(stop), is_raw_escapes, open_position, None)
            .map_err(|error| {
                if !self.is_at_end() {
                    return error;
                }
                if stop == '/' {
                    ExpandError::MissingSlash {
                        word: self.error_word(),
                        position: open_position,
                    }
                } else {
                    ExpandError::MissingBrace {
                        word: self.error_word(),
                        position: open_position,
                    }
                }
            })
    }
}

/// How a modifier is shown in errors; the end of the word shows as `end of word`.
fn modifier_text(parts: &[Option<char>]) -> String {
    parts
        .iter()
        .map(|part| part.map_or_else(|| "end of word".to_owned(), String::from))
        .collect()
}

/// Go `unicode.IsDigit`, approximated.
fn is_digit(ch: char) -> bool {
    ch.is_ascii_digit() || (!ch.is_ascii() && ch.is_numeric())
}

/// POSIX special parameters, one character each.
fn is_special_parameter(ch: char) -> bool {
    matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}
