//! Turning a staged directory (a RUN upperdir or a COPY staging tree, both in overlay form)
//! into a layer blob in the store and adopting the directory as that layer's snapshot — so a
//! new layer is never extracted again (DESIGN.md §8: a RUN's layer costs what it changed).

use std::fs;
use std::io::BufWriter;
use std::path::Path;

use kiln_oci::{ChainId, Compression, DiffTar, LayerWriter, MediaType};

use super::base::chain_of;
use super::stage::{Engine, LayerInfo};

/// Writes `dir` as a layer on top of `parent`; `None` (and `dir` removed) when it is empty.
pub(crate) fn commit_dir(
    engine: &Engine<'_>,
    dir: &Path,
    parent: Option<&ChainId>,
) -> Result<Option<LayerInfo>, String> {
    let is_empty = fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .next()
        .is_none();
    if is_empty {
        let _ = fs::remove_dir_all(dir);
        return Ok(None);
    }
    let _span = tracing::debug_span!("commit_layer", dir = %dir.display()).entered();
    let store = engine.store;
    let compression = engine.builder.compression;
    let blob = store.begin_blob(None, None).map_err(|e| e.to_string())?;
    let mut layer = LayerWriter::new(BufWriter::with_capacity(1 << 20, blob), compression)
        .map_err(|e| format!("starting the layer compressor: {e}"))?;
    let mut tar = DiffTar::new(dir);
    if let Some(epoch) = engine.builder.source_date_epoch {
        tar = tar.source_date_epoch(epoch);
    }
    tar.write_to(&mut layer)
        .map_err(|e| format!("writing the layer of {}: {e}", dir.display()))?;
    let (writer, digests) = layer
        .finish()
        .map_err(|e| format!("finishing the layer: {e}"))?;
    let blob = writer
        .into_inner()
        .map_err(|e| format!("flushing the layer: {}", e.error()))?;
    let digest = blob.commit_unverified().map_err(|e| e.to_string())?;
    debug_assert_eq!(digest, digests.digest);
    let chain = chain_of(parent, &digests.diff_id);
    let snapshot = store.snapshot_path(&chain);
    if snapshot.exists() {
        let _ = fs::remove_dir_all(dir);
    } else if let Err(e) = fs::rename(dir, &snapshot) {
        if !snapshot.exists() {
            return Err(format!(
                "moving {} to {}: {e}",
                dir.display(),
                snapshot.display()
            ));
        }
        let _ = fs::remove_dir_all(dir);
    }
    Ok(Some(LayerInfo {
        diff_id: digests.diff_id,
        blob: digest,
        size: digests.size,
        media_type: media_type_of(compression),
        chain,
    }))
}

fn media_type_of(compression: Compression) -> MediaType {
    match compression {
        Compression::Gzip { .. } => MediaType::OciLayerTarGzip,
        Compression::Zstd { .. } => MediaType::OciLayerTarZstd,
        Compression::None => MediaType::OciLayerTar,
    }
}
