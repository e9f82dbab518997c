//! The comments above each instruction (BuildKit `parser.Node.PrevComment`), which carry
//! per-instruction `# check=` options and the descriptions `--call=outline` and
//! `--call=targets` show (`instructions.getDocComment`).

use crate::syntax::SyntaxTree;

/// Each node's comment lines, in order (BuildKit `Node.PrevComment`): the comments since the
/// previous instruction, an empty `#` clearing them, parser directives left out, each line
/// without its first byte (`#` or a leading blank) and trimmed.
///
/// ```
/// let src = "# syntax=docker/dockerfile:1\n# the base\nFROM alpine AS base\n#\n# VERSION the release\nARG VERSION=1\n";
/// let tree = kiln_dockerfile::parse_syntax(src).unwrap();
/// let comments = kiln_dockerfile::node_comments(src, &tree);
/// assert_eq!(comments, [vec!["the base".to_owned()], vec!["VERSION the release".to_owned()]]);
/// ```
pub fn node_comments(src: &str, tree: &SyntaxTree) -> Vec<Vec<String>> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let lines: Vec<&str> = src.split('\n').collect();
    let directive_lines: Vec<u32> = tree.directives.iter().map(|d| d.span.line).collect();
    let mut previous_end = 0;
    let mut out = Vec::with_capacity(tree.nodes.len());
    for node in &tree.nodes {
        let mut comments: Vec<String> = Vec::new();
        for number in previous_end + 1..node.start_line {
            let Some(line) = lines.get(number as usize - 1) else {
                continue;
            };
            if directive_lines.contains(&number) {
                continue;
            }
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim_start_matches([' ', '\t']).starts_with('#') {
                // BuildKit drops the line's first byte, `#` or a leading blank.
                let text = line[1..].trim_matches(char::is_whitespace);
                if text.is_empty() {
                    comments.clear();
                } else {
                    comments.push(text.to_owned());
                }
            }
        }
        out.push(comments);
        previous_end = node.end_line;
    }
    out
}

/// The description of `name` among an instruction's comments (BuildKit `getDocComment`):
/// the rest of the first comment that starts with `name` and a space; empty when none does
/// or `name` is empty.
///
/// ```
/// let comments = ["VERSION the release".to_owned()];
/// assert_eq!(kiln_dockerfile::doc_comment(&comments, "VERSION"), "the release");
/// assert_eq!(kiln_dockerfile::doc_comment(&comments, "VERS"), "");
/// ```
pub fn doc_comment<'a>(comments: &'a [String], name: &str) -> &'a str {
    if name.is_empty() {
        return "";
    }
    comments
        .iter()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_default()
}
