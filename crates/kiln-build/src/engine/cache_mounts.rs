//! Cache mounts (`RUN --mount=type=cache`) that travel in an exported build cache
//! (`--cache-to …,cache-mounts=true`) and come back with `--cache-from`.
//!
//! [`CacheMounts`] remembers the mounts this build's RUN steps used (by the id the store
//! names their directory by) and the mount layers of the imported caches. Before a RUN
//! mounts a cache whose directory in the local store is empty, [`CacheMounts::restore`]
//! fetches the first imported cache's layer for it (verified by digest), unpacks it into a
//! staging directory (verified against its diffID) and renames that into place — once per
//! id and build, never over content the store already has. A restore that fails is a
//! warning and the RUN gets the empty mount; a mount never enters a step's key, so a
//! restore changes no key. [`CacheMounts::export_layers`] makes the export's layers: one tar
//! of each non-empty used mount, smallest first while their contents stay under
//! `cache-mounts-max-size`; each one left out is a warning.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use kiln_oci::{Compression, DiffId, ExtractError, ExtractOptions, extract_layer};
use kiln_store::{Store, StoreError};

use super::cache_format::ExportedLayer;
use super::cache_import::{BlobFetcher, CacheImportError, ImportedCache};
use super::commit;
use super::model::LayerBlob;
use crate::event::{Event, EventSink};

/// A mount layer of an imported cache.
struct ImportedMount {
    /// The cache, as progress names it.
    cache: String,
    layer: ExportedLayer,
    fetcher: Arc<dyn BlobFetcher>,
}

/// A mount the build used: its store id and the Dockerfile's `id=` (or target).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct UsedMount {
    id: String,
    name: String,
}

/// Why a cache mount could not be restored or measured for export (the large sources
/// boxed: clippy's `result_large_err`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CacheMountError {
    #[error("fetching layer {digest}: {source}")]
    Fetch {
        digest: Box<kiln_oci::Digest>,
        source: Box<CacheImportError>,
    },
    #[error(transparent)]
    Store(Box<StoreError>),
    #[error("creating a staging directory in {path}: {source}")]
    Staging {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Extract(Box<ExtractError>),
    #[error("the layer's content has diff id {found}, but the cache says {expected}")]
    DiffId {
        found: Box<DiffId>,
        expected: Box<DiffId>,
    },
    #[error("moving the unpacked mount into place: {0}")]
    Rename(std::io::Error),
    #[error("reading {path}: {source}")]
    Walk {
        path: PathBuf,
        source: Box<walkdir::Error>,
    },
}

impl From<StoreError> for CacheMountError {
    fn from(e: StoreError) -> Self {
        Self::Store(Box::new(e))
    }
}

impl From<ExtractError> for CacheMountError {
    fn from(e: ExtractError) -> Self {
        Self::Extract(Box::new(e))
    }
}

/// See the module docs.
pub(crate) struct CacheMounts {
    imported: BTreeMap<String, ImportedMount>,
    used: Mutex<BTreeSet<UsedMount>>,
    /// One restore per id: later RUNs of the id wait for the first one's.
    restores: Mutex<BTreeMap<String, Arc<OnceLock<()>>>>,
    warnings: Mutex<Vec<String>>,
}

impl std::fmt::Debug for CacheMounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheMounts")
            .field("imported", &self.imported.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CacheMounts {
    /// The mount layers of `imported`; for an id in several caches, the first cache's.
    pub(crate) fn new(imported: &[ImportedCache]) -> Self {
        let mut mounts = BTreeMap::new();
        for cache in imported {
            for (id, layer) in &cache.cache_mounts {
                mounts.entry(id.clone()).or_insert_with(|| ImportedMount {
                    cache: cache.name.clone(),
                    layer: layer.clone(),
                    fetcher: Arc::clone(&cache.fetcher),
                });
            }
        }
        Self {
            imported: mounts,
            used: Mutex::new(BTreeSet::new()),
            restores: Mutex::new(BTreeMap::new()),
            warnings: Mutex::new(Vec::new()),
        }
    }

    /// Before a RUN mounts the cache `id` (the store's id; `name` is the Dockerfile's) at
    /// `dir`: remembers it for the export and, the first time, restores it from an imported
    /// cache when `dir` is empty. Returns whether this call restored it.
    pub(crate) fn before_run(
        &self,
        store: &Store,
        id: &str,
        name: &str,
        dir: &Path,
        events: &dyn EventSink,
    ) -> bool {
        lock(&self.used).insert(UsedMount {
            id: id.to_owned(),
            name: name.to_owned(),
        });
        let Some(imported) = self.imported.get(id) else {
            return false;
        };
        let once = Arc::clone(lock(&self.restores).entry(id.to_owned()).or_default());
        let mut restored = false;
        once.get_or_init(|| {
            if !is_empty_dir(dir) {
                return;
            }
            let _span = tracing::debug_span!("restore_cache_mount", id, cache = %imported.cache)
                .entered();
            match restore(store, imported, id, dir) {
                Ok(done) => restored = done,
                Err(e) => {
                    let message = format!(
                        "--cache-from {}: cache mount `{name}` ({id}): {e}; the RUN uses the empty mount",
                        imported.cache
                    );
                    events.emit(Event::Warning {
                        message: message.clone(),
                    });
                    lock(&self.warnings).push(message);
                }
            }
        });
        restored
    }

    /// The warnings of failed restores so far (each emitted already), taken.
    pub(crate) fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.warnings))
    }

    /// The layers of the used, non-empty mounts, in `compression`, smallest first while
    /// their contents (the sum of their files' sizes) stay within `max_size` bytes, and a
    /// warning (for `cache`, the export's name) for each mount left out.
    pub(crate) fn export_layers(
        &self,
        store: &Store,
        compression: Compression,
        max_size: u64,
        cache: &str,
    ) -> (BTreeMap<String, ExportedLayer>, Vec<String>) {
        let used: Vec<UsedMount> = lock(&self.used).iter().cloned().collect();
        let mut warnings = Vec::new();
        let mut sized = Vec::new();
        for mount in used {
            let measured = store
                .cache_mount_dir(&mount.id)
                .map_err(CacheMountError::from)
                .and_then(|dir| Ok((content_size(&dir)?, dir)));
            match measured {
                Ok((Some(size), dir)) => sized.push((size, mount, dir)),
                Ok((None, _)) => {}
                Err(e) => warnings.push(format!(
                    "--cache-to {cache}: cache mount `{}` ({}): {e}; exported without it",
                    mount.name, mount.id
                )),
            }
        }
        sized.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        let never_abort = AtomicBool::new(false);
        let mut total: u64 = 0;
        let mut layers = BTreeMap::new();
        for (size, mount, dir) in sized {
            if total.saturating_add(size) > max_size {
                warnings.push(format!(
                    "--cache-to {cache}: cache mount `{}` ({}) holds {size} bytes, which would pass cache-mounts-max-size ({max_size} bytes with {total} exported); exported without it",
                    mount.name, mount.id
                ));
                continue;
            }
            // Times are kept as they are (no SOURCE_DATE_EPOCH clamp): tools that use the
            // mount (make, cargo) compare them.
            match commit::write_blob(store, compression, None, &dir, &never_abort) {
                Ok((diff_id, blob)) => {
                    total += size;
                    layers.insert(
                        mount.id,
                        ExportedLayer {
                            diff_id,
                            digest: blob.digest,
                            size: blob.size,
                            media_type: blob.media_type,
                        },
                    );
                }
                Err(e) => warnings.push(format!(
                    "--cache-to {cache}: cache mount `{}` ({}): {e}; exported without it",
                    mount.name, mount.id
                )),
            }
        }
        (layers, warnings)
    }
}

/// Whether `dir` is missing or has no entries. One the caller may not read is not empty: a
/// rootless RUN gave it a subordinate owner (`uid=`) and a private `mode=`, so it was used.
fn is_empty_dir(dir: &Path) -> bool {
    match fs_err::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(err) => err.kind() != std::io::ErrorKind::PermissionDenied,
    }
}

/// The sum of the sizes of the files under `dir`; `None` when it has no entries.
fn content_size(dir: &Path) -> Result<Option<u64>, CacheMountError> {
    let mut size = 0u64;
    let mut entries = 0usize;
    for entry in walkdir::WalkDir::new(dir).min_depth(1) {
        let entry = entry.map_err(|source| CacheMountError::Walk {
            path: dir.to_path_buf(),
            source: Box::new(source),
        })?;
        entries += 1;
        if entry.file_type().is_file() {
            let meta = entry.metadata().map_err(|source| CacheMountError::Walk {
                path: entry.path().to_path_buf(),
                source: Box::new(source),
            })?;
            size = size.saturating_add(meta.len());
        }
    }
    Ok((entries > 0).then_some(size))
}

/// Fetches and unpacks `imported` into the empty `dir`; `false` when another process filled
/// `dir` first (its content is kept).
fn restore(
    store: &Store,
    imported: &ImportedMount,
    id: &str,
    dir: &Path,
) -> Result<bool, CacheMountError> {
    let layer = &imported.layer;
    if !store.has_blob(&layer.digest) {
        let blob = LayerBlob {
            digest: layer.digest.clone(),
            size: layer.size,
            media_type: layer.media_type.clone(),
        };
        imported
            .fetcher
            .fetch(&blob)
            .map_err(|source| CacheMountError::Fetch {
                digest: Box::new(layer.digest.clone()),
                source: Box::new(source),
            })?;
    }
    let tmp = store.root().join("tmp");
    let staging = fs_err::create_dir_all(&tmp)
        .and_then(|()| {
            tempfile::Builder::new()
                .prefix("mount-")
                .tempdir_in(&tmp)
                .map(tempfile::TempDir::keep)
        })
        .map_err(|source| CacheMountError::Staging {
            path: tmp.clone(),
            source,
        })?;
    let unpacked = (|| {
        let reader = BufReader::with_capacity(1 << 20, store.open_blob(&layer.digest)?);
        let options =
            ExtractOptions::new().layer_name(format!("cache mount {id} ({})", layer.digest));
        let stats = extract_layer(reader, &staging, &options)?;
        if stats.diff_id != layer.diff_id {
            return Err(CacheMountError::DiffId {
                found: Box::new(stats.diff_id),
                expected: Box::new(layer.diff_id.clone()),
            });
        }
        // rename(2) replaces an empty directory; one another process has filled since is
        // kept (ENOTEMPTY).
        match fs_err::rename(&staging, dir) {
            Ok(()) => Ok(true),
            Err(_) if !is_empty_dir(dir) => Ok(false),
            Err(e) => Err(CacheMountError::Rename(e)),
        }
    })();
    if !matches!(unpacked, Ok(true))
        && let Err(err) = kiln_store::remove_tree(&staging)
    {
        tracing::warn!(path = %staging.display(), %err, "cannot remove a cache mount's staging directory");
    }
    unpacked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_mounts_are_exported_smallest_first_under_the_cap() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let mounts = CacheMounts::new(&[]);
        let no_events = |_: Event| {};
        for (id, size) in [("a", 30), ("b", 10), ("c", 20), ("empty", 0)] {
            let store_id = format!("{id:0>32}");
            let dir = store.cache_mount_dir(&store_id).unwrap();
            if size > 0 {
                fs_err::write(dir.join("f"), vec![b'x'; size]).unwrap();
            }
            assert!(!mounts.before_run(&store, &store_id, id, &dir, &no_events));
        }
        // Filled, but no RUN used it.
        let unused = store.cache_mount_dir(&"u".repeat(32)).unwrap();
        fs_err::write(unused.join("f"), b"x").unwrap();

        let (layers, warnings) =
            mounts.export_layers(&store, Compression::Gzip { level: 6 }, 35, "c.test/x:y");
        let exported: Vec<&str> = layers.keys().map(String::as_str).collect();
        assert_eq!(exported, [format!("{:0>32}", "b"), format!("{:0>32}", "c")]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("cache mount `a`") && warnings[0].contains("holds 30 bytes"),
            "{warnings:?}"
        );
        for layer in layers.values() {
            assert!(store.has_blob(&layer.digest));
            assert_eq!(layer.media_type, kiln_oci::MediaType::OciLayerTarGzip);
        }
    }
}
