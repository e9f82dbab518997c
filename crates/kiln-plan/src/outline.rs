//! What `docker buildx build --call=outline` and `--call=targets` report, pure: the build
//! args and secrets a target uses, and the stages a Dockerfile has, each with the
//! description written in the comment above it (BuildKit `dockerfile2llb.Dockerfile2Outline`
//! and `ListTargets`, `instructions.getDocComment`).

use std::collections::{BTreeMap, BTreeSet};

use kiln_dockerfile::{Command, Dockerfile, Instruction, MountType, ShellLexer, doc_comment};

use crate::checks::{CheckError, default_args, stage_name};
use crate::options::PlanOptions;

/// The lines an item was written on (1-based, inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceLines {
    /// First line.
    pub start: u32,
    /// Last line.
    pub end: u32,
}

/// One stage, as `--call=targets` lists it (BuildKit `targets.Target`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageTarget {
    /// `AS name`, lowercased; `None` for an unnamed stage.
    pub name: Option<String>,
    /// The comment above the `FROM` that starts with the stage's name, without the name.
    pub description: String,
    /// Whether it is the default target (the last stage).
    pub is_default: bool,
    /// The base as written (unexpanded).
    pub base: String,
    /// `--platform` as written.
    pub platform: Option<String>,
    /// The `FROM` instruction.
    pub location: SourceLines,
}

/// A build arg the target uses (BuildKit `outline.Arg`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlineArg {
    /// The name.
    pub name: String,
    /// The comment above the `ARG` that starts with the name, without the name.
    pub description: String,
    /// The value the build would use (a `--build-arg`, else the default expanded).
    pub value: Option<String>,
    /// The `ARG` instruction that defines it.
    pub location: SourceLines,
}

/// A secret or SSH agent a `RUN --mount` of the target asks for (BuildKit `outline.Secret`,
/// `outline.SSH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlineMount {
    /// The secret's id, or the SSH id (`default`).
    pub name: String,
    /// Whether the mount says `required`.
    pub is_required: bool,
    /// The first `RUN` that mounts it.
    pub location: SourceLines,
}

/// What `--call=outline` reports for a target (BuildKit `outline.Outline`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outline {
    /// The target stage's name (`None` for an unnamed last stage).
    pub name: Option<String>,
    /// The target stage's description.
    pub description: String,
    /// The build args it uses, by line.
    pub args: Vec<OutlineArg>,
    /// The secrets it mounts, by line.
    pub secrets: Vec<OutlineMount>,
    /// The SSH agents it mounts, by line.
    pub ssh: Vec<OutlineMount>,
}

/// Parsed Dockerfile with each instruction's comments.
struct Parsed {
    dockerfile: Dockerfile,
    comments: BTreeMap<u32, Vec<String>>,
}

fn parse(src: &str) -> Result<Parsed, CheckError> {
    let error = |e: kiln_dockerfile::ParseError| CheckError::Dockerfile {
        message: format!("dockerfile parse error on line {}: {}", e.span.line, e.kind),
        line: Some(e.span.line),
    };
    let tree = kiln_dockerfile::parse_syntax(src).map_err(error)?;
    let comments = kiln_dockerfile::node_comments(src, &tree);
    let comments = tree
        .nodes
        .iter()
        .map(|n| n.start_line)
        .zip(comments)
        .collect();
    let dockerfile = kiln_dockerfile::lower(tree).map_err(error)?;
    if !dockerfile
        .instructions
        .iter()
        .any(|i| matches!(i.command, Command::From(_)))
    {
        return Err(CheckError::Dockerfile {
            message: "dockerfile contains no stages to build".to_owned(),
            line: None,
        });
    }
    Ok(Parsed {
        dockerfile,
        comments,
    })
}

fn lines_of(instruction: &Instruction) -> SourceLines {
    SourceLines {
        start: instruction.syntax.start_line,
        end: instruction.syntax.end_line,
    }
}

impl Parsed {
    fn comments_of(&self, instruction: &Instruction) -> &[String] {
        self.comments
            .get(&instruction.syntax.start_line)
            .map_or(&[], Vec::as_slice)
    }

    /// The global `ARG`s and each stage's `FROM` with its instructions.
    fn stages(&self) -> (&[Instruction], Vec<(&Instruction, &[Instruction])>) {
        let all = &self.dockerfile.instructions;
        let froms: Vec<usize> = all
            .iter()
            .enumerate()
            .filter(|(_, i)| matches!(i.command, Command::From(_)))
            .map(|(index, _)| index)
            .collect();
        let stages = froms
            .iter()
            .enumerate()
            .map(|(n, &at)| {
                let end = froms.get(n + 1).copied().unwrap_or(all.len());
                (&all[at], &all[at + 1..end])
            })
            .collect();
        (&all[..froms[0]], stages)
    }
}

/// The stages of `src`, as `docker buildx build --call=targets` lists them.
///
/// ```
/// let src = "# base the common base\nFROM alpine AS base\n\n# test run the tests\nFROM base AS test\n";
/// let targets = kiln_plan::targets(src).unwrap();
/// assert_eq!(targets[1].name.as_deref(), Some("test"));
/// assert_eq!(targets[1].description, "run the tests");
/// assert!(targets[1].is_default);
/// ```
pub fn targets(src: &str) -> Result<Vec<StageTarget>, CheckError> {
    let parsed = parse(src)?;
    let (_, stages) = parsed.stages();
    let count = stages.len();
    Ok(stages
        .iter()
        .enumerate()
        .map(|(index, (from, _))| {
            let Command::From(f) = &from.command else {
                unreachable!("stages start at FROM")
            };
            let name = stage_name(from);
            StageTarget {
                description: doc_comment(parsed.comments_of(from), name.as_deref().unwrap_or(""))
                    .to_owned(),
                name,
                is_default: index + 1 == count,
                base: f.image.clone(),
                platform: f.platform.clone(),
                location: lines_of(from),
            }
        })
        .collect())
}

/// What BuildKit knows of one defined arg (`argInfo`).
#[derive(Debug, Clone)]
struct ArgInfo {
    arg: OutlineArg,
    deps: BTreeSet<String>,
}

/// One stage's outline capture (BuildKit `outlineCapture`).
#[derive(Debug, Clone, Default)]
struct Capture {
    all_args: BTreeMap<String, ArgInfo>,
    used_args: BTreeSet<String>,
    secrets: Vec<OutlineMount>,
    ssh: Vec<OutlineMount>,
}

/// The build args and secrets `options.target` (or the last stage) uses, as `docker buildx
/// build --call=outline` reports them.
///
/// ```
/// let src = "# VERSION the release to build\nARG VERSION=1.0\nFROM alpine:${VERSION}\nRUN --mount=type=secret,id=token true\n";
/// let outline = kiln_plan::outline(src, &kiln_plan::PlanOptions::default()).unwrap();
/// assert_eq!(outline.args[0].name, "VERSION");
/// assert_eq!(outline.args[0].value.as_deref(), Some("1.0"));
/// assert_eq!(outline.args[0].description, "the release to build");
/// assert_eq!(outline.secrets[0].name, "token");
/// ```
pub fn outline(src: &str, options: &PlanOptions) -> Result<Outline, CheckError> {
    let parsed = parse(src)?;
    let (meta_args, stages) = parsed.stages();
    let lexer = ShellLexer::new(parsed.dockerfile.escape);
    let names: Vec<Option<String>> = stages.iter().map(|(from, _)| stage_name(from)).collect();
    let last_name = names.last().cloned().flatten();
    let defaults = default_args(options, last_name.as_deref().unwrap_or("default"));

    // BuildKit `buildMetaArgs`.
    let mut global_args = defaults;
    let mut global = Capture::default();
    for instruction in meta_args {
        let Command::Arg(decls) = &instruction.command else {
            continue;
        };
        for decl in decls {
            let mut deps = BTreeSet::new();
            let value = if let Some(value) = options.build_args.get(&decl.name) {
                Some(value.clone())
            } else if let Some(default) = &decl.default {
                let expansion = lexer
                    .process_word_with_matches(default, &global_args)
                    .map_err(|e| CheckError::Dockerfile {
                        message: e.to_string(),
                        line: Some(instruction.syntax.start_line),
                    })?;
                deps = expansion.matched;
                if deps.remove(&decl.name)
                    && let Some(old) = global.all_args.get(&decl.name)
                {
                    deps.extend(old.deps.iter().cloned());
                }
                Some(expansion.value)
            } else {
                None
            };
            if let Some(value) = &value {
                global_args.set(&decl.name, value);
            }
            global.all_args.insert(
                decl.name.clone(),
                ArgInfo {
                    arg: OutlineArg {
                        name: decl.name.clone(),
                        description: doc_comment(parsed.comments_of(instruction), &decl.name)
                            .to_owned(),
                        value,
                        location: lines_of(instruction),
                    },
                    deps,
                },
            );
        }
    }

    // Each stage's capture, and what it depends on (base first, then `--from`s).
    let mut captures: Vec<Capture> = Vec::with_capacity(stages.len());
    let mut deps: Vec<Vec<usize>> = Vec::with_capacity(stages.len());
    for (index, (from, commands)) in stages.iter().enumerate() {
        let Command::From(f) = &from.command else {
            unreachable!("stages start at FROM")
        };
        let mut used = BTreeSet::new();
        let base = match lexer.process_word_with_matches(&f.image, &global_args) {
            Ok(expansion) => {
                used.extend(expansion.matched);
                expansion.value
            }
            Err(_) => f.image.clone(),
        };
        if let Some(platform) = &f.platform
            && let Ok(expansion) = lexer.process_word_with_matches(platform, &global_args)
        {
            used.extend(expansion.matched);
        }
        let find = |wanted: &str| -> Option<usize> {
            let wanted = wanted.to_lowercase();
            if let Ok(n) = wanted.parse::<usize>() {
                return (n < stages.len()).then_some(n);
            }
            names
                .iter()
                .position(|n| n.as_deref() == Some(wanted.as_str()))
        };
        let parent = (!options.named_contexts.contains(&base))
            .then(|| {
                names[..index]
                    .iter()
                    .rposition(|n| n.as_deref() == Some(base.to_lowercase().as_str()))
            })
            .flatten();
        let mut capture = match parent {
            Some(parent) => captures[parent].clone(),
            None => global.clone(),
        };
        capture.used_args.extend(used);
        let mut needs: Vec<usize> = parent.into_iter().collect();
        let mut env = global_args.clone();
        for instruction in *commands {
            match &instruction.command {
                Command::Arg(decls) => {
                    for decl in decls {
                        let value = match options.build_args.get(&decl.name) {
                            Some(v) => Some(v.clone()),
                            None => decl.default.as_ref().map(|default| {
                                lexer
                                    .process_word(default, &env)
                                    .unwrap_or_else(|_| default.clone())
                            }),
                        };
                        // An `ARG NAME` that takes the global value keeps the global entry.
                        let is_inherited = value.is_none()
                            && kiln_dockerfile::Env::get(&global_args, &decl.name).is_some();
                        if let Some(value) = &value {
                            env.set(&decl.name, value);
                        }
                        if !is_inherited {
                            capture.all_args.insert(
                                decl.name.clone(),
                                ArgInfo {
                                    arg: OutlineArg {
                                        name: decl.name.clone(),
                                        description: doc_comment(
                                            parsed.comments_of(instruction),
                                            &decl.name,
                                        )
                                        .to_owned(),
                                        value,
                                        location: lines_of(instruction),
                                    },
                                    deps: BTreeSet::new(),
                                },
                            );
                        }
                        capture.used_args.insert(decl.name.clone());
                    }
                }
                Command::Copy(copy) => {
                    needs.extend(copy.from.as_deref().and_then(find));
                }
                Command::Run(run) => {
                    for mount in &run.mounts {
                        needs.extend(mount.from.as_deref().and_then(find));
                        let (list, name) = match mount.kind {
                            MountType::Secret => {
                                let name =
                                    mount.source.clone().or_else(|| mount.id.clone()).or_else(
                                        || {
                                            mount.target.as_deref().map(|t| {
                                                t.rsplit('/')
                                                    .find(|p| !p.is_empty())
                                                    .unwrap_or("/")
                                                    .to_owned()
                                            })
                                        },
                                    );
                                (&mut capture.secrets, name)
                            }
                            MountType::Ssh => (
                                &mut capture.ssh,
                                Some(mount.id.clone().unwrap_or_else(|| "default".to_owned())),
                            ),
                            _ => continue,
                        };
                        if let Some(name) = name
                            && !list.iter().any(|m| m.name == name)
                        {
                            list.push(OutlineMount {
                                name,
                                is_required: mount.required,
                                location: lines_of(instruction),
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        captures.push(capture);
        deps.push(needs);
    }

    let target = match &options.target {
        Some(target) => names
            .iter()
            .position(|n| n.as_deref() == Some(target.to_lowercase().as_str()))
            .ok_or_else(|| CheckError::Dockerfile {
                message: format!(
                    "target stage {} could not be found",
                    kiln_dockerfile::go_quote(target)
                ),
                line: None,
            })?,
        None => stages.len() - 1,
    };

    // BuildKit `dispatchState.args`/`secrets`/`ssh`: the target's, then its base's and its
    // dependencies', each name once.
    let mut out = Outline {
        name: names[target].clone(),
        description: doc_comment(
            parsed.comments_of(stages[target].0),
            names[target].as_deref().unwrap_or(""),
        )
        .to_owned(),
        ..Outline::default()
    };
    let mut seen_args = BTreeSet::new();
    let mut seen_secrets = BTreeSet::new();
    let mut seen_ssh = BTreeSet::new();
    let mut visited_stages = BTreeSet::new();
    let mut pending = vec![target];
    while let Some(index) = pending.pop() {
        if !visited_stages.insert(index) {
            continue;
        }
        let capture = &captures[index];
        let mut used = BTreeSet::new();
        let mut queue: Vec<String> = capture.used_args.iter().cloned().collect();
        while let Some(name) = queue.pop() {
            if used.insert(name.clone())
                && let Some(info) = capture.all_args.get(&name)
            {
                queue.extend(info.deps.iter().cloned());
            }
        }
        for name in used {
            if let Some(info) = capture.all_args.get(&name)
                && seen_args.insert(name)
            {
                out.args.push(info.arg.clone());
            }
        }
        for secret in &capture.secrets {
            if seen_secrets.insert(secret.name.clone()) {
                out.secrets.push(secret.clone());
            }
        }
        for ssh in &capture.ssh {
            if seen_ssh.insert(ssh.name.clone()) {
                out.ssh.push(ssh.clone());
            }
        }
        pending.extend(deps[index].iter().rev());
    }
    out.args.sort_by_key(|a| a.location.start);
    out.secrets.sort_by_key(|s| s.location.start);
    out.ssh.sort_by_key(|s| s.location.start);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outline_follows_bases_and_dependencies_only() {
        let src = "\
# GO the Go version
ARG GO=1.22
# UNUSED not used by the target
ARG UNUSED=x
FROM golang:${GO} AS build
# FLAGS compiler flags
ARG FLAGS=-v
RUN --mount=type=secret,id=npm,required true
FROM alpine AS other
ARG OTHER
RUN --mount=type=ssh true
# app the application
FROM scratch AS app
COPY --from=build /out /
";
        let outline = outline(src, &PlanOptions::default()).unwrap();
        assert_eq!(outline.name.as_deref(), Some("app"));
        assert_eq!(outline.description, "the application");
        let args: Vec<(&str, Option<&str>, &str)> = outline
            .args
            .iter()
            .map(|a| (a.name.as_str(), a.value.as_deref(), a.description.as_str()))
            .collect();
        assert_eq!(
            args,
            [
                ("GO", Some("1.22"), "the Go version"),
                ("FLAGS", Some("-v"), "compiler flags")
            ]
        );
        assert_eq!(outline.secrets.len(), 1);
        assert!(outline.secrets[0].is_required);
        assert!(outline.ssh.is_empty());
        let other = outline_of(src, "other");
        assert_eq!(other.args[0].name, "OTHER");
        assert_eq!(other.ssh[0].name, "default");
        assert!(super::outline(src, &PlanOptions::default().target("nope")).is_err());
    }

    fn outline_of(src: &str, target: &str) -> Outline {
        outline(src, &PlanOptions::default().target(target)).unwrap()
    }
}
