//! Image-config edits of the metadata instructions (`ENV`, `LABEL`, `EXPOSE`, `USER`,
//! `WORKDIR`, `CMD`, `ENTRYPOINT`, `VOLUME`, `STOPSIGNAL`, `HEALTHCHECK`, `SHELL`, `ONBUILD`,
//! `ARG`, `MAINTAINER`), applied with Docker's semantics by [`apply_config_edit`], and the
//! `created_by` text BuildKit writes for each (dockerfile2llb `dispatch*` → `commitToHistory`).

use kiln_oci::{Healthcheck, ImageConfiguration};
use serde::Serialize;

use crate::args::add_config_env;
use crate::gofmt;

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
