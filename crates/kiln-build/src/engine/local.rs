//! The executor of this machine: what RUN and COPY/ADD need to run here — the store, the
//! build context, the file-hash memo, the sandbox (started on the first RUN), the base
//! resolver (for `--from` images) and the compressor that the image's new layers go to.
//! Its `StepExecutor` implementation is in `executor`; the step kinds are in `copy_exec`
//! and `run_exec`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use kiln_oci::{ChainId, Digest, Platform};
use kiln_plan::{BuildGraph, SourceRef, StageId};
use kiln_sandbox::Sandbox;
use kiln_store::Store;

use super::base::Resolver;
use super::commit;
use super::compressor::Compressor;
use super::error::{InternalError, LayerError, StepError};
use super::ignore::IgnoreFilter;
use super::model::{LayerInfo, NamedSource, StageResult};
use super::options::Builder;
use super::seams::BaseResolver;
use crate::copy::digest::HashMemo;
use crate::copy::source::{ContextTree, LayeredTree, SourceTree};
use crate::event::EventSink;

/// The state RUN and COPY/ADD run with; see the module docs.
pub(crate) struct Local<'a> {
    pub(crate) builder: &'a Builder,
    pub(crate) store: &'a Store,
    pub(crate) graph: &'a BuildGraph,
    pub(crate) events: &'a dyn EventSink,
    pub(crate) context: ContextTree<Arc<IgnoreFilter>>,
    pub(crate) memo: &'a HashMemo,
    pub(crate) resolver: &'a Resolver<'a>,
    /// Compresses the image's layers in the background while the next steps run.
    pub(crate) compressor: &'a Compressor,
    sandbox: OnceLock<Result<Sandbox, Arc<kiln_sandbox::SandboxError>>>,
}

impl std::fmt::Debug for Local<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local").finish_non_exhaustive()
    }
}

impl<'a> Local<'a> {
    #[expect(clippy::too_many_arguments, reason = "the build's parts, wired once")]
    pub(crate) fn new(
        builder: &'a Builder,
        store: &'a Store,
        graph: &'a BuildGraph,
        events: &'a dyn EventSink,
        context: ContextTree<Arc<IgnoreFilter>>,
        memo: &'a HashMemo,
        resolver: &'a Resolver<'a>,
        compressor: &'a Compressor,
    ) -> Self {
        Self {
            builder,
            store,
            graph,
            events,
            context,
            memo,
            resolver,
            compressor,
            sandbox: OnceLock::new(),
        }
    }

    pub(crate) fn sandbox(&self) -> Result<&Sandbox, StepError> {
        self.sandbox
            .get_or_init(|| {
                let config = kiln_sandbox::SandboxConfig {
                    helper_exe: self.builder.sandbox_helper.clone(),
                    ..kiln_sandbox::SandboxConfig::default()
                };
                Sandbox::new(config).map_err(Arc::new)
            })
            .as_ref()
            .map_err(|e| StepError::SandboxUnavailable(Arc::clone(e)))
    }

    /// Writes `dir` as a layer on top of `parent` (see [`commit::commit_dir`]); a layer of
    /// the image (`in_image`) goes to the compressor at once.
    pub(crate) fn commit(
        &self,
        dir: &Path,
        parent: Option<&ChainId>,
        in_image: bool,
    ) -> Result<Option<LayerInfo>, LayerError> {
        let layer = commit::commit_dir(self.store, dir, parent, self.builder.source_date_epoch)?;
        if in_image && let Some(layer) = &layer {
            self.compressor.submit(layer);
        }
        Ok(layer)
    }

    /// The tree a `--from` (or bind mount `from=`) refers to, and whether its owners are
    /// kept (everything but the context and local directories).
    pub(crate) fn source_tree(
        &self,
        from: &SourceRef,
        deps: &BTreeMap<StageId, Arc<StageResult>>,
        platform: &Platform,
    ) -> Result<(Box<dyn SourceTree + '_>, bool), StepError> {
        Ok(match from {
            SourceRef::Context => (Box::new(self.context_ref()), false),
            SourceRef::Scratch => (Box::new(LayeredTree::new(Vec::new(), "scratch")), true),
            SourceRef::Stage(id) => {
                let result = deps
                    .get(id)
                    .ok_or(StepError::Internal(InternalError::NoSourceResult(*id)))?;
                let name = self.graph.stage(*id).map_or_else(
                    || format!("stage {id}"),
                    |s| format!("stage {}", s.name.clone().unwrap_or_else(|| id.to_string())),
                );
                (Box::new(self.layered(&result.layers, name)), true)
            }
            SourceRef::Image(reference) => {
                let image = self
                    .resolver
                    .image(reference, platform)
                    .map_err(|e| StepError::Base(Box::new(e)))?;
                (
                    Box::new(self.layered(&image.layers, format!("image {reference}"))),
                    true,
                )
            }
            SourceRef::NamedContext(name) => match self
                .resolver
                .named_context(name, platform)
                .map_err(|e| StepError::Base(Box::new(e)))?
            {
                NamedSource::Image(image) => (
                    Box::new(self.layered(&image.layers, format!("build context {name}"))),
                    true,
                ),
                NamedSource::Dir(dir) => (
                    Box::new(ContextTree::new(dir, Arc::new(IgnoreFilter::none()))),
                    false,
                ),
            },
        })
    }

    fn context_ref(&self) -> ContextTree<Arc<IgnoreFilter>> {
        ContextTree::new(
            self.context.root().to_path_buf(),
            Arc::clone(self.context.filter()),
        )
    }

    /// A read-only view of `layers` (base first).
    pub(crate) fn layered(&self, layers: &[LayerInfo], name: String) -> LayeredTree {
        LayeredTree::new(self.snapshot_dirs(layers), name)
    }

    /// The snapshot directories of `layers`, top first (overlay's lowerdir order).
    pub(crate) fn snapshot_dirs(&self, layers: &[LayerInfo]) -> Vec<PathBuf> {
        layers
            .iter()
            .rev()
            .map(|l| self.store.snapshot_path(&l.chain))
            .collect()
    }

    /// The key inputs a COPY from an earlier stage had when it was last planned on the same
    /// destination chain (see [`copy_inputs_memo_key`]).
    pub(crate) fn recall_copy_inputs(&self, memo: &str) -> Option<BTreeMap<String, Digest>> {
        if self.builder.no_cache {
            return None;
        }
        let value = self.store.get_cache_record(memo).ok()??;
        serde_json::from_value(value.get("inputs")?.clone()).ok()
    }

    /// Best effort: a memo that cannot be written is planned again next time.
    pub(crate) fn remember_copy_inputs(&self, memo: &str, inputs: &BTreeMap<String, Digest>) {
        let value = serde_json::json!({ "kind": "copy-inputs", "inputs": inputs });
        if let Err(err) =
            self.store
                .put_cache_record(memo, &kiln_store::RecordRefs::default(), &value)
        {
            tracing::debug!("not remembering COPY inputs: {err}");
        }
    }
}

/// The memo key of a `COPY --from=<stage>`'s key inputs: the copy as planned, the chain of the
/// destination stage so far and the chain of the source stage. Both chains name immutable
/// snapshots, so the same key always yields the same inputs (names, modes, owners, contents of
/// the copied subtree) and the walk of both trees can be skipped on a warm rebuild. `None` for
/// sources that can change under the same name (the context, named contexts, images).
pub(crate) fn copy_inputs_memo_key(
    copy: &kiln_plan::CopyAction,
    layers: &[LayerInfo],
    deps: &BTreeMap<StageId, Arc<StageResult>>,
) -> Option<String> {
    let SourceRef::Stage(source) = &copy.from else {
        return None;
    };
    if copy.sources.iter().any(|s| super::download::is_http_url(s)) {
        // A URL's content is not part of either chain.
        return None;
    }
    let source = deps.get(source)?;
    let chain = |layers: &[LayerInfo]| {
        layers
            .last()
            .map(|l| l.chain.to_string())
            .unwrap_or_default()
    };
    let material = serde_json::json!({
        "memo": "copy-inputs",
        "version": 1,
        "schema": kiln_plan::CACHE_KEY_SCHEMA,
        "copy": copy,
        "destination": chain(layers),
        "source": chain(&source.layers),
    });
    Some(
        Digest::sha256_of(material.to_string().as_bytes())
            .hex()
            .to_owned(),
    )
}
