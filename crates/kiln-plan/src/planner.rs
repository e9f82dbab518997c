//! Phase 1: [`plan`] turns a parsed Dockerfile into a [`BuildGraph`]: global ARGs, `FROM`
//! expansion, stage names and references, `--target` pruning, warnings.
//!
//! Mirrors BuildKit's `dockerfile2llb.toDispatchState` up to (not including) dispatch: only
//! the stages the target reaches are resolved, so a broken unrelated stage (a garbage base
//! reference, a bad `--from`) never fails the plan.

use std::collections::{BTreeSet, VecDeque};

use kiln_dockerfile::{
    ArgDecl, BudgetedLexer, Command, Dockerfile, Instruction, MountType, ShellLexer,
};
use kiln_oci::{ImageRef, Platform};

use crate::args::{EnvList, is_predefined_arg, platform_args};
use crate::error::{PlanError, PlanWarning};
use crate::graph::{
    BaseSource, BuildGraph, PlannedStage, SharedBudget, SourceRef, StageId, StageNames,
    normalize_context_name,
};
use crate::options::PlanOptions;

/// A stage as split from the instruction list.
struct RawStage<'a> {
    from: &'a Instruction,
    body: &'a [Instruction],
}

/// Plans a build: which stages run, in which order, from which bases.
///
/// Errors name the line and value at fault; stages the target does not need are never
/// resolved, so their errors cannot fail the plan (unless [`PlanOptions::all_stages`]).
pub fn plan(dockerfile: &Dockerfile, options: &PlanOptions) -> Result<BuildGraph, PlanError> {
    let (global_arg_instructions, stages) = split_stages(dockerfile)?;
    let budget = SharedBudget::default();
    let lexer = ShellLexer::new(dockerfile.escape).budgeted(&budget);
    let mut warnings: Vec<PlanWarning> = dockerfile
        .warnings
        .iter()
        .map(|w| PlanWarning::Syntax {
            message: w.message.clone(),
            span: w.span,
        })
        .collect();

    let names = stage_names(&stages, options, &mut warnings);
    let target = resolve_target(&names, options)?;
    let target_name = names.stages[target.0].clone().unwrap_or_default();

    let mut global_args = platform_args(
        &options.platform,
        &options.build_platform,
        &target_name,
        &options.build_args,
    );
    let mut declared: BTreeSet<String> = BTreeSet::new();
    for instruction in &global_arg_instructions {
        let Command::Arg(decls) = &instruction.command else {
            continue;
        };
        for decl in decls {
            declared.insert(decl.name.clone());
            if let Some(value) = global_arg_value(decl, &global_args, lexer, options, instruction)?
            {
                global_args.set(&decl.name, value);
            }
        }
    }

    // Discover the needed stages from the target (or all of them).
    let mut resolved: Vec<Option<Resolved>> = (0..stages.len()).map(|_| None).collect();
    let mut queue: VecDeque<usize> = if options.all_stages {
        (0..stages.len()).collect()
    } else {
        VecDeque::from([target.0])
    };
    while let Some(index) = queue.pop_front() {
        if resolved[index].is_some() {
            continue;
        }
        let stage = resolve_stage(index, &stages, &names, &global_args, lexer)?;
        queue.extend(stage.deps.iter().map(|d| d.0));
        resolved[index] = Some(stage);
    }

    let unregistered = count_unregistered_sources(&stages, &names);
    let single = stages.len() + unregistered == 1;
    let mut planned: Vec<PlannedStage> = Vec::new();
    for (index, stage) in resolved.into_iter().enumerate() {
        let Some(stage) = stage else { continue };
        let raw = &stages[index];
        let platform = match &stage.base {
            BaseSource::Stage(base) => planned
                .iter()
                .find(|p| p.id == *base)
                .map_or_else(|| options.platform.clone(), |p| p.platform.clone()),
            _ => match &stage.platform {
                Some(p) => p.clone(),
                None => options.platform.clone(),
            },
        };
        for instruction in raw.body.iter().chain(&stage.triggers) {
            collect_arg_names(instruction, &mut declared);
        }
        let progress_name = if single {
            String::new()
        } else {
            names.display(StageId(index))
        };
        let counts_from = matches!(
            stage.base,
            BaseSource::Image(_) | BaseSource::NamedContext(_)
        );
        let instructions = if stage.replaced {
            Vec::new()
        } else {
            raw.body.to_vec()
        };
        let step_total = usize::from(counts_from)
            + stage.triggers.len()
            + instructions.iter().filter(|i| counts_as_step(i)).count();
        planned.push(PlannedStage {
            id: StageId(index),
            name: names.stages[index].clone(),
            progress_name,
            base: stage.base,
            base_name: stage.base_name,
            platform,
            deps: stage.deps.into_iter().collect(),
            from: raw.from.clone(),
            triggers: stage.triggers,
            instructions,
            step_total,
        });
    }

    let unused: Vec<String> = options
        .build_args
        .keys()
        .filter(|k| !declared.contains(*k) && !is_predefined_arg(k))
        .cloned()
        .collect();
    if !unused.is_empty() {
        warnings.push(PlanWarning::UnusedBuildArgs { names: unused });
    }

    Ok(BuildGraph {
        stages: planned,
        target,
        warnings,
        global_args,
        build_args: options.build_args.clone(),
        platform: options.platform.clone(),
        escape: dockerfile.escape,
        names,
        budget,
    })
}

/// Splits the instruction list into global ARGs and stages.
fn split_stages(
    dockerfile: &Dockerfile,
) -> Result<(Vec<&Instruction>, Vec<RawStage<'_>>), PlanError> {
    let mut globals = Vec::new();
    let mut starts = Vec::new();
    for (i, instruction) in dockerfile.instructions.iter().enumerate() {
        match &instruction.command {
            Command::From(_) => starts.push(i),
            Command::Arg(_) if starts.is_empty() => globals.push(instruction),
            _ if starts.is_empty() => {
                return Err(PlanError::InstructionBeforeFrom {
                    instruction: instruction.keyword(),
                    span: instruction.span(),
                });
            }
            _ => {}
        }
    }
    if starts.is_empty() {
        return Err(PlanError::NoStages);
    }
    let all = &dockerfile.instructions;
    let stages = starts
        .iter()
        .enumerate()
        .map(|(n, &start)| {
            let end = starts.get(n + 1).copied().unwrap_or(all.len());
            RawStage {
                from: &all[start],
                body: &all[start + 1..end],
            }
        })
        .collect();
    Ok((globals, stages))
}

fn from_of(instruction: &Instruction) -> Option<&kiln_dockerfile::From> {
    match &instruction.command {
        Command::From(from) => Some(from),
        _ => None,
    }
}

/// Stage names, named-context replacements and the naming lints.
fn stage_names(
    stages: &[RawStage<'_>],
    options: &PlanOptions,
    warnings: &mut Vec<PlanWarning>,
) -> StageNames {
    let contexts: BTreeSet<String> = options
        .named_contexts
        .iter()
        .map(|n| normalize_context_name(n))
        .collect();
    let mut names = StageNames {
        contexts,
        ..StageNames::default()
    };
    let mut seen = BTreeSet::new();
    for (index, stage) in stages.iter().enumerate() {
        let name = from_of(stage.from).and_then(|f| f.stage_name.clone());
        if let Some(name) = &name {
            let span = stage.from.span();
            let syntax = &stage.from.syntax;
            if let (Some(as_kw), Some(written)) = (syntax.args.get(1), syntax.args.get(2)) {
                let from_lower = syntax.keyword == syntax.keyword.to_lowercase();
                let as_lower = as_kw.value == as_kw.value.to_lowercase();
                if from_lower != as_lower {
                    warnings.push(PlanWarning::FromAsCasing { span });
                }
                if written.value != written.value.to_lowercase() {
                    warnings.push(PlanWarning::StageNameCasing {
                        name: written.value.clone(),
                        span,
                    });
                }
            }
            if name == "scratch" || name == "context" {
                warnings.push(PlanWarning::ReservedStageName {
                    name: name.clone(),
                    span,
                });
            }
            if !seen.insert(name.clone()) {
                warnings.push(PlanWarning::DuplicateStageName {
                    name: name.clone(),
                    span,
                });
            }
            if names.contexts.contains(&normalize_context_name(name)) {
                names.replaced.insert(index);
            }
        }
        names.stages.push(name);
    }
    names
}

fn resolve_target(names: &StageNames, options: &PlanOptions) -> Result<StageId, PlanError> {
    match &options.target {
        None => Ok(StageId(names.stages.len() - 1)),
        Some(target) => names.find(target).ok_or_else(|| PlanError::UnknownTarget {
            target: target.clone(),
            available: names.stages.iter().flatten().cloned().collect(),
        }),
    }
}

/// A global ARG's value (BuildKit `buildMetaArgs`): the `--build-arg`, else the default
/// expanded with the args before it, else none.
fn global_arg_value(
    decl: &ArgDecl,
    env: &EnvList,
    lexer: BudgetedLexer<'_>,
    options: &PlanOptions,
    instruction: &Instruction,
) -> Result<Option<String>, PlanError> {
    if let Some(value) = options.build_args.get(&decl.name) {
        return Ok(Some(value.clone()));
    }
    let Some(default) = &decl.default else {
        return Ok(None);
    };
    lexer
        .process_word(default, env)
        .map(Some)
        .map_err(|source| PlanError::Expand {
            instruction: "ARG".into(),
            word: default.clone(),
            span: instruction.span(),
            source: Box::new(source),
        })
}

/// What resolving one needed stage found.
struct Resolved {
    base: BaseSource,
    base_name: String,
    platform: Option<Platform>,
    deps: BTreeSet<StageId>,
    triggers: Vec<Instruction>,
    replaced: bool,
}

fn resolve_stage(
    index: usize,
    stages: &[RawStage<'_>],
    names: &StageNames,
    global_args: &EnvList,
    lexer: BudgetedLexer<'_>,
) -> Result<Resolved, PlanError> {
    let raw = &stages[index];
    let span = raw.from.span();
    let from = from_of(raw.from).ok_or(PlanError::MalformedFrom { span })?;
    let expand = |word: &str| {
        lexer
            .process_word(word, global_args)
            .map_err(|source| PlanError::Expand {
                instruction: "FROM".into(),
                word: word.to_owned(),
                span,
                source: Box::new(source),
            })
    };
    let base_name = expand(&from.image)?;
    if base_name.is_empty() {
        return Err(PlanError::EmptyBaseName {
            expression: from.image.clone(),
            span,
        });
    }
    let platform = match &from.platform {
        None => None,
        Some(text) => {
            let value = expand(text)?;
            Some(
                value
                    .parse::<Platform>()
                    .map_err(|source| PlanError::InvalidPlatform {
                        value,
                        span,
                        source: Box::new(source),
                    })?,
            )
        }
    };
    if names.replaced.contains(&index) {
        let name = names.stages[index].clone().unwrap_or_default();
        return Ok(Resolved {
            base: BaseSource::NamedContext(name),
            base_name,
            platform,
            deps: BTreeSet::new(),
            triggers: Vec::new(),
            replaced: true,
        });
    }
    let mut deps = BTreeSet::new();
    let base = if base_name == "scratch" {
        BaseSource::Scratch
    } else if let Some(id) = names.find_base(&base_name, index) {
        deps.insert(id);
        BaseSource::Stage(id)
    } else if let Some(name) = names.context_for(&base_name) {
        BaseSource::NamedContext(name)
    } else {
        BaseSource::Image(ImageRef::parse(&base_name).map_err(|source| {
            PlanError::InvalidReference {
                reference: base_name.clone(),
                span,
                source,
            }
        })?)
    };
    let triggers = match &base {
        BaseSource::Stage(id) if !names.replaced.contains(&id.0) => stages[id.0]
            .body
            .iter()
            .filter_map(|i| match &i.command {
                Command::Onbuild(onbuild) => Some((*onbuild.trigger).clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    for instruction in raw.body.iter().chain(&triggers) {
        for source in instruction_sources(instruction, StageId(index), names)? {
            if let SourceRef::Stage(id) = source {
                deps.insert(id);
            }
        }
    }
    Ok(Resolved {
        base,
        base_name,
        platform,
        deps,
        triggers,
        replaced: false,
    })
}

/// The sources an instruction reads besides the context: `COPY --from`, `RUN --mount=from`.
pub(crate) fn instruction_sources(
    instruction: &Instruction,
    current: StageId,
    names: &StageNames,
) -> Result<Vec<SourceRef>, PlanError> {
    let span = instruction.span();
    match &instruction.command {
        Command::Copy(copy) => match &copy.from {
            Some(from) => Ok(vec![names.resolve_source(from, current, true, span)?]),
            None => Ok(Vec::new()),
        },
        Command::Run(run) => run
            .mounts
            .iter()
            .filter(|m| matches!(m.kind, MountType::Bind | MountType::Cache))
            .filter_map(|m| m.from.as_deref())
            .map(|from| names.resolve_source(from, current, false, span))
            .collect(),
        _ => Ok(Vec::new()),
    }
}

/// BuildKit adds a dispatch state for every `--from` or mount source that is not a stage
/// name; with more than one state, progress lines carry stage names.
fn count_unregistered_sources(stages: &[RawStage<'_>], names: &StageNames) -> usize {
    let mut count = 0;
    for stage in stages {
        for instruction in stage.body {
            match &instruction.command {
                Command::Copy(copy) => {
                    if let Some(from) = &copy.from
                        && names.find(from).is_none()
                        && from.parse::<usize>().is_err()
                    {
                        count += 1;
                    }
                }
                Command::Run(run) => {
                    count += run
                        .mounts
                        .iter()
                        .filter(|m| names.find(m.from.as_deref().unwrap_or("scratch")).is_none())
                        .count();
                }
                _ => {}
            }
        }
    }
    count
}

fn collect_arg_names(instruction: &Instruction, out: &mut BTreeSet<String>) {
    match &instruction.command {
        Command::Arg(decls) => out.extend(decls.iter().map(|d| d.name.clone())),
        Command::Onbuild(onbuild) => collect_arg_names(&onbuild.trigger, out),
        _ => {}
    }
}

/// Whether an instruction gets a `[name i/n]` progress step (BuildKit `cmdTotal`).
pub(crate) fn counts_as_step(instruction: &Instruction) -> bool {
    matches!(
        instruction.command,
        Command::Run(_) | Command::Copy(_) | Command::Add(_) | Command::Workdir(_)
    )
}
