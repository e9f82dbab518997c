//! Layers of imported caches that are not here yet, and the one place that fetches them.
//!
//! A step answered by a `--cache-from` record takes the record's layer as a descriptor only
//! (its diffID, blob digest, size and media type): nothing is downloaded for a hit. The blob
//! is fetched — verified by digest, then unpacked against its diffID — when the build needs
//! its files: a later step that misses runs on it ([`LazyLayers::ensure_snapshots`]), a COPY
//! reads it, or an output needs its bytes ([`LazyLayers::ensure_blobs`]). A push reads it
//! through [`LazyLayers::source`], which answers a blob's length from its descriptor, so a
//! registry that has the blob (HEAD) or can mount it from the cache's repository never makes
//! kiln download it.
//!
//! A fetch or unpack that fails is [`StepError::ImportedLayer`]: the composition root then
//! [`excludes`](LazyLayers::exclude) that blob and builds again, and the steps whose record
//! named it run instead (those that ran already are local hits the second time).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use kiln_oci::{BlobError, BlobSource, ChainId, DiffId, Digest};
use kiln_store::{Store, StoreError};

use super::cache_import::BlobFetcher;
use super::error::{BuildError, LayerError, StepError};
use super::model::{LayerBlob, LayerInfo};
use crate::event::{Event, EventSink};

/// What [`LazyLayers`] needs of the local store (the store itself, or a test's fake).
pub(crate) trait LayerStore: Send + Sync {
    fn has_blob(&self, digest: &Digest) -> bool;
    fn has_snapshot(&self, chain: &ChainId) -> bool;
    fn snapshot_path(&self, chain: &ChainId) -> std::path::PathBuf;
    /// Unpacks the blob `blob` on top of `parent`; it must make `diff_id`.
    fn unpack(
        &self,
        parent: Option<&ChainId>,
        diff_id: &DiffId,
        blob: &Digest,
    ) -> Result<(), StoreError>;
    /// The blobs, for a push.
    fn blobs(&self) -> &dyn BlobSource;
}

impl LayerStore for Store {
    fn has_blob(&self, digest: &Digest) -> bool {
        Store::has_blob(self, digest)
    }

    fn has_snapshot(&self, chain: &ChainId) -> bool {
        Store::has_snapshot(self, chain)
    }

    fn snapshot_path(&self, chain: &ChainId) -> std::path::PathBuf {
        Store::snapshot_path(self, chain)
    }

    fn unpack(
        &self,
        parent: Option<&ChainId>,
        diff_id: &DiffId,
        blob: &Digest,
    ) -> Result<(), StoreError> {
        self.ensure_snapshot(parent, diff_id, blob).map(drop)
    }

    fn blobs(&self) -> &dyn BlobSource {
        self
    }
}

/// A layer of an imported cache that could not be fetched or unpacked.
#[derive(Debug)]
pub(crate) struct ImportFault {
    /// The cache, as progress names it.
    pub(crate) cache: String,
    /// The layer blob.
    pub(crate) digest: Digest,
    /// What went wrong.
    pub(crate) source: Box<dyn std::error::Error + Send + Sync>,
}

impl From<ImportFault> for StepError {
    fn from(f: ImportFault) -> Self {
        StepError::ImportedLayer {
            cache: f.cache,
            digest: f.digest,
            source: f.source,
        }
    }
}

/// Where an imported blob can be fetched from.
#[derive(Clone)]
struct Offer {
    blob: LayerBlob,
    /// The cache, as progress names it.
    cache: String,
    fetcher: Arc<dyn BlobFetcher>,
}

/// See the module docs.
pub(crate) struct LazyLayers {
    store: Box<dyn LayerStore>,
    offers: Mutex<BTreeMap<Digest, Offer>>,
    excluded: Mutex<BTreeSet<Digest>>,
    /// COPY key inputs recorded by imported caches, by memo key (see `local::copy_inputs_memo_key`).
    copy_inputs: BTreeMap<String, BTreeMap<String, Digest>>,
    fetched: AtomicUsize,
    fetched_bytes: AtomicU64,
}

impl std::fmt::Debug for LazyLayers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyLayers")
            .field("fetched", &self.fetched)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LazyLayers {
    /// Nothing offered yet; `copy_inputs` are the imported caches' COPY memos.
    pub(crate) fn new(
        store: impl LayerStore + 'static,
        copy_inputs: BTreeMap<String, BTreeMap<String, Digest>>,
    ) -> Self {
        Self {
            store: Box::new(store),
            offers: Mutex::new(BTreeMap::new()),
            excluded: Mutex::new(BTreeSet::new()),
            copy_inputs,
            fetched: AtomicUsize::new(0),
            fetched_bytes: AtomicU64::new(0),
        }
    }

    /// Remembers that `blob` can be fetched from `cache` when it is needed.
    pub(crate) fn offer(&self, blob: &LayerBlob, cache: &str, fetcher: &Arc<dyn BlobFetcher>) {
        lock(&self.offers)
            .entry(blob.digest.clone())
            .or_insert_with(|| Offer {
                blob: blob.clone(),
                cache: cache.to_owned(),
                fetcher: Arc::clone(fetcher),
            });
    }

    /// Whether `digest` is a blob of an imported cache that is not in the store (yet).
    pub(crate) fn is_pending(&self, digest: &Digest) -> bool {
        lock(&self.offers).contains_key(digest) && !self.store.has_blob(digest)
    }

    /// Leaves the blob `digest` out from now on: records naming it are misses.
    pub(crate) fn exclude(&self, digest: &Digest) {
        lock(&self.excluded).insert(digest.clone());
        lock(&self.offers).remove(digest);
    }

    /// Whether `digest` was left out after a failed fetch.
    pub(crate) fn is_excluded(&self, digest: &Digest) -> bool {
        lock(&self.excluded).contains(digest)
    }

    /// The COPY key inputs an imported cache recorded under `memo`.
    pub(crate) fn copy_inputs(&self, memo: &str) -> Option<&BTreeMap<String, Digest>> {
        self.copy_inputs.get(memo)
    }

    /// Layer blobs fetched from imported caches so far, and their bytes.
    pub(crate) fn fetched(&self) -> (usize, u64) {
        (
            self.fetched.load(Ordering::SeqCst),
            self.fetched_bytes.load(Ordering::SeqCst),
        )
    }

    /// The registry and repository of each blob offered and not fetched: a push there can
    /// mount it instead of kiln fetching and uploading it.
    pub(crate) fn pending_origins(&self) -> Vec<(Digest, String, String)> {
        lock(&self.offers)
            .values()
            .filter(|o| !self.store.has_blob(&o.blob.digest))
            .filter_map(|o| {
                let (registry, repository) = o.fetcher.origin()?;
                Some((
                    o.blob.digest.clone(),
                    registry.to_owned(),
                    repository.to_owned(),
                ))
            })
            .collect()
    }

    /// Puts the blob `digest` into the store: there already, or fetched from the imported
    /// cache that offered it (verified by digest and size on its way in).
    pub(crate) fn ensure_blob(&self, digest: &Digest) -> Result<(), ImportFault> {
        if self.store.has_blob(digest) {
            return Ok(());
        }
        let Some(offer) = lock(&self.offers).get(digest).cloned() else {
            // Not an imported blob: the caller's own error names what is missing.
            return Ok(());
        };
        let _span =
            tracing::debug_span!("fetch_cached_layer", %digest, cache = %offer.cache).entered();
        offer.fetcher.fetch(&offer.blob).map_err(|e| ImportFault {
            cache: offer.cache.clone(),
            digest: digest.clone(),
            source: Box::new(e),
        })?;
        self.fetched.fetch_add(1, Ordering::SeqCst);
        self.fetched_bytes
            .fetch_add(offer.blob.size, Ordering::SeqCst);
        Ok(())
    }

    /// Makes sure every layer of `layers` (base first) has its snapshot, fetching and
    /// unpacking imported blobs as needed.
    pub(crate) fn ensure_snapshots(&self, layers: &[LayerInfo]) -> Result<(), StepError> {
        for (i, layer) in layers.iter().enumerate() {
            if self.store.has_snapshot(&layer.chain) {
                continue;
            }
            let Some(blob) = &layer.blob else {
                return Err(StepError::Layer(LayerError::Missing {
                    diff_id: layer.diff_id.clone(),
                    snapshot: self.store.snapshot_path(&layer.chain),
                }));
            };
            self.ensure_blob(&blob.digest)?;
            let parent = i.checked_sub(1).map(|p| &layers[p].chain);
            let unpacked = self.store.unpack(parent, &layer.diff_id, &blob.digest);
            if let Err(e) = unpacked {
                let offer = lock(&self.offers).get(&blob.digest).cloned();
                return Err(match offer {
                    Some(offer) => StepError::ImportedLayer {
                        cache: offer.cache,
                        digest: blob.digest.clone(),
                        source: Box::new(e),
                    },
                    None => StepError::Store(e),
                });
            }
        }
        Ok(())
    }

    /// Puts the blobs of `layers` into the store (an output that writes their bytes).
    pub(crate) fn ensure_blobs<'l>(
        &self,
        digests: impl IntoIterator<Item = &'l Digest>,
    ) -> Result<(), ImportFault> {
        for digest in digests {
            self.ensure_blob(digest)?;
        }
        Ok(())
    }

    /// The store as a push reads it: an imported blob's length comes from its descriptor,
    /// and its bytes are fetched only if the registry has to be sent them.
    pub(crate) fn source(&self) -> LazySource<'_> {
        LazySource { lazy: self }
    }
}

/// Why a round of [`with_fallback`] failed.
pub(crate) enum RoundError {
    Build(BuildError),
    Fault(ImportFault),
}

impl From<BuildError> for RoundError {
    fn from(e: BuildError) -> Self {
        Self::Build(e)
    }
}

/// Runs `round` (a build) until it ends other than on a layer of an imported cache that
/// could not be fetched or unpacked. Each such layer is a warning (also pushed to
/// `warnings`) and is left out, so the next round runs the steps that needed it; the steps
/// that ran are local hits then. Each round leaves out one more layer, so this ends.
pub(crate) fn with_fallback<T>(
    lazy: &LazyLayers,
    events: &dyn EventSink,
    warnings: &mut Vec<String>,
    mut round: impl FnMut() -> Result<T, RoundError>,
) -> Result<T, BuildError> {
    loop {
        let fault = match round() {
            Ok(done) => return Ok(done),
            Err(RoundError::Fault(fault)) => fault,
            Err(RoundError::Build(BuildError::Step { step, source })) => match *source {
                StepError::ImportedLayer {
                    cache,
                    digest,
                    source,
                } => ImportFault {
                    cache,
                    digest,
                    source,
                },
                source => {
                    return Err(BuildError::Step {
                        step,
                        source: Box::new(source),
                    });
                }
            },
            Err(RoundError::Build(e)) => return Err(e),
        };
        if lazy.is_excluded(&fault.digest) {
            // Its records are misses once it is left out, so it cannot fail twice; if it
            // does, the error stands.
            return Err(BuildError::Internal(
                super::error::InternalError::ExcludedLayerFailed(fault.digest),
            ));
        }
        let message = format!(
            "--cache-from {}: layer {}: {}; building again without it",
            fault.cache, fault.digest, fault.source
        );
        events.emit(Event::Warning {
            message: message.clone(),
        });
        warnings.push(message);
        lazy.exclude(&fault.digest);
    }
}

/// See [`LazyLayers::source`].
pub(crate) struct LazySource<'a> {
    lazy: &'a LazyLayers,
}

impl BlobSource for LazySource<'_> {
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, BlobError> {
        self.lazy.ensure_blob(digest).map_err(|e| BlobError::Io {
            action: "fetching the layer from the imported cache for",
            path: std::path::PathBuf::from(digest.to_string()),
            source: std::io::Error::other(format!("from {}: {}", e.cache, e.source)),
        })?;
        self.lazy.store.blobs().open_blob(digest)
    }

    fn blob_len(&self, digest: &Digest) -> Result<u64, BlobError> {
        if !self.lazy.store.has_blob(digest)
            && let Some(offer) = lock(&self.lazy.offers).get(digest)
        {
            return Ok(offer.blob.size);
        }
        self.lazy.store.blobs().blob_len(digest)
    }
}
