//! Image-config edits of the metadata instructions (`ENV`, `LABEL`, `EXPOSE`, `USER`,
//! `WORKDIR`, `CMD`, `ENTRYPOINT`, `VOLUME`, `STOPSIGNAL`, `HEALTHCHECK`, `SHELL`, `ONBUILD`,
//! `ARG`, `MAINTAINER`), applied with Docker's semantics by [`apply_config_edit`], and the
//! `created_by` text BuildKit writes for each (dockerfile2llb `dispatch*` → `commitToHistory`).
//!
//! [`ConfigChanges`] applies the same edits outside a build: the `--change` instructions of
//! `docker import`/`docker commit` (`kiln import --change`), parsed by the Dockerfile parser,
//! expanded with the config's environment, checked and normalized by the rules the stages'
//! instructions use (EXPOSE ports, WORKDIR paths, VOLUME paths, STOPSIGNAL names) and applied
//! by [`apply_config_edit`].

use kiln_dockerfile::{Command, ShellLexer, ShellOrExec};
use kiln_oci::{Healthcheck, ImageConfiguration};
use serde::Serialize;

use crate::args::add_config_env;
use crate::expose::parse_ports;
use crate::gofmt;
use crate::rules::{is_valid_signal, normalize_path};

/// One change to an image configuration, fully expanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConfigEdit {
    /// `ENV`: set variables (an existing name is replaced in place).
    Env {
        /// `(name, value)` in order.
        vars: Vec<(String, String)>,
    },
    /// `LABEL`: merge labels.
    Label {
        /// `(key, value)` in order.
        labels: Vec<(String, String)>,
    },
    /// `EXPOSE`: add ports, normalized to `port/proto`, one entry per port of a range.
    Expose {
        /// `8000/tcp` …
        ports: Vec<String>,
    },
    /// `USER`.
    User {
        /// `name`, `uid`, `name:group` …
        user: String,
    },
    /// `WORKDIR`: the absolute, cleaned directory.
    Workdir {
        /// Absolute path.
        path: String,
    },
    /// `CMD`: the final argv (shell form already wrapped in the stage's shell).
    Cmd {
        /// The argv.
        argv: Vec<String>,
    },
    /// `ENTRYPOINT`: the final argv, and whether it clears `Cmd` (an inherited CMD, i.e. no
    /// `CMD` earlier in this stage — BuildKit `dispatchEntrypoint`).
    Entrypoint {
        /// The argv.
        argv: Vec<String>,
        /// Whether `Cmd` is reset.
        resets_cmd: bool,
    },
    /// `VOLUME`: add mount points.
    Volume {
        /// Paths.
        paths: Vec<String>,
    },
    /// `STOPSIGNAL`.
    StopSignal {
        /// `SIGTERM`, `9` …
        signal: String,
    },
    /// `HEALTHCHECK` (`NONE` → test `["NONE"]`).
    Healthcheck {
        /// The check, durations in nanoseconds.
        check: Healthcheck,
    },
    /// `SHELL`.
    Shell {
        /// The shell argv.
        shell: Vec<String>,
    },
    /// `ONBUILD`: append a trigger (its text, unexpanded).
    Onbuild {
        /// The trigger instruction as written, e.g. `COPY . /app`.
        trigger: String,
    },
    /// `MAINTAINER`: sets the image `author`.
    Maintainer {
        /// The name.
        name: String,
    },
    /// `ARG`: no config change (history only).
    Arg {
        /// `(name, value)` as resolved.
        args: Vec<(String, Option<String>)>,
    },
}

/// Applies `edit` to `config` with Docker's semantics: env replaced in place or appended,
/// labels merged, ports and volumes added, `ENTRYPOINT` clearing an inherited `Cmd`,
/// `ONBUILD` appended, `MAINTAINER` setting the author. `ARG` changes nothing.
pub fn apply_config_edit(config: &mut ImageConfiguration, edit: &ConfigEdit) {
    let c = &mut config.config;
    match edit {
        ConfigEdit::Env { vars } => {
            for (k, v) in vars {
                add_config_env(&mut c.env, k, v);
            }
        }
        ConfigEdit::Label { labels } => {
            for (k, v) in labels {
                c.labels.insert(k.clone(), v.clone());
            }
        }
        ConfigEdit::Expose { ports } => c.exposed_ports.extend(ports.iter().cloned()),
        ConfigEdit::User { user } => c.user.clone_from(user),
        ConfigEdit::Workdir { path } => c.working_dir.clone_from(path),
        ConfigEdit::Cmd { argv } => {
            c.cmd.clone_from(argv);
            // BuildKit dispatchCmd sets ArgsEscaped (Windows compatibility) on every CMD.
            c.args_escaped = true;
        }
        ConfigEdit::Entrypoint { argv, resets_cmd } => {
            c.entrypoint.clone_from(argv);
            if *resets_cmd {
                c.cmd.clear();
            }
        }
        ConfigEdit::Volume { paths } => c.volumes.extend(paths.iter().cloned()),
        ConfigEdit::StopSignal { signal } => c.stop_signal.clone_from(signal),
        ConfigEdit::Healthcheck { check } => c.healthcheck = Some(check.clone()),
        ConfigEdit::Shell { shell } => c.shell.clone_from(shell),
        ConfigEdit::Onbuild { trigger } => c.on_build.push(trigger.clone()),
        ConfigEdit::Maintainer { name } => config.author.clone_from(name),
        ConfigEdit::Arg { .. } => {}
    }
}

impl ConfigEdit {
    /// The history `created_by` BuildKit writes for this edit, or `None` when it writes no
    /// history entry (`ONBUILD`).
    pub fn created_by(&self) -> Option<String> {
        let kv = |prefix: &str, pairs: &[(String, String)]| {
            let mut s = prefix.to_owned();
            for (k, v) in pairs {
                s.push(' ');
                s.push_str(k);
                s.push('=');
                s.push_str(v);
            }
            s
        };
        Some(match self {
            Self::Env { vars } => kv("ENV", vars),
            Self::Label { labels } => kv("LABEL", labels),
            Self::Expose { ports } => format!("EXPOSE {}", gofmt::plain_list(ports)),
            Self::User { user } => format!("USER {user}"),
            Self::Workdir { path } => format!("WORKDIR {path}"),
            Self::Cmd { argv } => format!("CMD {}", gofmt::quote_list(argv)),
            Self::Entrypoint { argv, .. } => format!("ENTRYPOINT {}", gofmt::quote_list(argv)),
            Self::Volume { paths } => format!("VOLUME {}", gofmt::plain_list(paths)),
            Self::StopSignal { signal } => format!("STOPSIGNAL {signal}"),
            Self::Healthcheck { check } => format!("HEALTHCHECK {}", healthcheck_text(check)),
            Self::Shell { shell } => format!("SHELL {}", gofmt::plain_list(shell)),
            Self::Onbuild { .. } => return None,
            Self::Maintainer { name } => format!("MAINTAINER {name}"),
            Self::Arg { args } => {
                let parts: Vec<String> = args
                    .iter()
                    .map(|(k, v)| match v {
                        Some(v) => format!("{k}={v}"),
                        None => k.clone(),
                    })
                    .collect();
                format!("ARG {}", parts.join(" "))
            }
        })
    }

    /// A canonical, unambiguous text of the edit for cache keys (JSON of the typed value).
    pub(crate) fn cache_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Why a `--change` instruction was refused; both name the instruction as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeError {
    /// An instruction `--change` does not take (RUN, COPY, FROM, …).
    #[error(
        "--change `{text}`: unsupported instruction `{instruction}` (supported: CMD, ENTRYPOINT, \
         ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR)"
    )]
    Unsupported {
        /// The instruction as given.
        text: String,
        /// Its keyword.
        instruction: String,
    },
    /// The instruction does not parse, expand or check.
    #[error("--change `{text}`: {reason}")]
    Invalid {
        /// The instruction as given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Default shell of a shell-form CMD or ENTRYPOINT when the config sets no `Shell`.
const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// What `--change` text is parsed after, so it is the first instruction of a stage.
const STAGE_PREFIX: &str = "FROM scratch\n";

/// `--change` instructions (`CMD`, `ENTRYPOINT`, `ENV`, `EXPOSE`, `LABEL`, `USER`, `WORKDIR`,
/// `VOLUME`, `STOPSIGNAL`) applied in order to an image config, as `docker commit --change`
/// does: each is parsed as the instruction of a one-stage Dockerfile (quoting, JSON-vs-shell
/// form and the legacy `ENV KEY value` form are BuildKit's), the arguments of the expanding
/// instructions are expanded with the config's environment so far, and the resulting
/// [`ConfigEdit`] is applied by [`apply_config_edit`]. The changes of one sequence share a
/// stage's state: an `ENTRYPOINT` clears `Cmd` unless a `CMD` came before it.
///
/// ```
/// use kiln_plan::ConfigChanges;
/// let mut config = kiln_oci::ImageConfiguration::new(&kiln_oci::Platform::new("linux", "amd64"));
/// let mut changes = ConfigChanges::default();
/// changes.apply("ENV APP=/srv", &mut config).unwrap();
/// changes.apply("WORKDIR $APP/www", &mut config).unwrap();
/// changes.apply("EXPOSE 8000", &mut config).unwrap();
/// assert_eq!(config.config.working_dir, "/srv/www");
/// assert!(config.config.exposed_ports.contains("8000/tcp"));
/// ```
#[derive(Debug, Default)]
pub struct ConfigChanges {
    is_cmd_set: bool,
}

impl ConfigChanges {
    /// Applies one instruction to `config`; returns the edit it made.
    pub fn apply(
        &mut self,
        text: &str,
        config: &mut ImageConfiguration,
    ) -> Result<ConfigEdit, ChangeError> {
        let edit = self.edit_of(text, config)?;
        // moby's commit dispatcher (`resolveCmdLine`) leaves ArgsEscaped unset on Linux;
        // only BuildKit's Dockerfile CMD sets it.
        let args_escaped = config.config.args_escaped;
        apply_config_edit(config, &edit);
        config.config.args_escaped = args_escaped;
        Ok(edit)
    }

    /// The edit `text` asks for, expanded against `config`.
    fn edit_of(
        &mut self,
        text: &str,
        config: &ImageConfiguration,
    ) -> Result<ConfigEdit, ChangeError> {
        let invalid = |reason: String| ChangeError::Invalid {
            text: text.to_owned(),
            reason,
        };
        if text.contains('\n') {
            return Err(invalid(
                "one instruction per --change, without newlines".to_owned(),
            ));
        }
        let dockerfile = kiln_dockerfile::parse(&format!("{STAGE_PREFIX}{text}\n"))
            .map_err(|e| invalid(first_line(&e.to_string())))?;
        let [_, instruction] = dockerfile.instructions.as_slice() else {
            return Err(invalid("expected exactly one instruction".to_owned()));
        };
        let lexer = ShellLexer::new(dockerfile.escape);
        let env: Vec<(String, String)> = config
            .config
            .env
            .iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (e.clone(), String::new()),
            })
            .collect();
        let expand = |word: &str| {
            lexer
                .process_word(word, env.as_slice())
                .map_err(|e| invalid(format!("expanding `{word}`: {e}")))
        };
        let shell = &config.config.shell;
        Ok(match &instruction.command {
            Command::Cmd(form) => {
                self.is_cmd_set = true;
                ConfigEdit::Cmd {
                    argv: command_argv(form, shell),
                }
            }
            Command::Entrypoint(form) => ConfigEdit::Entrypoint {
                argv: command_argv(form, shell),
                resets_cmd: !self.is_cmd_set,
            },
            // BuildKit expands every pair of one ENV with the environment before it.
            Command::Env(pairs) => ConfigEdit::Env {
                vars: pairs
                    .iter()
                    .map(|pair| Ok((expand(&pair.key)?, expand(&pair.value)?)))
                    .collect::<Result<_, ChangeError>>()?,
            },
            Command::Label(pairs) => {
                let mut labels = Vec::with_capacity(pairs.len());
                for pair in pairs {
                    let key = expand(&pair.key)?;
                    if key.is_empty() {
                        return Err(invalid("a label needs a non-empty key".to_owned()));
                    }
                    labels.push((key, expand(&pair.value)?));
                }
                ConfigEdit::Label { labels }
            }
            Command::Expose(ports) => {
                let mut words = Vec::new();
                for port in ports {
                    words.extend(
                        lexer
                            .process_words(port, env.as_slice())
                            .map_err(|e| invalid(format!("expanding `{port}`: {e}")))?,
                    );
                }
                let ports = parse_ports(&words).map_err(|e| invalid(e.to_string()))?;
                ConfigEdit::Expose { ports }
            }
            Command::User(user) => ConfigEdit::User {
                user: expand(user)?,
            },
            Command::Workdir(dir) => {
                let current = if config.config.working_dir.is_empty() {
                    "/"
                } else {
                    &config.config.working_dir
                };
                ConfigEdit::Workdir {
                    path: normalize_path(current, &expand(dir)?, false),
                }
            }
            Command::Volume(volumes) => {
                let mut paths = Vec::with_capacity(volumes.len());
                for volume in volumes {
                    let path = expand(volume)?;
                    if path.is_empty() {
                        return Err(invalid(
                            "VOLUME specified can not be an empty string".to_owned(),
                        ));
                    }
                    paths.push(path);
                }
                ConfigEdit::Volume { paths }
            }
            Command::StopSignal(signal) => {
                let signal = expand(signal)?;
                if !is_valid_signal(&signal) {
                    return Err(invalid(format!(
                        "invalid signal `{signal}`: use a name such as SIGTERM or a number"
                    )));
                }
                ConfigEdit::StopSignal { signal }
            }
            _ => {
                return Err(ChangeError::Unsupported {
                    text: text.to_owned(),
                    instruction: instruction.keyword(),
                });
            }
        })
    }
}

/// The first line of a parse error, without the `Dockerfile:2:1` position of the wrapper.
fn first_line(error: &str) -> String {
    error.lines().next().unwrap_or(error).trim().to_owned()
}

/// Exec form as written; shell form wrapped in the config's SHELL (default `/bin/sh -c`).
fn command_argv(form: &ShellOrExec, shell: &[String]) -> Vec<String> {
    match form {
        ShellOrExec::Exec(args) => args.clone(),
        ShellOrExec::Shell(command) => {
            let mut argv: Vec<String> = if shell.is_empty() {
                DEFAULT_SHELL.iter().map(|s| (*s).to_owned()).collect()
            } else {
                shell.to_vec()
            };
            argv.push(command.clone());
            argv
        }
    }
}

/// Go `fmt.Sprintf("%+v", HealthcheckConfig{…})`.
fn healthcheck_text(h: &Healthcheck) -> String {
    format!(
        "{{Test:{} Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
        gofmt::plain_list(&h.test),
        gofmt::duration(h.interval),
        gofmt::duration(h.timeout),
        gofmt::duration(h.start_period),
        gofmt::duration(h.start_interval),
        h.retries
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ImageConfiguration {
        let mut c = ImageConfiguration::new(&kiln_oci::Platform::new("linux", "amd64"));
        c.config.cmd = vec!["sh".into()];
        c.config.env = vec!["PATH=/bin".into()];
        c.config.labels.insert("a".into(), "1".into());
        c
    }

    fn changed(changes: &[&str]) -> Result<ImageConfiguration, ChangeError> {
        let mut config = ImageConfiguration::new(&kiln_oci::Platform::new("linux", "amd64"));
        let mut state = ConfigChanges::default();
        for c in changes {
            state.apply(c, &mut config)?;
        }
        Ok(config)
    }

    #[test]
    fn changes_apply_every_supported_instruction() {
        let c = changed(&[
            r#"CMD ["sh"]"#,
            r#"ENTRYPOINT ["/bin/tini", "--"]"#,
            r#"ENV A=1 B="two words""#,
            "ENV LEGACY some value",
            "ENV C=${A}0",
            "ENV A=3",
            r#"LABEL org.x="y z" k=v"#,
            "EXPOSE 80 53/udp 8000-8001",
            "USER 1000:1000",
            "WORKDIR /app",
            "WORKDIR sub/../src",
            r#"VOLUME ["/data"]"#,
            "VOLUME /cache /logs",
            "stopsignal SIGTERM",
        ])
        .unwrap()
        .config;
        assert_eq!(c.cmd, ["sh"], "CMD set before ENTRYPOINT is kept");
        assert!(
            !c.args_escaped,
            "docker commit --change leaves ArgsEscaped unset"
        );
        assert_eq!(c.entrypoint, ["/bin/tini", "--"]);
        assert_eq!(c.env, ["A=3", "B=two words", "LEGACY=some value", "C=10"]);
        assert_eq!(c.labels["org.x"], "y z");
        assert_eq!(
            c.exposed_ports.iter().collect::<Vec<_>>(),
            ["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]
        );
        assert_eq!(c.user, "1000:1000");
        assert_eq!(c.working_dir, "/app/src");
        assert_eq!(
            c.volumes.iter().collect::<Vec<_>>(),
            ["/cache", "/data", "/logs"]
        );
        assert_eq!(c.stop_signal, "SIGTERM");
    }

    #[test]
    fn changes_wrap_shell_form_and_reset_an_inherited_cmd() {
        let c = changed(&["ENTRYPOINT echo hi", "CMD [not json"])
            .unwrap()
            .config;
        assert_eq!(c.entrypoint, ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(c.cmd, ["/bin/sh", "-c", "[not json"]);
        let mut config = ImageConfiguration::new(&kiln_oci::Platform::new("linux", "amd64"));
        config.config.cmd = vec!["inherited".into()];
        ConfigChanges::default()
            .apply("ENTRYPOINT [\"/app\"]", &mut config)
            .unwrap();
        assert!(config.config.cmd.is_empty());
    }

    #[test]
    fn bad_changes_are_clear_errors() {
        let err = changed(&["RUN echo"]).unwrap_err();
        assert!(
            err.to_string().contains("unsupported instruction `RUN`"),
            "{err}"
        );
        let err = changed(&["EXPOSE 99999"]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--change `EXPOSE 99999`: invalid port"),
            "{err}"
        );
        assert!(changed(&["EXPOSE 80/xyz"]).is_err());
        assert!(changed(&["STOPSIGNAL SIGNOPE"]).is_err());
        assert!(changed(&["ENV"]).is_err());
        assert!(changed(&["LABEL novalue"]).is_err());
        assert!(changed(&["USER"]).is_err());
        assert!(changed(&["CMD x\nRUN y"]).is_err());
        assert!(changed(&[""]).is_err());
    }

    #[test]
    fn entrypoint_resets_inherited_cmd_only_when_told() {
        let mut c = config();
        apply_config_edit(
            &mut c,
            &ConfigEdit::Entrypoint {
                argv: vec!["/app".into()],
                resets_cmd: false,
            },
        );
        assert_eq!(c.config.cmd, ["sh"]);
        apply_config_edit(
            &mut c,
            &ConfigEdit::Entrypoint {
                argv: vec!["/app".into()],
                resets_cmd: true,
            },
        );
        assert!(c.config.cmd.is_empty());
        assert_eq!(c.config.entrypoint, ["/app"]);
    }

    #[test]
    fn merges_and_appends() {
        let mut c = config();
        apply_config_edit(
            &mut c,
            &ConfigEdit::Env {
                vars: vec![("PATH".into(), "/usr/bin".into()), ("A".into(), "b".into())],
            },
        );
        apply_config_edit(
            &mut c,
            &ConfigEdit::Label {
                labels: vec![("b".into(), "2".into())],
            },
        );
        apply_config_edit(
            &mut c,
            &ConfigEdit::Onbuild {
                trigger: "RUN x".into(),
            },
        );
        apply_config_edit(&mut c, &ConfigEdit::Maintainer { name: "me".into() });
        assert_eq!(c.config.env, ["PATH=/usr/bin", "A=b"]);
        assert_eq!(c.config.labels.len(), 2);
        assert_eq!(c.config.on_build, ["RUN x"]);
        assert_eq!(c.author, "me");
    }

    #[test]
    fn history_text_matches_buildkit() {
        let hc = ConfigEdit::Healthcheck {
            check: Healthcheck {
                test: vec!["CMD-SHELL".into(), "curl -f http://localhost/".into()],
                interval: 30_000_000_000,
                retries: 3,
                ..Healthcheck::default()
            },
        };
        assert_eq!(
            hc.created_by().unwrap(),
            "HEALTHCHECK {Test:[CMD-SHELL curl -f http://localhost/] Interval:30s Timeout:0s StartPeriod:0s StartInterval:0s Retries:3}"
        );
        let cmd = ConfigEdit::Cmd {
            argv: vec!["python".into(), "app.py".into()],
        };
        assert_eq!(cmd.created_by().unwrap(), r#"CMD ["python" "app.py"]"#);
        let expose = ConfigEdit::Expose {
            ports: vec!["8000/tcp".into(), "53/udp".into()],
        };
        assert_eq!(expose.created_by().unwrap(), "EXPOSE [8000/tcp 53/udp]");
        let arg = ConfigEdit::Arg {
            args: vec![("A".into(), Some("1".into())), ("B".into(), None)],
        };
        assert_eq!(arg.created_by().unwrap(), "ARG A=1 B");
        assert_eq!(
            ConfigEdit::Onbuild {
                trigger: "RUN x".into()
            }
            .created_by(),
            None
        );
    }
}
