//! The syntax tree: BuildKit's `parser.Parse`, with spans.
//!
//! [`parse_syntax`] turns the text into [`Node`]s exactly as BuildKit's parser does: physical
//! lines are joined into logical lines (escape token, comment and blank lines inside
//! continuations), directives are read at the top, each logical line is split into keyword,
//! flags and arguments by the per-instruction line parser, and heredoc bodies are attached.
//! Nothing is validated beyond what BuildKit's parser checks; the typed view
//! ([`crate::parse`]) does the rest.

use serde::Serialize;

use crate::diagnostic::{ParseError, ParseErrorKind};
use crate::directive::{Directive, DirectiveError, DirectiveScanner};
use crate::heredoc::{Heredoc, heredocs_from_line};
use crate::json_form::{JsonArray, parse_json_array};
use crate::limits::{MAX_INSTRUCTIONS, MAX_LINE_LENGTH, MAX_LOGICAL_LINE_LENGTH};
use crate::line_parsers::{
    Word, parse_words, split_blanks, split_blanks_once, split_command, split_health,
};
use crate::span::{LineIndex, Span, to_u32};

/// A Dockerfile as BuildKit's parser sees it: directives and one [`Node`] per instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyntaxTree {
    /// Parser directives from the top of the file.
    pub directives: Vec<Directive>,
    /// The escape token in effect (`\` or `` ` ``).
    pub escape: char,
    /// One node per instruction, in source order.
    pub nodes: Vec<Node>,
    /// Non-fatal findings (empty continuation lines, ...).
    pub warnings: Vec<Warning>,
}

/// A non-fatal finding, with its location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// What was found.
    pub message: String,
    /// Where.
    pub span: Span,
}

/// One instruction as written: keyword, flags and the arguments as BuildKit's line parser
/// splits them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// The keyword as written (`run`, `Run`, `RUN`).
    pub keyword: String,
    /// The keyword's bytes.
    pub keyword_span: Span,
    /// The whole instruction, from its keyword to the end of its last line (continuation
    /// lines and heredoc bodies included).
    pub span: Span,
    /// 1-based physical line where the instruction starts.
    pub start_line: u32,
    /// 1-based last physical line it consumed.
    pub end_line: u32,
    /// The logical line (continuations joined), as BuildKit's `Node.Original`.
    pub original: String,
    /// `--flags` before the arguments.
    pub flags: Vec<Flag>,
    /// Arguments as the line parser splits them (see the conformance README §1.3).
    pub args: Vec<Arg>,
    /// The nested instruction of `ONBUILD`.
    pub trigger: Option<Box<Node>>,
    /// Whether the arguments were written in JSON (exec) form.
    pub is_json: bool,
    /// Heredocs opened on this line, with their bodies.
    pub heredocs: Vec<Heredoc>,
}

impl Node {
    /// The keyword lowercased, as BuildKit compares it.
    pub fn name(&self) -> String {
        go_lower(&self.keyword)
    }

    /// The argument values.
    pub fn arg_values(&self) -> impl Iterator<Item = &str> {
        self.args.iter().map(|a| a.value.as_str())
    }
}

/// A `--name=value` or `--name` flag, after quote removal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flag {
    /// The flag as BuildKit keeps it, e.g. `--from=builder`.
    pub text: String,
    /// The name without dashes, e.g. `from`.
    pub name: String,
    /// The value after `=`, if any.
    pub value: Option<String>,
    /// The flag's bytes in the source.
    pub span: Span,
}

/// One argument of an instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Arg {
    /// The value, unexpanded (JSON escapes decoded in exec form).
    pub value: String,
    /// Its bytes in the source.
    pub span: Span,
}

/// Go's `strings.ToLower` for keywords (one character in, one out).
pub(crate) fn go_lower(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    s.chars()
        .map(|c| {
            if c == '\u{130}' {
                return 'i';
            }
            let mut lower = c.to_lowercase();
            match (lower.next(), lower.next()) {
                (Some(l), None) => l,
                _ => c,
            }
        })
        .collect()
}

/// Parses Dockerfile text the way BuildKit's parser does, without the typed checks.
///
/// ```
/// let tree = kiln_dockerfile::parse_syntax("FROM a AS b\nCMD [\"x\"]\n").unwrap();
/// assert_eq!(tree.dump_buildkit_ast(), "(from \"a\" \"AS\" \"b\")\n(cmd \"x\")");
/// ```
pub fn parse_syntax(src: &str) -> Result<SyntaxTree, ParseError> {
    Parser::new(src).run()
}

/// A logical line with the source offset of each piece it was built from.
struct Logical {
    text: String,
    /// (offset in `text`, offset in the source) where each contiguous piece starts.
    pieces: Vec<(usize, usize)>,
}

impl Logical {
    fn push(&mut self, s: &str, source: usize) {
        if !s.is_empty() {
            self.pieces.push((self.text.len(), source));
            self.text.push_str(s);
        }
    }

    fn to_source(&self, at: usize) -> usize {
        let i = self.pieces.partition_point(|&(l, _)| l <= at);
        match i.checked_sub(1).and_then(|i| self.pieces.get(i)) {
            Some(&(l, s)) => s + (at - l),
            None => self.pieces.first().map_or(0, |&(_, s)| s),
        }
    }

    fn range(&self, start: usize, end: usize) -> (usize, usize) {
        let s = self.to_source(start);
        let e = if end > start {
            self.to_source(end - 1) + 1
        } else {
            s
        };
        (s, e.max(s))
    }
}

struct PhysLine<'a> {
    start: usize,
    /// The line without its `\n`.
    text: &'a str,
}

struct Parser<'a> {
    src: &'a str,
    index: LineIndex,
    pos: usize,
    line: usize,
    escape: u8,
    directives: DirectiveScanner,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Self {
            src,
            index: LineIndex::new(src),
            pos: 0,
            line: 0,
            escape: b'\\',
            directives: DirectiveScanner::new("#"),
        }
    }

    fn span(&self, start: usize, end: usize) -> Span {
        self.index.span(self.src, start, end)
    }

    /// The next physical line; counts it and enforces the length limit.
    fn next_line(&mut self) -> Result<Option<PhysLine<'a>>, ParseError> {
        if self.pos >= self.src.len() {
            return Ok(None);
        }
        let start = self.pos;
        let rest = &self.src[start..];
        let (text, advance) = match rest.find('\n') {
            Some(i) => (&rest[..i], i + 1),
            None => (rest, rest.len()),
        };
        self.pos += advance;
        self.line += 1;
        if text.len() > MAX_LINE_LENGTH {
            let span = self.span(start + MAX_LINE_LENGTH, start + text.len());
            return Err(ParseError::new(
                ParseErrorKind::LineTooLong {
                    max: MAX_LINE_LENGTH,
                },
                span,
            ));
        }
        Ok(Some(PhysLine { start, text }))
    }

    fn run(mut self) -> Result<SyntaxTree, ParseError> {
        let mut nodes = Vec::new();
        let mut warnings = Vec::new();
        let mut directives = Vec::new();
        while let Some(first) = self.next_line()? {
            let mut text = first.text;
            let mut start = first.start;
            if self.line == 1
                && let Some(t) = text.strip_prefix('\u{feff}')
            {
                text = t;
                start += 3;
            }
            let text = text.trim_end_matches(['\r', '\n']);
            let token = text.trim_start();
            let token_start = start + (text.len() - token.len());
            match self.directives.parse_line(token) {
                Ok(Some(d)) => {
                    if d.name == "escape" {
                        if d.value != "`" && d.value != "\\" {
                            let at = token_start + d.value_offset;
                            return Err(ParseError::new(
                                ParseErrorKind::InvalidEscapeToken {
                                    value: d.value.to_owned(),
                                },
                                self.span(at, at + d.value.len()),
                            ));
                        }
                        self.escape = d.value.as_bytes()[0];
                    }
                    directives.push(Directive {
                        name: d.name,
                        value: d.value.to_owned(),
                        span: self.span(token_start, token_start + token.len()),
                    });
                }
                Ok(None) => {}
                Err(DirectiveError::Duplicate(name)) => {
                    return Err(ParseError::new(
                        ParseErrorKind::DuplicateDirective { name },
                        self.span(token_start, token_start + token.len()),
                    ));
                }
            }
            let token = if token.starts_with('#') { "" } else { token };
            let start_line = self.line;
            let (piece, mut at_end) = trim_continuation(token, self.escape);
            if at_end && piece.is_empty() {
                continue;
            }
            let mut logical = Logical {
                text: String::with_capacity(piece.len()),
                pieces: Vec::with_capacity(1),
            };
            logical.push(piece, token_start);
            let mut end_offset = token_start + token.len();
            let mut has_empty_continuation = false;
            while !at_end {
                let Some(next) = self.next_line()? else { break };
                let raw = next.text.trim_end_matches(['\r', '\n']);
                end_offset = next.start + next.text.len();
                if raw.trim_start().starts_with('#') {
                    continue;
                }
                if raw.trim_start().is_empty() {
                    has_empty_continuation = true;
                    continue;
                }
                let (piece, end) = trim_continuation(raw, self.escape);
                at_end = end;
                if logical.text.len() + piece.len() > MAX_LOGICAL_LINE_LENGTH {
                    let at = next.start;
                    return Err(ParseError::new(
                        ParseErrorKind::LogicalLineTooLong {
                            max: MAX_LOGICAL_LINE_LENGTH,
                            start_line: start_line as u64,
                        },
                        self.span(at, at + piece.len()),
                    ));
                }
                logical.push(piece, next.start);
            }
            let instruction_start = token_start;
            if has_empty_continuation {
                let line_start = self.index.line_start(self.line - 1);
                warnings.push(Warning {
                    message: format!("Empty continuation line found in: {}", logical.text),
                    span: self.span(line_start, line_start),
                });
            }
            if nodes.len() >= MAX_INSTRUCTIONS {
                return Err(ParseError::new(
                    ParseErrorKind::TooManyInstructions {
                        max: MAX_INSTRUCTIONS,
                    },
                    self.span(instruction_start, instruction_start + logical.text.len()),
                ));
            }
            let mut node =
                self.build_node(&logical, 0, logical.text.len(), instruction_start, false)?;
            if logical.text.contains("<<") && node_accepts_heredoc(&node) {
                let docs = heredocs_from_line(&logical.text).map_err(|(word, reason)| {
                    ParseError::new(
                        ParseErrorKind::MalformedHeredoc {
                            word,
                            reason: reason.to_string(),
                        },
                        node.span,
                    )
                })?;
                for doc in docs {
                    let body_start = self.pos;
                    let mut terminated = false;
                    let mut body_end = body_start;
                    while let Some(line) = self.next_line()? {
                        end_offset = line.start + line.text.len();
                        let mut candidate = line.text.trim_end_matches(['\r', '\n']);
                        if doc.chomp {
                            candidate = candidate.trim_start_matches('\t');
                        }
                        if candidate == doc.name {
                            terminated = true;
                            break;
                        }
                        body_end = self.pos;
                    }
                    if !terminated {
                        return Err(ParseError::new(
                            ParseErrorKind::UnterminatedHeredoc { name: doc.name },
                            node.span,
                        ));
                    }
                    node.heredocs.push(Heredoc {
                        name: doc.name,
                        file_descriptor: doc.file_descriptor,
                        expand: doc.expand,
                        chomp: doc.chomp,
                        content: self.src[body_start..body_end].to_owned(),
                        span: self.span(body_start, body_end),
                    });
                }
            }
            node.span = self.span(instruction_start, end_offset);
            node.start_line = to_u32(start_line);
            node.end_line = to_u32(self.line);
            nodes.push(node);
        }
        if nodes.is_empty() {
            let end = self.src.len();
            return Err(ParseError::new(
                ParseErrorKind::NoInstructions,
                self.span(end, end),
            ));
        }
        Ok(SyntaxTree {
            directives,
            escape: char::from(self.escape),
            nodes,
            warnings,
        })
    }

    /// `newNodeFromLine` on `logical.text[from..to]`; `is_trigger` for the instruction after
    /// `ONBUILD`.
    fn build_node(
        &self,
        logical: &Logical,
        from: usize,
        to: usize,
        fallback_start: usize,
        is_trigger: bool,
    ) -> Result<Node, ParseError> {
        let line = &logical.text[from..to];
        let split = split_command(line, self.escape);
        let map = |s: usize, e: usize| {
            if logical.text.is_empty() {
                return self.span(fallback_start, fallback_start);
            }
            let (s, e) = logical.range(from + s, from + e);
            self.span(s, e)
        };
        let keyword = line[split.keyword.0..split.keyword.1].to_owned();
        let keyword_span = map(split.keyword.0, split.keyword.1);
        let flags = split
            .flags
            .into_iter()
            .map(|w| {
                let (name, value) = match w.text.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_owned())),
                    None => (w.text.as_str(), None),
                };
                Flag {
                    name: name.trim_start_matches('-').to_owned(),
                    value,
                    span: map(w.start, w.end),
                    text: w.text,
                }
            })
            .collect();
        let (rs, re) = split.rest;
        let rest = &line[rs..re];
        let rest_span = map(rs, re);
        let arg = |value: String, s: usize, e: usize| Arg {
            value,
            span: map(rs + s, rs + e),
        };
        let words = |ws: Vec<Word>| -> Vec<Arg> {
            ws.into_iter()
                .map(|w| arg(w.text, w.start, w.end))
                .collect()
        };
        let mut node = Node {
            keyword_span,
            span: map(0, line.len()),
            start_line: 0,
            end_line: 0,
            original: line.to_owned(),
            flags,
            args: Vec::new(),
            trigger: None,
            is_json: false,
            heredocs: Vec::new(),
            keyword,
        };
        let upper = node.keyword.to_ascii_uppercase();
        let not_strings = || {
            ParseError::new(
                ParseErrorKind::JsonNotStringArray {
                    instruction: upper.clone(),
                },
                rest_span,
            )
        };
        match go_lower(&node.keyword).as_str() {
            "add" | "copy" | "volume" => match parse_json_array(rest) {
                JsonArray::Strings(items) => {
                    node.is_json = true;
                    node.args = items.into_iter().map(|(v, s, e)| arg(v, s, e)).collect();
                }
                JsonArray::NonString => return Err(not_strings()),
                JsonArray::NotJson if rest.is_empty() => {}
                JsonArray::NotJson => node.args = words(split_blanks(rest)),
            },
            "run" | "cmd" | "entrypoint" | "shell" => {
                if !rest.is_empty() {
                    let (args, is_json) = maybe_json(rest, 0).map_err(|()| not_strings())?;
                    node.is_json = is_json;
                    node.args = args.into_iter().map(|(v, s, e)| arg(v, s, e)).collect();
                }
            }
            "healthcheck" => {
                let (sep, next) = split_health(rest);
                if sep > 0 {
                    node.args.push(arg(rest[..sep].to_owned(), 0, sep));
                    let cmd = &rest[next..];
                    if !cmd.is_empty() {
                        let (args, is_json) = maybe_json(cmd, next).map_err(|()| not_strings())?;
                        node.is_json = is_json;
                        node.args
                            .extend(args.into_iter().map(|(v, s, e)| arg(v, s, e)));
                    }
                }
            }
            "from" | "expose" => {
                if !rest.is_empty() {
                    node.args = words(split_blanks(rest));
                }
            }
            "env" | "label" => {
                node.args = self.name_values(rest, &upper, rest_span, &arg)?;
            }
            "arg" => node.args = words(parse_words(rest, char::from(self.escape))),
            "maintainer" | "stopsignal" | "user" | "workdir" => {
                if !rest.is_empty() {
                    node.args.push(arg(rest.to_owned(), 0, rest.len()));
                }
            }
            // BuildKit recurses for `ONBUILD ONBUILD …` too, as deep as the line goes, and its
            // instruction parser then rejects the nested ONBUILD; we stop after one level so a
            // line of ONBUILDs cannot exhaust the stack (the typed view rejects it the same way).
            "onbuild" if is_trigger => node.args.push(arg(rest.to_owned(), 0, rest.len())),
            "onbuild" => {
                if !rest.is_empty() {
                    let trigger =
                        self.build_node(logical, from + rs, from + re, fallback_start, true)?;
                    node.trigger = Some(Box::new(trigger));
                }
            }
            // BuildKit's parseIgnore: an unknown instruction keeps one empty argument.
            _ => node.args.push(arg(String::new(), 0, 0)),
        }
        Ok(node)
    }

    /// `parseNameVal` for ENV and LABEL: `key value ""` (legacy) or `key value "="` triples.
    fn name_values(
        &self,
        rest: &str,
        instruction: &str,
        rest_span: Span,
        arg: &dyn Fn(String, usize, usize) -> Arg,
    ) -> Result<Vec<Arg>, ParseError> {
        let words = parse_words(rest, char::from(self.escape));
        let Some(first) = words.first() else {
            return Ok(Vec::new());
        };
        let mut args = Vec::new();
        if !first.text.contains('=') {
            let Some(((ks, ke), (vs, ve))) = split_blanks_once(rest) else {
                return Err(ParseError::new(
                    ParseErrorKind::MissingValue {
                        instruction: instruction.to_owned(),
                    },
                    rest_span,
                ));
            };
            args.push(arg(rest[ks..ke].to_owned(), ks, ke));
            args.push(arg(rest[vs..ve].to_owned(), vs, ve));
            args.push(arg(String::new(), ve, ve));
            return Ok(args);
        }
        for w in words {
            let Some((key, value)) = w.text.split_once('=') else {
                let (s, e) = (w.start, w.end);
                return Err(ParseError::new(
                    ParseErrorKind::MissingEquals { word: w.text },
                    arg(String::new(), s, e).span,
                ));
            };
            let eq = w.start + key.len();
            args.push(arg(key.to_owned(), w.start, eq));
            args.push(arg(value.to_owned(), eq + 1, w.end));
            args.push(arg("=".to_owned(), eq, eq + 1));
        }
        Ok(args)
    }
}

/// `parseMaybeJSON`: the JSON strings, or the whole text as one argument. `Err` for a JSON
/// array with a non-string element. Offsets are shifted by `base`.
type Items = Vec<(String, usize, usize)>;
fn maybe_json(text: &str, base: usize) -> Result<(Items, bool), ()> {
    let trimmed = text.trim_start();
    let lead = text.len() - trimmed.len();
    match parse_json_array(trimmed) {
        JsonArray::Strings(items) => Ok((
            items
                .into_iter()
                .map(|(v, s, e)| (v, base + lead + s, base + lead + e))
                .collect(),
            true,
        )),
        JsonArray::NonString => Err(()),
        JsonArray::NotJson => Ok((vec![(text.to_owned(), base, base + text.len())], false)),
    }
}

/// `canContainHeredoc`: RUN, COPY, ADD (also as an ONBUILD trigger), not in JSON form.
fn node_accepts_heredoc(node: &Node) -> bool {
    let target = match (&node.trigger, go_lower(&node.keyword).as_str()) {
        (Some(trigger), "onbuild") => trigger,
        _ => node,
    };
    matches!(go_lower(&target.keyword).as_str(), "run" | "copy" | "add") && !target.is_json
}

/// Removes a trailing escape token (and the blanks after it) that continues the line:
/// `([^E])E[ \t]*$` or `^E[ \t]*$`. Returns the kept text and whether the line ends here.
fn trim_continuation(line: &str, escape: u8) -> (&str, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    let bytes = trimmed.as_bytes();
    if bytes.last() != Some(&escape) {
        return (line, true);
    }
    let before = &trimmed[..trimmed.len() - 1];
    if before.as_bytes().last() == Some(&escape) {
        return (line, true);
    }
    (before, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_rules() {
        assert_eq!(trim_continuation("echo \\", b'\\'), ("echo ", false));
        assert_eq!(trim_continuation("\\ \t", b'\\'), ("", false));
        assert_eq!(trim_continuation("a\\\\", b'\\'), ("a\\\\", true));
        assert_eq!(trim_continuation("a\\\\\\", b'\\'), ("a\\\\\\", true));
        assert_eq!(trim_continuation("a`", b'`'), ("a", false));
    }

    #[test]
    fn spans_point_into_continued_lines() {
        let src = "FROM a\nRUN --mount=type=cache,target=/x \\\n  echo hi\n";
        let tree = parse_syntax(src).unwrap();
        let run = &tree.nodes[1];
        assert_eq!((run.start_line, run.end_line), (2, 3));
        assert_eq!(
            &src[run.flags[0].span.start..run.flags[0].span.end],
            "--mount=type=cache,target=/x"
        );
        let arg = &run.args[0];
        assert_eq!(arg.value, "echo hi");
        assert_eq!((arg.span.line, arg.span.column), (3, 3));
        assert_eq!(
            &src[run.span.start..run.span.end],
            "RUN --mount=type=cache,target=/x \\\n  echo hi"
        );
    }

    #[test]
    fn heredoc_bodies_are_attached() {
        let src = "FROM a\nRUN <<-EOF cat\n\techo $x\n\tEOF\nCOPY <<A <<'B' /d/\na\nA\nb\nB\n";
        let tree = parse_syntax(src).unwrap();
        let run = &tree.nodes[1];
        assert_eq!(run.heredocs[0].content, "\techo $x\n");
        assert_eq!(run.heredocs[0].body(), "echo $x\n");
        assert_eq!(run.end_line, 4);
        let copy = &tree.nodes[2];
        assert_eq!(copy.heredocs.len(), 2);
        assert!(copy.heredocs[0].expand && !copy.heredocs[1].expand);
        assert_eq!(copy.heredocs[1].content, "b\n");
    }
}
