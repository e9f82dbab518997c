//! The Go `regexp` syntax (RE2 with Perl flags) that moby's patternmatcher regexes can reach,
//! translated into `regex-syntax`'s [`Hir`] and run by `regex-automata`'s meta engine.
//!
//! moby translates a wildcard pattern into a regex string and calls `regexp.MatchString`.
//! Its escaping of regex metacharacters only works for bytes below 64 (a bitmap shifted out of
//! a byte), so `|`, `{` and `}` reach the regex engine raw: `*.js|*.ts` is an alternation and
//! `a{2}` a counted repetition. To answer exactly as Docker does, this module parses that same
//! regex string with Go's rules and builds the equivalent [`Hir`] directly, never Rust regex
//! text, because the two syntaxes differ in ways a textual translation would have to undo one
//! by one:
//!
//! | Go `regexp` | Rust `regex` text | here |
//! |---|---|---|
//! | `\d \w \s \b \B` are ASCII | Unicode | ASCII ranges, [`Look::WordAscii`] |
//! | `[a[b]` is a class holding `[` | a nested class (error) | `[` is a member |
//! | `[a&&b]`, `[a--b]`, `[a~~b]` are plain members | class set operations | plain members |
//! | `\<`, `\>` are the literal `<`, `>` | word boundaries | literals |
//! | `\012`, `\0` are octal escapes; `\Q…\E` quotes | errors | literals |
//! | `a{`, `a{,2}`, `a{01}` are literal text | errors or counted repetitions | literals |
//! | `a**`, `a{2}*` are errors | accepted | errors |
//!
//! Errors (and what they say) follow Go's parser: a pattern Go cannot compile cannot be
//! matched here either. The only construct Go accepts and we do not is a Unicode class
//! (`\pL`, `\p{Greek}`), whose tables differ between Go and Rust versions.
//!
//! Context paths are matched in the escaped form of [`super::encode_name`]: a byte that is
//! not UTF-8 is one character of the reserved range, which Go's decoder would see as one
//! `U+FFFD`. So every class holds the whole reserved range exactly when it holds `U+FFFD`, and
//! a literal `U+FFFD` matches any escaped byte; `.` matches them as it matches any character.

use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::nfa::thompson;
use regex_automata::{Anchored, Input, meta};
use regex_syntax::hir::{Class, ClassUnicode, ClassUnicodeRange, Dot, Hir, Look, Repetition};

/// Go's limit on counted repetitions (`{n,m}` with `n` or `m` above it is an error).
const MAX_REPEAT: u32 = 1000;

/// The most heap the compiled program (the `regex-automata` NFA) of one `.dockerignore`
/// pattern may take, in bytes. A pattern as long as a whole `.dockerignore` line
/// ([`super::MAX_IGNORE_LINE_BYTES`]) of literals and wildcards fits; `?{1000}` repeated over
/// such a line does not, and fails with [`RegexError::TooLarge`] instead of taking hundreds of
/// megabytes (Go's own limit is a program of about 3 million instructions). The lazy DFAs
/// that run the program keep `regex-automata`'s default cache size (2 MiB each at most).
pub const MAX_PATTERN_PROGRAM_BYTES: usize = 32 << 20;

/// The first character of the escaped-byte range (see [`super::encode_name`]).
const ESCAPED_FIRST: char = '\u{10FF80}';

/// Why a regex built from a `.dockerignore` pattern cannot be compiled. The offsets count
/// bytes in the regex text (`^…$`) moby builds from the pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegexError {
    /// `*`, `+`, `?` or a counted repetition with nothing before it.
    #[error("missing argument to repetition operator `{operator}` at byte {offset}")]
    MissingRepeatArgument { operator: char, offset: usize },
    /// A repetition of a repetition (`a**`, `a{2}*`), which Go refuses.
    #[error("invalid nested repetition operator at byte {offset}")]
    NestedRepetition { offset: usize },
    /// `{n,m}` with a bound over 1000 or `n > m`.
    #[error("invalid repeat count at byte {offset} (Go allows at most {MAX_REPEAT})")]
    RepeatCount { offset: usize },
    /// A `(` without its `)`.
    #[error("missing closing ) for the group at byte {offset}")]
    MissingParen { offset: usize },
    /// A `)` without its `(`.
    #[error("unexpected ) at byte {offset}")]
    UnexpectedParen { offset: usize },
    /// A `[` without its `]`.
    #[error("missing closing ] for the character class at byte {offset}")]
    MissingBracket { offset: usize },
    /// `z-a`, or a `[:name:]` that is not a POSIX class.
    #[error("invalid character class range `{range}` at byte {offset}")]
    ClassRange { range: String, offset: usize },
    /// `\q`, `\1`, `\x4`, or a `\` at the end.
    #[error("invalid escape sequence `{escape}` at byte {offset}")]
    Escape { escape: String, offset: usize },
    /// `\pL` or `\p{Greek}`.
    #[error(
        "the Unicode class escape `{escape}` at byte {offset} is not supported by kiln; list \
         the characters instead"
    )]
    UnicodeClass { escape: String, offset: usize },
    /// The compiled program is over [`MAX_PATTERN_PROGRAM_BYTES`].
    #[error(
        "the pattern compiles to a program over the limit of {limit} bytes \
         (MAX_PATTERN_PROGRAM_BYTES); use fewer or smaller repetitions"
    )]
    TooLarge { limit: usize },
}

/// A compiled regex with Go `MatchString` semantics.
#[derive(Debug, Clone)]
pub(crate) struct Regex {
    regex: meta::Regex,
    /// A lazy DFA for [`Regex::may_match_with_prefix`], when asked for and every match starts
    /// at the beginning of the text (moby's `^…$`; only a top-level `|` unanchors).
    prefix_dfa: Option<Box<DFA>>,
}

impl Regex {
    /// Compiles Go regex text. With `needs_prefix_checks`, also prepares
    /// [`Regex::may_match_with_prefix`] to answer precisely (otherwise it always says yes).
    pub(crate) fn new(pattern: &str, needs_prefix_checks: bool) -> Result<Self, RegexError> {
        let mut parser = Parser {
            text: pattern,
            position: 0,
        };
        let hir = parser.alternation()?;
        if parser.position < pattern.len() {
            return Err(RegexError::UnexpectedParen {
                offset: parser.position,
            });
        }
        // Built from a Hir, the only way to fail is the size limit (regex-automata's
        // `BuildError::size_limit`).
        let regex = meta::Regex::builder()
            .configure(
                meta::Regex::config()
                    // Empty matches (only reachable through `^`, `$`, `\b`, `\B`) never
                    // split a character, as Go only looks between runes.
                    .utf8_empty(true)
                    .nfa_size_limit(Some(MAX_PATTERN_PROGRAM_BYTES)),
            )
            .build_from_hir(&hir)
            .map_err(|_| RegexError::TooLarge {
                limit: MAX_PATTERN_PROGRAM_BYTES,
            })?;
        let is_start_anchored = hir.properties().look_set_prefix().contains(Look::Start);
        // The same Hir compiled again: it fits the same limit. Without the DFA,
        // `may_match_with_prefix` stays conservative.
        let prefix_dfa = (needs_prefix_checks && is_start_anchored)
            .then(|| {
                let nfa = thompson::Compiler::new()
                    .configure(
                        thompson::Config::new().nfa_size_limit(Some(MAX_PATTERN_PROGRAM_BYTES)),
                    )
                    .build_from_hir(&hir)
                    .ok()?;
                DFA::builder().build_from_nfa(nfa).ok().map(Box::new)
            })
            .flatten();
        Ok(Self { regex, prefix_dfa })
    }

    /// Go `Regexp.MatchString`: whether the regex matches anywhere in `text`.
    pub(crate) fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }

    /// Whether some text starting with `prefix` and continuing past it could match.
    /// Conservative: may say yes when nothing matches, never no when something does.
    pub(crate) fn may_match_with_prefix(&self, prefix: &str) -> bool {
        let Some(dfa) = &self.prefix_dfa else {
            return true;
        };
        let mut cache = Cache::new(dfa);
        let input = Input::new(prefix).anchored(Anchored::Yes);
        let Ok(mut state) = dfa.start_state_forward(&mut cache, &input) else {
            return true;
        };
        for &byte in prefix.as_bytes() {
            if state.is_match() {
                return true;
            }
            match dfa.next_state(&mut cache, state, byte) {
                Ok(next) => state = next,
                // The cache gave up: stay conservative.
                Err(_) => return true,
            }
            if state.is_dead() {
                return false;
            }
            if state.is_quit() {
                return true;
            }
        }
        true
    }
}

/// ASCII class of Go's regexp (a POSIX name or a Perl escape) as ranges.
fn named_class(name: &str) -> Option<ClassUnicode> {
    let ranges: &[(char, char)] = match name {
        "alnum" => &[('0', '9'), ('A', 'Z'), ('a', 'z')],
        "alpha" => &[('A', 'Z'), ('a', 'z')],
        "ascii" => &[('\0', '\x7f')],
        "blank" => &[('\t', '\t'), (' ', ' ')],
        "cntrl" => &[('\0', '\x1f'), ('\x7f', '\x7f')],
        "digit" | "d" => &[('0', '9')],
        "graph" => &[('!', '~')],
        "lower" => &[('a', 'z')],
        "print" => &[(' ', '~')],
        "punct" => &[('!', '/'), (':', '@'), ('[', '`'), ('{', '~')],
        "space" => &[('\t', '\r'), (' ', ' ')],
        // Perl `\s` has no vertical tab, unlike POSIX `space`.
        "s" => &[('\t', '\n'), ('\x0c', '\r'), (' ', ' ')],
        "upper" => &[('A', 'Z')],
        "word" | "w" => &[('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')],
        "xdigit" => &[('0', '9'), ('A', 'F'), ('a', 'f')],
        _ => return None,
    };
    Some(ClassUnicode::new(
        ranges
            .iter()
            .map(|&(start, end)| ClassUnicodeRange::new(start, end)),
    ))
}

/// `\d \D \s \S \w \W` as a class.
fn perl_class(ch: char) -> Option<ClassUnicode> {
    let name = match ch {
        'd' | 'D' => "d",
        's' | 'S' => "s",
        'w' | 'W' => "w",
        _ => return None,
    };
    let mut class = named_class(name)?;
    if ch.is_ascii_uppercase() {
        class.negate();
    }
    Some(class)
}

/// The class as it must be matched against escaped names: Go sees an invalid byte as
/// `U+FFFD`, so the escaped-byte range is in the class exactly when `U+FFFD` is.
fn class_hir(mut class: ClassUnicode) -> Hir {
    let escaped = ClassUnicode::new([ClassUnicodeRange::new(ESCAPED_FIRST, char::MAX)]);
    let holds_replacement = class.ranges().iter().any(|range| {
        range.start() <= char::REPLACEMENT_CHARACTER && char::REPLACEMENT_CHARACTER <= range.end()
    });
    if holds_replacement {
        class.union(&escaped);
    } else {
        class.difference(&escaped);
    }
    Hir::class(Class::Unicode(class))
}

fn literal_hir(ch: char) -> Hir {
    if ch == char::REPLACEMENT_CHARACTER {
        return class_hir(ClassUnicode::new([ClassUnicodeRange::new(ch, ch)]));
    }
    let mut utf8 = [0u8; 4];
    Hir::literal(ch.encode_utf8(&mut utf8).as_bytes())
}

struct Parser<'a> {
    text: &'a str,
    position: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.position..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.position += ch.len_utf8();
        Some(ch)
    }

    fn alternation(&mut self) -> Result<Hir, RegexError> {
        let mut branches = vec![self.concatenation()?];
        while self.peek() == Some('|') {
            self.bump();
            branches.push(self.concatenation()?);
        }
        Ok(Hir::alternation(branches))
    }

    fn concatenation(&mut self) -> Result<Hir, RegexError> {
        let mut items = Vec::new();
        while let Some(ch) = self.peek() {
            if ch == '|' || ch == ')' {
                break;
            }
            if matches!(ch, '*' | '+' | '?') || (ch == '{' && parse_counted(self.rest()).is_some())
            {
                return Err(RegexError::MissingRepeatArgument {
                    operator: ch,
                    offset: self.position,
                });
            }
            let mut node = self.atom(&mut items)?;
            let mut is_repeated = false;
            loop {
                let (min, max, length) = match self.peek() {
                    Some('*') => (0, None, 1),
                    Some('+') => (1, None, 1),
                    Some('?') => (0, Some(1), 1),
                    Some('{') => match parse_counted(self.rest()) {
                        Some(counted) => counted,
                        None => break,
                    },
                    _ => break,
                };
                let offset = self.position;
                if is_repeated {
                    return Err(RegexError::NestedRepetition { offset });
                }
                if min > MAX_REPEAT || max.is_some_and(|max| max > MAX_REPEAT || min > max) {
                    return Err(RegexError::RepeatCount { offset });
                }
                self.position += length;
                // A `?` after a repetition makes it lazy, which does not change whether
                // something matches.
                if self.peek() == Some('?') {
                    self.bump();
                }
                node = Hir::repetition(Repetition {
                    min,
                    max,
                    greedy: true,
                    sub: Box::new(node),
                });
                is_repeated = true;
            }
            items.push(node);
        }
        Ok(Hir::concat(items))
    }

    /// One atom. `\Q…\E` pushes all but its last literal to `items` directly.
    fn atom(&mut self, items: &mut Vec<Hir>) -> Result<Hir, RegexError> {
        let offset = self.position;
        let Some(ch) = self.bump() else {
            return Ok(Hir::empty());
        };
        Ok(match ch {
            '(' => {
                let inner = self.alternation()?;
                if self.bump() != Some(')') {
                    return Err(RegexError::MissingParen { offset });
                }
                inner
            }
            '[' => class_hir(self.class(offset)?),
            '.' => Hir::dot(Dot::AnyCharExceptLF),
            '^' => Hir::look(Look::Start),
            '$' => Hir::look(Look::End),
            '\\' => return self.escape_atom(items, offset),
            other => literal_hir(other),
        })
    }

    fn escape_atom(&mut self, items: &mut Vec<Hir>, offset: usize) -> Result<Hir, RegexError> {
        let look = match self.peek() {
            Some('A') => Some(Look::Start),
            Some('z') => Some(Look::End),
            Some('b') => Some(Look::WordAscii),
            Some('B') => Some(Look::WordAsciiNegate),
            _ => None,
        };
        if let Some(look) = look {
            self.bump();
            return Ok(Hir::look(look));
        }
        if self.peek() == Some('Q') {
            self.bump();
            let rest = self.rest();
            let (literal, consumed) = match rest.find("\\E") {
                Some(end) => (&rest[..end], end + 2),
                None => (rest, rest.len()),
            };
            let mut chars: Vec<Hir> = literal.chars().map(literal_hir).collect();
            self.position += consumed;
            let last = chars.pop().unwrap_or_else(Hir::empty);
            items.extend(chars);
            return Ok(last);
        }
        if let Some(class) = self.peek().and_then(perl_class) {
            self.bump();
            return Ok(class_hir(class));
        }
        Ok(literal_hir(self.escaped_char(offset)?))
    }

    /// Go `parseEscape`, after the backslash at `offset`.
    fn escaped_char(&mut self, offset: usize) -> Result<char, RegexError> {
        let Some(ch) = self.bump() else {
            return Err(RegexError::Escape {
                escape: "\\".to_owned(),
                offset,
            });
        };
        if ch.is_ascii() && !ch.is_ascii_alphanumeric() {
            return Ok(ch);
        }
        let invalid = |parser: &Self| RegexError::Escape {
            escape: parser.text[offset..parser.position].to_owned(),
            offset,
        };
        match ch {
            '0'..='7' => {
                // A lone non-zero digit would be a backreference, which RE2 rejects.
                if ch != '0' && !self.peek().is_some_and(|next| ('0'..='7').contains(&next)) {
                    return Err(invalid(self));
                }
                let mut value = ch.to_digit(8).unwrap_or(0);
                for _ in 1..3 {
                    match self.peek().and_then(|next| next.to_digit(8)) {
                        Some(digit) => {
                            self.bump();
                            value = value * 8 + digit;
                        }
                        None => break,
                    }
                }
                char::from_u32(value).ok_or_else(|| invalid(self))
            }
            'x' => self.hex_escape().ok_or_else(|| invalid(self)),
            'a' => Ok('\x07'),
            'f' => Ok('\x0c'),
            'n' => Ok('\n'),
            'r' => Ok('\r'),
            't' => Ok('\t'),
            'v' => Ok('\x0b'),
            'p' | 'P' => Err(RegexError::UnicodeClass {
                escape: self.text[offset..self.position].to_owned(),
                offset,
            }),
            _ => Err(invalid(self)),
        }
    }

    /// `\xHH` or `\x{H…}`, after the `x`.
    fn hex_escape(&mut self) -> Option<char> {
        if self.peek() == Some('{') {
            self.bump();
            let mut value: u32 = 0;
            let mut digits = 0;
            loop {
                let ch = self.bump()?;
                if ch == '}' {
                    break;
                }
                value = value.checked_mul(16)?.checked_add(ch.to_digit(16)?)?;
                if value > 0x10_ffff {
                    return None;
                }
                digits += 1;
            }
            return if digits == 0 {
                None
            } else {
                char::from_u32(value)
            };
        }
        let high = self.bump()?.to_digit(16)?;
        let low = self.bump()?.to_digit(16)?;
        char::from_u32(high * 16 + low)
    }

    /// Go `parseClass`, after the `[` at `offset`. Negated classes match newlines, as with
    /// Go's `ClassNL` flag.
    fn class(&mut self, offset: usize) -> Result<ClassUnicode, RegexError> {
        let mut class = ClassUnicode::empty();
        let is_negated = self.peek() == Some('^');
        if is_negated {
            self.bump();
        }
        let missing = RegexError::MissingBracket { offset };
        let mut is_first = true;
        loop {
            match self.peek() {
                None => return Err(missing),
                Some(']') if !is_first => {
                    self.bump();
                    break;
                }
                _ => {}
            }
            is_first = false;
            let rest = self.rest();
            if rest.len() > 2
                && rest.starts_with("[:")
                && let Some(end) = rest[2..].find(":]")
            {
                let body = &rest[2..2 + end];
                let (name, is_named_negated) = match body.strip_prefix('^') {
                    Some(name) => (name, true),
                    None => (body, false),
                };
                let Some(mut named) = named_class(name).filter(|_| name.len() > 1) else {
                    return Err(RegexError::ClassRange {
                        range: format!("[:{body}:]"),
                        offset: self.position,
                    });
                };
                if is_named_negated {
                    named.negate();
                }
                class.union(&named);
                self.position += end + 4;
                continue;
            }
            if let Some(escaped) = rest.strip_prefix('\\')
                && let Some(perl) = escaped.chars().next().and_then(perl_class)
            {
                self.position += 2;
                class.union(&perl);
                continue;
            }
            let item_offset = self.position;
            let lo = self.class_char(offset)?;
            let mut hi = lo;
            let mut lookahead = self.rest().chars();
            if lookahead.next() == Some('-') && lookahead.next().is_some_and(|ch| ch != ']') {
                self.bump();
                hi = self.class_char(offset)?;
                if hi < lo {
                    return Err(RegexError::ClassRange {
                        range: self.text[item_offset..self.position].to_owned(),
                        offset: item_offset,
                    });
                }
            }
            class.push(ClassUnicodeRange::new(lo, hi));
        }
        if is_negated {
            class.negate();
        }
        Ok(class)
    }

    fn class_char(&mut self, class_offset: usize) -> Result<char, RegexError> {
        let offset = self.position;
        match self.bump() {
            None => Err(RegexError::MissingBracket {
                offset: class_offset,
            }),
            Some('\\') => self.escaped_char(offset),
            Some(ch) => Ok(ch),
        }
    }
}

/// `{n}`, `{n,}` or `{n,m}` at the start of `text`: (min, max, length in bytes).
fn parse_counted(text: &str) -> Option<(u32, Option<u32>, usize)> {
    let body_end = text.find('}')?;
    let body = text.get(1..body_end)?;
    let number = |digits: &str| -> Option<u32> {
        // Go rejects leading zeros, which leaves the `{` literal.
        if digits.is_empty()
            || !digits.bytes().all(|byte| byte.is_ascii_digit())
            || (digits.len() > 1 && digits.starts_with('0'))
        {
            return None;
        }
        // Go caps the parsed value; anything this long is over the repeat limit anyway.
        Some(digits.parse::<u32>().unwrap_or(u32::MAX))
    };
    let (min, max) = match body.split_once(',') {
        None => {
            let count = number(body)?;
            (count, Some(count))
        }
        Some((min, "")) => (number(min)?, None),
        Some((min, max)) => (number(min)?, Some(number(max)?)),
    };
    Some((min, max, body_end + 1))
}

#[cfg(test)]
mod tests;
