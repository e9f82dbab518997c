//! The JSON (exec) form of RUN, CMD, ENTRYPOINT, SHELL, ADD, COPY and VOLUME.
//!
//! Mirrors BuildKit's `parseJSON`: the text must be a valid JSON document (Go's
//! `encoding/json` grammar, nesting limit and number range) holding an array. An array of
//! strings is the exec form; a valid array with any other element is an error; anything
//! else is not JSON and the instruction falls back to its shell form.

/// Result of reading an instruction's arguments as a JSON array.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum JsonArray {
    /// Not a JSON array (invalid JSON, or not starting with `[`): use the shell form.
    NotJson,
    /// A valid JSON array with an element that is not a string: an error in BuildKit.
    NonString,
    /// The decoded strings with the byte range of each string token in the input.
    Strings(Vec<(String, usize, usize)>),
}

/// Go's `encoding/json` maximum nesting depth.
const MAX_DEPTH: usize = 10_000;

/// Parses `text` (already trimmed of leading whitespace by the caller) as a JSON array.
pub(crate) fn parse_json_array(text: &str) -> JsonArray {
    let bytes = text.as_bytes();
    if bytes.first() != Some(&b'[') {
        return JsonArray::NotJson;
    }
    let mut p = Parser { bytes, pos: 1 };
    let mut items = Vec::new();
    let mut all_strings = true;
    p.skip_ws();
    if p.peek() == Some(b']') {
        p.pos += 1;
    } else {
        loop {
            p.skip_ws();
            let start = p.pos;
            if p.peek() == Some(b'"') {
                let Some(s) = p.string() else {
                    return JsonArray::NotJson;
                };
                items.push((s, start, p.pos));
            } else {
                all_strings = false;
                if !p.skip_value(1) {
                    return JsonArray::NotJson;
                }
            }
            p.skip_ws();
            match p.next() {
                Some(b',') => {}
                Some(b']') => break,
                _ => return JsonArray::NotJson,
            }
        }
    }
    p.skip_ws();
    if p.pos != bytes.len() {
        return JsonArray::NotJson;
    }
    if all_strings {
        JsonArray::Strings(items)
    } else {
        JsonArray::NonString
    }
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.bytes.get(self.pos..self.pos + 4)?;
        let mut v = 0u32;
        for &d in digits {
            v = v * 16 + char::from(d).to_digit(16)?;
        }
        self.pos += 4;
        Some(v)
    }

    /// Decodes a string token (cursor on the opening quote) like Go's `unquote`: lone
    /// surrogates become U+FFFD.
    fn string(&mut self) -> Option<String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            // The input is a &str and we stop only on ASCII bytes, so this is a boundary.
            out.push_str(std::str::from_utf8(&self.bytes[start..self.pos]).ok()?);
            match self.next()? {
                b'"' => return Some(out),
                b'\\' => match self.next()? {
                    b'"' => out.push('"'),
                    b'\\' => out.push('\\'),
                    b'/' => out.push('/'),
                    b'b' => out.push('\u{8}'),
                    b'f' => out.push('\u{c}'),
                    b'n' => out.push('\n'),
                    b'r' => out.push('\r'),
                    b't' => out.push('\t'),
                    b'u' => {
                        let r = self.hex4()?;
                        if (0xD800..0xE000).contains(&r) {
                            let save = self.pos;
                            let low = if self.bytes.get(self.pos..self.pos + 2) == Some(b"\\u") {
                                self.pos += 2;
                                self.hex4()
                            } else {
                                None
                            };
                            match low {
                                Some(lo)
                                    if (0xD800..0xDC00).contains(&r)
                                        && (0xDC00..0xE000).contains(&lo) =>
                                {
                                    let c = 0x10000 + ((r - 0xD800) << 10) + (lo - 0xDC00);
                                    out.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
                                }
                                _ => {
                                    self.pos = save;
                                    out.push('\u{FFFD}');
                                }
                            }
                        } else {
                            out.push(char::from_u32(r).unwrap_or('\u{FFFD}'));
                        }
                    }
                    _ => return None,
                },
                _ => return None,
            }
        }
    }

    /// Skips one JSON value of any kind. Returns false on a syntax error, on nesting deeper
    /// than Go allows, or on a number out of float64 range (Go's decoder fails there too).
    fn skip_value(&mut self, depth: usize) -> bool {
        // Iterative: a stack of open containers, `true` for objects.
        let mut stack: Vec<bool> = Vec::new();
        loop {
            self.skip_ws();
            // Parse one scalar or open a container.
            match self.peek() {
                Some(b'[') => {
                    if depth + stack.len() + 1 > MAX_DEPTH {
                        return false;
                    }
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                    } else {
                        stack.push(false);
                        continue;
                    }
                }
                Some(b'{') => {
                    if depth + stack.len() + 1 > MAX_DEPTH {
                        return false;
                    }
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                    } else {
                        stack.push(true);
                        if !self.object_key() {
                            return false;
                        }
                        continue;
                    }
                }
                Some(b'"') => {
                    if self.string().is_none() {
                        return false;
                    }
                }
                Some(b't') => {
                    if !self.literal(b"true") {
                        return false;
                    }
                }
                Some(b'f') => {
                    if !self.literal(b"false") {
                        return false;
                    }
                }
                Some(b'n') => {
                    if !self.literal(b"null") {
                        return false;
                    }
                }
                Some(b'-' | b'0'..=b'9') => {
                    if !self.number() {
                        return false;
                    }
                }
                _ => return false,
            }
            // After a complete value: close containers or move to the next element.
            loop {
                let Some(&is_object) = stack.last() else {
                    return true;
                };
                self.skip_ws();
                match self.next() {
                    Some(b',') => {
                        if is_object && !self.object_key() {
                            return false;
                        }
                        break;
                    }
                    Some(b']') if !is_object => {
                        stack.pop();
                    }
                    Some(b'}') if is_object => {
                        stack.pop();
                    }
                    _ => return false,
                }
            }
        }
    }

    /// Reads `"key" :` inside an object.
    fn object_key(&mut self) -> bool {
        self.skip_ws();
        if self.peek() != Some(b'"') || self.string().is_none() {
            return false;
        }
        self.skip_ws();
        self.next() == Some(b':')
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        if self.bytes.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> bool {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return false,
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return false;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return false;
            }
        }
        let text = std::str::from_utf8(&self.bytes[start..self.pos]).unwrap_or("0");
        text.parse::<f64>().is_ok_and(f64::is_finite)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &str) -> Vec<String> {
        match parse_json_array(s) {
            JsonArray::Strings(v) => v.into_iter().map(|(s, _, _)| s).collect(),
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn decodes_go_escapes() {
        assert_eq!(
            strings(r#"["\" \\ \/ \b \f \n \r \t \u0000"]"#),
            vec!["\" \\ / \u{8} \u{c} \n \r \t \0"]
        );
        assert_eq!(
            strings(r#"["\ud83d\ude00", "\ud800x"]"#),
            vec!["😀", "\u{FFFD}x"]
        );
        assert_eq!(strings("[ ]"), Vec::<String>::new());
    }

    #[test]
    fn classifies_like_buildkit() {
        assert_eq!(
            parse_json_array(r#"[ "echo", [ "nested json" ] ]"#),
            JsonArray::NonString
        );
        assert_eq!(
            parse_json_array(r#"["a", 1, null, {"k": [1]}]"#),
            JsonArray::NonString
        );
        assert_eq!(parse_json_array("['echo']"), JsonArray::NotJson);
        assert_eq!(parse_json_array(r#"["a""#), JsonArray::NotJson);
        assert_eq!(parse_json_array(r#"["a"] x"#), JsonArray::NotJson);
        assert_eq!(parse_json_array(r#"["a", 1e400]"#), JsonArray::NotJson);
        assert_eq!(parse_json_array(r#"["a", 01]"#), JsonArray::NotJson);
        assert_eq!(parse_json_array("[\"a\tb\"]"), JsonArray::NotJson);
        let deep = format!("[{}{}]", "[".repeat(20_000), "]".repeat(20_000));
        assert_eq!(parse_json_array(&deep), JsonArray::NotJson);
    }
}
