//! Rules BuildKit runs while parsing each instruction (`instructions.ParseInstructionWithLinter`)
//! and the per-instruction `# check=` comments.

use kiln_dockerfile::Node;

use super::config::parse_comment_directive;
use super::rule::{
    FROM_AS_CASING, INVALID_DEFINITION_DESCRIPTION, MAINTAINER_DEPRECATED, STAGE_NAME_CASING,
};
use super::{CheckConfig, Lines, Linter, lines_of};

/// The line BuildKit gives an empty-continuation warning: the last line of the instruction
/// holding it.
pub(super) fn empty_continuation_line(nodes: &[Node], offset: usize) -> u32 {
    nodes
        .iter()
        .find(|n| n.span.start <= offset && offset <= n.span.end)
        .map_or(0, |n| n.end_line)
}

/// The options for one instruction: the file's, plus the first `# check=` comment above it.
pub(super) fn comment_config(global: &CheckConfig, comments: &[String]) -> CheckConfig {
    for comment in comments {
        match parse_comment_directive(comment) {
            Some(Ok(config)) => return global.merged(&config),
            Some(Err(())) => return global.clone(),
            None => {}
        }
    }
    global.clone()
}

/// Rules BuildKit runs while parsing each instruction.
pub(super) fn lint_parsed_node(
    node: &Node,
    comments: &[String],
    config: &CheckConfig,
    linter: &mut Linter,
) {
    let lines = lines_of(node);
    let args: Vec<&str> = node.arg_values().collect();
    match node.name().as_str() {
        "maintainer" => linter.run(
            config,
            &MAINTAINER_DEPRECATED,
            "Maintainer instruction is deprecated in favor of using label".to_owned(),
            lines,
        ),
        "from" => {
            if args.len() == 3 && args[2] != args[2].to_lowercase() {
                linter.run(
                    config,
                    &STAGE_NAME_CASING,
                    format!("Stage name '{}' should be lowercase", args[2]),
                    lines,
                );
            }
            if args.len() >= 3 {
                let keyword = node.keyword.as_str();
                let mismatch = if keyword == keyword.to_lowercase() {
                    args[1] != args[1].to_lowercase()
                } else if keyword == keyword.to_uppercase() {
                    args[1] != args[1].to_uppercase()
                } else {
                    false
                };
                if mismatch {
                    linter.run(
                        config,
                        &FROM_AS_CASING,
                        format!(
                            "'{}' and '{keyword}' keywords' casing do not match",
                            args[1]
                        ),
                        lines,
                    );
                }
            }
            if args.len() == 3 && args[1].eq_ignore_ascii_case("as") {
                let name = args[2].to_lowercase();
                validate_definition_description("FROM", &[name], comments, config, lines, linter);
            }
        }
        "arg" => {
            let keys: Vec<String> = args
                .iter()
                .map(|a| a.split_once('=').map_or(*a, |(k, _)| k).to_owned())
                .collect();
            validate_definition_description("ARG", &keys, comments, config, lines, linter);
        }
        _ => {}
    }
}

/// BuildKit `validateDefinitionDescription` (experimental `InvalidDefinitionDescription`).
fn validate_definition_description(
    instruction: &str,
    keys: &[String],
    comments: &[String],
    config: &CheckConfig,
    lines: Lines,
    linter: &mut Linter,
) {
    let (Some(last), Some(first_key)) = (comments.last(), keys.first()) else {
        return;
    };
    let word = last.split(' ').next().unwrap_or_default();
    if keys.iter().any(|k| k == word) {
        return;
    }
    let example = if keys.len() > 1 {
        "<arg_key>"
    } else {
        first_key.as_str()
    };
    linter.run(
        config,
        &INVALID_DEFINITION_DESCRIPTION,
        format!("Comment for {instruction} should follow the format: `# {example} <description>`"),
        lines,
    );
}
