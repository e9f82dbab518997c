//! Turning a staged directory (a RUN upperdir or a COPY staging tree, both in overlay form)
//! into a layer and adopting the directory as that layer's snapshot — so a new layer is never
//! extracted again (DESIGN.md §8: a RUN's layer costs what it changed).
//!
//! A commit makes the layer's snapshot, named by its diffID (one quick pass: tar and SHA-256,
//! no compression). Its compressed blob is written only when an image needs it, by
//! [`ensure_blob`], which compresses the snapshot, checks that it still makes the same diffID,
//! and remembers the blob. The layers of stages in the build's image are handed to the
//! [`Compressor`](super::compressor::Compressor) at commit, which compresses them in the
//! background while the next steps run; the layers of other stages (a builder whose files
//! reach the image through `COPY --from`) stay snapshots until a later build needs them.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kiln_oci::{ChainId, Compression, DiffId, DiffTar, LayerWriter, MediaType};
use kiln_store::Store;
use serde::{Deserialize, Serialize};

use super::error::LayerError;
use super::model::{LayerBlob, LayerInfo};

/// Writes `dir` as a layer on top of `parent`; `None` (and `dir` removed) when it is empty.
pub(crate) fn commit_dir(
    store: &Store,
    dir: &Path,
    parent: Option<&ChainId>,
    epoch: Option<i64>,
) -> Result<Option<LayerInfo>, LayerError> {
    let is_empty = fs_err::read_dir(dir)
        .map_err(LayerError::fs)?
        .next()
        .is_none();
    if is_empty {
        let _ = fs_err::remove_dir_all(dir);
        return Ok(None);
    }
    let _span = tracing::debug_span!("commit_layer", dir = %dir.display()).entered();
    commit_snapshot(store, parent, dir, epoch).map(Some)
}

/// Adopts the non-empty `dir` as the snapshot of a layer on top of `parent` (no blob yet).
pub(crate) fn commit_snapshot(
    store: &Store,
    parent: Option<&ChainId>,
    dir: &Path,
    epoch: Option<i64>,
) -> Result<LayerInfo, LayerError> {
    let (diff_id, tar_size) = diff_id_of(dir, epoch)?;
    let chain = ChainId::on(parent, &diff_id);
    store.adopt_snapshot(dir, &chain)?;
    Ok(LayerInfo {
        diff_id,
        blob: None,
        chain,
        tar_size: Some(tar_size),
    })
}

/// The blob an earlier [`ensure_blob`] compressed for the layer `diff_id` with
/// `compression`, if it is still in the store.
pub(crate) fn remembered_blob(
    store: &Store,
    diff_id: &DiffId,
    compression: Compression,
) -> Option<LayerBlob> {
    store
        .get_cache_record(&blob_memo_key(diff_id, compression))
        .ok()
        .flatten()
        .and_then(|v| serde_json::from_value::<BlobMemo>(v).ok())
        .filter(|m| m.diff_id == *diff_id && store.has_blob(&m.blob.digest))
        .map(|m| m.blob)
}

/// The layer's blob: the one it has, the one compressed for it earlier, or a new one
/// compressed from its snapshot (which must still make the layer's diffID).
pub(crate) fn ensure_blob(
    store: &Store,
    compression: Compression,
    epoch: Option<i64>,
    layer: &LayerInfo,
    abort: &AtomicBool,
) -> Result<LayerBlob, LayerError> {
    if let Some(blob) = &layer.blob {
        return Ok(blob.clone());
    }
    if let Some(remembered) = remembered_blob(store, &layer.diff_id, compression) {
        return Ok(remembered);
    }
    let memo = blob_memo_key(&layer.diff_id, compression);
    let snapshot = store.snapshot_path(&layer.chain);
    if !store.has_snapshot(&layer.chain) {
        return Err(LayerError::Missing {
            diff_id: layer.diff_id.clone(),
            snapshot,
        });
    }
    let (diff_id, blob) = write_blob(store, compression, epoch, &snapshot, abort)?;
    if diff_id != layer.diff_id {
        return Err(LayerError::SnapshotChanged {
            snapshot,
            made: diff_id,
            recorded: layer.diff_id.clone(),
        });
    }
    let refs = kiln_store::RecordRefs {
        blobs: vec![blob.digest.clone()],
        ..kiln_store::RecordRefs::default()
    };
    let memo_value = serde_json::to_value(BlobMemo {
        diff_id,
        blob: blob.clone(),
    });
    if let Err(e) = memo_value.map_err(|e| e.to_string()).and_then(|value| {
        store
            .put_cache_record(&memo, &refs, &value)
            .map_err(|e| e.to_string())
    }) {
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

/// The memo of a layer's blob in `compression`; a level other than the default one is part
/// of it (`--cache-to …,compression-level=N` wants its own blob).
fn blob_memo_key(diff_id: &DiffId, compression: Compression) -> String {
    let media_type = media_type_of(compression);
    let material = match compression {
        Compression::Gzip { level } if level != 6 => {
            format!("kiln layer blob {diff_id} {media_type} level {level}")
        }
        Compression::Zstd { level } if level != 3 => {
            format!("kiln layer blob {diff_id} {media_type} level {level}")
        }
        _ => format!("kiln layer blob {diff_id} {media_type}"),
    };
    kiln_oci::Digest::sha256_of(material.as_bytes())
        .hex()
        .to_owned()
}

/// Tars and compresses `dir` into a new blob of the store.
pub(crate) fn write_blob(
    store: &Store,
    compression: Compression,
    epoch: Option<i64>,
    dir: &Path,
    abort: &AtomicBool,
) -> Result<(DiffId, LayerBlob), LayerError> {
    let blob = Abortable {
        inner: store.begin_blob(None, None)?,
        abort,
    };
    let mut layer = LayerWriter::new(BufWriter::with_capacity(1 << 20, blob), compression)
        .map_err(|e| LayerError::stream("starting the layer compressor", e))?;
    write_tar(dir, epoch, &mut layer)?;
    let (writer, digests) = layer
        .finish()
        .map_err(|e| LayerError::stream("finishing the layer", e))?;
    let blob = writer
        .into_inner()
        .map_err(|e| LayerError::stream("flushing the layer", e.into_error()))?
        .inner;
    let digest = blob.commit_unverified()?;
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

/// A blob writer that fails once `abort` is set: the compression of a build that has ended
/// stops at its next write, and the unfinished blob is removed.
struct Abortable<'a, W> {
    inner: W,
    abort: &'a AtomicBool,
}

impl<W: Write> Write for Abortable<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.abort.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("the build has ended"));
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The diffID of `dir` as a layer and the tar's length: its tar hashed, nothing written.
fn diff_id_of(dir: &Path, epoch: Option<i64>) -> Result<(DiffId, u64), LayerError> {
    let mut layer = LayerWriter::new(std::io::sink(), Compression::None)
        .map_err(|e| LayerError::stream("starting the layer digest", e))?;
    write_tar(dir, epoch, &mut layer)?;
    let (_, digests) = layer
        .finish()
        .map_err(|e| LayerError::stream("finishing the layer digest", e))?;
    Ok((digests.diff_id, digests.uncompressed_size))
}

/// The layer tar of `dir` (its times clamped to `epoch`) into `out`.
fn write_tar(dir: &Path, epoch: Option<i64>, out: impl std::io::Write) -> Result<(), LayerError> {
    let mut tar = DiffTar::new(dir);
    if let Some(epoch) = epoch {
        tar = tar.source_date_epoch(epoch);
    }
    tar.write_to(out).map(|_| ()).map_err(|e| LayerError::Tar {
        path: dir.to_path_buf(),
        source: Arc::new(e),
    })
}

pub(crate) fn media_type_of(compression: Compression) -> MediaType {
    match compression {
        Compression::Gzip { .. } => MediaType::OciLayerTarGzip,
        Compression::Zstd { .. } => MediaType::OciLayerTarZstd,
        Compression::None => MediaType::OciLayerTar,
    }
}
