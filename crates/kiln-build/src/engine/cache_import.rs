//! `--cache-from`: imported caches and the [`ResultStore`] that layers them under the local
//! store.
//!
//! At the start of a build, [`import_caches`] reads each cache's manifest and records only
//! (the format is `cache_format`'s); a cache that cannot be read — an unreachable registry,
//! a missing ref, a foreign or corrupt manifest, a newer format — is a warning, and the build
//! goes on without it. [`LayeredResults`] then answers a step's key from the local store
//! first, then from the imported records in the order the flags gave them. A hit takes the
//! record's layer as a descriptor; its blob is fetched only when the build needs its files or
//! bytes (`lazy`), verified by digest on its way into the store, and unpacked against its
//! diffID: nothing unverified is used.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::sync::Arc;

use kiln_oci::{ChainId, Digest, ImageManifest, ImageRef, LayoutError, OciLayout};
use kiln_plan::{CacheKey, KeyInputs};
use kiln_registry::RegistryError;
use kiln_store::{Store, StoreError};

use super::cache_format::{
    self, CacheFormatError, CacheRecords, ExportedLayer, ExportedRecord, ParsedCache,
};
use super::error::StepError;
use super::lazy::LazyLayers;
use super::model::{CacheRecord, FoundRecord, LayerBlob, LayerInfo, RecordLayer, RecordOrigin};
use super::seams::ResultStore;
use crate::cache_options::{CacheLocation, CacheSource};
use crate::event::{Event, EventSink};

/// A registry client with the runtime its calls run on, made once per build when a cache
/// (or an export) needs it.
#[derive(Debug)]
pub(crate) struct Remote {
    pub(crate) client: kiln_registry::Client,
    pub(crate) runtime: tokio::runtime::Runtime,
}

impl Remote {
    /// A client for the build's registries (`--insecure-registry` hosts over plain HTTP;
    /// credentials from docker's config, as push and pull).
    pub(crate) fn new(insecure_registries: &[String]) -> Result<Self, RemoteError> {
        let mut config = kiln_registry::ClientConfig::new();
        for host in insecure_registries {
            config = config.insecure_registry(host.clone());
        }
        let client =
            kiln_registry::Client::new(config).map_err(|e| RemoteError::Client(Box::new(e)))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(RemoteError::Runtime)?;
        Ok(Self { client, runtime })
    }
}

/// Why the registry client could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RemoteError {
    #[error(transparent)]
    Client(Box<RegistryError>),
    #[error("starting the network runtime: {0}")]
    Runtime(std::io::Error),
}

/// Why a cache could not be imported (a warning: the build goes on without it).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CacheImportError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("{0}")]
    Registry(Box<RegistryError>),
    #[error("{0}")]
    Layout(Box<LayoutError>),
    #[error(transparent)]
    Format(#[from] CacheFormatError),
    #[error("the manifest is an image index ({media_type}), not a kiln cache manifest")]
    NotAManifest { media_type: String },
    #[error("the manifest is not JSON of an image manifest: {0}")]
    ManifestJson(serde_json::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading blob {digest} of the cache: {source}")]
    ReadBlob {
        digest: Digest,
        source: std::io::Error,
    },
}

impl From<RegistryError> for CacheImportError {
    fn from(e: RegistryError) -> Self {
        Self::Registry(Box::new(e))
    }
}

impl From<LayoutError> for CacheImportError {
    fn from(e: LayoutError) -> Self {
        Self::Layout(Box::new(e))
    }
}

/// Where an imported cache's layer blobs come from.
pub(crate) trait BlobFetcher: Send + Sync {
    /// Puts `blob` into the local store, verified against its digest and size.
    fn fetch(&self, blob: &LayerBlob) -> Result<(), CacheImportError>;

    /// The registry and repository that have the blobs, for a push to mount them from.
    fn origin(&self) -> Option<(&str, &str)> {
        None
    }
}

/// A cache read by `--cache-from`: its records, and where to fetch the blobs they name.
pub(crate) struct ImportedCache {
    /// How progress names it (`REG/REPO:TAG`, a directory).
    pub(crate) name: String,
    pub(crate) records: BTreeMap<CacheKey, ExportedRecord>,
    /// The layer blobs its manifest lists.
    pub(crate) blobs: BTreeSet<Digest>,
    /// Its COPY key inputs by memo key.
    pub(crate) copy_inputs: BTreeMap<String, BTreeMap<String, Digest>>,
    /// Its cache mounts' layers by mount id (`cache_mounts` restores them).
    pub(crate) cache_mounts: BTreeMap<String, ExportedLayer>,
    pub(crate) fetcher: Arc<dyn BlobFetcher>,
}

impl std::fmt::Debug for ImportedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportedCache")
            .field("name", &self.name)
            .field("records", &self.records.len())
            .finish_non_exhaustive()
    }
}

impl ImportedCache {
    /// A cache named `name` with `records` whose blobs `fetcher` fetches.
    pub(crate) fn new(name: String, cache: CacheRecords, fetcher: Arc<dyn BlobFetcher>) -> Self {
        let CacheRecords {
            records,
            copy_inputs,
            cache_mounts,
        } = cache;
        let blobs = records
            .values()
            .filter_map(|r| r.layer.as_ref().map(|l| l.digest.clone()))
            .collect();
        Self {
            name,
            records,
            blobs,
            copy_inputs,
            cache_mounts,
            fetcher,
        }
    }
}

/// Reads every `--cache-from`; those that cannot be read are a warning each and left out.
/// `remote` makes the registry client the first time a registry cache needs it.
pub(crate) fn import_caches(
    sources: &[CacheSource],
    store: &Store,
    remote: &dyn Fn() -> Result<Arc<Remote>, RemoteError>,
    events: &dyn EventSink,
) -> Vec<ImportedCache> {
    let mut caches = Vec::new();
    for source in sources {
        let name = source.location.to_string();
        let read = match &source.location {
            CacheLocation::Registry(reference) => remote()
                .map_err(CacheImportError::from)
                .and_then(|remote| read_registry_cache(&remote, reference, store)),
            CacheLocation::Local(dir) => read_local_cache(dir, store),
            // `CacheSource` refuses it: an inline cache is read as `--cache-from IMAGE-REF`.
            CacheLocation::Inline => continue,
        };
        match read {
            Ok((ParsedCache::Records(records), fetcher)) => {
                tracing::debug!(cache = %name, records = records.records.len(), "imported cache records");
                caches.push(ImportedCache::new(name, records, fetcher));
            }
            Ok((ParsedCache::UnknownVersion(version), _)) => events.emit(Event::Warning {
                message: format!(
                    "--cache-from {name}: the cache has format version {version}, which this kiln does not read (it reads {}); building without it",
                    cache_format::CACHE_FORMAT_VERSION
                ),
            }),
            Err(e) => events.emit(Event::Warning {
                message: format!("--cache-from {name}: {e}; building without this cache"),
            }),
        }
    }
    caches
}

type ReadCache = (ParsedCache, Arc<dyn BlobFetcher>);

fn read_registry_cache(
    remote: &Arc<Remote>,
    reference: &ImageRef,
    store: &Store,
) -> Result<ReadCache, CacheImportError> {
    let raw = remote
        .runtime
        .block_on(remote.client.fetch_manifest(reference))?;
    if raw.media_type.is_index() {
        return Err(CacheImportError::NotAManifest {
            media_type: raw.media_type.to_string(),
        });
    }
    let manifest: ImageManifest =
        serde_json::from_slice(&raw.bytes).map_err(CacheImportError::ManifestJson)?;
    // An image built with `--cache-to type=inline`: its layers are the cache's.
    let parsed = if let Some(parsed) = cache_format::parse_inline(&manifest)? {
        parsed
    } else {
        cache_format::check_manifest(&manifest)?;
        let config = &manifest.config;
        if !store.has_blob(&config.digest) {
            remote.runtime.block_on(remote.client.pull_blob(
                reference,
                &config.digest,
                config.size,
                store,
            ))?;
        }
        let bytes = read_capped(store, &config.digest)?;
        cache_format::parse_cache(&manifest, &bytes)?
    };
    // A push to another repository of this registry can mount these blobs from the cache's.
    for layer in &manifest.layers {
        remote.client.record_blob_origin(
            reference.registry(),
            reference.repository(),
            &layer.digest,
        );
    }
    let fetcher = RegistryBlobs {
        remote: Arc::clone(remote),
        reference: reference.clone(),
        store: store.clone(),
    };
    Ok((parsed, Arc::new(fetcher)))
}

fn read_local_cache(dir: &std::path::Path, store: &Store) -> Result<ReadCache, CacheImportError> {
    let layout = OciLayout::open(dir)?;
    let top = layout.find(None)?.clone();
    if !top.media_type.is_manifest() {
        return Err(CacheImportError::NotAManifest {
            media_type: top.media_type.to_string(),
        });
    }
    let manifest = kiln_oci::read_json_blob::<ImageManifest>(&layout, &top)?;
    let manifest = manifest.value().clone();
    let parsed = if let Some(parsed) = cache_format::parse_inline(&manifest)? {
        parsed
    } else {
        cache_format::check_manifest(&manifest)?;
        copy_verified(
            &layout,
            store,
            &manifest.config.digest,
            manifest.config.size,
        )?;
        let bytes = read_capped(store, &manifest.config.digest)?;
        cache_format::parse_cache(&manifest, &bytes)?
    };
    let fetcher = LayoutBlobs {
        layout,
        store: store.clone(),
    };
    Ok((parsed, Arc::new(fetcher)))
}

/// The blob `digest` of the store, read whole up to the cache config cap.
fn read_capped(store: &Store, digest: &Digest) -> Result<Vec<u8>, CacheImportError> {
    let mut bytes = Vec::new();
    store
        .open_blob(digest)?
        .take(cache_format::MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| CacheImportError::ReadBlob {
            digest: digest.clone(),
            source,
        })?;
    Ok(bytes)
}

/// Copies the blob `digest` of `size` bytes from `source` into the store; the store's
/// writer refuses it unless it has that digest and size.
fn copy_verified(
    source: &OciLayout,
    store: &Store,
    digest: &Digest,
    size: u64,
) -> Result<(), CacheImportError> {
    if store.has_blob(digest) {
        return Ok(());
    }
    let mut reader = kiln_oci::BlobSource::open_blob(source, digest)
        .map_err(|e| CacheImportError::Layout(Box::new(LayoutError::Blob(e))))?;
    let mut writer = store.begin_blob(Some(digest), Some(size))?;
    std::io::copy(&mut reader, &mut writer).map_err(|source| CacheImportError::ReadBlob {
        digest: digest.clone(),
        source,
    })?;
    writer.commit()?;
    Ok(())
}

/// Blobs of a registry cache: pulled (verified, resumable) into the store.
struct RegistryBlobs {
    remote: Arc<Remote>,
    reference: ImageRef,
    store: Store,
}

impl BlobFetcher for RegistryBlobs {
    fn fetch(&self, blob: &LayerBlob) -> Result<(), CacheImportError> {
        self.remote.runtime.block_on(self.remote.client.pull_blob(
            &self.reference,
            &blob.digest,
            blob.size,
            &self.store,
        ))?;
        Ok(())
    }

    fn origin(&self) -> Option<(&str, &str)> {
        Some((self.reference.registry(), self.reference.repository()))
    }
}

/// Blobs of a `type=local` cache: copied (verified) into the store.
struct LayoutBlobs {
    layout: OciLayout,
    store: Store,
}

impl BlobFetcher for LayoutBlobs {
    fn fetch(&self, blob: &LayerBlob) -> Result<(), CacheImportError> {
        copy_verified(&self.layout, &self.store, &blob.digest, blob.size)
    }
}

/// The local [`ResultStore`] with imported caches under it: see the module docs.
pub(crate) struct LayeredResults<'a, L> {
    local: &'a L,
    imported: Vec<ImportedCache>,
    lazy: &'a LazyLayers,
}

impl<L> std::fmt::Debug for LayeredResults<'_, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayeredResults")
            .field("imported", &self.imported)
            .finish_non_exhaustive()
    }
}

impl<'a, L: ResultStore> LayeredResults<'a, L> {
    /// `local` first, then `imported` in order; imported layers are offered to `lazy`.
    pub(crate) fn new(local: &'a L, imported: Vec<ImportedCache>, lazy: &'a LazyLayers) -> Self {
        Self {
            local,
            imported,
            lazy,
        }
    }
}

impl<L> LayeredResults<'_, L> {
    /// The records and COPY key inputs of the imported cache named `name` (the location an
    /// export writes to), their layers offered to the lazy layers so the export can push or
    /// copy them.
    pub(crate) fn records_at(&self, name: &str) -> CacheRecords {
        let Some(cache) = self.imported.iter().find(|c| c.name == name) else {
            return CacheRecords::default();
        };
        for layer in cache.records.values().filter_map(|r| r.layer.as_ref()) {
            if self.lazy.is_excluded(&layer.digest) {
                continue;
            }
            let blob = LayerBlob {
                digest: layer.digest.clone(),
                size: layer.size,
                media_type: layer.media_type.clone(),
            };
            self.lazy.offer(&blob, &cache.name, &cache.fetcher);
        }
        let records = cache
            .records
            .iter()
            .filter(|(_, r)| {
                r.layer
                    .as_ref()
                    .is_none_or(|l| !self.lazy.is_excluded(&l.digest))
            })
            .map(|(k, r)| (*k, r.clone()))
            .collect();
        // Its cache mounts are not carried over: an export has the mounts this build used.
        CacheRecords {
            records,
            copy_inputs: cache.copy_inputs.clone(),
            cache_mounts: BTreeMap::new(),
        }
    }
}

impl<L: ResultStore> ResultStore for LayeredResults<'_, L> {
    fn lookup(&self, key: &CacheKey) -> Option<FoundRecord> {
        if let Some(found) = self.local.lookup(key) {
            return Some(found);
        }
        self.imported.iter().find_map(|cache| {
            let record = cache.records.get(key)?;
            if let Some(layer) = &record.layer
                && self.lazy.is_excluded(&layer.digest)
            {
                return None;
            }
            Some(FoundRecord {
                record: CacheRecord {
                    layer: record.layer.as_ref().map(|l| RecordLayer {
                        diff_id: l.diff_id.clone(),
                        blob: Some(l.digest.clone()),
                        size: l.size,
                        media_type: Some(l.media_type.clone()),
                        chain: None,
                        tar_size: None,
                    }),
                    created: record.created.clone(),
                },
                origin: RecordOrigin::Imported(cache.name.clone()),
            })
        })
    }

    fn adopt(
        &self,
        layer: &RecordLayer,
        parent: Option<&ChainId>,
    ) -> Result<Option<LayerInfo>, StepError> {
        if let Some(adopted) = self.local.adopt(layer, parent)? {
            return Ok(Some(adopted));
        }
        let (Some(digest), Some(media_type)) = (&layer.blob, &layer.media_type) else {
            return Ok(None);
        };
        if self.lazy.is_excluded(digest) {
            return Ok(None);
        }
        let Some(cache) = self.imported.iter().find(|c| c.blobs.contains(digest)) else {
            return Ok(None);
        };
        let blob = LayerBlob {
            digest: digest.clone(),
            size: layer.size,
            media_type: media_type.clone(),
        };
        // Nothing is fetched for a hit: the blob comes when something needs its files.
        self.lazy.offer(&blob, &cache.name, &cache.fetcher);
        Ok(Some(LayerInfo {
            diff_id: layer.diff_id.clone(),
            blob: Some(blob),
            chain: ChainId::on(parent, &layer.diff_id),
            tar_size: None,
        }))
    }

    fn record(&self, key: &CacheKey, record: &CacheRecord) {
        // A layer not fetched yet is not kept locally: the store holds only what it has.
        if let Some(layer) = &record.layer
            && let Some(blob) = &layer.blob
            && self.lazy.is_pending(blob)
        {
            return;
        }
        self.local.record(key, record);
    }

    fn load_history(&self, name: &str) -> BTreeMap<String, KeyInputs> {
        let local = self.local.load_history(name);
        if !local.is_empty() {
            return local;
        }
        // A fresh runner has no history of its own: the first imported cache's inputs
        // explain its misses.
        self.imported
            .iter()
            .find(|c| !c.records.is_empty())
            .map(|c| {
                c.records
                    .values()
                    .map(|r| (r.step.clone(), r.inputs.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn save_history(&self, name: &str, history: &BTreeMap<String, KeyInputs>) {
        self.local.save_history(name, history);
    }
}
