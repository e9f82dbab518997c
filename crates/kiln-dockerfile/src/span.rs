//! Source locations: byte spans with the 1-based line and column of their start.
//!
//! Every instruction, flag and argument of the AST carries a [`Span`] into the original
//! Dockerfile text, so diagnostics can point at the exact bytes and tools can map AST nodes
//! back to the source.

use serde::Serialize;

/// A byte range `start..end` in the Dockerfile source, with the position of `start`.
///
/// `line` and `column` are 1-based; `column` counts Unicode scalar values from the start of
/// the physical line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Span {
    /// Offset of the first byte.
    pub start: usize,
    /// Offset one past the last byte.
    pub end: usize,
    /// 1-based line of `start`.
    pub line: u32,
    /// 1-based column (in characters) of `start`.
    pub column: u32,
}

impl Span {
    /// Number of bytes covered.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the span covers no bytes.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// Offsets of every physical line start, to turn byte offsets into line/column pairs.
#[derive(Debug, Clone)]
pub(crate) struct LineIndex {
    starts: Vec<usize>,
    /// The line of the last lookup: spans come in source order, mostly on the same line.
    last: std::cell::Cell<usize>,
    /// `(offset, column)` of the last span start: columns are counted from there, so the
    /// many words of one long line cost their distance, not the line's length each.
    last_column: std::cell::Cell<(usize, usize)>,
}

impl LineIndex {
    pub(crate) fn new(src: &str) -> Self {
        let mut starts = Vec::with_capacity(src.len() / 32 + 1);
        starts.push(0);
        starts.extend(
            src.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Self {
            starts,
            last: std::cell::Cell::new(0),
            last_column: std::cell::Cell::new((0, 1)),
        }
    }

    /// 0-based index of the line holding `offset`.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        let last = self.last.get();
        let in_line = |i: usize| {
            self.starts.get(i).is_some_and(|&s| s <= offset)
                && self.starts.get(i + 1).is_none_or(|&next| offset < next)
        };
        if in_line(last) {
            return last;
        }
        if in_line(last + 1) {
            self.last.set(last + 1);
            return last + 1;
        }
        let line = match self.starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        self.last.set(line);
        line
    }

    /// Byte offset where the 0-based line `line` starts.
    pub(crate) fn line_start(&self, line: usize) -> usize {
        self.starts.get(line).copied().unwrap_or(0)
    }

    /// Builds a span for `start..end` of `src`, snapping both ends to character boundaries.
    pub(crate) fn span(&self, src: &str, start: usize, end: usize) -> Span {
        let start = floor_boundary(src, start.min(src.len()));
        let end = floor_boundary(src, end.clamp(start, src.len()));
        let line = self.line_of(start);
        let line_start = self.line_start(line).min(start);
        let count = |text: &str| {
            if text.is_ascii() {
                text.len()
            } else {
                text.chars().count()
            }
        };
        let (memo_offset, memo_column) = self.last_column.get();
        let next_line_start = self.starts.get(line + 1).copied().unwrap_or(usize::MAX);
        let column =
            if memo_offset < line_start || memo_offset >= next_line_start.min(src.len() + 1) {
                count(&src[line_start..start]) + 1
            } else if memo_offset <= start {
                memo_column + count(&src[memo_offset..start])
            } else if memo_offset - start < start - line_start {
                memo_column - count(&src[start..memo_offset])
            } else {
                count(&src[line_start..start]) + 1
            };
        self.last_column.set((start, column));
        Span {
            start,
            end,
            line: to_u32(line + 1),
            column: to_u32(column),
        }
    }
}

pub(crate) fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The largest character boundary of `s` that is `<= i`.
pub(crate) fn floor_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        let src = "FROM a\nRUN ♥ x\n";
        let idx = LineIndex::new(src);
        let at = src.find('x').unwrap();
        let span = idx.span(src, at, at + 1);
        assert_eq!((span.line, span.column), (2, 7));
        let span = idx.span(src, 0, 4);
        assert_eq!((span.line, span.column, span.len()), (1, 1, 4));
    }

    #[test]
    fn spans_snap_to_char_boundaries() {
        let src = "♥";
        let idx = LineIndex::new(src);
        let span = idx.span(src, 1, 2);
        assert_eq!((span.start, span.end), (0, 0));
    }
}
