//! Snapshots: unpacked layers, one directory per chain id, used as overlayfs lower dirs.
//!
//! Each snapshot holds only its own layer's entries, with the layer's whiteouts in overlay
//! form (a `.wh.x` entry becomes a 0/0 character device `x`; a `.wh..wh..opq` marker sets
//! `trusted.overlay.opaque=y` on its directory — `user.overlay.opaque` when unprivileged,
//! for `userxattr` mounts), so the stack `lowerdir=top:…:base` composes the image. It is
//! keyed by the chain id (parent chain + diff id) because that is what overlay stacks are
//! identified by; the content depends only on the layer.
//!
//! A snapshot is unpacked into `tmp/`, checked against its diff id, converted, and renamed
//! into `snapshots/<chain-hex>/`: it appears complete or not at all, and is never modified
//! afterwards. Two processes unpacking the same layer race harmlessly: the loser discards
//! its copy.
//!
//! A build's own layers (a RUN's upperdir, a COPY's staging tree) are adopted as snapshots
//! without syncing them: a `syncfs` per step costs seconds after a large COPY. Such a
//! snapshot is durable only once the kernel has written it back, so it is adopted with a
//! marker `snapshots/<chain-hex>.unsynced` naming the boot it was made in, written durably
//! before the rename. A snapshot whose marker names another boot may have lost data in a
//! crash: it is removed when next looked up, and re-unpacked from its blob (or its step
//! rebuilt when it has none).

use std::io::BufReader;
use std::path::{Path, PathBuf};

use kiln_oci::{
    ChainId, DevicePolicy, DiffId, Digest, ExtractErrorKind, ExtractOptions, OverlayXattrs,
    Platform, ResolvedImage, WhiteoutPolicy, extract_layer,
};

use crate::Store;
use crate::error::StoreError;
use crate::layout::{create_temp_dir, sync_dir};

impl Store {
    /// Whether the snapshot of `chain` exists (it is then complete). An unsynced snapshot
    /// of an earlier boot is removed instead (see the module docs).
    pub fn has_snapshot(&self, chain: &ChainId) -> bool {
        let path = self.snapshot_path(chain);
        if !path.is_dir() {
            return false;
        }
        let marker = unsynced_marker(&path);
        match fs_err::read_to_string(&marker) {
            Ok(boot) if boot.trim() != boot_id() => {
                self.discard_unsynced(&path, &marker);
                false
            }
            _ => true,
        }
    }

    /// Adopts `dir` — complete, on the store's filesystem, not synced — as the snapshot of
    /// `chain` (or removes it when that snapshot exists already).
    pub fn adopt_snapshot(&self, dir: &Path, chain: &ChainId) -> Result<(), StoreError> {
        let dest = self.snapshot_path(chain);
        if self.has_snapshot(chain) {
            let _ = fs_err::remove_dir_all(dir);
            return Ok(());
        }
        crate::layout::write_atomic(
            &self.tmp_dir(),
            &unsynced_marker(&dest),
            boot_id().as_bytes(),
        )?;
        if let Err(err) = fs_err::rename(dir, &dest) {
            let _ = fs_err::remove_dir_all(dir);
            if dest.is_dir() {
                // Another build adopted the same layer first.
                return Ok(());
            }
            return Err(StoreError::Fs(err));
        }
        Ok(())
    }

    /// Removes an unsynced snapshot of an earlier boot, once: whoever moves its marker away
    /// removes it; the others find it gone.
    fn discard_unsynced(&self, path: &Path, marker: &Path) {
        let Ok((_, claim)) = crate::layout::create_temp(&self.tmp_dir(), "unsynced") else {
            return;
        };
        if fs_err::rename(marker, &claim).is_ok() {
            tracing::warn!(
                snapshot = %path.display(),
                "removing a snapshot made before the last reboot and perhaps never written to disk; it is unpacked or rebuilt again"
            );
            let _ = self.remove_dir_via_trash(path);
        }
        let _ = fs_err::remove_file(&claim);
    }

    /// Makes sure the layer `blob` (whose uncompressed digest is `diff_id`) is unpacked as the
    /// snapshot on top of `parent`; returns the snapshot's chain id. The blob must be in the
    /// store; its content is checked against `diff_id`.
    pub fn ensure_snapshot(
        &self,
        parent: Option<&ChainId>,
        diff_id: &DiffId,
        blob: &Digest,
    ) -> Result<ChainId, StoreError> {
        let chain = ChainId::on(parent, diff_id);
        if self.has_snapshot(&chain) {
            return Ok(chain);
        }
        let fail = |reason: String| StoreError::Snapshot {
            chain: chain.clone(),
            layer: blob.clone(),
            reason,
        };
        let _span = tracing::debug_span!("unpack_snapshot", layer = %blob).entered();
        let staging = create_temp_dir(&self.tmp_dir(), "snapshot")?;
        let result = (|| {
            let reader = BufReader::with_capacity(1 << 20, self.open_blob(blob)?);
            let xattrs = if self.is_privileged() {
                OverlayXattrs::Trusted
            } else {
                OverlayXattrs::User
            };
            let options = ExtractOptions::new()
                .layer_name(blob.to_string())
                .whiteouts(WhiteoutPolicy::Overlay(xattrs));
            let stats =
                extract_layer(reader, &staging, &options).map_err(|e| fail(e.to_string()))?;
            if &stats.diff_id != diff_id {
                return Err(fail(format!(
                    "its content has diff id {}, but the image config says {diff_id}",
                    stats.diff_id
                )));
            }
            if stats.whiteouts_skipped > 0 {
                tracing::warn!(
                    layer = %blob,
                    skipped = stats.whiteouts_skipped,
                    "whiteouts below a missing directory or a symlink left out of the snapshot: overlayfs cannot use them there"
                );
            }
            Ok(())
        })();
        if let Err(err) = result {
            let _ = fs_err::remove_dir_all(&staging);
            return Err(err);
        }
        tracing::debug_span!("sync_snapshot").in_scope(|| sync_tree(&staging));
        let dest = self.snapshot_path(&chain);
        if let Err(err) = fs_err::rename(&staging, &dest) {
            let _ = self.remove_dir_via_trash(&staging);
            if dest.is_dir() {
                // Another process unpacked it first; theirs is complete and identical.
                return Ok(chain);
            }
            return Err(StoreError::Fs(err));
        }
        sync_dir(&self.dir("snapshots"))?;
        Ok(chain)
    }

    /// Unpacks every layer of an image as snapshots; returns their chain ids, base first
    /// (overlay wants them reversed: `lowerdir=<last>:…:<first>`).
    pub fn unpack_image(&self, image: &ResolvedImage) -> Result<Vec<ChainId>, StoreError> {
        let config = image.config.value();
        let layers = &image.manifest.value().layers;
        if config.rootfs.diff_ids.len() != layers.len() {
            return Err(StoreError::Image {
                digest: image.manifest.digest().clone(),
                reason: format!(
                    "the config lists {} diff ids for {} layers",
                    config.rootfs.diff_ids.len(),
                    layers.len()
                ),
            });
        }
        let mut chains: Vec<ChainId> = Vec::with_capacity(layers.len());
        for (layer, diff_id) in layers.iter().zip(&config.rootfs.diff_ids) {
            let chain = self.ensure_snapshot(chains.last(), diff_id, &layer.digest)?;
            chains.push(chain);
        }
        Ok(chains)
    }

    /// Reads the image `digest` names (a manifest, or an index resolved to `platform`, the
    /// host's when `None`) with its config.
    pub fn resolve_image(
        &self,
        digest: &Digest,
        platform: Option<&Platform>,
    ) -> Result<ResolvedImage, StoreError> {
        let descriptor = self.descriptor_of(digest)?;
        kiln_oci::resolve_image(self, &descriptor, platform).map_err(|e| StoreError::Image {
            digest: digest.clone(),
            reason: e.to_string(),
        })
    }

    /// A descriptor for a stored manifest or index, its media type read from the blob.
    pub fn descriptor_of(&self, digest: &Digest) -> Result<kiln_oci::Descriptor, StoreError> {
        #[derive(serde::Deserialize)]
        struct Peek {
            #[serde(rename = "mediaType", default)]
            media_type: Option<kiln_oci::MediaType>,
            #[serde(default)]
            manifests: Option<serde_json::Value>,
        }
        let bytes = self.read_blob(digest)?;
        let peek: Peek = serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
            path: self.blob_path(digest),
            what: "manifest or index JSON",
            source,
        })?;
        let media_type = peek.media_type.unwrap_or(if peek.manifests.is_some() {
            kiln_oci::MediaType::OciIndex
        } else {
            kiln_oci::MediaType::OciManifest
        });
        Ok(kiln_oci::Descriptor::new(
            media_type,
            digest.clone(),
            bytes.len() as u64,
        ))
    }

    /// Applies `layers` (blob digests, base first) one after the other into `dir` (created
    /// when missing), whiteouts applied: the image's root filesystem, for `type=local`
    /// outputs and the copy-based sandbox fallback.
    ///
    /// Device nodes are created only when running as root; otherwise a layer with one fails
    /// with an error naming the entry (as `docker buildx build --output type=local` does,
    /// whose `mknod` fails without root). Either way `dir` is the caller's to clean up.
    ///
    /// Owners are the image's only for root of the initial user namespace. Root of another
    /// (kiln re-executed rootless, a rootless container) would give the files ids of the
    /// namespace owner's subordinate range, which that user cannot remove from a `type=local`
    /// output: the tree stays the caller's, as an ordinary user's always was.
    pub fn flatten_to(&self, dir: &Path, layers: &[Digest]) -> Result<(), StoreError> {
        fs_err::create_dir_all(dir)?;
        let devices = if self.is_privileged() {
            DevicePolicy::Create
        } else {
            DevicePolicy::Refuse
        };
        let is_chowning =
            rustix::process::geteuid().is_root() && crate::layout::is_initial_user_namespace();
        for blob in layers {
            let reader = BufReader::with_capacity(1 << 20, self.open_blob(blob)?);
            let options = ExtractOptions::new()
                .layer_name(blob.to_string())
                .devices(devices)
                .chown(is_chowning);
            extract_layer(reader, dir, &options).map_err(|e| {
                let reason = if matches!(e.kind, ExtractErrorKind::DeviceRefused) {
                    format!("{e}: creating device nodes needs root; run as root, or export with type=oci or type=docker")
                } else {
                    e.to_string()
                };
                StoreError::Flatten {
                    layer: blob.clone(),
                    dir: dir.to_path_buf(),
                    reason,
                }
            })?;
        }
        Ok(())
    }
}

/// `snapshots/<chain-hex>.unsynced` for the snapshot at `path`.
pub(crate) fn unsynced_marker(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".unsynced");
    PathBuf::from(name)
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`); empty where there is none, which
/// then trusts every snapshot.
fn boot_id() -> &'static str {
    static BOOT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BOOT.get_or_init(|| {
        fs_err::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    })
}

/// Makes a freshly unpacked tree durable before it is renamed into place: one `syncfs` of the
/// store's filesystem instead of an fsync per file. Best effort: a snapshot that lost data in
/// a crash anyway is what `verify --repair` and re-unpacking are for.
fn sync_tree(dir: &Path) {
    if let Ok(file) = fs_err::File::open(dir) {
        let _ = rustix::fs::syncfs(&file);
    }
}
