//! `--change` instructions of `kiln import` (docker import/commit `--change`): the config
//! instructions CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR, VOLUME, STOPSIGNAL,
//! applied in order to an image config.
//!
//! Forms follow the Dockerfile reference: CMD/ENTRYPOINT/VOLUME take a JSON array or, when the
//! text is not a JSON string array (BuildKit's fallback), the shell form; ENV and LABEL take
//! `key=value` pairs with quotes, or ENV's legacy `KEY value with spaces`; EXPOSE adds `/tcp`
//! when no protocol is given and expands ranges.

use kiln_oci::ContainerConfig;

/// Why a `--change` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChangeError {
    #[error(
        "--change `{text}`: unsupported instruction `{instruction}` (supported: CMD, ENTRYPOINT, \
         ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR)"
    )]
    Unsupported { text: String, instruction: String },
    #[error("--change `{text}`: {instruction} needs {what}")]
    Missing {
        text: String,
        instruction: &'static str,
        what: &'static str,
    },
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

impl Changes {
    /// Applies one instruction to `config`.
    pub(crate) fn apply(
        &mut self,
        text: &str,
        config: &mut ContainerConfig,
    ) -> Result<(), ChangeError> {
        let trimmed = text.trim();
        let (keyword, rest) = match trimmed.split_once(char::is_whitespace) {
            Some((k, r)) => (k, r.trim()),
            None => (trimmed, ""),
        };
        let missing = |instruction, what| ChangeError::Missing {
            text: text.to_owned(),
            instruction,
            what,
        };
        let invalid = |reason: String| ChangeError::Invalid {
            text: text.to_owned(),
            reason,
        };
        match keyword.to_ascii_uppercase().as_str() {
            "CMD" => {
                config.cmd = command_form(rest, &config.shell);
                self.is_cmd_set = true;
            }
            "ENTRYPOINT" => {
                config.entrypoint = command_form(rest, &config.shell);
                if !self.is_cmd_set {
                    config.cmd.clear();
                }
            }
            "ENV" => {
                if rest.is_empty() {
                    return Err(missing("ENV", "at least one `KEY=value`"));
                }
                for (key, value) in key_values(rest, true).map_err(invalid)? {
                    set_env(&mut config.env, &key, &value);
                }
            }
            "LABEL" => {
                if rest.is_empty() {
                    return Err(missing("LABEL", "at least one `key=value`"));
                }
                for (key, value) in key_values(rest, false).map_err(invalid)? {
                    config.labels.insert(key, value);
                }
            }
            "EXPOSE" => {
                let ports = words(rest).map_err(invalid)?;
                if ports.is_empty() {
                    return Err(missing("EXPOSE", "at least one port"));
                }
                for port in ports {
                    for p in expand_port(&port).map_err(invalid)? {
                        config.exposed_ports.insert(p);
                    }
                }
            }
            "USER" => {
                let words = words(rest).map_err(invalid)?;
                let [user] = words.as_slice() else {
                    return Err(missing("USER", "exactly one user[:group]"));
                };
                config.user.clone_from(user);
            }
            "WORKDIR" => {
                let words = words(rest).map_err(invalid)?;
                let [dir] = words.as_slice() else {
                    return Err(missing("WORKDIR", "exactly one path"));
                };
                config.working_dir = join_workdir(&config.working_dir, dir);
            }
            "VOLUME" => {
                let volumes = match json_array(rest) {
                    Some(list) => list,
                    None => words(rest).map_err(invalid)?,
                };
                if volumes.is_empty() || volumes.iter().any(String::is_empty) {
                    return Err(missing("VOLUME", "at least one non-empty path"));
                }
                config.volumes.extend(volumes);
            }
            "STOPSIGNAL" => {
                let words = words(rest).map_err(invalid)?;
                let [signal] = words.as_slice() else {
                    return Err(missing("STOPSIGNAL", "exactly one signal"));
                };
                config.stop_signal.clone_from(signal);
            }
            _ => {
                return Err(ChangeError::Unsupported {
                    text: text.to_owned(),
                    instruction: keyword.to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// Exec form when the text is a JSON array of strings, else the shell form.
fn command_form(rest: &str, shell: &[String]) -> Vec<String> {
    if let Some(list) = json_array(rest) {
        return list;
    }
    if rest.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<String> = if shell.is_empty() {
        DEFAULT_SHELL.iter().map(|s| (*s).to_owned()).collect()
    } else {
        shell.to_vec()
    };
    out.push(rest.to_owned());
    out
}

fn json_array(text: &str) -> Option<Vec<String>> {
    if !text.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(text).ok()
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

/// `k=v k2="v 2"` pairs; with `allow_legacy`, `KEY value words` when the first word has no `=`.
fn key_values(rest: &str, allow_legacy: bool) -> Result<Vec<(String, String)>, String> {
    let first = rest.split_whitespace().next().unwrap_or_default();
    if allow_legacy && !first.contains('=') {
        let (key, value) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("`{rest}` has no value (use KEY=value)"))?;
        return Ok(vec![(key.to_owned(), unquote_all(value.trim())?)]);
    }
    let mut out = Vec::new();
    for word in words(rest)? {
        let (key, value) = word
            .split_once('=')
            .ok_or_else(|| format!("`{word}` is not a key=value pair"))?;
        if key.is_empty() {
            return Err(format!("`{word}` has an empty key"));
        }
        out.push((key.to_owned(), value.to_owned()));
    }
    Ok(out)
}

fn unquote_all(text: &str) -> Result<String, String> {
    Ok(words(text)?.join(" "))
}

/// Splits on unquoted whitespace, removing quotes; `\` escapes the next character outside
/// single quotes.
fn words(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some('\''), '\'') | (Some('"'), '"') => quote = None,
            (Some('"') | None, '\\') => {
                let next = chars
                    .next()
                    .ok_or_else(|| "trailing backslash".to_owned())?;
                current.push(next);
                in_word = true;
            }
            (Some(_), c) => current.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            (None, c) => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!("unterminated {q} quote"));
    }
    if in_word {
        out.push(current);
    }
    Ok(out)
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
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
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
        assert_eq!(c.env, ["A=3", "B=two words", "LEGACY=some value"]);
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
        assert!(apply(&[r#"ENV A="unterminated"#]).is_err());
        assert!(apply(&["USER a b"]).is_err());
        assert!(apply(&[""]).is_err());
    }
}
