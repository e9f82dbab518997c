//! `--change` instructions of `kiln import` (docker import/commit `--change`): the config
//! instructions CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR, VOLUME, STOPSIGNAL,
//! applied in order to an image config.
//!
//! Each value is parsed by `kiln_dockerfile::parse` as the instruction of a one-stage
//! Dockerfile, so quoting, JSON-vs-shell form and the legacy `ENV KEY value` form are exactly
//! BuildKit's; arguments of the expanding instructions (ENV, LABEL, EXPOSE, USER, WORKDIR,
//! VOLUME, STOPSIGNAL) are expanded with the config's environment so far, as `docker commit
//! --change` does. EXPOSE adds `/tcp` when no protocol is given and expands ranges.

use kiln_dockerfile::{Command, ShellLexer, ShellOrExec};
use kiln_oci::ContainerConfig;

/// Why a `--change` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChangeError {
    #[error(
        "--change `{text}`: unsupported instruction `{instruction}` (supported: CMD, ENTRYPOINT, \
         ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR)"
    )]
    Unsupported { text: String, instruction: String },
    #[error("--change `{text}`: {reason}")]
    Invalid { text: String, reason: String },
}

/// The state a sequence of changes carries (BuildKit: an ENTRYPOINT resets a CMD that was not
/// set by the same build).
#[derive(Debug, Default)]
pub(crate) struct Changes {
    is_cmd_set: bool,
}

const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// What `--change` text is parsed after, so it is the first instruction of a stage.
const STAGE_PREFIX: &str = "FROM scratch\n";

impl Changes {
    /// Applies one instruction to `config`.
    pub(crate) fn apply(
        &mut self,
        text: &str,
        config: &mut ContainerConfig,
    ) -> Result<(), ChangeError> {
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
            .map_err(|e| invalid(parse_message(&e.to_string())))?;
        let [_, instruction] = dockerfile.instructions.as_slice() else {
            return Err(invalid("expected exactly one instruction".to_owned()));
        };
        let lexer = ShellLexer::new(dockerfile.escape);
        let env: Vec<(String, String)> = config
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
        match &instruction.command {
            Command::Cmd(form) => {
                config.cmd = command_form(form, &config.shell);
                self.is_cmd_set = true;
            }
            Command::Entrypoint(form) => {
                config.entrypoint = command_form(form, &config.shell);
                if !self.is_cmd_set {
                    config.cmd.clear();
                }
            }
            Command::Env(pairs) => {
                // BuildKit expands every pair of one ENV with the environment before it.
                let mut expanded = Vec::with_capacity(pairs.len());
                for pair in pairs {
                    expanded.push((expand(&pair.key)?, expand(&pair.value)?));
                }
                for (key, value) in expanded {
                    set_env(&mut config.env, &key, &value);
                }
            }
            Command::Label(pairs) => {
                for pair in pairs {
                    let key = expand(&pair.key)?;
                    if key.is_empty() {
                        return Err(invalid("a label needs a non-empty key".to_owned()));
                    }
                    config.labels.insert(key, expand(&pair.value)?);
                }
            }
            Command::Expose(ports) => {
                for port in ports {
                    for word in lexer
                        .process_words(port, env.as_slice())
                        .map_err(|e| invalid(format!("expanding `{port}`: {e}")))?
                    {
                        for spec in expand_port(&word).map_err(invalid)? {
                            config.exposed_ports.insert(spec);
                        }
                    }
                }
            }
            Command::User(user) => config.user = expand(user)?,
            Command::Workdir(dir) => {
                config.working_dir = join_workdir(&config.working_dir, &expand(dir)?);
            }
            Command::Volume(volumes) => {
                for volume in volumes {
                    let volume = expand(volume)?;
                    if volume.is_empty() {
                        return Err(invalid("VOLUME needs non-empty paths".to_owned()));
                    }
                    config.volumes.insert(volume);
                }
            }
            Command::StopSignal(signal) => config.stop_signal = expand(signal)?,
            _ => {
                return Err(ChangeError::Unsupported {
                    text: text.to_owned(),
                    instruction: instruction.keyword(),
                });
            }
        }
        Ok(())
    }
}

/// The first line of a parse error, without the `Dockerfile:2:1` position of the wrapper.
fn parse_message(error: &str) -> String {
    error.lines().next().unwrap_or(error).trim().to_owned()
}

/// Exec form as written; shell form wrapped in the config's SHELL (default `/bin/sh -c`).
fn command_form(form: &ShellOrExec, shell: &[String]) -> Vec<String> {
    match form {
        ShellOrExec::Exec(args) => args.clone(),
        ShellOrExec::Shell(command) => {
            let mut out: Vec<String> = if shell.is_empty() {
                DEFAULT_SHELL.iter().map(|s| (*s).to_owned()).collect()
            } else {
                shell.to_vec()
            };
            out.push(command.clone());
            out
        }
    }
}

fn set_env(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    match env
        .iter_mut()
        .find(|e| e.split_once('=').is_some_and(|(k, _)| k == key))
    {
        Some(existing) => *existing = entry,
        None => env.push(entry),
    }
}

const MAX_PORT_RANGE: u32 = 65_535;

fn expand_port(spec: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("`{spec}`: protocol must be tcp, udp or sctp"));
    }
    let parse = |p: &str| {
        p.parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PORT_RANGE).contains(n))
            .ok_or_else(|| format!("`{spec}` is not a port (1-65535) or range"))
    };
    let (start, end) = if let Some((a, b)) = ports.split_once('-') {
        (parse(a)?, parse(b)?)
    } else {
        let port = parse(ports)?;
        (port, port)
    };
    if end < start {
        return Err(format!("`{spec}`: range end is below its start"));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// WORKDIR semantics: relative paths join the previous working dir; the result is clean.
fn join_workdir(current: &str, dir: &str) -> String {
    let joined = if dir.starts_with('/') {
        dir.to_owned()
    } else {
        format!("{}/{dir}", if current.is_empty() { "/" } else { current })
    };
    kiln_oci::clean_path(&format!("/{joined}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(changes: &[&str]) -> Result<ContainerConfig, ChangeError> {
        let mut config = ContainerConfig::default();
        let mut state = Changes::default();
        for c in changes {
            state.apply(c, &mut config)?;
        }
        Ok(config)
    }

    #[test]
    fn applies_every_supported_instruction() {
        let c = apply(&[
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
        .unwrap();
        assert_eq!(c.cmd, ["sh"], "CMD set before ENTRYPOINT is kept");
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
    fn shell_form_and_entrypoint_reset() {
        let c = apply(&["ENTRYPOINT echo hi", "CMD [not json"]).unwrap();
        assert_eq!(c.entrypoint, ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(c.cmd, ["/bin/sh", "-c", "[not json"]);
    }

    #[test]
    fn bad_changes_are_clear_errors() {
        let err = apply(&["RUN echo"]).unwrap_err();
        assert!(
            err.to_string().contains("unsupported instruction `RUN`"),
            "{err}"
        );
        assert!(apply(&["EXPOSE 99999"]).is_err());
        assert!(apply(&["EXPOSE 80/xyz"]).is_err());
        assert!(apply(&["ENV"]).is_err());
        assert!(apply(&["LABEL novalue"]).is_err());
        assert!(apply(&["USER"]).is_err());
        assert!(apply(&["CMD x\nRUN y"]).is_err());
        assert!(apply(&[""]).is_err());
    }
}
