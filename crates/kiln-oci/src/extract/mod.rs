//! Layer codec, reading side: hardened extraction of a layer (gzip, zstd or plain tar,
//! detected) into a directory, applying whiteouts and opaque directories, or keeping them in
//! overlayfs form ([`WhiteoutPolicy`]).
//!
//! Safety rules, each covered by the malicious-tar corpus (`tests/malicious_tar.rs`):
//! - entry names are cleaned: a leading `/` is dropped, `..` that would climb above the root
//!   is refused, NUL bytes are refused;
//! - parent directories are resolved inside the root (`resolve.rs`): symlinks, absolute or
//!   relative, cannot lead outside; the final component is never followed;
//! - hard links must point at an existing non-directory inside the root;
//! - device nodes obey [`DevicePolicy`]; setuid/setgid bits can be stripped;
//! - entry and extension-header sizes are bounded, and so is the layer's total content;
//!   whatever the [`WhiteoutPolicy`], the stream is read once, through the same limits.
//!
//! Neighbours: [`crate::decompress`] picks the decoder, the store unpacks snapshots with it.

mod apply;
mod resolve;
mod tar_reader;

use std::collections::HashSet;
use std::io::{self, Read};
use std::path::Path;

use crate::{DiffId, LayerCompression, Sha256Hasher};
use apply::Extractor;
use tar_reader::{ReadError, ReaderLimits, TarReader};

/// What to do with character and block device entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DevicePolicy {
    /// Create them (needs CAP_MKNOD).
    #[default]
    Create,
    /// Leave them out, counting them in [`ExtractStats::devices_skipped`].
    Skip,
    /// Fail the extraction.
    Refuse,
}

/// What to do when an xattr cannot be set (unsupported filesystem, `security.*` without
/// privilege).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XattrPolicy {
    /// Set them, count failures in [`ExtractStats::xattrs_failed`].
    #[default]
    BestEffort,
    /// Set them, fail the extraction on the first failure.
    Strict,
    /// Do not set xattrs.
    Skip,
}

/// What to do with whiteout entries (`.wh.NAME`, `DIR/.wh..wh..opq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhiteoutPolicy {
    /// Apply them to what is below: delete `NAME`, empty `DIR` of everything this layer did
    /// not write (a root filesystem built layer by layer).
    #[default]
    Apply,
    /// Apply them, then keep them in overlayfs form, for a directory used as an overlay lower
    /// dir that holds one layer: `.wh.NAME` becomes a 0/0 character device `NAME` (creating
    /// one needs root, a user namespace or Linux ≥ 5.8), and an opaque `DIR` gets the xattr
    /// `overlay.opaque=y` in the given namespace. A whiteout whose parent is not a real
    /// directory (missing, or a symlink) is left out and counted in
    /// [`ExtractStats::whiteouts_skipped`]: overlayfs could not use it there.
    Overlay(OverlayXattrs),
}

/// The xattr namespace of overlayfs' own xattrs: `trusted.` as root, `user.` when the
/// overlay is mounted with `userxattr` (in a user namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlayXattrs {
    /// `trusted.overlay.*`.
    Trusted,
    /// `user.overlay.*`.
    User,
}

impl OverlayXattrs {
    /// The name of the opaque-directory xattr in this namespace.
    pub fn opaque(self) -> &'static str {
        match self {
            Self::Trusted => "trusted.overlay.opaque",
            Self::User => "user.overlay.opaque",
        }
    }
}

/// Default [`ExtractOptions::max_entry_size`]: 64 GiB.
pub const DEFAULT_MAX_ENTRY_SIZE: u64 = 64 << 30;
/// Limit on PAX and GNU long-name headers: 1 MiB is far above any real path or xattr set.
pub const MAX_EXTENSION_HEADER_SIZE: u64 = 1 << 20;

/// Options of [`extract_layer`]; build with [`ExtractOptions::new`] and the setters.
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    pub(crate) layer: String,
    pub(crate) devices: DevicePolicy,
    pub(crate) xattrs: XattrPolicy,
    pub(crate) whiteouts: WhiteoutPolicy,
    pub(crate) is_stripping_setid: bool,
    pub(crate) is_chowning: bool,
    pub(crate) max_entry_size: u64,
    pub(crate) max_total_size: u64,
    pub(crate) is_forcing_userspace_resolver: bool,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        Self {
            layer: "layer".to_owned(),
            devices: DevicePolicy::default(),
            xattrs: XattrPolicy::default(),
            whiteouts: WhiteoutPolicy::default(),
            is_stripping_setid: false,
            is_chowning: rustix::process::geteuid().is_root(),
            max_entry_size: DEFAULT_MAX_ENTRY_SIZE,
            max_total_size: u64::MAX,
            is_forcing_userspace_resolver: false,
        }
    }
}

impl ExtractOptions {
    /// Defaults: devices created, xattrs best effort, owners set when running as root.
    pub fn new() -> Self {
        Self::default()
    }

    /// How the layer is named in errors (its digest, a file name).
    #[must_use]
    pub fn layer_name(mut self, name: impl Into<String>) -> Self {
        self.layer = name.into();
        self
    }

    /// Device node policy.
    #[must_use]
    pub fn devices(mut self, policy: DevicePolicy) -> Self {
        self.devices = policy;
        self
    }

    /// Xattr policy.
    #[must_use]
    pub fn xattrs(mut self, policy: XattrPolicy) -> Self {
        self.xattrs = policy;
        self
    }

    /// Whiteout policy.
    #[must_use]
    pub fn whiteouts(mut self, policy: WhiteoutPolicy) -> Self {
        self.whiteouts = policy;
        self
    }

    /// Clears setuid and setgid bits of every entry.
    #[must_use]
    pub fn strip_setid(mut self, yes: bool) -> Self {
        self.is_stripping_setid = yes;
        self
    }

    /// Whether to set owners from the archive (default: when running as root).
    #[must_use]
    pub fn chown(mut self, yes: bool) -> Self {
        self.is_chowning = yes;
        self
    }

    /// Refuses entries larger than `bytes`.
    #[must_use]
    pub fn max_entry_size(mut self, bytes: u64) -> Self {
        self.max_entry_size = bytes;
        self
    }

    /// Refuses layers whose file contents add up to more than `bytes`.
    #[must_use]
    pub fn max_total_size(mut self, bytes: u64) -> Self {
        self.max_total_size = bytes;
        self
    }

    /// Uses the userspace in-root resolver even where `openat2` works (tests, debugging).
    #[must_use]
    pub fn force_userspace_resolver(mut self, yes: bool) -> Self {
        self.is_forcing_userspace_resolver = yes;
        self
    }
}

/// What an extraction did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExtractStats {
    /// Compression detected.
    pub compression: LayerCompression,
    /// sha256 of the uncompressed stream (verify it against the config's diff_ids).
    pub diff_id: DiffId,
    /// Tar entries read (whiteouts included).
    pub entries: u64,
    /// Regular files written.
    pub files: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hard links created.
    pub hardlinks: u64,
    /// Device nodes and fifos created.
    pub special_files: u64,
    /// Device nodes left out ([`DevicePolicy::Skip`]).
    pub devices_skipped: u64,
    /// `.wh.NAME` entries applied.
    pub whiteouts: u64,
    /// `.wh..wh..opq` entries applied.
    pub opaque_dirs: u64,
    /// Whiteouts and opaque markers not kept in overlay form ([`WhiteoutPolicy::Overlay`])
    /// because their directory is missing or a symlink at the end of the layer.
    pub whiteouts_skipped: u64,
    /// Xattrs that could not be set ([`XattrPolicy::BestEffort`]) or were refused (overlay's).
    pub xattrs_failed: u64,
    /// File content bytes written.
    pub content_bytes: u64,
    /// Whether paths were resolved with the kernel's `openat2(RESOLVE_IN_ROOT)`.
    pub used_openat2: bool,
}

/// Why an extraction stopped. Entries before the failing one are on disk.
#[derive(Debug, thiserror::Error)]
#[error("extracting {layer}{}: {kind}", entry.as_ref().map(|e| format!(", entry `{e}`")).unwrap_or_default())]
pub struct ExtractError {
    /// The layer (see [`ExtractOptions::layer_name`]).
    pub layer: String,
    /// The entry concerned, when there is one.
    pub entry: Option<String>,
    /// What went wrong.
    #[source]
    pub kind: ExtractErrorKind,
}

/// The reason of an [`ExtractError`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractErrorKind {
    /// The target directory cannot be opened.
    #[error("cannot open the target directory {}: {source}", path.display())]
    Target {
        /// The directory.
        path: std::path::PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Reading or decompressing the stream failed.
    #[error("reading the layer stream: {0}")]
    Read(#[source] io::Error),
    /// The stream is not a well-formed tar.
    #[error("corrupt archive at byte {offset}: {reason}")]
    Corrupt {
        /// Offset in the uncompressed stream.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An entry or header is larger than allowed.
    #[error("{what} of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The entry name climbs out of the root with `..`.
    #[error("the path escapes the target directory")]
    PathEscapes,
    /// The entry name is unusable (NUL byte, empty whiteout target, `.`/`..` whiteout).
    #[error("invalid entry name: {0}")]
    InvalidName(&'static str),
    /// A hard link to a path outside the root (`..`).
    #[error("hard link target `{target}` escapes the target directory")]
    HardlinkEscapes {
        /// The link target as written.
        target: String,
    },
    /// A hard link to a path that does not exist (or is a directory).
    #[error(
        "hard link target `{target}` does not exist in the layer or below it, or is a directory"
    )]
    HardlinkTargetMissing {
        /// The link target as written.
        target: String,
    },
    /// A parent of the entry is not a directory (or a symlink to a missing one).
    #[error("a parent directory cannot be used: {0}")]
    BadParent(#[source] io::Error),
    /// A device node while [`DevicePolicy::Refuse`].
    #[error("device nodes are not permitted in this layer")]
    DeviceRefused,
    /// An entry type kiln does not extract.
    #[error("unsupported tar entry type `{}` (GNU sparse files and vendor types are not extracted)", char::from(*.0))]
    UnsupportedType(u8),
    /// An owner id above 2^32.
    #[error("owner id {0} does not fit a Linux uid/gid")]
    BadOwner(u64),
    /// A filesystem operation failed.
    #[error("{action}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Setting an xattr failed while [`XattrPolicy::Strict`].
    #[error("setting xattr `{name}`: {source}")]
    Xattr {
        /// The xattr.
        name: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Hashes what passes through: the diffID of the uncompressed stream.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Extracts one layer into `target` (an existing directory), on top of what is there.
///
/// ```
/// use kiln_oci::{EntrySource, ExtractOptions, FileListTar, LayerEntry, extract_layer};
/// let mut tar = Vec::new();
/// FileListTar::new()
///     .entry(LayerEntry::new("etc/motd", EntrySource::Bytes(b"hi\n".to_vec())))
///     .write_to(&mut tar)?;
/// let root = tempfile::tempdir()?;
/// let stats = extract_layer(&tar[..], root.path(), &ExtractOptions::new().chown(false))?;
/// assert_eq!(std::fs::read(root.path().join("etc/motd"))?, b"hi\n");
/// assert_eq!(stats.files, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn extract_layer<R: Read + Send>(
    reader: R,
    target: &Path,
    options: &ExtractOptions,
) -> Result<ExtractStats, ExtractError> {
    let fail = |entry: Option<String>, kind| ExtractError {
        layer: options.layer.clone(),
        entry,
        kind,
    };
    let (compression, decoded) =
        crate::decompress(reader).map_err(|e| fail(None, ExtractErrorKind::Read(e)))?;
    let hashing = HashingReader {
        inner: decoded,
        hasher: Sha256Hasher::new(),
    };
    let root =
        resolve::Root::open(target, options.is_forcing_userspace_resolver).map_err(|source| {
            fail(
                None,
                ExtractErrorKind::Target {
                    path: target.to_path_buf(),
                    source,
                },
            )
        })?;
    let limits = ReaderLimits {
        max_entry_size: options.max_entry_size,
        max_extension_size: MAX_EXTENSION_HEADER_SIZE,
    };
    let mut tar = TarReader::new(hashing, limits);
    let mut extractor = Extractor::new(&root, options);
    let mut total: u64 = 0;
    loop {
        let entry = match tar.next_entry() {
            Ok(Some(entry)) => entry,
            Ok(None) => break,
            Err(e) => return Err(fail(None, read_error_kind(e))),
        };
        let name = String::from_utf8_lossy(&entry.path).into_owned();
        total = total.saturating_add(entry.size);
        if total > options.max_total_size {
            return Err(fail(
                Some(name),
                ExtractErrorKind::TooLarge {
                    what: "layer content",
                    size: total,
                    limit: options.max_total_size,
                },
            ));
        }
        extractor
            .apply(&mut tar, &entry)
            .map_err(|kind| fail(Some(name), kind))?;
    }
    let mut stats = extractor
        .finish()
        .map_err(|(entry, kind)| fail(entry, kind))?;
    // Hash the end-of-archive blocks and anything after them: the diffID covers the stream.
    let mut rest = tar.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| fail(None, ExtractErrorKind::Read(e)))?;
    stats.compression = compression;
    stats.diff_id = DiffId(rest.hasher.finish());
    Ok(stats)
}

fn read_error_kind(e: ReadError) -> ExtractErrorKind {
    match e {
        ReadError::Io(e) => ExtractErrorKind::Read(e),
        ReadError::Corrupt { offset, reason } => ExtractErrorKind::Corrupt { offset, reason },
        ReadError::TooLarge { what, size, limit } => {
            ExtractErrorKind::TooLarge { what, size, limit }
        }
    }
}

/// Splits an entry name into clean components: empty and `.` parts dropped, `..` applied
/// lexically and refused when it climbs above the root, NUL refused.
fn clean_path(raw: &[u8]) -> Result<Vec<&[u8]>, ExtractErrorKind> {
    if raw.contains(&0) {
        return Err(ExtractErrorKind::InvalidName("NUL byte in the name"));
    }
    let mut out: Vec<&[u8]> = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err(ExtractErrorKind::PathEscapes);
                }
            }
            p => out.push(p),
        }
    }
    Ok(out)
}

/// The set of paths this layer wrote, for opaque directories whose marker comes after
/// their new entries.
type LayerPaths = HashSet<Vec<u8>>;
