//! The stage driver: runs one stage of the plan on the scheduler's behalf. It resolves the
//! stage's base, then drives kiln-plan's `StageState` step by step and, for each filesystem
//! step, decides from the cache: the step's key (its plan inputs, its parent's key and the
//! content digests its executor adds), a hit when a record under that key still has its
//! layer, a miss with the reason (against the last build's inputs) otherwise, then the step
//! run and recorded. It does no I/O of its own: everything goes through the seams
//! ([`StepExecutor`], [`ResultStore`], [`BaseResolver`]) and the event sink.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use kiln_oci::{Digest, History, ImageRef};
use kiln_plan::{
    BaseSource, BuildGraph, CacheKey, KeyInputs, PlannedStage, StageBase, StageId, StageState,
    Step, explain_miss,
};

use super::error::{BaseError, BuildError, InternalError, StepError, StepId};
use super::model::{
    BaseImage, CacheRecord, FoundRecord, LayerInfo, NamedSource, RanStep, RecordOrigin,
    StageResult, StepContext,
};
use super::seams::{BaseResolver, ResultStore, StepExecutor};
use crate::event::{Event, EventSink};
use crate::images::invalid_base_image_platform;
use crate::scheduler::{CancelToken, Node, ScheduleError, StageRunner, run_dag};

/// The build-wide settings the driver reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct DriverOptions {
    /// `--no-cache`: every step is a miss (and is recorded for the next build).
    pub(crate) no_cache: bool,
    /// `--no-cache-filter`: every step of these stages is a miss.
    pub(crate) no_cache_stages: std::collections::BTreeSet<StageId>,
    /// `SOURCE_DATE_EPOCH`: history times are the epoch, and it is a key input.
    pub(crate) source_date_epoch: Option<i64>,
    /// The Dockerfile as messages name it.
    pub(crate) dockerfile_name: String,
    /// The name the build's key inputs are saved under for the next build's miss reasons.
    pub(crate) history_name: String,
    /// The build's start (RFC 3339), the `created` of what has no other time.
    pub(crate) started: String,
    /// A multi-platform build: the platform progress labels start with, as BuildKit's
    /// (`[linux/arm64 builder 2/4] RUN …`).
    pub(crate) platform_label: Option<String>,
}

/// What the drivers of one build share, one driver per target platform: the step numbers
/// (unique per build) and the steps running now, so a step two platforms have in common
/// (same key: a `--platform=$BUILDPLATFORM` stage that does not read `TARGETARCH`) runs once
/// and the other platform waits for it and takes its result.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    steps: AtomicUsize,
    /// A lock per step key, held while the step is looked up, run and recorded.
    running: Mutex<HashMap<CacheKey, Arc<Mutex<()>>>>,
    /// The keys this build ran: a hit for a later step with the same key even under
    /// `--no-cache` (the step was just made, by this build).
    made: Mutex<HashSet<CacheKey>>,
}

impl Shared {
    /// The lock of `key`, made the first time.
    fn lock_of(&self, key: &CacheKey) -> Arc<Mutex<()>> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(running.entry(*key).or_default())
    }

    fn was_made(&self, key: &CacheKey) -> bool {
        self.made
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(key)
    }

    fn mark_made(&self, key: &CacheKey) {
        self.made
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(*key);
    }
}

/// Runs the stages of one build; see the module docs.
pub(crate) struct Driver<'a, X, S, B> {
    graph: &'a BuildGraph,
    events: &'a dyn EventSink,
    executor: &'a X,
    results: &'a S,
    bases: &'a B,
    options: DriverOptions,
    shared: Arc<Shared>,
    /// The last build's key inputs, by `stage:position`.
    previous: BTreeMap<String, KeyInputs>,
    /// This build's.
    current: Mutex<BTreeMap<String, KeyInputs>>,
    /// The filesystem steps this build answered.
    ran: Mutex<Vec<RanStep>>,
    /// The target and the stages it is built `FROM`: their layers are in the image.
    in_image: BTreeSet<StageId>,
}

impl<X, S, B> std::fmt::Debug for Driver<'_, X, S, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").finish_non_exhaustive()
    }
}

/// A step answered from a cache record: its layer, history time and where the record was.
struct Hit {
    layer: Option<LayerInfo>,
    created: String,
    origin: RecordOrigin,
}

/// Where a stage starts: its base's layers, config and the key its first step chains from.
struct Start {
    image: Option<BaseImage>,
    layers: Vec<LayerInfo>,
    parent_key: Option<CacheKey>,
    /// The base image's manifest digest: an input of the stage's first step.
    base_digest: Option<Digest>,
}

impl<'a, X, S, B> Driver<'a, X, S, B>
where
    X: StepExecutor,
    S: ResultStore,
    B: BaseResolver,
{
    pub(crate) fn new(
        graph: &'a BuildGraph,
        events: &'a dyn EventSink,
        executor: &'a X,
        results: &'a S,
        bases: &'a B,
        options: DriverOptions,
        shared: Arc<Shared>,
    ) -> Self {
        let previous = results.load_history(&options.history_name);
        let mut in_image = BTreeSet::new();
        let mut next = Some(graph.target);
        while let Some(id) = next.filter(|id| in_image.insert(*id)) {
            next = graph.stage(id).and_then(|s| match s.base {
                BaseSource::Stage(base) => Some(base),
                _ => None,
            });
        }
        Self {
            graph,
            events,
            executor,
            results,
            bases,
            options,
            shared,
            previous,
            current: Mutex::new(BTreeMap::new()),
            ran: Mutex::new(Vec::new()),
            in_image,
        }
    }

    /// Runs every stage of the plan on the scheduler, at most `jobs` at once; the first
    /// failure cancels the rest and is the error.
    #[cfg(test)]
    pub(crate) fn run_all(
        &self,
        jobs: usize,
        cancel: &CancelToken,
    ) -> Result<BTreeMap<StageId, Arc<StageResult>>, BuildError> {
        let mut all = Self::run_platforms(&[self], jobs, cancel)?;
        all.pop()
            .ok_or(BuildError::Internal(InternalError::NoTargetResult))
    }

    /// Runs the stages of every driver (one per target platform) on one scheduler, at most
    /// `jobs` stages at once across them all; returns each driver's results, in order. The
    /// first failure cancels every platform's stages.
    pub(crate) fn run_platforms(
        drivers: &[&Self],
        jobs: usize,
        cancel: &CancelToken,
    ) -> Result<Vec<BTreeMap<StageId, Arc<StageResult>>>, BuildError> {
        let nodes: Vec<Node<(usize, StageId)>> = drivers
            .iter()
            .enumerate()
            .flat_map(|(i, driver)| {
                driver.graph.stages.iter().map(move |s| Node {
                    id: (i, s.id),
                    deps: s.deps.iter().map(|d| (i, *d)).collect(),
                })
            })
            .collect();
        let done = run_dag(&nodes, jobs, &Platforms(drivers), cancel).map_err(|e| match e {
            ScheduleError::Failed { id, error } => {
                tracing::debug!(stage = %id.1, platform = id.0, "the build stopped at a failed stage");
                error
            }
            ScheduleError::Cancelled => BuildError::Cancelled,
        })?;
        let mut results = vec![BTreeMap::new(); drivers.len()];
        for ((i, stage), result) in done {
            results[i].insert(stage, result);
        }
        Ok(results)
    }

    fn next_step_number(&self) -> usize {
        self.shared.steps.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// `label` with the build's platform in front, for a multi-platform build.
    fn platform_labelled(&self, label: String) -> String {
        match &self.options.platform_label {
            None => label,
            Some(platform) => match label.strip_prefix('[') {
                Some(rest) => format!("[{platform} {rest}"),
                None => format!("[{platform}] {label}"),
            },
        }
    }

    /// Saves this build's key inputs for the next build's miss explanations.
    pub(crate) fn save_history(&self) {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.is_empty() {
            return;
        }
        let mut merged = self.previous.clone();
        merged.extend(current.iter().map(|(k, v)| (k.clone(), v.clone())));
        // A no-op rebuild has nothing new to say: skip the write.
        if merged != self.previous {
            self.results
                .save_history(&self.options.history_name, &merged);
        }
    }

    fn plan_error(&self, source: kiln_plan::PlanError) -> BuildError {
        BuildError::Plan {
            dockerfile: self.options.dockerfile_name.clone(),
            source: Box::new(source),
        }
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
        let start = self.start(planned, deps)?;
        let base = match (&planned.base, &start.image) {
            (_, Some(image)) => StageBase::Image(&image.config),
            (BaseSource::Stage(b), None) => StageBase::Stage(&deps[b].output),
            _ => StageBase::Scratch,
        };
        let mut state =
            StageState::new(self.graph, planned, base).map_err(|e| self.plan_error(e))?;
        let mut last_created = match self.options.source_date_epoch {
            Some(_) => None,
            None => start
                .image
                .as_ref()
                .and_then(|i| i.config.created.clone())
                .or_else(|| match &planned.base {
                    BaseSource::Stage(b) => deps[b].output.image.created.clone(),
                    _ => None,
                }),
        }
        .unwrap_or_else(|| self.options.started.clone());
        let Start {
            mut layers,
            mut parent_key,
            mut base_digest,
            ..
        } = start;
        let mut position = 0usize;
        while let Some(step) = state.next_step().map_err(|e| self.plan_error(e))? {
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
            let label = self.platform_labelled(
                step.progress
                    .clone()
                    .unwrap_or_else(|| step.source_text.clone()),
            );
            let mut inputs = step.key_inputs(parent_key);
            if let Some(d) = base_digest.take() {
                inputs.set_base_image(d);
            }
            if let Some(epoch) = self.options.source_date_epoch {
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
                number: self.next_step_number(),
                layers: &layers,
                deps,
                platform: &planned.platform,
                in_image: self.in_image.contains(&id),
                cancel,
            };
            let (layer, created) = self
                .step(&step, &mut inputs, &ctx)
                .map_err(|source| BuildError::step(&ctx.id, source))
                .inspect_err(|e| {
                    self.events.emit(Event::StepFailed {
                        step: ctx.number,
                        error: e.to_string(),
                    });
                })?;
            parent_key = Some(inputs.key());
            let empty_layer = match layer {
                Some(layer) => {
                    state
                        .image_mut()
                        .rootfs
                        .diff_ids
                        .push(layer.diff_id.clone());
                    layers.push(layer);
                    step.empty_layer
                }
                None => true,
            };
            if let Some(created_by) = &step.created_by {
                state
                    .image_mut()
                    .history
                    .push(history(created_by, &created, empty_layer));
            }
            last_created = created;
        }
        let mut output = state.finish();
        output.image.created = Some(last_created);
        Ok(StageResult {
            output,
            layers,
            key: parent_key,
        })
    }

    /// Resolves the stage's base: nothing (`scratch`), a finished stage, or an image (a
    /// step of its own in the progress).
    fn start(
        &self,
        planned: &PlannedStage,
        deps: &BTreeMap<StageId, Arc<StageResult>>,
    ) -> Result<Start, BuildError> {
        let image = match &planned.base {
            BaseSource::Scratch => {
                return Ok(Start {
                    image: None,
                    layers: Vec::new(),
                    parent_key: None,
                    base_digest: None,
                });
            }
            BaseSource::Stage(base) => {
                let r = deps
                    .get(base)
                    .ok_or(BuildError::Internal(InternalError::NoBaseResult(*base)))?;
                return Ok(Start {
                    image: None,
                    layers: r.layers.clone(),
                    parent_key: r.key,
                    base_digest: None,
                });
            }
            BaseSource::Image(reference) => {
                let label = self.label_of_from(planned, Some(reference));
                self.base_step(planned, &label, || {
                    self.bases
                        .image(reference, &planned.platform)
                        .map(|i| (*i).clone())
                })?
            }
            BaseSource::NamedContext(name) => {
                let label = self.label_of_from(planned, None);
                self.base_step(planned, &label, || {
                    match self.bases.named_context(name, &planned.platform)? {
                        NamedSource::Image(i) => Ok((*i).clone()),
                        NamedSource::Dir(dir) => Err(BaseError::BuildContextIsADirectory {
                            name: name.clone(),
                            dir,
                        }),
                    }
                })?
            }
        };
        Ok(Start {
            layers: image.layers.clone(),
            base_digest: Some(image.manifest_digest.clone()),
            image: Some(image),
            parent_key: None,
        })
    }

    /// The progress label of the stage's `FROM`. A base image already in the store is
    /// looked at before its step is announced, so the `[i/n]` total can count the image's
    /// ONBUILD triggers like the later steps do. (A pulled image is announced first; its
    /// total is known only after the pull.)
    fn label_of_from(&self, planned: &PlannedStage, reference: Option<&ImageRef>) -> String {
        let triggers = reference
            .and_then(|r| self.bases.local_image(r, &planned.platform))
            .map_or(0, |image| image.config.config.on_build.len());
        self.platform_labelled(
            (triggers > 0)
                .then(|| planned.from_progress_with_triggers(triggers))
                .flatten()
                .or_else(|| planned.from_progress())
                .unwrap_or_else(|| format!("FROM {}", planned.base_name)),
        )
    }

    /// The `FROM` step of an image base: announced, resolved by `resolve`, and reported
    /// `CACHED` when the image was already in the store.
    fn base_step(
        &self,
        planned: &PlannedStage,
        label: &str,
        resolve: impl FnOnce() -> Result<BaseImage, BaseError>,
    ) -> Result<BaseImage, BuildError> {
        let n = self.next_step_number();
        let t = Instant::now();
        self.events.emit(Event::StepStarted {
            step: n,
            name: label.to_owned(),
        });
        match resolve() {
            Ok(image) => {
                self.events.emit(if image.was_local {
                    Event::StepCached {
                        step: n,
                        name: label.to_owned(),
                        from: None,
                    }
                } else {
                    Event::StepDone {
                        step: n,
                        duration: t.elapsed(),
                    }
                });
                if let Some(actual) = &image.mismatched_platform {
                    let (line, name) = (planned.from.syntax.start_line, &planned.base_name);
                    let warning = invalid_base_image_platform(name, actual, &planned.platform);
                    let message = format!("line {line}: {warning}");
                    self.events.emit(Event::Warning { message });
                }
                Ok(image)
            }
            Err(source) => {
                self.events.emit(Event::StepFailed {
                    step: n,
                    error: source.to_string(),
                });
                let line = planned.from.syntax.start_line as usize;
                Err(BuildError::step(
                    &self.step_id(planned, 0, label, line, 0),
                    StepError::Base(Box::new(source)),
                ))
            }
        }
    }

    /// The [`StepId`] of the step at `position` of `planned`, labelled `label`.
    fn step_id(
        &self,
        planned: &PlannedStage,
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
            dockerfile: self.options.dockerfile_name.clone(),
            line,
            column,
        }
    }

    /// Answers one filesystem step from the cache or runs it; returns its layer and the
    /// history time.
    fn step(
        &self,
        step: &Step,
        inputs: &mut KeyInputs,
        ctx: &StepContext<'_>,
    ) -> Result<(Option<LayerInfo>, String), StepError> {
        let started = Instant::now();
        let prepared = self.executor.key_inputs(step, inputs, ctx)?;
        let key = inputs.key();
        let history_key = format!("{}:{}", ctx.stage.0, ctx.id.position);
        self.events.emit(Event::StepStarted {
            step: ctx.number,
            name: ctx.id.label.clone(),
        });
        // Another platform's driver running the same step now: wait for it, then take its
        // record below.
        let flight = self.shared.lock_of(&key);
        let _flight = flight.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(Hit {
            layer,
            created,
            origin,
        }) = self.cached(&key, ctx)?
        {
            let from = match origin {
                RecordOrigin::Local => None,
                RecordOrigin::Imported(cache) => {
                    // Kept in the local store too: the next build here is a local hit.
                    self.results
                        .record(&key, &CacheRecord::new(layer.as_ref(), created.clone()));
                    Some(cache)
                }
            };
            self.events.emit(Event::StepCached {
                step: ctx.number,
                name: ctx.id.label.clone(),
                from,
            });
            self.remember_step(ctx, history_key, inputs, layer.as_ref(), &created);
            return Ok((layer, created));
        }
        let reason = if self.options.no_cache {
            "--no-cache".to_owned()
        } else if self.options.no_cache_stages.contains(&ctx.stage) {
            "--no-cache-filter".to_owned()
        } else {
            explain_miss(self.previous.get(&history_key), inputs).to_string()
        };
        self.events.emit(Event::CacheMiss {
            step: ctx.number,
            reason,
        });
        let created = match self.options.source_date_epoch {
            Some(_) => self.options.started.clone(),
            None => now_rfc3339(),
        };
        let layer = self.executor.execute(step, prepared, ctx)?;
        self.results
            .record(&key, &CacheRecord::new(layer.as_ref(), created.clone()));
        self.shared.mark_made(&key);
        self.remember_step(ctx, history_key, inputs, layer.as_ref(), &created);
        self.events.emit(Event::StepDone {
            step: ctx.number,
            duration: started.elapsed(),
        });
        Ok((layer, created))
    }

    /// The step's layer, time and the record's origin from the record under `key`, when
    /// there is one whose layer is still in the store or can be fetched from the imported
    /// cache that has it (a record whose layer is gone is a miss).
    fn cached(&self, key: &CacheKey, ctx: &StepContext<'_>) -> Result<Option<Hit>, StepError> {
        if (self.options.no_cache || self.options.no_cache_stages.contains(&ctx.stage))
            && !self.shared.was_made(key)
        {
            return Ok(None);
        }
        let Some(FoundRecord { record, origin }) = self.results.lookup(key) else {
            return Ok(None);
        };
        Ok(match record {
            CacheRecord {
                layer: Some(layer),
                created,
            } => self
                .results
                .adopt(&layer, ctx.parent_chain())?
                .map(|layer| Hit {
                    layer: Some(layer),
                    created,
                    origin,
                }),
            CacheRecord {
                layer: None,
                created,
            } => Some(Hit {
                layer: None,
                created,
                origin,
            }),
        })
    }

    /// Remembers a step this build answered: its inputs for the next build's miss reasons,
    /// and the whole step for `--cache-to`.
    fn remember_step(
        &self,
        ctx: &StepContext<'_>,
        history_key: String,
        inputs: &KeyInputs,
        layer: Option<&LayerInfo>,
        created: &str,
    ) {
        self.ran
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(RanStep {
                stage: ctx.stage,
                step: history_key.clone(),
                inputs: inputs.clone(),
                layer: layer.cloned(),
                created: created.to_owned(),
            });
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(history_key, inputs.clone());
    }

    /// The filesystem steps this build answered, in the order they finished.
    pub(crate) fn ran_steps(&self) -> Vec<RanStep> {
        self.ran
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The target and the stages it is built `FROM`: the stages whose layers are in the
    /// image (what `--cache-to mode=min` exports).
    pub(crate) fn image_stages(&self) -> &BTreeSet<StageId> {
        &self.in_image
    }
}

/// The stages of several drivers as one DAG: node `(i, stage)` is `stage` of driver `i`.
struct Platforms<'d, 'a, X, S, B>(&'d [&'d Driver<'a, X, S, B>]);

impl<X, S, B> StageRunner<(usize, StageId), StageResult> for Platforms<'_, '_, X, S, B>
where
    X: StepExecutor,
    S: ResultStore,
    B: BaseResolver,
{
    type Error = BuildError;

    fn run(
        &self,
        (i, id): &(usize, StageId),
        deps: &BTreeMap<(usize, StageId), Arc<StageResult>>,
        cancel: &CancelToken,
    ) -> Result<StageResult, BuildError> {
        let deps = deps
            .iter()
            .map(|((_, stage), result)| (*stage, Arc::clone(result)))
            .collect();
        self.0[*i].run_stage(*id, &deps, cancel)
    }
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
