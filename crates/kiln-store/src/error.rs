//! The store's error type: every variant names the path, digest or name it concerns and,
//! where one exists, what to do about it.

use std::io;
use std::path::PathBuf;

use kiln_oci::{BlobError, ChainId, Digest};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file operation failed (fs_err's message names the path).
    #[error(transparent)]
    Fs(#[from] io::Error),
    /// An I/O error on a named file or directory, from an operation whose error does not
    /// name it (a lock, an encoder, a write through a temp file's handle).
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done (`creating`, `renaming`, `reading ref`, …).
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The store was created by another kiln with an incompatible layout.
    #[error(
        "store {} has layout version {found}, but this kiln understands version {expected}; \
         use a kiln that matches it, or point KILN_ROOT/--root at another directory",
        root.display()
    )]
    LayoutVersion {
        /// The store root.
        root: PathBuf,
        /// What `layout-version` says.
        found: String,
        /// What this build of kiln writes.
        expected: &'static str,
    },
    /// A blob was missing, truncated or did not match its digest.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// No image of that name is in the store.
    #[error("image `{name}` not found in the local store (see `kiln images`)")]
    RefNotFound {
        /// The name.
        name: kiln_oci::ImageRef,
    },
    /// The image name is not a valid reference.
    #[error(transparent)]
    InvalidName(#[from] kiln_oci::ReferenceError),
    /// A file of the store (ref, record, manifest) is not the JSON it should be.
    #[error("{} is not valid {what}: {source}; run `kiln store verify --repair`", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What it should contain.
        what: &'static str,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A cache key is not a lowercase hex string.
    #[error("invalid cache key `{key}`: expected lowercase hex characters only")]
    InvalidCacheKey {
        /// The offending key.
        key: String,
    },
    /// A cache mount id would escape the mounts directory.
    #[error("invalid cache mount id `{id}`: {reason}")]
    InvalidMountId {
        /// The offending id.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Unpacking a layer into a snapshot failed.
    #[error("unpacking layer {layer} into snapshot {chain}: {reason}")]
    Snapshot {
        /// The snapshot being created.
        chain: ChainId,
        /// The layer blob.
        layer: Digest,
        /// Why it failed.
        reason: String,
    },
    /// Applying a layer onto a directory ([`crate::Store::flatten_to`]) failed.
    #[error("applying layer {layer} onto {}: {reason}", dir.display())]
    Flatten {
        /// The layer blob.
        layer: Digest,
        /// The directory being filled.
        dir: std::path::PathBuf,
        /// Why it failed.
        reason: String,
    },
    /// A layer's media type names a compression the store cannot read.
    #[error("layer {layer} has media type `{media_type}`, which kiln cannot unpack")]
    UnsupportedLayer {
        /// The layer blob.
        layer: Digest,
        /// Its media type.
        media_type: String,
    },
    /// An image's manifest, index or config could not be read.
    #[error("reading image {digest}: {reason}")]
    Image {
        /// The manifest or index.
        digest: Digest,
        /// Why.
        reason: String,
    },
    /// A tree written by rootless RUN steps or containers could not be removed: its files
    /// belong to subordinate ids, and removing it inside a user namespace failed too.
    #[error(
        "cannot remove {}: {source}; its files belong to the subordinate ids of rootless RUN \
         steps, and removing it inside a user namespace failed: {reason}",
        path.display()
    )]
    RemoveRootless {
        /// The tree.
        path: PathBuf,
        /// Why the plain removal failed.
        #[source]
        source: io::Error,
        /// Why the removal in a user namespace failed.
        reason: crate::RootlessRemovalError,
    },
    /// A snapshot was asked for that does not exist.
    #[error("snapshot {chain} not found in the store; unpack its layers first")]
    SnapshotNotFound {
        /// The chain id.
        chain: ChainId,
    },
}

impl StoreError {
    /// Wraps an I/O error with its action and path.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Adds `.at(action, path)` to `io::Result`.
pub(crate) trait IoContext<T> {
    fn at(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T, StoreError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::io(action, path, source))
    }
}
