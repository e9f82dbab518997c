//! File metadata helpers shared by the copy fallback and the stub cleanup: `lstat` snapshots,
//! xattr lists, and copying one entry (content, owner, mode, xattrs, times) without following
//! symlinks.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps};

/// The metadata the copy fallback's differ compares (never content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) kind: FileType,
    pub(crate) ino: u64,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) size: i64,
    pub(crate) rdev: u64,
    pub(crate) mtime: (i64, i64),
    pub(crate) ctime: (i64, i64),
    pub(crate) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

pub(crate) fn lstat(path: &Path) -> io::Result<rustix::fs::Stat> {
    rustix::fs::lstat(path).map_err(|err| {
        io::Error::new(
            io::Error::from(err).kind(),
            format!("lstat {}: {err}", path.display()),
        )
    })
}

pub(crate) fn meta(path: &Path) -> io::Result<Meta> {
    let stat = lstat(path)?;
    Ok(Meta {
        kind: FileType::from_raw_mode(stat.st_mode),
        ino: stat.st_ino,
        mode: stat.st_mode & 0o7777,
        uid: stat.st_uid,
        gid: stat.st_gid,
        size: stat.st_size,
        rdev: stat.st_rdev,
        mtime: (
            stat.st_mtime,
            i64::try_from(stat.st_mtime_nsec).unwrap_or(0),
        ),
        ctime: (
            stat.st_ctime,
            i64::try_from(stat.st_ctime_nsec).unwrap_or(0),
        ),
        xattrs: read_xattrs(path)?,
    })
}

/// All xattrs of `path` (not following symlinks), sorted by name; none when unsupported.
pub(crate) fn read_xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let size = match rustix::fs::llistxattr(path, &mut [0u8; 0][..]) {
        Ok(0) | Err(rustix::io::Errno::NOTSUP | rustix::io::Errno::PERM) => return Ok(Vec::new()),
        Ok(size) => size,
        Err(err) => return Err(err.into()),
    };
    let mut names = vec![0u8; size];
    let len = rustix::fs::llistxattr(path, &mut names[..])?;
    names.truncate(len);
    let mut pairs = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name_os = OsStr::from_bytes(name);
        let value = match rustix::fs::lgetxattr(path, name_os, &mut [0u8; 0][..]) {
            Ok(0) => Vec::new(),
            Ok(size) => {
                let mut value = vec![0u8; size];
                let len = rustix::fs::lgetxattr(path, name_os, &mut value[..])?;
                value.truncate(len);
                value
            }
            // Vanished between list and get, or unreadable for us: not part of the content.
            Err(rustix::io::Errno::NODATA | rustix::io::Errno::PERM) => continue,
            Err(err) => return Err(err.into()),
        };
        pairs.push((name.to_vec(), value));
    }
    pairs.sort();
    Ok(pairs)
}

/// Is `name` an overlay-internal xattr that must not be copied as content?
pub(crate) fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// True when `path` is an overlay whiteout (a 0/0 character device).
pub(crate) fn is_whiteout(stat: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(stat.st_mode) == FileType::CharacterDevice && stat.st_rdev == 0
}

/// True when the directory carries an `overlay.opaque` xattr (`y`).
pub(crate) fn is_opaque(path: &Path) -> bool {
    [
        crate::overlay::OPAQUE_XATTR_TRUSTED,
        crate::overlay::OPAQUE_XATTR_USER,
    ]
    .iter()
    .any(|name| {
        let mut value = [0u8; 1];
        matches!(rustix::fs::lgetxattr(path, *name, &mut value[..]), Ok(1) if value[0] == b'y')
    })
}

/// Creates a 0/0 character device whiteout at `path`.
pub(crate) fn make_whiteout(path: &Path) -> io::Result<()> {
    rustix::fs::mknodat(CWD, path, FileType::CharacterDevice, Mode::empty(), 0).map_err(|err| {
        io::Error::new(
            io::Error::from(err).kind(),
            format!("whiteout {}: {err}", path.display()),
        )
    })
}

/// Copies owner, mode, xattrs (minus overlay-internal ones) and times from `source` to `dest`.
pub(crate) fn copy_metadata(source: &Path, stat: &rustix::fs::Stat, dest: &Path) -> io::Result<()> {
    let kind = FileType::from_raw_mode(stat.st_mode);
    rustix::fs::chownat(
        CWD,
        dest,
        Some(rustix::fs::Uid::from_raw(stat.st_uid)),
        Some(rustix::fs::Gid::from_raw(stat.st_gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .or_else(|err| {
        if err == rustix::io::Errno::PERM {
            Ok(())
        } else {
            Err(err)
        }
    })?;
    if kind != FileType::Symlink {
        rustix::fs::chmod(dest, Mode::from_raw_mode(stat.st_mode & 0o7777))?;
    }
    for (name, value) in read_xattrs(source)? {
        if is_overlay_xattr(&name) {
            continue;
        }
        let name = OsStr::from_bytes(&name);
        match rustix::fs::lsetxattr(dest, name, &value, rustix::fs::XattrFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOTSUP | rustix::io::Errno::PERM) => {}
            Err(err) => return Err(err.into()),
        }
    }
    set_times(dest, stat)
}

pub(crate) fn set_times(dest: &Path, stat: &rustix::fs::Stat) -> io::Result<()> {
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: stat.st_atime,
            tv_nsec: stat.st_atime_nsec.try_into().unwrap_or(0),
        },
        last_modification: Timespec {
            tv_sec: stat.st_mtime,
            tv_nsec: stat.st_mtime_nsec.try_into().unwrap_or(0),
        },
    };
    rustix::fs::utimensat(CWD, dest, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(io::Error::from)
}

/// Copies one non-directory entry (regular file, symlink, device, fifo) with its metadata.
pub(crate) fn copy_entry(source: &Path, stat: &rustix::fs::Stat, dest: &Path) -> io::Result<()> {
    let kind = FileType::from_raw_mode(stat.st_mode);
    match kind {
        FileType::RegularFile => {
            fs_err::copy(source, dest)?;
        }
        FileType::Symlink => {
            let target = fs_err::read_link(source)?;
            rustix::fs::symlink(&target, dest)?;
        }
        FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
            rustix::fs::mknodat(
                CWD,
                dest,
                kind,
                Mode::from_raw_mode(stat.st_mode & 0o7777),
                stat.st_rdev,
            )?;
        }
        FileType::Directory | FileType::Socket | FileType::Unknown => {
            tracing::debug!(path = %source.display(), "not copied (socket or unknown type)");
            return Ok(());
        }
    }
    copy_metadata(source, stat, dest)
}

/// Removes a path of any type (`rm -rf`), absent is fine.
pub(crate) fn remove_all(path: &Path) -> io::Result<()> {
    match rustix::fs::lstat(path) {
        Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(err) => Err(err.into()),
        Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
            fs_err::remove_dir_all(path)
        }
        Ok(_) => fs_err::remove_file(path),
    }
}
