//! The tar of a directory diff: an overlayfs upperdir (or any directory) → layer entries.
//!
//! Entries come depth-first with the names of each directory sorted by bytes (the order
//! BuildKit's differ walks in), so parents precede children and the same tree always gives
//! the same stream. Overlay whiteouts (0/0 character devices, `overlay.whiteout` files) become
//! `.wh.NAME` entries; opaque directories get a `.wh..wh..opq` entry right after their own.

use fs_err::os::unix::fs::OpenOptionsExt as _;
use std::collections::HashMap;
use std::fmt;
use std::fs::{File, Metadata};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::source::{device_numbers, is_layer_xattr, read_xattrs};
use super::tar_encode::{AppendError, EntryHeader, EntryKind, TarEncoder, TarSummary};
use super::whiteout::{OPAQUE_MARKER, OverlayXattr, WHITEOUT_PREFIX, overlay_xattr};
use super::{LayerError, clamp_mtime};

type ExcludeFn<'a> = Box<dyn Fn(&Path) -> bool + 'a>;

/// Builds the layer tar of a directory diff.
///
/// ```no_run
/// use kiln_oci::{Compression, DiffTar, LayerWriter};
/// let mut layer = LayerWriter::new(Vec::new(), Compression::zstd())?;
/// DiffTar::new("/run/kiln/upper")
///     .source_date_epoch(1_700_000_000)
///     .exclude(|p| p == std::path::Path::new("proc"))
///     .write_to(&mut layer)?;
/// let (_blob, digests) = layer.finish()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DiffTar<'a> {
    root: PathBuf,
    source_date_epoch: Option<i64>,
    exclude: Option<ExcludeFn<'a>>,
}

impl fmt::Debug for DiffTar<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiffTar")
            .field("root", &self.root)
            .field("source_date_epoch", &self.source_date_epoch)
            .field("has_exclude", &self.exclude.is_some())
            .finish()
    }
}

impl<'a> DiffTar<'a> {
    /// The diff of the directory `root` (its own metadata is not part of the layer).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            source_date_epoch: None,
            exclude: None,
        }
    }

    /// Clamps every mtime to `epoch` (SOURCE_DATE_EPOCH).
    #[must_use]
    pub fn source_date_epoch(mut self, epoch: i64) -> Self {
        self.source_date_epoch = Some(epoch);
        self
    }

    /// Leaves out the paths (relative to the root, e.g. `proc`, `run/secrets/x`) for which
    /// `exclude` is true, with everything below them: mountpoints the sandbox created.
    #[must_use]
    pub fn exclude(mut self, exclude: impl Fn(&Path) -> bool + 'a) -> Self {
        self.exclude = Some(Box::new(exclude));
        self
    }

    /// Writes the tar (end-of-archive included) into `out`.
    pub fn write_to<W: Write>(&self, out: W) -> Result<TarSummary, LayerError> {
        let mut encoder = TarEncoder::new(out);
        let mut first_links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
        let walker = walkdir::WalkDir::new(&self.root)
            .min_depth(1)
            .follow_links(false)
            .sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()))
            .into_iter()
            .filter_entry(|e| {
                let rel = e.path().strip_prefix(&self.root).unwrap_or(e.path());
                !self.exclude.as_ref().is_some_and(|f| f(rel))
            });
        for entry in walker {
            let entry = entry.map_err(|e| {
                let path = e
                    .path()
                    .map_or_else(|| self.root.clone(), Path::to_path_buf);
                LayerError::Source {
                    action: "walking",
                    source: e
                        .into_io_error()
                        .unwrap_or_else(|| std::io::Error::other("filesystem loop")),
                    path,
                }
            })?;
            let path = entry.path();
            let rel = path
                .strip_prefix(&self.root)
                .unwrap_or(path)
                .as_os_str()
                .as_bytes();
            let meta = entry.metadata().map_err(|e| LayerError::Source {
                action: "reading metadata of",
                path: path.to_path_buf(),
                source: e
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("walkdir")),
            })?;
            self.append_one(&mut encoder, path, rel, &meta, &mut first_links)?;
        }
        let (_, summary) = encoder.finish().map_err(|source| LayerError::Output {
            entry: "end of archive".to_owned(),
            source,
        })?;
        Ok(summary)
    }

    fn append_one<W: Write>(
        &self,
        encoder: &mut TarEncoder<W>,
        path: &Path,
        rel: &[u8],
        meta: &Metadata,
        first_links: &mut HashMap<(u64, u64), Vec<u8>>,
    ) -> Result<(), LayerError> {
        let ft = meta.file_type();
        if ft.is_socket() {
            // Sockets cannot be archived; Docker and BuildKit skip them too.
            return Ok(());
        }
        let mtime = clamp_mtime(meta.mtime(), self.source_date_epoch);
        if ft.is_char_device() && meta.rdev() == 0 {
            return append_whiteout(encoder, rel, mtime);
        }
        let all_xattrs = read_xattrs(path).map_err(|source| LayerError::Source {
            action: "reading xattrs of",
            path: path.to_path_buf(),
            source,
        })?;
        let mut is_opaque = false;
        let mut is_whiteout = false;
        for (name, value) in &all_xattrs {
            match overlay_xattr(name, value) {
                Some(OverlayXattr::Opaque) => is_opaque = ft.is_dir(),
                Some(OverlayXattr::Whiteout) => is_whiteout = ft.is_file(),
                Some(OverlayXattr::Unsupported) => {
                    return Err(LayerError::UnsupportedOverlayFeature {
                        path: path.to_path_buf(),
                        xattr: String::from_utf8_lossy(name).into_owned(),
                    });
                }
                Some(OverlayXattr::Ignored) | None => {}
            }
        }
        if is_whiteout {
            return append_whiteout(encoder, rel, mtime);
        }
        let xattrs: Vec<_> = all_xattrs
            .into_iter()
            .filter(|(n, _)| is_layer_xattr(n))
            .collect();

        let mut link_target = PathBuf::new();
        let mut file = None;
        let kind = disk_entry_kind(path, rel, meta, first_links, &mut link_target, &mut file)?;
        let header = EntryHeader {
            path: rel,
            kind,
            mode: meta.mode(),
            uid: u64::from(meta.uid()),
            gid: u64::from(meta.gid()),
            mtime,
            xattrs: &xattrs,
        };
        append(
            encoder,
            path,
            rel,
            &header,
            file.as_mut().map(|f| f as &mut dyn std::io::Read),
        )?;
        if is_opaque {
            let mut marker = rel.to_vec();
            marker.push(b'/');
            marker.extend_from_slice(OPAQUE_MARKER.as_bytes());
            append(
                encoder,
                path,
                &marker,
                &whiteout_header(&marker, mtime),
                None,
            )?;
        }
        Ok(())
    }
}

/// The tar entry kind of the file at `disk` (archived as `archive_path`), from its metadata:
/// a hardlink to the first path archived with the same inode (`first_links`), else by its
/// type. A symlink's target is read into `link_target`, which the kind borrows; a regular
/// file is opened into `file` for its data. A socket cannot be archived.
pub(super) fn disk_entry_kind<'a>(
    disk: &Path,
    archive_path: &[u8],
    meta: &Metadata,
    first_links: &'a mut HashMap<(u64, u64), Vec<u8>>,
    link_target: &'a mut PathBuf,
    file: &mut Option<File>,
) -> Result<EntryKind<'a>, LayerError> {
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_symlink() {
        *link_target = fs_err::read_link(disk).map_err(LayerError::Fs)?;
        let target: &'a PathBuf = link_target;
        EntryKind::Symlink {
            target: target.as_os_str().as_bytes(),
        }
    } else if ft.is_file() {
        let key = (meta.dev(), meta.ino());
        if meta.nlink() > 1 {
            if first_links.contains_key(&key) {
                let first_links: &'a HashMap<_, _> = first_links;
                return Ok(EntryKind::Hardlink {
                    target: &first_links[&key],
                });
            }
            first_links.insert(key, archive_path.to_vec());
        }
        *file = Some(open_nofollow(disk)?);
        EntryKind::File { size: meta.len() }
    } else if ft.is_char_device() {
        let (major, minor) = device_numbers(meta.rdev());
        EntryKind::CharDevice { major, minor }
    } else if ft.is_block_device() {
        let (major, minor) = device_numbers(meta.rdev());
        EntryKind::BlockDevice { major, minor }
    } else if ft.is_fifo() {
        EntryKind::Fifo
    } else {
        return Err(LayerError::Source {
            action: "archiving",
            path: disk.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "sockets cannot be put in a layer",
            ),
        });
    };
    Ok(kind)
}

pub(super) fn open_nofollow(path: &Path) -> Result<File, LayerError> {
    fs_err::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits().cast_signed())
        .open(path)
        .map(fs_err::File::into_file)
        .map_err(LayerError::Fs)
}

/// An empty regular file with mode 0 and root owner, as containerd's differ writes whiteouts.
fn whiteout_header(path: &[u8], mtime: i64) -> EntryHeader<'_> {
    EntryHeader {
        path,
        kind: EntryKind::File { size: 0 },
        mode: 0,
        uid: 0,
        gid: 0,
        mtime,
        xattrs: &[],
    }
}

fn append_whiteout<W: Write>(
    encoder: &mut TarEncoder<W>,
    rel: &[u8],
    mtime: i64,
) -> Result<(), LayerError> {
    let (dir, name) = match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..=i], &rel[i + 1..]),
        None => (&b""[..], rel),
    };
    let mut wh = dir.to_vec();
    wh.extend_from_slice(WHITEOUT_PREFIX.as_bytes());
    wh.extend_from_slice(name);
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(rel));
    append(encoder, &path, &wh, &whiteout_header(&wh, mtime), None)
}

/// Appends and turns encoder errors into [`LayerError`]s naming the source and entry.
pub(super) fn append<W: Write>(
    encoder: &mut TarEncoder<W>,
    source: &Path,
    entry: &[u8],
    header: &EntryHeader<'_>,
    content: Option<&mut dyn std::io::Read>,
) -> Result<(), LayerError> {
    encoder.append(header, content).map_err(|e| match e {
        AppendError::Read(err) => LayerError::Source {
            action: "reading",
            path: source.to_path_buf(),
            source: err,
        },
        AppendError::Short { read } => LayerError::FileChanged {
            path: source.to_path_buf(),
            expected: match header.kind {
                EntryKind::File { size } => size,
                _ => 0,
            },
            actual: read,
        },
        AppendError::Write(err) => LayerError::Output {
            entry: String::from_utf8_lossy(entry).into_owned(),
            source: err,
        },
        AppendError::Unencodable(reason) => LayerError::Unencodable {
            entry: String::from_utf8_lossy(entry).into_owned(),
            reason,
        },
    })
}
