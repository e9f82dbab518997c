//! Images the local store keeps with uncompressed layers: a build whose image only goes
//! into the store under its `-t` names compresses nothing (`Compressor::deferred`), as
//! docker's image store keeps layers by diffID. Its manifest lists the layers the build
//! made as `application/vnd.oci.image.layer.v1.tar` whose digest is the diffID and whose
//! bytes are the tar of the layer's snapshot, never written. [`compress_stored_image`] makes
//! such an image whole when it leaves the store (`kiln push`, `kiln save`): each of those
//! layers is compressed from its snapshot (`commit::ensure_blob`, which checks the tar still
//! makes the diffID and remembers the blob), and the manifest is written again over the
//! same config, so the image ID stays and only the manifest digest changes — as `docker
//! push` makes a manifest the local image never had.

use std::sync::atomic::AtomicBool;

use kiln_oci::{ChainId, Compression, Digest, JsonBlob, LayerCompression, MediaType};
use kiln_store::Store;

use super::commit;
use super::error::ExportError;
use super::model::LayerInfo;

/// Whether `layer` is an uncompressed tar (its digest is its diffID).
pub(crate) fn is_uncompressed(layer: &kiln_oci::Descriptor) -> bool {
    layer.media_type.layer_compression() == Some(LayerCompression::None)
}

/// Whether `layer` of a stored manifest is one of a deferred image's: uncompressed and
/// without a blob (its snapshot stands for it).
pub(crate) fn is_snapshot_only(store: &Store, layer: &kiln_oci::Descriptor) -> bool {
    is_uncompressed(layer) && !store.has_blob(&layer.digest)
}

/// The image `digest` with every snapshot-only layer compressed (gzip, the default): its
/// manifest's digest, `digest` itself when it has none (an index, a pulled or loaded image,
/// an image already made whole). Every name in the store that pointed to `digest` points to
/// the whole image afterwards, so a second push sends the same manifest without compressing
/// again.
pub(crate) fn compress_stored_image(store: &Store, digest: &Digest) -> Result<Digest, ExportError> {
    let descriptor = store.descriptor_of(digest)?;
    if !matches!(
        descriptor.media_type,
        MediaType::OciManifest | MediaType::DockerManifest
    ) {
        return Ok(digest.clone());
    }
    let resolved = store.resolve_image(digest, None)?;
    let manifest = resolved.manifest.value();
    if !manifest.layers.iter().any(|l| is_snapshot_only(store, l)) {
        return Ok(digest.clone());
    }
    let _span = tracing::debug_span!("compress_stored_image", %digest).entered();
    let diff_ids = &resolved.config.value().rootfs.diff_ids;
    let mut whole = manifest.clone();
    for (i, layer) in whole.layers.iter_mut().enumerate() {
        if !is_snapshot_only(store, layer) {
            continue;
        }
        let mismatch = || {
            ExportError::Assemble(Box::new(
                kiln_oci::ModelError::LayerCountMismatch {
                    diff_ids: diff_ids.len(),
                    layers: manifest.layers.len(),
                }
                .into(),
            ))
        };
        let diff_id = diff_ids.get(i).ok_or_else(mismatch)?;
        let chain = ChainId::from_diff_ids(&diff_ids[..=i]).ok_or_else(mismatch)?;
        let info = LayerInfo {
            diff_id: diff_id.clone(),
            blob: None,
            chain,
            tar_size: Some(layer.size),
        };
        let blob = commit::ensure_blob(
            store,
            Compression::default(),
            None,
            &info,
            &AtomicBool::new(false),
        )?;
        layer.media_type = match manifest.media_type {
            Some(MediaType::DockerManifest) => blob.media_type.to_docker(),
            _ => blob.media_type,
        };
        layer.digest = blob.digest;
        layer.size = blob.size;
    }
    let whole =
        JsonBlob::from_value(whole).map_err(|e| ExportError::Assemble(Box::new(e.into())))?;
    let made = store.put_bytes(whole.bytes())?;
    for entry in store.list_refs()? {
        if entry.digest == *digest {
            store.set_ref_with_origin(&entry.name, &made, entry.origin.as_ref())?;
        }
    }
    Ok(made)
}
