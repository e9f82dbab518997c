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
    CACHE_CONFIG_MEDIA_TYPE, CACHE_FORMAT_VERSION, CacheConfig, CacheRecords, ExportedLayer,
    ExportedRecord, INLINE_ANNOTATION, MAX_INLINE_BYTES,
};
use super::cache_import::{Remote, RemoteError};
use super::commit;
use super::error::{CacheExportError, LayerError};
use super::lazy::LazyLayers;
use super::model::{LayerBlob, LayerInfo, RanStep};
use crate::cache_options::{CacheExport, CacheLocation, CacheMode};

/// Most COPY key inputs carried over from the cache an export replaces; past that, only
/// this build's are exported.
const MAX_CARRIED_COPY_INPUTS: usize = 200_000;

/// What the export needs from the build.
pub(crate) struct ExportInputs<'a> {
    pub(crate) store: &'a Store,
    /// Imported layers not fetched: exported by descriptor, fetched only for a directory.
    pub(crate) lazy: &'a LazyLayers,
    /// The COPY key inputs the build used, by memo key.
    pub(crate) copy_inputs: BTreeMap<String, BTreeMap<String, Digest>>,
    /// The steps the build answered.
    pub(crate) steps: &'a [RanStep],
    /// The image's stages (the target and the stages it is built `FROM`).
    pub(crate) image_stages: &'a BTreeSet<StageId>,
    /// The build's compression, and its compressor's blob of a layer in it.
    pub(crate) compression: Compression,
    pub(crate) build_blob: &'a dyn Fn(&LayerInfo) -> Result<LayerBlob, LayerError>,
    pub(crate) epoch: Option<i64>,
    /// Now (RFC 3339 and seconds since the epoch): the `last_used` of this build's records.
    pub(crate) now: (String, i64),
}

/// The cache's records and layers for `export`: one record per step key (sorted by key),
/// one layer per blob (sorted by digest). `carried` are the records of the cache already at
/// the export's location (imported by this build): those this build did not answer are
/// kept while they were used within `max-age` and, least recently used first dropped, while
/// all layers stay within `max-size`, so runners that share a ref do not wipe each other's
/// steps.
pub(crate) fn cache_records(
    export: &CacheExport,
    inputs: &ExportInputs<'_>,
    carried: &CacheRecords,
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
                let imported = layer
                    .blob
                    .clone()
                    .filter(|b| inputs.lazy.is_pending(&b.digest));
                let blob = if let Some(imported) = imported {
                    // A layer of an imported cache, not fetched: exported as it is, in its
                    // own compression (the registry has it, or the directory's export
                    // fetches it).
                    Ok(imported)
                } else if compression == inputs.compression {
                    (inputs.build_blob)(layer)
                } else {
                    // A blob of another compression: made (or found) for this layer.
                    // The build's blob is of the build's compression and level.
                    let mut other = layer.clone();
                    other.blob = None;
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
                last_used: Some(inputs.now.0.clone()),
            },
        );
    }
    let carried_records: Vec<ExportedRecord> = carried.records.values().cloned().collect();
    carry_over(
        export,
        inputs.now.1,
        &carried_records,
        &mut records,
        &mut layers,
    );
    // The COPY key inputs this build used, and those the cache had (a memo names immutable
    // content, so an old one is never wrong, only perhaps unused).
    let carried_inputs: usize = carried.copy_inputs.values().map(BTreeMap::len).sum();
    let mut copy_inputs = if carried_inputs <= MAX_CARRIED_COPY_INPUTS {
        carried.copy_inputs.clone()
    } else {
        // Too many to keep: start again from this build's.
        BTreeMap::new()
    };
    copy_inputs.extend(inputs.copy_inputs.clone());
    let config = CacheConfig {
        version: CACHE_FORMAT_VERSION,
        records: records.into_values().collect(),
        copy_inputs,
        cache_mounts: BTreeMap::new(),
    };
    Ok((config, layers.into_values().collect()))
}

/// `--cache-to type=inline`: the image manifest's annotation that holds the records of the
/// image's own stages. Their layers are the image's, so the cache adds no blob. The records
/// carry no `last_used`, so an unchanged rebuild makes the same manifest.
pub(crate) fn inline_annotation(
    export: &CacheExport,
    inputs: &ExportInputs<'_>,
) -> Result<BTreeMap<String, String>, CacheExportError> {
    let (mut config, _) = cache_records(export, inputs, &CacheRecords::default())?;
    for record in &mut config.records {
        record.last_used = None;
    }
    let bytes = config
        .to_bytes()
        .map_err(|source| CacheExportError::Encode {
            cache: export.location.to_string(),
            source: Box::new(source),
        })?;
    if bytes.len() > MAX_INLINE_BYTES {
        return Err(CacheExportError::InlineTooLarge {
            size: bytes.len(),
            limit: MAX_INLINE_BYTES,
        });
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Ok(BTreeMap::from([(INLINE_ANNOTATION.to_owned(), text)]))
}

/// Adds the `carried` records that are not in `records`, within the export's bounds.
fn carry_over(
    export: &CacheExport,
    now: i64,
    carried: &[ExportedRecord],
    records: &mut BTreeMap<CacheKey, ExportedRecord>,
    layers: &mut BTreeMap<Digest, Descriptor>,
) {
    let max_age = i64::try_from(export.max_age.as_secs()).unwrap_or(i64::MAX);
    let mut size: u64 = layers.values().map(|d| d.size).sum();
    let mut candidates: Vec<(i64, &ExportedRecord)> = carried
        .iter()
        .filter(|r| !records.contains_key(&r.key))
        .filter_map(|r| {
            let used = r.last_used.as_deref().unwrap_or(&r.created);
            let used = kiln_oci::parse_rfc3339(used)?;
            (now.saturating_sub(used) <= max_age).then_some((used, r))
        })
        .collect();
    // Most recently used first; ties by key, so the same inputs keep the same records.
    candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.key.cmp(&b.1.key)));
    for (_, record) in candidates {
        if let Some(layer) = &record.layer
            && !layers.contains_key(&layer.digest)
        {
            if size.saturating_add(layer.size) > export.max_size {
                continue;
            }
            size += layer.size;
            layers.insert(
                layer.digest.clone(),
                Descriptor::new(layer.media_type.clone(), layer.digest.clone(), layer.size),
            );
        }
        records.insert(record.key, record.clone());
    }
}

/// Adds the cache mounts' layers to the cache: named in the config by mount id, and layers
/// of the manifest (still sorted by digest).
fn add_cache_mounts(
    config: &mut CacheConfig,
    layers: &mut Vec<Descriptor>,
    mounts: &BTreeMap<String, ExportedLayer>,
) {
    for layer in mounts.values() {
        if !layers.iter().any(|d| d.digest == layer.digest) {
            layers.push(Descriptor::new(
                layer.media_type.clone(),
                layer.digest.clone(),
                layer.size,
            ));
        }
    }
    layers.sort_by(|a, b| a.digest.cmp(&b.digest));
    config.cache_mounts.clone_from(mounts);
}

/// Exports the cache: its config and manifest into the store, then pushed to the registry
/// or written with its blobs as an OCI layout directory. `mounts` are the cache mounts'
/// layers (`cache-mounts=true`, their blobs in the store). Returns the manifest digest.
pub(crate) fn export_cache(
    export: &CacheExport,
    inputs: &ExportInputs<'_>,
    carried: &CacheRecords,
    mounts: &BTreeMap<String, ExportedLayer>,
    remote: &dyn Fn() -> Result<std::sync::Arc<Remote>, RemoteError>,
) -> Result<Digest, CacheExportError> {
    let cache = export.location.to_string();
    let (mut config, mut layers) = cache_records(export, inputs, carried)?;
    add_cache_mounts(&mut config, &mut layers, mounts);
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
                    &inputs.lazy.source(),
                    &digest,
                    std::slice::from_ref(reference),
                ))
                .map_err(|source| CacheExportError::Push {
                    cache: cache.clone(),
                    source: Box::new(source),
                })?;
        }
        // Written into the image's manifest when it is assembled (`inline_annotation`).
        CacheLocation::Inline => {}
        CacheLocation::Local(dir) => {
            inputs
                .lazy
                .ensure_blobs(manifest.layers.iter().map(|l| &l.digest))
                .map_err(|fault| CacheExportError::Fetch {
                    cache: cache.clone(),
                    digest: fault.digest,
                    reason: format!("from {}: {}", fault.cache, fault.source),
                })?;
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

#[cfg(test)]
mod tests {
    use kiln_oci::{DiffId, Platform};
    use kiln_plan::KeyInputs;

    use super::*;

    fn record(text: &str, layer_size: Option<u64>, used: i64) -> ExportedRecord {
        let inputs = KeyInputs::new(text, &Platform::host());
        ExportedRecord {
            key: inputs.key(),
            parent: None,
            step: "0:1".to_owned(),
            created: kiln_oci::rfc3339_utc(0),
            layer: layer_size.map(|size| ExportedLayer {
                diff_id: DiffId(Digest::sha256_of(text.as_bytes())),
                digest: Digest::sha256_of(format!("blob {text}").as_bytes()),
                size,
                media_type: MediaType::OciLayerTarGzip,
            }),
            inputs,
            last_used: Some(kiln_oci::rfc3339_utc(used)),
        }
    }

    #[test]
    fn carried_records_stay_within_the_age_and_size_bounds() {
        let now = 1_000_000;
        let export = CacheExport::new(CacheLocation::Local("/c".into()))
            .max_age(std::time::Duration::from_hours(1))
            .max_size(250);
        let ours = record("RUN ours", Some(100), now);
        let mut records = BTreeMap::from([(ours.key, ours.clone())]);
        let mut layers = BTreeMap::new();
        let l = ours.layer.as_ref().unwrap();
        layers.insert(
            l.digest.clone(),
            Descriptor::new(l.media_type.clone(), l.digest.clone(), l.size),
        );
        let recent = record("RUN recent", Some(100), now - 60);
        let no_layer = record("ENV-like", None, now - 10);
        let old = record("RUN old", Some(1), now - 7200);
        let too_big = record("RUN big", Some(200), now - 30);
        let mut stale_ours = ours.clone();
        stale_ours.last_used = Some(kiln_oci::rfc3339_utc(now - 100));
        let carried = [
            recent.clone(),
            no_layer.clone(),
            old.clone(),
            too_big.clone(),
            stale_ours,
        ];
        carry_over(&export, now, &carried, &mut records, &mut layers);
        let kept: BTreeSet<CacheKey> = records.keys().copied().collect();
        assert_eq!(
            kept,
            BTreeSet::from([ours.key, recent.key, no_layer.key]),
            "old is past max-age, big would pass max-size"
        );
        // This build's own record is the one kept for its key.
        assert_eq!(records[&ours.key].last_used, ours.last_used);
        assert_eq!(layers.values().map(|d| d.size).sum::<u64>(), 200);
    }
}
