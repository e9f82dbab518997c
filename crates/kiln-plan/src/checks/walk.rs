//! The walk over the Dockerfile: parse, file-wide rules, every stage's `FROM`, then the
//! stages' instructions (BuildKit `toDispatchState`).

use kiln_dockerfile::{Command, Instruction, ParseErrorKind, ShellLexer, go_quote};
use kiln_oci::Platform;

use super::dispatch::Dispatcher;
use super::file_rules::{
    report_undefined_from_args, validate_base_images_with_default_args, validate_command_casing,
    validate_stage_names,
};
use super::parse_rules::{comment_config, empty_continuation_line, lint_parsed_node};
use super::rule::{
    FROM_PLATFORM_FLAG_CONST_DISALLOWED, INVALID_BASE_IMAGE_PLATFORM, NO_EMPTY_CONTINUATION,
    REDUNDANT_TARGET_PLATFORM,
};
use super::{
    CHECK_BUILD_ARG, CheckConfig, CheckError, CheckInputs, Env, Lines, Linter, OrderedEnv,
    StageState, dockerfile_error, lines_of, suggest,
};
use crate::options::PlanOptions;
use crate::state::DEFAULT_PATH;

pub(super) fn run(
    src: &str,
    options: &PlanOptions,
    inputs: &CheckInputs,
    linter: &mut Linter,
) -> Result<(), CheckError> {
    if src.is_empty() {
        return Err(dockerfile_error("the Dockerfile cannot be empty", None));
    }
    let tree = kiln_dockerfile::parse_syntax(src).map_err(|e| {
        dockerfile_error(
            format!("dockerfile parse error on line {}: {}", e.span.line, e.kind),
            Some(e.span.line),
        )
    })?;
    let config_text = match options.build_args.get(CHECK_BUILD_ARG) {
        Some(value) => value.clone(),
        None => tree
            .directives
            .iter()
            .find(|d| d.name == "check")
            .map(|d| d.value.split(' ').next().unwrap_or_default().to_owned())
            .unwrap_or_default(),
    };
    linter.config = CheckConfig::parse(&config_text).map_err(CheckError::Config)?;
    let global = linter.config.clone();

    for warning in &tree.warnings {
        if warning.message.starts_with("Empty continuation line") {
            let line = empty_continuation_line(&tree.nodes, warning.span.start);
            linter.run(
                &global,
                &NO_EMPTY_CONTINUATION,
                "Empty continuation line".to_owned(),
                Lines(line, line),
            );
        }
    }

    let comments = kiln_dockerfile::node_comments(src, &tree);
    let node_configs: Vec<CheckConfig> = comments
        .iter()
        .map(|c| comment_config(&global, c))
        .collect();

    // The typed parse fails at the first bad instruction; BuildKit has linted the ones before.
    let lowered = kiln_dockerfile::lower(tree.clone());
    let linted_until = match &lowered {
        Ok(_) => u32::MAX,
        Err(e) => e.span.line,
    };
    for (index, node) in tree.nodes.iter().enumerate() {
        if node.start_line >= linted_until {
            break;
        }
        lint_parsed_node(node, &comments[index], &node_configs[index], linter);
    }
    let dockerfile = lowered.map_err(|e| {
        let message = match &e.kind {
            ParseErrorKind::UnknownInstruction { name } => {
                let mut message = format!("unknown instruction: {name}");
                if let Some(s) = suggest::search(name, INSTRUCTION_NAMES, false) {
                    message = format!("{message} (did you mean {s}?)");
                }
                message
            }
            other => other.to_string(),
        };
        dockerfile_error(
            format!("dockerfile parse error on line {}: {message}", e.span.line),
            Some(e.span.line),
        )
    })?;

    let first_from = dockerfile
        .instructions
        .iter()
        .position(|i| matches!(i.command, Command::From(_)));
    let Some(first_from) = first_from else {
        return Err(dockerfile_error(
            "dockerfile contains no stages to build",
            None,
        ));
    };
    let meta_args = &dockerfile.instructions[..first_from];
    let mut stages: Vec<(usize, &[Instruction])> = Vec::new();
    let mut start = first_from;
    for (index, instruction) in dockerfile
        .instructions
        .iter()
        .enumerate()
        .skip(first_from + 1)
    {
        if matches!(instruction.command, Command::From(_)) {
            stages.push((start, &dockerfile.instructions[start + 1..index]));
            start = index;
        }
    }
    stages.push((start, &dockerfile.instructions[start + 1..]));
    let config_of = |instruction: &Instruction| -> CheckConfig {
        tree.nodes
            .iter()
            .position(|n| n.start_line == instruction.syntax.start_line)
            .map_or_else(|| global.clone(), |i| node_configs[i].clone())
    };

    // File-wide rules, with the file's options only.
    validate_stage_names(&dockerfile.instructions, &stages, &global, linter);
    validate_command_casing(&dockerfile.instructions, &stages, &global, linter);

    let lexer = ShellLexer::new(dockerfile.escape);
    let last_name = stage_name(&dockerfile.instructions[stages[stages.len() - 1].0]);
    let defaults = default_args(options, last_name.as_deref().unwrap_or("default"));
    validate_base_images_with_default_args(
        &dockerfile.instructions,
        &stages,
        meta_args,
        lexer,
        &defaults,
        &global,
        linter,
    );

    // Global args with the build args applied (BuildKit `buildMetaArgs`).
    let mut global_args = defaults.clone();
    let mut declared_meta: Vec<String> = Vec::new();
    for instruction in meta_args {
        if let Command::Arg(decls) = &instruction.command {
            for decl in decls {
                declared_meta.push(decl.name.clone());
                if let Some(value) = options.build_args.get(&decl.name) {
                    global_args.set(&decl.name, value);
                } else if let Some(default) = &decl.default {
                    let expanded = lexer.process_word(default, &global_args).map_err(|e| {
                        dockerfile_error(e.to_string(), Some(instruction.syntax.start_line))
                    })?;
                    global_args.set(&decl.name, &expanded);
                }
            }
        }
    }
    let mut from_keys: Vec<String> = declared_meta.clone();
    for key in global_args.keys() {
        if !from_keys.iter().any(|k| k == key) {
            from_keys.push(key.to_owned());
        }
    }
    from_keys.sort();

    // FROM of every stage (BuildKit `buildDispatchStates`).
    let mut bases: Vec<(String, Option<Platform>)> = Vec::new();
    for (from_index, _) in &stages {
        let from_instruction = &dockerfile.instructions[*from_index];
        let Command::From(from) = &from_instruction.command else {
            unreachable!("stages start at FROM");
        };
        let node_config = config_of(from_instruction);
        let lines = lines_of(&from_instruction.syntax);
        let expansion = lexer.process_word_with_matches(&from.image, &global_args);
        if let Ok(expansion) = &expansion {
            report_undefined_from_args(
                &expansion.unmatched,
                &from_keys,
                &node_config,
                lines,
                linter,
            );
        }
        let expansion = expansion.map_err(|e| dockerfile_error(e.to_string(), Some(lines.0)))?;
        if expansion.value.is_empty() {
            return Err(dockerfile_error(
                format!("base name ({}) should not be blank", from.image),
                Some(lines.0),
            ));
        }
        let mut platform = None;
        if let Some(raw) = &from.platform {
            let matched = lexer.process_word_with_matches(raw, &global_args);
            if let Ok(m) = &matched {
                report_undefined_from_args(&m.unmatched, &from_keys, &node_config, lines, linter);
                if m.matched.len() == 1
                    && m.unmatched.is_empty()
                    && m.matched.contains("TARGETPLATFORM")
                    && global_args.get("TARGETPLATFORM") == Some(m.value.as_str())
                {
                    linter.run(
                        &node_config,
                        &REDUNDANT_TARGET_PLATFORM,
                        format!(
                            "Setting platform to predefined {raw} in FROM is redundant as this is the default behavior"
                        ),
                        lines,
                    );
                }
                if let (true, Ok(p)) = (
                    m.matched.is_empty() && m.unmatched.is_empty(),
                    m.value.parse::<Platform>(),
                ) {
                    {
                        let name = from.stage_name.clone().unwrap_or_default();
                        if !name.contains(&p.os) && !name.contains(&p.architecture) {
                            linter.run(
                                &node_config,
                                &FROM_PLATFORM_FLAG_CONST_DISALLOWED,
                                format!(
                                    "FROM --platform flag should not use constant value {}",
                                    go_quote(&m.value)
                                ),
                                lines,
                            );
                        }
                    }
                }
            }
            let m = matched.map_err(|e| {
                dockerfile_error(
                    format!("failed to process arguments for platform: {e}"),
                    Some(lines.0),
                )
            })?;
            let suggestion = m
                .unmatched
                .iter()
                .find_map(|k| suggest::search(k, global_args.keys(), true))
                .map(|s| format!(" (did you mean {s}?)"))
                .unwrap_or_default();
            if m.value.is_empty() {
                return Err(dockerfile_error(
                    format!("empty platform value from expression {raw}{suggestion}"),
                    Some(lines.0),
                ));
            }
            match m.value.parse::<Platform>() {
                Ok(p) => platform = Some(p),
                Err(e) => {
                    let reason =
                        platform_component_error(&m.value).unwrap_or_else(|| e.to_string());
                    return Err(dockerfile_error(
                        format!("failed to parse platform {raw}: {reason}{suggestion}"),
                        Some(lines.0),
                    ));
                }
            }
        }
        bases.push((expansion.value, platform));
    }

    // Dispatch the stages in order: every stage for the lint subrequest without a target,
    // else those the target needs (BuildKit `AllStages`, `resolveReachableStages`).
    let reachable = reachable_stages(&dockerfile.instructions, &stages, &bases, options, inputs)?;
    let mut states: Vec<StageState> = Vec::new();
    for (((from_index, commands), (base, platform)), is_reachable) in
        stages.iter().zip(bases).zip(reachable)
    {
        let from_instruction = &dockerfile.instructions[*from_index];
        if !is_reachable {
            states.push(StageState {
                name: stage_name(from_instruction),
                ..StageState::default()
            });
            continue;
        }
        let name = stage_name(from_instruction);
        let lowered_base = base.to_lowercase();
        let parent = if options.named_contexts.contains(&base) {
            None
        } else {
            states
                .iter()
                .rev()
                .find(|s| s.name.as_deref() == Some(lowered_base.as_str()))
        };
        let mut state = if let Some(parent) = parent {
            StageState {
                name: name.clone(),
                ..parent.clone()
            }
        } else {
            let image = inputs.base_images.get(&base);
            let mut env = OrderedEnv::default();
            match image {
                Some(image) => {
                    for entry in &image.env {
                        let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
                        env.set(k, v);
                    }
                }
                None => env.set("PATH", DEFAULT_PATH),
            }
            let is_env_known = image.is_some() || base == "scratch";
            if let (Some(image), false) = (image, base == "scratch") {
                let expected = platform.clone().unwrap_or_else(|| options.platform.clone());
                if let Some(actual) = image.platform.as_ref().filter(|actual| {
                    actual.os != expected.os || actual.architecture != expected.architecture
                }) {
                    {
                        linter.run(
                            &global,
                            &INVALID_BASE_IMAGE_PLATFORM,
                            format!(
                                "Base image {base} was pulled with platform {}, expected {} for current build",
                                go_quote(&actual.to_string()),
                                go_quote(&expected.to_string())
                            ),
                            lines_of(&from_instruction.syntax),
                        );
                    }
                }
            }
            StageState {
                name: name.clone(),
                env,
                is_env_known,
                ..StageState::default()
            }
        };
        let mut dispatcher = Dispatcher {
            lexer: &lexer,
            options,
            inputs,
            global_args: &global_args,
            linter: &mut *linter,
            trackers: [None, None, None],
        };
        for instruction in *commands {
            let config = config_of(instruction);
            dispatcher.dispatch(&mut state, instruction, &config);
        }
        states.push(state);
    }
    Ok(())
}

/// Which stages are dispatched: all of them when no target is given and `inputs` does not
/// ask for a build's view, else the target (or the last stage) and what it needs through
/// `FROM <stage>`, `COPY --from` and `RUN --mount=from=` (BuildKit `allReachableStages`).
fn reachable_stages(
    instructions: &[Instruction],
    stages: &[(usize, &[Instruction])],
    bases: &[(String, Option<Platform>)],
    options: &PlanOptions,
    inputs: &CheckInputs,
) -> Result<Vec<bool>, CheckError> {
    if options.target.is_none() && !inputs.is_build {
        return Ok(vec![true; stages.len()]);
    }
    let names: Vec<Option<String>> = stages
        .iter()
        .map(|(from_index, _)| stage_name(&instructions[*from_index]))
        .collect();
    let find = |wanted: &str, before: usize| -> Option<usize> {
        let wanted = wanted.to_lowercase();
        if let Ok(index) = wanted.parse::<usize>() {
            return (index < stages.len()).then_some(index);
        }
        names[..before]
            .iter()
            .rposition(|n| n.as_deref() == Some(wanted.as_str()))
    };
    let target = match &options.target {
        Some(target) => find(target, stages.len()).ok_or_else(|| {
            let mut message = format!("target stage {} could not be found", go_quote(target));
            let known = names.iter().flatten().map(String::as_str);
            if let Some(s) = suggest::search(target, known, true) {
                message = format!("{message} (did you mean {s}?)");
            }
            dockerfile_error(message, None)
        })?,
        None => stages.len() - 1,
    };
    let mut deps: Vec<Vec<usize>> = Vec::with_capacity(stages.len());
    for (index, ((_, commands), (base, _))) in stages.iter().zip(bases).enumerate() {
        let mut needs = Vec::new();
        if !options.named_contexts.contains(base)
            && let Some(parent) = names[..index]
                .iter()
                .rposition(|n| n.as_deref() == Some(base.to_lowercase().as_str()))
        {
            needs.push(parent);
        }
        for instruction in *commands {
            let froms: Vec<&str> = match &instruction.command {
                Command::Copy(copy) => copy.from.iter().map(String::as_str).collect(),
                Command::Run(run) => run
                    .mounts
                    .iter()
                    .filter_map(|m| m.from.as_deref())
                    .collect(),
                _ => Vec::new(),
            };
            needs.extend(froms.into_iter().filter_map(|f| find(f, stages.len())));
        }
        deps.push(needs);
    }
    let mut reachable = vec![false; stages.len()];
    let mut pending = vec![target];
    while let Some(index) = pending.pop() {
        if !std::mem::replace(&mut reachable[index], true) {
            pending.extend(deps[index].iter().copied());
        }
    }
    Ok(reachable)
}

/// BuildKit's instruction names, for the unknown-instruction suggestion.
const INSTRUCTION_NAMES: [&str; 18] = [
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// The stage name of a `FROM`, lowercased as BuildKit stores it.
pub(crate) fn stage_name(from: &Instruction) -> Option<String> {
    match &from.command {
        Command::From(f) => f.stage_name.as_ref().map(|n| n.to_lowercase()),
        _ => None,
    }
}

/// BuildKit `defaultArgs`: the platform args and `TARGETSTAGE`, build args overriding them.
pub(crate) fn default_args(options: &PlanOptions, target: &str) -> OrderedEnv {
    let build = &options.build_platform;
    let target_platform = &options.platform;
    let mut env = OrderedEnv::default();
    let entries = [
        ("BUILDPLATFORM", build.to_string()),
        ("BUILDOS", build.os.clone()),
        (
            "BUILDOSVERSION",
            build.os_version.clone().unwrap_or_default(),
        ),
        ("BUILDARCH", build.architecture.clone()),
        ("BUILDVARIANT", build.variant.clone().unwrap_or_default()),
        ("TARGETPLATFORM", target_platform.to_string()),
        ("TARGETOS", target_platform.os.clone()),
        (
            "TARGETOSVERSION",
            target_platform.os_version.clone().unwrap_or_default(),
        ),
        ("TARGETARCH", target_platform.architecture.clone()),
        (
            "TARGETVARIANT",
            target_platform.variant.clone().unwrap_or_default(),
        ),
        ("TARGETSTAGE", target.to_owned()),
    ];
    for (key, value) in entries {
        let value = options.build_args.get(key).cloned().unwrap_or(value);
        env.set(key, &value);
    }
    env
}

/// containerd `platforms.Parse`'s message for an empty or malformed component.
fn platform_component_error(value: &str) -> Option<String> {
    let is_valid = |c: &str| {
        !c.is_empty()
            && c.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-'))
    };
    let bad = value.split('/').find(|c| !is_valid(c))?;
    Some(format!(
        "{} is an invalid component of {}: platform specifier component must match \"^[A-Za-z0-9_.-]+$\": invalid argument",
        go_quote(bad),
        go_quote(value)
    ))
}
