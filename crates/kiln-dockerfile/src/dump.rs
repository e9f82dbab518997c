//! BuildKit's AST dump (`Node.Dump`), the format of its parser `result` golden files.
//!
//! One `(keyword ["--flags"] "arg" ...)` line per instruction, strings quoted with Go's
//! `strconv.Quote` rules, ONBUILD's trigger nested in parentheses.

use std::fmt::Write as _;

use crate::syntax::{Node, SyntaxTree, go_lower};

impl SyntaxTree {
    /// The tree in BuildKit's `result` format, without the final newline.
    pub fn dump_buildkit_ast(&self) -> String {
        dump_nodes(&self.nodes)
    }
}

/// Dumps `tree` in BuildKit's `result` format (one line per instruction, no final newline).
pub fn dump_buildkit_ast(tree: &SyntaxTree) -> String {
    tree.dump_buildkit_ast()
}

pub(crate) fn dump_nodes<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> String {
    let mut out = String::new();
    for (i, node) in nodes.into_iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push('(');
        out.push_str(&dump_node(node));
        out.push(')');
    }
    out
}

fn dump_node(node: &Node) -> String {
    let mut s = go_lower(&node.keyword);
    if !node.flags.is_empty() {
        s.push_str(" [");
        for (i, flag) in node.flags.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            go_quote_into(&mut s, &flag.text);
        }
        s.push(']');
    }
    if let Some(trigger) = &node.trigger {
        s.push_str(" (");
        s.push_str(&dump_node(trigger));
        s.push(')');
    }
    for arg in &node.args {
        s.push(' ');
        go_quote_into(&mut s, &arg.value);
    }
    // Node.Dump ends with strings.TrimSpace.
    s.trim().to_owned()
}

/// Go's `strconv.Quote`.
///
/// ```
/// assert_eq!(kiln_dockerfile::go_quote("a\"b\\ ♥ \u{0} \u{a0}\n"), r#""a\"b\\ ♥ \x00 \u00a0\n""#);
/// ```
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    go_quote_into(&mut out, s);
    out
}

fn go_quote_into(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if c == ' ' || (c.is_ascii() && !c.is_ascii_control()) => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
}

/// Go's `strconv.IsPrint` for non-ASCII characters: letters, marks, numbers, punctuation
/// and symbols (categories L, M, N, P, S); every space but U+0020, controls, format
/// characters, private use, surrogates and unassigned code points are not printable.
fn is_go_printable(c: char) -> bool {
    let cp = c as u32;
    // Separators (Zs, Zl, Zp) other than U+0020.
    if matches!(
        cp,
        0xa0 | 0x1680 | 0x2000..=0x200a | 0x2028 | 0x2029 | 0x202f | 0x205f | 0x3000
    ) {
        return false;
    }
    // C1 controls and soft hyphen (Cf).
    if (0x80..=0xa0).contains(&cp) || cp == 0xad {
        return false;
    }
    // Common format characters (Cf).
    if matches!(
        cp,
        0x600..=0x605
            | 0x61c
            | 0x6dd
            | 0x70f
            | 0x890..=0x891
            | 0x8e2
            | 0x180e
            | 0x200b..=0x200f
            | 0x202a..=0x202e
            | 0x2060..=0x2064
            | 0x2066..=0x206f
            | 0xfeff
            | 0xfff9..=0xfffb
            | 0x110bd
            | 0x110cd
            | 0x13430..=0x1343f
            | 0x1bca0..=0x1bca3
            | 0x1d173..=0x1d17a
            | 0xe0001
            | 0xe0020..=0xe007f
    ) {
        return false;
    }
    // Private use, noncharacters and unassigned planes.
    if (0xe000..=0xf8ff).contains(&cp)
        || (0xf_0000..=0x10_ffff).contains(&cp)
        || (0xfdd0..=0xfdef).contains(&cp)
        || cp & 0xfffe == 0xfffe
        || (0x2fe0..=0x2fef).contains(&cp)
        || (0x3_1350..=0xd_ffff).contains(&cp) && !(0xe_0100..=0xe_01ef).contains(&cp)
    {
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote(""), "\"\"");
        assert_eq!(go_quote("\u{7f}\u{1b}\u{7}\u{b}"), r#""\x7f\x1b\a\v""#);
        assert_eq!(go_quote("☃♥é漢"), "\"☃♥é漢\"");
        assert_eq!(
            go_quote("\u{200b}\u{feff}\u{e000}"),
            r#""\u200b\ufeff\ue000""#
        );
        assert_eq!(go_quote("\u{f0000}"), r#""\U000f0000""#);
    }
}
