//! The [`Syscalls`] seam: every filesystem and namespace operation the rootfs setup performs is
//! an [`Op`] value applied through this trait. [`RealSyscalls`] performs them with rustix (and
//! libc where rustix has no wrapper); [`RecordingSyscalls`] records them so a unit test can
//! assert the exact mount sequence for a spec without root.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, Mode};
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

/// Per-mount flags that matter for the sandbox's mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MountOptions {
    /// `nosuid`.
    pub is_nosuid: bool,
    /// `nodev`.
    pub is_nodev: bool,
    /// `noexec`.
    pub is_noexec: bool,
}

impl MountOptions {
    /// `nosuid,nodev`.
    pub const SAFE: Self = Self {
        is_nosuid: true,
        is_nodev: true,
        is_noexec: false,
    };
    /// `nosuid,nodev,noexec`.
    pub const STRICT: Self = Self {
        is_nosuid: true,
        is_nodev: true,
        is_noexec: true,
    };

    fn flags(self) -> MountFlags {
        let mut flags = MountFlags::empty();
        if self.is_nosuid {
            flags |= MountFlags::NOSUID;
        }
        if self.is_nodev {
            flags |= MountFlags::NODEV;
        }
        if self.is_noexec {
            flags |= MountFlags::NOEXEC;
        }
        flags
    }
}

/// The type of an existing path (not following a final symlink).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A directory.
    Directory,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// Anything else (device, fifo, socket).
    Other,
}

/// One operation of the sandbox setup.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// `unshare(2)` of the mount namespace (plus uts/ipc/net as requested are done earlier).
    UnshareMountNamespace,
    /// `mount --make-rprivate /`: nothing propagates back to the host.
    MakeRootPrivate,
    /// Attach the overlay prepared (with the host's credentials) by the helper.
    AttachPreparedOverlay {
        /// The merged mountpoint.
        target: PathBuf,
    },
    /// Mount an overlay from inside the user namespace (rootless; `userxattr`).
    MountOverlay {
        /// Lower directories, top-most first.
        lowers: Vec<PathBuf>,
        /// Upper directory.
        upper: PathBuf,
        /// Overlay work directory.
        work: PathBuf,
        /// The merged mountpoint.
        target: PathBuf,
    },
    /// A bind mount.
    Bind {
        /// Host path.
        source: PathBuf,
        /// Mountpoint.
        target: PathBuf,
        /// `MS_REC`.
        is_recursive: bool,
    },
    /// A new filesystem instance (`tmpfs`, `proc`, `sysfs`, `devpts`, …).
    MountFs {
        /// Filesystem type.
        fstype: String,
        /// Mountpoint.
        target: PathBuf,
        /// Flags.
        options: MountOptions,
        /// Filesystem data (`mode=755,size=65536k`).
        data: String,
    },
    /// Make a mount (and, if recursive, its submounts) read-only with `mount_setattr(2)`,
    /// which keeps the flags the kernel locked for the user namespace.
    MakeReadonly {
        /// Mountpoint.
        target: PathBuf,
        /// `AT_RECURSIVE`.
        is_recursive: bool,
    },
    /// Make a mount (and, if recursive, its submounts) `nodev` with `mount_setattr(2)`:
    /// device nodes under it cannot be opened.
    MakeNodev {
        /// Mountpoint.
        target: PathBuf,
        /// `AT_RECURSIVE`.
        is_recursive: bool,
    },
    /// Change the owner of a path (not following a final symlink).
    Chown {
        /// Path.
        path: PathBuf,
        /// New owner, as seen in the sandbox's user namespace.
        uid: u32,
        /// New group.
        gid: u32,
    },
    /// Create a directory (parents must exist).
    Mkdir {
        /// Path.
        path: PathBuf,
        /// Permission bits.
        mode: u32,
    },
    /// Create an empty regular file (a mountpoint for a file bind mount).
    CreateFile {
        /// Path.
        path: PathBuf,
        /// Permission bits.
        mode: u32,
    },
    /// Create a symbolic link.
    Symlink {
        /// Link content.
        target: String,
        /// Path of the link.
        link: PathBuf,
    },
    /// `pivot_root` into `new_root` and detach the old root.
    PivotRoot {
        /// The merged rootfs.
        new_root: PathBuf,
    },
    /// `sethostname(2)`.
    SetHostname(String),
    /// Create a character device node (chroot isolation without mount rights: `/dev/null`…).
    MakeCharDevice {
        /// Path.
        path: PathBuf,
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
        /// Permission bits.
        mode: u32,
    },
    /// Rename a path (chroot isolation moves an image's file aside for a stand-in).
    Rename {
        /// Old path.
        from: PathBuf,
        /// New path.
        to: PathBuf,
    },
    /// Copy a host file or directory tree (with owners, modes, xattrs and times; device nodes
    /// left out) onto `target`, an existing file or directory of the same kind: how chroot
    /// isolation provides a mount where it cannot mount.
    CopyIn {
        /// Host path.
        source: PathBuf,
        /// Path in the rootfs copy (checked for symlinks by the caller).
        target: PathBuf,
    },
    /// Bring the loopback interface up (fresh network namespace).
    LoopbackUp,
}

/// Performs [`Op`]s; implemented by [`RealSyscalls`] and [`RecordingSyscalls`].
pub trait Syscalls {
    /// Performs one operation.
    fn apply(&mut self, op: &Op) -> io::Result<()>;
    /// The kind of an existing path, `None` if absent (final symlinks are not followed).
    fn file_kind(&mut self, path: &Path) -> io::Result<Option<FileKind>>;
}

/// The real thing, for the helper process inside the namespaces.
#[derive(Debug, Default)]
pub struct RealSyscalls {
    /// The detached overlay mount made by the helper (consumed by `AttachPreparedOverlay`).
    pub prepared_overlay: Option<OwnedFd>,
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;

fn mount_setattr(target: &Path, attr_set: u64, is_recursive: bool) -> io::Result<()> {
    let path = cstring(target)?;
    let attr = MountAttr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = if is_recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: `path` is a valid NUL-terminated string and `attr` a live, correctly laid out
    // `struct mount_attr` whose size we pass; the kernel only reads both during the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags,
            std::ptr::from_ref(&attr),
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn loopback_up() -> io::Result<()> {
    // SAFETY: plain socket(2) call; the returned descriptor is owned below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let socket: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(raw) };
    // SAFETY: `ifreq` is plain old data; all-zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = libc::c_char::try_from(*byte).unwrap_or(0);
    }
    let fd = std::os::fd::AsRawFd::as_raw_fd(&socket.as_fd());
    // SAFETY: SIOCGIFFLAGS reads the interface name from and writes the flags into `request`,
    // a live `ifreq`.
    if unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &raw mut request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled `ifru_flags` for SIOCGIFFLAGS.
    unsafe {
        request.ifr_ifru.ifru_flags |= i16::try_from(libc::IFF_UP).unwrap_or(1);
    }
    // SAFETY: SIOCSIFFLAGS reads the name and flags from `request`, a live `ifreq`.
    if unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &raw const request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn mount_overlay_legacy(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> io::Result<()> {
    let lowerdir = lowers
        .iter()
        .map(|p| crate::overlay::escape_option(p))
        .collect::<io::Result<Vec<_>>>()?
        .join(":");
    let data = format!(
        "lowerdir={lowerdir},upperdir={},workdir={},userxattr",
        crate::overlay::escape_option(upper)?,
        crate::overlay::escape_option(work)?
    );
    // `volatile` (Linux 5.10) spares the unmount a `syncfs` of the store's filesystem (see
    // `overlay::prepare_overlay`); a kernel without it refuses the option, so retry bare.
    let volatile = CString::new(format!("{data},volatile")).map_err(io::Error::other)?;
    let mount = |data: &CString| {
        rustix::mount::mount(
            "overlay",
            target,
            "overlay",
            MountFlags::empty(),
            Some(data.as_c_str()),
        )
    };
    match mount(&volatile) {
        Err(rustix::io::Errno::INVAL) => {
            let data = CString::new(data).map_err(io::Error::other)?;
            mount(&data).map_err(io::Error::from)
        }
        other => other.map_err(io::Error::from),
    }
}

impl Syscalls for RealSyscalls {
    fn apply(&mut self, op: &Op) -> io::Result<()> {
        match op {
            Op::UnshareMountNamespace => {
                // SAFETY: only a namespace is unshared, not the file table or fs state that
                // other code of this (single-threaded) process relies on.
                unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
                    .map_err(io::Error::from)
            }
            Op::MakeRootPrivate => rustix::mount::mount_change(
                "/",
                MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
            )
            .map_err(io::Error::from),
            Op::AttachPreparedOverlay { target } => {
                let fd = self.prepared_overlay.take().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "no prepared overlay mount")
                })?;
                rustix::mount::move_mount(
                    fd.as_fd(),
                    "",
                    CWD,
                    target,
                    rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
                )
                .map_err(io::Error::from)
            }
            Op::MountOverlay {
                lowers,
                upper,
                work,
                target,
            } => mount_overlay_legacy(lowers, upper, work, target),
            Op::Bind {
                source,
                target,
                is_recursive,
            } => if *is_recursive {
                rustix::mount::mount_bind_recursive(source, target)
            } else {
                rustix::mount::mount_bind(source, target)
            }
            .map_err(io::Error::from),
            Op::MountFs {
                fstype,
                target,
                options,
                data,
            } => {
                let data = CString::new(data.as_str()).map_err(io::Error::other)?;
                rustix::mount::mount(
                    fstype.as_str(),
                    target,
                    fstype.as_str(),
                    options.flags(),
                    Some(data.as_c_str()),
                )
                .map_err(io::Error::from)
            }
            Op::MakeReadonly {
                target,
                is_recursive,
            } => mount_setattr(target, MOUNT_ATTR_RDONLY, *is_recursive),
            Op::MakeNodev {
                target,
                is_recursive,
            } => mount_setattr(target, MOUNT_ATTR_NODEV, *is_recursive),
            Op::Chown { path, uid, gid } => rustix::fs::chownat(
                CWD,
                path,
                Some(rustix::process::Uid::from_raw(*uid)),
                Some(rustix::process::Gid::from_raw(*gid)),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(io::Error::from),
            Op::Mkdir { path, mode } => {
                rustix::fs::mkdir(path, Mode::from_raw_mode(*mode)).map_err(io::Error::from)?;
                // mkdir honours the umask; the mode is what we asked for.
                rustix::fs::chmod(path, Mode::from_raw_mode(*mode)).map_err(io::Error::from)
            }
            Op::CreateFile { path, mode } => {
                let fd = rustix::fs::open(
                    path,
                    rustix::fs::OFlags::CREATE
                        | rustix::fs::OFlags::EXCL
                        | rustix::fs::OFlags::WRONLY
                        | rustix::fs::OFlags::CLOEXEC,
                    Mode::from_raw_mode(*mode),
                )?;
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(*mode)).map_err(io::Error::from)
            }
            Op::Symlink { target, link } => {
                rustix::fs::symlink(target.as_str(), link).map_err(io::Error::from)
            }
            Op::PivotRoot { new_root } => {
                // runc's trick: pivot_root(".", ".") stacks the old root under the new one,
                // then a lazy unmount of "." removes the old root without a put_old directory.
                rustix::process::chdir(new_root)?;
                rustix::process::pivot_root(".", ".")?;
                rustix::mount::unmount(".", UnmountFlags::DETACH)?;
                rustix::process::chdir("/").map_err(io::Error::from)
            }
            Op::SetHostname(name) => {
                rustix::system::sethostname(name.as_bytes()).map_err(io::Error::from)
            }
            Op::LoopbackUp => loopback_up(),
            Op::MakeCharDevice {
                path,
                major,
                minor,
                mode,
            } => rustix::fs::mknodat(
                CWD,
                path,
                rustix::fs::FileType::CharacterDevice,
                Mode::from_raw_mode(*mode),
                rustix::fs::makedev(*major, *minor),
            )
            .and_then(|()| rustix::fs::chmod(path, Mode::from_raw_mode(*mode)))
            .map_err(io::Error::from),
            Op::CopyIn { source, target } => crate::copyup::copy_in(source, target),
            Op::Rename { from, to } => rustix::fs::rename(from, to).map_err(io::Error::from),
        }
    }

    fn file_kind(&mut self, path: &Path) -> io::Result<Option<FileKind>> {
        match rustix::fs::lstat(path) {
            Ok(stat) => Ok(Some(
                match rustix::fs::FileType::from_raw_mode(stat.st_mode) {
                    rustix::fs::FileType::Directory => FileKind::Directory,
                    rustix::fs::FileType::RegularFile => FileKind::File,
                    rustix::fs::FileType::Symlink => FileKind::Symlink,
                    _ => FileKind::Other,
                },
            )),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }
}

/// A test double: records every [`Op`] and answers [`Syscalls::file_kind`] from a map that
/// the recorded `Mkdir`/`CreateFile`/`Symlink` ops update.
#[derive(Debug, Default)]
pub struct RecordingSyscalls {
    /// The operations, in order.
    pub ops: Vec<Op>,
    /// Paths that exist.
    pub existing: BTreeMap<PathBuf, FileKind>,
}

impl RecordingSyscalls {
    /// A double where `existing` paths exist.
    pub fn with_existing(existing: impl IntoIterator<Item = (PathBuf, FileKind)>) -> Self {
        Self {
            ops: Vec::new(),
            existing: existing.into_iter().collect(),
        }
    }
}

impl Syscalls for RecordingSyscalls {
    fn apply(&mut self, op: &Op) -> io::Result<()> {
        match op {
            Op::Mkdir { path, .. } => {
                self.existing.insert(path.clone(), FileKind::Directory);
            }
            Op::CreateFile { path, .. } => {
                self.existing.insert(path.clone(), FileKind::File);
            }
            Op::Symlink { link, .. } => {
                self.existing.insert(link.clone(), FileKind::Symlink);
            }
            Op::MakeCharDevice { path, .. } => {
                self.existing.insert(path.clone(), FileKind::Other);
            }
            Op::Rename { from, to } => {
                if let Some(kind) = self.existing.remove(from) {
                    self.existing.insert(to.clone(), kind);
                }
            }
            _ => {}
        }
        self.ops.push(op.clone());
        Ok(())
    }

    fn file_kind(&mut self, path: &Path) -> io::Result<Option<FileKind>> {
        Ok(self.existing.get(path).copied())
    }
}
