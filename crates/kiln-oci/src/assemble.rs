//! Putting an image together: from an image config and the layer descriptors, the config
//! blob and the manifest blob (canonical JSON), their digests, and the manifest's
//! descriptor, as every exporter and `kiln import` needs. Also [`MemoryBlobs`], a small
//! in-memory [`BlobSource`] for those JSON blobs that falls back to another source (the
//! store) for layers.
//!
//! ```
//! use std::collections::BTreeMap;
//! use kiln_oci::{
//!     ExportImage, ImageConfiguration, ManifestFormat, MemoryBlobs, OciLayout, assemble_image,
//!     write_oci_layout_dir,
//! };
//!
//! let mut config = ImageConfiguration::new(&"linux/amd64".parse()?);
//! config.config.cmd = vec!["sh".into()];
//! let image = assemble_image(config, Vec::new(), ManifestFormat::Oci, BTreeMap::new())?;
//! let layers = MemoryBlobs::new(); // normally the store
//! let blobs = image.blobs(&layers);
//!
//! let dir = tempfile::tempdir()?;
//! let dest = dir.path().join("layout");
//! let export = ExportImage::new(image.manifest_descriptor()).named("scratch-sh:1");
//! write_oci_layout_dir(&dest, &blobs, &[export])?;
//!
//! let resolved = OciLayout::open(&dest)?.resolve(Some("1"), None)?;
//! assert_eq!(resolved.manifest.digest(), image.manifest_digest());
//! assert_eq!(resolved.config.value().config.cmd, ["sh"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::io::{Cursor, Read};

use crate::{
    BlobError, BlobSource, Descriptor, Digest, ImageConfiguration, ImageManifest, JsonBlob,
    JsonError, MediaType, ModelError,
};

/// Which family of media types the manifest and config use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ManifestFormat {
    /// OCI media types (BuildKit's default with `oci-mediatypes=true`).
    #[default]
    Oci,
    /// Docker v2 schema 2 media types (layers converted to their Docker equivalents).
    Docker,
}

/// Why an image could not be assembled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssembleError {
    /// The config and the layers do not correspond.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A JSON document could not be serialized.
    #[error(transparent)]
    Json(#[from] JsonError),
    /// A layer descriptor does not have a layer media type.
    #[error("descriptor {digest} has media type `{media_type}`, which is not a layer type")]
    NotALayer {
        /// The descriptor.
        digest: Digest,
        /// Its media type.
        media_type: MediaType,
    },
}

/// A config blob and a manifest blob that belong together.
#[derive(Debug, Clone)]
pub struct AssembledImage {
    /// The image configuration, canonically serialized.
    pub config: JsonBlob<ImageConfiguration>,
    /// The manifest, canonically serialized.
    pub manifest: JsonBlob<ImageManifest>,
}

impl AssembledImage {
    /// The manifest's descriptor, with the image's platform (as an index entry needs).
    pub fn manifest_descriptor(&self) -> Descriptor {
        self.manifest
            .descriptor(self.manifest.value().effective_media_type())
            .with_platform(self.config.value().platform())
    }

    /// The manifest's digest (the image's identity in a registry).
    pub fn manifest_digest(&self) -> &Digest {
        self.manifest.digest()
    }

    /// The config's digest (the image ID `docker images` shows).
    pub fn config_digest(&self) -> &Digest {
        self.config.digest()
    }

    /// The config and manifest blobs in memory, reading everything else (the layers) from
    /// `layers`.
    pub fn blobs<'a>(&self, layers: &'a dyn BlobSource) -> MemoryBlobs<'a> {
        let mut blobs = MemoryBlobs::with_fallback(layers);
        blobs.insert(self.config.bytes().to_vec());
        blobs.insert(self.manifest.bytes().to_vec());
        blobs
    }
}

/// Serializes `config` and a manifest over `layers` (base first). Checks that the config
/// lists one diff id per layer and that every layer descriptor is a layer type; with
/// [`ManifestFormat::Docker`] layer media types are converted to Docker's. `annotations` go
/// on the manifest as given (BuildKit adds none by default).
pub fn assemble_image(
    config: ImageConfiguration,
    layers: Vec<Descriptor>,
    format: ManifestFormat,
    annotations: BTreeMap<String, String>,
) -> Result<AssembledImage, AssembleError> {
    if config.rootfs.diff_ids.len() != layers.len() {
        return Err(ModelError::LayerCountMismatch {
            diff_ids: config.rootfs.diff_ids.len(),
            layers: layers.len(),
        }
        .into());
    }
    let layers = layers
        .into_iter()
        .map(|mut layer| {
            if !layer.media_type.is_layer() {
                return Err(AssembleError::NotALayer {
                    digest: layer.digest,
                    media_type: layer.media_type,
                });
            }
            layer.media_type = match format {
                ManifestFormat::Oci => layer.media_type.to_oci(),
                ManifestFormat::Docker => layer.media_type.to_docker(),
            };
            Ok(layer)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (config_type, manifest_type) = match format {
        ManifestFormat::Oci => (MediaType::OciConfig, MediaType::OciManifest),
        ManifestFormat::Docker => (MediaType::DockerConfig, MediaType::DockerManifest),
    };
    let config = JsonBlob::from_value(config)?;
    let mut manifest = ImageManifest::new(config.descriptor(config_type), layers);
    manifest.media_type = Some(manifest_type);
    manifest.annotations = annotations;
    let manifest = JsonBlob::from_value(manifest)?;
    Ok(AssembledImage { config, manifest })
}

/// Blobs held in memory (manifests, configs, indexes), optionally over another source.
#[derive(Default)]
pub struct MemoryBlobs<'a> {
    blobs: BTreeMap<Digest, Vec<u8>>,
    fallback: Option<&'a dyn BlobSource>,
}

impl<'a> MemoryBlobs<'a> {
    /// An empty set with no fallback.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty set that reads blobs it does not hold from `fallback`.
    pub fn with_fallback(fallback: &'a dyn BlobSource) -> Self {
        Self {
            blobs: BTreeMap::new(),
            fallback: Some(fallback),
        }
    }

    /// Adds `bytes`, returning their digest.
    pub fn insert(&mut self, bytes: Vec<u8>) -> Digest {
        let digest = Digest::sha256_of(&bytes);
        self.blobs.insert(digest.clone(), bytes);
        digest
    }
}

impl std::fmt::Debug for MemoryBlobs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBlobs")
            .field("blobs", &self.blobs.keys().collect::<Vec<_>>())
            .field("has_fallback", &self.fallback.is_some())
            .finish()
    }
}

impl BlobSource for MemoryBlobs<'_> {
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, BlobError> {
        match (self.blobs.get(digest), self.fallback) {
            (Some(bytes), _) => Ok(Box::new(Cursor::new(bytes.clone()))),
            (None, Some(fallback)) => fallback.open_blob(digest),
            (None, None) => Err(BlobError::NotFound {
                digest: digest.clone(),
            }),
        }
    }

    fn blob_len(&self, digest: &Digest) -> Result<u64, BlobError> {
        match (self.blobs.get(digest), self.fallback) {
            (Some(bytes), _) => Ok(bytes.len() as u64),
            (None, Some(fallback)) => fallback.blob_len(digest),
            (None, None) => Err(BlobError::NotFound {
                digest: digest.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DiffId;

    fn config_with(layers: usize) -> ImageConfiguration {
        let mut config = ImageConfiguration::new(&"linux/amd64".parse().unwrap());
        for i in 0..layers {
            config
                .rootfs
                .diff_ids
                .push(DiffId(Digest::sha256_of(&[u8::try_from(i).unwrap()])));
        }
        config
    }

    fn layer(i: u8) -> Descriptor {
        Descriptor::of_bytes(MediaType::OciLayerTarGzip, &[i, i])
    }

    #[test]
    fn assembles_consistent_blobs_deterministically() {
        let a = assemble_image(
            config_with(2),
            vec![layer(0), layer(1)],
            ManifestFormat::Oci,
            BTreeMap::new(),
        )
        .unwrap();
        let b = assemble_image(
            config_with(2),
            vec![layer(0), layer(1)],
            ManifestFormat::Oci,
            BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(a.manifest.bytes(), b.manifest.bytes());
        let m = a.manifest.value();
        assert_eq!(&m.config.digest, a.config_digest());
        assert_eq!(m.config.size, a.config.size());
        assert_eq!(m.config.media_type, MediaType::OciConfig);
        let d = a.manifest_descriptor();
        assert_eq!(&d.digest, a.manifest_digest());
        assert_eq!(d.platform.unwrap().to_string(), "linux/amd64");
        let empty = MemoryBlobs::new();
        let source = a.blobs(&empty);
        assert_eq!(source.blob_len(a.config_digest()).unwrap(), a.config.size());
        assert!(matches!(
            source.open_blob(&layer(0).digest),
            Err(BlobError::NotFound { .. })
        ));
    }

    #[test]
    fn docker_format_converts_media_types() {
        let image = assemble_image(
            config_with(1),
            vec![layer(0)],
            ManifestFormat::Docker,
            BTreeMap::new(),
        )
        .unwrap();
        let m = image.manifest.value();
        assert_eq!(m.media_type, Some(MediaType::DockerManifest));
        assert_eq!(m.config.media_type, MediaType::DockerConfig);
        assert_eq!(m.layers[0].media_type, MediaType::DockerLayerTarGzip);
        assert_eq!(
            image.manifest_descriptor().media_type,
            MediaType::DockerManifest
        );
    }

    #[test]
    fn mismatched_layers_are_refused() {
        let err = assemble_image(
            config_with(2),
            vec![layer(0)],
            ManifestFormat::Oci,
            BTreeMap::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("2 diff_ids"), "{err}");
        let not_layer = Descriptor::of_bytes(MediaType::OciConfig, b"{}");
        let err = assemble_image(
            config_with(1),
            vec![not_layer],
            ManifestFormat::Oci,
            BTreeMap::new(),
        )
        .unwrap_err();
        assert!(matches!(err, AssembleError::NotALayer { .. }));
    }
}
