//! What a build asks of the planner: build args, target, platforms, named contexts.

use std::collections::BTreeSet;

use kiln_oci::Platform;

use crate::args::BuildArgs;

/// Options of [`crate::plan`], built like `docker buildx build` flags.
///
/// ```
/// use kiln_plan::PlanOptions;
/// let options = PlanOptions::new("linux/arm64".parse().unwrap())
///     .build_arg("VERSION", "1.2")
///     .target("runtime")
///     .named_context("assets");
/// assert_eq!(options.target.as_deref(), Some("runtime"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// `--build-arg NAME=VALUE`.
    pub build_args: BuildArgs,
    /// `--target`: the stage to build (case-insensitive); `None` = the last stage.
    pub target: Option<String>,
    /// `--platform`: the platform of the image being built (`TARGETPLATFORM`).
    pub platform: Platform,
    /// The platform the build runs on (`BUILDPLATFORM`).
    pub build_platform: Platform,
    /// Names given with `--build-context NAME=…` (their sources are the executor's business).
    /// A name equal to a stage name or a `FROM`/`--from` image replaces it, as in buildx.
    pub named_contexts: BTreeSet<String>,
    /// Build every stage, not only those the target needs (BuildKit
    /// `--skip-unused-stages=false`).
    pub all_stages: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self::new(Platform::host())
    }
}

impl PlanOptions {
    /// Options for building for `platform` on the host platform.
    pub fn new(platform: Platform) -> Self {
        Self {
            build_args: BuildArgs::new(),
            target: None,
            platform,
            build_platform: Platform::host(),
            named_contexts: BTreeSet::new(),
            all_stages: false,
        }
    }

    /// Adds `--build-arg name=value`.
    #[must_use]
    pub fn build_arg(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.build_args.insert(name.into(), value.into());
        self
    }

    /// Sets `--target`.
    #[must_use]
    pub fn target(mut self, stage: impl Into<String>) -> Self {
        self.target = Some(stage.into());
        self
    }

    /// Sets the build platform.
    #[must_use]
    pub fn build_platform(mut self, platform: Platform) -> Self {
        self.build_platform = platform;
        self
    }

    /// Declares `--build-context name=…`.
    #[must_use]
    pub fn named_context(mut self, name: impl Into<String>) -> Self {
        self.named_contexts.insert(name.into());
        self
    }

    /// Builds every stage.
    #[must_use]
    pub fn all_stages(mut self, yes: bool) -> Self {
        self.all_stages = yes;
        self
    }
}
