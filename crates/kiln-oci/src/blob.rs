//! The seams through which blobs move between crates: a [`BlobSink`] verified-ingests
//! content (the store implements it; the registry client and layer writers write into it),
//! a [`BlobSource`] hands content out (the store implements it; exporters and pushes read it).
//!
//! Both are object-safe so `kiln-registry` never depends on `kiln-store` (DESIGN.md §3).

use std::io::{self, Read, Write};
use std::path::PathBuf;

use crate::Digest;

/// Why a blob could not be stored or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// The blob is not present.
    #[error("blob {digest} not found")]
    NotFound {
        /// The missing blob.
        digest: Digest,
    },
    /// The content hashed to something else than announced; nothing was stored.
    #[error(
        "blob content does not match its digest: expected {expected}, got {actual}; nothing was stored"
    )]
    DigestMismatch {
        /// The announced digest.
        expected: Digest,
        /// The digest of what was received.
        actual: Digest,
    },
    /// The content had another length than announced; nothing was stored.
    #[error("blob {digest} has {actual} bytes, expected {expected}; nothing was stored")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The announced size.
        expected: u64,
        /// The received size.
        actual: u64,
    },
    /// A file operation failed (fs_err's message names the path).
    #[error(transparent)]
    Fs(io::Error),
    /// An I/O error on a named file, from an operation that does not name it.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done (`writing blob`, `renaming`, …).
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// An in-progress, verified write of one blob. Dropping it without [`BlobIngest::commit`]
/// discards everything written: readers never see a partial blob.
pub trait BlobIngest: Write + Send {
    /// Bytes written so far (a resumed download continues from here with an HTTP Range).
    fn written(&self) -> u64;

    /// Verifies digest (and size, when announced), makes the blob durable and visible.
    fn commit(self: Box<Self>) -> Result<(), BlobError>;
}

/// Somewhere verified blobs can be written (the local store).
pub trait BlobSink: Send + Sync {
    /// Whether the blob is already present (a pull can skip it).
    fn has_blob(&self, digest: &Digest) -> bool;

    /// Starts writing the blob `expected` (of `size` bytes, when known).
    fn begin_ingest(
        &self,
        expected: &Digest,
        size: Option<u64>,
    ) -> Result<Box<dyn BlobIngest>, BlobError>;
}

/// Somewhere blobs can be read from (the local store, an OCI layout).
pub trait BlobSource: Send + Sync {
    /// Opens the blob for streaming.
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, BlobError>;

    /// The blob's length in bytes.
    fn blob_len(&self, digest: &Digest) -> Result<u64, BlobError>;
}
