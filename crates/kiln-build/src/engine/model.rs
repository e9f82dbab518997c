//! The values the engine's parts hand each other: layers, finished stages, resolved base
//! images, cache records and a step's context. A leaf: it imports no other engine module.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use kiln_oci::{ChainId, DiffId, Digest, ImageConfiguration, MediaType, Platform};
use kiln_plan::{CacheKey, KeyInputs, StageId, StageOutput};
use serde::{Deserialize, Serialize};

use super::error::StepId;
use crate::scheduler::CancelToken;

/// One layer of a stage's filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LayerInfo {
    /// Digest of the uncompressed tar.
    pub diff_id: DiffId,
    /// The compressed blob in the store; `None` for a layer this build made, which exists as
    /// its snapshot until the image needs its blob (`commit::ensure_blob`): compressed in
    /// the background for a stage in the image, on demand for the others.
    pub blob: Option<LayerBlob>,
    /// Chain id of the stack up to this layer (its snapshot).
    pub chain: ChainId,
    /// Length of the uncompressed tar, when known (a commit counts it): what an image kept
    /// in the local store with its layers uncompressed lists (`Compressor::deferred`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tar_size: Option<u64>,
}

/// A layer's compressed blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LayerBlob {
    /// Digest of the blob in the store.
    pub digest: Digest,
    /// Blob size.
    pub size: u64,
    /// Blob media type.
    pub media_type: MediaType,
}

/// A finished stage.
#[derive(Debug, Clone)]
pub(crate) struct StageResult {
    /// Config and expansion state for stages built `FROM` it.
    pub output: StageOutput,
    /// The layers, base first.
    pub layers: Vec<LayerInfo>,
    /// The key of the last filesystem step (parent of a child stage's first step).
    pub key: Option<CacheKey>,
}

/// A resolved image: its manifest digest, config and unpacked layers.
#[derive(Debug, Clone)]
pub(crate) struct BaseImage {
    pub(crate) manifest_digest: Digest,
    pub(crate) config: ImageConfiguration,
    pub(crate) layers: Vec<LayerInfo>,
    /// Whether it came from the local store without a pull.
    pub(crate) was_local: bool,
    /// The base's own platform when it is a single manifest whose config's platform cannot
    /// run as the stage's: BuildKit's `InvalidBaseImagePlatform` warning
    /// (`images::invalid_base_image_platform`, with the name as the FROM writes it).
    pub(crate) mismatched_platform: Option<Platform>,
}

/// What a `--build-context NAME=…` is.
pub(crate) enum NamedSource {
    /// `docker-image://` or `oci-layout://`.
    Image(Arc<BaseImage>),
    /// A local directory.
    Dir(PathBuf),
}

/// What the cache remembers of a step that ran: its layer and when it ran. Stored under the
/// step's cache key; the store keeps the blob and snapshot it names
/// ([`CacheRecord::references`]) for as long as the record lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CacheRecord {
    /// The layer, `None` when the step changed nothing.
    pub(crate) layer: Option<RecordLayer>,
    /// When the step originally ran (history `created`).
    pub(crate) created: String,
}

/// Where a record the build found comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordOrigin {
    /// The local store.
    Local,
    /// An imported cache (`--cache-from`), as progress names it (`REG/REPO:TAG`, a directory).
    Imported(String),
}

/// A record found under a step's key, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FoundRecord {
    pub(crate) record: CacheRecord,
    pub(crate) origin: RecordOrigin,
}

/// A filesystem step this build answered (ran or found in a cache): what `--cache-to`
/// exports.
#[derive(Debug, Clone)]
pub(crate) struct RanStep {
    /// Its stage.
    pub(crate) stage: StageId,
    /// `stage:position`, as build histories name it.
    pub(crate) step: String,
    /// Its key inputs (their digest is its key).
    pub(crate) inputs: KeyInputs,
    /// Its layer, `None` when it changed nothing.
    pub(crate) layer: Option<LayerInfo>,
    /// History `created`.
    pub(crate) created: String,
}

/// The layer of a [`CacheRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RecordLayer {
    pub(crate) diff_id: DiffId,
    /// `None` for a layer kept as its snapshot only (see `LayerInfo::blob`).
    #[serde(default)]
    pub(crate) blob: Option<Digest>,
    #[serde(default)]
    pub(crate) size: u64,
    #[serde(default)]
    pub(crate) media_type: Option<MediaType>,
    /// The layer's snapshot.
    #[serde(default)]
    pub(crate) chain: Option<ChainId>,
    /// Length of the uncompressed tar (see `LayerInfo::tar_size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tar_size: Option<u64>,
}

impl CacheRecord {
    /// The record of a step that made `layer` (or nothing) at `created`.
    pub(crate) fn new(layer: Option<&LayerInfo>, created: String) -> Self {
        Self {
            layer: layer.map(|l| RecordLayer {
                diff_id: l.diff_id.clone(),
                blob: l.blob.as_ref().map(|b| b.digest.clone()),
                size: l.blob.as_ref().map_or(0, |b| b.size),
                media_type: l.blob.as_ref().map(|b| b.media_type.clone()),
                chain: Some(l.chain.clone()),
                tar_size: l.tar_size,
            }),
            created,
        }
    }

    /// What the record keeps alive in the store: its layer's blob and snapshot.
    pub(crate) fn references(&self) -> kiln_store::RecordRefs {
        let mut refs = kiln_store::RecordRefs::default();
        if let Some(layer) = &self.layer {
            refs.blobs.extend(layer.blob.iter().cloned());
            refs.snapshots.extend(layer.chain.iter().cloned());
        }
        refs
    }
}

/// What a step runs with: its identity, the stage's layers so far, the finished stages it
/// may read, its platform and the build's cancellation.
pub(crate) struct StepContext<'s> {
    /// The step, as messages name it.
    pub(crate) id: StepId,
    /// Its stage.
    pub(crate) stage: StageId,
    /// Its number in the build's progress.
    pub(crate) number: usize,
    /// The stage's layers before the step, base first.
    pub(crate) layers: &'s [LayerInfo],
    /// The results of the stages this stage depends on.
    pub(crate) deps: &'s BTreeMap<StageId, Arc<StageResult>>,
    /// The stage's platform.
    pub(crate) platform: &'s Platform,
    /// Whether the stage's layers are in the build's image (their blobs are compressed as
    /// they are made; other stages' layers stay snapshots until needed).
    pub(crate) in_image: bool,
    /// The build's cancellation.
    pub(crate) cancel: &'s CancelToken,
}

impl StepContext<'_> {
    /// The snapshot the step's layer goes on top of.
    pub(crate) fn parent_chain(&self) -> Option<&ChainId> {
        self.layers.last().map(|l| &l.chain)
    }
}
