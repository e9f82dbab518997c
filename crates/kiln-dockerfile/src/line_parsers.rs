//! BuildKit's line parsers: how a logical line becomes a keyword, flags and arguments.
//!
//! These mirror `splitCommand`, `extractBuilderFlags`, `parseWords` and the whitespace
//! splitting of `parser/line_parsers.go`, quirks included (the flag extractor works on
//! bytes, so a non-ASCII byte is read as the Latin-1 character of the same value). All
//! positions are byte offsets into the string passed in.

/// A word with its byte range in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    pub(crate) text: String,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// `[\t\v\f\r ]`: the separators of `reWhitespace`.
pub(crate) fn is_ascii_blank(b: u8) -> bool {
    matches!(b, b'\t' | 0x0b | 0x0c | b'\r' | b' ')
}

/// Go's `unicode.IsSpace(rune(b))` for a single byte.
fn is_space_byte(b: u8) -> bool {
    matches!(b, b'\t'..=b'\r' | b' ' | 0x85 | 0xa0)
}

/// The trimmed line split into keyword, flags and rest (`splitCommand`).
#[derive(Debug)]
pub(crate) struct Split {
    pub(crate) keyword: (usize, usize),
    pub(crate) flags: Vec<Word>,
    pub(crate) rest: (usize, usize),
}

pub(crate) fn split_command(line: &str, escape: u8) -> Split {
    let trimmed = line.trim();
    let t0 = trimmed.as_ptr() as usize - line.as_ptr() as usize;
    let bytes = trimmed.as_bytes();
    let Some(ws) = bytes.iter().position(|&b| is_ascii_blank(b)) else {
        let end = t0 + trimmed.len();
        return Split {
            keyword: (t0, end),
            flags: Vec::new(),
            rest: (end, end),
        };
    };
    let mut after = ws;
    while after < bytes.len() && is_ascii_blank(bytes[after]) {
        after += 1;
    }
    let tail = &trimmed[after..];
    let (rest_offset, flags) = extract_flags(tail, escape);
    let rest = tail[rest_offset..].trim();
    let rest_start = if rest.is_empty() {
        t0 + trimmed.len()
    } else {
        rest.as_ptr() as usize - line.as_ptr() as usize
    };
    let base = t0 + after;
    Split {
        keyword: (t0, t0 + ws),
        flags: flags
            .into_iter()
            .map(|w| Word {
                start: w.start + base,
                end: w.end + base,
                text: w.text,
            })
            .collect(),
        rest: (rest_start, rest_start + rest.len()),
    }
}

/// `extractBuilderFlags`: leading `--words`, and the offset where the rest begins.
fn extract_flags(line: &str, escape: u8) -> (usize, Vec<Word>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let b = line.as_bytes();
    let len = b.len();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut buf = String::new();
    let mut quote = 0u8;
    let mut blank_ok = false;
    let mut start = 0;
    let mut pos = 0;
    // A rest offset must be a character boundary: the byte-wise scan can stop inside a
    // multi-byte character whose continuation byte is 0x85 or 0xA0.
    let ceil = |mut i: usize| {
        while !line.is_char_boundary(i) {
            i += 1;
        }
        i
    };
    while pos <= len {
        if phase == Phase::Spaces {
            if pos == len {
                break;
            }
            let ch = b[pos];
            if is_space_byte(ch) {
                pos += 1;
                continue;
            }
            if ch != b'-' || pos + 1 == len || b[pos + 1] != b'-' {
                return (ceil(pos), words);
            }
            phase = Phase::Word;
            start = pos;
        }
        if pos == len {
            if buf != "--" && (blank_ok || !buf.is_empty()) {
                words.push(Word {
                    text: buf,
                    start,
                    end: pos,
                });
            }
            break;
        }
        let mut ch = b[pos];
        if phase == Phase::Word {
            if is_space_byte(ch) {
                phase = Phase::Spaces;
                if buf == "--" {
                    return (ceil(pos), words);
                }
                if blank_ok || !buf.is_empty() {
                    words.push(Word {
                        text: std::mem::take(&mut buf),
                        start,
                        end: pos,
                    });
                }
                buf.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == b'\'' || ch == b'"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                pos += 1;
                continue;
            }
            if ch == escape {
                if pos + 1 == len {
                    pos += 1;
                    continue;
                }
                pos += 1;
                ch = b[pos];
            }
            buf.push(char::from(ch));
            pos += 1;
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
            pos += 1;
            continue;
        }
        if ch == escape {
            if pos + 1 == len {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            ch = b[pos];
        }
        buf.push(char::from(ch));
        pos += 1;
    }
    (len, words)
}

/// `reWhitespace.Split(s, -1)` with offsets; `s` is trimmed and non-empty.
pub(crate) fn split_blanks(s: &str) -> Vec<Word> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        if is_ascii_blank(b[i]) {
            out.push(Word {
                text: s[start..i].to_owned(),
                start,
                end: i,
            });
            while i < b.len() && is_ascii_blank(b[i]) {
                i += 1;
            }
            start = i;
        } else {
            i += 1;
        }
    }
    out.push(Word {
        text: s[start..].to_owned(),
        start,
        end: s.len(),
    });
    out
}

/// `reWhitespace.Split(s, 2)`: the text before the first blank run and the text after it.
pub(crate) fn split_blanks_once(s: &str) -> Option<((usize, usize), (usize, usize))> {
    let b = s.as_bytes();
    let at = b.iter().position(|&c| is_ascii_blank(c))?;
    let mut after = at;
    while after < b.len() && is_ascii_blank(b[after]) {
        after += 1;
    }
    Some(((0, at), (after, s.len())))
}

/// `parseWords`: quote-aware words with quotes and escapes kept (ENV, LABEL, ARG).
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<Word> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut buf = String::new();
    let mut start = 0;
    let mut iter = rest.char_indices().peekable();
    loop {
        let Some((pos, ch)) = iter.next() else {
            if phase != Phase::Spaces && (blank_ok || !buf.is_empty()) {
                words.push(Word {
                    text: buf,
                    start,
                    end: rest.len(),
                });
            }
            break;
        };
        if phase == Phase::Spaces {
            if ch.is_whitespace() {
                continue;
            }
            phase = Phase::Word;
            start = pos;
        }
        let at_end = pos + ch.len_utf8() == rest.len();
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !buf.is_empty() {
                    words.push(Word {
                        text: std::mem::take(&mut buf),
                        start,
                        end: pos,
                    });
                }
                blank_ok = false;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if at_end {
                    continue;
                }
                buf.push(ch);
                if let Some((_, next)) = iter.next() {
                    buf.push(next);
                }
                continue;
            }
            buf.push(ch);
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if at_end {
                phase = Phase::Word;
                continue;
            }
            buf.push(ch);
            if let Some((_, next)) = iter.next() {
                buf.push(next);
            }
            continue;
        }
        buf.push(ch);
    }
    words
}

/// `parseHealthConfig`'s split: the first word (ended by a byte `unicode.IsSpace` accepts)
/// and the offset of the text after the following blanks.
pub(crate) fn split_health(rest: &str) -> (usize, usize) {
    let b = rest.as_bytes();
    let sep = b.iter().position(|&c| is_space_byte(c)).unwrap_or(b.len());
    let mut next = sep;
    while next < b.len() && is_space_byte(b[next]) {
        next += 1;
    }
    let ceil = |mut i: usize| {
        while !rest.is_char_boundary(i) {
            i += 1;
        }
        i
    };
    (ceil(sep), ceil(next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(words: &[Word]) -> Vec<&str> {
        words.iter().map(|w| w.text.as_str()).collect()
    }

    #[test]
    fn flags_stop_at_first_plain_word_and_bare_dashes() {
        let line = "COPY --from=a --chown=\"u g\" -- --x /b";
        let s = split_command(line, b'\\');
        assert_eq!(&line[s.keyword.0..s.keyword.1], "COPY");
        assert_eq!(texts(&s.flags), vec!["--from=a", "--chown=u g"]);
        assert_eq!(&line[s.rest.0..s.rest.1], "--x /b");
        let s = split_command("CMD --doit -- [ ]", b'\\');
        assert_eq!(texts(&s.flags), vec!["--doit"]);
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        let w = parse_words(r#"abc="123 456" def x\ y "" z\"#, '\\');
        assert_eq!(
            texts(&w),
            vec![r#"abc="123 456""#, "def", r"x\ y", r#""""#, "z"]
        );
    }

    #[test]
    fn blank_split() {
        assert_eq!(texts(&split_blanks("a \t b\x0bc")), vec!["a", "b", "c"]);
        assert_eq!(split_blanks_once("key  v a"), Some(((0, 3), (5, 8))));
    }
}
