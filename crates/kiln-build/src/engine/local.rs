//! The executor of this machine: what RUN and COPY/ADD need to run here — the store, the
//! build context, the file-hash memo, the sandbox (started on the first RUN), the base
//! resolver (for `--from` images) and the compressor that the image's new layers go to.
//! Its `StepExecutor` implementation is in `executor`; the step kinds are in `copy_exec`
//! and `run_exec`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use kiln_oci::{ChainId, Digest, Platform};
use kiln_plan::{BuildGraph, SourceRef, StageId};
use kiln_sandbox::{Isolation, IsolationProbe, Sandbox};
use kiln_store::Store;

use super::base::Resolver;
use super::cache_mounts::CacheMounts;
use super::commit;
use super::compressor::Compressor;
use super::error::{InternalError, LayerError, StepError};
use super::ignore::IgnoreFilter;
use super::lazy::LazyLayers;
use super::model::{LayerInfo, NamedSource, StageResult};
use super::options::Builder;
use super::seams::BaseResolver;
use crate::copy::digest::HashMemo;
use crate::copy::source::{ContextTree, LayeredTree, SourceTree};
use crate::event::{Event, EventSink};

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
    /// Imported layers not fetched yet; fetched when a step needs their files.
    pub(crate) lazy: &'a LazyLayers,
    /// The cache mounts RUN steps used, and those imported caches can restore.
    pub(crate) cache_mounts: &'a CacheMounts,
    sandbox: OnceLock<Result<(Sandbox, Isolation), Arc<kiln_sandbox::SandboxError>>>,
    /// The sandbox's notices (chroot isolation's limits) already shown as warnings.
    notices: Mutex<std::collections::BTreeSet<String>>,
    /// Chroot isolation: each stage's rootfs after its last RUN, for its next RUN.
    kept_roots: KeptRoots,
    /// The COPY key inputs this build used, by memo key: `--cache-to` exports them.
    copy_inputs: Mutex<BTreeMap<String, BTreeMap<String, Digest>>>,
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
        lazy: &'a LazyLayers,
        cache_mounts: &'a CacheMounts,
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
            lazy,
            cache_mounts,
            sandbox: OnceLock::new(),
            notices: Mutex::new(std::collections::BTreeSet::new()),
            kept_roots: KeptRoots::default(),
            copy_inputs: Mutex::new(BTreeMap::new()),
        }
    }

    /// The sandbox and the isolation RUN steps use: made, and for `--isolation auto` probed,
    /// on the first RUN (a cached build never pays for the probe), and said once.
    pub(crate) fn sandbox(&self) -> Result<(&Sandbox, Isolation), StepError> {
        self.sandbox
            .get_or_init(|| {
                let config = kiln_sandbox::SandboxConfig {
                    helper_exe: self.builder.sandbox_helper.clone(),
                    ..kiln_sandbox::SandboxConfig::default()
                };
                let sandbox = Sandbox::new(config).map_err(Arc::new)?;
                let (isolation, reason) = self.builder.isolation.choose(|| self.probe(&sandbox));
                self.events.emit(Event::Isolation {
                    mode: isolation.to_string(),
                    reason,
                });
                Ok((sandbox, isolation))
            })
            .as_ref()
            .map(|(sandbox, isolation)| (sandbox, *isolation))
            .map_err(|e| StepError::SandboxUnavailable(Arc::clone(e)))
    }

    /// What the host allows, probed in a scratch directory of the store's `tmp/`.
    fn probe(&self, sandbox: &Sandbox) -> IsolationProbe {
        let _span = tracing::debug_span!("isolation_probe").entered();
        let scratch = match tempfile::Builder::new()
            .prefix("probe-")
            .tempdir_in(self.store.root().join("tmp"))
        {
            Ok(dir) => dir,
            Err(err) => {
                tracing::debug!(%err, "no scratch directory for the isolation probe");
                return IsolationProbe {
                    isolation: Isolation::Namespaces,
                    reason: None,
                };
            }
        };
        // Rootless, the overlay leaves a mode-0 work directory a plain removal cannot enter.
        let scratch = scratch.keep();
        let probe = sandbox.probe(&scratch);
        if let Err(err) = kiln_store::remove_tree(&scratch) {
            tracing::warn!(%err, "removing the isolation probe's scratch directory");
        }
        probe
    }

    /// The rootfs chroot isolation kept after the last RUN of `stage` for `platform`, taken
    /// for its next one.
    pub(crate) fn take_kept_root(&self, platform: &Platform, stage: StageId) -> Option<KeptRoot> {
        self.kept_roots
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(platform.clone(), stage))
    }

    /// Keeps `root` for the next RUN of `stage` for `platform` (replacing, and deleting, an
    /// older one).
    pub(crate) fn keep_root(&self, platform: &Platform, stage: StageId, root: KeptRoot) {
        let old = self
            .kept_roots
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((platform.clone(), stage), root);
        drop(old);
    }

    /// Shows each distinct notice of a sandbox run once per build, as a warning.
    pub(crate) fn notice(&self, notices: &[String]) {
        let mut seen = self.notices.lock().unwrap_or_else(PoisonError::into_inner);
        for notice in notices {
            if seen.insert(notice.clone()) {
                self.events.emit(Event::Warning {
                    message: format!("chroot isolation: {notice}"),
                });
            }
        }
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
                (Box::new(self.layered(&result.layers, name)?), true)
            }
            SourceRef::Image(reference) => {
                let image = self
                    .resolver
                    .image(reference, platform)
                    .map_err(|e| StepError::Base(Box::new(e)))?;
                (
                    Box::new(self.layered(&image.layers, format!("image {reference}"))?),
                    true,
                )
            }
            SourceRef::NamedContext(name) => match self
                .resolver
                .named_context(name, platform)
                .map_err(|e| StepError::Base(Box::new(e)))?
            {
                NamedSource::Image(image) => (
                    Box::new(self.layered(&image.layers, format!("build context {name}"))?),
                    true,
                ),
                NamedSource::Dir(dir) => (
                    Box::new(ContextTree::new(dir, Arc::new(IgnoreFilter::none()))),
                    false,
                ),
            },
        })
    }

    pub(crate) fn context_ref(&self) -> ContextTree<Arc<IgnoreFilter>> {
        ContextTree::new(
            self.context.root().to_path_buf(),
            Arc::clone(self.context.filter()),
        )
    }

    /// A read-only view of `layers` (base first).
    pub(crate) fn layered(
        &self,
        layers: &[LayerInfo],
        name: String,
    ) -> Result<LayeredTree, StepError> {
        Ok(LayeredTree::new(self.snapshot_dirs(layers)?, name))
    }

    /// The snapshot directories of `layers`, top first (overlay's lowerdir order); layers of
    /// an imported cache are fetched and unpacked first.
    pub(crate) fn snapshot_dirs(&self, layers: &[LayerInfo]) -> Result<Vec<PathBuf>, StepError> {
        self.lazy.ensure_snapshots(layers)?;
        Ok(layers
            .iter()
            .rev()
            .map(|l| self.store.snapshot_path(&l.chain))
            .collect())
    }

    /// The COPY key inputs this build used, by memo key.
    pub(crate) fn used_copy_inputs(&self) -> BTreeMap<String, BTreeMap<String, Digest>> {
        self.copy_inputs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn note_copy_inputs(&self, memo: &str, inputs: &BTreeMap<String, Digest>) {
        self.copy_inputs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(memo.to_owned(), inputs.clone());
    }

    /// The key inputs a COPY from an earlier stage had when it was last planned on the same
    /// destination chain (see [`copy_inputs_memo_key`]).
    /// Imported caches' memos answer when the store has none.
    pub(crate) fn recall_copy_inputs(&self, memo: &str) -> Option<BTreeMap<String, Digest>> {
        if self.builder.no_cache {
            return None;
        }
        let local = self
            .store
            .get_cache_record(memo)
            .ok()
            .flatten()
            .and_then(|value| serde_json::from_value(value.get("inputs")?.clone()).ok());
        let inputs = local.or_else(|| self.lazy.copy_inputs(memo).cloned())?;
        self.note_copy_inputs(memo, &inputs);
        Some(inputs)
    }

    /// Best effort: a memo that cannot be written is planned again next time.
    pub(crate) fn remember_copy_inputs(&self, memo: &str, inputs: &BTreeMap<String, Digest>) {
        self.note_copy_inputs(memo, inputs);
        let value = serde_json::json!({ "kind": "copy-inputs", "inputs": inputs });
        if let Err(err) =
            self.store
                .put_cache_record(memo, &kiln_store::RecordRefs::default(), &value)
        {
            tracing::debug!("not remembering COPY inputs: {err}");
        }
    }
}

/// The memo key of a COPY's key inputs: the copy as planned, the chain of the destination
/// stage so far and what it reads — the chain of the source stage for `--from=<stage>`, or
/// the [`context_fingerprint`](super::copy_exec::context_fingerprint) of what it selects from
/// the build context. The chains name immutable snapshots and the fingerprint the sources'
/// content, so the same key always yields the same inputs (names, modes, owners, contents of
/// the copied subtree) and the walk of both trees can be skipped on a hit. `None` for sources
/// that can change under the same name (named contexts, images) or are not covered.
pub(crate) fn copy_inputs_memo_key(
    copy: &kiln_plan::CopyAction,
    layers: &[LayerInfo],
    deps: &BTreeMap<StageId, Arc<StageResult>>,
    context: Option<&Digest>,
) -> Option<String> {
    if copy
        .sources
        .iter()
        .any(|s| super::download::is_http_url(s) || super::download::is_git_source(s))
    {
        // A URL's content (a repository's commit) is not part of either chain.
        return None;
    }
    let chain = |layers: &[LayerInfo]| {
        layers
            .last()
            .map(|l| l.chain.to_string())
            .unwrap_or_default()
    };
    let source = match (&copy.from, context) {
        (SourceRef::Stage(source), _) => chain(&deps.get(source)?.layers),
        (SourceRef::Context, Some(fingerprint)) => format!("context {fingerprint}"),
        _ => return None,
    };
    let material = serde_json::json!({
        "memo": "copy-inputs",
        "version": 1,
        "schema": kiln_plan::CACHE_KEY_SCHEMA,
        "copy": copy,
        "destination": chain(layers),
        "source": source,
    });
    Some(
        Digest::sha256_of(material.to_string().as_bytes())
            .hex()
            .to_owned(),
    )
}

/// A stage's rootfs as chroot isolation left it after a RUN: the stage's layers `chains`
/// (base first) applied, nothing else. Deleted when dropped, unless handed to the sandbox.
#[derive(Debug)]
pub(crate) struct KeptRoot {
    /// A directory of the store's `tmp`, holding `rootfs`.
    pub(crate) dir: PathBuf,
    /// The layers it holds, base first.
    pub(crate) chains: Vec<ChainId>,
}

impl KeptRoot {
    /// The rootfs itself.
    pub(crate) fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
}

impl Drop for KeptRoot {
    fn drop(&mut self) {
        if let Err(err) = kiln_store::remove_tree(&self.dir) {
            tracing::warn!(%err, "removing a kept chroot");
        }
    }
}

/// Every stage's kept rootfs, per target platform; what is left is deleted with the build.
#[derive(Debug, Default)]
struct KeptRoots(Mutex<std::collections::HashMap<(Platform, StageId), KeptRoot>>);
