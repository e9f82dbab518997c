//! [`Builder::build`]: the composition root of a build. It reads and plans the Dockerfile,
//! wires the real seams (the local executor, the store's results, the base resolver) into the
//! stage driver, runs the stage DAG, then assembles and exports the image.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use kiln_dockerfile::{PatternMatcher, read_ignore_file};
use kiln_oci::{Digest, Platform};
use kiln_plan::PlanOptions;
use kiln_store::Store;

use super::cache_import::{Remote, RemoteError};
use super::cache_mounts::CacheMounts;
use super::error::{BuildError, ContextError, InternalError, OptionsError};
use super::ignore::IgnoreFilter;
use super::lazy::{LazyLayers, RoundError, with_fallback};
use super::model::LayerInfo;
use super::options::{BuildOutcome, Builder, Entitlement, default_store_root};
use super::{
    attestations, base, cache_export, cache_import, compressor, driver, export, local, platforms,
    results,
};
use crate::cache_options::CacheLocation;
use crate::context_source::{self, ContextSource, KEEP_GIT_DIR_ARG};
use crate::copy::digest::HashMemo;
use crate::copy::source::ContextTree;
use crate::event::{Event, EventSink};

/// The Dockerfile's name in the context when no `-f` is given.
const DEFAULT_DOCKERFILE: &str = "Dockerfile";
/// The name used when the context has no `Dockerfile` (podman, buildah).
const DEFAULT_CONTAINERFILE: &str = "Containerfile";

/// Whether a planner warning is one of BuildKit's build checks, which
/// [`kiln_plan::check`] reports instead.
fn is_build_check(warning: &kiln_plan::PlanWarning) -> bool {
    match warning {
        kiln_plan::PlanWarning::Syntax { message, .. } => {
            message.starts_with("Empty continuation line")
                || message.starts_with("MAINTAINER is deprecated")
        }
        kiln_plan::PlanWarning::FromAsCasing { .. }
        | kiln_plan::PlanWarning::StageNameCasing { .. }
        | kiln_plan::PlanWarning::DuplicateStageName { .. }
        | kiln_plan::PlanWarning::ReservedStageName { .. } => true,
        _ => false,
    }
}

/// Seconds since the Unix epoch, now.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Builder {
    /// Runs the build, sending progress to `events`.
    pub fn build(&self, events: &dyn EventSink) -> Result<BuildOutcome, BuildError> {
        if let Some(source) = &self.context_source {
            return self.build_from_source(source, events);
        }
        let started = Instant::now();
        self.check_before_build()?;
        let store = Store::open(self.store_root.clone().unwrap_or_else(default_store_root))?;
        // Held for the whole build: `kiln prune` (exclusive) waits, so it never deletes a
        // blob or snapshot this build has made but not yet recorded.
        let _lock = store.lock(kiln_store::LockMode::Shared)?;
        // Parse, plan and checks (a phase of the bench's breakdown, bench/tutorials.sh).
        let plan_span = tracing::debug_span!("plan_build").entered();
        let (dockerfile_name, text) = self.read_dockerfile()?;
        let dockerfile = kiln_dockerfile::parse(&text).map_err(|source| BuildError::Parse {
            dockerfile: dockerfile_name.clone(),
            text: text.as_str().into(),
            source: Box::new(source),
        })?;
        let platforms = self.target_platforms();
        let mut graphs = Vec::with_capacity(platforms.len());
        for platform in &platforms {
            let mut options = PlanOptions::new(platform.clone());
            options.build_args = self.build_args.clone().into_iter().collect();
            options.target.clone_from(&self.target);
            options.all_stages = self.all_stages;
            options.named_contexts = self.build_contexts.keys().cloned().collect();
            let graph =
                kiln_plan::plan(&dockerfile, &options).map_err(|source| BuildError::Plan {
                    dockerfile: dockerfile_name.clone(),
                    source: Box::new(source),
                })?;
            graphs.push(graph);
        }
        let graph = graphs
            .first()
            .ok_or(BuildError::Internal(InternalError::NoTargetResult))?;
        self.check_entitlements(graph, &dockerfile_name)?;
        platforms::check_emulation(&self.binfmt_dir, &graphs, &dockerfile_name)?;
        let mut warnings: Vec<String> = Vec::new();
        // BuildKit's build checks report the lint-like findings (honouring `# check=skip`);
        // the planner's own versions of them are left out.
        // As a build of the target: its stages only, the context's `.dockerignore`, and the
        // base configs the store already has (nothing is pulled for the checks; the engine
        // reports `InvalidBaseImagePlatform` once every base is resolved, pulled ones too).
        let filter = self.context_filter(&dockerfile_name)?;
        let check_inputs = kiln_plan::CheckInputs {
            ignore: filter.matcher().cloned(),
            base_images: crate::lint::local_base_images(&store, graph, false),
            is_build: true,
        };
        let checks = kiln_plan::check(&text, &self.check_options(), &check_inputs);
        let planner_messages = graphs
            .iter()
            .flat_map(|g| &g.warnings)
            .filter(|w| !is_build_check(w))
            .map(ToString::to_string);
        let check_messages = checks.warnings.iter().map(ToString::to_string);
        // The same Dockerfile planned per platform warns the same: once.
        let syntax_message = kiln_dockerfile::syntax_warning(&text);
        for message in syntax_message
            .into_iter()
            .chain(planner_messages)
            .chain(check_messages)
        {
            if warnings.contains(&message) {
                continue;
            }
            events.emit(Event::Warning {
                message: message.clone(),
            });
            warnings.push(message);
        }
        // `# check=error=true`: a finding fails the build before any step runs. A Dockerfile
        // error of the checks is the planner's to report (it has planned successfully here).
        if let Some(
            error @ (kiln_plan::CheckError::Violation { .. } | kiln_plan::CheckError::Config(_)),
        ) = checks.error
        {
            return Err(BuildError::Plan {
                dockerfile: dockerfile_name,
                source: Box::new(kiln_plan::PlanError::Check {
                    source: Box::new(error),
                }),
            });
        }
        drop(plan_span);

        // A context made for this build has new inodes every time: a memo of it would only
        // take room.
        let memo = if self.context_name.is_some() {
            HashMemo::default()
        } else {
            HashMemo::load(store.root().join("cache").join("filehash").join(format!(
                "{}.bin",
                Digest::sha256_of(self.context.to_string_lossy().as_bytes()).hex()
            )))
        };
        #[expect(
            clippy::disallowed_methods,
            reason = "ContextError::Unreadable names the path with a hint; fs_err would name it twice"
        )]
        let context_root =
            std::fs::canonicalize(&self.context).map_err(|source| ContextError::Unreadable {
                path: self.context.clone(),
                source,
            })?;
        if !context_root.is_dir() {
            return Err(ContextError::NotADirectory {
                path: self.context.clone(),
            }
            .into());
        }
        let mut no_cache_stages = std::collections::BTreeSet::new();
        for wanted in &self.no_cache_filter {
            let found: Vec<_> = graph
                .stages
                .iter()
                .filter(|stage| {
                    stage
                        .name
                        .as_deref()
                        .is_some_and(|name| name.eq_ignore_ascii_case(wanted))
                })
                .map(|stage| stage.id)
                .collect();
            if found.is_empty() {
                // As BuildKit: a name that matches no stage of this build is no error.
                events.emit(Event::Warning {
                    message: format!(
                        "--no-cache-filter {wanted}: no stage of this build is named so"
                    ),
                });
            }
            no_cache_stages.extend(found);
        }
        let is_multi = platforms.len() > 1;
        let options = driver::DriverOptions {
            no_cache: self.no_cache,
            no_cache_stages,
            source_date_epoch: self.source_date_epoch,
            history_name: String::new(),
            dockerfile_name: dockerfile_name.clone(),
            started: match self.source_date_epoch {
                Some(epoch) => kiln_oci::rfc3339_utc(epoch),
                None => driver::now_rfc3339(),
            },
            platform_label: None,
        };
        let history_names: Vec<String> = platforms
            .iter()
            .map(|platform| {
                history_name(
                    self.context_name
                        .as_ref()
                        .map_or(context_root.as_path(), Path::new),
                    &dockerfile_name,
                    self.target.as_deref(),
                    platform,
                )
            })
            .collect();
        let options_for = |i: usize| driver::DriverOptions {
            history_name: history_names[i].clone(),
            platform_label: is_multi.then(|| platforms[i].to_string()),
            ..options.clone()
        };
        let resolver = base::Resolver::new(self, &store);
        let mut compressor =
            compressor::Compressor::new(store.clone(), self.compression, self.source_date_epoch);
        if export::defers_compression(self, platforms.len()) {
            compressor = compressor.deferred();
        }
        let remote_slot: Mutex<Option<Arc<Remote>>> = Mutex::new(None);
        let remote = || -> Result<Arc<Remote>, RemoteError> {
            let mut slot = remote_slot.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(remote) = slot.as_ref() {
                return Ok(Arc::clone(remote));
            }
            let made = Arc::new(Remote::new(&self.insecure_registries)?);
            *slot = Some(Arc::clone(&made));
            Ok(made)
        };
        let imported = if self.no_cache {
            Vec::new()
        } else {
            cache_import::import_caches(&self.cache_from, &store, &remote, events)
        };
        let mut copy_inputs = BTreeMap::new();
        for cache in &imported {
            for (memo, inputs) in &cache.copy_inputs {
                copy_inputs
                    .entry(memo.clone())
                    .or_insert_with(|| inputs.clone());
            }
        }
        let lazy = LazyLayers::new(store.clone(), copy_inputs);
        let cache_mounts = CacheMounts::new(&imported);
        let executor = local::Local::new(
            self,
            &store,
            graph,
            events,
            ContextTree::new(context_root, filter),
            &memo,
            &resolver,
            &compressor,
            &lazy,
            &cache_mounts,
        );
        let local_results = results::StoreResults::new(&store, self.compression);
        let layered = cache_import::LayeredResults::new(&local_results, imported, &lazy);
        // An imported layer that cannot be fetched or unpacked is left out and the build
        // runs again (`lazy::with_fallback`).
        let mut last_drivers = None;
        let mut last_results = Vec::new();
        let mut inline_warnings = Vec::new();
        let inline = self
            .cache_to
            .iter()
            .find(|e| e.location == CacheLocation::Inline);
        let build_blob = |layer: &LayerInfo| compressor.blob(layer);
        let images = with_fallback(&lazy, events, &mut warnings, || {
            // One driver per platform, on one scheduler: a step the platforms share runs once.
            let shared = Arc::new(driver::Shared::default());
            let drivers: Vec<_> = graphs
                .iter()
                .enumerate()
                .map(|(i, graph)| {
                    driver::Driver::new(
                        graph,
                        events,
                        &executor,
                        &layered,
                        &resolver,
                        options_for(i),
                        Arc::clone(&shared),
                    )
                })
                .collect();
            let driver_refs: Vec<_> = drivers.iter().collect();
            // A failed round cancels its own stages, not the build: the next round runs.
            let round = self.cancel.child();
            let built =
                driver::Driver::run_platforms(&driver_refs, self.jobs, &round).and_then(|all| {
                    let images = all
                        .iter()
                        .zip(&drivers)
                        .zip(&graphs)
                        .map(|((results, driver), graph)| {
                            let target = results
                                .get(&graph.target)
                                .ok_or(BuildError::Internal(InternalError::NoTargetResult))?;
                            // `--cache-to type=inline`: the image's records ride in its manifest.
                            let mut annotations = BTreeMap::new();
                            if let Some(export) = inline {
                                let steps = driver.ran_steps();
                                let inputs = cache_export::ExportInputs {
                                    store: &store,
                                    lazy: &lazy,
                                    steps: &steps,
                                    copy_inputs: executor.used_copy_inputs(),
                                    image_stages: driver.image_stages(),
                                    compression: self.compression,
                                    build_blob: &build_blob,
                                    epoch: self.source_date_epoch,
                                    now: (driver::now_rfc3339(), unix_now()),
                                };
                                match cache_export::inline_annotation(export, &inputs) {
                                    Ok(inline) => annotations = inline,
                                    Err(e) if export.ignore_error => {
                                        let message = format!("{e} (ignored: ignore-error=true)");
                                        events.emit(Event::Warning {
                                            message: message.clone(),
                                        });
                                        inline_warnings.push(message);
                                    }
                                    Err(e) => return Err(e.into()),
                                }
                            }
                            export::assemble(
                                &store,
                                target,
                                self.source_date_epoch,
                                &self.labels,
                                &compressor,
                                annotations,
                            )
                            .map(|image| (image, target.layers.clone()))
                        })
                        .collect::<Result<Vec<_>, BuildError>>()?;
                    Ok((images, all))
                });
            if let Err(e) = memo.save() {
                tracing::warn!("could not save the context hash memo: {e}");
            }
            for driver in &drivers {
                driver.save_history();
            }
            let (images, all) = built?;
            if export::needs_local_blobs(self) {
                lazy.ensure_blobs(images.iter().flat_map(|(image, _)| {
                    image.manifest.value().layers.iter().map(|l| &l.digest)
                }))
                .map_err(RoundError::Fault)?;
            }
            last_drivers = Some(drivers);
            last_results = all;
            Ok(images)
        })?;
        warnings.extend(cache_mounts.take_warnings());
        let drivers = last_drivers.ok_or(BuildError::Internal(InternalError::NoTargetResult))?;
        warnings.extend(inline_warnings);
        let built = platforms::Built::new(&store, &platforms, images)?;
        let attestations = if self.attest.is_enabled() {
            let facts = attestations::BuildFacts {
                builder: self,
                store: &store,
                lazy: &lazy,
                graphs: &graphs,
                results: &last_results,
                steps: drivers.iter().map(driver::Driver::ran_steps).collect(),
                bases: resolver.resolved(),
                built: &built,
                dockerfile_name: &dockerfile_name,
                dockerfile_text: &text,
                started: &options.started,
            };
            Some(attestations::gather(&facts)?)
        } else {
            None
        };
        let export::Exported { tagged, primary } =
            export::export(self, &store, &built, &lazy, events, attestations.as_ref())?;
        // An output whose `-o` keys encode the image otherwise names the build's image.
        let built = primary.unwrap_or(built);
        let (fetched, fetched_bytes) = lazy.fetched();
        tracing::debug!(
            fetched,
            fetched_bytes,
            "layer blobs fetched from imported caches"
        );
        if self
            .cache_to
            .iter()
            .any(|e| e.location != CacheLocation::Inline)
        {
            // Every platform's steps: a cache made by a multi-platform build serves each.
            let steps: Vec<_> = drivers.iter().flat_map(driver::Driver::ran_steps).collect();
            let image_stages = drivers
                .iter()
                .flat_map(|d| d.image_stages().iter().copied())
                .collect();
            let inputs = cache_export::ExportInputs {
                store: &store,
                lazy: &lazy,
                steps: &steps,
                copy_inputs: executor.used_copy_inputs(),
                image_stages: &image_stages,
                compression: self.compression,
                build_blob: &build_blob,
                epoch: self.source_date_epoch,
                now: (driver::now_rfc3339(), unix_now()),
            };
            for export in self
                .cache_to
                .iter()
                .filter(|e| e.location != CacheLocation::Inline)
            {
                // The cache this build imported from the same location is merged, not wiped.
                let carried = layered.records_at(&export.location.to_string());
                let mounts = if export.cache_mounts {
                    let (mounts, skipped) = cache_mounts.export_layers(
                        &store,
                        export.compression.unwrap_or(self.compression),
                        export.cache_mounts_max_size,
                        &export.location.to_string(),
                    );
                    for message in skipped {
                        events.emit(Event::Warning {
                            message: message.clone(),
                        });
                        warnings.push(message);
                    }
                    mounts
                } else {
                    BTreeMap::new()
                };
                match cache_export::export_cache(export, &inputs, &carried, &mounts, &remote) {
                    Ok(digest) => {
                        tracing::debug!(cache = %export.location, %digest, "exported the build cache");
                    }
                    Err(e) if export.ignore_error => {
                        let message = format!("{e} (ignored: ignore-error=true)");
                        events.emit(Event::Warning {
                            message: message.clone(),
                        });
                        warnings.push(message);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let first = built.first();
        let outcome = BuildOutcome {
            manifest_digest: first.manifest_digest().clone(),
            config_digest: first.config_digest().clone(),
            manifest: first.manifest_descriptor(),
            index: built.index().cloned(),
            platforms: built.platform_images(),
            tagged,
            warnings,
        };
        events.emit(Event::Finished {
            manifest_digest: outcome.descriptor().digest.to_string(),
            config_digest: outcome.image_id().to_string(),
            duration: started.elapsed(),
        });
        Ok(outcome)
    }

    /// A build of a context that is not a directory: it is made into one under the store's
    /// `tmp/` (same filesystem as the snapshots, and `kiln prune` removes what a killed
    /// build left there), built like a directory, and removed when the build ends, whatever
    /// its outcome (`MaterializedContext` is removed on drop).
    fn build_from_source(
        &self,
        source: &ContextSource,
        events: &dyn EventSink,
    ) -> Result<BuildOutcome, BuildError> {
        if matches!(source, ContextSource::Stream(_)) && self.dockerfile_text.is_some() {
            return Err(OptionsError::StdinTwice.into());
        }
        self.check_before_build()?;
        let store = Store::open(self.store_root.clone().unwrap_or_else(default_store_root))?;
        // Held while the context is made: `kiln prune` does not take it for a dead temp.
        let _lock = store.lock(kiln_store::LockMode::Shared)?;
        let keep_git_dir = self
            .build_args
            .get(KEEP_GIT_DIR_ARG)
            .is_some_and(|v| parse_go_bool(v) == Some(true));
        let made = context_source::materialize(source, &store.root().join("tmp"), keep_git_dir)?;
        let mut inner = self.clone();
        inner.context_source = None;
        inner.context.clone_from(&made.root);
        inner.context_name = Some(format!("source {}", source.display_name()));
        if let Some(text) = &made.dockerfile_text {
            // The source was a Dockerfile: the context is empty (buildx), and a `-f` is moot.
            inner.dockerfile_text = Some(text.clone());
            inner.dockerfile = None;
        } else if let Some(path) = &self.dockerfile
            && path.is_relative()
        {
            // BuildKit's `filename`: a path inside the remote context.
            inner.dockerfile = Some(made.root.join(path));
        }
        inner.build(events)
    }

    /// Refuses, before any step runs, a `RUN --security=insecure` of a stage the build
    /// reaches when `security.insecure` was not granted (an image's `ONBUILD` trigger is
    /// checked when it runs).
    fn check_entitlements(
        &self,
        graph: &kiln_plan::BuildGraph,
        dockerfile_name: &str,
    ) -> Result<(), BuildError> {
        if self.is_allowed(Entitlement::SecurityInsecure) {
            return Ok(());
        }
        let insecure = graph
            .stages
            .iter()
            .flat_map(|stage| stage.triggers.iter().chain(&stage.instructions))
            .find(|instruction| {
                matches!(
                    &instruction.command,
                    kiln_dockerfile::Command::Run(run)
                        if run.security == kiln_dockerfile::SecurityMode::Insecure
                )
            });
        match insecure {
            None => Ok(()),
            Some(instruction) => Err(BuildError::InsecureNotAllowed {
                dockerfile: dockerfile_name.to_owned(),
                line: instruction.syntax.start_line as usize,
            }),
        }
    }

    /// The `-f` file, else the context's `Dockerfile`, else its `Containerfile` (podman and
    /// buildah's name, which BuildKit's dockerui also falls back to). When neither exists the
    /// `Dockerfile` path is returned, so the error names the file docker users expect.
    fn dockerfile_path(&self) -> PathBuf {
        if let Some(path) = &self.dockerfile {
            return path.clone();
        }
        let dockerfile = self.context.join(DEFAULT_DOCKERFILE);
        let containerfile = self.context.join(DEFAULT_CONTAINERFILE);
        if fs_err::symlink_metadata(&dockerfile).is_err()
            && fs_err::symlink_metadata(&containerfile).is_ok()
        {
            return containerfile;
        }
        dockerfile
    }

    /// The annotations of each image output: refused when nothing has a manifest, when an
    /// index level is asked of a one-platform image, or when a platform is not built.
    fn check_annotations(&self) -> Result<(), BuildError> {
        use crate::output::Output;
        let has_image = !self.tags.is_empty()
            || self.outputs.iter().any(|o| {
                matches!(
                    o.output,
                    Output::Image { .. }
                        | Output::OciTar(_)
                        | Output::OciDir(_)
                        | Output::DockerTar(_)
                )
            });
        if let Some((key, _)) = self.annotations.iter().next()
            && !has_image
        {
            return Err(OptionsError::AnnotationsWithoutImage {
                annotation: key.to_string(),
            }
            .into());
        }
        let platforms = self.target_platforms();
        let names = || {
            platforms
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let sets = std::iter::once(self.annotations.clone()).chain(
            self.outputs
                .iter()
                .map(|o| self.annotations.merged(&o.options.annotations)),
        );
        for set in sets {
            if let Some(key) = set.first_unknown_platform(&platforms) {
                return Err(OptionsError::AnnotationUnknownPlatform {
                    annotation: key.to_string(),
                    platforms: names(),
                }
                .into());
            }
            if platforms.len() < 2
                && let Some(key) = set.first_index_level()
            {
                return Err(OptionsError::IndexAnnotationSinglePlatform {
                    annotation: key.to_string(),
                    platform: names(),
                }
                .into());
            }
        }
        Ok(())
    }

    /// What can be checked before anything runs, as buildx does at the start: every output
    /// destination (nothing that is not what the output writes gets replaced), every
    /// secret's source (a file that can be read, an environment variable that is set) and
    /// every `--ssh` agent (a socket, or key files that parse).
    fn check_before_build(&self) -> Result<(), BuildError> {
        for spec in &self.outputs {
            spec.output
                .check_destination()
                .map_err(OptionsError::from)?;
            if spec.options.rewrite_timestamp == Some(false) && self.source_date_epoch.is_some() {
                return Err(OptionsError::RewriteTimestampOff {
                    output: spec.output.to_string(),
                }
                .into());
            }
        }
        if self.outputs.iter().filter(|o| o.output.is_stdout()).count() > 1 {
            return Err(OptionsError::TwoStdoutOutputs.into());
        }
        if self.platforms.len() > 1
            && let Some(docker) = self
                .outputs
                .iter()
                .map(|o| &o.output)
                .find(|o| matches!(o, crate::output::Output::DockerTar(_)))
        {
            return Err(export::multi_platform_docker(self, docker).into());
        }
        self.check_annotations()?;
        if self.attest.is_enabled() {
            for spec in &self.outputs {
                let reason = if matches!(spec.output, crate::output::Output::DockerTar(_)) {
                    Some("a docker archive holds no index for attestation manifests")
                } else if spec.options.oci_mediatypes == Some(false) {
                    Some("oci-mediatypes=false cannot hold attestation manifests")
                } else {
                    None
                };
                if let Some(reason) = reason {
                    return Err(OptionsError::AttestationsUnsupported {
                        output: spec.output.to_string(),
                        reason,
                    }
                    .into());
                }
            }
        }
        if let Some(value) = self.build_args.get("SOURCE_DATE_EPOCH")
            && !value.is_empty()
            && value.parse::<i64>().is_err()
        {
            return Err(OptionsError::InvalidSourceDateEpoch {
                value: value.clone(),
            }
            .into());
        }
        for secret in &self.secrets {
            let id = &secret.id;
            if let Some(src) = &secret.src {
                let unreadable = |source| OptionsError::SecretUnreadable {
                    id: id.clone(),
                    path: src.clone(),
                    source,
                };
                #[expect(
                    clippy::disallowed_methods,
                    reason = "SecretUnreadable names the path; fs_err would name it twice"
                )]
                let meta = std::fs::metadata(src).map_err(unreadable)?;
                if !meta.is_file() {
                    return Err(OptionsError::SecretNotAFile {
                        id: id.clone(),
                        path: src.clone(),
                    }
                    .into());
                }
                #[expect(
                    clippy::disallowed_methods,
                    reason = "SecretUnreadable names the path; fs_err would name it twice"
                )]
                std::fs::File::open(src).map_err(unreadable)?;
            } else if let Some(var) = &secret.env
                && std::env::var_os(var).is_none()
            {
                return Err(OptionsError::SecretEnvUnset {
                    id: id.clone(),
                    var: var.clone(),
                }
                .into());
            }
        }
        super::ssh::check_sources(&self.ssh).map_err(OptionsError::from)?;
        Ok(())
    }

    pub(crate) fn read_dockerfile(&self) -> Result<(String, String), BuildError> {
        if let Some(text) = &self.dockerfile_text {
            return Ok(("Dockerfile".to_owned(), text.clone()));
        }
        let path = self.dockerfile_path();
        #[expect(
            clippy::disallowed_methods,
            reason = "ReadDockerfile names the path with a hint (snapshot-tested); fs_err would name it twice"
        )]
        let bytes = std::fs::read(&path).map_err(|source| BuildError::ReadDockerfile {
            path: path.clone(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let (line, column, byte) = invalid_utf8_at(e.as_bytes(), e.utf8_error().valid_up_to());
            BuildError::DockerfileNotUtf8 {
                path: path.clone(),
                line,
                column,
                byte,
            }
        })?;
        Ok((path.display().to_string(), text))
    }

    /// `.dockerignore` of the context, or `<Dockerfile>.dockerignore` next to the
    /// Dockerfile, which wins (BuildKit).
    pub(crate) fn context_filter(
        &self,
        _dockerfile_name: &str,
    ) -> Result<Arc<IgnoreFilter>, BuildError> {
        let mut candidates = Vec::new();
        if self.dockerfile_text.is_none() {
            let df = self.dockerfile_path();
            if let Some(name) = df.file_name() {
                let mut n = name.to_os_string();
                n.push(".dockerignore");
                candidates.push(df.with_file_name(n));
            }
        }
        candidates.push(self.context.join(".dockerignore"));
        for path in candidates {
            match fs_err::read_to_string(&path) {
                Ok(text) => {
                    let patterns = read_ignore_file(&text).map_err(|source| match source {
                        kiln_dockerfile::PatternError::LineTooLong { line, .. } => {
                            ContextError::IgnoreLineTooLong {
                                path: path.clone(),
                                line,
                                source,
                            }
                        }
                        source => ContextError::IgnoreFile {
                            path: path.clone(),
                            source,
                        },
                    })?;
                    let matcher = PatternMatcher::new(&patterns).map_err(|source| {
                        ContextError::InvalidPattern {
                            path: path.clone(),
                            source,
                        }
                    })?;
                    // A pattern that cannot be evaluated would fail every match (BuildKit
                    // then fails the build); refuse it now rather than treat its files as
                    // not excluded and copy what the user meant to keep out.
                    if let Some(pattern) = matcher
                        .patterns()
                        .iter()
                        .find(|p| p.unmatchable_reason().is_some())
                    {
                        return Err(ContextError::UnmatchablePattern {
                            path,
                            pattern: format!(
                                "{}{}",
                                if pattern.is_exclusion() { "!" } else { "" },
                                pattern.as_str()
                            ),
                            reason: pattern.unmatchable_reason().unwrap_or_default().to_owned(),
                        }
                        .into());
                    }
                    return Ok(Arc::new(IgnoreFilter::new(matcher)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(ContextError::ReadIgnoreFile { path, source }.into());
                }
            }
        }
        Ok(Arc::new(IgnoreFilter::none()))
    }
}

/// The name this build's key inputs are saved under, to explain the next build's misses: one
/// history per (context, Dockerfile, target). The store names records by hex only, so it is
/// a digest (domain-separated from step keys, which are digests of a different encoding).
fn history_name(
    context_root: &Path,
    dockerfile_name: &str,
    target: Option<&str>,
    platform: &Platform,
) -> String {
    // The host's platform keeps the name builds had before platforms were part of it.
    let platform = if *platform == Platform::host() {
        String::new()
    } else {
        format!("\0{platform}")
    };
    Digest::sha256_of(
        format!(
            "kiln build history v1\0{}\0{}\0{}{platform}",
            context_root.display(),
            dockerfile_name,
            target.unwrap_or("")
        )
        .as_bytes(),
    )
    .hex()
    .to_owned()
}

/// Go's `strconv.ParseBool`, which BuildKit reads boolean build args with.
fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Line, column (in characters) and value of the first byte of `bytes` that is not UTF-8
/// (at `valid_up_to`).
fn invalid_utf8_at(bytes: &[u8], valid_up_to: usize) -> (usize, usize, u8) {
    let before = String::from_utf8_lossy(&bytes[..valid_up_to]);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    (
        line,
        before[line_start..].chars().count() + 1,
        bytes[valid_up_to],
    )
}
