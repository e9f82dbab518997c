//! The tar of an explicit file list (what COPY and ADD produce): each entry names its path
//! in the layer and where its content comes from, with optional metadata overrides. Missing
//! parent directories are added with the metadata given by [`FileListTar::parent_dirs`].
//! Entries are written in the same order as a directory diff (depth-first, names sorted by
//! bytes), whatever order they were given in.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::diff::{append, disk_entry_kind};
use super::source::{is_layer_xattr, read_xattrs};
use super::tar_encode::{EntryHeader, EntryKind, TarEncoder, TarSummary};
use super::{LayerError, clamp_mtime};

/// Where the content of a [`LayerEntry`] comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntrySource {
    /// Whatever is at this path on disk, not following a final symlink: a file's content,
    /// a symlink's target, a directory (without its children), a device or fifo. Mode,
    /// owner, mtime and xattrs default to the file's own.
    Disk(PathBuf),
    /// A regular file with these bytes.
    Bytes(Vec<u8>),
    /// A symbolic link to this target.
    Symlink(PathBuf),
    /// An empty directory.
    Directory,
    /// A hard link to another entry of the same layer (by layer path, as bytes).
    Hardlink(Vec<u8>),
}

/// One entry of a file-list layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerEntry {
    /// Path in the layer, `/`-separated bytes (a name need not be UTF-8: it is written as
    /// it is, in a PAX `path` record when it is not ASCII); a leading `/` is ignored. `..`
    /// is refused.
    pub path: Vec<u8>,
    /// Content.
    pub source: EntrySource,
    /// Permission bits (`0o7777`); default: the disk file's, else 0o644 (files), 0o755
    /// (directories), 0o777 (symlinks).
    pub mode: Option<u32>,
    /// Owner; default: the disk file's, else 0.
    pub uid: Option<u64>,
    /// Group; default: the disk file's, else 0.
    pub gid: Option<u64>,
    /// Modification time (seconds since the epoch); default: the disk file's, else 0.
    pub mtime: Option<i64>,
}

impl LayerEntry {
    /// An entry with no metadata overrides.
    pub fn new(path: impl Into<Vec<u8>>, source: EntrySource) -> Self {
        Self {
            path: path.into(),
            source,
            mode: None,
            uid: None,
            gid: None,
            mtime: None,
        }
    }
}

/// Builds the layer tar of a file list.
///
/// ```
/// use kiln_oci::{EntrySource, FileListTar, LayerEntry};
/// let mut tar = Vec::new();
/// FileListTar::new()
///     .entry(LayerEntry::new("app/config.json", EntrySource::Bytes(b"{}".to_vec())))
///     .write_to(&mut tar)?;
/// assert_eq!(&tar[..4], b"app/"); // the parent directory comes first
/// # Ok::<(), kiln_oci::LayerError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct FileListTar {
    entries: Vec<LayerEntry>,
    parent_dirs: Option<LayerEntry>,
    source_date_epoch: Option<i64>,
}

impl FileListTar {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry.
    #[must_use]
    pub fn entry(mut self, entry: LayerEntry) -> Self {
        self.entries.push(entry);
        self
    }

    /// Adds entries.
    #[must_use]
    pub fn entries(mut self, entries: impl IntoIterator<Item = LayerEntry>) -> Self {
        self.entries.extend(entries);
        self
    }

    /// Metadata for directories added because an entry needs a parent (default: 0o755,
    /// root, mtime 0 or SOURCE_DATE_EPOCH).
    #[must_use]
    pub fn parent_dirs(mut self, mode: u32, uid: u64, gid: u64, mtime: Option<i64>) -> Self {
        self.parent_dirs = Some(LayerEntry {
            path: Vec::new(),
            source: EntrySource::Directory,
            mode: Some(mode),
            uid: Some(uid),
            gid: Some(gid),
            mtime,
        });
        self
    }

    /// Clamps every mtime to `epoch`; also the default mtime of entries without one.
    #[must_use]
    pub fn source_date_epoch(mut self, epoch: i64) -> Self {
        self.source_date_epoch = Some(epoch);
        self
    }

    /// Writes the tar (end-of-archive included) into `out`.
    pub fn write_to<W: Write>(&self, out: W) -> Result<TarSummary, LayerError> {
        // Component vectors sort depth-first with each directory's names in byte order.
        let mut ordered: BTreeMap<Vec<&[u8]>, Option<&LayerEntry>> = BTreeMap::new();
        for entry in &self.entries {
            let components = clean_components(&entry.path)?;
            for depth in 1..components.len() {
                ordered.entry(components[..depth].to_vec()).or_insert(None);
            }
            match ordered.get_mut(&components) {
                Some(slot @ None) => *slot = Some(entry),
                Some(Some(_)) => {
                    return Err(LayerError::DuplicateEntry {
                        path: display_bytes(&entry.path),
                    });
                }
                None => {
                    ordered.insert(components, Some(entry));
                }
            }
        }
        let default_parent = LayerEntry {
            path: Vec::new(),
            source: EntrySource::Directory,
            mode: Some(0o755),
            uid: Some(0),
            gid: Some(0),
            mtime: None,
        };
        let parent = self.parent_dirs.as_ref().unwrap_or(&default_parent);
        let mut encoder = TarEncoder::new(out);
        let mut first_links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
        let mut emitted_files: HashSet<Vec<u8>> = HashSet::new();
        for (components, entry) in &ordered {
            let path = components.join(&b'/');
            let entry = entry.unwrap_or(parent);
            match &entry.source {
                EntrySource::Hardlink(target) => {
                    if !emitted_files.contains(&clean_components(target)?.join(&b'/')) {
                        return Err(LayerError::HardlinkTarget {
                            path: display_bytes(&entry.path),
                            target: display_bytes(target),
                        });
                    }
                }
                EntrySource::Directory => {}
                _ => {
                    emitted_files.insert(path.clone());
                }
            }
            self.append_entry(&mut encoder, &path, entry, &mut first_links)?;
        }
        let (_, summary) = encoder.finish().map_err(|source| LayerError::Output {
            entry: "end of archive".to_owned(),
            source,
        })?;
        Ok(summary)
    }

    fn append_entry<W: Write>(
        &self,
        encoder: &mut TarEncoder<W>,
        path: &[u8],
        entry: &LayerEntry,
        first_links: &mut HashMap<(u64, u64), Vec<u8>>,
    ) -> Result<(), LayerError> {
        let defaults = Defaults {
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: self.source_date_epoch.unwrap_or(0),
        };
        let source_path = PathBuf::from(std::ffi::OsStr::from_bytes(&entry.path));
        let (kind, content, mode): (EntryKind<'_>, Option<&[u8]>, u32) = match &entry.source {
            EntrySource::Bytes(bytes) => (
                EntryKind::File {
                    size: bytes.len() as u64,
                },
                Some(bytes),
                0o644,
            ),
            EntrySource::Directory => (EntryKind::Dir, None, 0o755),
            EntrySource::Symlink(target) => (
                EntryKind::Symlink {
                    target: target.as_os_str().as_bytes(),
                },
                None,
                0o777,
            ),
            EntrySource::Hardlink(target) => {
                let target = clean_components(target)?.join(&b'/');
                let h = self.header(
                    entry,
                    path,
                    EntryKind::Hardlink { target: &target },
                    Defaults {
                        mode: 0o644,
                        ..defaults
                    },
                    &[],
                );
                return append(encoder, &source_path, path, &h, None);
            }
            EntrySource::Disk(disk) => {
                return self.append_disk(encoder, disk, path, entry, first_links);
            }
        };
        let h = self.header(entry, path, kind, Defaults { mode, ..defaults }, &[]);
        let mut reader = content.unwrap_or(b"");
        append(encoder, &source_path, path, &h, Some(&mut reader))
    }

    fn header<'h>(
        &self,
        entry: &LayerEntry,
        path: &'h [u8],
        kind: EntryKind<'h>,
        defaults: Defaults,
        xattrs: &'h [(Vec<u8>, Vec<u8>)],
    ) -> EntryHeader<'h> {
        EntryHeader {
            path,
            kind,
            mode: entry.mode.unwrap_or(defaults.mode),
            uid: entry.uid.unwrap_or(defaults.uid),
            gid: entry.gid.unwrap_or(defaults.gid),
            mtime: clamp_mtime(
                entry.mtime.unwrap_or(defaults.mtime),
                self.source_date_epoch,
            ),
            xattrs,
        }
    }

    fn append_disk<W: Write>(
        &self,
        encoder: &mut TarEncoder<W>,
        disk: &Path,
        path: &[u8],
        entry: &LayerEntry,
        first_links: &mut HashMap<(u64, u64), Vec<u8>>,
    ) -> Result<(), LayerError> {
        let source_error = |action, source| LayerError::Source {
            action,
            path: disk.to_path_buf(),
            source,
        };
        let meta = fs_err::symlink_metadata(disk).map_err(LayerError::Fs)?;
        let xattrs: Vec<_> = read_xattrs(disk)
            .map_err(|e| source_error("reading xattrs of", e))?
            .into_iter()
            .filter(|(n, _)| is_layer_xattr(n))
            .collect();
        let defaults = Defaults {
            mode: meta.mode(),
            uid: u64::from(meta.uid()),
            gid: u64::from(meta.gid()),
            mtime: meta.mtime(),
        };
        let mut link_target = PathBuf::new();
        let mut file = None;
        let kind = disk_entry_kind(disk, path, &meta, first_links, &mut link_target, &mut file)?;
        let h = self.header(entry, path, kind, defaults, &xattrs);
        append(
            encoder,
            disk,
            path,
            &h,
            file.as_mut().map(|f| f as &mut dyn std::io::Read),
        )
    }
}

#[derive(Debug, Clone, Copy)]
struct Defaults {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
}

/// Splits a layer path into its components: leading `/`, empty and `.` components dropped,
/// `..` refused.
fn clean_components(path: &[u8]) -> Result<Vec<&[u8]>, LayerError> {
    let mut out = Vec::new();
    for component in path.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => {
                return Err(LayerError::InvalidEntryPath {
                    path: display_bytes(path),
                    reason: "`..` components are not allowed",
                });
            }
            c if c.contains(&0) => {
                return Err(LayerError::InvalidEntryPath {
                    path: display_bytes(path),
                    reason: "NUL bytes are not allowed",
                });
            }
            c => out.push(c),
        }
    }
    if out.is_empty() {
        return Err(LayerError::InvalidEntryPath {
            path: display_bytes(path),
            reason: "the path names the layer root",
        });
    }
    Ok(out)
}

/// A layer path for messages: UTF-8 as it is, other bytes as `\xNN`.
fn display_bytes(path: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(path.len());
    for chunk in path.utf8_chunks() {
        out.push_str(chunk.valid());
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;
    use crate::{DiffTar, ExtractOptions, extract_layer};

    /// Names as the `tar` crate reads them back: raw bytes of the PAX `path` when there is one.
    fn names_read_by_the_tar_crate(tar: &[u8]) -> Vec<Vec<u8>> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|entry| entry.unwrap().path_bytes().into_owned())
            .collect()
    }

    #[test]
    fn non_utf8_names_round_trip_through_writer_and_readers() {
        let long_dir = [b'd'; 120];
        let mut long_name = long_dir.to_vec();
        long_name.extend_from_slice(b"/f\xfe");
        let mut tar = Vec::new();
        FileListTar::new()
            .entry(LayerEntry::new(
                b"bad\xff\xfename".to_vec(),
                EntrySource::Bytes(b"first".to_vec()),
            ))
            .entry(LayerEntry::new(
                b"bad\xfe\xffname".to_vec(),
                EntrySource::Bytes(b"second".to_vec()),
            ))
            .entry(LayerEntry::new(
                b"dir\x80/in\xe9".to_vec(),
                EntrySource::Symlink(PathBuf::from(OsStr::from_bytes(b"../bad\xff\xfename"))),
            ))
            .entry(LayerEntry::new(
                long_name.clone(),
                EntrySource::Hardlink(b"bad\xff\xfename".to_vec()),
            ))
            .write_to(&mut tar)
            .unwrap();

        // The bytes are in the archive as they are (no U+FFFD anywhere).
        assert!(!tar.windows(3).any(|w| w == "\u{fffd}".as_bytes()));
        let mut expected: Vec<Vec<u8>> = vec![
            b"bad\xfe\xffname".to_vec(),
            b"bad\xff\xfename".to_vec(),
            long_dir.iter().copied().chain(*b"/").collect(),
            long_name.clone(),
            b"dir\x80/".to_vec(),
            b"dir\x80/in\xe9".to_vec(),
        ];
        expected.sort();
        let mut read = names_read_by_the_tar_crate(&tar);
        read.sort();
        assert_eq!(read, expected);

        // kiln's own reader extracts them byte for byte.
        let root = tempfile::tempdir().unwrap();
        extract_layer(&tar[..], root.path(), &ExtractOptions::new().chown(false)).unwrap();
        let at = |name: &[u8]| root.path().join(OsStr::from_bytes(name));
        assert_eq!(fs_err_read(&at(b"bad\xff\xfename")), b"first");
        assert_eq!(fs_err_read(&at(b"bad\xfe\xffname")), b"second");
        assert_eq!(fs_err_read(&at(&long_name)), b"first");
        assert_eq!(
            fs_err::read_link(at(b"dir\x80/in\xe9"))
                .unwrap()
                .as_os_str()
                .as_bytes(),
            b"../bad\xff\xfename"
        );

        // A diff of that tree (the RUN path: upperdir -> tar) writes the same names.
        let mut diff = Vec::new();
        DiffTar::new(root.path()).write_to(&mut diff).unwrap();
        let mut from_diff = names_read_by_the_tar_crate(&diff);
        from_diff.sort();
        assert_eq!(from_diff, expected);
    }

    #[test]
    fn errors_show_invalid_bytes_escaped() {
        let error = FileListTar::new()
            .entry(LayerEntry::new(
                b"a\xff/../../x".to_vec(),
                EntrySource::Directory,
            ))
            .write_to(Vec::new())
            .unwrap_err();
        assert!(error.to_string().contains("a\\xff/../../x"), "{error}");
    }

    fn fs_err_read(path: &Path) -> Vec<u8> {
        fs_err::read(path).unwrap_or_else(|e| panic!("{e}"))
    }
}
