//! BuildKit's build checks (`docker build --check`, the Dockerfile "lint" rules), pure: the
//! Dockerfile text, the build options and what the caller knows of the context
//! (`.dockerignore`) and of the base images go in, warnings and an optional error come out.
//!
//! The walk mirrors where BuildKit runs each rule: per instruction while parsing
//! (`instructions.ParseInstructionWithLinter`), over the whole file (`validateStageNames`,
//! `validateCommandCasing`, `validateBaseImagesWithDefaultArgs`), per stage while resolving
//! `FROM` (`buildDispatchStates`) and per instruction while dispatching (`dispatch`), all stages
//! when no target is given (`DockerfileLint`).

mod config;
mod rule;
mod suggest;

use std::collections::BTreeMap;

use kiln_dockerfile::{
    Command, Env, Healthcheck, Instruction, Node, ParseErrorKind, PatternMatcher, ShellLexer,
    go_quote,
};
use kiln_oci::{ImageRef, Platform};
use serde::Serialize;

pub use config::{CheckConfig, CheckConfigError};
pub use rule::{RULES, Rule, rule_by_name};

use crate::options::PlanOptions;
use crate::state::DEFAULT_PATH;
use config::{go_trim, parse_comment_directive};
use rule::{
    CONSISTENT_INSTRUCTION_CASING, COPY_IGNORED_FILE, DUPLICATE_STAGE_NAME, EXPOSE_INVALID_FORMAT,
    EXPOSE_PROTO_CASING, FROM_AS_CASING, FROM_PLATFORM_FLAG_CONST_DISALLOWED,
    INVALID_BASE_IMAGE_PLATFORM, INVALID_DEFAULT_ARG_IN_FROM, INVALID_DEFINITION_DESCRIPTION,
    JSON_ARGS_RECOMMENDED, LEGACY_KEY_VALUE_FORMAT, MAINTAINER_DEPRECATED,
    MULTIPLE_INSTRUCTIONS_DISALLOWED, NO_EMPTY_CONTINUATION, REDUNDANT_TARGET_PLATFORM,
    RESERVED_STAGE_NAME, SECRETS_USED_IN_ARG_OR_ENV, STAGE_NAME_CASING, UNDEFINED_ARG_IN_FROM,
    UNDEFINED_VAR, WORKDIR_RELATIVE_PATH,
};

/// The build arg that replaces the Dockerfile's `# check=` directive (not merged with it).
pub const CHECK_BUILD_ARG: &str = "BUILDKIT_DOCKERFILE_CHECK";

/// One finding of a build check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The rule (name, description, URL).
    pub rule: &'static Rule,
    /// The message, exactly as BuildKit words it.
    pub detail: String,
    /// First line of the instruction it is about (1-based).
    pub start_line: u32,
    /// Last line of the instruction it is about.
    pub end_line: u32,
}

impl std::fmt::Display for Check {
    /// BuildKit `linter.LintFormatShort`: `Rule: detail (line N)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.rule.name, self.detail)?;
        if self.start_line > 0 {
            write!(f, " (line {})", self.start_line)?;
        }
        Ok(())
    }
}

/// What the checks know of a base image (from its config; the caller resolves it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BaseImage {
    /// The config's `Env`, `KEY=value` entries.
    pub env: Vec<String>,
    /// The platform the image was pulled for, when known (`InvalidBaseImagePlatform`).
    pub platform: Option<Platform>,
}

/// What the checks need besides the Dockerfile and the [`PlanOptions`].
#[derive(Debug, Clone, Default)]
pub struct CheckInputs {
    /// The build context's `.dockerignore` patterns (`CopyIgnoredFile`), when it has one.
    pub ignore: Option<PatternMatcher>,
    /// Base images by name as the `FROM` line expands to (`alpine`, `busybox:latest`).
    /// `scratch` has the default `PATH` only, as BuildKit gives it on Linux. The environment
    /// of an image not listed is unknown, so `UndefinedVar` is not reported in stages built
    /// on it (a build that has not pulled its bases yet would otherwise warn about every
    /// variable the image defines).
    pub base_images: BTreeMap<String, BaseImage>,
}

/// Why the checks fail the build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// `error=true` and at least one rule fired.
    #[error("lint violation found for rules: {}", .rules.join(", "))]
    Violation {
        /// The rules that fired, each once, in the order they first fired.
        rules: Vec<&'static str>,
    },
    /// The `# check=` directive or `BUILDKIT_DOCKERFILE_CHECK` does not parse.
    #[error("failed to parse check options: {0}")]
    Config(CheckConfigError),
    /// The Dockerfile cannot be built (BuildKit's message); warnings found before it stand.
    #[error("{message}")]
    Dockerfile {
        /// The message.
        message: String,
        /// The line BuildKit attaches, when it attaches one.
        line: Option<u32>,
    },
}

/// The result of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// The findings, in the order they were found.
    pub warnings: Vec<Check>,
    /// Set when the build must fail: `error=true` with findings, or a Dockerfile error.
    pub error: Option<CheckError>,
    /// The options in effect (`BUILDKIT_DOCKERFILE_CHECK`, else the `# check=` directive).
    pub config: CheckConfig,
}

/// Runs every build check over `src`, as `docker build --check` does when `options.target`
/// is `None` (every stage) or as a build of that target does otherwise.
///
/// ```
/// use kiln_plan::{CheckInputs, PlanOptions, check};
/// let report = check("FROM alpine as base\nCMD run\n", &PlanOptions::default(), &CheckInputs::default());
/// let names: Vec<&str> = report.warnings.iter().map(|w| w.rule.name).collect();
/// assert_eq!(names, ["FromAsCasing", "JSONArgsRecommended"]);
/// assert_eq!(report.warnings[0].detail, "'as' and 'FROM' keywords' casing do not match");
/// assert!(report.error.is_none());
/// ```
pub fn check(src: &str, options: &PlanOptions, inputs: &CheckInputs) -> CheckReport {
    let mut linter = Linter::default();
    let error = run(src, options, inputs, &mut linter).err();
    let error = error.or_else(|| {
        (linter.config.is_error && !linter.called.is_empty()).then(|| CheckError::Violation {
            rules: linter.called.clone(),
        })
    });
    CheckReport {
        warnings: linter.warnings,
        error,
        config: linter.config,
    }
}

/// The options and findings so far (BuildKit `linter.Linter`).
#[derive(Debug, Default)]
struct Linter {
    config: CheckConfig,
    warnings: Vec<Check>,
    called: Vec<&'static str>,
}

impl Linter {
    fn run(&mut self, config: &CheckConfig, rule: &'static Rule, detail: String, lines: Lines) {
        if !config.is_enabled(rule) {
            return;
        }
        if !self.called.contains(&rule.name) {
            self.called.push(rule.name);
        }
        self.warnings.push(Check {
            rule,
            detail,
            start_line: lines.0,
            end_line: lines.1,
        });
    }
}

/// An instruction's first and last line.
#[derive(Debug, Clone, Copy)]
struct Lines(u32, u32);

fn lines_of(node: &Node) -> Lines {
    Lines(node.start_line, node.end_line)
}

fn dockerfile_error(message: impl Into<String>, line: Option<u32>) -> CheckError {
    CheckError::Dockerfile {
        message: message.into(),
        line,
    }
}

/// Variables BuildKit never puts in the environment (`nonEnvArgs`).
const NON_ENV_ARGS: [&str; 2] = ["BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"];

/// Stage names BuildKit reserves (`reservedStageNames`).
const RESERVED_STAGE_NAMES: [&str; 2] = ["context", "scratch"];

/// An ordered environment where a later value replaces an earlier one in place (llb
/// `EnvList`).
#[derive(Debug, Clone, Default)]
struct OrderedEnv(Vec<(String, String)>);

impl OrderedEnv {
    fn set(&mut self, key: &str, value: &str) {
        if let Some(entry) = self.0.iter_mut().find(|(k, _)| k == key) {
            value.clone_into(&mut entry.1);
        } else {
            self.0.push((key.to_owned(), value.to_owned()));
        }
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }
}

impl Env for OrderedEnv {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The state one stage leaves for stages built on it.
#[derive(Debug, Clone, Default)]
struct StageState {
    name: Option<String>,
    env: OrderedEnv,
    arg_names: Vec<String>,
    has_shell: bool,
    is_workdir_set: bool,
    /// Whether `env` holds the whole environment (not so on an unlisted base image).
    is_env_known: bool,
}

fn run(
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

    let comments = node_comments(src, &tree);
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

    // Dispatch every stage in order (all stages: the lint subrequest has no target).
    let mut states: Vec<StageState> = Vec::new();
    for ((from_index, commands), (base, platform)) in stages.iter().zip(bases) {
        let from_instruction = &dockerfile.instructions[*from_index];
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
fn stage_name(from: &Instruction) -> Option<String> {
    match &from.command {
        Command::From(f) => f.stage_name.as_ref().map(|n| n.to_lowercase()),
        _ => None,
    }
}

/// BuildKit `defaultArgs`: the platform args and `TARGETSTAGE`, build args overriding them.
fn default_args(options: &PlanOptions, target: &str) -> OrderedEnv {
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

/// The line BuildKit gives an empty-continuation warning: the last line of the instruction
/// holding it.
fn empty_continuation_line(nodes: &[Node], offset: usize) -> u32 {
    nodes
        .iter()
        .find(|n| n.span.start <= offset && offset <= n.span.end)
        .map_or(0, |n| n.end_line)
}

/// Each node's comment lines (BuildKit `Node.PrevComment`): the comments since the previous
/// instruction, an empty `#` clearing them, parser directives left out.
fn node_comments(src: &str, tree: &kiln_dockerfile::SyntaxTree) -> Vec<Vec<String>> {
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
                let text = go_trim(&line[1..]);
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

/// The options for one instruction: the file's, plus the first `# check=` comment above it.
fn comment_config(global: &CheckConfig, comments: &[String]) -> CheckConfig {
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
fn lint_parsed_node(node: &Node, comments: &[String], config: &CheckConfig, linter: &mut Linter) {
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

/// BuildKit `validateStageNames`.
fn validate_stage_names(
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
fn validate_command_casing(
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
fn validate_base_images_with_default_args(
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
fn report_undefined_from_args(
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

/// Which of CMD, ENTRYPOINT, HEALTHCHECK a tracker slot is.
const CMD_SLOT: usize = 0;
const ENTRYPOINT_SLOT: usize = 1;
const HEALTHCHECK_SLOT: usize = 2;

/// The per-stage dispatch rules.
struct Dispatcher<'a> {
    lexer: &'a ShellLexer,
    options: &'a PlanOptions,
    inputs: &'a CheckInputs,
    global_args: &'a OrderedEnv,
    linter: &'a mut Linter,
    /// Where CMD, ENTRYPOINT and HEALTHCHECK were last set in this stage.
    trackers: [Option<Lines>; 3],
}

impl Dispatcher<'_> {
    /// Expands one word against the stage's environment and reports the undefined variables
    /// (BuildKit `reportUnmatchedVariables`); the word as written when it does not expand.
    fn expand(
        &mut self,
        state: &StageState,
        word: &str,
        config: &CheckConfig,
        lines: Lines,
    ) -> String {
        let Ok(expansion) = self.lexer.process_word_with_matches(word, &state.env) else {
            return word.to_owned();
        };
        for name in &expansion.unmatched {
            if !state.is_env_known {
                break;
            }
            if state.arg_names.contains(name) || NON_ENV_ARGS.contains(&name.as_str()) {
                continue;
            }
            let mut detail = format!("Usage of undefined variable '${name}'");
            if let Some(s) = suggest::search(name, state.env.keys(), true) {
                detail = format!("{detail} (did you mean ${s}?)");
            }
            self.linter.run(config, &UNDEFINED_VAR, detail, lines);
        }
        expansion.value
    }

    fn used_once(&mut self, slot: usize, keyword: &str, config: &CheckConfig, lines: Lines) {
        if let Some(previous) = self.trackers[slot] {
            self.linter.run(
                config,
                &MULTIPLE_INSTRUCTIONS_DISALLOWED,
                format!(
                    "Multiple {keyword} instructions should not be used in the same stage because only the last one will be used"
                ),
                previous,
            );
        }
        self.trackers[slot] = Some(lines);
    }

    fn secret(&mut self, instruction: &str, key: &str, config: &CheckConfig, lines: Lines) {
        const DENY: [&str; 10] = [
            "apikey",
            "auth",
            "credential",
            "credentials",
            "key",
            "password",
            "pword",
            "passwd",
            "secret",
            "token",
        ];
        const ALLOW: [&str; 3] = ["public", "file", "version"];
        let has_token = |tokens: &[&str]| {
            key.split('_')
                .any(|part| tokens.contains(&part.to_lowercase().as_str()))
        };
        if has_token(&DENY) && !has_token(&ALLOW) {
            self.linter.run(
                config,
                &SECRETS_USED_IN_ARG_OR_ENV,
                format!(
                    "Do not use ARG or ENV instructions for sensitive data ({instruction} {})",
                    go_quote(key)
                ),
                lines,
            );
        }
    }

    fn copy_source(&mut self, source: &str, is_add: bool, config: &CheckConfig, lines: Lines) {
        let Some(matcher) = &self.inputs.ignore else {
            return;
        };
        if matcher.has_exclusions() {
            return;
        }
        let cleaned = go_clean(source);
        let is_root = cleaned == "." || cleaned == "/";
        if is_root
            && !matcher
                .patterns()
                .iter()
                .any(|p| !p.is_exclusion() && matches!(p.as_str(), "*" | "**" | "**/*"))
        {
            return;
        }
        // BuildKit: "." and "/" name the context root; with `*`, `**` or `**/*` and no
        // exclusion every entry of the root is excluded (`copySourceRootIgnored`), and moby's
        // matcher then matches "." itself.
        if (cleaned == "." && is_root)
            || matcher.matches_or_parent_matches(&cleaned).unwrap_or(false)
        {
            let verb = if is_add { "Add" } else { "Copy" };
            self.linter.run(
                config,
                &COPY_IGNORED_FILE,
                format!(
                    "Attempting to {verb} file {} that is excluded by .dockerignore",
                    go_quote(&cleaned)
                ),
                lines,
            );
        }
    }

    fn dispatch(
        &mut self,
        state: &mut StageState,
        instruction: &Instruction,
        config: &CheckConfig,
    ) {
        let lines = lines_of(&instruction.syntax);
        let keyword = instruction.syntax.keyword.as_str();
        match &instruction.command {
            Command::Env(pairs) => {
                for pair in pairs {
                    let key = self.expand(state, &pair.key, config, lines);
                    let value = self.expand(state, &pair.value, config, lines);
                    if pair.is_legacy_form {
                        self.legacy(keyword, config, lines);
                    }
                    self.secret("ENV", &key, config, lines);
                    state.env.set(&key, &value);
                }
            }
            Command::Label(pairs) => {
                for pair in pairs {
                    self.expand(state, &pair.key, config, lines);
                    self.expand(state, &pair.value, config, lines);
                    if pair.is_legacy_form {
                        self.legacy(keyword, config, lines);
                    }
                }
            }
            Command::Arg(decls) => {
                for decl in decls {
                    self.secret("ARG", &decl.name, config, lines);
                    let value = if let Some(v) = self.options.build_args.get(&decl.name) {
                        Some(v.clone())
                    } else if let Some(default) = &decl.default {
                        Some(self.expand(state, default, config, lines))
                    } else {
                        self.global_args.get(&decl.name).map(str::to_owned)
                    };
                    if let Some(value) =
                        value.filter(|_| !NON_ENV_ARGS.contains(&decl.name.as_str()))
                    {
                        state.env.set(&decl.name, &value);
                    }
                    state.arg_names.push(decl.name.clone());
                }
            }
            Command::Cmd(cmd) | Command::Entrypoint(cmd) => {
                let slot = if matches!(instruction.command, Command::Cmd(_)) {
                    CMD_SLOT
                } else {
                    ENTRYPOINT_SLOT
                };
                self.used_once(slot, keyword, config, lines);
                if !cmd.is_exec() && !state.has_shell {
                    self.linter.run(
                        config,
                        &JSON_ARGS_RECOMMENDED,
                        format!(
                            "JSON arguments recommended for {keyword} to prevent unintended behavior related to OS signals"
                        ),
                        lines,
                    );
                }
            }
            Command::Healthcheck(Healthcheck::None | Healthcheck::Cmd(_)) => {
                self.used_once(HEALTHCHECK_SLOT, keyword, config, lines);
            }
            Command::Shell(shell) => state.has_shell = !shell.is_empty(),
            Command::Workdir(path) => {
                let path = self.expand(state, path, config, lines);
                if !state.is_workdir_set && !path.starts_with('/') {
                    self.linter.run(
                        config,
                        &WORKDIR_RELATIVE_PATH,
                        format!(
                            "Relative workdir {} can have unexpected results if the base image changes",
                            go_quote(&path)
                        ),
                        lines,
                    );
                }
                state.is_workdir_set = true;
            }
            Command::User(user) => {
                self.expand(state, user, config, lines);
            }
            Command::StopSignal(signal) => {
                self.expand(state, signal, config, lines);
            }
            Command::Volume(paths) => {
                for path in paths {
                    self.expand(state, path, config, lines);
                }
            }
            Command::Copy(copy) => {
                for flag in [&copy.chown, &copy.chmod].into_iter().flatten() {
                    self.expand(state, flag, config, lines);
                }
                let sources: Vec<String> = copy
                    .sources
                    .iter()
                    .map(|s| self.expand(state, s, config, lines))
                    .collect();
                self.expand(state, &copy.dest, config, lines);
                if copy.from.is_none() {
                    for source in &sources {
                        self.copy_source(source, false, config, lines);
                    }
                }
            }
            Command::Add(add) => {
                for flag in [&add.chown, &add.chmod, &add.checksum]
                    .into_iter()
                    .flatten()
                {
                    self.expand(state, flag, config, lines);
                }
                let sources: Vec<String> = add
                    .sources
                    .iter()
                    .map(|s| self.expand(state, s, config, lines))
                    .collect();
                self.expand(state, &add.dest, config, lines);
                for source in &sources {
                    if !source.starts_with("http://") && !source.starts_with("https://") {
                        self.copy_source(source, true, config, lines);
                    }
                }
            }
            Command::Expose(ports) => {
                for word in ports {
                    let Ok(expanded) = self.lexer.process_words(word, &state.env) else {
                        continue;
                    };
                    for port in expanded {
                        self.expose(&port, config, lines);
                    }
                }
            }
            _ => {}
        }
    }

    fn legacy(&mut self, keyword: &str, config: &CheckConfig, lines: Lines) {
        self.linter.run(
            config,
            &LEGACY_KEY_VALUE_FORMAT,
            format!(
                "\"{keyword} key=value\" should be used instead of legacy \"{keyword} key value\" format"
            ),
            lines,
        );
    }

    /// BuildKit `portSpecs.parsePort`'s two rules.
    fn expose(&mut self, raw: &str, config: &CheckConfig, lines: Lines) {
        let parts: Vec<&str> = raw.split(':').collect();
        let (ip, host_port, container) = match parts.as_slice() {
            [c] => ("", "", *c),
            [h, c] => ("", *h, *c),
            [ip, h, c] => (*ip, *h, *c),
            [.., h, c] => (&raw[..raw.len() - h.len() - c.len() - 2], *h, *c),
            [] => return,
        };
        let proto = match container.split_once('/') {
            Some((_, proto)) if !proto.is_empty() => proto.split('/').next().unwrap_or(proto),
            _ => "tcp",
        };
        if proto != proto.to_lowercase() {
            self.linter.run(
                config,
                &EXPOSE_PROTO_CASING,
                format!("Defined protocol '{raw}' in EXPOSE instruction should be lowercase"),
                lines,
            );
        }
        if !ip.is_empty() || !host_port.is_empty() {
            self.linter.run(
                config,
                &EXPOSE_INVALID_FORMAT,
                format!(
                    "EXPOSE instruction should not define an IP address or host-port mapping, found '{raw}'"
                ),
                lines,
            );
        }
    }
}

/// Go `filepath.Clean` on Unix.
fn go_clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    let is_rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !is_rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (is_rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_matches_go() {
        assert_eq!(go_clean("./Dockerfile"), "Dockerfile");
        assert_eq!(go_clean("."), ".");
        assert_eq!(go_clean("/"), "/");
        assert_eq!(go_clean("a/../../b/"), "../b");
        assert_eq!(go_clean("/../x"), "/x");
    }

    #[test]
    fn every_rule_is_listed_once() {
        assert_eq!(RULES.len(), 22);
        assert_eq!(
            rule_by_name("UndefinedVar").map(|r| r.description),
            Some("Variables should be defined before their use")
        );
        assert!(
            rule_by_name("InvalidDefinitionDescription")
                .unwrap()
                .is_experimental
        );
    }
}
