//! The rootfs setup sequence run by PID 1 inside the namespaces, expressed over [`Syscalls`]:
//! a private mount namespace, the overlay (or the copied rootfs) at the merged mountpoint,
//! `/proc`, a minimal `/dev`, read-only `/sys`, a tmpfs `/tmp` when the image has none, the
//! generated `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname` bound from files outside the
//! upperdir, the caller's extra mounts, then `pivot_root` and the hostname.
//!
//! Mountpoints are created in the merged view; every path created only to be mounted over is
//! returned as a [`Stub`] so the helper can remove it from the upperdir after the run.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::confine::{MASKED_PATHS, READONLY_PATHS};
use crate::spec::{ExtraMount, Network, Security};
use crate::syscalls::{FileKind, MountOptions, Op, Syscalls};

/// How the merged rootfs is obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSource {
    /// The helper prepared a detached overlay mount (root): attach it.
    PreparedOverlay,
    /// Mount the overlay from inside the user namespace (rootless, `userxattr`).
    Overlay {
        /// Lowers, top-most first.
        lowers: Vec<PathBuf>,
        /// Upper directory.
        upper: PathBuf,
        /// Overlay work directory.
        work: PathBuf,
    },
    /// Bind the copy-fallback rootfs directory.
    CopiedRootfs(PathBuf),
}

/// Everything the setup sequence needs.
#[derive(Debug, Clone)]
pub struct RootfsPlan {
    /// Where the rootfs is assembled (a directory outside the upperdir).
    pub merged: PathBuf,
    /// Overlay or copy.
    pub source: RootSource,
    /// Generated `/etc/hosts` (host path).
    pub hosts_file: PathBuf,
    /// Generated `/etc/hostname` (host path).
    pub hostname_file: PathBuf,
    /// Copied or generated `/etc/resolv.conf` (host path).
    pub resolv_file: PathBuf,
    /// Hostname to set.
    pub hostname: String,
    /// Network choice (sysfs and loopback for `None`).
    pub network: Network,
    /// The caller's extra mounts.
    pub mounts: Vec<ExtraMount>,
    /// `Sandbox` masks [`MASKED_PATHS`] and makes [`READONLY_PATHS`] read-only.
    pub security: Security,
    /// The size of `/dev/shm` in bytes; `None` is 64 MiB.
    pub shm_size: Option<u64>,
}

/// A path created in the merged view only to serve as a mountpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stub {
    /// Path relative to the rootfs.
    pub path: PathBuf,
    /// Directory (otherwise an empty regular file).
    pub is_dir: bool,
}

/// Host device nodes bound into the sandbox's `/dev` (no `mknod` in a user namespace).
const DEVICE_NODES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Symlinks every `/dev` has (runc's default set).
const DEVICE_LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

const DEV_TMPFS_DATA: &str = "mode=755,size=65536k";
const SHM_TMPFS_MODE: &str = "mode=1777";
/// Docker's default `/dev/shm` size.
const SHM_DEFAULT_SIZE: u64 = 64 * 1024 * 1024;
const TMP_TMPFS_DATA: &str = "mode=1777";
const MASK_TMPFS_DATA: &str = "size=0,mode=0555";
const DEVPTS_DATA: &str = "newinstance,ptmxmode=0666,mode=0620";

struct Setup<'a, S: Syscalls + ?Sized> {
    sys: &'a mut S,
    merged: &'a Path,
    stubs: Vec<Stub>,
    shm_size: Option<u64>,
}

enum Ensured {
    Ready,
    /// The path is a symlink in the image: mounting over it would follow it on the host.
    IsSymlink,
}

impl<S: Syscalls + ?Sized> Setup<'_, S> {
    fn op(&mut self, op: &Op) -> io::Result<()> {
        let context = format!("{op:?}");
        self.sys
            .apply(op)
            .map_err(|err| io::Error::new(err.kind(), format!("{context}: {err}")))
    }

    /// Makes sure `rel` exists in the merged view with the given type, creating it (and its
    /// missing parents) as recorded stubs.
    fn ensure(&mut self, rel: &Path, is_dir: bool, mode: u32) -> io::Result<Ensured> {
        let path = self.merged.join(rel);
        match self.sys.file_kind(&path)? {
            Some(FileKind::Symlink) => return Ok(Ensured::IsSymlink),
            Some(_) => return Ok(Ensured::Ready),
            None => {}
        }
        if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty())
            && let Ensured::IsSymlink = self.ensure(parent, true, 0o755)?
        {
            return Ok(Ensured::IsSymlink);
        }
        if is_dir {
            self.op(&Op::Mkdir { path, mode })?;
        } else {
            self.op(&Op::CreateFile { path, mode })?;
        }
        self.stubs.push(Stub {
            path: rel.to_path_buf(),
            is_dir,
        });
        Ok(Ensured::Ready)
    }

    fn mount_dev(&mut self) -> io::Result<()> {
        let dev = self.merged.join("dev");
        self.ensure(Path::new("dev"), true, 0o755)?;
        self.op(&Op::MountFs {
            fstype: "tmpfs".into(),
            target: dev.clone(),
            options: MountOptions {
                is_nosuid: true,
                is_nodev: false,
                is_noexec: true,
            },
            data: DEV_TMPFS_DATA.into(),
        })?;
        for node in DEVICE_NODES {
            let source = Path::new("/dev").join(node);
            if self.sys.file_kind(&source)?.is_none() {
                tracing::debug!(device = %source.display(), "host has no such device; skipped");
                continue;
            }
            let target = dev.join(node);
            self.op(&Op::CreateFile {
                path: target.clone(),
                mode: 0o666,
            })?;
            self.op(&Op::Bind {
                source,
                target,
                is_recursive: false,
            })?;
        }
        let pts = dev.join("pts");
        self.op(&Op::Mkdir {
            path: pts.clone(),
            mode: 0o755,
        })?;
        self.op(&Op::MountFs {
            fstype: "devpts".into(),
            target: pts,
            options: MountOptions {
                is_nosuid: true,
                is_nodev: false,
                is_noexec: true,
            },
            data: DEVPTS_DATA.into(),
        })?;
        let shm = dev.join("shm");
        self.op(&Op::Mkdir {
            path: shm.clone(),
            mode: 0o1777,
        })?;
        self.op(&Op::MountFs {
            fstype: "tmpfs".into(),
            target: shm,
            options: MountOptions::STRICT,
            data: format!(
                "{SHM_TMPFS_MODE},size={}",
                self.shm_size.unwrap_or(SHM_DEFAULT_SIZE)
            ),
        })?;
        for (name, target) in DEVICE_LINKS {
            self.op(&Op::Symlink {
                target: target.into(),
                link: dev.join(name),
            })?;
        }
        Ok(())
    }

    /// Hides `path` (absolute in the sandbox) as runc does: `/dev/null` over a file, an empty
    /// read-only tmpfs over a directory. Absent paths and symlinks are left alone.
    fn mask(&mut self, path: &str) -> io::Result<()> {
        let target = self.merged.join(path.trim_start_matches('/'));
        match self.sys.file_kind(&target)? {
            None | Some(FileKind::Symlink) => Ok(()),
            Some(FileKind::Directory) => {
                self.op(&Op::MountFs {
                    fstype: "tmpfs".into(),
                    target: target.clone(),
                    options: MountOptions::STRICT,
                    data: MASK_TMPFS_DATA.into(),
                })?;
                self.op(&Op::MakeReadonly {
                    target,
                    is_recursive: false,
                })
            }
            Some(FileKind::File | FileKind::Other) => self.op(&Op::Bind {
                source: PathBuf::from("/dev/null"),
                target,
                is_recursive: false,
            }),
        }
    }

    /// Makes `path` (absolute in the sandbox) and everything below it read-only with a bind
    /// mount onto itself. Absent paths and symlinks are left alone.
    fn make_readonly(&mut self, path: &str) -> io::Result<()> {
        let target = self.merged.join(path.trim_start_matches('/'));
        match self.sys.file_kind(&target)? {
            None | Some(FileKind::Symlink) => Ok(()),
            Some(_) => {
                self.op(&Op::Bind {
                    source: target.clone(),
                    target: target.clone(),
                    is_recursive: true,
                })?;
                self.op(&Op::MakeReadonly {
                    target,
                    is_recursive: true,
                })
            }
        }
    }

    fn bind_file(&mut self, source: &Path, rel: &str) -> io::Result<()> {
        match self.ensure(Path::new(rel), false, 0o644)? {
            Ensured::Ready => self.op(&Op::Bind {
                source: source.to_path_buf(),
                target: self.merged.join(rel),
                is_recursive: false,
            }),
            Ensured::IsSymlink => {
                tracing::warn!(
                    path = rel,
                    "is a symlink in the image; not providing the sandbox's own file there"
                );
                Ok(())
            }
        }
    }

    fn extra_mount(&mut self, mount: &ExtraMount) -> io::Result<()> {
        let rel = mount
            .target()
            .strip_prefix("/")
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("mount target {} is not absolute", mount.target().display()),
                )
            })?
            .to_path_buf();
        let target = self.merged.join(&rel);
        match mount {
            ExtraMount::Bind {
                source,
                is_readonly,
                owner,
                ..
            } => {
                let is_dir = source.is_dir();
                if let Ensured::IsSymlink = self.ensure(&rel, is_dir, 0o755)? {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("mount target {} is a symlink in the image", rel.display()),
                    ));
                }
                self.op(&Op::Bind {
                    source: source.clone(),
                    target: target.clone(),
                    is_recursive: true,
                })?;
                // A device node in a bound directory must not open a host device.
                self.op(&Op::MakeNodev {
                    target: target.clone(),
                    is_recursive: true,
                })?;
                if let Some((uid, gid)) = *owner {
                    self.op(&Op::Chown {
                        path: target.clone(),
                        uid,
                        gid,
                    })?;
                }
                if *is_readonly {
                    self.op(&Op::MakeReadonly {
                        target,
                        is_recursive: true,
                    })?;
                }
            }
            ExtraMount::Tmpfs { size, .. } => {
                if let Ensured::IsSymlink = self.ensure(&rel, true, 0o755)? {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("mount target {} is a symlink in the image", rel.display()),
                    ));
                }
                self.op(&Op::MountFs {
                    fstype: "tmpfs".into(),
                    target,
                    options: MountOptions::SAFE,
                    data: match size {
                        Some(bytes) => format!("{TMP_TMPFS_DATA},size={bytes}"),
                        None => TMP_TMPFS_DATA.into(),
                    },
                })?;
            }
        }
        Ok(())
    }
}

/// Host device nodes chroot isolation creates with `mknod` where it cannot bind them:
/// (name, major, minor).
const CHROOT_DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// What [`setup_chroot`] did, for the run and for the diff afterwards.
#[derive(Debug, Default)]
pub(crate) struct ChrootSetup {
    /// Paths created only to stand for a mountpoint.
    pub(crate) stubs: Vec<Stub>,
    /// Paths (relative to the rootfs) that stand for a mount: nothing at or below them is
    /// part of the layer.
    pub(crate) masked: Vec<PathBuf>,
    /// Read-write binds that were copied in: (path in the rootfs, host source) to copy back
    /// after the run.
    pub(crate) copy_back: Vec<(PathBuf, PathBuf)>,
    /// What the command has to do without, one line each, for the caller's warning.
    pub(crate) limits: Vec<String>,
    /// Paths of the image a stand-in replaced (without mounts): (path in the rootfs, where
    /// the original waits), to put back after the run.
    pub(crate) saved: Vec<(PathBuf, PathBuf)>,
}

/// `target` (absolute in the sandbox) as a path relative to `rootfs` whose parent directories
/// are symlink-free: every symlink on the way is resolved the way the command will see it
/// after `chroot` (absolute links from the rootfs, `..` stopping at its top), so the helper's
/// writes never land outside the rootfs. The final component is not followed.
pub(crate) fn resolve_in_root(rootfs: &Path, target: &Path) -> io::Result<PathBuf> {
    use std::collections::VecDeque;
    use std::path::Component;
    fn parts(path: &Path) -> VecDeque<std::ffi::OsString> {
        path.components()
            .filter_map(|component| match component {
                Component::Normal(name) => Some(name.to_owned()),
                Component::ParentDir => Some("..".into()),
                Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
            })
            .collect()
    }
    const MAX_LINKS: usize = 40;
    let mut resolved = PathBuf::new();
    let mut pending = parts(target);
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&name);
        if pending.is_empty() {
            return Ok(candidate);
        }
        let host = rootfs.join(&candidate);
        match rustix::fs::lstat(&host) {
            Ok(stat)
                if rustix::fs::FileType::from_raw_mode(stat.st_mode)
                    == rustix::fs::FileType::Symlink =>
            {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("too many symlinks resolving {}", target.display()),
                    ));
                }
                let link = fs_err::read_link(&host)?;
                if link.is_absolute() {
                    resolved = PathBuf::new();
                }
                let mut next = parts(&link);
                next.extend(pending);
                pending = next;
            }
            _ => resolved = candidate,
        }
    }
    Ok(resolved)
}

/// Prepares the rootfs copy at `plan.merged` for chroot isolation. With `can_mount` (the
/// helper is in its own mount namespace and may mount) it makes the same mounts as the
/// namespace sandbox, except that `/proc` and `/sys` are the container's, bound; without, it
/// creates `/dev`'s nodes with `mknod` (a plain `/dev/null` file where even that is refused),
/// copies the generated `/etc` files and every mount source in, and leaves `/proc` and `/sys`
/// empty. Either way every path that stands for a mount is listed as masked.
pub(crate) fn setup_chroot<S: Syscalls + ?Sized>(
    sys: &mut S,
    plan: &RootfsPlan,
    can_mount: bool,
    saved_dir: &Path,
    out: &mut ChrootSetup,
) -> io::Result<()> {
    let mut setup = Setup {
        sys,
        merged: &plan.merged,
        stubs: Vec::new(),
        shm_size: plan.shm_size,
    };
    let mut chroot = ChrootTargets {
        can_mount,
        saved_dir,
        out,
    };
    let result = chroot_sequence(&mut setup, plan, &mut chroot);
    out.stubs.append(&mut setup.stubs);
    result
}

/// Where chroot isolation's stand-ins for mounts come from.
struct ChrootTargets<'a> {
    can_mount: bool,
    saved_dir: &'a Path,
    out: &'a mut ChrootSetup,
}

impl ChrootTargets<'_> {
    /// Makes `rel` a stand-in for a mount: with mounts, the path to mount on (as the
    /// namespace sandbox does); without, a fresh file or directory, the image's own (if any)
    /// moved aside so that it is hidden during the run, as a mount would hide it, and put
    /// back afterwards. Masks it for the diff.
    fn stand_in<S: Syscalls + ?Sized>(
        &mut self,
        setup: &mut Setup<'_, S>,
        rel: &Path,
        is_dir: bool,
        mode: u32,
    ) -> io::Result<Ensured> {
        let path = setup.merged.join(rel);
        if !self.can_mount {
            match setup.sys.file_kind(&path)? {
                Some(FileKind::Symlink) => return Ok(Ensured::IsSymlink),
                Some(_) => {
                    let to = self.saved_dir.join(self.out.saved.len().to_string());
                    setup.op(&Op::Rename {
                        from: path,
                        to: to.clone(),
                    })?;
                    self.out.saved.push((rel.to_path_buf(), to));
                }
                None => {}
            }
        }
        let ensured = setup.ensure(rel, is_dir, mode)?;
        if let Ensured::Ready = ensured {
            self.out.masked.push(rel.to_path_buf());
        }
        Ok(ensured)
    }
}

fn chroot_sequence<S: Syscalls + ?Sized>(
    setup: &mut Setup<'_, S>,
    plan: &RootfsPlan,
    targets: &mut ChrootTargets<'_>,
) -> io::Result<()> {
    let can_mount = targets.can_mount;
    let rootfs = plan.merged.clone();
    if can_mount {
        setup.op(&Op::MakeRootPrivate)?;
        // The copy bound onto itself: one mount to detach with everything under it, and
        // `nodev` over it all.
        setup.op(&Op::Bind {
            source: rootfs.clone(),
            target: rootfs.clone(),
            is_recursive: true,
        })?;
        setup.op(&Op::MakeNodev {
            target: rootfs.clone(),
            is_recursive: true,
        })?;
    }
    for (dir, mode) in [("proc", 0o555), ("sys", 0o555)] {
        if let Ensured::IsSymlink = targets.stand_in(setup, Path::new(dir), true, mode)? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("/{dir} is a symlink in the image"),
            ));
        }
        if can_mount {
            setup.op(&Op::Bind {
                source: Path::new("/").join(dir),
                target: rootfs.join(dir),
                is_recursive: true,
            })?;
            if dir == "sys" {
                setup.op(&Op::MakeReadonly {
                    target: rootfs.join(dir),
                    is_recursive: true,
                })?;
            }
        }
    }
    if can_mount {
        if plan.security == Security::Sandbox {
            for path in READONLY_PATHS {
                setup.make_readonly(path)?;
            }
            for path in MASKED_PATHS {
                setup.mask(path)?;
            }
        }
        setup.mount_dev()?;
        targets.out.masked.push(PathBuf::from("dev"));
    } else {
        targets
            .out
            .limits
            .push("this container allows no mounts: RUN gets an empty /proc and /sys".to_owned());
        chroot_dev(setup, targets)?;
        if plan.shm_size.is_some() {
            targets
                .out
                .limits
                .push("the --shm-size is not enforced (no mounts)".to_owned());
        }
    }
    if setup.sys.file_kind(&rootfs.join("tmp"))?.is_none() {
        targets.stand_in(setup, Path::new("tmp"), true, 0o1777)?;
        if can_mount {
            setup.op(&Op::MountFs {
                fstype: "tmpfs".into(),
                target: rootfs.join("tmp"),
                options: MountOptions::SAFE,
                data: TMP_TMPFS_DATA.into(),
            })?;
        }
    }
    for (source, rel) in [
        (&plan.hosts_file, "etc/hosts"),
        (&plan.resolv_file, "etc/resolv.conf"),
        (&plan.hostname_file, "etc/hostname"),
    ] {
        let rel = resolve_in_root(&rootfs, Path::new(rel))?;
        match targets.stand_in(setup, &rel, false, 0o644)? {
            Ensured::IsSymlink => tracing::warn!(
                path = %rel.display(),
                "is a symlink in the image; not providing the sandbox's own file there"
            ),
            Ensured::Ready => {
                let target = rootfs.join(&rel);
                if can_mount {
                    setup.op(&Op::Bind {
                        source: source.clone(),
                        target,
                        is_recursive: false,
                    })?;
                } else {
                    setup.op(&Op::CopyIn {
                        source: source.clone(),
                        target,
                    })?;
                }
            }
        }
    }
    for mount in &plan.mounts {
        let rel = resolve_in_root(&rootfs, mount.target())?;
        if can_mount {
            targets.out.masked.push(rel.clone());
            let mount = match mount {
                ExtraMount::Bind {
                    source,
                    is_readonly,
                    owner,
                    ..
                } => ExtraMount::Bind {
                    source: source.clone(),
                    target: Path::new("/").join(&rel),
                    is_readonly: *is_readonly,
                    owner: *owner,
                },
                ExtraMount::Tmpfs { size, .. } => ExtraMount::Tmpfs {
                    target: Path::new("/").join(&rel),
                    size: *size,
                },
            };
            setup.extra_mount(&mount)?;
            continue;
        }
        let symlink_target = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("mount target {} is a symlink in the image", rel.display()),
            )
        };
        match mount {
            ExtraMount::Bind {
                source,
                is_readonly,
                owner,
                ..
            } => {
                // A socket (an ssh agent's) cannot be copied: it would silently be missing.
                if is_socket(source) {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!(
                            "{}: a socket (RUN --mount=type=ssh) cannot be provided by chroot \
                             isolation where nothing can be mounted; use --isolation=namespaces, \
                             or give the container CAP_SYS_ADMIN",
                            mount.target().display()
                        ),
                    ));
                }
                if let Ensured::IsSymlink = targets.stand_in(setup, &rel, source.is_dir(), 0o755)? {
                    return Err(symlink_target());
                }
                let target = rootfs.join(&rel);
                setup.op(&Op::CopyIn {
                    source: source.clone(),
                    target: target.clone(),
                })?;
                if let Some((uid, gid)) = *owner {
                    setup.op(&Op::Chown {
                        path: target,
                        uid,
                        gid,
                    })?;
                }
                if !is_readonly {
                    targets.out.copy_back.push((rel, source.clone()));
                }
            }
            ExtraMount::Tmpfs { size, .. } => {
                if let Ensured::IsSymlink = targets.stand_in(setup, &rel, true, 0o1777)? {
                    return Err(symlink_target());
                }
                if size.is_some() {
                    targets.out.limits.push(format!(
                        "the tmpfs size of {} is not enforced (no mounts)",
                        mount.target().display()
                    ));
                }
            }
        }
    }
    Ok(())
}

fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt as _;
    fs_err::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// `/dev` without mounts: nodes by `mknod` (refused in a user namespace: then `/dev/null` is
/// a plain file and the others are missing), `pts` and `shm` directories and the usual links.
fn chroot_dev<S: Syscalls + ?Sized>(
    setup: &mut Setup<'_, S>,
    targets: &mut ChrootTargets<'_>,
) -> io::Result<()> {
    if let Ensured::IsSymlink = targets.stand_in(setup, Path::new("dev"), true, 0o755)? {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "/dev is a symlink in the image",
        ));
    }
    let dev = setup.merged.join("dev");
    let mut refused = false;
    for (name, major, minor) in CHROOT_DEVICES {
        let path = dev.join(name);
        if setup.sys.file_kind(&path)?.is_some() {
            continue;
        }
        if refused {
            continue;
        }
        match setup.op(&Op::MakeCharDevice {
            path: path.clone(),
            major,
            minor,
            mode: 0o666,
        }) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
                refused = true;
                targets.out.limits.push(
                    "device nodes cannot be created here: /dev/null is a plain file and \
                     /dev/zero, /dev/random, /dev/urandom, /dev/full, /dev/tty are missing"
                        .to_owned(),
                );
                setup.op(&Op::CreateFile {
                    path: dev.join("null"),
                    mode: 0o666,
                })?;
            }
            Err(err) => return Err(err),
        }
    }
    for (name, mode) in [("pts", 0o755), ("shm", 0o1777)] {
        if setup.sys.file_kind(&dev.join(name))?.is_none() {
            setup.op(&Op::Mkdir {
                path: dev.join(name),
                mode,
            })?;
        }
    }
    for (name, target) in DEVICE_LINKS {
        if name == "ptmx" || setup.sys.file_kind(&dev.join(name))?.is_some() {
            continue;
        }
        setup.op(&Op::Symlink {
            target: target.into(),
            link: dev.join(name),
        })?;
    }
    Ok(())
}

/// Runs the setup sequence (before the command is started), appending the stubs it creates
/// to `stubs` (also when it fails half-way, so they can still be cleaned up). The process must
/// already be PID 1 of the new pid namespace (for `/proc`) and inside the new user, uts, ipc
/// (and net) namespaces.
pub fn setup_rootfs<S: Syscalls + ?Sized>(
    sys: &mut S,
    plan: &RootfsPlan,
    stubs: &mut Vec<Stub>,
) -> io::Result<()> {
    let mut setup = Setup {
        sys,
        merged: &plan.merged,
        stubs: Vec::new(),
        shm_size: plan.shm_size,
    };
    let result = run_sequence(&mut setup, plan);
    stubs.append(&mut setup.stubs);
    result
}

fn run_sequence<S: Syscalls + ?Sized>(
    setup: &mut Setup<'_, S>,
    plan: &RootfsPlan,
) -> io::Result<()> {
    setup.op(&Op::UnshareMountNamespace)?;
    setup.op(&Op::MakeRootPrivate)?;
    match &plan.source {
        RootSource::PreparedOverlay => setup.op(&Op::AttachPreparedOverlay {
            target: plan.merged.clone(),
        })?,
        RootSource::Overlay {
            lowers,
            upper,
            work,
        } => setup.op(&Op::MountOverlay {
            lowers: lowers.clone(),
            upper: upper.clone(),
            work: work.clone(),
            target: plan.merged.clone(),
        })?,
        RootSource::CopiedRootfs(dir) => {
            setup.op(&Op::Bind {
                source: dir.clone(),
                target: plan.merged.clone(),
                is_recursive: true,
            })?;
            setup.op(&Op::MakeNodev {
                target: plan.merged.clone(),
                is_recursive: true,
            })?;
        }
    }
    if plan.network == Network::None {
        setup.op(&Op::LoopbackUp)?;
    }
    setup.ensure(Path::new("proc"), true, 0o555)?;
    setup.op(&Op::MountFs {
        fstype: "proc".into(),
        target: plan.merged.join("proc"),
        options: MountOptions::STRICT,
        data: String::new(),
    })?;
    setup.mount_dev()?;
    setup.ensure(Path::new("sys"), true, 0o555)?;
    let sys_target = plan.merged.join("sys");
    if plan.network == Network::None {
        // sysfs shows the network namespace of its mounter: ours, with only `lo`.
        setup.op(&Op::MountFs {
            fstype: "sysfs".into(),
            target: sys_target.clone(),
            options: MountOptions::STRICT,
            data: String::new(),
        })?;
        setup.op(&Op::MakeReadonly {
            target: sys_target,
            is_recursive: false,
        })?;
    } else {
        setup.op(&Op::Bind {
            source: PathBuf::from("/sys"),
            target: sys_target.clone(),
            is_recursive: true,
        })?;
        setup.op(&Op::MakeReadonly {
            target: sys_target,
            is_recursive: true,
        })?;
    }
    if plan.security == Security::Sandbox {
        for path in READONLY_PATHS {
            setup.make_readonly(path)?;
        }
        for path in MASKED_PATHS {
            setup.mask(path)?;
        }
    }
    if setup.sys.file_kind(&plan.merged.join("tmp"))?.is_none() {
        setup.ensure(Path::new("tmp"), true, 0o1777)?;
        setup.op(&Op::MountFs {
            fstype: "tmpfs".into(),
            target: plan.merged.join("tmp"),
            options: MountOptions::SAFE,
            data: TMP_TMPFS_DATA.into(),
        })?;
    }
    setup.bind_file(&plan.hosts_file, "etc/hosts")?;
    setup.bind_file(&plan.resolv_file, "etc/resolv.conf")?;
    setup.bind_file(&plan.hostname_file, "etc/hostname")?;
    for mount in &plan.mounts {
        setup.extra_mount(mount)?;
    }
    setup.op(&Op::PivotRoot {
        new_root: plan.merged.clone(),
    })?;
    setup.op(&Op::SetHostname(plan.hostname.clone()))
}

#[cfg(test)]
mod tests;
