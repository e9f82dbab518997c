//! OCI image layouts (OCI image-spec image-layout.md) on disk: reading one ([`OciLayout`],
//! itself a [`BlobSource`], as `--build-context x=oci-layout://path` needs), and resolving
//! a name or digest through indexes to one platform's manifest and config
//! ([`resolve_image`], shared with the archive readers).
//!
//! Writers live in `layout_write`; tar readers in `archive_read`.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::{
    BlobError, BlobSource, Descriptor, Digest, ImageConfiguration, ImageIndex, ImageManifest,
    JsonBlob, JsonError, MediaType, ModelError, Platform,
};

/// The `oci-layout` file's name.
pub const OCI_LAYOUT_FILE: &str = "oci-layout";
/// The layout's top-level index.
pub const INDEX_JSON_FILE: &str = "index.json";
/// The only `imageLayoutVersion` the spec defines.
pub const IMAGE_LAYOUT_VERSION: &str = "1.0.0";
/// Largest manifest, index or config kiln reads into memory (registries cap manifests at
/// 4 MiB; configs with long histories can be larger).
pub const MAX_JSON_BLOB_SIZE: u64 = 16 * 1024 * 1024;
/// How many indexes deep a resolution may go before it is considered a loop.
const MAX_INDEX_DEPTH: usize = 4;

/// Why a layout or archive could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// A file operation failed (fs_err's message names the path).
    #[error(transparent)]
    Fs(#[from] io::Error),
    /// An I/O error on a named file, from an operation that does not name it (a tar stream).
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A blob could not be read or did not match its descriptor.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// A JSON document was invalid.
    #[error(transparent)]
    Json(#[from] JsonError),
    /// A manifest or index broke the spec.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The path is not an OCI layout (or archive) kiln can read.
    #[error("{} is not a valid {format}: {reason}", path.display())]
    Malformed {
        /// The layout directory or archive.
        path: PathBuf,
        /// `OCI layout`, `OCI archive`, `docker archive`.
        format: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No entry of the index matched the name.
    #[error("no image named `{name}` in {}; available: {}", location.display(), list_or_none(available))]
    ImageNotFound {
        /// The tag, full name or digest asked for.
        name: String,
        /// The layout or archive.
        location: PathBuf,
        /// The names it does hold.
        available: Vec<String>,
    },
    /// No name was given and the layout holds several images.
    #[error("{} holds {count} images; name one (by tag, full name or digest): {}", location.display(), list_or_none(available))]
    AmbiguousImage {
        /// The layout or archive.
        location: PathBuf,
        /// How many candidates.
        count: usize,
        /// Their names.
        available: Vec<String>,
    },
    /// An index has no manifest for the platform.
    #[error(
        "index {index} has no image for platform {platform}; it has: {}",
        list_or_none(available)
    )]
    NoPlatformMatch {
        /// The index searched.
        index: Digest,
        /// The platform asked for.
        platform: String,
        /// The platforms it offers.
        available: Vec<String>,
    },
    /// A descriptor points to content of the wrong kind.
    #[error("{digest} has media type `{media_type}`, expected {expected}")]
    UnexpectedMediaType {
        /// The blob.
        digest: Digest,
        /// Its media type.
        media_type: MediaType,
        /// What was needed.
        expected: &'static str,
    },
    /// A JSON blob is larger than kiln reads into memory.
    #[error(
        "{digest} is {size} bytes, larger than the {limit}-byte limit for manifests and configs"
    )]
    TooLarge {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Indexes nest deeper than kiln follows (probably a loop).
    #[error("index {digest} nests more than {MAX_INDEX_DEPTH} indexes deep")]
    NestingTooDeep {
        /// The index at the limit.
        digest: Digest,
    },
    /// The destination exists and is not something kiln may replace.
    #[error("refusing to overwrite {}: {reason}", path.display())]
    DestinationExists {
        /// The destination.
        path: PathBuf,
        /// Why it is not replaced.
        reason: &'static str,
    },
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

pub(crate) fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LayoutError {
    let path = path.to_owned();
    move |source| LayoutError::Io {
        action,
        path,
        source,
    }
}

/// One platform's image, resolved: its manifest and config as stored (original bytes).
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The descriptor of the manifest (from the index entry, when there was one).
    pub descriptor: Descriptor,
    /// The manifest.
    pub manifest: JsonBlob<ImageManifest>,
    /// The image configuration.
    pub config: JsonBlob<ImageConfiguration>,
}

/// Reads a JSON blob of `descriptor` from `source`, checking size and digest.
pub fn read_json_blob<T: serde::de::DeserializeOwned>(
    source: &dyn BlobSource,
    descriptor: &Descriptor,
) -> Result<JsonBlob<T>, LayoutError> {
    if descriptor.size > MAX_JSON_BLOB_SIZE {
        return Err(LayoutError::TooLarge {
            digest: descriptor.digest.clone(),
            size: descriptor.size,
            limit: MAX_JSON_BLOB_SIZE,
        });
    }
    let mut bytes = Vec::new();
    let reader = source.open_blob(&descriptor.digest)?;
    reader
        .take(MAX_JSON_BLOB_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| BlobError::Io {
            action: "reading blob",
            path: PathBuf::from(descriptor.digest.to_string()),
            source,
        })?;
    if bytes.len() as u64 != descriptor.size {
        return Err(BlobError::SizeMismatch {
            digest: descriptor.digest.clone(),
            expected: descriptor.size,
            actual: bytes.len() as u64,
        }
        .into());
    }
    let blob = JsonBlob::parse(bytes)?;
    if blob.digest() != &descriptor.digest {
        return Err(BlobError::DigestMismatch {
            expected: descriptor.digest.clone(),
            actual: blob.digest().clone(),
        }
        .into());
    }
    Ok(blob)
}

/// Follows `top` (a manifest, or an index of manifests) to the image for `platform` (the
/// host platform when `None`; an index with a single image manifest needs no match), and
/// reads its manifest and config.
pub fn resolve_image(
    source: &dyn BlobSource,
    top: &Descriptor,
    platform: Option<&Platform>,
) -> Result<ResolvedImage, LayoutError> {
    let mut current = top.clone();
    for _ in 0..=MAX_INDEX_DEPTH {
        if current.media_type.is_index() {
            let index: JsonBlob<ImageIndex> = read_json_blob(source, &current)?;
            index.value().validate()?;
            current = pick_from_index(index.value(), &current.digest, platform)?.clone();
            continue;
        }
        if !current.media_type.is_manifest() {
            return Err(LayoutError::UnexpectedMediaType {
                digest: current.digest.clone(),
                media_type: current.media_type.clone(),
                expected: "an image manifest or index",
            });
        }
        let manifest: JsonBlob<ImageManifest> = read_json_blob(source, &current)?;
        manifest.value().validate()?;
        let config_descriptor = &manifest.value().config;
        if !config_descriptor.media_type.is_config() {
            return Err(LayoutError::UnexpectedMediaType {
                digest: config_descriptor.digest.clone(),
                media_type: config_descriptor.media_type.clone(),
                expected: "an image config",
            });
        }
        let config: JsonBlob<ImageConfiguration> = read_json_blob(source, config_descriptor)?;
        config.value().validate()?;
        let (diff_ids, layers) = (
            config.value().rootfs.diff_ids.len(),
            manifest.value().layers.len(),
        );
        if diff_ids != layers {
            return Err(ModelError::LayerCountMismatch { diff_ids, layers }.into());
        }
        return Ok(ResolvedImage {
            descriptor: current,
            manifest,
            config,
        });
    }
    Err(LayoutError::NestingTooDeep {
        digest: current.digest,
    })
}

fn pick_from_index<'a>(
    index: &'a ImageIndex,
    digest: &Digest,
    platform: Option<&Platform>,
) -> Result<&'a Descriptor, LayoutError> {
    let images: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| {
            (d.media_type.is_manifest() || d.media_type.is_index())
                && !d
                    .annotations
                    .contains_key(crate::ANNOTATION_DOCKER_REFERENCE_TYPE)
        })
        .collect();
    if platform.is_none()
        && let [only] = images.as_slice()
    {
        return Ok(only);
    }
    let wanted = platform.cloned().unwrap_or_else(Platform::host);
    if let Some(found) = index.select_platform(&wanted) {
        return Ok(found);
    }
    // A nested index without a platform (e.g. an OCI layout's index.json pointing to a
    // multi-platform index) is followed.
    if let Some(nested) = images
        .iter()
        .find(|d| d.media_type.is_index() && d.platform.is_none())
    {
        return Ok(nested);
    }
    Err(LayoutError::NoPlatformMatch {
        index: digest.clone(),
        platform: wanted.to_string(),
        available: images
            .iter()
            .filter_map(|d| d.platform.as_ref().map(ToString::to_string))
            .collect(),
    })
}

/// Finds the entry of a layout's top-level index named `name`: a tag
/// (`org.opencontainers.image.ref.name`), a full name (`io.containerd.image.name`) or a
/// digest. With no name, the index must hold exactly one entry.
pub fn find_in_index<'a>(
    index: &'a ImageIndex,
    name: Option<&str>,
    location: &Path,
) -> Result<&'a Descriptor, LayoutError> {
    let available = || {
        index
            .manifests
            .iter()
            .map(|d| {
                d.image_name()
                    .or_else(|| d.ref_name())
                    .map_or_else(|| d.digest.to_string(), str::to_owned)
            })
            .collect::<Vec<_>>()
    };
    let Some(name) = name else {
        return match index.manifests.as_slice() {
            [only] => Ok(only),
            many => Err(LayoutError::AmbiguousImage {
                location: location.to_owned(),
                count: many.len(),
                available: available(),
            }),
        };
    };
    index
        .manifests
        .iter()
        .find(|d| d.ref_name() == Some(name) || d.image_name() == Some(name))
        .or_else(|| {
            index
                .manifests
                .iter()
                .find(|d| d.digest.to_string() == name)
        })
        .ok_or_else(|| LayoutError::ImageNotFound {
            name: name.to_owned(),
            location: location.to_owned(),
            available: available(),
        })
}

/// Path of a blob inside a layout: `blobs/<algorithm>/<hex>`.
pub fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().as_str(), digest.hex())
}

/// An OCI image layout directory opened for reading.
#[derive(Debug)]
pub struct OciLayout {
    root: PathBuf,
    index: JsonBlob<ImageIndex>,
}

impl OciLayout {
    /// Opens the layout at `root`: checks `oci-layout` and reads `index.json`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, LayoutError> {
        let root = root.into();
        let malformed = |reason: String| LayoutError::Malformed {
            path: root.clone(),
            format: "OCI layout",
            reason,
        };
        let header_path = root.join(OCI_LAYOUT_FILE);
        let header = fs_err::read(&header_path).map_err(|e| malformed(e.to_string()))?;
        check_layout_header(&header).map_err(|e| malformed(e.to_string()))?;
        let index_path = root.join(INDEX_JSON_FILE);
        let bytes = read_limited(&index_path)?;
        let index = JsonBlob::<ImageIndex>::parse(bytes)?;
        index.value().validate()?;
        Ok(Self { root, index })
    }

    /// The layout directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The top-level `index.json`.
    pub fn index(&self) -> &ImageIndex {
        self.index.value()
    }

    /// The entry named `name` (tag, full name or digest; `None`: the only entry).
    pub fn find(&self, name: Option<&str>) -> Result<&Descriptor, LayoutError> {
        find_in_index(self.index.value(), name, &self.root)
    }

    /// The image named `name` for `platform` (see [`resolve_image`]).
    pub fn resolve(
        &self,
        name: Option<&str>,
        platform: Option<&Platform>,
    ) -> Result<ResolvedImage, LayoutError> {
        let top = self.find(name)?.clone();
        resolve_image(self, &top, platform)
    }

    fn blob_file(&self, digest: &Digest) -> PathBuf {
        self.root.join(blob_path(digest))
    }
}

impl BlobSource for OciLayout {
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, BlobError> {
        let path = self.blob_file(digest);
        match fs_err::File::open(&path) {
            Ok(file) => Ok(Box::new(file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(BlobError::NotFound {
                digest: digest.clone(),
            }),
            Err(source) => Err(BlobError::Fs(source)),
        }
    }

    fn blob_len(&self, digest: &Digest) -> Result<u64, BlobError> {
        let path = self.blob_file(digest);
        match fs_err::metadata(&path) {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(BlobError::NotFound {
                digest: digest.clone(),
            }),
            Err(source) => Err(BlobError::Fs(source)),
        }
    }
}

/// Why an `oci-layout` file is refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LayoutHeaderError {
    #[error("{OCI_LAYOUT_FILE} is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("unsupported imageLayoutVersion `{0}` (only {IMAGE_LAYOUT_VERSION} is supported)")]
    UnsupportedVersion(String),
    #[error("{OCI_LAYOUT_FILE} has no imageLayoutVersion")]
    NoVersion,
}

/// Checks an `oci-layout` file: `{"imageLayoutVersion": "1.0.0"}`.
pub(crate) fn check_layout_header(bytes: &[u8]) -> Result<(), LayoutHeaderError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(LayoutHeaderError::NotJson)?;
    match value
        .get("imageLayoutVersion")
        .and_then(serde_json::Value::as_str)
    {
        Some(IMAGE_LAYOUT_VERSION) => Ok(()),
        Some(other) => Err(LayoutHeaderError::UnsupportedVersion(other.to_owned())),
        None => Err(LayoutHeaderError::NoVersion),
    }
}

fn read_limited(path: &Path) -> Result<Vec<u8>, LayoutError> {
    let file = fs_err::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_JSON_BLOB_SIZE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_JSON_BLOB_SIZE {
        return Err(LayoutError::Malformed {
            path: path.to_owned(),
            format: "OCI layout",
            reason: format!("larger than {MAX_JSON_BLOB_SIZE} bytes"),
        });
    }
    Ok(bytes)
}
