//! The per-instruction rules BuildKit runs while dispatching a stage (`dispatch`).

use kiln_dockerfile::{Command, Healthcheck, Instruction, ShellLexer, go_quote};

use super::rule::{
    COPY_IGNORED_FILE, EXPOSE_INVALID_FORMAT, EXPOSE_PROTO_CASING, JSON_ARGS_RECOMMENDED,
    LEGACY_KEY_VALUE_FORMAT, MULTIPLE_INSTRUCTIONS_DISALLOWED, SECRETS_USED_IN_ARG_OR_ENV,
    UNDEFINED_VAR, WORKDIR_RELATIVE_PATH,
};
use super::{
    CheckConfig, CheckInputs, Env, Lines, Linter, NON_ENV_ARGS, OrderedEnv, StageState, lines_of,
    suggest,
};
use crate::options::PlanOptions;

/// Which of CMD, ENTRYPOINT, HEALTHCHECK a tracker slot is.
const CMD_SLOT: usize = 0;
const ENTRYPOINT_SLOT: usize = 1;
const HEALTHCHECK_SLOT: usize = 2;

/// The per-stage dispatch rules.
pub(super) struct Dispatcher<'a> {
    pub(super) lexer: &'a ShellLexer,
    pub(super) options: &'a PlanOptions,
    pub(super) inputs: &'a CheckInputs,
    pub(super) global_args: &'a OrderedEnv,
    pub(super) linter: &'a mut Linter,
    /// Where CMD, ENTRYPOINT and HEALTHCHECK were last set in this stage.
    pub(super) trackers: [Option<Lines>; 3],
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
        // Go's `(?i)` compares by simple case folding: besides ASCII, `ſ` matches `s` and
        // the Kelvin sign `K` matches `k` (the tokens are ASCII).
        let has_token = |tokens: &[&str]| {
            key.split('_').any(|part| {
                let folded: String = part
                    .chars()
                    .map(|c| match c {
                        '\u{17f}' => 's',
                        '\u{212a}' => 'k',
                        c => c.to_ascii_lowercase(),
                    })
                    .collect();
                tokens.contains(&folded.as_str())
            })
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

    pub(super) fn dispatch(
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
            Command::Run(run) => {
                // BuildKit `setMountState`: every `--mount` field value is expanded.
                for mount in run.mounts.iter().filter(|m| m.needs_expansion) {
                    let mut values: Vec<String> = Vec::new();
                    let _ = kiln_dockerfile::Mount::parse(&mount.spec, &mut |value| {
                        values.push(value.to_owned());
                        Ok(value.to_owned())
                    });
                    for value in &values {
                        self.expand(state, value, config, lines);
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
pub(super) fn go_clean(path: &str) -> String {
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
