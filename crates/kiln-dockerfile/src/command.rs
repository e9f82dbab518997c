//! The typed Dockerfile: [`Dockerfile`], its [`Instruction`]s, and the typed view of an
//! instruction, [`Command`], with the structs of its variants.
//!
//! Values are unexpanded strings exactly as BuildKit's instruction parser keeps them;
//! ARG/ENV expansion happens in the planner with [`crate::ShellLexer`]. Which instructions
//! expand variables is [`crate::instruction_expands`] (and [`crate::Heredoc::expand`] for
//! heredoc bodies).

use std::time::Duration;

use serde::Serialize;

use crate::directive::Directive;
use crate::heredoc::Heredoc;
use crate::mount::{Device, Mount};
use crate::span::Span;
use crate::syntax::{Node, Warning, go_lower};

/// A parsed and checked Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dockerfile {
    /// Parser directives from the top of the file.
    pub directives: Vec<Directive>,
    /// The escape token in effect.
    pub escape: char,
    /// The instructions in source order.
    pub instructions: Vec<Instruction>,
    /// Non-fatal findings.
    pub warnings: Vec<Warning>,
}

impl Dockerfile {
    /// The file in BuildKit's parser `result` format (no final newline).
    pub fn dump_buildkit_ast(&self) -> String {
        crate::dump::dump_nodes(self.instructions.iter().map(|i| &i.syntax))
    }

    /// The value of a parser directive (`syntax`, `escape`, `check`), if present.
    pub fn directive(&self, name: &str) -> Option<&str> {
        self.directives
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(name))
            .map(|d| d.value.as_str())
    }
}

/// One instruction: its syntax (keyword, flags, raw arguments, spans) and its typed view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instruction {
    /// The instruction as written.
    pub syntax: Node,
    /// What it does.
    pub command: Command,
}

impl Instruction {
    /// The keyword, uppercased (`RUN`).
    pub fn keyword(&self) -> String {
        self.syntax.keyword.to_uppercase()
    }

    /// The whole instruction's bytes in the source.
    pub fn span(&self) -> Span {
        self.syntax.span
    }

    /// Whether BuildKit expands `$VARS` in this instruction's arguments (ADD COPY ENV
    /// EXPOSE FROM LABEL STOPSIGNAL USER VOLUME WORKDIR ONBUILD ARG; not RUN, CMD,
    /// ENTRYPOINT, SHELL, HEALTHCHECK, MAINTAINER).
    pub fn expands_variables(&self) -> bool {
        crate::shell::instruction_expands(&go_lower(&self.syntax.keyword))
    }
}

/// A command line in shell form (run through the stage's SHELL) or exec form (JSON array).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShellOrExec {
    /// `RUN echo hi`: one string for the shell.
    Shell(String),
    /// `RUN ["echo", "hi"]`: argv as written.
    Exec(Vec<String>),
}

impl ShellOrExec {
    /// BuildKit's `handleJSONArgs`: exec-form arguments as-is, shell form joined by spaces.
    pub(crate) fn from_args(args: Vec<String>, is_json: bool) -> Self {
        if is_json {
            Self::Exec(args)
        } else {
            Self::Shell(args.join(" "))
        }
    }

    /// Whether this is the exec (JSON) form.
    pub fn is_exec(&self) -> bool {
        matches!(self, Self::Exec(_))
    }
}

/// A `key=value` pair of ENV or LABEL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    /// The key, unexpanded.
    pub key: String,
    /// The value, unexpanded, quotes still in place (`"a b"`).
    pub value: String,
    /// Written in the legacy `KEY value` form (no `=`).
    pub is_legacy_form: bool,
}

/// One name of an ARG instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDecl {
    /// The name, unexpanded.
    pub name: String,
    /// The default after `=`, unexpanded; `None` for `ARG NAME`.
    pub default: Option<String>,
}

/// `FROM [--platform=p] image [AS name]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct From {
    /// The base: an image reference, a stage name or `scratch`, unexpanded.
    pub image: String,
    /// `--platform`, unexpanded.
    pub platform: Option<String>,
    /// `AS name`, lowercased as BuildKit stores it.
    pub stage_name: Option<String>,
}

/// RUN's `--network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// The builder's default network.
    #[default]
    Default,
    /// No network.
    None,
    /// The host's network.
    Host,
}

/// RUN's `--security`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityMode {
    /// The normal sandbox.
    #[default]
    Sandbox,
    /// Privileged (needs an entitlement).
    Insecure,
}

/// `RUN [--mount=...] [--network=...] [--security=...] command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    /// The command line.
    pub cmd: ShellOrExec,
    /// Heredoc bodies (`RUN <<EOF`), in order.
    pub heredocs: Vec<Heredoc>,
    /// `--mount` specifications, in order.
    pub mounts: Vec<Mount>,
    /// `--network`.
    pub network: NetworkMode,
    /// `--security`.
    pub security: SecurityMode,
    /// `--device` requests.
    pub devices: Vec<Device>,
}

/// A source of COPY/ADD given inline as a heredoc (`COPY <<EOF /dest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeredocSource {
    /// The file name (the heredoc word).
    pub path: String,
    /// The body, with tabs already stripped for `<<-`.
    pub data: String,
    /// Whether variables in the body are expanded.
    pub expand: bool,
}

/// `COPY [flags] src... dest` (BuildKit's `CopyCommand`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Copy {
    /// Source paths (context-relative, or in `from`), unexpanded.
    pub sources: Vec<String>,
    /// Inline heredoc sources.
    pub heredocs: Vec<HeredocSource>,
    /// The destination, unexpanded.
    pub dest: String,
    /// `--from`: a stage name, index or image reference.
    pub from: Option<String>,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
}

/// `ADD [flags] src... dest` (BuildKit's `AddCommand`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Add {
    /// Sources: paths, URLs or git references, unexpanded.
    pub sources: Vec<String>,
    /// Inline heredoc sources.
    pub heredocs: Vec<HeredocSource>,
    /// The destination, unexpanded.
    pub dest: String,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
    /// `--checksum` of a remote source.
    pub checksum: Option<String>,
    /// `--keep-git-dir`, when given.
    pub keep_git_dir: Option<bool>,
    /// `--unpack`, when given.
    pub unpack: Option<bool>,
}

/// HEALTHCHECK's probe settings. A zero duration means "inherit the default".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthcheckCmd {
    /// The probe command.
    pub test: ShellOrExec,
    /// `--interval`.
    pub interval: Duration,
    /// `--timeout`.
    pub timeout: Duration,
    /// `--start-period`.
    pub start_period: Duration,
    /// `--start-interval`.
    pub start_interval: Duration,
    /// `--retries` (0 = default).
    pub retries: u32,
}

/// `HEALTHCHECK NONE` or `HEALTHCHECK [flags] CMD ...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Healthcheck {
    /// Disables any inherited health check.
    None,
    /// A probe.
    Cmd(HealthcheckCmd),
}

/// `ONBUILD trigger`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Onbuild {
    /// The trigger as stored in the image config (BuildKit's `OnbuildCommand.Expression`):
    /// the line without `ONBUILD`, heredoc bodies appended.
    pub expression: String,
    /// The trigger, parsed.
    pub trigger: Box<Instruction>,
}

/// What an instruction does, with its arguments parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Command {
    /// `FROM`.
    From(From),
    /// `RUN`.
    Run(Run),
    /// `CMD`.
    Cmd(ShellOrExec),
    /// `ENTRYPOINT`.
    Entrypoint(ShellOrExec),
    /// `SHELL ["exe", "-c"]` (always exec form).
    Shell(Vec<String>),
    /// `LABEL`.
    Label(Vec<KeyValue>),
    /// `MAINTAINER` (deprecated).
    Maintainer(String),
    /// `EXPOSE`: ports, sorted as BuildKit sorts them.
    Expose(Vec<String>),
    /// `ENV`.
    Env(Vec<KeyValue>),
    /// `ADD`.
    Add(Add),
    /// `COPY`.
    Copy(Copy),
    /// `VOLUME`.
    Volume(Vec<String>),
    /// `USER`.
    User(String),
    /// `WORKDIR`.
    Workdir(String),
    /// `ARG`.
    Arg(Vec<ArgDecl>),
    /// `ONBUILD`.
    Onbuild(Onbuild),
    /// `STOPSIGNAL`.
    StopSignal(String),
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
}
