//! File-wide rules (`validateStageNames`, `validateCommandCasing`,
//! `validateBaseImagesWithDefaultArgs`) and the `FROM` argument rule.

use kiln_dockerfile::{Command, Instruction, ShellLexer, go_quote};
use kiln_oci::ImageRef;

use super::rule::{
    CONSISTENT_INSTRUCTION_CASING, DUPLICATE_STAGE_NAME, INVALID_DEFAULT_ARG_IN_FROM,
    RESERVED_STAGE_NAME, UNDEFINED_ARG_IN_FROM,
};
use super::walk::stage_name;
use super::{CheckConfig, Lines, Linter, OrderedEnv, RESERVED_STAGE_NAMES, lines_of, suggest};

/// BuildKit `validateStageNames`.
pub(super) fn validate_stage_names(
    instructions: &[Instruction],
    stages: &[(usize, &[Instruction])],
    config: &CheckConfig,
    linter: &mut Linter,
) {
    let mut seen: Vec<String> = Vec::new();
    for (from_index, _) in stages {
        let from = &instructions[*from_index];
        let Some(name) = stage_name(from) else {
            continue;
        };
        let lines = lines_of(&from.syntax);
        if RESERVED_STAGE_NAMES.contains(&name.as_str()) {
            linter.run(
                config,
                &RESERVED_STAGE_NAME,
                format!(
                    "Stage name should not use the same name as reserved stage {}",
                    go_quote(&name)
                ),
                lines,
            );
        }
        if seen.contains(&name) {
            linter.run(
                config,
                &DUPLICATE_STAGE_NAME,
                format!(
                    "Duplicate stage name {}, stage names should be unique",
                    go_quote(&name)
                ),
                lines,
            );
        }
        seen.push(name);
    }
}

/// BuildKit `validateCommandCasing`: the `FROM`s and the stages' instructions (not the global
/// `ARG`s) against the majority casing.
pub(super) fn validate_command_casing(
    instructions: &[Instruction],
    stages: &[(usize, &[Instruction])],
    config: &CheckConfig,
    linter: &mut Linter,
) {
    let all = || {
        stages.iter().flat_map(|(from_index, commands)| {
            std::iter::once(&instructions[*from_index]).chain(commands.iter())
        })
    };
    let (mut lower, mut upper) = (0, 0);
    for instruction in all() {
        let keyword = &instruction.syntax.keyword;
        if *keyword == keyword.to_lowercase() {
            lower += 1;
        } else if *keyword == keyword.to_uppercase() {
            upper += 1;
        }
    }
    let is_majority_lower = lower > upper;
    for instruction in all() {
        let keyword = &instruction.syntax.keyword;
        let casing = if is_majority_lower && keyword.to_lowercase() != *keyword {
            "lowercase"
        } else if !is_majority_lower && keyword.to_uppercase() != *keyword {
            "uppercase"
        } else {
            continue;
        };
        linter.run(
            config,
            &CONSISTENT_INSTRUCTION_CASING,
            format!("Command '{keyword}' should match the case of the command majority ({casing})"),
            lines_of(&instruction.syntax),
        );
    }
}

/// BuildKit `validateBaseImagesWithDefaultArgs`: each base name, expanded with the global
/// `ARG` defaults and no build args, must be an image reference.
pub(super) fn validate_base_images_with_default_args(
    instructions: &[Instruction],
    stages: &[(usize, &[Instruction])],
    meta_args: &[Instruction],
    lexer: ShellLexer,
    defaults: &OrderedEnv,
    config: &CheckConfig,
    linter: &mut Linter,
) {
    let mut args = defaults.clone();
    for instruction in meta_args {
        if let Command::Arg(decls) = &instruction.command {
            for decl in decls {
                if let Some(default) = &decl.default {
                    let Ok(value) = lexer.process_word(default, &args) else {
                        return;
                    };
                    args.set(&decl.name, &value);
                }
            }
        }
    }
    for (from_index, _) in stages {
        let from = &instructions[*from_index];
        let Command::From(f) = &from.command else {
            continue;
        };
        let Ok(expansion) = lexer.process_word_with_matches(&f.image, &args) else {
            return;
        };
        if expansion.value.parse::<ImageRef>().is_err() {
            linter.run(
                config,
                &INVALID_DEFAULT_ARG_IN_FROM,
                format!(
                    "Default value for ARG {} results in empty or invalid base image name",
                    f.image
                ),
                lines_of(&from.syntax),
            );
        }
    }
}

/// BuildKit `reportUnusedFromArgs`.
pub(super) fn report_undefined_from_args(
    unmatched: &std::collections::BTreeSet<String>,
    keys: &[String],
    config: &CheckConfig,
    lines: Lines,
    linter: &mut Linter,
) {
    for arg in unmatched {
        if keys.contains(arg) {
            continue;
        }
        let mut detail = format!("FROM argument '{arg}' is not declared");
        if let Some(s) = suggest::search(arg, keys.iter().map(String::as_str), true) {
            detail = format!("{detail} (did you mean {s}?)");
        }
        linter.run(config, &UNDEFINED_ARG_IN_FROM, detail, lines);
    }
}
