//! RFC 822-style stanzas, the shape of dpkg's status file (deb822) and of Python's
//! `METADATA`/`PKG-INFO` headers: `Field: value` lines, a line starting with a space or tab
//! continuing the previous field, a blank line ending the stanza.

/// One stanza: its fields in order, names as written, continuation lines joined with `\n`
/// (their leading whitespace kept, as deb822 keeps it).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Stanza {
    /// `(name, value)` pairs.
    pub(super) fields: Vec<(String, String)>,
}

impl Stanza {
    /// The first value of `name` (matched ASCII-case-insensitively, as both formats say),
    /// trimmed; `None` when absent or empty.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }
}

/// The stanzas of `text`; lines that are neither a field nor a continuation are skipped.
pub(super) fn parse_stanzas(text: &str) -> Vec<Stanza> {
    let mut stanzas = Vec::new();
    let mut current = Stanza::default();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.fields.is_empty() {
                stanzas.push(std::mem::take(&mut current));
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.fields.last_mut() {
                value.push('\n');
                value.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            current
                .fields
                .push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    if !current.fields.is_empty() {
        stanzas.push(current);
    }
    stanzas
}

/// The header stanza of a Python metadata file: the fields before the first blank line (the
/// body after it is the long description).
pub(super) fn parse_header(text: &str) -> Stanza {
    let end = text
        .find("\n\n")
        .or_else(|| text.find("\r\n\r\n"))
        .unwrap_or(text.len());
    parse_stanzas(&text[..end])
        .into_iter()
        .next()
        .unwrap_or_default()
}
