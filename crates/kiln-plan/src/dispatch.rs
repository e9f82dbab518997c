//! Expansion of each instruction into a [`Step`] (BuildKit `dispatch*` in
//! `dockerfile2llb/convert.go`, `convert_copy.go`, `convert_runmount.go`).

use kiln_dockerfile::{
    Command, Healthcheck as HealthcheckInstruction, Instruction, KeyValue, Mount, MountType, Run,
    ShellLexer, ShellOrExec, Span,
};
use std::fmt::Write as _;

use kiln_oci::Healthcheck;

use crate::config_edit::ConfigEdit;
use crate::error::PlanError;
use crate::expose::parse_ports;
use crate::graph::SourceRef;
use crate::rules::{clean, is_valid_signal, normalize_path, path_relative_to_workdir};
use crate::state::{StageState, is_single_heredoc, sources_of};
use crate::step::{Action, CopyAction, InlineFile, RunAction, RunMount, Step};

/// Where BuildKit mounts a heredoc script with a shebang.
const HEREDOC_PIPES_DIR: &str = "/dev/pipes/";
/// Mode of a heredoc script file.
const HEREDOC_SCRIPT_MODE: u32 = 0o755;
/// Mode of a COPY/ADD heredoc source file.
const HEREDOC_SOURCE_MODE: u32 = 0o644;
/// Default mode of a secret file.
const SECRET_MODE: u32 = 0o400;
/// Default mode of an SSH agent socket.
const SSH_MODE: u32 = 0o600;

impl StageState {
    pub(crate) fn dispatch(
        &mut self,
        instruction: &Instruction,
        span: Span,
        is_onbuild: bool,
    ) -> Result<Step, PlanError> {
        let keyword = instruction.keyword();
        let config =
            |state: &Self, edit: ConfigEdit| state.config_step(edit, instruction, span, is_onbuild);
        match &instruction.command {
            Command::Env(pairs) => {
                let vars = self.expand_pairs(pairs, &keyword, span)?;
                for (k, v) in &vars {
                    self.set_env(k, v);
                }
                Ok(config(self, ConfigEdit::Env { vars }))
            }
            Command::Label(pairs) => {
                let labels = self.expand_pairs(pairs, &keyword, span)?;
                Ok(config(self, ConfigEdit::Label { labels }))
            }
            Command::Expose(ports) => {
                let lexer = self.budgeted(self.lexer());
                let mut words = Vec::new();
                for port in ports {
                    words.extend(
                        lexer
                            .process_words(port, self.env_list())
                            .map_err(|source| PlanError::Expand {
                                instruction: keyword.clone(),
                                word: port.clone(),
                                span,
                                source: Box::new(source),
                            })?,
                    );
                }
                let ports = parse_ports(&words)
                    .map_err(|source| PlanError::InvalidPort { span, source })?;
                Ok(config(self, ConfigEdit::Expose { ports }))
            }
            Command::User(user) => {
                let user = self.expand(user, &keyword, span)?;
                Ok(config(self, ConfigEdit::User { user }))
            }
            Command::Workdir(path) => {
                let path = self.expand(path, &keyword, span)?;
                let path = normalize_path(self.current_dir(), &path, false);
                let mut step = config(self, ConfigEdit::Workdir { path: path.clone() });
                if path != "/" {
                    step.action = Action::MakeDir {
                        path,
                        user: self.image().config.user.clone(),
                    };
                    step.empty_layer = false;
                }
                Ok(step)
            }
            Command::Volume(paths) => {
                let mut out = Vec::with_capacity(paths.len());
                for p in paths {
                    let v = self.expand(p, &keyword, span)?;
                    if v.is_empty() {
                        return Err(invalid(
                            &keyword,
                            "VOLUME specified can not be an empty string",
                            span,
                        ));
                    }
                    out.push(v);
                }
                Ok(config(self, ConfigEdit::Volume { paths: out }))
            }
            Command::StopSignal(signal) => {
                let signal = self.expand(signal, &keyword, span)?;
                if !is_valid_signal(&signal) {
                    return Err(invalid(
                        &keyword,
                        &format!(
                            "invalid signal `{signal}`: use a name such as SIGTERM or a number"
                        ),
                        span,
                    ));
                }
                Ok(config(self, ConfigEdit::StopSignal { signal }))
            }
            Command::Shell(shell) => Ok(config(
                self,
                ConfigEdit::Shell {
                    shell: shell.clone(),
                },
            )),
            Command::Cmd(cmd) => {
                let argv = self.argv_of(cmd);
                self.mark_cmd_set();
                Ok(config(self, ConfigEdit::Cmd { argv }))
            }
            Command::Entrypoint(cmd) => {
                let argv = self.argv_of(cmd);
                let resets_cmd = !self.cmd_is_set();
                Ok(config(self, ConfigEdit::Entrypoint { argv, resets_cmd }))
            }
            Command::Healthcheck(check) => {
                let check = healthcheck(check);
                Ok(config(self, ConfigEdit::Healthcheck { check }))
            }
            Command::Maintainer(name) => {
                Ok(config(self, ConfigEdit::Maintainer { name: name.clone() }))
            }
            Command::Onbuild(onbuild) => Ok(config(
                self,
                ConfigEdit::Onbuild {
                    trigger: onbuild.expression.clone(),
                },
            )),
            Command::Arg(decls) => {
                let mut args = Vec::with_capacity(decls.len());
                for decl in decls {
                    args.push(self.declare_arg(&decl.name, decl.default.as_ref(), span)?);
                }
                let names: Vec<String> = args.iter().map(|(k, _)| k.clone()).collect();
                let key_args: Vec<(String, String)> = args
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
                    .collect();
                let mut step = config(self, ConfigEdit::Arg { args });
                // The values go to the key's args, so a changed value reads "build arg X
                // changed", not "instruction changed".
                step.cache_text = format!("ARG {}", names.join(" "));
                step.key = self.key_for(&step.cache_text, &key_args);
                Ok(step)
            }
            Command::Run(run) => self.dispatch_run(run, instruction, span, is_onbuild),
            Command::Copy(copy) => {
                let from = match &copy.from {
                    Some(value) => self.resolve_source(value, true, span)?,
                    None => SourceRef::Context,
                };
                let raw = RawCopy {
                    is_add: false,
                    sources: &copy.sources,
                    heredocs: &copy.heredocs,
                    dest: &copy.dest,
                    chown: copy.chown.as_ref(),
                    chmod: copy.chmod.as_ref(),
                    checksum: None,
                };
                let mut action = self.expand_copy(&raw, &keyword, span)?;
                action.from = from;
                action.link = copy.link;
                action.parents = copy.parents;
                action.exclude.clone_from(&copy.exclude);
                Ok(self.copy_step(action, instruction, span, is_onbuild))
            }
            Command::Add(add) => {
                let raw = RawCopy {
                    is_add: true,
                    sources: &add.sources,
                    heredocs: &add.heredocs,
                    dest: &add.dest,
                    chown: add.chown.as_ref(),
                    chmod: add.chmod.as_ref(),
                    checksum: add.checksum.as_ref(),
                };
                let mut action = self.expand_copy(&raw, &keyword, span)?;
                action.link = add.link;
                action.exclude.clone_from(&add.exclude);
                action.keep_git_dir = add.keep_git_dir;
                action.unpack = add.unpack;
                Ok(self.copy_step(action, instruction, span, is_onbuild))
            }
            Command::From(_) => Err(invalid(&keyword, "FROM inside a stage", span)),
            _ => Err(invalid(
                &keyword,
                "instruction not supported by this kiln version",
                span,
            )),
        }
    }

    fn config_step(
        &self,
        edit: ConfigEdit,
        instruction: &Instruction,
        span: Span,
        is_onbuild: bool,
    ) -> Step {
        let cache_text = edit.cache_text();
        let key = self.key_for(&cache_text, &[]);
        Step {
            created_by: edit.created_by(),
            config_edit: Some(edit),
            empty_layer: true,
            ..bare_step(instruction, span, is_onbuild, cache_text, key)
        }
    }

    fn expand_pairs(
        &self,
        pairs: &[KeyValue],
        keyword: &str,
        span: Span,
    ) -> Result<Vec<(String, String)>, PlanError> {
        pairs
            .iter()
            .map(|kv| {
                Ok((
                    self.expand(&kv.key, keyword, span)?,
                    self.expand(&kv.value, keyword, span)?,
                ))
            })
            .collect()
    }

    fn dispatch_run(
        &mut self,
        run: &Run,
        instruction: &Instruction,
        span: Span,
        is_onbuild: bool,
    ) -> Result<Step, PlanError> {
        let sources = sources_of(self, instruction)?;
        let mut inline_files = Vec::new();
        let mut args = match &run.cmd {
            ShellOrExec::Shell(cmd) => vec![cmd.clone()],
            ShellOrExec::Exec(argv) => argv.clone(),
        };
        let prepend_shell = !run.cmd.is_exec();
        if !run.heredocs.is_empty() && prepend_shell {
            let cmd = args.first().cloned().unwrap_or_default();
            if is_single_heredoc(&cmd) {
                let doc = &run.heredocs[0];
                let data = doc.body().into_owned();
                if self.image().os != "windows" && data.starts_with("#!") {
                    let path = format!("{HEREDOC_PIPES_DIR}{}", doc.name);
                    inline_files.push(InlineFile {
                        path: path.clone(),
                        content: data,
                        mode: HEREDOC_SCRIPT_MODE,
                    });
                    args = vec![path];
                } else {
                    args = vec![data];
                }
            } else {
                let mut script = cmd;
                for doc in &run.heredocs {
                    script.push('\n');
                    script.push_str(&doc.content);
                    script.push_str(&doc.name);
                }
                args = vec![script];
            }
        }
        let argv = if prepend_shell {
            self.with_shell(&args.join(" "))
        } else {
            args
        };
        let mut mounts = Vec::with_capacity(run.mounts.len());
        let mut ssh_index = 0;
        for (mount, resolved) in run.mounts.iter().zip(mount_sources(run, &sources)) {
            mounts.push(self.expand_mount(mount, resolved, &mut ssh_index, span)?);
        }
        let args_in_scope = self.args_in_scope();
        let mut created_by = String::from("RUN ");
        if !args_in_scope.is_empty() {
            let _ = write!(created_by, "|{} ", args_in_scope.len());
            for (k, v) in &args_in_scope {
                let _ = write!(created_by, "{k}={v} ");
            }
        }
        created_by.push_str(&argv.join(" "));
        created_by.push_str(" # buildkit");
        let action = RunAction {
            argv,
            env: self.run_env(),
            args_in_scope: args_in_scope.clone(),
            user: self.image().config.user.clone(),
            workdir: self.current_dir().to_owned(),
            mounts,
            network: run.network,
            security: run.security,
            inline_files,
        };
        let cache_text = serde_json::to_string(&serde_json::json!({
            "run": action.argv,
            "mounts": action.mounts,
            "network": action.network,
            "security": action.security,
            "files": action.inline_files,
        }))
        .unwrap_or_default();
        let key = self.key_for(&cache_text, &args_in_scope);
        Ok(Step {
            action: Action::Run(action),
            created_by: Some(created_by),
            ..bare_step(instruction, span, is_onbuild, cache_text, key)
        })
    }

    fn expand_mount(
        &self,
        mount: &Mount,
        from: SourceRef,
        ssh_index: &mut usize,
        span: Span,
    ) -> Result<RunMount, PlanError> {
        let mount = if mount.needs_expansion {
            let lexer = self.budgeted(self.lexer());
            let env = self.env_list();
            let mut expand = |word: &str| lexer.process_word(word, env);
            Mount::parse(&mount.spec, &mut expand)
                .map_err(|reason| invalid("RUN --mount", &reason.to_string(), span))?
        } else {
            mount.clone()
        };
        let target = mount.target.clone().unwrap_or_default();
        let absolute_target = |target: &str| -> Result<String, PlanError> {
            let joined = if target.starts_with('/') {
                clean(target)
            } else {
                clean(&format!("{}/{target}", self.current_dir()))
            };
            if joined == "/" {
                return Err(invalid(
                    "RUN --mount",
                    &format!("invalid mount target `{target}`"),
                    span,
                ));
            }
            Ok(joined)
        };
        let source_path = clean(&format!("/{}", mount.source.clone().unwrap_or_default()));
        Ok(match mount.kind {
            MountType::Bind => RunMount::Bind {
                target: absolute_target(&target)?,
                from,
                source: source_path,
                read_write: !mount.read_only,
            },
            MountType::Cache => RunMount::Cache {
                id: mount
                    .id
                    .clone()
                    .unwrap_or_else(|| kiln_oci::clean_path(&target)),
                target: absolute_target(&target)?,
                sharing: mount
                    .sharing
                    .unwrap_or(kiln_dockerfile::CacheSharing::Shared),
                from: if matches!(from, SourceRef::Context) {
                    SourceRef::Scratch
                } else {
                    from
                },
                source: source_path,
                read_only: mount.read_only,
                mode: mount.mode,
                uid: mount.uid,
                gid: mount.gid,
            },
            MountType::Tmpfs => RunMount::Tmpfs {
                target: absolute_target(&target)?,
                size: mount.size_limit,
            },
            MountType::Secret => {
                let id = mount
                    .source
                    .clone()
                    .or_else(|| mount.id.clone())
                    .or_else(|| mount.target.as_deref().map(base_name))
                    .ok_or_else(|| {
                        invalid(
                            "RUN --mount",
                            "a secret mount needs id, source or target",
                            span,
                        )
                    })?;
                let target = match (&mount.target, &mount.env) {
                    (Some(t), _) => Some(t.clone()),
                    (None, Some(_)) => None,
                    (None, None) => Some(format!("/run/secrets/{}", base_name(&id))),
                };
                RunMount::Secret {
                    id,
                    target,
                    env: mount.env.clone(),
                    required: mount.required,
                    mode: mount.mode.unwrap_or(SECRET_MODE),
                    uid: mount.uid.unwrap_or(0),
                    gid: mount.gid.unwrap_or(0),
                }
            }
            MountType::Ssh => {
                let target = mount
                    .target
                    .clone()
                    .unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{ssh_index}"));
                *ssh_index += 1;
                RunMount::Ssh {
                    id: mount.id.clone().unwrap_or_else(|| "default".to_owned()),
                    target,
                    required: mount.required,
                    mode: mount.mode.unwrap_or(SSH_MODE),
                    uid: mount.uid.unwrap_or(0),
                    gid: mount.gid.unwrap_or(0),
                }
            }
        })
    }

    fn expand_copy(
        &self,
        raw: &RawCopy<'_>,
        keyword: &str,
        span: Span,
    ) -> Result<CopyAction, PlanError> {
        let sources = raw
            .sources
            .iter()
            .map(|s| self.expand(s, keyword, span))
            .collect::<Result<Vec<_>, _>>()?;
        let dest =
            path_relative_to_workdir(self.current_dir(), &self.expand(raw.dest, keyword, span)?);
        let raw_lexer = self.budgeted(ShellLexer::new('\\').skip_process_quotes(true));
        let mut inline_sources = Vec::with_capacity(raw.heredocs.len());
        for doc in raw.heredocs {
            let content = if doc.expand {
                raw_lexer
                    .process_word(&doc.data, self.env_list())
                    .map_err(|source| PlanError::Expand {
                        instruction: keyword.to_owned(),
                        word: doc.path.clone(),
                        span,
                        source: Box::new(source),
                    })?
            } else {
                doc.data.clone()
            };
            inline_sources.push(InlineFile {
                path: doc.path.clone(),
                content,
                mode: HEREDOC_SOURCE_MODE,
            });
        }
        let chown = self
            .expand_opt(raw.chown, keyword, span)?
            .filter(|s| !s.is_empty());
        let chmod = self
            .expand_opt(raw.chmod, keyword, span)?
            .filter(|s| !s.is_empty());
        if let Some(mode) = &chmod {
            validate_chmod(mode).map_err(|reason| invalid(keyword, &reason.to_string(), span))?;
        }
        let checksum = self
            .expand_opt(raw.checksum, keyword, span)?
            .filter(|s| !s.is_empty());
        if checksum.is_some() {
            if sources.len() != 1 {
                return Err(invalid(
                    keyword,
                    "checksum can't be specified for multiple sources",
                    span,
                ));
            }
            if !is_remote(&sources[0]) {
                return Err(invalid(
                    keyword,
                    "checksum requires HTTP(S) or Git sources",
                    span,
                ));
            }
        }
        Ok(CopyAction {
            is_add: raw.is_add,
            sources,
            inline_sources,
            dest,
            from: SourceRef::Context,
            chown,
            chmod,
            link: false,
            parents: false,
            exclude: Vec::new(),
            checksum,
            keep_git_dir: None,
            unpack: None,
        })
    }

    fn copy_step(
        &self,
        action: CopyAction,
        instruction: &Instruction,
        span: Span,
        is_onbuild: bool,
    ) -> Step {
        let created_by = copy_history(&action, &self.dest_as_written(instruction));
        let cache_text = serde_json::to_string(&action).unwrap_or_default();
        let key = self.key_for(&cache_text, &[]);
        Step {
            action: Action::Copy(action),
            created_by: Some(created_by),
            ..bare_step(instruction, span, is_onbuild, cache_text, key)
        }
    }

    /// The destination of a COPY/ADD expanded but not joined to WORKDIR (history text).
    fn dest_as_written(&self, instruction: &Instruction) -> String {
        let dest = match &instruction.command {
            Command::Copy(c) => &c.dest,
            Command::Add(a) => &a.dest,
            _ => return String::new(),
        };
        self.budgeted(self.lexer())
            .process_word(dest, self.env_list())
            .unwrap_or_else(|_| dest.clone())
    }
}

/// Unexpanded COPY/ADD fields shared by both.
struct RawCopy<'a> {
    is_add: bool,
    sources: &'a [String],
    heredocs: &'a [kiln_dockerfile::HeredocSource],
    dest: &'a str,
    chown: Option<&'a String>,
    chmod: Option<&'a String>,
    checksum: Option<&'a String>,
}

/// BuildKit `dispatchCopy` history: `COPY [--parents] [--chown=…] [--chmod=…] src… [<<doc…]
/// dest # buildkit` (no `--from`, no `--link`).
fn copy_history(action: &CopyAction, dest_written: &str) -> String {
    let mut s = String::from(if action.is_add { "ADD" } else { "COPY" });
    if action.parents {
        s.push_str(" --parents");
    }
    if let Some(chown) = &action.chown {
        let _ = write!(s, " --chown={chown}");
    }
    if let Some(chmod) = &action.chmod {
        let _ = write!(s, " --chmod={chmod}");
    }
    for src in &action.sources {
        s.push(' ');
        s.push_str(src);
    }
    for doc in &action.inline_sources {
        s.push_str(" <<");
        s.push_str(&doc.path);
    }
    s.push(' ');
    s.push_str(dest_written);
    s.push_str(" # buildkit");
    s
}

/// The resolved source of each mount, in order (stage sources come from the planner's
/// resolution; `from`-less binds read the context).
fn mount_sources(run: &Run, resolved: &[SourceRef]) -> Vec<SourceRef> {
    let mut resolved = resolved.iter();
    run.mounts
        .iter()
        .map(|m| match (m.kind, &m.from) {
            (MountType::Bind | MountType::Cache, Some(_)) => {
                resolved.next().cloned().unwrap_or(SourceRef::Scratch)
            }
            (MountType::Cache, None) => SourceRef::Scratch,
            _ => SourceRef::Context,
        })
        .collect()
}

fn healthcheck(check: &HealthcheckInstruction) -> Healthcheck {
    let nanos = |d: std::time::Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    match check {
        HealthcheckInstruction::None => Healthcheck {
            test: vec!["NONE".to_owned()],
            ..Healthcheck::default()
        },
        HealthcheckInstruction::Cmd(cmd) => {
            let test = match &cmd.test {
                ShellOrExec::Shell(text) => vec!["CMD-SHELL".to_owned(), text.clone()],
                ShellOrExec::Exec(argv) => {
                    let mut t = vec!["CMD".to_owned()];
                    t.extend(argv.iter().cloned());
                    t
                }
            };
            Healthcheck {
                test,
                interval: nanos(cmd.interval),
                timeout: nanos(cmd.timeout),
                start_period: nanos(cmd.start_period),
                start_interval: nanos(cmd.start_interval),
                retries: i64::from(cmd.retries),
            }
        }
    }
}

fn invalid(instruction: &str, reason: &str, span: Span) -> PlanError {
    PlanError::InvalidInstruction {
        instruction: instruction.to_owned(),
        reason: reason.to_owned(),
        span,
    }
}

fn base_name(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_owned()
}

fn is_remote(source: &str) -> bool {
    source.starts_with("http://")
        || source.starts_with("https://")
        || source.starts_with("git@")
        || source.starts_with("git://")
        || std::path::Path::new(source.split('#').next().unwrap_or(source))
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("git"))
}

/// Why a `--chmod` value is refused; the texts are BuildKit's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum ChmodError {
    #[error("invalid chmod parameter: '{0}'. it should be octal string and between 0 and 07777")]
    OctalOutOfRange(String),
    #[error("invalid chmod parameter: '{0}': not an octal or symbolic mode")]
    NotAMode(String),
}

/// BuildKit `dispatchCopy` chmod check: octal up to 07777, or a symbolic mode.
fn validate_chmod(mode: &str) -> Result<(), ChmodError> {
    const MAX_MODE: u32 = 0o7777;
    if mode.bytes().all(|b| b.is_ascii_digit()) {
        return match u32::from_str_radix(mode, 8) {
            Ok(m) if m <= MAX_MODE => Ok(()),
            _ => Err(ChmodError::OctalOutOfRange(mode.to_owned())),
        };
    }
    let symbolic = mode.split(',').all(|clause| {
        let ops = clause.trim_start_matches(['u', 'g', 'o', 'a']);
        !ops.is_empty()
            && ops.starts_with(['+', '-', '='])
            && ops.chars().all(|c| "+-=rwxXstugo".contains(c))
    });
    if symbolic {
        Ok(())
    } else {
        Err(ChmodError::NotAMode(mode.to_owned()))
    }
}

/// A step for `instruction` with its cache text and key and nothing else (no action, config
/// edit or history, adds a layer); callers set the rest with struct update syntax.
fn bare_step(
    instruction: &Instruction,
    span: Span,
    is_onbuild: bool,
    cache_text: String,
    key: crate::KeyInputs,
) -> Step {
    Step {
        action: Action::None,
        config_edit: None,
        created_by: None,
        empty_layer: false,
        progress: None,
        source_text: instruction.syntax.original.trim().to_owned(),
        span,
        is_onbuild,
        cache_text,
        key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert!(validate_chmod("755").is_ok() && validate_chmod("u+x,go-w").is_ok());
        assert!(
            validate_chmod("8").is_err()
                && validate_chmod("17777").is_err()
                && validate_chmod("abc").is_err()
        );
    }
}
