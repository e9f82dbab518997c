//! Applying tar entries to the target directory with `*at` system calls relative to
//! directories resolved inside the root; the final component of an entry is never followed.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid};
use rustix::io::Errno;

use super::resolve::Root;
use super::tar_reader::{RawEntry, RawKind, TarReader};
use super::{
    DevicePolicy, ExtractErrorKind, ExtractOptions, ExtractStats, LayerPaths, OverlayXattrs,
    WhiteoutPolicy, XattrPolicy, clean_path,
};
use crate::layer::whiteout::{WhiteoutName, classify, is_overlay_xattr};
use crate::{DiffId, Digest, LayerCompression};

const COPY_BUF: usize = 256 * 1024;
const SETID_BITS: u32 = 0o6000;

type Result<T> = std::result::Result<T, ExtractErrorKind>;

fn io_err(action: &'static str) -> impl FnOnce(Errno) -> ExtractErrorKind {
    move |e| ExtractErrorKind::Io {
        action,
        source: e.into(),
    }
}

fn name_of(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

/// A whiteout kept for [`WhiteoutPolicy::Overlay`], converted once every entry is on disk
/// (its directory may come later in the tar, or be replaced by a later entry).
enum OverlayWhiteout {
    /// `.wh.NAME` in `dir`: a 0/0 character device `NAME`.
    Delete { dir: Vec<Vec<u8>>, name: Vec<u8> },
    /// `dir/.wh..wh..opq`: the `overlay.opaque` xattr on `dir`.
    Opaque { dir: Vec<Vec<u8>> },
}

/// A directory whose mode and mtime are set after all entries (children change its mtime,
/// and a read-only mode would block them).
struct DeferredDir {
    components: Vec<Vec<u8>>,
    mode: u32,
    mtime: i64,
}

pub(super) struct Extractor<'a> {
    root: &'a Root,
    options: &'a ExtractOptions,
    layer_paths: LayerPaths,
    deferred: Vec<DeferredDir>,
    overlay_whiteouts: Vec<OverlayWhiteout>,
    stats: ExtractStats,
    buf: Vec<u8>,
}

impl<'a> Extractor<'a> {
    pub(super) fn new(root: &'a Root, options: &'a ExtractOptions) -> Self {
        Self {
            root,
            options,
            layer_paths: LayerPaths::new(),
            deferred: Vec::new(),
            overlay_whiteouts: Vec::new(),
            stats: ExtractStats {
                compression: LayerCompression::None,
                diff_id: DiffId(Digest::sha256_of(b"")),
                entries: 0,
                files: 0,
                dirs: 0,
                symlinks: 0,
                hardlinks: 0,
                special_files: 0,
                devices_skipped: 0,
                whiteouts: 0,
                opaque_dirs: 0,
                whiteouts_skipped: 0,
                xattrs_failed: 0,
                content_bytes: 0,
                used_openat2: root.uses_openat2(),
            },
            buf: vec![0; COPY_BUF],
        }
    }

    pub(super) fn apply<R: Read>(
        &mut self,
        tar: &mut TarReader<R>,
        entry: &RawEntry,
    ) -> Result<()> {
        self.stats.entries += 1;
        let components = clean_path(&entry.path)?;
        let Some((name, parent)) = components.split_last() else {
            return self.apply_root(entry);
        };
        match classify(name) {
            WhiteoutName::Opaque => return self.apply_opaque(parent),
            WhiteoutName::AufsMeta => return Ok(()),
            WhiteoutName::Delete(target) => return self.apply_whiteout(parent, target),
            WhiteoutName::None => {}
        }
        if entry.kind == RawKind::CharDevice || entry.kind == RawKind::BlockDevice {
            match self.options.devices {
                DevicePolicy::Create => {}
                DevicePolicy::Skip => {
                    self.stats.devices_skipped += 1;
                    return Ok(());
                }
                DevicePolicy::Refuse => return Err(ExtractErrorKind::DeviceRefused),
            }
        }
        if let RawKind::Unsupported(t) = entry.kind {
            return Err(ExtractErrorKind::UnsupportedType(t));
        }
        // Resolve a hard link's target before touching anything.
        let link_target = if entry.kind == RawKind::Hardlink {
            Some(self.resolve_hardlink_target(&entry.link)?)
        } else {
            None
        };
        let parent_fd = self.ensure_dir(parent)?;
        self.record_layer_path(&components);
        let is_dir = entry.kind == RawKind::Dir;
        let kept_dir = prepare_slot(&parent_fd, name, is_dir)?;
        let name_os = name_of(name);
        let mode = self.mode_of(entry);
        match entry.kind {
            RawKind::File => self.write_file(tar, &parent_fd, name_os, entry, mode)?,
            RawKind::Dir => {
                if !kept_dir {
                    rustix::fs::mkdirat(&parent_fd, name_os, Mode::from_raw_mode(0o700))
                        .map_err(io_err("creating directory"))?;
                }
                let fd = rustix::fs::openat(
                    &parent_fd,
                    name_os,
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(io_err("opening the new directory"))?;
                self.chown_fd(&fd, entry)?;
                self.set_xattrs(&fd, entry)?;
                self.deferred.push(DeferredDir {
                    components: components.iter().map(|c| c.to_vec()).collect(),
                    mode,
                    mtime: entry.mtime,
                });
                self.stats.dirs += 1;
            }
            RawKind::Symlink => {
                rustix::fs::symlinkat(name_of(&entry.link), &parent_fd, name_os)
                    .map_err(io_err("creating symlink"))?;
                self.refuse_symlink_xattrs(entry)?;
                self.chown_at(&parent_fd, name_os, entry)?;
                set_mtime_at(&parent_fd, name_os, entry.mtime)?;
                self.stats.symlinks += 1;
            }
            RawKind::Hardlink => {
                let Some((target_dir, target_name)) = link_target else {
                    return Err(ExtractErrorKind::HardlinkTargetMissing {
                        target: String::from_utf8_lossy(&entry.link).into_owned(),
                    });
                };
                rustix::fs::linkat(
                    &target_dir,
                    name_of(&target_name),
                    &parent_fd,
                    name_os,
                    AtFlags::empty(),
                )
                .map_err(|e| match e {
                    Errno::NOENT | Errno::PERM => ExtractErrorKind::HardlinkTargetMissing {
                        target: String::from_utf8_lossy(&entry.link).into_owned(),
                    },
                    e => io_err("creating hard link")(e),
                })?;
                self.stats.hardlinks += 1;
            }
            RawKind::CharDevice | RawKind::BlockDevice | RawKind::Fifo => {
                let file_type = match entry.kind {
                    RawKind::CharDevice => FileType::CharacterDevice,
                    RawKind::BlockDevice => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let dev = rustix::fs::makedev(entry.major, entry.minor);
                rustix::fs::mknodat(
                    &parent_fd,
                    name_os,
                    file_type,
                    Mode::from_raw_mode(0o600),
                    dev,
                )
                .map_err(io_err("creating device node or fifo"))?;
                self.chown_at(&parent_fd, name_os, entry)?;
                rustix::fs::chmodat(
                    &parent_fd,
                    name_os,
                    Mode::from_raw_mode(mode),
                    AtFlags::empty(),
                )
                .map_err(io_err("setting mode"))?;
                set_mtime_at(&parent_fd, name_os, entry.mtime)?;
                self.stats.special_files += 1;
            }
            RawKind::Unsupported(t) => return Err(ExtractErrorKind::UnsupportedType(t)),
        }
        Ok(())
    }

    fn mode_of(&self, entry: &RawEntry) -> u32 {
        let mode = entry.mode & 0o7777;
        if self.options.is_stripping_setid {
            mode & !SETID_BITS
        } else {
            mode
        }
    }

    fn apply_root(&mut self, entry: &RawEntry) -> Result<()> {
        // `./` carries the root directory's own metadata (mmdebstrap and `tar -C dir .` write it).
        if entry.kind != RawKind::Dir {
            return Err(ExtractErrorKind::InvalidName(
                "a non-directory entry names the root",
            ));
        }
        let fd = self
            .root
            .open_dir(&[])
            .map_err(ExtractErrorKind::BadParent)?;
        self.chown_fd(&fd, entry)?;
        self.deferred.push(DeferredDir {
            components: Vec::new(),
            mode: self.mode_of(entry),
            mtime: entry.mtime,
        });
        Ok(())
    }

    fn write_file<R: Read>(
        &mut self,
        tar: &mut TarReader<R>,
        parent: &OwnedFd,
        name: &OsStr,
        entry: &RawEntry,
        mode: u32,
    ) -> Result<()> {
        let fd = rustix::fs::openat(
            parent,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(io_err("creating file"))?;
        let mut file = File::from(fd);
        loop {
            let n = tar
                .read_data(&mut self.buf)
                .map_err(ExtractErrorKind::Read)?;
            if n == 0 {
                break;
            }
            file.write_all(&self.buf[..n])
                .map_err(|source| ExtractErrorKind::Io {
                    action: "writing file content",
                    source,
                })?;
            self.stats.content_bytes += n as u64;
        }
        // Owner first: chown clears setuid/setgid, the mode set afterwards restores them.
        self.chown_fd(&file, entry)?;
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode)).map_err(io_err("setting mode"))?;
        self.set_xattrs(&file, entry)?;
        let t = timestamp(entry.mtime);
        rustix::fs::futimens(
            &file,
            &Timestamps {
                last_access: t,
                last_modification: t,
            },
        )
        .map_err(io_err("setting mtime"))?;
        self.stats.files += 1;
        Ok(())
    }

    fn owner(entry: &RawEntry) -> Result<(Uid, Gid)> {
        let uid = u32::try_from(entry.uid).map_err(|_| ExtractErrorKind::BadOwner(entry.uid))?;
        let gid = u32::try_from(entry.gid).map_err(|_| ExtractErrorKind::BadOwner(entry.gid))?;
        Ok((Uid::from_raw(uid), Gid::from_raw(gid)))
    }

    fn chown_fd(&self, fd: impl AsFd, entry: &RawEntry) -> Result<()> {
        if !self.options.is_chowning {
            return Ok(());
        }
        let (uid, gid) = Self::owner(entry)?;
        rustix::fs::fchown(fd, Some(uid), Some(gid)).map_err(io_err("setting owner"))
    }

    fn chown_at(&self, parent: &OwnedFd, name: &OsStr, entry: &RawEntry) -> Result<()> {
        if !self.options.is_chowning {
            return Ok(());
        }
        let (uid, gid) = Self::owner(entry)?;
        rustix::fs::chownat(
            parent,
            name,
            Some(uid),
            Some(gid),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(io_err("setting owner"))
    }

    fn set_xattrs(&mut self, fd: impl AsFd, entry: &RawEntry) -> Result<()> {
        if self.options.xattrs == XattrPolicy::Skip {
            return Ok(());
        }
        for (name, value) in &entry.xattrs {
            // overlayfs' own xattrs in a layer would change how the snapshot behaves as a
            // lower dir (fake opaque dirs, redirects): never set them.
            let result = if is_overlay_xattr(name) {
                Err(Errno::PERM)
            } else {
                rustix::fs::fsetxattr(
                    fd.as_fd(),
                    name_of(name),
                    value,
                    rustix::fs::XattrFlags::empty(),
                )
            };
            if let Err(e) = result {
                if self.options.xattrs == XattrPolicy::Strict {
                    return Err(ExtractErrorKind::Xattr {
                        name: String::from_utf8_lossy(name).into_owned(),
                        source: e.into(),
                    });
                }
                self.stats.xattrs_failed += 1;
            }
        }
        Ok(())
    }

    /// Records that this layer wrote `components`, and so its ancestors: an opaque marker
    /// that comes later must keep them (`d/sub/new` written without a `d/sub/` entry keeps
    /// `d/sub` when `d` turns out opaque). The set stays closed under ancestors, so the walk
    /// up stops at the first ancestor already there.
    fn record_layer_path(&mut self, components: &[&[u8]]) {
        for depth in (1..=components.len()).rev() {
            if !self.layer_paths.insert(components[..depth].join(&b'/')) {
                break;
            }
        }
    }

    /// Linux keeps only `trusted.*`/`security.*` xattrs on symlinks and setting them needs a
    /// path; kiln does not set them: they count as failed (or fail under `Strict`).
    fn refuse_symlink_xattrs(&mut self, entry: &RawEntry) -> Result<()> {
        if self.options.xattrs == XattrPolicy::Skip {
            return Ok(());
        }
        if let Some((name, _)) = entry.xattrs.first() {
            if self.options.xattrs == XattrPolicy::Strict {
                return Err(ExtractErrorKind::Xattr {
                    name: String::from_utf8_lossy(name).into_owned(),
                    source: io::Error::new(
                        io::ErrorKind::Unsupported,
                        "xattrs on symlinks are not extracted",
                    ),
                });
            }
            self.stats.xattrs_failed += entry.xattrs.len() as u64;
        }
        Ok(())
    }

    /// Opens (creating as needed, mode 0755) the directory `components`, inside the root.
    fn ensure_dir(&self, components: &[&[u8]]) -> Result<OwnedFd> {
        match self.root.open_dir(components) {
            Ok(fd) => Ok(fd),
            Err(e) if e.kind() == io::ErrorKind::NotFound => self
                .root
                .create_dir_all(components)
                .map_err(ExtractErrorKind::BadParent),
            Err(e) => Err(ExtractErrorKind::BadParent(e)),
        }
    }

    fn resolve_hardlink_target(&self, link: &[u8]) -> Result<(OwnedFd, Vec<u8>)> {
        let target = String::from_utf8_lossy(link).into_owned();
        let components = clean_path(link).map_err(|e| match e {
            ExtractErrorKind::PathEscapes => ExtractErrorKind::HardlinkEscapes {
                target: target.clone(),
            },
            other => other,
        })?;
        let Some((name, parent)) = components.split_last() else {
            return Err(ExtractErrorKind::HardlinkTargetMissing { target });
        };
        let missing = || ExtractErrorKind::HardlinkTargetMissing {
            target: target.clone(),
        };
        let dir = self.root.open_dir(parent).map_err(|_| missing())?;
        let stat = rustix::fs::statat(&dir, name_of(name), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|_| missing())?;
        if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
            return Err(missing());
        }
        Ok((dir, name.to_vec()))
    }

    fn apply_whiteout(&mut self, parent: &[&[u8]], target: &[u8]) -> Result<()> {
        if target.is_empty() || target == b"." || target == b".." {
            return Err(ExtractErrorKind::InvalidName(
                "whiteout of `.`, `..` or an empty name",
            ));
        }
        self.stats.whiteouts += 1;
        if let WhiteoutPolicy::Overlay(_) = self.options.whiteouts {
            self.overlay_whiteouts.push(OverlayWhiteout::Delete {
                dir: parent.iter().map(|c| c.to_vec()).collect(),
                name: target.to_vec(),
            });
        }
        let dir = match self.root.open_dir(parent) {
            Ok(fd) => fd,
            // Nothing below to hide.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(());
            }
            Err(e) => return Err(ExtractErrorKind::BadParent(e)),
        };
        let mut path: Vec<u8> = parent.join(&b'/');
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(target);
        self.layer_paths.remove(&path);
        remove_all_at(&dir, target)
    }

    fn apply_opaque(&mut self, dir: &[&[u8]]) -> Result<()> {
        self.stats.opaque_dirs += 1;
        if let WhiteoutPolicy::Overlay(_) = self.options.whiteouts {
            self.overlay_whiteouts.push(OverlayWhiteout::Opaque {
                dir: dir.iter().map(|c| c.to_vec()).collect(),
            });
        }
        let fd = match self.root.open_dir(dir) {
            Ok(fd) => fd,
            // An opaque marker for a directory not created: mkdir it (empty) like containerd.
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.ensure_dir(dir)?,
            Err(e) => return Err(ExtractErrorKind::BadParent(e)),
        };
        self.record_layer_path(dir);
        clear_lower(&fd, &dir.join(&b'/'), &self.layer_paths)
    }

    /// Converts the kept whiteouts to overlay form ([`WhiteoutPolicy::Overlay`]), then sets
    /// the deferred directory modes and mtimes, deepest first (so a whiteout created in a
    /// directory does not change its mtime).
    pub(super) fn finish(
        mut self,
    ) -> std::result::Result<ExtractStats, (Option<String>, ExtractErrorKind)> {
        if let WhiteoutPolicy::Overlay(xattrs) = self.options.whiteouts {
            for whiteout in std::mem::take(&mut self.overlay_whiteouts) {
                self.convert_whiteout(&whiteout, xattrs)?;
            }
        }
        for dir in self.deferred.iter().rev() {
            let components: Vec<&[u8]> = dir.components.iter().map(Vec::as_slice).collect();
            let entry_name = || Some(String::from_utf8_lossy(&components.join(&b'/')).into_owned());
            let fd = match components.split_last() {
                None => self.root.open_dir(&[]).ok(),
                Some((name, parent)) => self.root.open_dir(parent).ok().and_then(|p| {
                    rustix::fs::openat(
                        &p,
                        name_of(name),
                        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .ok()
                }),
            };
            // Removed or replaced by a later entry: nothing to set.
            let Some(fd) = fd else { continue };
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(dir.mode))
                .map_err(|e| (entry_name(), io_err("setting mode")(e)))?;
            let t = timestamp(dir.mtime);
            rustix::fs::futimens(
                &fd,
                &Timestamps {
                    last_access: t,
                    last_modification: t,
                },
            )
            .map_err(|e| (entry_name(), io_err("setting mtime")(e)))?;
        }
        self.deferred.clear();
        Ok(self.stats)
    }
}

impl Extractor<'_> {
    /// Turns one applied whiteout into its overlayfs form.
    fn convert_whiteout(
        &mut self,
        whiteout: &OverlayWhiteout,
        xattrs: OverlayXattrs,
    ) -> std::result::Result<(), (Option<String>, ExtractErrorKind)> {
        let (dir, marker) = match whiteout {
            OverlayWhiteout::Delete { dir, name } => {
                let mut marker = crate::WHITEOUT_PREFIX.as_bytes().to_vec();
                marker.extend_from_slice(name);
                (dir, marker)
            }
            OverlayWhiteout::Opaque { dir } => (dir, crate::OPAQUE_MARKER.as_bytes().to_vec()),
        };
        let entry_name = || {
            let mut path: Vec<&[u8]> = dir.iter().map(Vec::as_slice).collect();
            path.push(&marker);
            Some(String::from_utf8_lossy(&path.join(&b'/')).into_owned())
        };
        let Some(fd) = self
            .open_real_dir(dir)
            .map_err(|kind| (entry_name(), kind))?
        else {
            self.stats.whiteouts_skipped += 1;
            return Ok(());
        };
        match whiteout {
            OverlayWhiteout::Delete { name, .. } => {
                remove_all_at(&fd, name).map_err(|kind| (entry_name(), kind))?;
                rustix::fs::mknodat(
                    &fd,
                    name_of(name),
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rustix::fs::makedev(0, 0),
                )
                .map_err(|e| {
                    (
                        entry_name(),
                        io_err("creating the overlay whiteout (a 0/0 character device; needs root, a user namespace or Linux 5.8)")(e),
                    )
                })
            }
            OverlayWhiteout::Opaque { .. } => {
                rustix::fs::fsetxattr(&fd, xattrs.opaque(), b"y", rustix::fs::XattrFlags::empty())
                    .map_err(|e| {
                        (
                            entry_name(),
                            ExtractErrorKind::Xattr {
                                name: xattrs.opaque().to_owned(),
                                source: e.into(),
                            },
                        )
                    })
            }
        }
    }

    /// Opens `components` below the root without following any symlink; `None` when one of
    /// them is missing, a symlink or not a directory.
    fn open_real_dir(&self, components: &[Vec<u8>]) -> Result<Option<OwnedFd>> {
        let mut fd = self
            .root
            .open_dir(&[])
            .map_err(ExtractErrorKind::BadParent)?;
        for component in components {
            fd = match rustix::fs::openat(
                &fd,
                name_of(component),
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(None),
                Err(e) => return Err(io_err("opening a whiteout's directory")(e)),
            };
        }
        Ok(Some(fd))
    }
}

fn timestamp(mtime: i64) -> Timespec {
    Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    }
}

fn set_mtime_at(parent: &OwnedFd, name: &OsStr, mtime: i64) -> Result<()> {
    let t = timestamp(mtime);
    rustix::fs::utimensat(
        parent,
        name,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(io_err("setting mtime"))
}

/// Makes room for a new entry `name`: removes what is there, except a directory when a
/// directory comes (tar semantics: directories merge). Returns whether a directory was kept.
fn prepare_slot(parent: &OwnedFd, name: &[u8], is_dir: bool) -> Result<bool> {
    match rustix::fs::statat(parent, name_of(name), AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(io_err("inspecting the existing entry")(e)),
        Ok(stat) => {
            let existing_is_dir = FileType::from_raw_mode(stat.st_mode) == FileType::Directory;
            if existing_is_dir && is_dir {
                return Ok(true);
            }
            remove_all_at(parent, name)?;
            Ok(false)
        }
    }
}

/// Removes `name` in `parent` and, for a directory, everything below it. Never follows a
/// symlink: a symlink is removed itself.
fn remove_all_at(parent: &impl AsFd, name: &[u8]) -> Result<()> {
    let name_os = name_of(name);
    let stat = match rustix::fs::statat(parent, name_os, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(io_err("inspecting an entry to remove")(e)),
    };
    if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
        let dir = rustix::fs::openat(
            parent,
            name_os,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err("opening a directory to remove"))?;
        for child in list_dir(&dir)? {
            remove_all_at(&dir, &child)?;
        }
        rustix::fs::unlinkat(parent, name_os, AtFlags::REMOVEDIR)
            .map_err(io_err("removing a directory"))
    } else {
        rustix::fs::unlinkat(parent, name_os, AtFlags::empty()).map_err(io_err("removing an entry"))
    }
}

fn list_dir(dir: &OwnedFd) -> Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    let mut iter = rustix::fs::Dir::read_from(dir).map_err(io_err("listing a directory"))?;
    while let Some(entry) = iter.read() {
        let entry = entry.map_err(io_err("listing a directory"))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    Ok(names)
}

/// Opaque directory: removes every child not written by this layer; recurses into
/// directories this layer wrote, whose lower contents are hidden as well.
fn clear_lower(dir: &OwnedFd, prefix: &[u8], layer_paths: &LayerPaths) -> Result<()> {
    for child in list_dir(dir)? {
        let mut path = prefix.to_vec();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(&child);
        if !layer_paths.contains(&path) {
            remove_all_at(dir, &child)?;
            continue;
        }
        let is_dir = rustix::fs::statat(dir, name_of(&child), AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory);
        if is_dir {
            let sub = rustix::fs::openat(
                dir,
                name_of(&child),
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(io_err("opening a directory"))?;
            clear_lower(&sub, &path, layer_paths)?;
        }
    }
    Ok(())
}
