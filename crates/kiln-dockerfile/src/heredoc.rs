//! Heredocs: `<<EOF`, `<<-EOF`, `<<"EOF"`, `2<<EOF`, several on one line.
//!
//! BuildKit finds heredocs by lexing the whole logical line with its shell lexer in "raw"
//! mode (quotes and escapes kept, unset variables left as written) and matching each word
//! against `^(\d*)<<(-?)\s*([^<]*)$`. The word after `<<` is lexed twice more, with and
//! without quote removal: if the quote counts differ, part of it was quoted and the body is
//! not expanded. This module reproduces that lexer mode, including its shared word buffer.

use std::borrow::Cow;

use serde::Serialize;

use crate::limits::MAX_EXPANSION_DEPTH;
use crate::span::Span;

/// A heredoc attached to a RUN, COPY or ADD instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The terminator word, with quotes removed (`EOF` for `<<"EOF"`).
    pub name: String,
    /// The file descriptor before `<<` (`2<<EOF`), 0 when absent.
    pub file_descriptor: u64,
    /// Whether variables in the body are expanded (false when the word was quoted).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body and the terminator.
    pub chomp: bool,
    /// The body exactly as written: every line with its line ending, tabs not yet stripped.
    pub content: String,
    /// The body lines in the source (empty for an empty body).
    pub span: Span,
}

impl Heredoc {
    /// The body as the build sees it: with `<<-`, leading tabs removed from every line
    /// (BuildKit's `ChompHeredocContent`).
    pub fn body(&self) -> Cow<'_, str> {
        if self.chomp {
            Cow::Owned(chomp(&self.content))
        } else {
            Cow::Borrowed(&self.content)
        }
    }
}

/// Removes the leading tabs of every line (`(?m)^\t+`).
pub(crate) fn chomp(content: &str) -> String {
    let mut out = String::with_capacity(content.len());
    for (i, line) in content.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(line.trim_start_matches('\t'));
    }
    out
}

/// A heredoc opener found on an instruction line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeredocWord {
    pub(crate) name: String,
    pub(crate) file_descriptor: u64,
    pub(crate) expand: bool,
    pub(crate) chomp: bool,
}

/// BuildKit's `heredocsFromLine`: every heredoc opener on `line`, in order. A line the raw
/// lexer cannot split has no heredocs. Errors name the word and the reason.
pub(crate) fn heredocs_from_line(line: &str) -> Result<Vec<HeredocWord>, (String, LexError)> {
    let words = match Lexer::new(line, true, true).words() {
        Ok(words) => words,
        Err(LexError::TooDeep) => return Err((crate::limits::clip(line), LexError::TooDeep)),
        Err(_) => return Ok(Vec::new()),
    };
    let mut docs = Vec::new();
    for word in words {
        match parse_heredoc(&word) {
            Ok(Some(doc)) => docs.push(doc),
            Ok(None) => {}
            Err(reason) => return Err((word, reason)),
        }
    }
    Ok(docs)
}

/// BuildKit's `ParseHeredoc` on one word: `Ok(None)` when the word is not a heredoc opener.
pub(crate) fn parse_heredoc(word: &str) -> Result<Option<HeredocWord>, LexError> {
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    let Some(after) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, after) = match after.strip_prefix('-') {
        Some(a) => (true, a),
        None => (false, after),
    };
    let rest = after.trim_start_matches(['\t', '\n', '\x0c', '\r', ' ']);
    if rest.contains('<') || rest.is_empty() {
        return Ok(None);
    }
    // Go ignores the ParseUint error: empty gives 0, overflow gives the maximum.
    let file_descriptor = if digits == 0 {
        0
    } else {
        word[..digits].parse::<u64>().unwrap_or(u64::MAX)
    };
    let words = Lexer::new(rest, false, false).words()?;
    if words.len() != 1 {
        return Ok(None);
    }
    let raw = Lexer::new(rest, true, false).words()?;
    if raw.len() != words.len() {
        return Err(LexError::Inconsistent(rest.to_owned()));
    }
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let name = words.into_iter().next().unwrap_or_default();
    let expand = quotes(&name) == quotes(&raw[0]);
    Ok(Some(HeredocWord {
        name,
        file_descriptor,
        expand,
        chomp,
    }))
}

const ESCAPE: char = '\\';

/// Why a line could not be split into words for heredoc detection (BuildKit's lexer
/// messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LexError {
    /// A `${…}` or `${x/…/…}` part ends before its closing character.
    #[error("unexpected end of statement while looking for matching {0}")]
    Unterminated(char),
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// A `${` nested deeper than [`MAX_EXPANSION_DEPTH`].
    #[error(
        "`${{…}}` nested deeper than the limit of {MAX_EXPANSION_DEPTH} levels (MAX_EXPANSION_DEPTH)"
    )]
    TooDeep,
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// The input ended inside a nested word that `stop` would close.
    #[error("syntax error: missing '{stop}' ({inner})")]
    Missing { stop: char, inner: Box<LexError> },
    /// The raw and the cooked lexer disagree on the word count of this text.
    #[error("internal lexing of heredoc produced inconsistent results: {0}")]
    Inconsistent(String),
}

/// BuildKit's shell lexer with an empty environment and `SkipUnsetEnv`, enough to split
/// words the way heredoc detection does.
struct Lexer {
    chars: Vec<char>,
    pos: usize,
    raw_quotes: bool,
    raw_escapes: bool,
    /// Shared by nested `processStopOn` calls, as upstream's `shellWord.wordsBuffer` is.
    buffer: String,
    /// `${` opened and not closed, checked before recursing.
    depth: usize,
}

#[derive(Default)]
struct Words {
    words: Vec<String>,
    in_word: bool,
}

impl Lexer {
    fn new(text: &str, raw_quotes: bool, raw_escapes: bool) -> Self {
        let mut chars: Vec<char> = text.chars().collect();
        // Go's text/scanner skips a leading BOM.
        if chars.first() == Some(&'\u{feff}') {
            chars.remove(0);
        }
        Self {
            chars,
            pos: 0,
            raw_quotes,
            raw_escapes,
            buffer: String::new(),
            depth: 0,
        }
    }

    fn words(mut self) -> Result<Vec<String>, LexError> {
        let raw = self.raw_escapes;
        self.stop_on(None, raw).map(|(_, words)| words)
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn add_char(&mut self, w: &mut Words, ch: char) {
        if ch.is_whitespace() {
            if w.in_word && !self.buffer.is_empty() {
                w.words.push(std::mem::take(&mut self.buffer));
                w.in_word = false;
            }
        } else {
            self.buffer.push(ch);
            w.in_word = true;
        }
    }

    fn add_raw_string(&mut self, w: &mut Words, s: &str) {
        self.buffer.push_str(s);
        w.in_word = true;
    }

    fn finish(&mut self, mut w: Words) -> Vec<String> {
        if !self.buffer.is_empty() {
            w.words.push(std::mem::take(&mut self.buffer));
        }
        w.words
    }

    fn stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), LexError> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let out = self.stop_on_inner(stop);
        self.raw_escapes = saved;
        out
    }

    fn stop_on_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), LexError> {
        let mut result = String::new();
        self.buffer.clear();
        let mut w = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                let words = self.finish(w);
                return Ok((result, words));
            }
            match ch {
                '$' => {
                    let tmp = self.dollar()?;
                    result.push_str(&tmp);
                    for c in tmp.chars() {
                        self.add_char(&mut w, c);
                    }
                }
                '<' | '\'' | '"' => {
                    let tmp = match ch {
                        '<' => self.possible_heredoc(),
                        '\'' => self.single_quote()?,
                        _ => self.double_quote()?,
                    };
                    result.push_str(&tmp);
                    self.add_raw_string(&mut w, &tmp);
                }
                _ => {
                    self.pos += 1;
                    if ch == ESCAPE {
                        if self.raw_escapes {
                            self.buffer.push(ch);
                            w.in_word = true;
                            result.push(ch);
                        }
                        let Some(next) = self.next() else { break };
                        self.buffer.push(next);
                        w.in_word = true;
                        result.push(next);
                    } else {
                        self.add_char(&mut w, ch);
                        result.push(ch);
                    }
                }
            }
        }
        if let Some(stop) = stop {
            return Err(LexError::Unterminated(stop));
        }
        let words = self.finish(w);
        Ok((result, words))
    }

    fn single_quote(&mut self) -> Result<String, LexError> {
        let mut out = String::new();
        let open = self.next().unwrap_or('\'');
        if self.raw_quotes {
            out.push(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(LexError::UnterminatedSingleQuote);
                }
                Some('\'') => {
                    if self.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Result<String, LexError> {
        let mut out = String::new();
        let open = self.next().unwrap_or('"');
        if self.raw_quotes {
            out.push(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(LexError::UnterminatedDoubleQuote);
                }
                Some('"') => {
                    self.pos += 1;
                    if self.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let value = self.dollar()?;
                    out.push_str(&value);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or(' ');
                    if ch == ESCAPE {
                        if self.raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some('"' | '$' | ESCAPE) => ch = self.next().unwrap_or(ch),
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    fn dollar(&mut self) -> Result<String, LexError> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            // The environment is empty and unset variables are kept as written.
            return Ok(format!("${name}"));
        }
        self.pos += 1;
        match self.peek() {
            None => return Err(LexError::MissingBrace),
            Some('{' | '}' | ':') => return Err(LexError::BadSubstitution),
            Some(_) => {}
        }
        if self.depth >= MAX_EXPANSION_DEPTH {
            return Err(LexError::TooDeep);
        }
        self.depth += 1;
        let result = self.braced();
        self.depth -= 1;
        result
    }

    /// `${name…}` after the `{`.
    fn braced(&mut self) -> Result<String, LexError> {
        let name = self.name();
        let ch = self.next();
        match ch {
            Some('}') => Ok(format!("${{{name}}}")),
            Some(':' | '+' | '-' | '?' | '#' | '%') => {
                let mut modifier = String::new();
                let mut ch = ch.unwrap_or(':');
                modifier.push(ch);
                let null_is_unset = ch == ':';
                if null_is_unset {
                    ch = self.next().unwrap_or('\u{FFFD}');
                    modifier.push(ch);
                }
                let raw = ch == '#' || ch == '%';
                if null_is_unset && raw {
                    return Err(LexError::UnsupportedModifier(modifier));
                }
                let word = self.nested('}', raw)?;
                Ok(format!("${{{name}{modifier}{word}}}"))
            }
            Some('/') => {
                if self.peek() == Some('/') {
                    self.pos += 1;
                }
                let pattern = self.nested('/', true)?;
                let replacement = self.nested('}', true)?;
                Ok(format!("${{{name}/{pattern}/{replacement}}}"))
            }
            _ => Err(LexError::UnsupportedModifier(
                ch.unwrap_or('\u{FFFD}').to_string(),
            )),
        }
    }

    fn nested(&mut self, stop: char, raw: bool) -> Result<String, LexError> {
        match self.stop_on(Some(stop), raw) {
            Ok((word, _)) => Ok(word),
            Err(inner) if self.peek().is_none() => Err(LexError::Missing {
                stop,
                inner: Box::new(inner),
            }),
            Err(e) => Err(e),
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_digit(ch) {
                while let Some(d) = self.peek().filter(|&d| is_digit(d)) {
                    self.pos += 1;
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                name.push(ch);
                return name;
            }
            if !(ch.is_alphabetic() || is_digit(ch) || ch == '_') {
                break;
            }
            self.pos += 1;
            name.push(ch);
        }
        name
    }

    fn possible_heredoc(&mut self) -> String {
        self.pos += 1;
        if self.peek() != Some('<') {
            return "<".into();
        }
        self.pos += 1;
        let mut out = String::from("<<");
        while let Some(c) = self.peek().filter(|c| matches!(c, '\t' | '\r' | ' ')) {
            out.push(c);
            self.pos += 1;
        }
        out
    }
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(line: &str) -> Vec<(String, u64, bool, bool)> {
        heredocs_from_line(line)
            .unwrap()
            .into_iter()
            .map(|h| (h.name, h.file_descriptor, h.expand, h.chomp))
            .collect()
    }

    #[test]
    fn finds_openers_like_buildkit() {
        assert_eq!(names("RUN <<EOF"), vec![("EOF".into(), 0, true, false)]);
        assert_eq!(names("RUN <<-EOF"), vec![("EOF".into(), 0, true, true)]);
        assert_eq!(names("RUN << EOF"), vec![("EOF".into(), 0, true, false)]);
        assert_eq!(names("RUN <<'EOF'"), vec![("EOF".into(), 0, false, false)]);
        assert_eq!(
            names(r#"RUN <<"E"OF"#),
            vec![("EOF".into(), 0, false, false)]
        );
        assert_eq!(
            names("RUN 3<<A cat /dev/fd/3 <<-B"),
            vec![("A".into(), 3, true, false), ("B".into(), 0, true, true)]
        );
        assert!(names("RUN echo '<<EOF'").is_empty());
        assert!(names("RUN echo a<<EOF").is_empty());
        assert!(names("RUN echo \"unterminated <<EOF").is_empty());
        assert_eq!(names("COPY <<A <<B /dest/").len(), 2);
    }

    #[test]
    fn chomp_strips_leading_tabs_per_line() {
        assert_eq!(chomp("\t\ta\n\tb\n  c\n"), "a\nb\n  c\n");
    }
}
