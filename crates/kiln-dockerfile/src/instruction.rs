//! Lowering: [`parse`] checks every [`Node`] the way BuildKit's
//! `instructions.ParseInstruction` does and builds its [`Command`], into a [`Dockerfile`].
//!
//! Checks mirror BuildKit, in BuildKit's order: argument counts, per-instruction flags,
//! stage names, RUN mounts/network/security, HEALTHCHECK durations and retries, heredoc
//! placement, and the rule that only ARG may precede the first FROM. Unknown instructions
//! are errors with a did-you-mean suggestion.

use std::time::Duration;

use crate::command::{
    Add, ArgDecl, Command, Copy, Dockerfile, From, Healthcheck, HealthcheckCmd, HeredocSource,
    Instruction, KeyValue, NetworkMode, Onbuild, Run, SecurityMode, ShellOrExec,
};
use crate::diagnostic::{ParseError, ParseErrorKind, suggest};
use crate::duration::parse_go_duration;
use crate::flags::{
    ADD_FLAGS, COPY_FLAGS, FROM_FLAGS, FlagSpec, FlagValues, HEALTHCHECK_FLAGS, NO_FLAGS,
    RUN_FLAGS, check_flags,
};
use crate::heredoc::{Heredoc, chomp, parse_heredoc};
use crate::mount::{parse_device, parse_mount};
use crate::syntax::{Node, SyntaxTree, Warning, go_lower, parse_syntax};

/// Parses and checks a Dockerfile.
///
/// ```
/// use kiln_dockerfile::{Command, parse};
/// let df = parse("FROM python:3.12-slim AS base\nRUN --mount=type=cache,target=/root/.cache pip install x\n").unwrap();
/// let Command::From(from) = &df.instructions[0].command else { panic!() };
/// assert_eq!(from.stage_name.as_deref(), Some("base"));
/// let Command::Run(run) = &df.instructions[1].command else { panic!() };
/// assert_eq!(run.mounts[0].target.as_deref(), Some("/root/.cache"));
/// ```
pub fn parse(src: &str) -> Result<Dockerfile, ParseError> {
    lower(parse_syntax(src)?)
}

/// Builds the typed view of a syntax tree.
pub fn lower(tree: SyntaxTree) -> Result<Dockerfile, ParseError> {
    let mut warnings = tree.warnings;
    let mut instructions = Vec::with_capacity(tree.nodes.len());
    let mut seen_from = false;
    for node in tree.nodes {
        let command = lower_node(&node, &mut warnings)?;
        match command {
            Command::From(_) => seen_from = true,
            Command::Arg(_) => {}
            _ if !seen_from => {
                return Err(ParseError::new(
                    ParseErrorKind::NoBuildStage {
                        instruction: node.keyword.to_uppercase(),
                    },
                    node.keyword_span,
                )
                .with_help("start the stage with FROM; only ARG may come before it"));
            }
            _ => {}
        }
        instructions.push(Instruction {
            syntax: node,
            command,
        });
    }
    Ok(Dockerfile {
        directives: tree.directives,
        escape: tree.escape,
        instructions,
        warnings,
    })
}

const INSTRUCTIONS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

struct Ctx<'a> {
    node: &'a Node,
    upper: String,
}

impl Ctx<'_> {
    fn err(&self, kind: ParseErrorKind) -> ParseError {
        ParseError::new(kind, self.node.keyword_span)
    }

    fn count(&self, expected: &str) -> ParseError {
        self.err(ParseErrorKind::ArgumentCount {
            instruction: self.upper.clone(),
            expected: expected.to_owned(),
        })
    }

    fn args(&self) -> Vec<String> {
        self.node.args.iter().map(|a| a.value.clone()).collect()
    }

    fn flags(&self, spec: FlagSpec) -> Result<FlagValues<'_>, ParseError> {
        check_flags(&self.upper, &self.node.flags, spec)
    }

    fn one_arg(&self) -> Result<String, ParseError> {
        match self.node.args.as_slice() {
            [one] => Ok(one.value.clone()),
            _ => Err(self.count("exactly one argument")),
        }
    }

    fn ignored_flags(&self, warnings: &mut Vec<Warning>) {
        for flag in &self.node.flags {
            warnings.push(Warning {
                message: format!(
                    "flag `{}` is ignored by {} (BuildKit ignores it too)",
                    flag.text, self.upper
                ),
                span: flag.span,
            });
        }
    }
}

fn lower_node(node: &Node, warnings: &mut Vec<Warning>) -> Result<Command, ParseError> {
    let cx = Ctx {
        node,
        upper: node.keyword.to_uppercase(),
    };
    let name = go_lower(&node.keyword);
    Ok(match name.as_str() {
        "env" | "label" => {
            cx.flags(NO_FLAGS)?;
            let pairs = key_values(&cx)?;
            if name == "env" {
                Command::Env(pairs)
            } else {
                Command::Label(pairs)
            }
        }
        "maintainer" => {
            let value = cx.one_arg()?;
            cx.flags(NO_FLAGS)?;
            warnings.push(Warning {
                message: "MAINTAINER is deprecated: use LABEL org.opencontainers.image.authors"
                    .into(),
                span: node.keyword_span,
            });
            Command::Maintainer(value)
        }
        "add" | "copy" => copy_or_add(&cx, name == "add")?,
        "from" => {
            let args = cx.args();
            let stage_name = match args.as_slice() {
                [_, as_kw, stage] if as_kw.eq_ignore_ascii_case("as") => {
                    let lower = stage.to_lowercase();
                    if !is_valid_stage_name(&lower) {
                        return Err(ParseError::new(
                            ParseErrorKind::InvalidStageName {
                                name: stage.clone(),
                            },
                            node.args[2].span,
                        ));
                    }
                    Some(lower)
                }
                [_] => None,
                _ => return Err(cx.count("either one or three arguments (`FROM image [AS name]`)")),
            };
            let flags = cx.flags(FROM_FLAGS)?;
            Command::From(From {
                image: args[0].clone(),
                platform: flags.string("platform"),
                stage_name,
            })
        }
        "onbuild" => {
            let Some(trigger) = &node.trigger else {
                return Err(cx.count("at least one argument"));
            };
            cx.flags(NO_FLAGS)?;
            let trigger_upper = trigger.keyword.trim().to_uppercase();
            if matches!(trigger_upper.as_str(), "ONBUILD" | "MAINTAINER" | "FROM") {
                return Err(ParseError::new(
                    ParseErrorKind::OnbuildTrigger {
                        trigger: trigger_upper,
                    },
                    trigger.keyword_span,
                ));
            }
            let mut trigger = (**trigger).clone();
            trigger.heredocs.clone_from(&node.heredocs);
            let command = lower_node(&trigger, warnings)?;
            Command::Onbuild(Onbuild {
                expression: onbuild_expression(&node.original, &node.heredocs),
                trigger: Box::new(Instruction {
                    syntax: trigger,
                    command,
                }),
            })
        }
        "workdir" => {
            let path = cx.one_arg()?;
            cx.flags(NO_FLAGS)?;
            Command::Workdir(path)
        }
        "run" => run(&cx)?,
        "cmd" => {
            cx.flags(NO_FLAGS)?;
            Command::Cmd(ShellOrExec::from_args(cx.args(), node.is_json))
        }
        "entrypoint" => {
            cx.flags(NO_FLAGS)?;
            Command::Entrypoint(ShellOrExec::from_args(cx.args(), node.is_json))
        }
        "healthcheck" => healthcheck(&cx, warnings)?,
        "expose" => {
            if node.args.is_empty() {
                return Err(cx.count("at least one argument"));
            }
            cx.flags(NO_FLAGS)?;
            let mut ports = cx.args();
            ports.sort();
            Command::Expose(ports)
        }
        "user" => {
            let user = cx.one_arg()?;
            cx.flags(NO_FLAGS)?;
            Command::User(user)
        }
        "volume" => {
            if node.args.is_empty() {
                return Err(cx.count("at least one argument"));
            }
            cx.flags(NO_FLAGS)?;
            let mut volumes = Vec::with_capacity(node.args.len());
            for arg in &node.args {
                let v = arg.value.trim();
                if v.is_empty() {
                    return Err(ParseError::new(ParseErrorKind::EmptyVolume, arg.span));
                }
                volumes.push(v.to_owned());
            }
            Command::Volume(volumes)
        }
        "stopsignal" => {
            let signal = cx.one_arg()?;
            cx.ignored_flags(warnings);
            Command::StopSignal(signal)
        }
        "arg" => {
            if node.args.is_empty() {
                return Err(cx.count("at least one argument"));
            }
            cx.ignored_flags(warnings);
            let mut decls = Vec::with_capacity(node.args.len());
            for arg in &node.args {
                decls.push(match arg.value.split_once('=') {
                    Some(("", _)) => {
                        return Err(ParseError::new(
                            ParseErrorKind::BlankName {
                                instruction: "ARG".into(),
                            },
                            arg.span,
                        ));
                    }
                    Some((k, v)) => ArgDecl {
                        name: k.to_owned(),
                        default: Some(v.to_owned()),
                    },
                    None => ArgDecl {
                        name: arg.value.clone(),
                        default: None,
                    },
                });
            }
            Command::Arg(decls)
        }
        "shell" => {
            cx.flags(NO_FLAGS)?;
            if node.args.is_empty() {
                return Err(cx.count("at least one argument"));
            }
            if !node.is_json {
                return Err(cx
                    .err(ParseErrorKind::ShellNotJson)
                    .with_help("write it as SHELL [\"executable\", \"parameters\"]"));
            }
            Command::Shell(cx.args())
        }
        "" => return Err(cx.err(ParseErrorKind::EmptyInstruction)),
        _ => {
            let err = cx.err(ParseErrorKind::UnknownInstruction {
                name: node.keyword.clone(),
            });
            return Err(match suggest(&node.keyword, &INSTRUCTIONS, false) {
                Some(s) => err.with_help(format!("did you mean `{s}`?")),
                None => err,
            });
        }
    })
}

/// `^[a-z][a-z0-9-_.]*$`.
fn is_valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

/// BuildKit's `parseKvps` over the parser's `key value delimiter` triples.
fn key_values(cx: &Ctx<'_>) -> Result<Vec<KeyValue>, ParseError> {
    let args = &cx.node.args;
    if args.is_empty() {
        return Err(cx.count("at least one argument"));
    }
    let mut out = Vec::with_capacity(args.len() / 3);
    for triple in args.chunks(3) {
        let [key, value, delim] = triple else {
            return Err(cx.count("key value pairs"));
        };
        if key.value.is_empty() {
            return Err(ParseError::new(
                ParseErrorKind::BlankName {
                    instruction: cx.upper.clone(),
                },
                key.span,
            ));
        }
        out.push(KeyValue {
            key: key.value.clone(),
            value: value.value.clone(),
            is_legacy_form: delim.value.is_empty(),
        });
    }
    Ok(out)
}

fn copy_or_add(cx: &Ctx<'_>, is_add: bool) -> Result<Command, ParseError> {
    let node = cx.node;
    if node.args.len() < 2 {
        return Err(cx.count("at least two arguments (sources and a destination)"));
    }
    let flags = cx.flags(if is_add { ADD_FLAGS } else { COPY_FLAGS })?;
    let (dest_arg, source_args) = node.args.split_last().unwrap_or((&node.args[0], &[]));
    if matches!(parse_heredoc(&dest_arg.value), Ok(Some(_))) {
        return Err(ParseError::new(
            ParseErrorKind::HeredocNotAllowed {
                instruction: cx.upper.clone(),
                position: "a destination".into(),
            },
            dest_arg.span,
        ));
    }
    let mut sources = Vec::new();
    let mut heredocs = Vec::new();
    for src in source_args {
        match parse_heredoc(&src.value) {
            Ok(Some(word)) => {
                let content = node
                    .heredocs
                    .iter()
                    .find(|h| h.name == word.name)
                    .map(|h| h.content.clone())
                    .unwrap_or_default();
                heredocs.push(HeredocSource {
                    data: if word.chomp { chomp(&content) } else { content },
                    path: word.name,
                    expand: word.expand,
                });
            }
            _ => sources.push(src.value.clone()),
        }
    }
    let exclude = flags
        .strings("exclude")
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let dest = dest_arg.value.clone();
    Ok(if is_add {
        Command::Add(Add {
            sources,
            heredocs,
            dest,
            chown: flags.string("chown"),
            chmod: flags.string("chmod"),
            link: flags.bool("link").unwrap_or(false),
            exclude,
            checksum: flags.string("checksum"),
            keep_git_dir: flags.bool("keep-git-dir"),
            unpack: flags.bool("unpack"),
        })
    } else {
        Command::Copy(Copy {
            sources,
            heredocs,
            dest,
            from: flags.string("from"),
            chown: flags.string("chown"),
            chmod: flags.string("chmod"),
            link: flags.bool("link").unwrap_or(false),
            parents: flags.bool("parents").unwrap_or(false),
            exclude,
        })
    })
}

fn run(cx: &Ctx<'_>) -> Result<Command, ParseError> {
    let flags = cx.flags(RUN_FLAGS)?;
    let mut mounts = Vec::new();
    for (flag, spec) in flags.strings("mount") {
        let mount = parse_mount(&spec, None).map_err(|reason| {
            ParseError::new(
                ParseErrorKind::InvalidMount {
                    spec,
                    reason: reason.to_string(),
                },
                flag.span,
            )
        })?;
        mounts.push(mount);
    }
    let mut devices = Vec::new();
    for (flag, spec) in flags.strings("device") {
        let device = parse_device(&spec).map_err(|reason| {
            ParseError::new(
                ParseErrorKind::InvalidDevice {
                    spec,
                    reason: reason.to_string(),
                },
                flag.span,
            )
        })?;
        devices.push(device);
    }
    let flag_span = |name: &str| flags.flag(name).map_or(cx.node.keyword_span, |f| f.span);
    let network = match flags.string("network").as_deref() {
        None | Some("default") => NetworkMode::Default,
        Some("none") => NetworkMode::None,
        Some("host") => NetworkMode::Host,
        Some(other) => {
            return Err(ParseError::new(
                ParseErrorKind::InvalidNetwork {
                    value: other.to_owned(),
                },
                flag_span("network"),
            ));
        }
    };
    let security = match flags.string("security").as_deref() {
        None | Some("sandbox") => SecurityMode::Sandbox,
        Some("insecure") => SecurityMode::Insecure,
        Some(other) => {
            return Err(ParseError::new(
                ParseErrorKind::InvalidSecurity {
                    value: other.to_owned(),
                },
                flag_span("security"),
            ));
        }
    };
    Ok(Command::Run(Run {
        cmd: ShellOrExec::from_args(cx.args(), cx.node.is_json),
        heredocs: cx.node.heredocs.clone(),
        mounts,
        network,
        security,
        devices,
    }))
}

fn healthcheck(cx: &Ctx<'_>, warnings: &mut Vec<Warning>) -> Result<Command, ParseError> {
    let node = cx.node;
    let Some((kind, rest)) = node.args.split_first() else {
        return Err(cx.count("at least one argument (NONE or CMD)"));
    };
    let kind_upper = kind.value.to_uppercase();
    if kind_upper == "NONE" {
        if !rest.is_empty() {
            return Err(ParseError::new(
                ParseErrorKind::HealthcheckNoneArguments,
                rest[0].span,
            ));
        }
        cx.ignored_flags(warnings);
        return Ok(Command::Healthcheck(Healthcheck::None));
    }
    let flags = cx.flags(HEALTHCHECK_FLAGS)?;
    if kind_upper != "CMD" {
        return Err(ParseError::new(
            ParseErrorKind::HealthcheckType {
                kind: kind.value.clone(),
            },
            kind.span,
        )
        .with_help("use CMD or NONE"));
    }
    let args: Vec<String> = rest.iter().map(|a| a.value.clone()).collect();
    if args.is_empty() {
        return Err(ParseError::new(
            ParseErrorKind::HealthcheckMissingCommand,
            kind.span,
        ));
    }
    let duration = |name: &str| -> Result<Duration, ParseError> {
        let Some(value) = flags.string(name) else {
            return Ok(Duration::ZERO);
        };
        let span = flags.flag(name).map_or(kind.span, |f| f.span);
        let invalid = |reason: String| {
            ParseError::new(
                ParseErrorKind::InvalidDuration {
                    flag: format!("--{name}"),
                    value: value.clone(),
                    reason,
                },
                span,
            )
        };
        if value.is_empty() {
            return Ok(Duration::ZERO);
        }
        let nanos = parse_go_duration(&value).map_err(|error| invalid(error.to_string()))?;
        if nanos == 0 {
            return Ok(Duration::ZERO);
        }
        if nanos < 1_000_000 {
            return Err(invalid("cannot be less than 1ms".into()));
        }
        Ok(Duration::from_nanos(nanos.unsigned_abs()))
    };
    let interval = duration("interval")?;
    let timeout = duration("timeout")?;
    let start_period = duration("start-period")?;
    let start_interval = duration("start-interval")?;
    let retries = match flags.string("retries").filter(|v| !v.is_empty()) {
        None => 0,
        Some(v) => {
            let span = flags.flag("retries").map_or(kind.span, |f| f.span);
            let parsed = v.parse::<i32>().map_err(|e| {
                ParseError::new(
                    ParseErrorKind::InvalidRetries {
                        value: v.clone(),
                        reason: e.to_string(),
                    },
                    span,
                )
            })?;
            u32::try_from(parsed).map_err(|_| {
                ParseError::new(
                    ParseErrorKind::InvalidRetries {
                        value: v.clone(),
                        reason: "cannot be negative".into(),
                    },
                    span,
                )
            })?
        }
    };
    Ok(Command::Healthcheck(Healthcheck::Cmd(HealthcheckCmd {
        test: ShellOrExec::from_args(args, node.is_json),
        interval,
        timeout,
        start_period,
        start_interval,
        retries,
    })))
}

/// `(?i)^\s*ONBUILD\s*` removed from the logical line, heredoc bodies appended.
fn onbuild_expression(original: &str, heredocs: &[Heredoc]) -> String {
    let trimmed = original.trim_start_matches(['\t', '\n', '\x0c', '\r', ' ']);
    let mut out = match trimmed.get(..7) {
        Some(kw) if kw.eq_ignore_ascii_case("onbuild") => trimmed[7..]
            .trim_start_matches(['\t', '\n', '\x0c', '\r', ' '])
            .to_owned(),
        _ => original.to_owned(),
    };
    for heredoc in heredocs {
        out.push('\n');
        out.push_str(&heredoc.content);
        out.push_str(&heredoc.name);
    }
    out
}
