//! Turning a staged directory (a RUN upperdir or a COPY staging tree, both in overlay form)
//! into a layer and adopting the directory as that layer's snapshot — so a new layer is never
//! extracted again (DESIGN.md §8: a RUN's layer costs what it changed).
//!
//! A layer is compressed into a blob only when an image needs it. The layers of stages that
//! are part of the build's image are compressed as they are committed (one pass over the
//! files: tar, diffID and compressed digest together). The layers of the other stages — a
//! builder whose files reach the image through `COPY --from` — exist as snapshots only,
//! named by their diffID (one quick pass: tar and SHA-256, no compression). If an image ever
//! needs one (`--target builder` later), [`ensure_blob`] compresses it from its snapshot,
//! checks that the snapshot still makes the same diffID, and remembers the blob.

use std::fs;
use std::io::BufWriter;
use std::path::Path;

use kiln_oci::{ChainId, Compression, DiffId, DiffTar, LayerWriter, MediaType};
use kiln_store::Store;
use serde::{Deserialize, Serialize};

use super::base::chain_of;
use super::stage::{Engine, LayerBlob, LayerInfo};

/// Writes `dir` as a layer on top of `parent`; `None` (and `dir` removed) when it is empty.
/// `compress`: also write its compressed blob now (the layer is part of the build's image).
pub(crate) fn commit_dir(
    engine: &Engine<'_>,
    dir: &Path,
    parent: Option<&ChainId>,
    compress: bool,
) -> Result<Option<LayerInfo>, String> {
    let is_empty = fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .next()
        .is_none();
    if is_empty {
        let _ = fs::remove_dir_all(dir);
        return Ok(None);
    }
    let _span = tracing::debug_span!("commit_layer", dir = %dir.display(), compress).entered();
    let epoch = engine.builder.source_date_epoch;
    let (diff_id, blob) = if compress {
        let blob = write_blob(engine.store, engine.builder.compression, epoch, dir)?;
        (blob.0, Some(blob.1))
    } else {
        (diff_id_of(dir, epoch)?, None)
    };
    let chain = chain_of(parent, &diff_id);
    engine
        .store
        .adopt_snapshot(dir, &chain)
        .map_err(|e| e.to_string())?;
    Ok(Some(LayerInfo {
        diff_id,
        blob,
        chain,
    }))
}

/// The layer's blob: the one it has, the one compressed for it earlier, or a new one
/// compressed from its snapshot (which must still make the layer's diffID).
pub(crate) fn ensure_blob(
    store: &Store,
    compression: Compression,
    epoch: Option<i64>,
    layer: &LayerInfo,
) -> Result<LayerBlob, String> {
    if let Some(blob) = &layer.blob {
        return Ok(blob.clone());
    }
    let media_type = media_type_of(compression);
    let memo = blob_memo_key(&layer.diff_id, &media_type);
    if let Some(remembered) = store
        .get_cache_record(&memo)
        .ok()
        .flatten()
        .and_then(|v| serde_json::from_value::<BlobMemo>(v).ok())
        && remembered.diff_id == layer.diff_id
        && store.has_blob(&remembered.blob.digest)
    {
        return Ok(remembered.blob);
    }
    let snapshot = store.snapshot_path(&layer.chain);
    if !store.has_snapshot(&layer.chain) {
        return Err(format!(
            "layer {} has neither a blob nor its snapshot {}; rebuild with --no-cache",
            layer.diff_id,
            snapshot.display()
        ));
    }
    let _span = tracing::debug_span!("compress_snapshot", chain = %layer.chain.0).entered();
    let (diff_id, blob) = write_blob(store, compression, epoch, &snapshot)?;
    if diff_id != layer.diff_id {
        return Err(format!(
            "the snapshot {} makes layer {diff_id}, but the build recorded {}: the snapshot was changed; remove it and rebuild with --no-cache",
            snapshot.display(),
            layer.diff_id
        ));
    }
    let value = serde_json::to_value(BlobMemo {
        diff_id,
        blob: blob.clone(),
    })
    .map_err(|e| e.to_string())?;
    if let Err(e) = store.put_cache_record(&memo, &value) {
        tracing::warn!(
            "could not remember the blob of layer {}: {e}",
            layer.diff_id
        );
    }
    Ok(blob)
}

/// What [`ensure_blob`] remembers about a layer it compressed (a cache record, so the blob
/// lives as long as the record).
#[derive(Serialize, Deserialize)]
struct BlobMemo {
    diff_id: DiffId,
    blob: LayerBlob,
}

fn blob_memo_key(diff_id: &DiffId, media_type: &MediaType) -> String {
    kiln_oci::Digest::sha256_of(format!("kiln layer blob {diff_id} {media_type}").as_bytes())
        .hex()
        .to_owned()
}

/// Tars and compresses `dir` into a new blob of the store.
fn write_blob(
    store: &Store,
    compression: Compression,
    epoch: Option<i64>,
    dir: &Path,
) -> Result<(DiffId, LayerBlob), String> {
    let blob = store.begin_blob(None, None).map_err(|e| e.to_string())?;
    let mut layer = LayerWriter::new(BufWriter::with_capacity(1 << 20, blob), compression)
        .map_err(|e| format!("starting the layer compressor: {e}"))?;
    write_tar(dir, epoch, &mut layer)?;
    let (writer, digests) = layer
        .finish()
        .map_err(|e| format!("finishing the layer: {e}"))?;
    let blob = writer
        .into_inner()
        .map_err(|e| format!("flushing the layer: {}", e.error()))?;
    let digest = blob.commit_unverified().map_err(|e| e.to_string())?;
    debug_assert_eq!(digest, digests.digest);
    Ok((
        digests.diff_id,
        LayerBlob {
            digest,
            size: digests.size,
            media_type: media_type_of(compression),
        },
    ))
}

/// The diffID of `dir` as a layer: its tar hashed, nothing written.
fn diff_id_of(dir: &Path, epoch: Option<i64>) -> Result<DiffId, String> {
    let mut layer = LayerWriter::new(std::io::sink(), Compression::None)
        .map_err(|e| format!("starting the layer digest: {e}"))?;
    write_tar(dir, epoch, &mut layer)?;
    let (_, digests) = layer
        .finish()
        .map_err(|e| format!("finishing the layer digest: {e}"))?;
    Ok(digests.diff_id)
}

/// The layer tar of `dir` (its times clamped to `epoch`) into `out`.
fn write_tar(dir: &Path, epoch: Option<i64>, out: impl std::io::Write) -> Result<(), String> {
    let mut tar = DiffTar::new(dir);
    if let Some(epoch) = epoch {
        tar = tar.source_date_epoch(epoch);
    }
    tar.write_to(out)
        .map(|_| ())
        .map_err(|e| format!("writing the layer of {}: {e}", dir.display()))
}

fn media_type_of(compression: Compression) -> MediaType {
    match compression {
        Compression::Gzip { .. } => MediaType::OciLayerTarGzip,
        Compression::Zstd { .. } => MediaType::OciLayerTarZstd,
        Compression::None => MediaType::OciLayerTar,
    }
}
