//! `--cache-to`: after a successful build, the steps it answered become a cache (the format
//! is `cache_format`'s) pushed to a registry or written as an OCI layout directory.
//! `mode=max` exports every step of every stage that ran; `mode=min` only the steps of the
//! image's stages. Layers this build made may exist only as snapshots: their blobs are made
//! now (the compressor's, or `commit::ensure_blob` for another compression).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;

use kiln_oci::{Compression, Descriptor, Digest, ExportImage, ImageManifest, MediaType};
use kiln_plan::{CacheKey, StageId};
use kiln_store::Store;

use super::cache_format::{
    CACHE_CONFIG_MEDIA_TYPE, CACHE_FORMAT_VERSION, CacheConfig, ExportedLayer, ExportedRecord,
};
use super::cache_import::{Remote, RemoteError};
use super::commit;
use super::error::{CacheExportError, LayerError};
use super::model::{LayerBlob, LayerInfo, RanStep};
use crate::cache_options::{CacheExport, CacheLocation, CacheMode};

/// What the export needs from the build.
pub(crate) struct ExportInputs<'a> {
    pub(crate) store: &'a Store,
    /// The steps the build answered.
    pub(crate) steps: &'a [RanStep],
    /// The image's stages (the target and the stages it is built `FROM`).
    pub(crate) image_stages: &'a BTreeSet<StageId>,
    /// The build's compression, and its compressor's blob of a layer in it.
    pub(crate) compression: Compression,
    pub(crate) build_blob: &'a dyn Fn(&LayerInfo) -> Result<LayerBlob, LayerError>,
    pub(crate) epoch: Option<i64>,
}

/// The cache's records and layers for `export`: one record per step key (sorted by key),
/// one layer per blob (sorted by digest), so the same steps give the same manifest.
pub(crate) fn cache_records(
    export: &CacheExport,
    inputs: &ExportInputs<'_>,
) -> Result<(CacheConfig, Vec<Descriptor>), CacheExportError> {
    let cache = export.location.to_string();
    let compression = export.compression.unwrap_or(inputs.compression);
    let never_abort = AtomicBool::new(false);
    let mut records: BTreeMap<CacheKey, ExportedRecord> = BTreeMap::new();
    let mut layers: BTreeMap<Digest, Descriptor> = BTreeMap::new();
    for step in inputs.steps {
        if export.mode == CacheMode::Min && !inputs.image_stages.contains(&step.stage) {
            continue;
        }
        let key = step.inputs.key();
        if records.contains_key(&key) {
            continue;
        }
        let layer = match &step.layer {
            None => None,
            Some(layer) => {
                let blob = if compression == inputs.compression {
                    (inputs.build_blob)(layer)
                } else {
                    // A blob of another compression: made (or found) for this layer.
                    let wanted = commit::media_type_of(compression);
                    let mut other = layer.clone();
                    other.blob = other.blob.filter(|b| b.media_type == wanted);
                    commit::ensure_blob(
                        inputs.store,
                        compression,
                        inputs.epoch,
                        &other,
                        &never_abort,
                    )
                }
                .map_err(|source| CacheExportError::Layer {
                    cache: cache.clone(),
                    source: Box::new(source),
                })?;
                layers.entry(blob.digest.clone()).or_insert_with(|| {
                    Descriptor::new(blob.media_type.clone(), blob.digest.clone(), blob.size)
                });
                Some(ExportedLayer {
                    diff_id: layer.diff_id.clone(),
                    digest: blob.digest,
                    size: blob.size,
                    media_type: blob.media_type,
                })
            }
        };
        records.insert(
            key,
            ExportedRecord {
                key,
                parent: step.inputs.parent,
                step: step.step.clone(),
                created: step.created.clone(),
                layer,
                inputs: step.inputs.clone(),
            },
        );
    }
    let config = CacheConfig {
        version: CACHE_FORMAT_VERSION,
        records: records.into_values().collect(),
    };
    Ok((config, layers.into_values().collect()))
}

/// Exports the cache: its config and manifest into the store, then pushed to the registry
/// or written with its blobs as an OCI layout directory. Returns the manifest digest.
pub(crate) fn export_cache(
    export: &CacheExport,
    inputs: &ExportInputs<'_>,
    remote: &dyn Fn() -> Result<std::sync::Arc<Remote>, RemoteError>,
) -> Result<Digest, CacheExportError> {
    let cache = export.location.to_string();
    let (config, layers) = cache_records(export, inputs)?;
    let store_error = |source| CacheExportError::Store {
        cache: cache.clone(),
        source: Box::new(source),
    };
    let encode_error = |source| CacheExportError::Encode {
        cache: cache.clone(),
        source: Box::new(source),
    };
    let config_bytes = config.to_bytes().map_err(encode_error)?;
    inputs.store.put_bytes(&config_bytes).map_err(store_error)?;
    let manifest = ImageManifest::new(
        Descriptor::of_bytes(MediaType::from(CACHE_CONFIG_MEDIA_TYPE), &config_bytes),
        layers,
    );
    let manifest_bytes = kiln_oci::to_canonical_json(&manifest).map_err(encode_error)?;
    let digest = inputs
        .store
        .put_bytes(&manifest_bytes)
        .map_err(store_error)?;
    match &export.location {
        CacheLocation::Registry(reference) => {
            let remote = remote().map_err(|e| match e {
                RemoteError::Client(source) => CacheExportError::Push {
                    cache: cache.clone(),
                    source,
                },
                RemoteError::Runtime(source) => CacheExportError::Runtime {
                    cache: cache.clone(),
                    source,
                },
            })?;
            remote
                .runtime
                .block_on(remote.client.push_image(
                    inputs.store,
                    &digest,
                    std::slice::from_ref(reference),
                ))
                .map_err(|source| CacheExportError::Push {
                    cache: cache.clone(),
                    source: Box::new(source),
                })?;
        }
        CacheLocation::Local(dir) => {
            let descriptor = Descriptor::new(
                MediaType::OciManifest,
                digest.clone(),
                manifest_bytes.len() as u64,
            );
            kiln_oci::write_oci_layout_dir(dir, inputs.store, &[ExportImage::new(descriptor)])
                .map_err(|source| CacheExportError::Layout {
                    cache: cache.clone(),
                    path: dir.clone(),
                    source: Box::new(source),
                })?;
        }
    }
    Ok(digest)
}
