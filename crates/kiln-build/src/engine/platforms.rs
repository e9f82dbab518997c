//! A build for several target platforms: the emulation check made before any work starts,
//! and the result, one image per platform under one OCI index.

use std::path::Path;

use kiln_oci::{
    AssembledImage, Compression, Descriptor, ImageIndex, JsonBlob, ManifestFormat, MediaType,
    Platform, assemble_image,
};
use kiln_plan::BuildGraph;
use kiln_store::Store;

use super::compressor::Compressor;
use super::error::{BuildError, ExportError};
use super::model::LayerInfo;
use super::options::PlatformImage;
use crate::annotation::{AnnotationLevel, Annotations};
use crate::attest::manifest::AttestationManifest;

/// Refuses, before any step runs, a build with a RUN step for a platform this host cannot
/// run and has no binfmt_misc emulator for. Stages that only COPY (the cross-compile
/// pattern: the work in a `--platform=$BUILDPLATFORM` stage, its output copied into a stage
/// of the target platform) need none. A base image's `ONBUILD RUN` is not known before the
/// base is: it fails when it runs, with the kernel's "exec format error".
pub(crate) fn check_emulation(
    binfmt_dir: &Path,
    graphs: &[BuildGraph],
    dockerfile: &str,
) -> Result<(), BuildError> {
    let host = Platform::host();
    let mut checked: Vec<&Platform> = Vec::new();
    for stage in graphs.iter().flat_map(|g| &g.stages) {
        if checked.contains(&&stage.platform)
            || !kiln_sandbox::needs_emulation(&host, &stage.platform)
        {
            continue;
        }
        let Some(run) = stage
            .instructions
            .iter()
            .find(|i| matches!(i.command, kiln_dockerfile::Command::Run(_)))
        else {
            continue;
        };
        checked.push(&stage.platform);
        kiln_sandbox::find_emulator(&stage.platform, binfmt_dir).map_err(|source| {
            BuildError::NoEmulator {
                dockerfile: dockerfile.to_owned(),
                platform: stage.platform.to_string(),
                line: run.syntax.start_line as usize,
                source: Box::new(source),
            }
        })?;
    }
    Ok(())
}

/// The images of a build, one per target platform (with the layers they were assembled
/// from), and the index over them when there is more than one.
pub(crate) struct Built {
    images: Vec<(Platform, AssembledImage)>,
    layers: Vec<Vec<LayerInfo>>,
    index: Option<Descriptor>,
    /// The manifest format and annotations the index was made with.
    format: ManifestFormat,
    annotations: Annotations,
}

/// How an output wants the image encoded, when not as the build made it (`-o` keys,
/// `--annotation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Encoding {
    /// The compression of the layers the build made (and of the base's, when forced).
    pub(crate) compression: Compression,
    /// `force-compression=true`: the base image's layers too.
    pub(crate) force: bool,
    /// Whether the layers are the build's own blobs (the build's compression, not forced):
    /// only the manifests, configs and index change.
    pub(crate) keep_layers: bool,
    /// The manifest format (`oci-mediatypes=false`: Docker's).
    pub(crate) format: ManifestFormat,
    /// The annotations of the manifests, their descriptors and the index.
    pub(crate) annotations: Annotations,
}

impl Built {
    /// The images of `platforms` (in that order); for more than one, their index is made
    /// and stored (each entry with its platform, as BuildKit writes them).
    pub(crate) fn new(
        store: &Store,
        platforms: &[Platform],
        images: Vec<(AssembledImage, Vec<LayerInfo>)>,
    ) -> Result<Self, BuildError> {
        let (images, layers): (Vec<_>, Vec<_>) = images.into_iter().unzip();
        let images: Vec<(Platform, AssembledImage)> =
            platforms.iter().cloned().zip(images).collect();
        let index = index_of(
            store,
            &images,
            ManifestFormat::Oci,
            &Annotations::new(),
            &[],
        )?;
        Ok(Self {
            images,
            layers,
            index,
            format: ManifestFormat::Oci,
            annotations: Annotations::new(),
        })
    }

    /// The same images encoded as `encoding` asks: the layers the build made compressed
    /// with its compression (from their snapshots; a blob made once is remembered), the base
    /// image's layers too when forced, the manifests, configs and index in its format. The
    /// configs are the same, so each platform's image ID is too.
    pub(crate) fn encoded(
        &self,
        store: &Store,
        encoding: &Encoding,
        epoch: Option<i64>,
    ) -> Result<Self, ExportError> {
        let compressor = Compressor::new(store.clone(), encoding.compression, epoch);
        let mut images = Vec::with_capacity(self.images.len());
        for ((platform, image), layers) in self.images.iter().zip(&self.layers) {
            let mut annotations = image.manifest.value().annotations.clone();
            annotations.extend(
                encoding
                    .annotations
                    .at(AnnotationLevel::Manifest, Some(platform)),
            );
            let descriptors = if encoding.keep_layers {
                image.manifest.value().layers.clone()
            } else {
                layers
                    .iter()
                    .map(|layer| {
                        let layer = if encoding.force {
                            LayerInfo {
                                blob: None,
                                ..layer.clone()
                            }
                        } else {
                            layer.clone()
                        };
                        compressor
                            .blob(&layer)
                            .map(|b| Descriptor::new(b.media_type, b.digest, b.size))
                            .map_err(ExportError::Layer)
                    })
                    .collect::<Result<Vec<_>, _>>()?
            };
            let assembled = assemble_image(
                image.config.value().clone(),
                descriptors,
                encoding.format,
                annotations,
            )
            .map_err(|e| ExportError::Assemble(Box::new(e)))?;
            store
                .put_bytes(assembled.config.bytes())
                .map_err(ExportError::Store)?;
            store
                .put_bytes(assembled.manifest.bytes())
                .map_err(ExportError::Store)?;
            images.push((platform.clone(), assembled));
        }
        let index =
            index_of(store, &images, encoding.format, &encoding.annotations, &[]).map_err(|e| {
                match e {
                    BuildError::Export(e) => e,
                    other => ExportError::Index(other.to_string()),
                }
            })?;
        Ok(Self {
            images,
            layers: self.layers.clone(),
            index,
            format: encoding.format,
            annotations: encoding.annotations.clone(),
        })
    }

    /// The same images under an index that also lists `attestations` (one attestation
    /// manifest per platform image, after the images, as BuildKit's exporter writes them):
    /// their blobs are stored, and the index is made even for one platform.
    pub(crate) fn with_attestations(
        &self,
        store: &Store,
        attestations: Vec<AttestationManifest>,
    ) -> Result<Self, ExportError> {
        let mut entries = Vec::with_capacity(attestations.len());
        for attestation in attestations {
            for blob in &attestation.blobs {
                store.put_bytes(blob).map_err(ExportError::Store)?;
            }
            entries.push(attestation.descriptor);
        }
        let index = index_of(
            store,
            &self.images,
            self.format,
            &self.annotations,
            &entries,
        )
        .map_err(|e| match e {
            BuildError::Export(e) => e,
            other => ExportError::Index(other.to_string()),
        })?;
        Ok(Self {
            images: self.images.clone(),
            layers: self.layers.clone(),
            index,
            format: self.format,
            annotations: self.annotations.clone(),
        })
    }

    /// The first platform's image (the only one of a one-platform build).
    pub(crate) fn first(&self) -> &AssembledImage {
        &self.images[0].1
    }

    /// Every platform's image, in order.
    pub(crate) fn images(&self) -> impl Iterator<Item = &(Platform, AssembledImage)> {
        self.images.iter()
    }

    /// Whether the build made images for more than one platform.
    pub(crate) fn is_multi_platform(&self) -> bool {
        self.images.len() > 1
    }

    /// The index of a multi-platform build.
    pub(crate) fn index(&self) -> Option<&Descriptor> {
        self.index.as_ref()
    }

    /// What names point to and outputs write: the index, else the one manifest.
    pub(crate) fn top(&self) -> Descriptor {
        self.index
            .clone()
            .unwrap_or_else(|| self.first().manifest_descriptor())
    }

    /// Each platform's image, for the build's outcome.
    pub(crate) fn platform_images(&self) -> Vec<PlatformImage> {
        self.images
            .iter()
            .map(|(platform, image)| PlatformImage {
                platform: platform.clone(),
                manifest: if self.index.is_some() {
                    image.manifest_descriptor().with_platform(platform.clone())
                } else {
                    image.manifest_descriptor()
                },
                config_digest: image.config_digest().clone(),
            })
            .collect()
    }

    /// The directory a platform's files go to in a `type=local` or `type=tar` output of a
    /// multi-platform build (`linux_arm64`, `linux_arm_v7`), as buildx names them.
    pub(crate) fn platform_dir(platform: &Platform) -> String {
        platform.to_string().replace('/', "_")
    }
}

/// For more than one image, or with attestation manifests, their index (each entry with its
/// platform, as BuildKit writes them, the attestation manifests last; a Docker manifest list
/// in Docker's format), stored, with the `index` annotations and each image entry with its
/// `manifest-descriptor` ones.
fn index_of(
    store: &Store,
    images: &[(Platform, AssembledImage)],
    format: ManifestFormat,
    annotations: &Annotations,
    attestations: &[Descriptor],
) -> Result<Option<Descriptor>, BuildError> {
    if images.len() < 2 && attestations.is_empty() {
        return Ok(None);
    }
    let manifests = images
        .iter()
        .map(|(platform, image)| {
            let mut descriptor = image.manifest_descriptor().with_platform(platform.clone());
            descriptor
                .annotations
                .extend(annotations.at(AnnotationLevel::ManifestDescriptor, Some(platform)));
            descriptor
        })
        .chain(attestations.iter().cloned())
        .collect();
    let mut index = ImageIndex::new(manifests);
    index.annotations = annotations.at(AnnotationLevel::Index, None);
    let media_type = match format {
        ManifestFormat::Oci => MediaType::OciIndex,
        ManifestFormat::Docker => MediaType::DockerManifestList,
    };
    index.media_type = Some(media_type.clone());
    let index = JsonBlob::from_value(index).map_err(|e| ExportError::Index(e.to_string()))?;
    store.put_bytes(index.bytes()).map_err(ExportError::Store)?;
    Ok(Some(index.descriptor(media_type)))
}
