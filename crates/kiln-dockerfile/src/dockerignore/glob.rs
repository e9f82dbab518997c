//! Compiled `.dockerignore` patterns.
//!
//! moby/patternmatcher checks a pattern with Go's `filepath.Match` syntax and then translates
//! it into a Go regular expression (`Pattern.compile`), unless it is a plain string, a
//! `prefix**` or a `**suffix`, which it matches with string operations. We follow the same
//! classification, and instead of a regex engine run a small NFA over these elements:
//! `*` (no `/`), `?` (one non-`/` character), `**` in the middle (`(.*/)?`), a trailing `**`
//! after other wildcards (`.*`), bracket classes with ranges, negation and POSIX names,
//! escapes and literal characters. Go regex details we keep: `.` does not match a newline,
//! a bracket class does match `/`, an unescaped `^` is a start-of-text anchor, a reversed
//! range or unknown `[:name:]` class passes the syntax check but fails when matching.
//!
//! Deliberate differences (patterns upstream effectively garbles): inside brackets `*` and `?`
//! are literal members (upstream's regex turns `[a*]` into `[a[^/]*]`), and escapes of
//! letters other than `\d \D \s \S \w \W \a \f \n \r \t \v` are reported as unmatchable
//! instead of being given their regex meaning.

use std::iter::Peekable;
use std::str::Chars;

/// How a pattern is matched, after moby's `matchType`.
#[derive(Debug, Clone)]
pub(crate) enum MatchKind {
    /// The path equals the pattern.
    Exact,
    /// `abc**`: the path starts with this text.
    Prefix(String),
    /// `**abc`: the path ends with this text (or, for `**/abc`, equals `abc`).
    Suffix(String),
    /// Anything with wildcards, classes or escapes.
    Automaton(Automaton),
    /// Passes the syntax check but cannot be compiled; every match attempt fails with this
    /// reason (moby retries the regex compilation and fails each time).
    Unmatchable(String),
}

/// Checks `pattern` against Go's `filepath.Match` syntax (Unix rules): classes must be closed
/// and hold at least one item, `-` and `]` cannot start an item, a range needs an end, and a
/// `\` needs a following character.
pub(crate) fn check_syntax(pattern: &str) -> Result<(), String> {
    let mut chars = pattern.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => {
                chars
                    .next()
                    .ok_or_else(|| "trailing backslash escapes nothing".to_owned())?;
            }
            '[' => check_class_syntax(&mut chars)?,
            _ => {}
        }
    }
    Ok(())
}

fn check_class_syntax(chars: &mut Peekable<Chars<'_>>) -> Result<(), String> {
    if chars.peek() == Some(&'^') {
        chars.next();
    }
    let mut item_count = 0;
    loop {
        if chars.peek() == Some(&']') && item_count > 0 {
            chars.next();
            return Ok(());
        }
        check_class_char(chars)?;
        if chars.peek() == Some(&'-') {
            chars.next();
            check_class_char(chars)?;
        }
        item_count += 1;
    }
}

/// Go `getEsc`: one class character, which must be followed by more pattern text.
fn check_class_char(chars: &mut Peekable<Chars<'_>>) -> Result<(), String> {
    match chars.next() {
        None => return Err("unterminated character class `[`".to_owned()),
        Some(ch @ ('-' | ']')) => {
            return Err(format!(
                "`{ch}` cannot start an item of a character class; escape it"
            ));
        }
        Some('\\') => {
            if chars.next().is_none() {
                return Err("trailing backslash in a character class".to_owned());
            }
        }
        Some(_) => {}
    }
    if chars.peek().is_none() {
        return Err("unterminated character class `[`".to_owned());
    }
    Ok(())
}

/// A test on one character.
#[derive(Debug, Clone)]
enum CharTest {
    Literal(char),
    /// Any character but `/` (`[^/]`).
    NotSlash,
    /// Any character but a newline (Go's `.`).
    NotNewline,
    Class(Class),
}

impl CharTest {
    fn matches(&self, ch: char) -> bool {
        match self {
            Self::Literal(expected) => ch == *expected,
            Self::NotSlash => ch != '/',
            Self::NotNewline => ch != '\n',
            Self::Class(class) => class.matches(ch),
        }
    }
}

/// A bracket expression or Perl class. Like Go regex classes it can match `/` and newlines.
#[derive(Debug, Clone, Default)]
struct Class {
    is_negated: bool,
    ranges: Vec<(char, char)>,
    /// Named ASCII classes (`[:alpha:]`, `\d`, …) with their own negation flag.
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
            Self::Word => ch.is_ascii_alphanumeric() || ch == '_',
            Self::Xdigit => ch.is_ascii_hexdigit(),
        }
    }
}

/// One NFA state.
#[derive(Debug, Clone)]
enum Step {
    /// Consume one matching character, go to the next state.
    One(CharTest),
    /// Zero or more matching characters: stay on a match, or move on without consuming.
    Repeat(CharTest),
    /// Start of `(.*/)?`: skip it (go two states on) or enter the next state.
    OptionalDirsEntry,
    /// Inside `(.*/)?`: any non-newline character stays; a `/` may also leave.
    OptionalDirsInner,
    /// Go regex `^`: passes only at the start of the path.
    Begin,
}

/// A compiled wildcard pattern, matched anchored at both ends.
#[derive(Debug, Clone)]
pub(crate) struct Automaton {
    steps: Vec<Step>,
    /// Text every match starts with (the leading literal steps): a cheap early rejection.
    literal_prefix: String,
    /// Text every match ends with (the trailing literal steps).
    literal_suffix: String,
}

/// A set of NFA states.
trait StateSet: Clone {
    fn empty(size: usize) -> Self;
    fn insert(&mut self, index: usize);
    fn contains(&self, index: usize) -> bool;
    fn is_empty(&self) -> bool;
    /// The smallest member that is at least `from`.
    fn next_from(&self, from: usize) -> Option<usize>;
}

impl StateSet for u128 {
    fn empty(_size: usize) -> Self {
        0
    }
    fn insert(&mut self, index: usize) {
        *self |= 1 << index;
    }
    fn contains(&self, index: usize) -> bool {
        *self & (1 << index) != 0
    }
    fn is_empty(&self) -> bool {
        *self == 0
    }
    fn next_from(&self, from: usize) -> Option<usize> {
        let rest = self.checked_shr(u32::try_from(from).ok()?)?;
        (rest != 0).then(|| from + rest.trailing_zeros() as usize)
    }
}

impl StateSet for Vec<bool> {
    fn empty(size: usize) -> Self {
        vec![false; size]
    }
    fn insert(&mut self, index: usize) {
        self[index] = true;
    }
    fn contains(&self, index: usize) -> bool {
        self[index]
    }
    fn is_empty(&self) -> bool {
        !self.iter().any(|&is_set| is_set)
    }
    fn next_from(&self, from: usize) -> Option<usize> {
        self.get(from..)?
            .iter()
            .position(|&is_set| is_set)
            .map(|offset| from + offset)
    }
}

impl Automaton {
    fn new(steps: Vec<Step>) -> Self {
        let literal = |step: &Step| match step {
            Step::One(CharTest::Literal(ch)) => Some(*ch),
            _ => None,
        };
        let literal_prefix = steps.iter().map_while(literal).collect();
        let mut literal_suffix: Vec<char> = steps.iter().rev().map_while(literal).collect();
        literal_suffix.reverse();
        Self {
            steps,
            literal_prefix,
            literal_suffix: literal_suffix.into_iter().collect(),
        }
    }

    /// Whether the whole of `path` matches.
    pub(crate) fn is_match(&self, path: &str) -> bool {
        if !path.starts_with(&self.literal_prefix) || !path.ends_with(&self.literal_suffix) {
            return false;
        }
        let accept = self.steps.len();
        if accept < 128 {
            self.run::<u128>(path)
                .is_some_and(|set| set.contains(accept))
        } else {
            self.run::<Vec<bool>>(path)
                .is_some_and(|set| set.contains(accept))
        }
    }

    /// Whether some path starting with `prefix` could match (conservative: may say yes
    /// when no such path exists, never no when one does).
    pub(crate) fn may_match_with_prefix(&self, prefix: &str) -> bool {
        if self.steps.len() < 128 {
            self.run::<u128>(prefix).is_some()
        } else {
            self.run::<Vec<bool>>(prefix).is_some()
        }
    }

    /// The live states after reading `text`, or `None` once no state is left.
    fn run<S: StateSet>(&self, text: &str) -> Option<S> {
        let size = self.steps.len() + 1;
        let mut current = S::empty(size);
        current.insert(0);
        self.close(&mut current, true);
        for ch in text.chars() {
            let mut next = S::empty(size);
            let mut cursor = current.next_from(0);
            while let Some(index) = cursor {
                cursor = current.next_from(index + 1);
                let Some(step) = self.steps.get(index) else {
                    break;
                };
                match step {
                    Step::One(test) if test.matches(ch) => next.insert(index + 1),
                    Step::Repeat(test) if test.matches(ch) => next.insert(index),
                    Step::OptionalDirsInner => {
                        if ch != '\n' {
                            next.insert(index);
                        }
                        if ch == '/' {
                            next.insert(index + 1);
                        }
                    }
                    _ => {}
                }
            }
            if next.is_empty() {
                return None;
            }
            self.close(&mut next, false);
            current = next;
        }
        Some(current)
    }

    /// Adds the states reachable without consuming input. Every such move goes forward, so
    /// one pass in order is enough.
    fn close<S: StateSet>(&self, set: &mut S, is_at_start: bool) {
        let mut cursor = set.next_from(0);
        while let Some(index) = cursor {
            let Some(step) = self.steps.get(index) else {
                break;
            };
            match step {
                Step::Repeat(_) => set.insert(index + 1),
                Step::OptionalDirsEntry => {
                    set.insert(index + 1);
                    set.insert(index + 2);
                }
                Step::Begin if is_at_start => set.insert(index + 1),
                _ => {}
            }
            // After the inserts above, which are all further on, so they are visited too.
            cursor = set.next_from(index + 1);
        }
    }
}

/// What the scan of a pattern has decided so far (moby `detectedType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detected {
    Exact,
    Prefix,
    Suffix,
    Regex,
}

/// Compiles a cleaned pattern (without its `!`) that passed [`check_syntax`].
pub(crate) fn compile(pattern: &str) -> MatchKind {
    let mut steps = Vec::new();
    let mut detected = Detected::Exact;
    let mut chars = pattern.chars().peekable();
    let mut is_first = true;
    while let Some(ch) = chars.next() {
        let is_first_element = std::mem::replace(&mut is_first, false);
        match ch {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                // `**/` is treated as `**`.
                if chars.peek() == Some(&'/') {
                    chars.next();
                }
                if chars.peek().is_none() {
                    if detected == Detected::Exact {
                        detected = Detected::Prefix;
                    } else {
                        steps.push(Step::Repeat(CharTest::NotNewline));
                        detected = Detected::Regex;
                    }
                } else {
                    steps.push(Step::OptionalDirsEntry);
                    steps.push(Step::OptionalDirsInner);
                    detected = Detected::Regex;
                }
                if is_first_element {
                    detected = Detected::Suffix;
                }
            }
            '*' => {
                steps.push(Step::Repeat(CharTest::NotSlash));
                detected = Detected::Regex;
            }
            '?' => {
                steps.push(Step::One(CharTest::NotSlash));
                detected = Detected::Regex;
            }
            '\\' => {
                detected = Detected::Regex;
                match chars.next() {
                    None => steps.push(Step::One(CharTest::Literal('\\'))),
                    Some(escaped) => match escape_test(escaped) {
                        Ok(test) => steps.push(Step::One(test)),
                        Err(reason) => return MatchKind::Unmatchable(reason),
                    },
                }
            }
            '[' => {
                detected = Detected::Regex;
                match compile_class(&mut chars) {
                    Ok(class) => steps.push(Step::One(CharTest::Class(class))),
                    Err(reason) => return MatchKind::Unmatchable(reason),
                }
            }
            ']' => {
                steps.push(Step::One(CharTest::Literal(']')));
                detected = Detected::Regex;
            }
            '^' => steps.push(Step::Begin),
            other => steps.push(Step::One(CharTest::Literal(other))),
        }
    }
    match detected {
        Detected::Exact => MatchKind::Exact,
        Detected::Prefix => {
            MatchKind::Prefix(pattern.strip_suffix("**").unwrap_or(pattern).to_owned())
        }
        Detected::Suffix => MatchKind::Suffix(pattern.get(2..).unwrap_or_default().to_owned()),
        Detected::Regex => MatchKind::Automaton(Automaton::new(steps)),
    }
}

/// The meaning of `\c` in Go's regexp, for the escapes we support.
fn escape_test(escaped: char) -> Result<CharTest, String> {
    if let Some((named, is_negated)) = NamedClass::from_perl_escape(escaped) {
        return Ok(CharTest::Class(Class {
            named: vec![(named, is_negated)],
            ..Class::default()
        }));
    }
    escaped_char(escaped).map(CharTest::Literal)
}

/// A single escaped character: punctuation stands for itself, `\a \f \n \r \t \v` are
/// control characters.
fn escaped_char(escaped: char) -> Result<char, String> {
    Ok(match escaped {
        'a' => '\x07',
        'f' => '\x0c',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\x0b',
        ch if ch.is_ascii() && !ch.is_ascii_alphanumeric() => ch,
        other => {
            return Err(format!(
                "the escape `\\{other}` has a regular-expression meaning upstream that kiln \
                 does not support; remove the backslash"
            ));
        }
    })
}

/// Parses a bracket expression after its `[` the way Go's regexp parses the class text.
fn compile_class(chars: &mut Peekable<Chars<'_>>) -> Result<Class, String> {
    let mut class = Class::default();
    if chars.peek() == Some(&'^') {
        chars.next();
        class.is_negated = true;
    }
    let mut is_first = true;
    loop {
        let Some(ch) = chars.next() else {
            return Err("missing closing `]` of a character class".to_owned());
        };
        if ch == ']' && !is_first {
            return Ok(class);
        }
        is_first = false;
        if ch == '[' && chars.peek() == Some(&':') {
            let rest: String = chars.clone().collect();
            if let Some(end) = rest[1..].find(":]") {
                let body = &rest[1..=end];
                let (name, is_negated) = match body.strip_prefix('^') {
                    Some(name) => (name, true),
                    None => (body, false),
                };
                let Some(named) = NamedClass::from_posix_name(name) else {
                    return Err(format!("invalid character class range `[:{body}:]`"));
                };
                class.named.push((named, is_negated));
                for _ in 0..body.chars().count() + 3 {
                    chars.next();
                }
                continue;
            }
        }
        let lo = match class_char(ch, chars)? {
            ClassChar::Char(lo) => lo,
            ClassChar::Named(named, is_negated) => {
                class.named.push((named, is_negated));
                continue;
            }
        };
        let mut lookahead = chars.clone();
        let is_range =
            lookahead.next() == Some('-') && lookahead.peek().is_some_and(|&ch| ch != ']');
        if !is_range {
            class.ranges.push((lo, lo));
            continue;
        }
        chars.next();
        let Some(hi_start) = chars.next() else {
            return Err("missing closing `]` of a character class".to_owned());
        };
        let ClassChar::Char(hi) = class_char(hi_start, chars)? else {
            return Err(format!(
                "invalid character class range ending in `\\{hi_start}`"
            ));
        };
        if hi < lo {
            return Err(format!("invalid character class range `{lo}-{hi}`"));
        }
        class.ranges.push((lo, hi));
    }
}

enum ClassChar {
    Char(char),
    Named(NamedClass, bool),
}

fn class_char(ch: char, chars: &mut Peekable<Chars<'_>>) -> Result<ClassChar, String> {
    if ch != '\\' {
        return Ok(ClassChar::Char(ch));
    }
    let Some(escaped) = chars.next() else {
        return Err("trailing backslash in a character class".to_owned());
    };
    if let Some((named, is_negated)) = NamedClass::from_perl_escape(escaped) {
        return Ok(ClassChar::Named(named, is_negated));
    }
    escaped_char(escaped).map(ClassChar::Char)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn automaton(pattern: &str) -> Automaton {
        match compile(pattern) {
            MatchKind::Automaton(automaton) => automaton,
            other => panic!("{pattern} compiled to {other:?}"),
        }
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "[", "a[", "[]a]", "[x-]", "\\", "a\\", "[^]", "[a-\\", "[-a]",
        ] {
            assert!(check_syntax(bad).is_err(), "{bad}");
        }
        for good in [
            "[\\]a]",
            "[Local-Only]",
            "[[:alpha:]]",
            "a[*]",
            "[^a-c]",
            "*?",
        ] {
            assert!(check_syntax(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn kinds() {
        assert!(matches!(compile("abc"), MatchKind::Exact));
        assert!(matches!(compile("a.^b"), MatchKind::Exact));
        assert!(matches!(compile("abc/**"), MatchKind::Prefix(prefix) if prefix == "abc/"));
        assert!(matches!(compile("**/abc"), MatchKind::Suffix(suffix) if suffix == "/abc"));
        assert!(matches!(compile("**"), MatchKind::Suffix(suffix) if suffix.is_empty()));
        assert!(matches!(compile("**/*.go"), MatchKind::Automaton(_)));
        assert!(matches!(compile("[Local-Only]"), MatchKind::Unmatchable(_)));
        assert!(matches!(compile("[[:nope:]]"), MatchKind::Unmatchable(_)));
        assert!(matches!(compile("a\\q"), MatchKind::Unmatchable(_)));
    }

    #[test]
    fn wildcards() {
        let star = automaton("a*b");
        assert!(star.is_match("ab") && star.is_match("axxb") && !star.is_match("a/b"));
        let question = automaton("a?b");
        assert!(question.is_match("a☺b") && !question.is_match("a/b") && !question.is_match("ab"));
        let middle = automaton("a**b");
        assert!(middle.is_match("ab") && middle.is_match("a/x/b") && middle.is_match("ax/b"));
        assert!(!middle.is_match("axb"));
        let tail = automaton("*/**");
        assert!(tail.is_match("a/b/c") && tail.is_match("a/") && !tail.is_match("a"));
        assert!(!automaton("**/*x").is_match("a\nb/x") && automaton("*x").is_match("a\nx"));
    }

    #[test]
    fn classes() {
        let class = automaton("[a-c]x");
        assert!(class.is_match("bx") && !class.is_match("dx"));
        let negated = automaton("a[^b]c");
        assert!(negated.is_match("a/c") && negated.is_match("a\nc") && !negated.is_match("abc"));
        let posix = automaton("[[:digit:]_]");
        assert!(posix.is_match("7") && posix.is_match("_") && !posix.is_match("x"));
        let negated_posix = automaton("[[:^digit:]]");
        assert!(negated_posix.is_match("x") && !negated_posix.is_match("7"));
        let escaped = automaton("[\\]a]");
        assert!(escaped.is_match("]") && escaped.is_match("a") && !escaped.is_match("\\"));
        let perl = automaton("\\d[\\w]");
        assert!(perl.is_match("1a") && !perl.is_match("a1"));
        let literal_dash = automaton("[a\\-z]");
        assert!(literal_dash.is_match("-") && !literal_dash.is_match("b"));
    }

    #[test]
    fn caret_is_an_anchor() {
        assert!(automaton("*^a").is_match("a"));
        assert!(!automaton("*^a").is_match("xa"));
        assert!(!automaton("x*^a").is_match("xa"));
    }

    #[test]
    fn prefix_viability() {
        let pattern = automaton("dir/*/keep");
        assert!(pattern.may_match_with_prefix("dir/"));
        assert!(pattern.may_match_with_prefix("dir/sub/"));
        assert!(!pattern.may_match_with_prefix("other/"));
        assert!(!pattern.may_match_with_prefix("dir/sub/x/"));
        assert!(automaton("**/*.go").may_match_with_prefix("any/where/"));
    }

    #[test]
    fn literal_ends_are_required() {
        let pattern = automaton("src/*.md");
        assert_eq!(pattern.literal_prefix, "src/");
        assert_eq!(pattern.literal_suffix, ".md");
        assert!(pattern.is_match("src/a.md") && !pattern.is_match("src/a.mdx"));
        let anchored = automaton("^a*b");
        assert!(anchored.literal_prefix.is_empty() && anchored.is_match("axb"));
    }

    #[test]
    fn state_sets_iterate_members_in_order() {
        let mut small = <u128 as StateSet>::empty(128);
        let mut large = <Vec<bool> as StateSet>::empty(200);
        for index in [0, 5, 127] {
            small.insert(index);
        }
        for index in [0, 5, 199] {
            StateSet::insert(&mut large, index);
        }
        assert_eq!(small.next_from(0), Some(0));
        assert_eq!(small.next_from(1), Some(5));
        assert_eq!(small.next_from(6), Some(127));
        assert_eq!(small.next_from(128), None);
        assert_eq!(large.next_from(6), Some(199));
        assert_eq!(large.next_from(200), None);
    }

    #[test]
    fn long_patterns_use_the_large_state_set() {
        let pattern = format!("{}*", "a?".repeat(100));
        let automaton = automaton(&pattern);
        assert!(automaton.is_match(&"ab".repeat(100)));
        assert!(!automaton.is_match(&"ab".repeat(99)));
    }
}
