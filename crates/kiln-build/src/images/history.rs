//! An image's history as `docker history` shows it: the config's history entries newest
//! first, each with the uncompressed size of the layer it created.
//!
//! A layer's size is counted as docker's graph drivers do (moby `directory.Size`): the bytes
//! of every non-directory entry, hard links once, whiteouts 0. It is read from the layer's
//! unpacked snapshot when the store has one (a stat walk), else by streaming the blob through
//! the decompressor and summing tar headers; nothing is written.

use std::collections::HashSet;
use std::io::{self, BufReader};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use kiln_oci::{ChainId, Digest, WHITEOUT_PREFIX};
use kiln_store::Store;

use super::{ImageError, require_image};

/// Read buffer for streaming a layer blob.
const BLOB_BUFFER: usize = 1 << 20;

/// The history of one image, newest entry first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageHistory {
    /// The image ID (config digest): docker shows it on the newest entry.
    pub id: Digest,
    /// The entries, newest first; one anonymous entry per layer when the config records no
    /// history.
    pub entries: Vec<HistoryEntry>,
}

/// One history entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// RFC 3339 creation time, when recorded.
    pub created: Option<String>,
    /// The instruction that made it (`RUN …`, `COPY …`).
    pub created_by: String,
    /// Uncompressed size of the layer it created (0 for an empty layer).
    pub size: u64,
    /// The comment (`buildkit.dockerfile.v0`, an import message).
    pub comment: String,
}

/// The history of the local image `text` (a name or an image ID prefix, as
/// [`find_image`](super::find_image) looks it up).
pub fn image_history(store: &Store, text: &str) -> Result<ImageHistory, ImageError> {
    let digest = require_image(store, text)?;
    let image = store.resolve_image(&digest, None)?;
    let config = image.config.value();
    let layers = &image.manifest.value().layers;
    let diff_ids = &config.rootfs.diff_ids;
    let mut layer_sizes = Vec::with_capacity(layers.len());
    for (index, layer) in layers.iter().enumerate() {
        let chain = diff_ids.get(..=index).and_then(ChainId::from_diff_ids);
        let size = layer_size(store, chain.as_ref(), &layer.digest).map_err(|source| {
            ImageError::LayerSize {
                image: text.to_owned(),
                layer: layer.digest.clone(),
                source,
            }
        })?;
        layer_sizes.push(size);
    }
    let mut entries = Vec::new();
    if config.history.is_empty() {
        // No history recorded: one anonymous entry per layer, as docker shows it.
        entries.extend(layer_sizes.iter().map(|&size| HistoryEntry {
            created: None,
            created_by: String::new(),
            size,
            comment: String::new(),
        }));
    } else {
        let mut sizes = layer_sizes.iter();
        for entry in &config.history {
            let size = if entry.empty_layer {
                0
            } else {
                sizes.next().copied().unwrap_or(0)
            };
            entries.push(HistoryEntry {
                created: entry.created.clone(),
                created_by: entry.created_by.clone(),
                size,
                comment: entry.comment.clone(),
            });
        }
    }
    entries.reverse();
    Ok(ImageHistory {
        id: image.config.digest().clone(),
        entries,
    })
}

/// The uncompressed size of a layer: from its snapshot when unpacked, else from the blob.
fn layer_size(store: &Store, chain: Option<&ChainId>, blob: &Digest) -> io::Result<u64> {
    if let Some(chain) = chain
        && store.has_snapshot(chain)
    {
        return snapshot_size(&store.snapshot_path(chain));
    }
    blob_size(store, blob)
}

/// moby's `directory.Size` over an unpacked layer: non-directory sizes, each inode once.
fn snapshot_size(root: &Path) -> io::Result<u64> {
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.len() > 0 && seen.insert((meta.dev(), meta.ino())) {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

/// The same count from the layer's tar stream: file sizes and symlink target lengths; hard
/// links (the second name of an inode) and whiteout markers count 0.
fn blob_size(store: &Store, blob: &Digest) -> io::Result<u64> {
    let file = store.open_blob(blob).map_err(io::Error::other)?;
    let reader = BufReader::with_capacity(BLOB_BUFFER, file);
    let named = |action: &str, err: &io::Error| {
        io::Error::new(err.kind(), format!("{action} {blob}: {err}"))
    };
    let (_, tar_stream) = kiln_oci::decompress(reader).map_err(|e| named("decompressing", &e))?;
    let mut archive = tar::Archive::new(tar_stream);
    let mut total = 0;
    for entry in archive.entries().map_err(|e| named("reading layer", &e))? {
        let entry = entry.map_err(|e| named("reading layer", &e))?;
        let path = entry.path_bytes();
        let name = path.rsplit(|b| *b == b'/').find(|part| !part.is_empty());
        if name.is_some_and(|n| n.starts_with(WHITEOUT_PREFIX.as_bytes())) {
            continue;
        }
        total += match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => entry.size(),
            tar::EntryType::Symlink => entry
                .link_name_bytes()
                .map_or(0, |target| target.len() as u64),
            _ => 0,
        };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_size_counts_files_and_links_once() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir(dir.path().join("sub")).unwrap();
        fs_err::write(dir.path().join("sub/a"), b"12345").unwrap();
        fs_err::hard_link(dir.path().join("sub/a"), dir.path().join("b")).unwrap();
        fs_err::os::unix::fs::symlink("sub/a", dir.path().join("c")).unwrap();
        assert_eq!(snapshot_size(dir.path()).unwrap(), 5 + 5);
    }

    #[test]
    fn blob_size_sums_files_and_link_targets_and_skips_whiteouts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let mut file = tar::Header::new_gnu();
        file.set_size(7);
        file.set_mode(0o644);
        tar.append_data(&mut file, "etc/seven", &b"1234567"[..])
            .unwrap();
        let mut whiteout = tar::Header::new_gnu();
        whiteout.set_size(3);
        tar.append_data(&mut whiteout, "etc/.wh.gone", &b"xyz"[..])
            .unwrap();
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        tar.append_link(&mut link, "etc/link", "seven").unwrap();
        let blob = store.put_bytes(&tar.into_inner().unwrap()).unwrap();
        assert_eq!(blob_size(&store, &blob).unwrap(), 7 + 5);
        let missing = Digest::sha256_of(b"not stored");
        assert!(blob_size(&store, &missing).is_err());
    }
}
