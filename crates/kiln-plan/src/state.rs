//! Phase 2: [`StageState`], the pure state machine the executor drives through one stage once
//! the base's config is known. It keeps what BuildKit's dispatcher keeps per stage — the
//! expansion environment (base env, ARGs in scope, ENV), the image config being built,
//! WORKDIR, USER, SHELL — and turns each instruction into an expanded [`Step`].

use std::collections::{BTreeSet, VecDeque};

use kiln_dockerfile::{BudgetedLexer, Command, Instruction, ShellLexer, ShellOrExec, Span};
use kiln_oci::{ImageConfiguration, Platform};
use sha2::{Digest as _, Sha256};

use crate::args::{BuildArgs, ConfigEnvIndex, EnvList, is_proxy_arg};
use crate::config_edit::{ConfigEdit, apply_config_edit};
use crate::error::PlanError;
use crate::graph::SharedBudget;
use crate::graph::{BuildGraph, PlannedStage, SourceRef, StageId, StageNames, progress_label};
use crate::planner::{counts_as_step, instruction_sources};
use crate::step::{Action, Step, key_material};

/// BuildKit's default `PATH` for Linux images (`system.DefaultPathEnvUnix`), added when the
/// base config has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a stage starts from, known once the executor has resolved the base.
#[derive(Debug, Clone, Copy)]
pub enum StageBase<'a> {
    /// `FROM scratch`.
    Scratch,
    /// A pulled image or a named context's image config (its `OnBuild` triggers run first).
    Image(&'a ImageConfiguration),
    /// The finished state of the base stage (its env and ARGs carry over, as in BuildKit).
    Stage(&'a StageOutput),
}

/// The result of a finished stage: its image config and the expansion state a stage built
/// `FROM` it inherits.
#[derive(Debug, Clone, PartialEq)]
pub struct StageOutput {
    /// The image config (history and rootfs as the executor filled them in).
    pub image: ImageConfiguration,
    /// The platform the stage was built for.
    pub platform: Platform,
    env: EnvList,
    env_digest: EnvDigest,
    build_args: Vec<(String, Option<String>)>,
}

/// A digest of the expansion environment (proxy args left out) chained over every change to
/// it, so a step's key sees the environment in constant time instead of re-serializing all
/// of it (which made 100,000 `ENV` lines quadratic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EnvDigest([u8; 32]);

impl Default for EnvDigest {
    fn default() -> Self {
        Self(Sha256::digest(b"kiln.env").into())
    }
}

impl EnvDigest {
    fn set(&mut self, name: &str, value: &str) {
        if is_proxy_arg(name) {
            return;
        }
        let mut hasher = Sha256::new();
        hasher.update(self.0);
        for part in [name, value] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        self.0 = hasher.finalize().into();
    }

    fn hex(self) -> String {
        hex::encode(self.0)
    }
}

/// The expansion state of one stage; see the crate docs for the driving loop.
#[derive(Debug, Clone)]
pub struct StageState {
    stage: StageId,
    progress_name: String,
    platform: Platform,
    image: ImageConfiguration,
    /// The state env: base env, ARG values, ENV (BuildKit `d.state` env).
    env: EnvList,
    /// `env` as cache keys see it.
    env_digest: EnvDigest,
    /// Positions in `image.config.env`, for `ENV` in constant time.
    config_env_index: ConfigEnvIndex,
    /// What expansion may still produce in this build (shared by all its stages).
    budget: SharedBudget,
    /// ARGs declared in this stage (and the base stage), in order (BuildKit `d.buildArgs`).
    build_args: Vec<(String, Option<String>)>,
    global_args: EnvList,
    build_arg_values: BuildArgs,
    escape: char,
    names: StageNames,
    planned: BTreeSet<StageId>,
    queue: VecDeque<(Instruction, bool)>,
    step_index: usize,
    step_total: usize,
    cmd_set: bool,
    from_span: Span,
}

impl StageState {
    /// Starts a stage of `graph` on its resolved base.
    ///
    /// For an image base the config's `OnBuild` triggers are parsed and queued before the
    /// stage's instructions (and `OnBuild` is cleared in the new config); for a stage base
    /// the planner already put the base stage's `ONBUILD` instructions in
    /// [`PlannedStage::triggers`].
    pub fn new(
        graph: &BuildGraph,
        stage: &PlannedStage,
        base: StageBase<'_>,
    ) -> Result<Self, PlanError> {
        let (mut image, mut env, mut env_digest, build_args, platform) = match base {
            StageBase::Scratch => {
                let mut image = ImageConfiguration::new(&stage.platform);
                "/".clone_into(&mut image.config.working_dir);
                (
                    image,
                    EnvList::default(),
                    EnvDigest::default(),
                    Vec::new(),
                    stage.platform.clone(),
                )
            }
            StageBase::Image(config) => {
                let mut image = config.clone();
                image.created = None;
                (
                    image,
                    EnvList::default(),
                    EnvDigest::default(),
                    Vec::new(),
                    stage.platform.clone(),
                )
            }
            StageBase::Stage(output) => (
                output.image.clone(),
                output.env.clone(),
                output.env_digest,
                output.build_args.clone(),
                output.platform.clone(),
            ),
        };
        if image.os.is_empty() {
            image.os.clone_from(&platform.os);
            image.architecture.clone_from(&platform.architecture);
            image.variant.clone_from(&platform.variant);
        }
        // dispatchStages: make sure PATH is set (not on Windows).
        let has_path = image
            .config
            .env
            .iter()
            .any(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == "PATH");
        if !has_path && platform.os != "windows" {
            image.config.env.push(format!("PATH={DEFAULT_PATH}"));
        }
        for entry in &image.config.env {
            let (k, v) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
            env.set(k, v);
            env_digest.set(k, v);
        }
        // BuildKit `init`: a base stage's OnBuild does not carry over (its ONBUILD
        // instructions are the planner's `triggers`); an image's OnBuild runs first.
        let image_triggers = std::mem::take(&mut image.config.on_build);
        let image_triggers = if matches!(base, StageBase::Stage(_)) {
            Vec::new()
        } else {
            image_triggers
        };
        let mut queue = VecDeque::new();
        for trigger in &image_triggers {
            queue.push_back((parse_trigger(trigger, stage)?, true));
        }
        let image_trigger_count = queue.len();
        for trigger in &stage.triggers {
            queue.push_back((trigger.clone(), true));
        }
        for instruction in &stage.instructions {
            queue.push_back((instruction.clone(), false));
        }
        let step_index = usize::from(stage.from_progress().is_some());
        Ok(Self {
            stage: stage.id,
            progress_name: stage.progress_name.clone(),
            platform,
            image,
            env,
            env_digest,
            config_env_index: ConfigEnvIndex::default(),
            budget: graph.budget.clone(),
            build_args,
            global_args: graph.global_args.clone(),
            build_arg_values: graph.build_args.clone(),
            escape: graph.escape,
            names: graph.names.clone(),
            planned: graph.stages.iter().map(|s| s.id).collect(),
            queue,
            step_index,
            step_total: stage.step_total + image_trigger_count,
            cmd_set: false,
            from_span: stage.from.span(),
        })
    }

    /// Expands the next instruction (ONBUILD triggers first), applies its config edit to the
    /// state's image config and returns the step; `Ok(None)` when the stage is done.
    pub fn next_step(&mut self) -> Result<Option<Step>, PlanError> {
        let Some((instruction, is_onbuild)) = self.queue.pop_front() else {
            return Ok(None);
        };
        let span = if is_onbuild && instruction.span().is_empty() {
            self.from_span
        } else {
            instruction.span()
        };
        let mut step = self.dispatch(&instruction, span, is_onbuild)?;
        match &step.config_edit {
            Some(ConfigEdit::Env { vars }) => {
                for (k, v) in vars {
                    self.config_env_index.add(&mut self.image.config.env, k, v);
                }
            }
            Some(edit) => apply_config_edit(&mut self.image, edit),
            None => {}
        }
        if counts_as_step(&instruction) || is_onbuild {
            self.step_index += 1;
            let text = self.progress_text(&instruction, &step);
            let text = if is_onbuild {
                format!("ONBUILD {text}")
            } else {
                text
            };
            step.progress = Some(progress_label(
                &self.progress_name,
                self.step_index,
                self.step_total,
                &text,
            ));
        }
        Ok(Some(step))
    }

    /// Stages that queued `ONBUILD` triggers of a base *image* read (`COPY --from`,
    /// `RUN --mount=from`) besides [`PlannedStage::deps`]: the executor must wait for their
    /// outputs before driving this state (the plan could not know them before the base was
    /// pulled). References that do not resolve are reported by [`StageState::next_step`].
    pub fn trigger_stage_refs(&self) -> Vec<StageId> {
        let mut out = Vec::new();
        for (instruction, is_onbuild) in &self.queue {
            if !is_onbuild {
                continue;
            }
            if let Ok(sources) = instruction_sources(instruction, self.stage, &self.names) {
                for source in sources {
                    if let SourceRef::Stage(id) = source
                        && !out.contains(&id)
                    {
                        out.push(id);
                    }
                }
            }
        }
        out
    }

    /// Instructions left, triggers included.
    pub fn remaining(&self) -> usize {
        self.queue.len()
    }

    /// The stage being expanded.
    pub fn stage(&self) -> StageId {
        self.stage
    }

    /// The image config as built so far.
    pub fn image(&self) -> &ImageConfiguration {
        &self.image
    }

    /// The image config, for the executor to append history entries and `rootfs.diff_ids`
    /// (the state itself only edits `config` and `author`).
    pub fn image_mut(&mut self) -> &mut ImageConfiguration {
        &mut self.image
    }

    /// The expansion environment now (`K=V`: base env, ARGs in scope, ENV).
    pub fn env(&self) -> Vec<String> {
        self.env.to_env_strings()
    }

    /// The current working directory (absolute).
    pub fn workdir(&self) -> &str {
        self.current_dir()
    }

    /// Ends the stage; the output is what a stage built `FROM` this one starts with.
    pub fn finish(self) -> StageOutput {
        StageOutput {
            image: self.image,
            platform: self.platform,
            env: self.env,
            env_digest: self.env_digest,
            build_args: self.build_args,
        }
    }

    pub(crate) fn lexer(&self) -> ShellLexer {
        ShellLexer::new(self.escape)
    }

    /// [`Self::lexer`] charging the build's expansion budget.
    pub(crate) fn budgeted(&self, lexer: ShellLexer) -> BudgetedLexer<'_> {
        lexer.budgeted(&self.budget)
    }

    pub(crate) fn current_dir(&self) -> &str {
        if self.image.config.working_dir.is_empty() {
            "/"
        } else {
            &self.image.config.working_dir
        }
    }

    pub(crate) fn expand(
        &self,
        word: &str,
        instruction: &str,
        span: Span,
    ) -> Result<String, PlanError> {
        self.budgeted(self.lexer())
            .process_word(word, &self.env)
            .map_err(|source| PlanError::Expand {
                instruction: instruction.to_owned(),
                word: word.to_owned(),
                span,
                source: Box::new(source),
            })
    }

    pub(crate) fn expand_opt(
        &self,
        word: Option<&String>,
        instruction: &str,
        span: Span,
    ) -> Result<Option<String>, PlanError> {
        word.map(|w| self.expand(w, instruction, span)).transpose()
    }

    /// The shell-form wrapper: SHELL, else `/bin/sh -c` (`cmd /S /C` on Windows).
    pub(crate) fn with_shell(&self, command: &str) -> Vec<String> {
        let mut argv = if self.image.config.shell.is_empty() {
            if self.image.os == "windows" {
                vec!["cmd".to_owned(), "/S".to_owned(), "/C".to_owned()]
            } else {
                vec!["/bin/sh".to_owned(), "-c".to_owned()]
            }
        } else {
            self.image.config.shell.clone()
        };
        argv.push(command.to_owned());
        argv
    }

    pub(crate) fn argv_of(&self, cmd: &ShellOrExec) -> Vec<String> {
        match cmd {
            ShellOrExec::Shell(text) => self.with_shell(text),
            ShellOrExec::Exec(argv) => argv.clone(),
        }
    }

    /// ARGs in scope for a RUN: each declared name once (first position, last value), its
    /// value from the state env (so an ENV of the same name shows), proxies excluded
    /// (BuildKit `runCommandString`).
    pub(crate) fn args_in_scope(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut positions: std::collections::HashMap<&str, usize> =
            std::collections::HashMap::new();
        for (name, value) in &self.build_args {
            if is_proxy_arg(name) {
                continue;
            }
            let v = self
                .env
                .get(name)
                .map(str::to_owned)
                .or_else(|| value.clone())
                .unwrap_or_default();
            if let Some(&position) = positions.get(name.as_str()) {
                out[position].1 = v;
            } else {
                positions.insert(name, out.len());
                out.push((name.clone(), v));
            }
        }
        out
    }

    /// The process env of a RUN: the state env plus proxy build args not set otherwise.
    pub(crate) fn run_env(&self) -> Vec<String> {
        let mut env = self.env.to_env_strings();
        for (name, value) in &self.build_arg_values {
            if is_proxy_arg(name) && !self.env.contains(name) {
                env.push(format!("{name}={value}"));
            }
        }
        env
    }

    /// The state env without proxy args, as a canonical key setting: the digest chained
    /// over its changes (constant time per step).
    pub(crate) fn key_env(&self) -> String {
        self.env_digest.hex()
    }

    pub(crate) fn key_settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("env", self.key_env()),
            ("user", self.image.config.user.clone()),
            ("workdir", self.current_dir().to_owned()),
            (
                "shell",
                serde_json::to_string(&self.image.config.shell).unwrap_or_default(),
            ),
        ]
    }

    pub(crate) fn resolve_source(
        &self,
        value: &str,
        allow_index: bool,
        span: Span,
    ) -> Result<SourceRef, PlanError> {
        let source = self
            .names
            .resolve_source(value, self.stage, allow_index, span)?;
        if let SourceRef::Stage(id) = source
            && !self.planned.contains(&id)
        {
            return Err(PlanError::TriggerStageNotPlanned {
                trigger: value.to_owned(),
                stage: self.names.display(self.stage),
                name: self.names.display(id),
            });
        }
        Ok(source)
    }

    /// Sets an ARG (BuildKit `dispatchArg`) and returns its `(name, value)` for history.
    pub(crate) fn declare_arg(
        &mut self,
        name: &str,
        default: Option<&String>,
        span: Span,
    ) -> Result<(String, Option<String>), PlanError> {
        let value = if let Some(v) = self.build_arg_values.get(name) {
            Some(v.clone())
        } else if let Some(default) = default {
            Some(self.expand(default, "ARG", span)?)
        } else {
            self.global_args.get(name).map(str::to_owned)
        };
        if let Some(v) = &value {
            self.env_digest.set(name, v);
            self.env.set(name, v.clone());
        }
        self.build_args.push((name.to_owned(), value.clone()));
        Ok((name.to_owned(), value))
    }

    pub(crate) fn set_env(&mut self, name: &str, value: &str) {
        self.env_digest.set(name, value);
        self.env.set(name, value);
    }

    pub(crate) fn mark_cmd_set(&mut self) -> bool {
        let was_set = self.cmd_set;
        self.cmd_set = true;
        was_set
    }

    pub(crate) fn cmd_is_set(&self) -> bool {
        self.cmd_set
    }

    /// The platform the stage builds for.
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    pub(crate) fn env_list(&self) -> &EnvList {
        &self.env
    }

    /// The progress text of a counted step: the instruction as written, variables in scope
    /// expanded (BuildKit `processCmdEnv`), keyword uppercased.
    fn progress_text(&self, instruction: &Instruction, step: &Step) -> String {
        let original = instruction.syntax.original.trim();
        let lexer = match instruction.command {
            Command::Run(_) => self.lexer().raw_quotes(true).skip_unset_env(true),
            _ => self.lexer(),
        };
        // Best effort: a limit hit here shows the text as written (the budget is charged
        // either way, so a Dockerfile cannot make every step redo a big failing expansion).
        let expanded = self
            .budgeted(lexer)
            .process_word(original, &self.env)
            .unwrap_or_else(|_| original.to_owned());
        let mut text = uppercase_keyword(&expanded);
        if let Command::Run(run) = &instruction.command
            && let Action::Run(_) = &step.action
            && run.heredocs.len() == 1
            && let ShellOrExec::Shell(cmd) = &run.cmd
            && is_single_heredoc(cmd)
        {
            text = format!("{text} ({})", summarize_heredoc(&run.heredocs[0].content));
        }
        text
    }

    pub(crate) fn key_for(&self, cache_text: &str, args: &[(String, String)]) -> crate::KeyInputs {
        key_material(cache_text, &self.platform, args, &self.key_settings())
    }
}

/// Whether a shell command line is just one heredoc opener (`<<EOF`, `<<-"EOF"`), BuildKit
/// `MustParseHeredoc`: `^(\d*)<<(-?)\s*([^<]*)$`.
pub(crate) fn is_single_heredoc(cmd: &str) -> bool {
    let digits = cmd.trim_start_matches(|c: char| c.is_ascii_digit());
    digits
        .strip_prefix("<<")
        .is_some_and(|rest| !rest.contains('<') && !rest.trim_start_matches('-').trim().is_empty())
}

/// BuildKit `summarizeHeredoc`: the first line of the trimmed body, `...` when there are more.
fn summarize_heredoc(doc: &str) -> String {
    let doc = doc.trim();
    let mut lines = doc.split('\n');
    let first = lines
        .next()
        .unwrap_or_default()
        .trim_end_matches('\r')
        .to_owned();
    if lines.next().is_some() {
        format!("{first}...")
    } else {
        first
    }
}

/// BuildKit `uppercaseCmd`: the first word uppercased.
fn uppercase_keyword(text: &str) -> String {
    match text.split_once(' ') {
        Some((kw, rest)) => format!("{} {rest}", kw.to_uppercase()),
        None => text.to_uppercase(),
    }
}

/// Parses one `OnBuild` trigger of a base image (BuildKit `initOnBuildTriggers`).
fn parse_trigger(trigger: &str, stage: &PlannedStage) -> Result<Instruction, PlanError> {
    let invalid = |reason: String| PlanError::InvalidTrigger {
        trigger: trigger.to_owned(),
        stage: stage
            .name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", stage.id)),
        reason,
    };
    let text = format!("FROM scratch\n{trigger}\n");
    let parsed = kiln_dockerfile::parse(&text).map_err(|e| invalid(e.to_string()))?;
    match parsed.instructions.as_slice() {
        [_, one]
            if !matches!(
                one.command,
                Command::From(_) | Command::Onbuild(_) | Command::Maintainer(_)
            ) =>
        {
            let mut one = one.clone();
            // The trigger's text is not in the Dockerfile: point at the stage's FROM.
            one.syntax.span = Span::default();
            Ok(one)
        }
        [_, _] => Err(invalid(
            "FROM, MAINTAINER and ONBUILD are not allowed as triggers".into(),
        )),
        _ => Err(invalid("a trigger must be a single instruction".into())),
    }
}

/// Check the sources of a trigger or instruction resolve (used by dispatch).
pub(crate) fn sources_of(
    state: &StageState,
    instruction: &Instruction,
) -> Result<Vec<SourceRef>, PlanError> {
    let sources = instruction_sources(instruction, state.stage, &state.names)?;
    for source in &sources {
        if let SourceRef::Stage(id) = source
            && !state.planned.contains(id)
        {
            return Err(PlanError::TriggerStageNotPlanned {
                trigger: instruction.syntax.original.clone(),
                stage: state.names.display(state.stage),
                name: state.names.display(*id),
            });
        }
    }
    Ok(sources)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heredoc_detection_and_summary() {
        assert!(is_single_heredoc("<<EOF"));
        assert!(is_single_heredoc("<<-\"EOF\""));
        assert!(!is_single_heredoc("python3 <<EOF"));
        assert!(!is_single_heredoc("<<EOF <<EOT"));
        assert_eq!(summarize_heredoc("\n  echo a\necho b\n"), "echo a...");
        assert_eq!(summarize_heredoc("echo a\n"), "echo a");
        assert_eq!(uppercase_keyword("run echo"), "RUN echo");
    }
}
