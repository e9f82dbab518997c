//! Read-only views of the file trees COPY reads from: the build context (filtered by
//! `.dockerignore`) and a stage's rootfs as a stack of snapshot directories (overlay form:
//! 0/0 character devices are whiteouts, `trusted.overlay.opaque=y` marks opaque dirs).
//!
//! Paths handed to a tree are slash-separated and relative to its root (`""` is the root),
//! in the escaped form of [`kiln_dockerfile::encode_name`]: a name that is not UTF-8 keeps
//! its bytes (BuildKit copies them as they are), and [`host_path`] turns a path back into
//! the file system's bytes.
//! Symlinks are never followed by `lookup`; `resolve` follows them *inside* the tree, the way
//! BuildKit resolves a COPY source (`FollowSymlinks`) and never escapes the root.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use kiln_dockerfile::{decode_name, encode_name};

/// `root` joined with the escaped relative path `rel`, with the name's original bytes.
pub(crate) fn host_path(root: &Path, rel: &str) -> PathBuf {
    root.join(std::ffi::OsStr::from_bytes(&decode_name(rel)))
}

/// The escaped text of a file name read from the file system.
fn name_text(name: &std::ffi::OsStr) -> String {
    encode_name(name.as_bytes()).into_owned()
}

/// What kind of filesystem object an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link with its (unresolved) target.
    Symlink(PathBuf),
    /// A device node, fifo or socket: copied as metadata only.
    Special,
}

/// Metadata of one entry, plus where its bytes live on the host.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Kind (and link target).
    pub kind: EntryKind,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (regular files).
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds part of the modification time.
    pub mtime_nsec: i64,
    /// Change time: with dev/ino/size/mtime, the key of the content-digest memo.
    pub ctime: i64,
    /// Nanoseconds part of the change time.
    pub ctime_nsec: i64,
    /// Device of the host file.
    pub dev: u64,
    /// Inode of the host file.
    pub ino: u64,
    /// The host path holding this entry.
    pub host_path: PathBuf,
    /// Extended attributes a COPY carries over, by name (a capability set in a builder
    /// stage, `user.*`): read for the files of stages and images, never for the context;
    /// those a layer leaves out (overlayfs' own, SELinux labels) are left out here too.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    fn from_metadata(host_path: PathBuf, meta: &fs::Metadata) -> io::Result<Self> {
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            EntryKind::File
        } else if ft.is_symlink() {
            EntryKind::Symlink(fs_err::read_link(&host_path)?)
        } else {
            EntryKind::Special
        };
        Ok(Self {
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
            dev: meta.dev(),
            ino: meta.ino(),
            host_path,
            xattrs: Vec::new(),
        })
    }

    /// The entry of a `statx` result (basic stats) for `host_path`.
    fn from_statx(host_path: PathBuf, stat: &rustix::fs::Statx) -> io::Result<Self> {
        let mode = u32::from(stat.stx_mode);
        let kind = match mode & libc_mode::S_IFMT {
            libc_mode::S_IFDIR => EntryKind::Dir,
            libc_mode::S_IFREG => EntryKind::File,
            libc_mode::S_IFLNK => EntryKind::Symlink(fs_err::read_link(&host_path)?),
            _ => EntryKind::Special,
        };
        let dev = rustix::fs::makedev(stat.stx_dev_major, stat.stx_dev_minor);
        Ok(Self {
            kind,
            mode: mode & 0o7777,
            uid: stat.stx_uid,
            gid: stat.stx_gid,
            size: stat.stx_size,
            mtime: stat.stx_mtime.tv_sec,
            mtime_nsec: i64::from(stat.stx_mtime.tv_nsec),
            ctime: stat.stx_ctime.tv_sec,
            ctime_nsec: i64::from(stat.stx_ctime.tv_nsec),
            dev,
            ino: stat.stx_ino,
            host_path,
            xattrs: Vec::new(),
        })
    }

    /// Whether this is a directory.
    pub(crate) fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }
}

/// A read-only tree COPY can take files from.
pub(crate) trait SourceTree: Send + Sync {
    /// The entry at `path` without following a final symlink; `None` when absent (or
    /// excluded from the context by `.dockerignore`).
    fn lookup(&self, path: &str) -> io::Result<Option<Entry>>;

    /// Names in the directory at `path`, sorted, without excluded or whited-out entries.
    fn read_dir(&self, path: &str) -> io::Result<Vec<String>>;

    /// Human name for error messages (`build context`, `stage builder`).
    fn describe(&self) -> String;

    /// The visible children of the directory at `path` with their entries, sorted by name:
    /// `read_dir` then `lookup` of each, which trees override when they can do it in fewer
    /// system calls (a COPY of a large context walks every entry on every build).
    fn read_dir_entries(&self, path: &str) -> io::Result<Vec<(String, Entry)>> {
        let path = clean_rel(path);
        let mut entries = Vec::new();
        for name in self.read_dir(&path)? {
            let child = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}/{name}")
            };
            if let Some(entry) = self.lookup(&child)? {
                entries.push((name, entry));
            }
        }
        Ok(entries)
    }

    /// Resolves symlinks in every component of `path` inside the tree (absolute link targets
    /// are relative to the tree's root; `..` never leaves it). Returns the resolved path and
    /// its entry, `None` when it does not exist.
    fn resolve(&self, path: &str) -> io::Result<Option<(String, Entry)>> {
        const MAX_LINKS: usize = 40;
        let mut pending: Vec<String> = split(path).map(str::to_owned).collect();
        pending.reverse();
        let mut current: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(component) = pending.pop() {
            match component.as_str() {
                "." | "" => continue,
                ".." => {
                    current.pop();
                    continue;
                }
                _ => {}
            }
            current.push(component);
            let joined = current.join("/");
            let Some(entry) = self.lookup(&joined)? else {
                return Ok(None);
            };
            if let EntryKind::Symlink(target) = &entry.kind {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::other(format!(
                        "too many levels of symbolic links resolving `{path}` in the {}",
                        self.describe()
                    )));
                }
                current.pop();
                let target = encode_name(target.as_os_str().as_bytes());
                if target.starts_with('/') {
                    current.clear();
                }
                let mut parts: Vec<String> = split(&target).map(str::to_owned).collect();
                parts.reverse();
                pending.extend(parts);
            }
        }
        let joined = current.join("/");
        Ok(self.lookup(&joined)?.map(|e| (joined, e)))
    }
}

/// Splits a slash path into non-empty components.
pub(crate) fn split(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty())
}

/// Cleans a path lexically relative to a root it cannot leave (BuildKit: sources are
/// confined to the context).
pub(crate) use kiln_oci::clean_rel;

/// Decides whether a context path is excluded by `.dockerignore`.
pub(crate) trait ContextFilter: Send + Sync {
    /// Whether `path` (relative, slash-separated) is excluded.
    fn is_excluded(&self, path: &str) -> bool;

    /// Whether the excluded directory `dir` may hold entries a `!` pattern re-includes
    /// (`build` then `!build/keep.txt`): the tree then still shows the directory as far as
    /// it leads to included entries (moby's walker descends into it).
    fn may_reinclude_below(&self, dir: &str) -> bool {
        let _ = dir;
        false
    }

    /// Whether no path is ever excluded (no `.dockerignore`): a listing then skips building
    /// each entry's relative path to ask.
    fn excludes_nothing(&self) -> bool {
        false
    }
}

/// No filter: everything is included.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct IncludeAll;

impl ContextFilter for IncludeAll {
    fn is_excluded(&self, _path: &str) -> bool {
        false
    }

    fn excludes_nothing(&self) -> bool {
        true
    }
}

/// The local build context directory, filtered.
pub(crate) struct ContextTree<F: ContextFilter = IncludeAll> {
    root: PathBuf,
    filter: F,
}

impl<F: ContextFilter> std::fmt::Debug for ContextTree<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextTree")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl<F: ContextFilter> ContextTree<F> {
    /// A context rooted at `root` with the given exclusion filter.
    pub(crate) fn new(root: impl Into<PathBuf>, filter: F) -> Self {
        Self {
            root: root.into(),
            filter,
        }
    }

    /// The context directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The exclusion filter.
    pub(crate) fn filter(&self) -> &F {
        &self.filter
    }
}

impl<F: ContextFilter> ContextTree<F> {
    /// Whether `rel` is in the filtered context: not excluded, or an excluded directory on
    /// the way to a re-included entry.
    fn is_visible(&self, rel: &str, is_dir: bool) -> io::Result<bool> {
        if rel.is_empty() || !self.filter.is_excluded(rel) {
            return Ok(true);
        }
        if !is_dir || !self.filter.may_reinclude_below(rel) {
            return Ok(false);
        }
        Ok(!self.read_dir(rel)?.is_empty())
    }
}

impl<F: ContextFilter> SourceTree for ContextTree<F> {
    fn lookup(&self, path: &str) -> io::Result<Option<Entry>> {
        let path = clean_rel(path);
        let host = host_path(&self.root, &path);
        let meta = match fs_err::symlink_metadata(&host) {
            Ok(meta) => meta,
            Err(e) if is_absent(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        if !self.is_visible(&path, meta.is_dir())? {
            return Ok(None);
        }
        Entry::from_metadata(host, &meta).map(Some)
    }

    fn read_dir(&self, path: &str) -> io::Result<Vec<String>> {
        let path = clean_rel(path);
        let mut names = Vec::new();
        for item in fs_err::read_dir(host_path(&self.root, &path))? {
            let item = item?;
            let name = name_text(&item.file_name());
            let rel = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}/{name}")
            };
            if self.is_visible(&rel, item.file_type()?.is_dir())? {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn describe(&self) -> String {
        "build context".to_owned()
    }

    /// One open directory, `getdents`, and a `statx` relative to it per child: no path walk
    /// from the root per entry.
    fn read_dir_entries(&self, path: &str) -> io::Result<Vec<(String, Entry)>> {
        use rustix::fs::{AtFlags, Mode, OFlags, StatxFlags};
        let path = clean_rel(path);
        let host_dir = host_path(&self.root, &path);
        let dir = rustix::fs::open(
            &host_dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        // Each name is stat-ed as it is read (relative to the open directory), then the
        // listing is sorted: one string per entry, not a C string kept for a second pass.
        let check_visible = !self.filter.excludes_nothing();
        let mut entries = Vec::new();
        for item in rustix::fs::Dir::read_from(&dir)? {
            let item = item?;
            let name = item.file_name();
            if matches!(name.to_bytes(), b"." | b"..") {
                continue;
            }
            let stat = match rustix::fs::statx(
                &dir,
                name,
                AtFlags::SYMLINK_NOFOLLOW,
                StatxFlags::BASIC_STATS,
            ) {
                Ok(stat) => stat,
                // Removed while we walked: like a lookup of a missing path.
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => return Err(e.into()),
            };
            let text = encode_name(name.to_bytes()).into_owned();
            if check_visible {
                let is_dir = u32::from(stat.stx_mode) & libc_mode::S_IFMT == libc_mode::S_IFDIR;
                let rel = if path.is_empty() {
                    text.clone()
                } else {
                    format!("{path}/{text}")
                };
                if !self.is_visible(&rel, is_dir)? {
                    continue;
                }
            }
            let host = host_dir.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
            entries.push((text, Entry::from_statx(host, &stat)?));
        }
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(entries)
    }
}

/// File type bits of `st_mode` (the values are fixed by POSIX and Linux).
mod libc_mode {
    pub(super) const S_IFMT: u32 = 0o170_000;
    pub(super) const S_IFDIR: u32 = 0o040_000;
    pub(super) const S_IFREG: u32 = 0o100_000;
    pub(super) const S_IFLNK: u32 = 0o120_000;
}

fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// A stage's root filesystem as a stack of snapshot directories in overlay form, read
/// without mounting anything.
#[derive(Debug, Clone)]
pub(crate) struct LayeredTree {
    /// Snapshot directories, topmost first.
    layers: Vec<PathBuf>,
    name: String,
}

/// What a layer says about a path.
enum LayerView {
    /// The layer has an entry for the path.
    Present(fs::Metadata, PathBuf),
    /// The layer hides the path (whiteout, or an opaque dir / non-directory above it).
    Hidden,
    /// The layer says nothing; look below.
    Absent,
}

impl LayeredTree {
    /// A tree over `layers` (topmost first), named for messages (`stage builder`).
    pub(crate) fn new(layers: Vec<PathBuf>, name: impl Into<String>) -> Self {
        Self {
            layers,
            name: name.into(),
        }
    }

    fn view(layer: &Path, path: &str) -> io::Result<LayerView> {
        // Walk the components: a whiteout or a non-directory on the way hides everything
        // below it in lower layers; an opaque directory on the way hides lower layers too.
        let components: Vec<&str> = split(path).collect();
        let mut host = layer.to_path_buf();
        for (i, c) in components.iter().enumerate() {
            host.push(std::ffi::OsStr::from_bytes(&decode_name(c)));
            let meta = match fs_err::symlink_metadata(&host) {
                Ok(m) => m,
                Err(e) if is_absent(&e) => return Ok(LayerView::Absent),
                Err(e) => return Err(e),
            };
            if is_whiteout(&meta) {
                return Ok(LayerView::Hidden);
            }
            let last = i + 1 == components.len();
            if last {
                return Ok(LayerView::Present(meta, host));
            }
            if !meta.is_dir() {
                return Ok(LayerView::Hidden);
            }
        }
        let meta = fs_err::symlink_metadata(layer)?;
        Ok(LayerView::Present(meta, host))
    }

    /// Whether some directory on `path` (itself included) is opaque in `layer`.
    fn opaque_on_path(layer: &Path, path: &str) -> bool {
        let mut host = layer.to_path_buf();
        if is_opaque(&host) {
            return true;
        }
        for c in split(path) {
            host.push(std::ffi::OsStr::from_bytes(&decode_name(c)));
            if is_opaque(&host) {
                return true;
            }
        }
        false
    }
}

fn is_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| matches!(xattr_get(dir, name), Some(v) if v == b"y"))
}

fn xattr_get(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = [0u8; 8];
    let n = rustix::fs::lgetxattr(path, name, &mut buf).ok()?;
    Some(buf[..n].to_vec())
}

impl SourceTree for LayeredTree {
    fn lookup(&self, path: &str) -> io::Result<Option<Entry>> {
        let path = clean_rel(path);
        let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
        for layer in &self.layers {
            match Self::view(layer, &path)? {
                LayerView::Present(meta, host) => {
                    let mut entry = Entry::from_metadata(host, &meta)?;
                    if entry.kind == EntryKind::File {
                        // Unreadable attributes are not carried (like an xattr-less filesystem).
                        entry.xattrs = kiln_oci::layer_xattrs(&entry.host_path).unwrap_or_default();
                    }
                    return Ok(Some(entry));
                }
                LayerView::Hidden => return Ok(None),
                LayerView::Absent => {
                    if !path.is_empty() && Self::opaque_on_path(layer, parent) {
                        return Ok(None);
                    }
                }
            }
        }
        Ok(None)
    }

    fn read_dir(&self, path: &str) -> io::Result<Vec<String>> {
        let path = clean_rel(path);
        let mut seen = std::collections::BTreeMap::<OsString, bool>::new();
        for layer in &self.layers {
            match Self::view(layer, &path)? {
                LayerView::Hidden => break,
                LayerView::Absent => {
                    if Self::opaque_on_path(layer, &path) {
                        break;
                    }
                }
                LayerView::Present(meta, host) => {
                    if !meta.is_dir() {
                        break;
                    }
                    for item in fs_err::read_dir(&host)? {
                        let item = item?;
                        let name = item.file_name();
                        if seen.contains_key(&name) {
                            continue;
                        }
                        let visible = !is_whiteout(&item.metadata()?);
                        seen.insert(name, visible);
                    }
                    if is_opaque(&host) {
                        break;
                    }
                }
            }
        }
        Ok(seen
            .into_iter()
            .filter(|(_, visible)| *visible)
            .map(|(n, _)| name_text(&n))
            .collect())
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}
