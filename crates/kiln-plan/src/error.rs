//! Planning and expansion errors, and non-fatal warnings.

use kiln_dockerfile::{ExpandError, Span};
use kiln_oci::{PlatformError, ReferenceError};
use serde::Serialize;

use crate::checks::CheckError;
use crate::expose::PortError;

/// Why a Dockerfile could not be planned or a step could not be expanded. Every variant names
/// the stage, value and source line it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The Dockerfile has instructions but no `FROM`.
    #[error("the Dockerfile contains no stages to build: add a `FROM` instruction")]
    NoStages,
    /// An instruction other than `ARG` comes before the first `FROM`.
    #[error("line {}: `{instruction}` before the first FROM: only ARG may come before FROM", .span.line)]
    InstructionBeforeFrom {
        /// The keyword.
        instruction: String,
        /// Where.
        span: Span,
    },
    /// `--target` names no stage.
    #[error("target stage `{target}` could not be found; stages are: {}", list(.available))]
    UnknownTarget {
        /// The requested target.
        target: String,
        /// The names of the stages in the Dockerfile.
        available: Vec<String>,
    },
    /// `FROM … AS name` with a name BuildKit rejects.
    #[error(
        "line {}: invalid name for build stage `{name}`: it must match ^[a-z][a-z0-9-_.]*$ (start with a letter; letters, digits, `-`, `_`, `.`)",
        .span.line
    )]
    InvalidStageName {
        /// The name as written.
        name: String,
        /// Where.
        span: Span,
    },
    /// `FROM` has the wrong number of words.
    #[error("line {}: FROM requires either one or three arguments (`FROM image [AS name]`)", .span.line)]
    MalformedFrom {
        /// Where.
        span: Span,
    },
    /// A word could not be expanded.
    #[error("line {}: cannot expand `{}` in {instruction}: {source}", .span.line, clip(.word))]
    Expand {
        /// The instruction keyword.
        instruction: String,
        /// The word as written.
        word: String,
        /// Where.
        span: Span,
        /// The lexer's reason.
        source: Box<ExpandError>,
    },
    /// `FROM ${X}` expanded to nothing.
    #[error("line {}: base name (`{}`) should not be blank: set the build arg it uses", .span.line, clip(.expression))]
    EmptyBaseName {
        /// The unexpanded base name.
        expression: String,
        /// Where.
        span: Span,
    },
    /// `FROM --platform=…` is not a platform.
    #[error("line {}: failed to parse platform `{}`: {source}", .span.line, clip(.value))]
    InvalidPlatform {
        /// The expanded value.
        value: String,
        /// Where.
        span: Span,
        /// Why.
        source: Box<PlatformError>,
    },
    /// A base image or `--from` image is not a valid reference.
    #[error("line {}: `{}` is neither a stage, a build context nor an image reference: {source}", .span.line, clip(.reference))]
    InvalidReference {
        /// The text.
        reference: String,
        /// Where.
        span: Span,
        /// Why it is not a reference.
        source: ReferenceError,
    },
    /// `--from=N` with no stage N.
    #[error("line {}: invalid stage index {index}: the Dockerfile has {count} stages", .span.line)]
    StageIndexOutOfRange {
        /// The index.
        index: usize,
        /// How many stages exist.
        count: usize,
        /// Where.
        span: Span,
    },
    /// A stage refers to itself or to a later stage.
    #[error(
        "line {}: cannot use stage `{name}` from stage `{stage}`: it needs to be defined before the current stage",
        .span.line
    )]
    ForwardStageReference {
        /// The referenced stage.
        name: String,
        /// The referencing stage.
        stage: String,
        /// Where.
        span: Span,
    },
    /// `--from=$X`: BuildKit does not expand `--from`.
    #[error(
        "line {}: variable expansion is not supported for --from (`{}`): define a stage with `FROM ${{VAR}} AS name` using a global ARG and use that name",
        .span.line,
        clip(.value)
    )]
    FromFlagExpansion {
        /// The value.
        value: String,
        /// Where.
        span: Span,
    },
    /// A dependency cycle between stages.
    #[error("circular dependency detected on stage `{stage}`")]
    CircularDependency {
        /// One stage on the cycle.
        stage: String,
    },
    /// A malformed instruction argument found during expansion.
    #[error("line {}: invalid {instruction}: {}", .span.line, clip(.reason))]
    InvalidInstruction {
        /// The keyword.
        instruction: String,
        /// What is wrong.
        reason: String,
        /// Where.
        span: Span,
    },
    /// An `EXPOSE` value is not a port spec.
    #[error("line {}: {source}", .span.line)]
    InvalidPort {
        /// Where.
        span: Span,
        /// Why.
        source: PortError,
    },
    /// An `ONBUILD` trigger of the base could not be parsed.
    #[error("ONBUILD trigger `{}` of the base of stage `{stage}` is invalid: {}", clip(.trigger), clip(.reason))]
    InvalidTrigger {
        /// The trigger text.
        trigger: String,
        /// The stage whose base carries it.
        stage: String,
        /// Why.
        reason: String,
    },
    /// A trigger refers to a stage the plan does not build.
    #[error(
        "ONBUILD trigger `{}` of the base of stage `{stage}` uses stage `{name}`, which this build does not include: build with all stages",
        clip(.trigger)
    )]
    TriggerStageNotPlanned {
        /// The trigger text.
        trigger: String,
        /// The stage whose base carries it.
        stage: String,
        /// The referenced stage.
        name: String,
    },
    /// The build checks fail the build: `# check=error=true` (or `BUILDKIT_DOCKERFILE_CHECK`)
    /// with findings, or check options that do not parse.
    #[error("{source}")]
    Check {
        /// The checks' error.
        source: Box<CheckError>,
    },
}

/// A value quoted in a message: whole when short, else its start, `…` and its length, so a
/// 1 MiB word never makes a 1 MiB message.
fn clip(text: &str) -> String {
    const SHOWN: usize = 96;
    if text.len() <= SHOWN {
        return text.to_owned();
    }
    format!(
        "{} ({} bytes)",
        kiln_dockerfile::excerpt(text, 0),
        text.len()
    )
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "(none named)".to_owned()
    } else {
        names.join(", ")
    }
}

/// A non-fatal finding of the planner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum PlanWarning {
    /// A parser finding (empty continuation line, deprecated MAINTAINER, ignored flag).
    Syntax {
        /// What was found.
        message: String,
        /// Where.
        span: Span,
    },
    /// `--build-arg` names that no `ARG` of the planned stages (or the global scope) declares.
    UnusedBuildArgs {
        /// The names, sorted.
        names: Vec<String>,
    },
    /// BuildKit lint `FromAsCasing`: `FROM` and `AS` written in different cases.
    FromAsCasing {
        /// Where.
        span: Span,
    },
    /// BuildKit lint `StageNameCasing`: a stage name with uppercase letters (it is lowercased).
    StageNameCasing {
        /// The name as written.
        name: String,
        /// Where.
        span: Span,
    },
    /// BuildKit lint `DuplicateStageName`: a later stage with the same name wins.
    DuplicateStageName {
        /// The name.
        name: String,
        /// Where the later definition is.
        span: Span,
    },
    /// BuildKit lint `ReservedStageName`: `scratch` or `context` used as a stage name.
    ReservedStageName {
        /// The name.
        name: String,
        /// Where.
        span: Span,
    },
}

impl std::fmt::Display for PlanWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Syntax { message, span } => write!(f, "line {}: {message}", span.line),
            Self::UnusedBuildArgs { names } => write!(
                f,
                "one or more build args were not consumed: [{}]",
                names.join(" ")
            ),
            Self::FromAsCasing { span } => write!(
                f,
                "line {}: FromAsCasing: 'as' and 'FROM' keywords' casing do not match",
                span.line
            ),
            Self::StageNameCasing { name, span } => write!(
                f,
                "line {}: StageNameCasing: stage name '{name}' should be lowercase",
                span.line
            ),
            Self::DuplicateStageName { name, span } => write!(
                f,
                "line {}: DuplicateStageName: duplicate stage name '{name}', stage names should be unique",
                span.line
            ),
            Self::ReservedStageName { name, span } => write!(
                f,
                "line {}: ReservedStageName: stage name should not use the same name as reserved stage '{name}'",
                span.line
            ),
        }
    }
}
