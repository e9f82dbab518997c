//! A build for several target platforms: the emulation check made before any work starts,
//! and the result, one image per platform under one OCI index.

use std::path::Path;

use kiln_oci::{AssembledImage, Descriptor, ImageIndex, JsonBlob, MediaType, Platform};
use kiln_plan::BuildGraph;
use kiln_store::Store;

use super::error::{BuildError, ExportError};
use super::options::PlatformImage;

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

/// The images of a build, one per target platform, and the index over them when there is
/// more than one.
pub(crate) struct Built {
    images: Vec<(Platform, AssembledImage)>,
    index: Option<Descriptor>,
}

impl Built {
    /// The images of `platforms` (in that order); for more than one, their index is made
    /// and stored (each entry with its platform, as BuildKit writes them).
    pub(crate) fn new(
        store: &Store,
        platforms: &[Platform],
        images: Vec<AssembledImage>,
    ) -> Result<Self, BuildError> {
        let images: Vec<(Platform, AssembledImage)> =
            platforms.iter().cloned().zip(images).collect();
        let index = if images.len() > 1 {
            let manifests = images
                .iter()
                .map(|(platform, image)| {
                    image.manifest_descriptor().with_platform(platform.clone())
                })
                .collect();
            let index = JsonBlob::from_value(ImageIndex::new(manifests))
                .map_err(|e| ExportError::Index(e.to_string()))?;
            store.put_bytes(index.bytes()).map_err(ExportError::Store)?;
            Some(index.descriptor(MediaType::OciIndex))
        } else {
            None
        };
        Ok(Self { images, index })
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
        self.index.is_some()
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
                manifest: if self.is_multi_platform() {
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
