//! The engine's seams (DESIGN.md §4): what the stage driver needs from the world, as traits.
//! The driver decides — cache hit or miss, why, what to record, what to run next — and these
//! do: [`StepExecutor`] runs a step (the sandbox for RUN, the copier for COPY/ADD),
//! [`ResultStore`] keeps cache records and the layers they name, [`BaseResolver`] finds base
//! images. The build wires in the real ones (`local`, `results`, `base`); the engine's unit
//! tests wire in fakes that keep everything in memory and need no root.

use std::collections::BTreeMap;
use std::sync::Arc;

use kiln_oci::{ChainId, ImageRef, Platform};
use kiln_plan::{CacheKey, KeyInputs, Step};

use super::error::{BaseError, StepError};
use super::model::{
    BaseImage, CacheRecord, FoundRecord, LayerInfo, NamedSource, RecordLayer, StepContext,
};

/// Runs filesystem steps (RUN, COPY/ADD, WORKDIR's directory).
pub(crate) trait StepExecutor: Sync {
    /// What [`StepExecutor::key_inputs`] learnt that [`StepExecutor::execute`] can reuse (a
    /// COPY's plan), so a miss does not walk its sources twice.
    type Prepared;

    /// Adds the content digests of what the step reads (context files, another stage's
    /// files, a bind mount's source, a URL's body) to its key inputs.
    fn key_inputs(
        &self,
        step: &Step,
        inputs: &mut KeyInputs,
        ctx: &StepContext<'_>,
    ) -> Result<Option<Self::Prepared>, StepError>;

    /// Runs the step on top of `ctx.layers`; its layer, or `None` when it changed nothing.
    fn execute(
        &self,
        step: &Step,
        prepared: Option<Self::Prepared>,
        ctx: &StepContext<'_>,
    ) -> Result<Option<LayerInfo>, StepError>;
}

/// Cache records and the layers they name.
pub(crate) trait ResultStore: Sync {
    /// The record stored under `key`, if any (an unreadable one is none), and where it was
    /// found.
    fn lookup(&self, key: &CacheKey) -> Option<FoundRecord>;

    /// The recorded `layer` on top of `parent`, ready to use: its snapshot, unpacked from its
    /// blob if the snapshot was pruned (an imported cache's blob is downloaded first, only
    /// now that a hit needs it); `None` when neither is left (the record is then a miss).
    fn adopt(
        &self,
        layer: &RecordLayer,
        parent: Option<&ChainId>,
    ) -> Result<Option<LayerInfo>, StepError>;

    /// Records what the step keyed `key` made. Best effort: a record that cannot be written
    /// only costs the next build a miss.
    fn record(&self, key: &CacheKey, record: &CacheRecord);

    /// The key inputs of the last build with the same history name, by step (`stage:position`),
    /// which explain the next build's misses.
    fn load_history(&self, name: &str) -> BTreeMap<String, KeyInputs>;

    /// Saves `history` under `name` (best effort).
    fn save_history(&self, name: &str, history: &BTreeMap<String, KeyInputs>);
}

/// Base images and named build contexts.
pub(crate) trait BaseResolver: Sync {
    /// The image `reference` for `platform`, pulled when it is not in the store (or always
    /// with `--pull`); resolved at most once per build.
    fn image(&self, reference: &ImageRef, platform: &Platform)
    -> Result<Arc<BaseImage>, BaseError>;

    /// The image when it is already in the store and no `--pull` asks for a fresh one:
    /// never pulls. (The driver counts its ONBUILD triggers before announcing the step.)
    fn local_image(&self, reference: &ImageRef, platform: &Platform) -> Option<Arc<BaseImage>>;

    /// The `--build-context` called `name`.
    fn named_context(&self, name: &str, platform: &Platform) -> Result<NamedSource, BaseError>;
}
