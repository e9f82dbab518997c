//! Running one stage: resolve its base, then drive kiln-plan's `StageState` step by step,
//! answering each filesystem step from the cache or executing it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use kiln_oci::{ChainId, DiffId, Digest, History, MediaType};
use kiln_plan::{
    Action, BaseSource, BuildGraph, CacheKey, KeyInputs, SourceRef, StageBase, StageId,
    StageOutput, StageState, Step, explain_miss,
};
use kiln_sandbox::Sandbox;
use kiln_store::Store;
use serde::{Deserialize, Serialize};

use super::base::{BaseImage, Resolver};
use super::compressor::Compressor;
use super::error::{BaseError, ContextError, InternalError, StepError, StepId};
use super::{BuildError, Builder, IgnoreFilter};
use crate::event::{Event, EventSink};
use crate::hash::HashMemo;
use crate::scheduler::{CancelToken, StageRunner};
use crate::tree::{ContextTree, LayeredTree, SourceTree};

/// One layer of a stage's filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// Digest of the uncompressed tar.
    pub diff_id: DiffId,
    /// The compressed blob in the store; `None` for a layer this build made, which exists as
    /// its snapshot until the image needs its blob (`commit::ensure_blob`): compressed in
    /// the background for a stage in the image, on demand for the others.
    pub blob: Option<LayerBlob>,
    /// Chain id of the stack up to this layer (its snapshot).
    pub chain: ChainId,
}

/// A layer's compressed blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerBlob {
    /// Digest of the blob in the store.
    pub digest: Digest,
    /// Blob size.
    pub size: u64,
    /// Blob media type.
    pub media_type: MediaType,
}

/// A finished stage.
#[derive(Debug, Clone)]
pub struct StageResult {
    /// Config and expansion state for stages built `FROM` it.
    pub output: StageOutput,
    /// The layers, base first.
    pub layers: Vec<LayerInfo>,
    /// The key of the last filesystem step (parent of a child stage's first step).
    pub key: Option<CacheKey>,
}

/// What a cache record holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheRecord {
    /// The layer, `None` when the step changed nothing.
    layer: Option<RecordLayer>,
    /// When the step originally ran (history `created`).
    created: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RecordLayer {
    diff_id: DiffId,
    /// `None` for a layer kept as its snapshot only (see `LayerInfo::blob`).
    #[serde(default)]
    blob: Option<Digest>,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    media_type: Option<MediaType>,
    /// The layer's snapshot: naming it keeps it from `kiln prune` while the record lives.
    #[serde(default)]
    chain: Option<ChainId>,
}

/// Shared state of one build.
pub(crate) struct Engine<'a> {
    pub(crate) builder: &'a Builder,
    pub(crate) store: &'a Store,
    pub(crate) graph: &'a BuildGraph,
    pub(crate) events: &'a dyn EventSink,
    pub(crate) context: ContextTree<Arc<IgnoreFilter>>,
    pub(crate) memo: &'a HashMemo,
    pub(crate) resolver: Resolver<'a>,
    /// Compresses the image's layers in the background while the next steps run.
    pub(crate) compressor: Compressor,
    sandbox: OnceLock<Result<Sandbox, Arc<kiln_sandbox::SandboxError>>>,
    /// The Dockerfile as named in messages.
    dockerfile_name: String,
    step_counter: AtomicUsize,
    previous: BTreeMap<String, KeyInputs>,
    current: Mutex<BTreeMap<String, KeyInputs>>,
    history_record: String,
    pub(crate) started: String,
    /// The target and the stages it is built `FROM`: their layers are in the image, so they
    /// are compressed as they are made; other stages' layers stay snapshots until needed.
    exported: std::collections::BTreeSet<StageId>,
}

impl std::fmt::Debug for Engine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl<'a> Engine<'a> {
    pub(crate) fn new(
        builder: &'a Builder,
        store: &'a Store,
        graph: &'a BuildGraph,
        events: &'a dyn EventSink,
        filter: Arc<IgnoreFilter>,
        memo: &'a HashMemo,
        dockerfile_name: &str,
    ) -> Result<Self, BuildError> {
        #[expect(
            clippy::disallowed_methods,
            reason = "ContextError::Unreadable names the path with a hint; fs_err would name it twice"
        )]
        let context_root =
            std::fs::canonicalize(&builder.context).map_err(|source| ContextError::Unreadable {
                path: builder.context.clone(),
                source,
            })?;
        if !context_root.is_dir() {
            return Err(ContextError::NotADirectory {
                path: builder.context.clone(),
            }
            .into());
        }
        // The last build of this (context, Dockerfile, target) explains cache misses.
        // The store names cache records by hex only, so the record's name is a digest
        // (domain-separated from step keys, which are digests of a different encoding).
        let history_record = Digest::sha256_of(
            format!(
                "kiln build history v1\0{}\0{}\0{}",
                context_root.display(),
                dockerfile_name,
                builder.target.as_deref().unwrap_or("")
            )
            .as_bytes(),
        )
        .hex()
        .to_owned();
        let previous = match store.get_cache_record(&history_record) {
            Ok(Some(value)) => serde_json::from_value(value).unwrap_or_else(|e| {
                tracing::warn!("ignoring the unreadable build history {history_record}: {e}");
                BTreeMap::new()
            }),
            Ok(None) => BTreeMap::new(),
            Err(e) => {
                tracing::warn!("could not read the build history for cache-miss explanations: {e}");
                BTreeMap::new()
            }
        };
        let started = match builder.source_date_epoch {
            Some(epoch) => kiln_oci::rfc3339_utc(epoch),
            None => now_rfc3339(),
        };
        let mut exported = std::collections::BTreeSet::new();
        let mut next = Some(graph.target);
        while let Some(id) = next.filter(|id| exported.insert(*id)) {
            next = graph
                .stages
                .iter()
                .find(|s| s.id == id)
                .and_then(|s| match s.base {
                    BaseSource::Stage(base) => Some(base),
                    _ => None,
                });
        }
        Ok(Self {
            exported,
            builder,
            store,
            graph,
            events,
            context: ContextTree::new(context_root, filter),
            memo,
            resolver: Resolver::new(builder, store),
            compressor: Compressor::new(
                store.clone(),
                builder.compression,
                builder.source_date_epoch,
            ),
            sandbox: OnceLock::new(),
            dockerfile_name: dockerfile_name.to_owned(),
            step_counter: AtomicUsize::new(0),
            previous,
            current: Mutex::new(BTreeMap::new()),
            history_record,
            started,
        })
    }

    pub(crate) fn next_step_number(&self) -> usize {
        self.step_counter.fetch_add(1, Ordering::SeqCst) + 1
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

    /// Saves this build's key inputs for the next build's miss explanations.
    pub(crate) fn save_history(&self) {
        let current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.is_empty() {
            return;
        }
        let mut merged = self.previous.clone();
        merged.extend(current.iter().map(|(k, v)| (k.clone(), v.clone())));
        // A no-op rebuild has nothing new to say: skip the write (and its two fsyncs).
        if merged == self.previous {
            return;
        }
        if let Ok(value) = serde_json::to_value(&merged)
            && let Err(e) = self.store.put_cache_record(&self.history_record, &value)
        {
            tracing::warn!("could not save build history for cache-miss explanations: {e}");
        }
    }

    /// The tree a `--from` (or bind mount `from=`) refers to.
    pub(crate) fn source_tree(
        &self,
        from: &SourceRef,
        deps: &BTreeMap<StageId, Arc<StageResult>>,
        platform: &kiln_oci::Platform,
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
                let image = self.resolver.image(reference, platform, self)?;
                (
                    Box::new(self.layered(&image.layers, format!("image {reference}"))),
                    true,
                )
            }
            SourceRef::NamedContext(name) => {
                match self.resolver.named_context(name, platform, self)? {
                    super::base::NamedSource::Image(image) => (
                        Box::new(self.layered(&image.layers, format!("build context {name}"))),
                        true,
                    ),
                    super::base::NamedSource::Dir(dir) => (
                        Box::new(ContextTree::new(
                            dir,
                            Arc::new(IgnoreFilter { matcher: None }),
                        )),
                        false,
                    ),
                }
            }
        })
    }

    fn context_ref(&self) -> ContextTree<Arc<IgnoreFilter>> {
        ContextTree::new(
            self.context.root().to_path_buf(),
            Arc::clone(self.context_filter()),
        )
    }

    fn context_filter(&self) -> &Arc<IgnoreFilter> {
        self.context.filter()
    }

    /// A read-only view of `layers` (base first).
    pub(crate) fn layered(&self, layers: &[LayerInfo], name: String) -> LayeredTree {
        LayeredTree::new(
            layers
                .iter()
                .rev()
                .map(|l| self.store.snapshot_path(&l.chain))
                .collect(),
            name,
        )
    }

    pub(crate) fn snapshot_dirs(&self, layers: &[LayerInfo]) -> Vec<PathBuf> {
        layers
            .iter()
            .rev()
            .map(|l| self.store.snapshot_path(&l.chain))
            .collect()
    }

    /// The key inputs a COPY from an earlier stage had when it was last planned on the same
    /// destination chain (see [`copy_inputs_memo_key`]).
    fn recall_copy_inputs(&self, memo: &str) -> Option<BTreeMap<String, Digest>> {
        if self.builder.no_cache {
            return None;
        }
        let value = self.store.get_cache_record(memo).ok()??;
        serde_json::from_value(value.get("inputs")?.clone()).ok()
    }

    /// Best effort: a memo that cannot be written is planned again next time.
    fn remember_copy_inputs(&self, memo: &str, inputs: &BTreeMap<String, Digest>) {
        let value = serde_json::json!({ "kind": "copy-inputs", "inputs": inputs });
        if let Err(err) = self.store.put_cache_record(memo, &value) {
            tracing::debug!("not remembering COPY inputs: {err}");
        }
    }

    fn lookup_record(&self, key: &CacheKey) -> Option<CacheRecord> {
        if self.builder.no_cache {
            return None;
        }
        let value = self.store.get_cache_record(&key.to_hex()).ok()??;
        serde_json::from_value(value).ok()
    }

    fn run_stage(
        &self,
        id: StageId,
        deps: &BTreeMap<StageId, Arc<StageResult>>,
        cancel: &CancelToken,
    ) -> Result<StageResult, BuildError> {
        let planned = self
            .graph
            .stage(id)
            .ok_or(BuildError::Internal(InternalError::StageNotInPlan(id)))?;
        let from_label = planned.from_progress();
        let base_step = |label: &str,
                         f: &dyn Fn() -> Result<BaseImage, BaseError>|
         -> Result<BaseImage, BuildError> {
            let n = self.next_step_number();
            let t = Instant::now();
            self.events.emit(Event::StepStarted {
                step: n,
                name: label.to_owned(),
            });
            match f() {
                Ok(image) => {
                    if image.was_local {
                        self.events.emit(Event::StepCached {
                            step: n,
                            name: label.to_owned(),
                        });
                    } else {
                        self.events.emit(Event::StepDone {
                            step: n,
                            duration: t.elapsed(),
                        });
                    }
                    Ok(image)
                }
                Err(source) => {
                    self.events.emit(Event::StepFailed {
                        step: n,
                        error: source.to_string(),
                    });
                    Err(BuildError::step(
                        &self.step_id(
                            planned,
                            0,
                            label,
                            planned.from.syntax.start_line as usize,
                            0,
                        ),
                        StepError::Base(Box::new(source)),
                    ))
                }
            }
        };
        let mut label = from_label
            .clone()
            .unwrap_or_else(|| format!("FROM {}", planned.base_name));
        // A base image already in the store is resolved before its step is announced, so
        // the `[i/n]` total can count the image's ONBUILD triggers like the later steps do.
        // (A pulled image is announced first; its total is known only after the pull.)
        if let BaseSource::Image(reference) = &planned.base
            && !self.builder.pull
            && self.store.resolve_ref(reference).ok().flatten().is_some()
            && let Ok(image) = self.resolver.image(reference, &planned.platform, self)
            && !image.config.config.on_build.is_empty()
            && let Some(with_triggers) =
                planned.from_progress_with_triggers(image.config.config.on_build.len())
        {
            label = with_triggers;
        }
        let (base_image, base_layers, mut parent_key, base_digest): (
            Option<BaseImage>,
            Vec<LayerInfo>,
            Option<CacheKey>,
            Option<Digest>,
        ) = match &planned.base {
            BaseSource::Scratch => (None, Vec::new(), None, None),
            BaseSource::Stage(base) => {
                let r = deps
                    .get(base)
                    .ok_or(BuildError::Internal(InternalError::NoBaseResult(*base)))?;
                (None, r.layers.clone(), r.key, None)
            }
            BaseSource::Image(reference) => {
                let image = base_step(&label, &|| {
                    self.resolver
                        .image(reference, &planned.platform, self)
                        .map(|i| (*i).clone())
                })?;
                let layers = image.layers.clone();
                let digest = image.manifest_digest.clone();
                (Some(image), layers, None, Some(digest))
            }
            BaseSource::NamedContext(name) => {
                let image = base_step(&label, &|| match self.resolver.named_context(
                    name,
                    &planned.platform,
                    self,
                )? {
                    super::base::NamedSource::Image(i) => Ok((*i).clone()),
                    super::base::NamedSource::Dir(dir) => {
                        Err(BaseError::BuildContextIsADirectory {
                            name: name.clone(),
                            dir,
                        })
                    }
                })?;
                let layers = image.layers.clone();
                let digest = image.manifest_digest.clone();
                (Some(image), layers, None, Some(digest))
            }
        };
        let base = match (&planned.base, &base_image) {
            (_, Some(image)) => StageBase::Image(&image.config),
            (BaseSource::Stage(b), None) => StageBase::Stage(&deps[b].output),
            _ => StageBase::Scratch,
        };
        let mut state =
            StageState::new(self.graph, planned, base).map_err(|source| BuildError::Plan {
                dockerfile: self.dockerfile_name.clone(),
                source: Box::new(source),
            })?;
        let mut layers = base_layers;
        let mut last_created = base_image
            .as_ref()
            .and_then(|i| i.config.created.clone())
            .or_else(|| {
                if let BaseSource::Stage(b) = &planned.base {
                    deps[b].output.image.created.clone()
                } else {
                    None
                }
            })
            .unwrap_or_else(|| self.started.clone());
        if self.builder.source_date_epoch.is_some() {
            last_created.clone_from(&self.started);
        }
        let mut base_digest = base_digest;
        let mut position = 0usize;
        while let Some(step) = state.next_step().map_err(|source| BuildError::Plan {
            dockerfile: self.dockerfile_name.clone(),
            source: Box::new(source),
        })? {
            if cancel.is_cancelled() {
                return Err(BuildError::Cancelled);
            }
            position += 1;
            if !step.has_layer() {
                if let Some(created_by) = &step.created_by {
                    state
                        .image_mut()
                        .history
                        .push(history(created_by, &last_created, true));
                }
                continue;
            }
            let label = step
                .progress
                .clone()
                .unwrap_or_else(|| step.source_text.clone());
            let n = self.next_step_number();
            let started = Instant::now();
            let mut inputs = step.key_inputs(parent_key);
            if let Some(d) = base_digest.take() {
                inputs.set_base_image(d);
            }
            if let Some(epoch) = self.builder.source_date_epoch {
                // Layers are written with their times clamped to the epoch: the same step
                // without it (or with another) makes a different layer and history.
                inputs.add_input(
                    "SOURCE_DATE_EPOCH".to_owned(),
                    Digest::sha256_of(epoch.to_string().as_bytes()),
                );
            }
            let ctx = StepContext {
                id: self.step_id(
                    planned,
                    position,
                    &label,
                    step.span.line as usize,
                    step.span.column as usize,
                ),
                stage: id,
                number: n,
                layers: &layers,
                deps,
                platform: &planned.platform,
                cancel,
            };
            let outcome = self
                .execute_step(&step, &mut inputs, &ctx)
                .map_err(|source| BuildError::step(&ctx.id, source))
                .inspect_err(|e| {
                    self.events.emit(Event::StepFailed {
                        step: n,
                        error: e.to_string(),
                    });
                });
            let (layer, created) = outcome?;
            let key = inputs.key();
            parent_key = Some(key);
            if let Some(layer) = layer {
                state
                    .image_mut()
                    .rootfs
                    .diff_ids
                    .push(layer.diff_id.clone());
                layers.push(layer);
                if let Some(created_by) = &step.created_by {
                    state
                        .image_mut()
                        .history
                        .push(history(created_by, &created, step.empty_layer));
                }
            } else if let Some(created_by) = &step.created_by {
                state
                    .image_mut()
                    .history
                    .push(history(created_by, &created, true));
            }
            last_created = created;
            let _ = started;
        }
        let mut output = state.finish();
        output.image.created = Some(last_created);
        Ok(StageResult {
            output,
            layers,
            key: parent_key,
        })
    }

    /// The [`StepId`] of the step at `position` of `planned`, labelled `label`.
    fn step_id(
        &self,
        planned: &kiln_plan::PlannedStage,
        position: usize,
        label: &str,
        line: usize,
        column: usize,
    ) -> StepId {
        StepId {
            stage: planned.id,
            stage_name: planned.name.clone(),
            position,
            label: label.to_owned(),
            dockerfile: self.dockerfile_name.clone(),
            line,
            column,
        }
    }

    /// Answers one filesystem step from the cache or runs it; returns its layer and the
    /// history time.
    fn execute_step(
        &self,
        step: &Step,
        inputs: &mut KeyInputs,
        ctx: &StepContext<'_>,
    ) -> Result<(Option<LayerInfo>, String), StepError> {
        let StepContext {
            id,
            stage,
            number: n,
            layers,
            deps,
            platform,
            cancel: _,
        } = ctx;
        let (n, stage, layers, deps, platform) = (*n, *stage, *layers, *deps, *platform);
        let label = id.label.as_str();
        let position = id.position;
        let started = Instant::now();
        let compress = self.exported.contains(&stage);
        // Gather the content digests of the step's inputs.
        let prepared = match &step.action {
            Action::Copy(copy) => {
                let memo = copy_inputs_memo_key(copy, layers, deps);
                if let Some(remembered) = memo.as_deref().and_then(|m| self.recall_copy_inputs(m)) {
                    // The source stage and the destination are immutable layer chains: the
                    // inputs are what they were when this COPY was last planned, and the plan
                    // (a walk of both trees) is only made again if the step has to run.
                    for (label, digest) in remembered {
                        inputs.add_input(label, digest);
                    }
                    None
                } else {
                    let prepared = super::copy_exec::prepare(self, copy, layers, deps, platform)?;
                    let before = inputs.inputs.clone();
                    prepared.add_key_inputs(inputs);
                    if let Some(memo) = &memo {
                        let added: BTreeMap<String, Digest> = inputs
                            .inputs
                            .iter()
                            .filter(|(label, _)| !before.contains_key(*label))
                            .map(|(l, d)| (l.clone(), d.clone()))
                            .collect();
                        self.remember_copy_inputs(memo, &added);
                    }
                    Some(prepared)
                }
            }
            Action::Run(run) => {
                super::run_exec::add_key_inputs(self, run, deps, platform, inputs)?;
                None
            }
            _ => None,
        };
        let key = inputs.key();
        let history_key = format!("{}:{position}", stage.0);
        let chain_parent = layers.last().map(|l| l.chain.clone());
        self.events.emit(Event::StepStarted {
            step: n,
            name: label.to_owned(),
        });
        // A hit needs the layer's snapshot or blob (a record whose layer was pruned is a miss).
        let hit = match self.lookup_record(&key) {
            Some(CacheRecord {
                layer: Some(l),
                created,
            }) => self
                .adopt_cached(l, chain_parent.as_ref())?
                .map(|layer| (Some(layer), created)),
            Some(CacheRecord {
                layer: None,
                created,
            }) => Some((None, created)),
            None => None,
        };
        if let Some((layer, created)) = hit {
            self.events.emit(Event::StepCached {
                step: n,
                name: label.to_owned(),
            });
            self.current
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(history_key, inputs.clone());
            return Ok((layer, created));
        }
        let reason = if self.builder.no_cache {
            "--no-cache".to_owned()
        } else {
            explain_miss(self.previous.get(&history_key), inputs).to_string()
        };
        self.events.emit(Event::CacheMiss { step: n, reason });
        let created = match self.builder.source_date_epoch {
            Some(_) => self.started.clone(),
            None => now_rfc3339(),
        };
        let layer = match &step.action {
            Action::Copy(copy) => {
                let prepared = match prepared {
                    Some(prepared) => prepared,
                    None => super::copy_exec::prepare(self, copy, layers, deps, platform)?,
                };
                let dir = prepared.materialize(self)?;
                let layer = super::commit::commit_dir(self, &dir, chain_parent.as_ref(), compress)?;
                if let Some(layer) = &layer {
                    prepared.remember_copies(self, &layer.chain);
                }
                layer
            }
            Action::MakeDir { path, user } => super::copy_exec::make_dir(
                self,
                path,
                user,
                layers,
                chain_parent.as_ref(),
                compress,
            )?,
            Action::Run(run) => {
                super::run_exec::run(self, run, ctx, chain_parent.as_ref(), compress)?
            }
            Action::None => None,
            other => {
                return Err(StepError::Unsupported {
                    description: format!("{other:?}"),
                });
            }
        };
        let record = CacheRecord {
            layer: layer.as_ref().map(|l| RecordLayer {
                diff_id: l.diff_id.clone(),
                blob: l.blob.as_ref().map(|b| b.digest.clone()),
                size: l.blob.as_ref().map_or(0, |b| b.size),
                media_type: l.blob.as_ref().map(|b| b.media_type.clone()),
                chain: Some(l.chain.clone()),
            }),
            created: created.clone(),
        };
        if let Ok(value) = serde_json::to_value(&record)
            && let Err(e) = self.store.put_cache_record(&key.to_hex(), &value)
        {
            tracing::warn!("could not write the cache record of {label}: {e}");
        }
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(history_key, inputs.clone());
        self.events.emit(Event::StepDone {
            step: n,
            duration: started.elapsed(),
        });
        Ok((layer, created))
    }

    /// The recorded layer on top of `parent`: its snapshot, unpacked from its blob if it was
    /// pruned; `None` when neither is left.
    fn adopt_cached(
        &self,
        layer: RecordLayer,
        parent: Option<&ChainId>,
    ) -> Result<Option<LayerInfo>, StepError> {
        let mut blob = match (layer.blob, layer.media_type) {
            (Some(digest), Some(media_type)) if self.store.has_blob(&digest) => Some(LayerBlob {
                digest,
                size: layer.size,
                media_type,
            }),
            _ => None,
        };
        let chain = super::base::chain_of(parent, &layer.diff_id);
        if !self.store.has_snapshot(&chain) {
            // A layer recorded without a blob may have had one compressed for it since.
            if blob.is_none() {
                let media_type = super::commit::media_type_of(self.builder.compression);
                blob = super::commit::remembered_blob(self.store, &layer.diff_id, &media_type);
            }
            let Some(blob) = &blob else {
                return Ok(None);
            };
            self.store
                .ensure_snapshot(parent, &layer.diff_id, &blob.digest)?;
        }
        Ok(Some(LayerInfo {
            diff_id: layer.diff_id,
            blob,
            chain,
        }))
    }
}

/// What a step runs with: its identity, the stage's layers so far, the finished stages it
/// may read, its platform and the build's cancellation.
pub(crate) struct StepContext<'s> {
    /// The step, as messages name it.
    pub(crate) id: StepId,
    /// Its stage.
    pub(crate) stage: StageId,
    /// Its number in the build's progress.
    pub(crate) number: usize,
    /// The stage's layers before the step, base first.
    pub(crate) layers: &'s [LayerInfo],
    /// The results of the stages this stage depends on.
    pub(crate) deps: &'s BTreeMap<StageId, Arc<StageResult>>,
    /// The stage's platform.
    pub(crate) platform: &'s kiln_oci::Platform,
    /// The build's cancellation.
    pub(crate) cancel: &'s CancelToken,
}

fn history(created_by: &str, created: &str, empty_layer: bool) -> History {
    History {
        created: Some(created.to_owned()),
        created_by: created_by.to_owned(),
        comment: "buildkit.dockerfile.v0".to_owned(),
        empty_layer,
        ..History::default()
    }
}

/// The current time as RFC 3339 UTC with nanoseconds, like BuildKit writes it.
pub(crate) fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    kiln_oci::rfc3339_utc_nanos(secs, now.subsec_nanos())
}

impl StageRunner<StageId, StageResult> for Engine<'_> {
    type Error = BuildError;

    fn run(
        &self,
        id: &StageId,
        deps: &BTreeMap<StageId, Arc<StageResult>>,
        cancel: &CancelToken,
    ) -> Result<StageResult, BuildError> {
        self.run_stage(*id, deps, cancel)
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
    let kiln_plan::SourceRef::Stage(source) = &copy.from else {
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
