//! The local store as the build's [`ResultStore`]: cache records under their step keys,
//! layers as snapshots (unpacked again from their blob when a prune took the snapshot), and
//! the build history that explains misses.

use std::collections::BTreeMap;

use kiln_oci::{ChainId, Compression};
use kiln_plan::{CacheKey, KeyInputs};
use kiln_store::Store;

use super::commit;
use super::error::StepError;
use super::model::{CacheRecord, FoundRecord, LayerBlob, LayerInfo, RecordLayer, RecordOrigin};
use super::seams::ResultStore;

/// Cache records and layers in a [`Store`].
#[derive(Debug)]
pub(crate) struct StoreResults<'a> {
    store: &'a Store,
    /// The build's layer compression: a layer recorded without a blob may have had one of
    /// this kind compressed for it since.
    compression: Compression,
}

impl<'a> StoreResults<'a> {
    pub(crate) fn new(store: &'a Store, compression: Compression) -> Self {
        Self { store, compression }
    }
}

impl ResultStore for StoreResults<'_> {
    fn lookup(&self, key: &CacheKey) -> Option<FoundRecord> {
        let value = self.store.get_cache_record(&key.to_hex()).ok()??;
        let record = serde_json::from_value(value).ok()?;
        Some(FoundRecord {
            record,
            origin: RecordOrigin::Local,
        })
    }

    fn adopt(
        &self,
        layer: &RecordLayer,
        parent: Option<&ChainId>,
    ) -> Result<Option<LayerInfo>, StepError> {
        let mut blob = match (&layer.blob, &layer.media_type) {
            (Some(digest), Some(media_type)) if self.store.has_blob(digest) => Some(LayerBlob {
                digest: digest.clone(),
                size: layer.size,
                media_type: media_type.clone(),
            }),
            _ => None,
        };
        let chain = ChainId::on(parent, &layer.diff_id);
        if !self.store.has_snapshot(&chain) {
            if blob.is_none() {
                blob = commit::remembered_blob(self.store, &layer.diff_id, self.compression);
            }
            let Some(blob) = &blob else {
                return Ok(None);
            };
            self.store
                .ensure_snapshot(parent, &layer.diff_id, &blob.digest)?;
        }
        Ok(Some(LayerInfo {
            diff_id: layer.diff_id.clone(),
            blob,
            chain,
            tar_size: layer.tar_size,
        }))
    }

    fn record(&self, key: &CacheKey, record: &CacheRecord) {
        let written = serde_json::to_value(record)
            .map_err(|e| e.to_string())
            .and_then(|value| {
                self.store
                    .put_cache_record(&key.to_hex(), &record.references(), &value)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            tracing::warn!("could not write the cache record {}: {e}", key.to_hex());
        }
    }

    fn load_history(&self, name: &str) -> BTreeMap<String, KeyInputs> {
        match self.store.get_cache_record(name) {
            Ok(Some(value)) => serde_json::from_value(value).unwrap_or_else(|e| {
                tracing::warn!("ignoring the unreadable build history {name}: {e}");
                BTreeMap::new()
            }),
            Ok(None) => BTreeMap::new(),
            Err(e) => {
                tracing::warn!("could not read the build history for cache-miss explanations: {e}");
                BTreeMap::new()
            }
        }
    }

    fn save_history(&self, name: &str, history: &BTreeMap<String, KeyInputs>) {
        if let Ok(value) = serde_json::to_value(history)
            && let Err(e) =
                self.store
                    .put_cache_record(name, &kiln_store::RecordRefs::default(), &value)
        {
            tracing::warn!("could not save build history for cache-miss explanations: {e}");
        }
    }
}
