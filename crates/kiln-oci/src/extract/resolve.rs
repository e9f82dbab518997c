//! Path resolution confined to the extraction root, the way `openat2(RESOLVE_IN_ROOT)` does
//! it: `..` stops at the root and absolute symlinks restart from the root, so an archive's
//! `var/run -> /run` followed by `var/run/x` lands in `<root>/run/x` and no chain of symlinks
//! can reach outside. The kernel's `openat2` is used where available (Linux ≥ 5.6, not
//! blocked by seccomp); otherwise a userspace walk applies the same rules one component at a
//! time with `O_NOFOLLOW` opens. Only directories are resolved this way: the final component
//! of an entry is always handled with `*at` calls that never follow it.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Symlinks followed per resolution before giving up (Linux's own limit).
const MAX_SYMLINKS: usize = 40;
/// `openat2` with RESOLVE_IN_ROOT returns EAGAIN when a rename raced with it.
const OPENAT2_RETRIES: usize = 16;

const DIR_FLAGS: OFlags = OFlags::DIRECTORY
    .union(OFlags::RDONLY)
    .union(OFlags::CLOEXEC);

/// The extraction root.
#[derive(Debug)]
pub(super) struct Root {
    fd: OwnedFd,
    has_openat2: bool,
}

impl Root {
    pub(super) fn open(path: &Path, force_userspace: bool) -> io::Result<Self> {
        let fd = rustix::fs::open(path, DIR_FLAGS, Mode::empty())?;
        let has_openat2 = !force_userspace
            && rustix::fs::openat2(&fd, ".", DIR_FLAGS, Mode::empty(), resolve_flags()).is_ok();
        Ok(Self { fd, has_openat2 })
    }

    /// Whether the kernel resolver is in use (for tests and logs).
    pub(super) fn uses_openat2(&self) -> bool {
        self.has_openat2
    }

    /// Opens the directory at `components` (no `.`/`..`, no empty parts), following symlinks
    /// inside the root.
    pub(super) fn open_dir(&self, components: &[&[u8]]) -> io::Result<OwnedFd> {
        if components.is_empty() {
            return Ok(rustix::fs::openat(&self.fd, ".", DIR_FLAGS, Mode::empty())?);
        }
        if self.has_openat2 {
            let path = components.join(&b'/');
            let path = OsStr::from_bytes(&path);
            let mut tries = 0;
            loop {
                match rustix::fs::openat2(&self.fd, path, DIR_FLAGS, Mode::empty(), resolve_flags())
                {
                    Err(Errno::AGAIN) if tries < OPENAT2_RETRIES => tries += 1,
                    // Longer than PATH_MAX: walk it one component at a time instead.
                    Err(Errno::NAMETOOLONG) => break,
                    other => return Ok(other?),
                }
            }
        }
        self.walk(components, false)
    }

    /// Like [`Root::open_dir`], creating missing directories (mode 0755) on the way, also
    /// where a symlink inside the root points to a path that does not exist yet (the target
    /// is created inside the root, as containerd's `MkdirAll` on a root-resolved path does).
    pub(super) fn create_dir_all(&self, components: &[&[u8]]) -> io::Result<OwnedFd> {
        self.walk(components, true)
    }

    fn walk(&self, components: &[&[u8]], is_creating: bool) -> io::Result<OwnedFd> {
        let mut stack: Vec<OwnedFd> = Vec::new();
        let mut todo: VecDeque<Vec<u8>> = components.iter().map(|c| c.to_vec()).collect();
        let mut followed = 0;
        while let Some(component) = todo.pop_front() {
            match component.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    // `..` at the root stays at the root.
                    stack.pop();
                    continue;
                }
                _ => {}
            }
            let name = OsStr::from_bytes(&component);
            let current = stack.last().map_or(self.fd.as_fd(), AsFd::as_fd);
            let stat = match rustix::fs::statat(current, name, AtFlags::SYMLINK_NOFOLLOW) {
                Err(Errno::NOENT) if is_creating => {
                    match rustix::fs::mkdirat(current, name, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    rustix::fs::statat(current, name, AtFlags::SYMLINK_NOFOLLOW)?
                }
                other => other?,
            };
            if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink {
                followed += 1;
                if followed > MAX_SYMLINKS {
                    return Err(Errno::LOOP.into());
                }
                let target = rustix::fs::readlinkat(current, name, Vec::new())?;
                let target = target.as_bytes();
                if target.starts_with(b"/") {
                    stack.clear();
                }
                for part in target.split(|&b| b == b'/').rev() {
                    todo.push_front(part.to_vec());
                }
                continue;
            }
            let fd =
                rustix::fs::openat(current, name, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty())?;
            stack.push(fd);
        }
        match stack.pop() {
            Some(fd) => Ok(fd),
            None => Ok(rustix::fs::openat(&self.fd, ".", DIR_FLAGS, Mode::empty())?),
        }
    }
}

fn resolve_flags() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}
