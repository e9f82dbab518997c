//! Writing a planned COPY into its staging directory: directories in path order, regular
//! files on a few threads, hard links where an identical file already is in a snapshot.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use kiln_oci::{ChainId, Digest};

use kiln_store::Store;

use crate::copy::digest::HashMemo;
use crate::copy::source::{Entry, EntryKind, host_path};
use crate::copy::{CopyItem, CopyPlan};

/// The store's `snapshots/` directory: files below it are immutable, so they may be linked.
pub(crate) fn snapshots_dir(store: &Store) -> PathBuf {
    store.root().join("snapshots")
}

/// Writes the plan's entries: directories first, in path order (each before what it holds),
/// then regular files on a few threads at once — a large COPY is thousands of small,
/// independent create-copy-chown-chmod-utime sequences that one thread runs back to back.
pub(crate) fn write_items(staging: &Path, plan: &CopyPlan, linker: &Linker<'_>) -> io::Result<()> {
    let mut files = Vec::new();
    for item in plan.items() {
        if item.source.kind == EntryKind::File {
            files.push(item);
        } else {
            write_item(staging, item)?;
        }
    }
    let write = |item: &CopyItem| {
        let host = host_path(staging, item.dest.trim_start_matches('/'));
        if linker.link(item, &host) {
            Ok(())
        } else {
            write_file(staging, item)
        }
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, 4);
    if threads == 1 || files.len() < 256 {
        return files.iter().try_for_each(|item| write(item));
    }
    let chunk = files.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().try_for_each(|item| write(item))))
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .unwrap_or_else(|_| Err(io::Error::other("a COPY writer thread panicked")))
        })
    })
}

/// Hard links instead of copies, where a file with the same content and metadata is already
/// in an immutable snapshot: the source itself for a `COPY --from` of a stage or image, or
/// where the last COPY of an unchanged context file wrote it (the memo remembers). A COPY of
/// a 20k-file context after a one-file edit then creates one inode, not 20,000 (and copies no
/// data for the rest). Snapshots are never written after they are made, so sharing inodes
/// between them is safe; each inode is linked once per layer, so the layer's tar has no
/// hard links a copy would not have.
pub(crate) struct Linker<'a> {
    snapshots: PathBuf,
    store: &'a Store,
    memo: &'a HashMemo,
    /// Inodes (device, number) linked into this layer already.
    used: std::sync::Mutex<std::collections::HashSet<(u64, u64)>>,
    /// Whether a snapshot (by directory name) may be linked from (not an unsynced one of an
    /// earlier boot).
    trusted: std::sync::Mutex<std::collections::HashMap<String, bool>>,
}

impl<'a> Linker<'a> {
    /// A linker to files of `store`'s snapshots, found through `memo`'s copy locations.
    pub(crate) fn new(store: &'a Store, memo: &'a HashMemo) -> Self {
        Self {
            snapshots: snapshots_dir(store),
            store,
            memo,
            used: std::sync::Mutex::default(),
            trusted: std::sync::Mutex::default(),
        }
    }

    /// Links `item` at `host` if it can; `false` means copy it.
    fn link(&self, item: &CopyItem, host: &Path) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        let candidate = if item.source.host_path.starts_with(&self.snapshots) {
            item.source.host_path.clone()
        } else {
            let Some(location) = self.memo.copy_location(&item.source) else {
                return false;
            };
            let snapshot = location.split('/').next().unwrap_or_default().to_owned();
            let trusted = *self
                .trusted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(snapshot.clone())
                .or_insert_with(|| {
                    format!("sha256:{snapshot}")
                        .parse::<Digest>()
                        .is_ok_and(|d| self.store.has_snapshot(&ChainId::from_stored(d)))
                });
            if !trusted {
                return false;
            }
            host_path(&self.snapshots, &location)
        };
        let Ok(meta) = fs_err::symlink_metadata(&candidate) else {
            return false;
        };
        let same = meta.is_file()
            && meta.len() == item.source.size
            && meta.mode() & 0o7777 == item.mode
            && (meta.uid(), meta.gid()) == (item.uid, item.gid)
            && (meta.mtime(), meta.mtime_nsec()) == (item.source.mtime, item.source.mtime_nsec)
            && meta.nlink() < 60_000
            // Files with extended attributes are copied (which writes them best effort), so
            // the layer does not depend on whether the store could have linked them.
            && rustix::fs::llistxattr_query(&candidate).is_ok_and(|len| len == 0);
        if !same
            || !self
                .used
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert((meta.dev(), meta.ino()))
        {
            return false;
        }
        fs_err::hard_link(&candidate, host).is_ok()
    }
}

/// One regular file: created exclusively (the staging tree is new), filled with
/// `copy_file_range`, then owner, mode (after the owner: chown clears setuid bits) and mtime
/// set on the open descriptor — no path walks beyond the create.
fn write_file(staging: &Path, item: &CopyItem) -> io::Result<()> {
    use fs_err::os::unix::fs::OpenOptionsExt as _;
    let host = host_path(staging, item.dest.trim_start_matches('/'));
    let with_path =
        |e: io::Error, path: &Path| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    // std Files for io::copy, which uses copy_file_range only between std Files
    let create = || {
        fs_err::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&host)
            .map(fs_err::File::into_file)
    };
    let mut dst = match create() {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = host.parent() {
                fs_err::create_dir_all(parent)?;
            }
            create()?
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // Not expected in a new tree; COPY replaces what is there.
            fs_err::remove_file(&host)?;
            create()?
        }
        Err(e) => return Err(e),
    };
    let mut src = fs_err::File::open(&item.source.host_path)?.into_file();
    io::copy(&mut src, &mut dst).map_err(|e| with_path(e, &item.source.host_path))?;
    rustix::fs::fchown(
        &dst,
        Some(rustix::process::Uid::from_raw(item.uid)),
        Some(rustix::process::Gid::from_raw(item.gid)),
    )
    .map_err(|e| with_path(e.into(), &host))?;
    rustix::fs::fchmod(&dst, rustix::fs::Mode::from_raw_mode(item.mode & 0o7777))
        .map_err(|e| with_path(e.into(), &host))?;
    // After the owner: chown clears a file capability.
    for (name, value) in &item.source.xattrs {
        let name = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name);
        if let Err(e) = rustix::fs::fsetxattr(&dst, name, value, rustix::fs::XattrFlags::empty()) {
            // Best effort, like BuildKit: the store's filesystem may refuse a namespace.
            tracing::debug!(path = %host.display(), name = %name.display(), %e, "extended attribute not copied");
        }
    }
    let t = rustix::fs::Timespec {
        tv_sec: item.source.mtime,
        tv_nsec: item.source.mtime_nsec,
    };
    rustix::fs::futimens(
        &dst,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
    )
    .map_err(|e| with_path(e.into(), &host))
}

fn write_item(staging: &Path, item: &CopyItem) -> io::Result<()> {
    let host = host_path(staging, item.dest.trim_start_matches('/'));
    if let Some(parent) = host.parent() {
        fs_err::create_dir_all(parent)?;
    }
    match &item.source.kind {
        EntryKind::Dir => {
            match fs_err::symlink_metadata(&host) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    fs_err::remove_file(&host)?;
                    fs_err::create_dir(&host)?;
                }
                Err(_) => fs_err::create_dir(&host)?,
            }
            apply_meta(&host, item.mode, item.uid, item.gid, None, false)?;
        }
        EntryKind::File => write_file(staging, item)?,
        EntryKind::Symlink(target) => {
            if fs_err::symlink_metadata(&host).is_ok() {
                let _ = fs_err::remove_file(&host);
            }
            fs_err::os::unix::fs::symlink(target, &host)?;
            rustix::fs::chownat(
                rustix::fs::CWD,
                &host,
                Some(rustix::process::Uid::from_raw(item.uid)),
                Some(rustix::process::Gid::from_raw(item.gid)),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(io::Error::from)?;
            set_mtime(&host, item.source.mtime, item.source.mtime_nsec, true)?;
        }
        EntryKind::Special => {
            // Device nodes and fifos are not copied by COPY (BuildKit copies regular content).
            tracing::warn!(path = %item.dest, "special file skipped by COPY");
        }
    }
    Ok(())
}

/// Gives `host` the owner, mode and mtime of `entry` (a directory of the destination stage
/// that the layer keeps as it is).
pub(crate) fn apply_entry_meta(host: &Path, entry: &Entry) -> io::Result<()> {
    apply_meta(
        host,
        entry.mode,
        entry.uid,
        entry.gid,
        Some((entry.mtime, entry.mtime_nsec)),
        false,
    )
}

pub(crate) fn apply_meta(
    host: &Path,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Option<(i64, i64)>,
    nofollow: bool,
) -> io::Result<()> {
    rustix::fs::chown(
        host,
        Some(rustix::process::Uid::from_raw(uid)),
        Some(rustix::process::Gid::from_raw(gid)),
    )
    .map_err(io::Error::from)?;
    // chown clears setuid bits: set the mode afterwards.
    fs_err::set_permissions(host, fs::Permissions::from_mode(mode))?;
    if let Some((s, ns)) = mtime {
        set_mtime(host, s, ns, nofollow)?;
    }
    Ok(())
}

pub(crate) fn set_mtime(host: &Path, secs: i64, nsecs: i64, nofollow: bool) -> io::Result<()> {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: nsecs,
    };
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    let flags = if nofollow {
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW
    } else {
        rustix::fs::AtFlags::empty()
    };
    rustix::fs::utimensat(rustix::fs::CWD, host, &times, flags).map_err(io::Error::from)
}
