//! Layer codec, writing side: deterministic tar streams from an overlay upperdir
//! ([`DiffTar`]) or from a list of files ([`FileListTar`]), and the [`LayerWriter`] that
//! compresses such a stream while computing its diffID and blob digest in one pass.
//!
//! ```text
//! DiffTar / FileListTar ──tar──▶ LayerWriter ──▶ sha256 (diffID)
//!                                   └──▶ gzip/zstd ──▶ sha256 (digest) ──▶ any Write
//! ```
//! Nothing is buffered beyond a few compression blocks: peak memory does not depend on the
//! size of the layer.

mod diff;
mod file_list;
mod source;
mod tar_encode;
pub(crate) mod whiteout;

use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::path::PathBuf;

pub use diff::DiffTar;
pub use file_list::{EntrySource, FileListTar, LayerEntry};
pub use source::layer_xattrs;
pub use tar_encode::TarSummary;
pub use whiteout::{OPAQUE_MARKER, WHITEOUT_PREFIX};

use crate::compress::{CompressWriter, Compression, default_threads};
use crate::{DiffId, Digest, Sha256Hasher};

/// Why a layer tar could not be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// A file operation on the source tree failed (fs_err's message names the path).
    #[error(transparent)]
    Fs(io::Error),
    /// Reading the source tree failed, in an operation whose error does not name the path.
    #[error("{action} {}: {source}", path.display())]
    Source {
        /// What was being done (`reading`, `listing xattrs of`, …).
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Writing the layer stream failed (disk full, closed pipe, compressor error).
    #[error("writing the layer stream (at entry `{entry}`): {source}")]
    Output {
        /// The layer path being written.
        entry: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file changed size while it was being archived.
    #[error("{} changed while it was archived: expected {expected} bytes, read {actual}; is something still writing to it?", path.display())]
    FileChanged {
        /// The file.
        path: PathBuf,
        /// Its size when stat'ed.
        expected: u64,
        /// What could be read.
        actual: u64,
    },
    /// The upperdir uses an overlayfs feature that keeps data in the lower layers
    /// (redirect_dir, metacopy): its diff cannot be taken from the upperdir alone.
    #[error("{} carries the overlayfs xattr `{xattr}`: mount the overlay with redirect_dir=off,metacopy=off to take layer diffs", path.display())]
    UnsupportedOverlayFeature {
        /// The file or directory.
        path: PathBuf,
        /// The xattr found.
        xattr: String,
    },
    /// An entry path of a file list is not a clean relative path.
    #[error("invalid layer path `{path}`: {reason}")]
    InvalidEntryPath {
        /// The path as given.
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Two entries of a file list have the same path.
    #[error("layer path `{path}` is listed twice")]
    DuplicateEntry {
        /// The path.
        path: String,
    },
    /// A hard link of a file list whose target is not an earlier non-directory entry (a tar
    /// hard link can only point back to an entry already written).
    #[error(
        "hard link `{path}` points to `{target}`, which is not a file listed before it in layer order (depth-first, names sorted by bytes)"
    )]
    HardlinkTarget {
        /// The link's layer path.
        path: String,
        /// The target as given.
        target: String,
    },
    /// A value that no tar format can carry (a device number above 2^21).
    #[error("cannot encode `{entry}` in a tar header: {reason}")]
    Unencodable {
        /// The layer path.
        entry: String,
        /// What does not fit.
        reason: &'static str,
    },
}

/// Digests and sizes of a layer written by [`LayerWriter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDigests {
    /// sha256 of the uncompressed tar: the image config's `rootfs.diff_ids` entry.
    pub diff_id: DiffId,
    /// sha256 of the blob as written (compressed): the manifest's layer descriptor digest.
    pub digest: Digest,
    /// Length of the blob as written.
    pub size: u64,
    /// Length of the uncompressed tar.
    pub uncompressed_size: u64,
    /// How the blob is compressed.
    pub compression: Compression,
}

/// Hashes and counts the bytes passing into the inner writer.
#[derive(Debug)]
struct DigestingWriter<W> {
    inner: W,
    hasher: Sha256Hasher,
    /// Off for uncompressed layers, whose blob digest is the diffID: one hash pass, not two.
    is_hashing: bool,
    written: u64,
}

impl<W: Write> Write for DigestingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if self.is_hashing {
            self.hasher.update(&buf[..n]);
        }
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Compresses a tar stream into any writer while computing, in the same pass, the diffID
/// (sha256 of the tar) and the blob digest (sha256 of the compressed bytes).
///
/// ```
/// use std::io::Write;
/// use kiln_oci::{Compression, LayerWriter};
/// let mut w = LayerWriter::new(Vec::new(), Compression::gzip())?;
/// w.write_all(&[0u8; 1024])?; // an empty tar
/// let (blob, digests) = w.finish()?;
/// assert_eq!(digests.size, blob.len() as u64);
/// assert_eq!(digests.uncompressed_size, 1024);
/// # std::io::Result::Ok(())
/// ```
#[derive(Debug)]
pub struct LayerWriter<W: Write> {
    encoder: CompressWriter<DigestingWriter<W>>,
    diff: Sha256Hasher,
    compression: Compression,
}

impl<W: Write> LayerWriter<W> {
    /// A writer compressing with as many threads as the machine has cores.
    pub fn new(out: W, compression: Compression) -> io::Result<Self> {
        Self::with_threads(out, compression, default_threads())
    }

    /// A writer compressing with `threads` threads; the output does not depend on it.
    pub fn with_threads(
        out: W,
        compression: Compression,
        threads: NonZeroUsize,
    ) -> io::Result<Self> {
        let sink = DigestingWriter {
            inner: out,
            hasher: Sha256Hasher::new(),
            is_hashing: compression != Compression::None,
            written: 0,
        };
        Ok(Self {
            encoder: CompressWriter::new(sink, compression, threads)?,
            diff: Sha256Hasher::new(),
            compression,
        })
    }

    /// Ends the compressed stream; returns the output writer and the layer's digests.
    pub fn finish(self) -> io::Result<(W, LayerDigests)> {
        let sink = self.encoder.finish()?;
        let uncompressed_size = self.diff.len();
        let diff_id = DiffId(self.diff.finish());
        let digest = if sink.is_hashing {
            sink.hasher.finish()
        } else {
            diff_id.0.clone()
        };
        let digests = LayerDigests {
            diff_id,
            digest,
            size: sink.written,
            uncompressed_size,
            compression: self.compression,
        };
        Ok((sink.inner, digests))
    }
}

impl<W: Write> Write for LayerWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.encoder.write(buf)?;
        self.diff.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.encoder.flush()
    }
}

/// Clamps a modification time to SOURCE_DATE_EPOCH, as BuildKit does with
/// `rewrite-timestamp`: files newer than the epoch get the epoch, older ones keep theirs.
fn clamp_mtime(mtime: i64, source_date_epoch: Option<i64>) -> i64 {
    source_date_epoch.map_or(mtime, |epoch| mtime.min(epoch))
}
