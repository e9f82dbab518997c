#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

#[cfg(feature = "codec")]
mod archive_read;
mod assemble;
mod blob;
mod canonical;
#[cfg(feature = "codec")]
mod compress;
mod config;
mod descriptor;
mod digest;
#[cfg(feature = "codec")]
mod extract;
mod index;
#[cfg(feature = "codec")]
mod layer;
#[cfg(feature = "codec")]
mod layout;
#[cfg(feature = "codec")]
mod layout_write;
mod manifest;
mod media_type;
mod platform;
mod reference;
mod slash_path;
mod timestamp;

#[cfg(feature = "codec")]
pub use archive_read::{DockerArchive, DockerArchiveImage, OciArchive, TarArchive};
pub use assemble::{AssembleError, AssembledImage, ManifestFormat, MemoryBlobs, assemble_image};
pub use blob::{BlobError, BlobIngest, BlobSink, BlobSource};
pub use canonical::{JsonBlob, JsonError, to_canonical_json};
#[cfg(feature = "codec")]
pub use compress::{
    CompressWriter, Compression, DEFAULT_GZIP_LEVEL, DEFAULT_ZSTD_LEVEL, ParallelGzipWriter,
    decompress, default_threads, detect_compression,
};
pub use config::{
    ContainerConfig, Healthcheck, History, ImageConfiguration, ROOTFS_TYPE_LAYERS, RootFs,
};
pub use descriptor::{
    ANNOTATION_BASE_DIGEST, ANNOTATION_BASE_NAME, ANNOTATION_CREATED, ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME, Descriptor,
};
pub use digest::{Algorithm, ChainId, DiffId, Digest, DigestError, Sha256Hasher};
#[cfg(feature = "codec")]
pub use extract::{
    DEFAULT_MAX_ENTRY_SIZE, DevicePolicy, ExtractError, ExtractErrorKind, ExtractOptions,
    ExtractStats, MAX_EXTENSION_HEADER_SIZE, OverlayXattrs, WhiteoutPolicy, XattrPolicy,
    extract_layer,
};
pub use index::{ANNOTATION_DOCKER_REFERENCE_TYPE, ImageIndex};
#[cfg(feature = "codec")]
pub use layer::{
    DiffTar, EntrySource, FileListTar, LayerDigests, LayerEntry, LayerError, LayerWriter,
    OPAQUE_MARKER, TarSummary, WHITEOUT_PREFIX, layer_xattrs,
};
#[cfg(feature = "codec")]
pub use layout::{
    IMAGE_LAYOUT_VERSION, INDEX_JSON_FILE, LayoutError, MAX_JSON_BLOB_SIZE, OCI_LAYOUT_FILE,
    OciLayout, ResolvedImage, blob_path, find_in_index, read_json_blob, resolve_image,
};
#[cfg(feature = "codec")]
pub use layout_write::{
    ArchiveOptions, DOCKER_MANIFEST_FILE, DOCKER_REPOSITORIES_FILE, DockerArchiveEntry,
    ExportImage, collect_blobs, normalize_image_name, ref_name_of, write_docker_archive,
    write_docker_archive_to, write_oci_archive, write_oci_archive_to, write_oci_layout_dir,
};
pub use manifest::{AnyManifest, AnyManifestError, ImageManifest, ModelError, SCHEMA_VERSION};
pub use media_type::{LayerCompression, MediaType};
pub use platform::{Platform, PlatformError};
pub use reference::{DEFAULT_TAG, DOCKER_HUB, DOCKER_HUB_API_HOST, ImageRef, ReferenceError};
pub use slash_path::{clean_path, clean_rel};
pub use timestamp::{parse_rfc3339, rfc3339_utc, rfc3339_utc_nanos};
