//! The build graph IR: planned stages, their bases and dependencies, and the resolution of
//! stage references (`FROM name`, `COPY --from=name|index|image`, `RUN --mount=from=…`).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use kiln_dockerfile::{ExpansionBudget, Instruction, Span};
use kiln_oci::{Digest, ImageRef, Platform};
use serde::Serialize;

use crate::args::{BuildArgs, EnvList};
use crate::cache_key::KeyInputs;
use crate::error::{PlanError, PlanWarning};

/// A stage's position among the Dockerfile's `FROM`s (0-based), stable across pruning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct StageId(pub usize);

impl fmt::Display for StageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a stage's root filesystem and config start from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum BaseSource {
    /// `FROM scratch`: empty filesystem, empty config.
    Scratch,
    /// `FROM <earlier stage>`: that stage's result (filesystem, config, args in scope).
    Stage(StageId),
    /// `FROM <image>`: resolve and pull this reference for the stage's platform.
    Image(ImageRef),
    /// A `--build-context NAME=…` replacing the image (or the whole stage) of that name.
    NamedContext(String),
}

/// What `COPY --from` or `RUN --mount=from=` refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum SourceRef {
    /// The build context (no `--from`).
    Context,
    /// An empty filesystem (`--from=scratch`, a cache mount without `from`).
    Scratch,
    /// An earlier stage's result.
    Stage(StageId),
    /// An image to pull for the build's target platform (BuildKit resolves a `--from` image
    /// like a `FROM` without `--platform`).
    Image(ImageRef),
    /// A named build context.
    NamedContext(String),
}

/// One stage of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedStage {
    /// Its index among all stages of the Dockerfile.
    pub id: StageId,
    /// `AS name` (lowercase, as BuildKit stores it).
    pub name: Option<String>,
    /// The name in progress lines: the stage name, `stage-N`, or empty when the build has a
    /// single stage and no other sources (BuildKit `prefixCommand`).
    pub progress_name: String,
    /// The base.
    pub base: BaseSource,
    /// The `FROM` text after expansion (`python:3.12-slim`), for progress and history.
    pub base_name: String,
    /// The platform the stage builds for: `FROM --platform`, else the base stage's, else the
    /// build's target platform.
    pub platform: Platform,
    /// Stages this one needs (base, `COPY --from`, `RUN --mount=from`), sorted, unique.
    pub deps: Vec<StageId>,
    /// The `FROM` instruction.
    pub from: Instruction,
    /// `ONBUILD` triggers of a base *stage*, run first (a base *image*'s triggers are found
    /// by [`crate::StageState`] in its config).
    pub triggers: Vec<Instruction>,
    /// The stage's instructions after `FROM`, unexpanded, with spans. Empty when a named
    /// context replaces the stage.
    pub instructions: Vec<Instruction>,
    /// Steps shown as `[name i/total]`: the `FROM` of an image plus every RUN, COPY, ADD,
    /// WORKDIR and base-stage trigger (BuildKit `cmdTotal`).
    pub step_total: usize,
}

impl PlannedStage {
    /// The key inputs of the stage's `FROM`: the base as written after expansion, the stage's
    /// platform and, for an image or named context, the resolved manifest (or config) digest.
    /// For a stage base set the base stage's last key as parent.
    pub fn base_key_inputs(&self, base_digest: Option<Digest>) -> KeyInputs {
        let base = match &self.base {
            BaseSource::Scratch => "scratch".to_owned(),
            BaseSource::Stage(id) => format!("stage {id}"),
            BaseSource::Image(reference) => reference.to_string(),
            BaseSource::NamedContext(name) => format!("context {name}"),
        };
        let mut inputs = KeyInputs::new(format!("FROM {base}"), &self.platform);
        if let Some(digest) = base_digest {
            inputs.set_base_image(digest);
        }
        inputs
    }

    /// Whether a named build context replaces the whole stage (its instructions never run).
    pub fn is_replaced_by_context(&self) -> bool {
        matches!(&self.base, BaseSource::NamedContext(name) if self.name.as_deref() == Some(name.as_str()))
    }

    /// The progress label of the stage's `FROM` (`[builder 1/7] FROM python:3.12`), when the
    /// base is an image or named context (a stage or scratch base shows no `FROM` step).
    pub fn from_progress(&self) -> Option<String> {
        self.from_progress_with_triggers(0)
    }

    /// [`Self::from_progress`] once the base image is known to carry `image_triggers`
    /// `ONBUILD` triggers: they run as steps of this stage, so the total counts them (as
    /// [`crate::StageState`]'s labels do).
    pub fn from_progress_with_triggers(&self, image_triggers: usize) -> Option<String> {
        match self.base {
            BaseSource::Image(_) | BaseSource::NamedContext(_) => Some(progress_label(
                &self.progress_name,
                1,
                self.step_total + image_triggers,
                &format!("FROM {}", self.base_name),
            )),
            BaseSource::Scratch | BaseSource::Stage(_) => None,
        }
    }
}

/// `[name i/total] text`, with the index padded to the width of the total
/// (BuildKit `prefixCommand`).
pub(crate) fn progress_label(name: &str, index: usize, total: usize, text: &str) -> String {
    if total == 0 {
        return text.to_owned();
    }
    let width = total.to_string().len();
    let prefix = if name.is_empty() {
        String::new()
    } else {
        format!("{name} ")
    };
    format!("[{prefix}{index:>width$}/{total}] {text}")
}

/// The plan of a build: the stages to run in dependency order and the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildGraph {
    /// The stages to build, dependencies first. Two stages with no dependency path between
    /// them may run in parallel.
    pub stages: Vec<PlannedStage>,
    /// The stage whose result is the build's output.
    pub target: StageId,
    /// Non-fatal findings (unused build args, lint-style casing warnings).
    pub warnings: Vec<PlanWarning>,
    /// Global ARGs (before the first `FROM`) and predefined platform args, resolved.
    #[serde(skip)]
    pub(crate) global_args: EnvList,
    /// The `--build-arg`s.
    pub build_args: BuildArgs,
    /// The build's target platform.
    pub platform: Platform,
    /// The Dockerfile's escape token.
    pub escape: char,
    /// Every stage of the Dockerfile (also pruned ones), for resolving references.
    #[serde(skip)]
    pub(crate) names: StageNames,
    /// What expansion may still produce in this build ([`kiln_dockerfile::MAX_TOTAL_EXPANSION`]
    /// at the start), shared by the plan and every [`crate::StageState`] made from it.
    #[serde(skip)]
    pub(crate) budget: SharedBudget,
}

/// The build's [`ExpansionBudget`], shared by its stages; graphs compare equal whatever is
/// left of it.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedBudget(Arc<ExpansionBudget>);

impl std::ops::Deref for SharedBudget {
    type Target = ExpansionBudget;

    fn deref(&self) -> &ExpansionBudget {
        &self.0
    }
}

impl PartialEq for SharedBudget {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for SharedBudget {}

impl BuildGraph {
    /// The planned stage with this id.
    pub fn stage(&self, id: StageId) -> Option<&PlannedStage> {
        self.stages.iter().find(|s| s.id == id)
    }

    /// The target stage.
    pub fn target_stage(&self) -> &PlannedStage {
        self.stage(self.target)
            .unwrap_or_else(|| &self.stages[self.stages.len() - 1])
    }

    /// The global ARG values visible to `FROM` lines (after `--build-arg` overrides),
    /// including the predefined platform args.
    pub fn global_args(&self) -> impl Iterator<Item = (&str, &str)> {
        self.global_args.iter()
    }

    /// The planned stages that depend on `id` directly.
    pub fn dependents(&self, id: StageId) -> Vec<StageId> {
        self.stages
            .iter()
            .filter(|s| s.deps.contains(&id))
            .map(|s| s.id)
            .collect()
    }
}

/// The names of all stages, for reference resolution.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StageNames {
    /// `(lowercase name, id)` per stage, in order (`None` for unnamed).
    pub(crate) stages: Vec<Option<String>>,
    /// Stage ids replaced by a named context.
    pub(crate) replaced: BTreeSet<usize>,
    /// `--build-context` names, normalized.
    pub(crate) contexts: BTreeSet<String>,
}

impl StageNames {
    /// The last stage named `name` (case-insensitive; BuildKit keeps the last definition).
    pub(crate) fn find(&self, name: &str) -> Option<StageId> {
        let lower = name.to_lowercase();
        self.stages
            .iter()
            .rposition(|n| n.as_deref() == Some(lower.as_str()))
            .map(StageId)
    }

    /// The stage a `FROM` at stage `current` names: an exact match among earlier stages
    /// (BuildKit `addState` looks the expanded base name up as written).
    pub(crate) fn find_base(&self, name: &str, current: usize) -> Option<StageId> {
        self.stages[..current]
            .iter()
            .rposition(|n| n.as_deref() == Some(name))
            .map(StageId)
    }

    /// The named context an image name maps to (buildx matches the familiar name without
    /// `:latest`, or the name as written).
    pub(crate) fn context_for(&self, name: &str) -> Option<String> {
        if name.eq_ignore_ascii_case("scratch") || name.eq_ignore_ascii_case("context") {
            return None;
        }
        let normalized = normalize_context_name(name);
        self.contexts.contains(&normalized).then_some(normalized)
    }

    /// Resolves a `--from` value of an instruction in stage `current`: a stage index
    /// (`allow_index`, COPY only), a stage name, a named context, `scratch` or an image.
    pub(crate) fn resolve_source(
        &self,
        value: &str,
        current: StageId,
        allow_index: bool,
        span: Span,
    ) -> Result<SourceRef, PlanError> {
        // BuildKit toCommand: `--from` is never expanded; a `$` reference is an error.
        if has_variable(value) {
            return Err(PlanError::FromFlagExpansion {
                value: value.to_owned(),
                span,
            });
        }
        let stage = if allow_index && let Ok(index) = value.parse::<i64>() {
            let count = self.stages.len();
            let index = usize::try_from(index).ok().filter(|i| *i < count).ok_or(
                PlanError::StageIndexOutOfRange {
                    index: usize::try_from(index).unwrap_or(usize::MAX),
                    count,
                    span,
                },
            )?;
            Some(StageId(index))
        } else {
            self.find(value)
        };
        if let Some(id) = stage {
            if id >= current {
                return Err(PlanError::ForwardStageReference {
                    name: value.to_owned(),
                    stage: self.display(current),
                    span,
                });
            }
            return Ok(SourceRef::Stage(id));
        }
        if value == "scratch" {
            return Ok(SourceRef::Scratch);
        }
        if let Some(name) = self.context_for(value) {
            return Ok(SourceRef::NamedContext(name));
        }
        ImageRef::parse(value)
            .map(SourceRef::Image)
            .map_err(|source| PlanError::InvalidReference {
                reference: value.to_owned(),
                span,
                source,
            })
    }

    pub(crate) fn display(&self, id: StageId) -> String {
        self.stages
            .get(id.0)
            .and_then(Clone::clone)
            .unwrap_or_else(|| format!("stage-{}", id.0))
    }
}

/// Whether a value holds a variable reference: a `$` that is not the last character
/// (BuildKit's check for `from=`).
pub(crate) fn has_variable(value: &str) -> bool {
    value.find('$').is_some_and(|i| i + 1 < value.len())
}

/// buildx's named-context key for an image name: the familiar name without `:latest`
/// (`docker.io/library/alpine:latest` → `alpine`); names that are not references stay as
/// written.
pub(crate) fn normalize_context_name(name: &str) -> String {
    match ImageRef::parse(name) {
        Ok(reference) => {
            let familiar = reference.familiar();
            familiar
                .strip_suffix(":latest")
                .map_or(familiar.clone(), str::to_owned)
        }
        Err(_) => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_labels_pad_like_buildkit() {
        assert_eq!(
            progress_label("builder", 3, 7, "RUN x"),
            "[builder 3/7] RUN x"
        );
        assert_eq!(progress_label("", 2, 12, "RUN x"), "[ 2/12] RUN x");
        assert_eq!(progress_label("a", 1, 0, "RUN x"), "RUN x");
    }

    #[test]
    fn context_names_are_normalized() {
        assert_eq!(
            normalize_context_name("docker.io/library/alpine:latest"),
            "alpine"
        );
        assert_eq!(normalize_context_name("alpine:3.19"), "alpine:3.19");
        assert_eq!(normalize_context_name("ghcr.io/a/b"), "ghcr.io/a/b");
        assert_eq!(normalize_context_name("Not A Ref"), "Not A Ref");
        assert!(has_variable("$X") && !has_variable("a$") && !has_variable("abc"));
    }
}
