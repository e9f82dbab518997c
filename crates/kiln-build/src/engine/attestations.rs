//! The predicates of `--sbom` and `--provenance`, gathered from a finished build: the final
//! image's (and, with `scan-stage`, each stage's) layers scanned for packages, and the
//! request, base images and steps of provenance. The statements about each exported image
//! are made from them at export (`crate::attest`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_oci::{ChainId, Digest, Platform};
use kiln_plan::{BuildGraph, StageId};
use kiln_store::Store;

use super::error::ExportError;
use super::lazy::LazyLayers;
use super::model::{LayerInfo, RanStep, StageResult};
use super::options::Builder;
use super::platforms::Built;
use crate::attest::provenance::{self, ProvenanceInputs, ResolvedBase, StepRecord};
use crate::attest::{
    self, AttestationError, Attestations, PREDICATE_SPDX, Predicate, SCAN_STAGE_ARG, ScanStages,
};

/// What a finished build hands the attestations.
pub(crate) struct BuildFacts<'a> {
    pub(crate) builder: &'a Builder,
    pub(crate) store: &'a Store,
    pub(crate) lazy: &'a LazyLayers,
    /// Each platform's graph, in the build's platform order.
    pub(crate) graphs: &'a [BuildGraph],
    /// Each platform's stage results.
    pub(crate) results: &'a [BTreeMap<StageId, Arc<StageResult>>],
    /// Each platform's steps.
    pub(crate) steps: Vec<Vec<RanStep>>,
    /// The images the build resolved.
    pub(crate) bases: Vec<ResolvedBase>,
    /// The build's images.
    pub(crate) built: &'a Built,
    /// The Dockerfile as named (only its file name is written).
    pub(crate) dockerfile_name: &'a str,
    /// Its text.
    pub(crate) dockerfile_text: &'a str,
    /// When the build started (RFC 3339; `SOURCE_DATE_EPOCH` when set).
    pub(crate) started: &'a str,
}

/// The predicates of every platform image.
pub(crate) fn gather(facts: &BuildFacts<'_>) -> Result<Attestations, ExportError> {
    let builder = facts.builder;
    let options = &builder.attest;
    let mut platforms = Vec::new();
    for (i, (platform, image)) in facts.built.images().enumerate() {
        let (Some(graph), Some(results)) = (facts.graphs.get(i), facts.results.get(i)) else {
            continue;
        };
        let mut predicates = Vec::new();
        if let Some(sbom) = &options.sbom {
            let config = image.config_digest();
            let created = facts.started;
            if let Some(target) = results.get(&graph.target) {
                predicates.push(sbom_of(
                    facts,
                    "sbom",
                    &target.layers,
                    config,
                    platform,
                    created,
                )?);
            }
            // BuildKit: the build arg (BUILDKIT_SBOM_SCAN_STAGE) selects the stages; kiln's
            // `scan-stage=` key too.
            let scan = builder
                .build_args
                .get(SCAN_STAGE_ARG)
                .map_or_else(|| sbom.scan_stage.clone(), |v| ScanStages::parse_value(v));
            for stage in &graph.stages {
                if stage.id == graph.target {
                    continue;
                }
                let name = stage
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("stage-{}", stage.id.0));
                let Some(result) = results.get(&stage.id) else {
                    continue;
                };
                if !scan.includes(&name) {
                    continue;
                }
                predicates.push(sbom_of(
                    facts,
                    &format!("sbom-{name}"),
                    &result.layers,
                    config,
                    platform,
                    created,
                )?);
            }
        }
        if let Some(wanted) = &options.provenance {
            predicates.push(provenance_of(facts, i, graph, wanted));
        }
        platforms.push(predicates);
    }
    Ok(Attestations { platforms })
}

/// The SBOM predicate of a scan of `layers`.
fn sbom_of(
    facts: &BuildFacts<'_>,
    scan: &str,
    layers: &[LayerInfo],
    config: &Digest,
    platform: &Platform,
    created: &str,
) -> Result<Predicate, ExportError> {
    let dirs = layer_dirs(facts.store, facts.lazy, layers, scan)
        .map_err(|e| ExportError::Attestation(Box::new(e)))?;
    let namespace = attest::spdx_namespace(config, platform, scan);
    let body = attest::sbom_predicate(scan, dirs, &namespace, created)
        .map_err(|e| ExportError::Attestation(Box::new(e)))?;
    Ok(Predicate {
        predicate_type: PREDICATE_SPDX.to_owned(),
        body,
        file_name: format!("{scan}.spdx.json"),
    })
}

/// The snapshot directories of `layers`, base first; a layer only pulled as a blob (or
/// still in an imported cache) is unpacked first.
fn layer_dirs(
    store: &Store,
    lazy: &LazyLayers,
    layers: &[LayerInfo],
    scan: &str,
) -> Result<Vec<PathBuf>, AttestationError> {
    let mut dirs = Vec::with_capacity(layers.len());
    let mut parent: Option<ChainId> = None;
    for layer in layers {
        if !store.has_snapshot(&layer.chain) {
            let missing = || AttestationError::MissingLayer {
                scan: scan.to_owned(),
                diff_id: layer.diff_id.to_string(),
            };
            let blob = layer.blob.as_ref().ok_or_else(missing)?;
            lazy.ensure_blobs([&blob.digest]).map_err(|_| missing())?;
            store
                .ensure_snapshot(parent.as_ref(), &layer.diff_id, &blob.digest)
                .map_err(|source| AttestationError::Snapshot {
                    scan: scan.to_owned(),
                    diff_id: layer.diff_id.to_string(),
                    source: Box::new(source),
                })?;
        }
        dirs.push(store.snapshot_path(&layer.chain));
        parent = Some(layer.chain.clone());
    }
    Ok(dirs)
}

/// The provenance predicate of platform `i`.
fn provenance_of(
    facts: &BuildFacts<'_>,
    i: usize,
    graph: &BuildGraph,
    wanted: &attest::ProvenanceAttest,
) -> Predicate {
    let builder = facts.builder;
    let stage_platforms: Vec<&Platform> = graph.stages.iter().map(|s| &s.platform).collect();
    let bases = facts
        .bases
        .iter()
        .filter(|b| stage_platforms.contains(&&b.platform))
        .cloned()
        .collect();
    let mut steps: Vec<(usize, StepRecord)> = facts
        .steps
        .get(i)
        .into_iter()
        .flatten()
        .map(|step| {
            (
                step.stage.0,
                StepRecord {
                    id: step.step.clone(),
                    key: step.inputs.key().to_string(),
                    inputs: serde_json::to_value(&step.inputs).unwrap_or_default(),
                },
            )
        })
        .collect();
    steps.sort_by(|a, b| (a.0, &a.1.id).cmp(&(b.0, &b.1.id)));
    steps.dedup_by(|a, b| a.1.id == b.1.id);
    let mut locals = vec!["context".to_owned(), "dockerfile".to_owned()];
    locals.extend(
        builder
            .build_contexts
            .iter()
            .filter(|(_, source)| !source.contains("://"))
            .map(|(name, _)| name.clone()),
    );
    let dockerfile_name = Path::new(facts.dockerfile_name).file_name().map_or_else(
        || "Dockerfile".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    let builder_id = wanted
        .builder_id
        .clone()
        .unwrap_or_else(attest::default_builder_id);
    let dockerfile_digest = Digest::sha256_of(facts.dockerfile_text.as_bytes());
    let host = Platform::host();
    let (started_on, finished_on) = if builder.source_date_epoch.is_some() {
        (None, None)
    } else {
        (
            Some(facts.started.to_owned()),
            Some(super::driver::now_rfc3339()),
        )
    };
    let inputs = ProvenanceInputs {
        mode: wanted.mode,
        builder_id: &builder_id,
        dockerfile_name: &dockerfile_name,
        dockerfile_digest: &dockerfile_digest,
        build_args: &builder.build_args,
        labels: &builder.labels,
        target: builder.target.as_deref(),
        secret_ids: builder.secrets.iter().map(|s| s.id.clone()).collect(),
        ssh_ids: builder.ssh.iter().map(|s| s.id.clone()).collect(),
        locals,
        bases,
        steps: steps.into_iter().map(|(_, step)| step).collect(),
        builder_platform: &host,
        started_on,
        finished_on,
    };
    Predicate {
        predicate_type: provenance::PREDICATE_SLSA_V1.to_owned(),
        body: provenance::predicate_v1(&inputs),
        file_name: "provenance.json".to_owned(),
    }
}
