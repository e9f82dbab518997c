//! BuildKit's build checks (`docker build --check`, the Dockerfile "lint" rules), pure: the
//! Dockerfile text, the build options and what the caller knows of the context
//! (`.dockerignore`) and of the base images go in, warnings and an optional error come out.
//!
//! The walk mirrors where BuildKit runs each rule: per instruction while parsing
//! (`instructions.ParseInstructionWithLinter`), over the whole file (`validateStageNames`,
//! `validateCommandCasing`, `validateBaseImagesWithDefaultArgs`), per stage while resolving
//! `FROM` (`buildDispatchStates`) and per instruction while dispatching (`dispatch`), all stages
//! when no target is given (`DockerfileLint`).

mod config;
mod dispatch;
mod file_rules;
mod parse_rules;
mod rule;
mod suggest;
mod walk;

use std::collections::BTreeMap;

use kiln_dockerfile::{Env, Node, PatternMatcher};
use kiln_oci::Platform;
use serde::Serialize;

pub use config::{CheckConfig, CheckConfigError};
pub use rule::{RULES, Rule, rule_by_name};

use crate::options::PlanOptions;
use walk::run;
pub(crate) use walk::{default_args, stage_name};

/// The build arg that replaces the Dockerfile's `# check=` directive (not merged with it).
pub const CHECK_BUILD_ARG: &str = "BUILDKIT_DOCKERFILE_CHECK";

/// One finding of a build check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The rule (name, description, URL).
    pub rule: &'static Rule,
    /// The message, exactly as BuildKit words it.
    pub detail: String,
    /// First line of the instruction it is about (1-based).
    pub start_line: u32,
    /// Last line of the instruction it is about.
    pub end_line: u32,
}

impl std::fmt::Display for Check {
    /// BuildKit `linter.LintFormatShort`: `Rule: detail (line N)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.rule.name, self.detail)?;
        if self.start_line > 0 {
            write!(f, " (line {})", self.start_line)?;
        }
        Ok(())
    }
}

/// What the checks know of a base image (from its config; the caller resolves it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BaseImage {
    /// The config's `Env`, `KEY=value` entries.
    pub env: Vec<String>,
    /// The platform the image was pulled for, when known (`InvalidBaseImagePlatform`).
    pub platform: Option<Platform>,
}

/// What the checks need besides the Dockerfile and the [`PlanOptions`].
#[derive(Debug, Clone, Default)]
pub struct CheckInputs {
    /// The build context's `.dockerignore` patterns (`CopyIgnoredFile`), when it has one.
    pub ignore: Option<PatternMatcher>,
    /// Base images by name as the `FROM` line expands to (`alpine`, `busybox:latest`).
    /// `scratch` has the default `PATH` only, as BuildKit gives it on Linux. The environment
    /// of an image not listed is unknown, so `UndefinedVar` is not reported in stages built
    /// on it (a build that has not pulled its bases yet would otherwise warn about every
    /// variable the image defines).
    pub base_images: BTreeMap<String, BaseImage>,
    /// Whether the checks run for a build (BuildKit `Dockerfile2LLB`), not for `--check`:
    /// then only the stages the target (or, without one, the last stage) needs are
    /// dispatched. `--check` with a target does so too; without one it lints every stage.
    pub is_build: bool,
}

/// Why the checks fail the build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// `error=true` and at least one rule fired.
    #[error("lint violation found for rules: {}", .rules.join(", "))]
    Violation {
        /// The rules that fired, each once, in the order they first fired.
        rules: Vec<&'static str>,
    },
    /// The `# check=` directive or `BUILDKIT_DOCKERFILE_CHECK` does not parse.
    #[error("failed to parse check options: {0}")]
    Config(CheckConfigError),
    /// The Dockerfile cannot be built (BuildKit's message); warnings found before it stand.
    #[error("{message}")]
    Dockerfile {
        /// The message.
        message: String,
        /// The line BuildKit attaches, when it attaches one.
        line: Option<u32>,
    },
}

/// The result of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// The findings, in the order they were found.
    pub warnings: Vec<Check>,
    /// Set when the build must fail: `error=true` with findings, or a Dockerfile error.
    pub error: Option<CheckError>,
    /// The options in effect (`BUILDKIT_DOCKERFILE_CHECK`, else the `# check=` directive).
    pub config: CheckConfig,
}

/// Runs every build check over `src`, as `docker build --check` does: over every stage when
/// `options.target` is `None`, else over the stages the target needs. With
/// [`CheckInputs::is_build`], as a build does (the last stage is the default target).
///
/// ```
/// use kiln_plan::{CheckInputs, PlanOptions, check};
/// let report = check("FROM alpine as base\nCMD run\n", &PlanOptions::default(), &CheckInputs::default());
/// let names: Vec<&str> = report.warnings.iter().map(|w| w.rule.name).collect();
/// assert_eq!(names, ["FromAsCasing", "JSONArgsRecommended"]);
/// assert_eq!(report.warnings[0].detail, "'as' and 'FROM' keywords' casing do not match");
/// assert!(report.error.is_none());
/// ```
pub fn check(src: &str, options: &PlanOptions, inputs: &CheckInputs) -> CheckReport {
    let mut linter = Linter::default();
    let error = run(src, options, inputs, &mut linter).err();
    let error = error.or_else(|| {
        (linter.config.is_error && !linter.called.is_empty()).then(|| CheckError::Violation {
            rules: linter.called.clone(),
        })
    });
    CheckReport {
        warnings: linter.warnings,
        error,
        config: linter.config,
    }
}

/// The options and findings so far (BuildKit `linter.Linter`).
#[derive(Debug, Default)]
struct Linter {
    config: CheckConfig,
    warnings: Vec<Check>,
    called: Vec<&'static str>,
}

impl Linter {
    fn run(&mut self, config: &CheckConfig, rule: &'static Rule, detail: String, lines: Lines) {
        if !config.is_enabled(rule) {
            return;
        }
        if !self.called.contains(&rule.name) {
            self.called.push(rule.name);
        }
        self.warnings.push(Check {
            rule,
            detail,
            start_line: lines.0,
            end_line: lines.1,
        });
    }
}

/// An instruction's first and last line.
#[derive(Debug, Clone, Copy)]
struct Lines(u32, u32);

fn lines_of(node: &Node) -> Lines {
    Lines(node.start_line, node.end_line)
}

fn dockerfile_error(message: impl Into<String>, line: Option<u32>) -> CheckError {
    CheckError::Dockerfile {
        message: message.into(),
        line,
    }
}

/// Variables BuildKit never puts in the environment (`nonEnvArgs`).
const NON_ENV_ARGS: [&str; 2] = ["BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"];

/// Stage names BuildKit reserves (`reservedStageNames`).
const RESERVED_STAGE_NAMES: [&str; 2] = ["context", "scratch"];

/// An ordered environment where a later value replaces an earlier one in place (llb
/// `EnvList`).
#[derive(Debug, Clone, Default)]
pub(crate) struct OrderedEnv(Vec<(String, String)>);

impl OrderedEnv {
    pub(crate) fn set(&mut self, key: &str, value: &str) {
        if let Some(entry) = self.0.iter_mut().find(|(k, _)| k == key) {
            value.clone_into(&mut entry.1);
        } else {
            self.0.push((key.to_owned(), value.to_owned()));
        }
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }
}

impl Env for OrderedEnv {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The state one stage leaves for stages built on it.
#[derive(Debug, Clone, Default)]
struct StageState {
    name: Option<String>,
    env: OrderedEnv,
    arg_names: Vec<String>,
    has_shell: bool,
    is_workdir_set: bool,
    /// Whether `env` holds the whole environment (not so on an unlisted base image).
    is_env_known: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use dispatch::go_clean;

    #[test]
    fn clean_matches_go() {
        assert_eq!(go_clean("./Dockerfile"), "Dockerfile");
        assert_eq!(go_clean("."), ".");
        assert_eq!(go_clean("/"), "/");
        assert_eq!(go_clean("a/../../b/"), "../b");
        assert_eq!(go_clean("/../x"), "/x");
    }

    #[test]
    fn every_rule_is_listed_once() {
        assert_eq!(RULES.len(), 22);
        assert_eq!(
            rule_by_name("UndefinedVar").map(|r| r.description),
            Some("Variables should be defined before their use")
        );
        assert!(
            rule_by_name("InvalidDefinitionDescription")
                .unwrap()
                .is_experimental
        );
    }
}
