//! The part of Go's `regexp` (RE2 syntax, Perl flags) that moby's patternmatcher regexes can
//! reach, as a parser plus a Thompson NFA.
//!
//! moby translates a wildcard pattern into a regex string and calls `regexp.MatchString`.
//! Its escaping of regex metacharacters only works for bytes below 64 (a bitmap shifted out of
//! a byte), so `|`, `{` and `}` reach the regex engine raw: `*.js|*.ts` is an alternation and
//! `a{2}` a counted repetition. To answer exactly as Docker does we parse that same regex
//! string: alternation, groups, `* + ? {n,m}` (lazy forms too; stacked repetitions are
//! errors), classes with ranges, negation, `[:name:]` and Perl escapes, `.` (not newline),
//! `^ $ \A \z \b \B` assertions, `\Q…\E`, octal/hex/control escapes and escaped punctuation.
//! `MatchString` finds a match anywhere, so `^`/`$` matter and a top-level `|` unanchors.
//! Unicode classes (`\pL`, `\p{Greek}`) are not supported and make the pattern unmatchable.

use super::context_name::class_char;

/// ASCII classes of Go's regexp (POSIX names and Perl escapes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NamedClass {
    Alnum,
    Alpha,
    Ascii,
    Blank,
    Cntrl,
    Digit,
    Graph,
    Lower,
    Print,
    Punct,
    Space,
    /// Perl `\s`: `[\t\n\f\r ]` (no vertical tab, unlike POSIX `space`).
    PerlSpace,
    Upper,
    Word,
    Xdigit,
}

impl NamedClass {
    fn from_posix_name(name: &str) -> Option<Self> {
        Some(match name {
            "alnum" => Self::Alnum,
            "alpha" => Self::Alpha,
            "ascii" => Self::Ascii,
            "blank" => Self::Blank,
            "cntrl" => Self::Cntrl,
            "digit" => Self::Digit,
            "graph" => Self::Graph,
            "lower" => Self::Lower,
            "print" => Self::Print,
            "punct" => Self::Punct,
            "space" => Self::Space,
            "upper" => Self::Upper,
            "word" => Self::Word,
            "xdigit" => Self::Xdigit,
            _ => return None,
        })
    }

    /// `\d \D \s \S \w \W` as (class, negated).
    fn from_perl_escape(ch: char) -> Option<(Self, bool)> {
        Some(match ch {
            'd' => (Self::Digit, false),
            'D' => (Self::Digit, true),
            's' => (Self::PerlSpace, false),
            'S' => (Self::PerlSpace, true),
            'w' => (Self::Word, false),
            'W' => (Self::Word, true),
            _ => return None,
        })
    }

    fn contains(self, ch: char) -> bool {
        match self {
            Self::Alnum => ch.is_ascii_alphanumeric(),
            Self::Alpha => ch.is_ascii_alphabetic(),
            Self::Ascii => ch.is_ascii(),
            Self::Blank => matches!(ch, ' ' | '\t'),
            Self::Cntrl => ch.is_ascii_control(),
            Self::Digit => ch.is_ascii_digit(),
            Self::Graph => ch.is_ascii_graphic(),
            Self::Lower => ch.is_ascii_lowercase(),
            Self::Print => ch.is_ascii_graphic() || ch == ' ',
            Self::Punct => ch.is_ascii_punctuation(),
            Self::Space => matches!(ch, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c'),
            Self::PerlSpace => matches!(ch, ' ' | '\t' | '\n' | '\r' | '\x0c'),
            Self::Upper => ch.is_ascii_uppercase(),
            Self::Word => is_word_char(ch),
            Self::Xdigit => ch.is_ascii_hexdigit(),
        }
    }
}

fn is_word_char(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || ch == '_'
}

/// A bracket expression or Perl class. Negated classes match newlines, as with Go's
/// `ClassNL` flag.
#[derive(Debug, Clone, Default)]
struct Class {
    is_negated: bool,
    ranges: Vec<(char, char)>,
    named: Vec<(NamedClass, bool)>,
}

impl Class {
    fn matches(&self, ch: char) -> bool {
        let is_member = self.ranges.iter().any(|&(lo, hi)| lo <= ch && ch <= hi)
            || self
                .named
                .iter()
                .any(|&(named, is_negated)| named.contains(ch) != is_negated);
        is_member != self.is_negated
    }
}

/// A test on one character.
#[derive(Debug, Clone)]
enum CharTest {
    Literal(char),
    /// `.`: anything but a newline.
    NotNewline,
    Class(Class),
}

impl CharTest {
    fn matches(&self, ch: char) -> bool {
        match self {
            // Go decodes an invalid byte of the text to U+FFFD (`utf8.RuneError`): an escaped
            // byte is one character, matched as U+FFFD by classes and by a literal U+FFFD.
            Self::Literal(expected) => ch == *expected || class_char(ch) == *expected,
            Self::NotNewline => ch != '\n',
            Self::Class(class) => class.matches(class_char(ch)),
        }
    }
}

/// Zero-width assertions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Assertion {
    BeginText,
    EndText,
    WordBoundary,
    NotWordBoundary,
}

/// Parsed regex.
#[derive(Debug, Clone)]
enum Node {
    Empty,
    Char(CharTest),
    Assert(Assertion),
    Concat(Vec<Node>),
    Alternate(Vec<Node>),
    Repeat {
        node: Box<Node>,
        min: u32,
        max: Option<u32>,
    },
}

/// Go's limit on counted repetitions.
const MAX_REPEAT: u32 = 1000;
/// Our limit on compiled program size, in instructions.
const MAX_INSTRUCTIONS: usize = 100_000;

struct Parser<'a> {
    rest: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.rest.chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.rest = &self.rest[ch.len_utf8()..];
        Some(ch)
    }

    fn alternation(&mut self) -> Result<Node, String> {
        let mut branches = vec![self.concatenation()?];
        while self.peek() == Some('|') {
            self.bump();
            branches.push(self.concatenation()?);
        }
        Ok(if branches.len() == 1 {
            branches.remove(0)
        } else {
            Node::Alternate(branches)
        })
    }

    fn concatenation(&mut self) -> Result<Node, String> {
        let mut items = Vec::new();
        while let Some(ch) = self.peek() {
            if ch == '|' || ch == ')' {
                break;
            }
            if matches!(ch, '*' | '+' | '?') {
                return Err(format!("missing argument to repetition operator `{ch}`"));
            }
            if ch == '{' && parse_counted(self.rest).is_some() {
                return Err("missing argument to repetition operator `{`".to_owned());
            }
            let mut node = self.atom(&mut items)?;
            let mut is_repeated = false;
            loop {
                let (min, max, length) = match self.peek() {
                    Some('*') => (0, None, 1),
                    Some('+') => (1, None, 1),
                    Some('?') => (0, Some(1), 1),
                    Some('{') => match parse_counted(self.rest) {
                        Some(counted) => counted,
                        None => break,
                    },
                    _ => break,
                };
                if is_repeated {
                    return Err("invalid nested repetition operator".to_owned());
                }
                if min > MAX_REPEAT || max.is_some_and(|max| max > MAX_REPEAT || min > max) {
                    return Err("invalid repeat count".to_owned());
                }
                self.rest = &self.rest[length..];
                // A `?` after a repetition makes it lazy, which does not change whether
                // something matches.
                if self.peek() == Some('?') {
                    self.bump();
                }
                node = Node::Repeat {
                    node: Box::new(node),
                    min,
                    max,
                };
                is_repeated = true;
            }
            items.push(node);
        }
        Ok(match items.len() {
            0 => Node::Empty,
            1 => items.remove(0),
            _ => Node::Concat(items),
        })
    }

    /// One atom. `\Q…\E` pushes all but its last literal to `items` directly.
    fn atom(&mut self, items: &mut Vec<Node>) -> Result<Node, String> {
        let Some(ch) = self.bump() else {
            return Ok(Node::Empty);
        };
        Ok(match ch {
            '(' => {
                let inner = self.alternation()?;
                if self.bump() != Some(')') {
                    return Err("missing closing )".to_owned());
                }
                inner
            }
            '[' => Node::Char(CharTest::Class(self.class()?)),
            '.' => Node::Char(CharTest::NotNewline),
            '^' => Node::Assert(Assertion::BeginText),
            '$' => Node::Assert(Assertion::EndText),
            '\\' => return self.escape_atom(items),
            other => Node::Char(CharTest::Literal(other)),
        })
    }

    fn escape_atom(&mut self, items: &mut Vec<Node>) -> Result<Node, String> {
        match self.peek() {
            Some('A') => {
                self.bump();
                return Ok(Node::Assert(Assertion::BeginText));
            }
            Some('z') => {
                self.bump();
                return Ok(Node::Assert(Assertion::EndText));
            }
            Some('b') => {
                self.bump();
                return Ok(Node::Assert(Assertion::WordBoundary));
            }
            Some('B') => {
                self.bump();
                return Ok(Node::Assert(Assertion::NotWordBoundary));
            }
            Some('Q') => {
                self.bump();
                let (literal, rest) = match self.rest.find("\\E") {
                    Some(end) => (&self.rest[..end], &self.rest[end + 2..]),
                    None => (self.rest, ""),
                };
                self.rest = rest;
                let mut chars: Vec<Node> = literal
                    .chars()
                    .map(|ch| Node::Char(CharTest::Literal(ch)))
                    .collect();
                let last = chars.pop().unwrap_or(Node::Empty);
                items.extend(chars);
                return Ok(last);
            }
            _ => {}
        }
        if let Some((named, is_negated)) = self.peek().and_then(NamedClass::from_perl_escape) {
            self.bump();
            return Ok(Node::Char(CharTest::Class(Class {
                named: vec![(named, is_negated)],
                ..Class::default()
            })));
        }
        Ok(Node::Char(CharTest::Literal(self.escaped_char()?)))
    }

    /// Go `parseEscape`, after the backslash.
    fn escaped_char(&mut self) -> Result<char, String> {
        let Some(ch) = self.bump() else {
            return Err("trailing backslash at end of expression".to_owned());
        };
        if ch.is_ascii() && !ch.is_ascii_alphanumeric() {
            return Ok(ch);
        }
        let invalid = || format!("invalid escape sequence `\\{ch}`");
        match ch {
            '0'..='7' => {
                // A lone non-zero digit would be a backreference, which RE2 rejects.
                if ch != '0' && !self.peek().is_some_and(|next| ('0'..='7').contains(&next)) {
                    return Err(invalid());
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
                char::from_u32(value).ok_or_else(invalid)
            }
            'x' => self.hex_escape().ok_or_else(invalid),
            'a' => Ok('\x07'),
            'f' => Ok('\x0c'),
            'n' => Ok('\n'),
            'r' => Ok('\r'),
            't' => Ok('\t'),
            'v' => Ok('\x0b'),
            'p' | 'P' => Err(format!(
                "the Unicode class escape `\\{ch}` is not supported by kiln; list the \
                 characters instead"
            )),
            _ => Err(invalid()),
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

    /// Go `parseClass`, after the `[`.
    fn class(&mut self) -> Result<Class, String> {
        let mut class = Class::default();
        if self.peek() == Some('^') {
            self.bump();
            class.is_negated = true;
        }
        let mut is_first = true;
        loop {
            match self.peek() {
                None => return Err("missing closing ]".to_owned()),
                Some(']') if !is_first => {
                    self.bump();
                    return Ok(class);
                }
                _ => {}
            }
            is_first = false;
            if self.rest.len() > 2
                && self.rest.starts_with("[:")
                && let Some(end) = self.rest[2..].find(":]")
            {
                let body = &self.rest[2..2 + end];
                let (name, is_negated) = match body.strip_prefix('^') {
                    Some(name) => (name, true),
                    None => (body, false),
                };
                let Some(named) = NamedClass::from_posix_name(name) else {
                    return Err(format!("invalid character class range `[:{body}:]`"));
                };
                class.named.push((named, is_negated));
                self.rest = &self.rest[end + 4..];
                continue;
            }
            if let Some(escaped) = self.rest.strip_prefix('\\')
                && let Some(perl) = escaped
                    .chars()
                    .next()
                    .and_then(NamedClass::from_perl_escape)
            {
                self.rest = &escaped[1..];
                class.named.push(perl);
                continue;
            }
            let lo = self.class_char()?;
            let mut hi = lo;
            let mut lookahead = self.rest.chars();
            if lookahead.next() == Some('-') && lookahead.next().is_some_and(|ch| ch != ']') {
                self.bump();
                hi = self.class_char()?;
                if hi < lo {
                    return Err(format!("invalid character class range `{lo}-{hi}`"));
                }
            }
            class.ranges.push((lo, hi));
        }
    }

    fn class_char(&mut self) -> Result<char, String> {
        match self.bump() {
            None => Err("missing closing ]".to_owned()),
            Some('\\') => self.escaped_char(),
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

/// One NFA instruction.
#[derive(Debug, Clone)]
enum Inst {
    Char(CharTest, usize),
    Split(usize, usize),
    Assert(Assertion, usize),
    Match,
}

/// A compiled regex with `MatchString` semantics.
#[derive(Debug, Clone)]
pub(crate) struct Regex {
    insts: Vec<Inst>,
    start: usize,
    /// Set when every match must start at the beginning of the text with this literal.
    anchored_prefix: Option<String>,
    /// Set when every match must end at the end of the text with this literal.
    anchored_suffix: Option<String>,
}

impl Regex {
    pub(crate) fn new(pattern: &str) -> Result<Self, String> {
        let mut parser = Parser { rest: pattern };
        let node = parser.alternation()?;
        if !parser.rest.is_empty() {
            return Err("unexpected )".to_owned());
        }
        let (anchored_prefix, anchored_suffix) = anchored_literals(&node);
        let mut insts = vec![Inst::Match];
        let start = compile(&node, 0, &mut insts)?;
        Ok(Self {
            insts,
            start,
            anchored_prefix,
            anchored_suffix,
        })
    }

    /// Go `Regexp.MatchString`: whether the regex matches anywhere in `text`.
    pub(crate) fn is_match(&self, text: &str) -> bool {
        if self
            .anchored_prefix
            .as_ref()
            .is_some_and(|prefix| !text.starts_with(prefix.as_str()))
            || self
                .anchored_suffix
                .as_ref()
                .is_some_and(|suffix| !text.ends_with(suffix.as_str()))
        {
            return false;
        }
        self.search(text, true)
    }

    /// Whether some text starting with `prefix` and continuing past it could match.
    /// Conservative: may say yes when nothing matches, never no when something does.
    pub(crate) fn may_match_with_prefix(&self, prefix: &str) -> bool {
        if let Some(anchored) = &self.anchored_prefix
            && !(prefix.starts_with(anchored.as_str()) || anchored.starts_with(prefix))
        {
            return false;
        }
        self.search(prefix, false)
    }

    /// Runs the NFA over `text`, restarting at every position. With `is_complete` the text
    /// ends there; otherwise more (unknown) text follows and the answer is whether a match
    /// was found or is still possible.
    fn search(&self, text: &str, is_complete: bool) -> bool {
        let chars: Vec<char> = text.chars().collect();
        let context_at = |position: usize| Context {
            is_start: position == 0,
            is_end: position == chars.len() && is_complete,
            previous: position.checked_sub(1).map(|previous| chars[previous]),
            upcoming: match chars.get(position) {
                Some(&ch) => Upcoming::Known(Some(ch)),
                None if is_complete => Upcoming::Known(None),
                None => Upcoming::Unknown,
            },
        };
        let size = self.insts.len();
        let mut current = StateList::new(size);
        let mut next = StateList::new(size);
        let mut stack = Vec::new();
        for (position, &ch) in chars.iter().enumerate() {
            // MatchString finds a match starting anywhere: start a thread here too.
            self.add(&mut current, self.start, &context_at(position), &mut stack);
            if current.has_match {
                return true;
            }
            next.clear();
            let context = context_at(position + 1);
            for &index in &current.dense {
                if let Inst::Char(test, target) = &self.insts[index]
                    && test.matches(ch)
                {
                    self.add(&mut next, *target, &context, &mut stack);
                }
            }
            std::mem::swap(&mut current, &mut next);
        }
        self.add(
            &mut current,
            self.start,
            &context_at(chars.len()),
            &mut stack,
        );
        current.has_match || (!is_complete && current.has_consumer)
    }

    /// Adds `index` and everything reachable from it without consuming input.
    fn add(&self, list: &mut StateList, index: usize, context: &Context, stack: &mut Vec<usize>) {
        stack.push(index);
        while let Some(index) = stack.pop() {
            if !list.insert(index) {
                continue;
            }
            match &self.insts[index] {
                Inst::Match => list.has_match = true,
                Inst::Char(..) => list.has_consumer = true,
                Inst::Split(first, second) => {
                    stack.push(*second);
                    stack.push(*first);
                }
                Inst::Assert(assertion, target) => {
                    if context.allows(*assertion) {
                        stack.push(*target);
                    }
                }
            }
        }
    }
}

/// What follows the current position.
#[derive(Debug, Clone, Copy)]
enum Upcoming {
    Known(Option<char>),
    /// More text follows but is not known (prefix viability).
    Unknown,
}

#[derive(Debug)]
struct Context {
    is_start: bool,
    is_end: bool,
    previous: Option<char>,
    upcoming: Upcoming,
}

impl Context {
    fn allows(&self, assertion: Assertion) -> bool {
        let is_boundary = |upcoming: Option<char>| {
            self.previous.is_some_and(is_word_char) != upcoming.is_some_and(is_word_char)
        };
        match (assertion, self.upcoming) {
            (Assertion::BeginText, _) => self.is_start,
            // Unknown text follows: the end may come later, so stay conservative.
            (
                Assertion::EndText | Assertion::WordBoundary | Assertion::NotWordBoundary,
                Upcoming::Unknown,
            ) => true,
            (Assertion::EndText, Upcoming::Known(_)) => self.is_end,
            (Assertion::WordBoundary, Upcoming::Known(upcoming)) => is_boundary(upcoming),
            (Assertion::NotWordBoundary, Upcoming::Known(upcoming)) => !is_boundary(upcoming),
        }
    }
}

/// A sparse set of instruction indices.
struct StateList {
    dense: Vec<usize>,
    sparse: Vec<usize>,
    has_match: bool,
    has_consumer: bool,
}

impl StateList {
    fn new(size: usize) -> Self {
        Self {
            dense: Vec::with_capacity(size),
            sparse: vec![0; size],
            has_match: false,
            has_consumer: false,
        }
    }

    fn insert(&mut self, index: usize) -> bool {
        let slot = self.sparse[index];
        if slot < self.dense.len() && self.dense[slot] == index {
            return false;
        }
        self.sparse[index] = self.dense.len();
        self.dense.push(index);
        true
    }

    fn clear(&mut self) {
        self.dense.clear();
        self.has_match = false;
        self.has_consumer = false;
    }
}

/// Compiles `node` so that it continues at `next`; returns its entry instruction.
fn compile(node: &Node, next: usize, insts: &mut Vec<Inst>) -> Result<usize, String> {
    if insts.len() > MAX_INSTRUCTIONS {
        return Err("regular expression too large".to_owned());
    }
    Ok(match node {
        Node::Empty => next,
        Node::Char(test) => push(insts, Inst::Char(test.clone(), next)),
        Node::Assert(assertion) => push(insts, Inst::Assert(*assertion, next)),
        Node::Concat(items) => {
            let mut target = next;
            for item in items.iter().rev() {
                target = compile(item, target, insts)?;
            }
            target
        }
        Node::Alternate(branches) => {
            let mut entries = Vec::with_capacity(branches.len());
            for branch in branches {
                entries.push(compile(branch, next, insts)?);
            }
            let mut entry = entries.pop().unwrap_or(next);
            while let Some(previous) = entries.pop() {
                entry = push(insts, Inst::Split(previous, entry));
            }
            entry
        }
        Node::Repeat { node, min, max } => {
            // Built back to front: the optional or unbounded tail, then `min` copies.
            let mut target = match max {
                None => {
                    let split = push(insts, Inst::Split(next, next));
                    let body = compile(node, split, insts)?;
                    insts[split] = Inst::Split(body, next);
                    split
                }
                Some(max) => {
                    // `(x(x(x)?)?)?`: each optional copy may skip to the end.
                    let mut target = next;
                    for _ in *min..*max {
                        let body = compile(node, target, insts)?;
                        target = push(insts, Inst::Split(body, next));
                    }
                    target
                }
            };
            for _ in 0..*min {
                target = compile(node, target, insts)?;
            }
            target
        }
    })
}

fn push(insts: &mut Vec<Inst>, inst: Inst) -> usize {
    insts.push(inst);
    insts.len() - 1
}

/// Literal text every match must start (after `^`) or end (before `$`) with, when the
/// top level is a concatenation that begins with `^` or ends with `$`.
fn anchored_literals(node: &Node) -> (Option<String>, Option<String>) {
    let Node::Concat(items) = node else {
        return (None, None);
    };
    // A literal U+FFFD also matches an escaped byte, which string comparison would miss.
    let literal = |item: &Node| match item {
        Node::Char(CharTest::Literal(ch)) if *ch != char::REPLACEMENT_CHARACTER => Some(*ch),
        _ => None,
    };
    let prefix = match items.first() {
        Some(Node::Assert(Assertion::BeginText)) => {
            Some(items[1..].iter().map_while(literal).collect())
        }
        _ => None,
    };
    let suffix = match items.last() {
        Some(Node::Assert(Assertion::EndText)) => {
            let mut reversed: Vec<char> = items[..items.len() - 1]
                .iter()
                .rev()
                .map_while(literal)
                .collect();
            reversed.reverse();
            Some(reversed.into_iter().collect())
        }
        _ => None,
    };
    (prefix, suffix)
}

#[cfg(test)]
mod tests;
