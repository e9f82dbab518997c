//! [`RootFs`]: an image's root filesystem read in place, as a plain directory or as a stack of
//! kiln store snapshots composed the way overlayfs composes them, without copying a layer.
//!
//! Paths are resolved inside the root as `openat2(RESOLVE_IN_ROOT)` resolves them: `..` stops
//! at the root, an absolute symlink target starts again at the root, and at most
//! [`MAX_SYMLINK_HOPS`] symlinks are followed. Nothing outside the root is ever read: within a
//! layer every component below the root has been seen as a directory (by `lstat`) before it
//! is descended into, and files are opened with `O_NOFOLLOW`.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::{FileType, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use fs_err::os::unix::fs::OpenOptionsExt;

/// Linux's `MAXSYMLINKS`: more hops than this fail with `ELOOP` there too.
pub(super) const MAX_SYMLINK_HOPS: usize = 40;

/// Files larger than this are not read whole by [`RootFs::read`]: package databases are a few
/// MiB at most, and an image's file is no reason to hold gigabytes in memory.
pub(super) const MAX_READ_BYTES: u64 = 256 << 20;

/// The overlayfs xattrs marking an opaque directory: `trusted.` as root, `user.` for
/// `userxattr` mounts (kiln-store writes the one its overlay mounts read).
const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

/// A read-only view of an image's root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RootFs {
    /// A directory holding the whole (flattened) root filesystem. Character devices in it are
    /// devices, not whiteouts. (Builds scan snapshots; the tests scan fixture trees.)
    #[cfg_attr(not(test), expect(dead_code, reason = "the tests' fixture roots"))]
    Dir(PathBuf),
    /// kiln store snapshots, base layer first, top layer last. Each holds only its own layer's
    /// entries, whiteouts in overlay form: a deleted entry `x` is a 0/0 character device `x`,
    /// an opaque directory has `trusted.overlay.opaque=y` (or `user.overlay.opaque=y`) and
    /// hides the lower layers' contents of that directory (kiln-store `snapshot.rs`).
    Layers(Vec<PathBuf>),
}

/// A directory of the merged view.
#[derive(Debug, Clone)]
pub(super) struct MergedDir {
    /// Its path below the root (empty for the root).
    rel: PathBuf,
    /// The layers whose contents it shows, topmost first (indexes into [`RootFs::layer`]).
    layers: Vec<usize>,
}

/// What a path names in the merged view.
#[derive(Debug)]
enum Node {
    /// A directory, merged over the layers that have it.
    Dir(MergedDir),
    /// Anything else (file, symlink, device, fifo, socket), from the topmost layer with it.
    Leaf {
        /// Its path below the root.
        rel: PathBuf,
        /// The layer it is read from.
        layer: usize,
        /// Its `lstat` there.
        meta: Metadata,
    },
}

/// An entry of a merged directory listing.
#[derive(Debug, Clone)]
pub(crate) struct DirEntry {
    /// Its name in the directory.
    pub(crate) name: OsString,
    /// Its type (not following symlinks), from the topmost layer that has it.
    pub(crate) file_type: FileType,
    /// Its path below the root.
    rel: PathBuf,
    /// The layer it comes from.
    layer: usize,
}

impl DirEntry {
    /// Its absolute path in the image, e.g. `/usr/bin/app` (lossy for non-UTF-8 names).
    pub(crate) fn image_path(&self) -> String {
        image_path(&self.rel)
    }

    /// Its path below the root, e.g. `usr/bin/app`.
    pub(crate) fn rel(&self) -> &Path {
        &self.rel
    }
}

/// What [`RootFs::walk`] does with the entries below a directory it visits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Walk {
    /// Descend into it (for a directory).
    Descend,
    /// Leave it out.
    Skip,
}

/// Limits of [`RootFs::walk`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct WalkLimits {
    /// The most entries visited before the walk fails with [`WalkError::TooManyEntries`].
    pub(crate) max_entries: u64,
    /// Directories deeper than this are not descended into (logged at `warn`).
    pub(crate) max_depth: usize,
}

/// Why [`RootFs::walk`] stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WalkError {
    /// Listing or inspecting an entry failed (the I/O error names the host path).
    #[error("cannot walk {path} in the image: {source}")]
    Io {
        /// The image path being listed.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The tree has more entries than [`WalkLimits::max_entries`].
    #[error("the image has more than {limit} filesystem entries")]
    TooManyEntries {
        /// The limit.
        limit: u64,
    },
}

impl RootFs {
    /// How many layers the view has.
    fn layer_count(&self) -> usize {
        match self {
            Self::Dir(_) => 1,
            Self::Layers(layers) => layers.len(),
        }
    }

    /// The host directory of layer `index`, counting from the top (0 is the topmost).
    fn layer(&self, index: usize) -> &Path {
        match self {
            Self::Dir(dir) => dir,
            Self::Layers(layers) => &layers[layers.len() - 1 - index],
        }
    }

    /// Whether 0/0 character devices and opaque xattrs are whiteouts here.
    fn is_overlay(&self) -> bool {
        matches!(self, Self::Layers(_))
    }

    /// A description for messages: the directory, or the layer directories top first.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Dir(dir) => format!("directory {}", dir.display()),
            Self::Layers(layers) => {
                let list: Vec<String> = layers
                    .iter()
                    .rev()
                    .map(|l| l.display().to_string())
                    .collect();
                format!("layers {} (top first)", list.join(", "))
            }
        }
    }

    /// The root directory, merged over every layer down to the first opaque root.
    fn root(&self) -> io::Result<MergedDir> {
        let mut layers = Vec::new();
        for index in 0..self.layer_count() {
            let host = self.layer(index);
            let meta = fs_err::symlink_metadata(host)?;
            if !meta.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("the root filesystem {} is not a directory", host.display()),
                ));
            }
            layers.push(index);
            if self.is_overlay() && is_opaque(host) {
                break;
            }
        }
        Ok(MergedDir {
            rel: PathBuf::new(),
            layers,
        })
    }

    /// Looks up `name` in `dir` (not following a symlink there).
    fn lookup_child(&self, dir: &MergedDir, name: &OsStr) -> io::Result<Option<Node>> {
        let rel = dir.rel.join(name);
        for (position, &layer) in dir.layers.iter().enumerate() {
            let host = self.layer(layer).join(&rel);
            let meta = match fs_err::symlink_metadata(&host) {
                Ok(meta) => meta,
                Err(e) if is_absent(&e) => continue,
                Err(e) => return Err(e),
            };
            if self.is_overlay() && is_whiteout(&meta) {
                return Ok(None);
            }
            if !meta.is_dir() {
                return Ok(Some(Node::Leaf { rel, layer, meta }));
            }
            // overlayfs merges a directory with the same directory below until a whiteout, a
            // non-directory (both hide everything below) or an opaque directory (shown, but
            // hiding what is below it).
            let mut layers = vec![layer];
            if !(self.is_overlay() && is_opaque(&host)) {
                for &lower in &dir.layers[position + 1..] {
                    let host = self.layer(lower).join(&rel);
                    match fs_err::symlink_metadata(&host) {
                        Ok(meta) if meta.is_dir() => {
                            layers.push(lower);
                            if is_opaque(&host) {
                                break;
                            }
                        }
                        Ok(_) => break,
                        Err(e) if is_absent(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            return Ok(Some(Node::Dir(MergedDir { rel, layers })));
        }
        Ok(None)
    }

    /// Resolves `path` (absolute or relative to the root) inside the root, following
    /// symlinks on the way and, when `follow_last`, the last component's too.
    fn resolve(&self, path: &str, follow_last: bool) -> io::Result<Option<Node>> {
        let root = self.root()?;
        // Components still to walk, the next one last.
        let mut pending: Vec<OsString> = components_reversed(Path::new(path));
        // The directories walked into below the root: `..` pops one.
        let mut stack: Vec<MergedDir> = Vec::new();
        let mut hops = 0;
        while let Some(name) = pending.pop() {
            if name == ".." {
                stack.pop();
                continue;
            }
            let current = stack.last().unwrap_or(&root);
            let Some(node) = self.lookup_child(current, &name)? else {
                return Ok(None);
            };
            match node {
                Node::Dir(dir) => stack.push(dir),
                Node::Leaf { rel, layer, meta }
                    if meta.file_type().is_symlink() && (follow_last || !pending.is_empty()) =>
                {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(io::Error::other(format!(
                            "more than {MAX_SYMLINK_HOPS} symbolic links resolving {path} in the image"
                        )));
                    }
                    let target = fs_err::read_link(self.layer(layer).join(&rel))?;
                    if target.has_root() {
                        stack.clear();
                    }
                    pending.extend(components_reversed(&target));
                }
                leaf @ Node::Leaf { .. } => {
                    // A non-directory in the middle of the path: ENOTDIR, i.e. nothing there.
                    return Ok(pending.is_empty().then_some(leaf));
                }
            }
        }
        Ok(Some(Node::Dir(stack.pop().unwrap_or(root))))
    }

    /// The contents of the regular file at `path` (symlinks followed inside the root), or
    /// `None` when nothing or something other than a regular file is there. Fails for files
    /// over [`MAX_READ_BYTES`].
    pub(crate) fn read(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        self.read_capped(path, MAX_READ_BYTES)
    }

    /// [`Self::read`] with another size limit.
    pub(crate) fn read_capped(&self, path: &str, max: u64) -> io::Result<Option<Vec<u8>>> {
        let Some((file, meta)) = self.open(path)? else {
            return Ok(None);
        };
        read_all(file, &meta, path, max).map(Some)
    }

    /// Opens the regular file at `path` (symlinks followed inside the root) with its
    /// metadata, or `None` when nothing or something other than a regular file is there.
    pub(crate) fn open(&self, path: &str) -> io::Result<Option<(fs_err::File, Metadata)>> {
        match self.resolve(path, true)? {
            Some(Node::Leaf { rel, layer, meta }) if meta.is_file() => {
                let file = open_nofollow(&self.layer(layer).join(rel))?;
                Ok(Some((file, meta)))
            }
            _ => Ok(None),
        }
    }

    /// Opens a file the walk found, with its metadata (`lstat` in its layer).
    pub(crate) fn open_entry(&self, entry: &DirEntry) -> io::Result<(fs_err::File, Metadata)> {
        let host = self.layer(entry.layer).join(&entry.rel);
        let meta = fs_err::symlink_metadata(&host)?;
        Ok((open_nofollow(&host)?, meta))
    }

    /// The contents of a regular file the walk found (at most [`MAX_READ_BYTES`]).
    pub(crate) fn read_entry(&self, entry: &DirEntry) -> io::Result<Vec<u8>> {
        let (file, meta) = self.open_entry(entry)?;
        read_all(file, &meta, &entry.image_path(), MAX_READ_BYTES)
    }

    /// The `lstat` of an entry the walk found, in its layer.
    pub(crate) fn entry_metadata(&self, entry: &DirEntry) -> io::Result<Metadata> {
        fs_err::symlink_metadata(self.layer(entry.layer).join(&entry.rel))
    }

    /// The merged listing of the directory at `path` (symlinks followed inside the root),
    /// sorted by name, whiteouts left out; `None` when no directory is there.
    pub(crate) fn list_dir(&self, path: &str) -> io::Result<Option<Vec<DirEntry>>> {
        match self.resolve(path, true)? {
            Some(Node::Dir(dir)) => self.list(&dir).map(Some),
            _ => Ok(None),
        }
    }

    /// The merged listing of `dir`, sorted by name.
    fn list(&self, dir: &MergedDir) -> io::Result<Vec<DirEntry>> {
        // The topmost layer's entry of each name wins; `None` marks a whiteout.
        let mut seen: BTreeMap<OsString, Option<DirEntry>> = BTreeMap::new();
        for &layer in &dir.layers {
            let host = self.layer(layer).join(&dir.rel);
            for item in fs_err::read_dir(&host)? {
                let item = item?;
                let name = item.file_name();
                if seen.contains_key(&name) {
                    continue;
                }
                let file_type = item.file_type()?;
                let entry = if self.is_overlay()
                    && file_type.is_char_device()
                    && is_whiteout(&fs_err::symlink_metadata(item.path())?)
                {
                    None
                } else {
                    Some(DirEntry {
                        rel: dir.rel.join(&name),
                        name: name.clone(),
                        file_type,
                        layer,
                    })
                };
                seen.insert(name, entry);
            }
        }
        Ok(seen.into_values().flatten().collect())
    }

    /// Visits every entry of the merged tree depth-first in name order, without following
    /// symlinks. `visit` gets each entry and its depth (1 for the root's entries) and says
    /// whether to descend into a directory.
    pub(crate) fn walk(
        &self,
        limits: WalkLimits,
        mut visit: impl FnMut(&DirEntry, usize) -> Walk,
    ) -> Result<(), WalkError> {
        let io_at = |rel: &Path| {
            let path = image_path(rel);
            move |source| WalkError::Io { path, source }
        };
        let root = self.root().map_err(io_at(Path::new("")))?;
        let entries = self.list(&root).map_err(io_at(&root.rel))?;
        let mut visited: u64 = 0;
        // Pre-order: each directory with the entries of it not visited yet.
        let mut stack = vec![(root, entries.into_iter(), 0)];
        while let Some((dir, entries, depth)) = stack.last_mut() {
            let depth = *depth + 1;
            let Some(entry) = entries.next() else {
                stack.pop();
                continue;
            };
            visited += 1;
            if visited > limits.max_entries {
                return Err(WalkError::TooManyEntries {
                    limit: limits.max_entries,
                });
            }
            if visit(&entry, depth) == Walk::Skip || !entry.file_type.is_dir() {
                continue;
            }
            if depth >= limits.max_depth {
                tracing::warn!(
                    path = %entry.image_path(),
                    max_depth = limits.max_depth,
                    "SBOM scan: directory nested too deep, not scanned below"
                );
                continue;
            }
            if let Some(Node::Dir(child)) = self
                .lookup_child(dir, &entry.name)
                .map_err(io_at(&entry.rel))?
            {
                let entries = self.list(&child).map_err(io_at(&child.rel))?;
                stack.push((child, entries.into_iter(), depth));
            }
        }
        Ok(())
    }
}

/// Reads `file` (the image's `path`) whole, failing when it has more than `max` bytes.
fn read_all(file: fs_err::File, meta: &Metadata, path: &str, max: u64) -> io::Result<Vec<u8>> {
    let too_large = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path} in the image has more than the {max} bytes read for package metadata"),
        )
    };
    if meta.len() > max {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large());
    }
    Ok(bytes)
}

/// `path`'s normal components (`..` kept, `.` and the root dropped), the first one last.
fn components_reversed(path: &Path) -> Vec<OsString> {
    let mut names: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    names.reverse();
    names
}

/// `/` + `rel`, lossy for non-UTF-8 names.
fn image_path(rel: &Path) -> String {
    let mut path = String::from("/");
    path.push_str(&String::from_utf8_lossy(rel.as_os_str().as_bytes()));
    path
}

/// Opens `host` for reading without following a symlink there (the view resolved it).
fn open_nofollow(host: &Path) -> io::Result<fs_err::File> {
    fs_err::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits().cast_signed())
        .open(host)
}

/// Whether an error means "nothing there" for a lookup.
fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// An overlay whiteout: a character device with device number 0/0.
fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether `dir` carries an overlay opaque xattr set to `y`.
fn is_opaque(dir: &Path) -> bool {
    OPAQUE_XATTRS.iter().any(|name| {
        let mut value = [0u8; 2];
        matches!(rustix::fs::lgetxattr(dir, *name, &mut value), Ok(1) if value[0] == b'y')
    })
}
