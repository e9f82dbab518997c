//! Base images and named build contexts: resolved for the stage's platform in the local
//! store first, pulled from their registry when missing (or always with `--pull`), unpacked
//! as snapshots. An `oci-layout://` context's index is resolved to the platform too.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use kiln_oci::{BlobSource, Digest, ImageRef, OciLayout, Platform, ResolvedImage};
use kiln_store::Store;

use super::error::BaseError;
use super::model::{BaseImage, LayerBlob, LayerInfo, NamedSource};
use super::options::Builder;
use super::seams::BaseResolver;
use crate::images::{PullPolicy, resolve_platform_image};

/// One image's place in the [`Resolver`]: empty until the first stage that needs it has
/// resolved it (an error leaves it empty, so the next stage tries again).
type ImageSlot = Arc<Mutex<Option<Arc<BaseImage>>>>;

/// Resolves and caches images for one build.
pub(crate) struct Resolver<'a> {
    builder: &'a Builder,
    store: &'a Store,
    /// A lock per image, not one for all: stages FROM the same image pull it once, stages
    /// FROM different images pull (and unpack) them at the same time.
    images: Mutex<HashMap<String, ImageSlot>>,
    runtime: Mutex<Option<Arc<tokio::runtime::Runtime>>>,
}

impl<'a> Resolver<'a> {
    pub(crate) fn new(builder: &'a Builder, store: &'a Store) -> Self {
        Self {
            builder,
            store,
            images: Mutex::new(HashMap::new()),
            runtime: Mutex::new(None),
        }
    }

    /// Every image this build resolved (base images, `docker-image://` contexts): as named,
    /// for the platform asked, with the manifest digest it resolved to (provenance's
    /// resolved dependencies). Sorted.
    pub(crate) fn resolved(&self) -> Vec<crate::attest::provenance::ResolvedBase> {
        let images = self
            .images
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut resolved: Vec<_> = images
            .iter()
            .filter_map(|(key, slot)| {
                let image = slot
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()?;
                let (reference, platform) = key.rsplit_once('|')?;
                Some(crate::attest::provenance::ResolvedBase {
                    reference: ImageRef::parse(reference).ok()?,
                    platform: platform.parse().ok()?,
                    digest: image.manifest_digest.clone(),
                })
            })
            .collect();
        resolved.sort();
        resolved
    }

    /// The slot of `key`, made empty the first time.
    fn slot(&self, key: String) -> ImageSlot {
        let mut images = self
            .images
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(images.entry(key).or_default())
    }

    /// The image `reference` for `platform`, through the one resolution `kiln run` and `kiln
    /// pull` use too (an index's platform from the store, else pulled; `--pull` asks the
    /// registry again); pulled at most once per build. With `may_pull` false, what the store
    /// lacks is an error and nothing is remembered.
    fn resolve(
        &self,
        reference: &ImageRef,
        platform: &Platform,
        may_pull: bool,
    ) -> Result<Arc<BaseImage>, BaseError> {
        let slot = self.slot(format!("{reference}|{platform}"));
        let mut cached = slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(image) = cached.as_ref() {
            return Ok(Arc::clone(image));
        }
        let policy = match (may_pull, self.builder.pull) {
            (false, _) => PullPolicy::Never,
            (true, true) => PullPolicy::Always,
            (true, false) => PullPolicy::Missing,
        };
        let found = resolve_platform_image(
            self.store,
            reference,
            &reference.familiar(),
            platform,
            policy,
            &mut |reference: &ImageRef, platform: &Platform| self.pull(reference, platform),
        )
        .map_err(BaseError::from_image)?;
        let mut image = self.unpack(&found.image, found.was_local())?;
        image.mismatched_platform = found
            .platform_warning
            .is_some()
            .then(|| found.image.config.value().platform());
        let image = Arc::new(image);
        *cached = Some(Arc::clone(&image));
        Ok(image)
    }

    /// Pulls `reference` for `platform` into the store (the resolution names it).
    fn pull(
        &self,
        reference: &ImageRef,
        platform: &Platform,
    ) -> Result<kiln_registry::PulledImage, kiln_registry::RegistryError> {
        let mut config = kiln_registry::ClientConfig::new();
        for host in &self.builder.insecure_registries {
            config = config.insecure_registry(host.clone());
        }
        let client = kiln_registry::Client::new(config)?;
        // Made once, then shared: pulls of different images block on it at the same time.
        let rt = {
            let mut runtime = self
                .runtime
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(rt) = runtime.as_ref() {
                Arc::clone(rt)
            } else {
                let rt = Arc::new(
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                        .map_err(|e| {
                            kiln_registry::RegistryError::ClientSetup(format!(
                                "starting the network runtime: {e}"
                            ))
                        })?,
                );
                *runtime = Some(Arc::clone(&rt));
                rt
            }
        };
        rt.block_on(client.pull_image(reference, platform, self.store))
    }

    fn unpack(&self, resolved: &ResolvedImage, was_local: bool) -> Result<BaseImage, BaseError> {
        let chains = self.store.unpack_image(resolved)?;
        let config = resolved.config.value().clone();
        let layers = resolved
            .manifest
            .value()
            .layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .zip(chains)
            .map(|((desc, diff_id), chain)| {
                // A layer of an image built here and kept uncompressed (its digest is its
                // diffID, its blob the tar of its snapshot, never written): it has no blob
                // until an output compresses it from the snapshot.
                let is_snapshot_only = super::stored::is_snapshot_only(self.store, desc);
                LayerInfo {
                    diff_id: diff_id.clone(),
                    blob: (!is_snapshot_only).then(|| LayerBlob {
                        digest: desc.digest.clone(),
                        size: desc.size,
                        media_type: desc.media_type.clone(),
                    }),
                    chain,
                    tar_size: super::stored::is_uncompressed(desc).then_some(desc.size),
                }
            })
            .collect();
        Ok(BaseImage {
            manifest_digest: resolved.manifest.digest().clone(),
            config,
            layers,
            was_local,
            mismatched_platform: None,
        })
    }

    /// The named build context `name`.
    fn named(&self, name: &str, platform: &Platform) -> Result<NamedSource, BaseError> {
        let spec = self
            .builder
            .build_contexts
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .ok_or_else(|| BaseError::NoBuildContext {
                name: name.to_owned(),
            })?;
        if let Some(reference) = spec.strip_prefix("docker-image://") {
            let reference =
                ImageRef::parse(reference).map_err(|source| BaseError::BuildContextReference {
                    name: name.to_owned(),
                    source,
                })?;
            return self
                .resolve(&reference, platform, true)
                .map(NamedSource::Image);
        }
        if let Some(layout) = spec.strip_prefix("oci-layout://") {
            return self
                .oci_layout(name, layout, platform)
                .map(NamedSource::Image);
        }
        let dir = PathBuf::from(spec.strip_prefix("local://").unwrap_or(&spec));
        if !dir.is_dir() {
            return Err(BaseError::BuildContextNotADirectory {
                name: name.to_owned(),
                spec,
            });
        }
        Ok(NamedSource::Dir(dir))
    }

    /// `oci-layout://PATH[:TAG|@DIGEST]`: copies the image's blobs into the store.
    fn oci_layout(
        &self,
        name: &str,
        spec: &str,
        platform: &Platform,
    ) -> Result<Arc<BaseImage>, BaseError> {
        let slot = self.slot(format!("oci-layout://{spec}|{platform}"));
        let mut cached = slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(image) = cached.as_ref() {
            return Ok(Arc::clone(image));
        }
        let (path, selector) = match spec.split_once('@') {
            Some((p, d)) => (p, Some(d.to_owned())),
            None => match spec.rsplit_once(':') {
                Some((p, tag)) if !tag.contains('/') => (p, Some(tag.to_owned())),
                _ => (spec, None),
            },
        };
        let layout_error = |source| BaseError::BuildContextLayout {
            name: name.to_owned(),
            source,
        };
        let layout = OciLayout::open(path).map_err(layout_error)?;
        let resolved = layout
            .resolve(selector.as_deref(), Some(platform))
            .map_err(layout_error)?;
        let manifest = resolved.manifest.value();
        let mut blobs: Vec<(Digest, u64)> =
            vec![(manifest.config.digest.clone(), manifest.config.size)];
        blobs.extend(manifest.layers.iter().map(|l| (l.digest.clone(), l.size)));
        for (digest, _) in &blobs {
            if self.store.has_blob(digest) {
                continue;
            }
            let mut reader =
                layout
                    .open_blob(digest)
                    .map_err(|source| BaseError::BuildContextBlob {
                        name: name.to_owned(),
                        source,
                    })?;
            self.store.put_reader(&mut reader, Some(digest))?;
        }
        self.store.put_bytes(resolved.manifest.bytes())?;
        let image = Arc::new(self.unpack(&resolved, true)?);
        *cached = Some(Arc::clone(&image));
        Ok(image)
    }
}

impl BaseResolver for Resolver<'_> {
    fn image(
        &self,
        reference: &ImageRef,
        platform: &Platform,
    ) -> Result<Arc<BaseImage>, BaseError> {
        self.resolve(reference, platform, true)
    }

    fn local_image(&self, reference: &ImageRef, platform: &Platform) -> Option<Arc<BaseImage>> {
        if self.builder.pull {
            return None;
        }
        self.resolve(reference, platform, false).ok()
    }

    fn named_context(&self, name: &str, platform: &Platform) -> Result<NamedSource, BaseError> {
        self.named(name, platform)
    }
}
