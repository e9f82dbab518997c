//! Overlayfs: preparing the merged rootfs as a detached mount with the new mount API (so it
//! carries the helper's host credentials and standard `trusted.overlay.*` xattrs, and is never
//! visible in the host's mount table), option escaping, and the on-disk diff format shared
//! with the copy fallback (0/0 character-device whiteouts, `overlay.opaque` xattr).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};

/// Opaque-directory xattr written by a privileged overlay (and by the copy fallback as root).
pub const OPAQUE_XATTR_TRUSTED: &str = "trusted.overlay.opaque";
/// Opaque-directory xattr written by an overlay mounted with `userxattr` (rootless).
pub const OPAQUE_XATTR_USER: &str = "user.overlay.opaque";

/// Escapes a path for an overlay mount option: `\`, `,` and `:` are special there.
pub(crate) fn escape_option(path: &Path) -> io::Result<String> {
    let text = std::str::from_utf8(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("overlay paths must be UTF-8: {}", path.display()),
        )
    })?;
    let mut escaped = String::with_capacity(text.len());
    for ch in text.chars() {
        if matches!(ch, '\\' | ',' | ':') {
            escaped.push('\\');
        }
        escaped.push(ch);
    }
    Ok(escaped)
}

/// Builds the overlay as a detached mount (`fsopen`/`fsconfig`/`fsmount`): nothing appears in
/// any mount table until a process inside the sandbox attaches it with `move_mount`.
/// `lowers` must not be empty (callers substitute an empty directory).
pub(crate) fn prepare_overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
) -> io::Result<OwnedFd> {
    let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    // `lowerdir+` (Linux 6.8) takes one layer per call, with no length limit and no escaping;
    // older kernels get the classic colon-separated list.
    let mut is_appended = true;
    for lower in lowers {
        if let Err(err) = rustix::mount::fsconfig_set_string(fs.as_fd(), "lowerdir+", lower) {
            if err == rustix::io::Errno::INVAL && lower == &lowers[0] {
                is_appended = false;
                break;
            }
            return Err(with_context(&err.into(), "lowerdir+", lower));
        }
    }
    if !is_appended {
        let joined = lowers
            .iter()
            .map(|p| escape_option(p))
            .collect::<io::Result<Vec<_>>>()?
            .join(":");
        rustix::mount::fsconfig_set_string(fs.as_fd(), "lowerdir", joined.as_str())
            .map_err(|err| with_context(&err.into(), "lowerdir", Path::new(&joined)))?;
    }
    rustix::mount::fsconfig_set_string(fs.as_fd(), "upperdir", upper)
        .map_err(|err| with_context(&err.into(), "upperdir", upper))?;
    rustix::mount::fsconfig_set_string(fs.as_fd(), "workdir", work)
        .map_err(|err| with_context(&err.into(), "workdir", work))?;
    // The upperdir is scratch that kiln turns into a layer (and discards on a crash), so the
    // overlay need not sync the upper filesystem when it goes away: without `volatile`
    // (Linux 5.10) the unmount at the end of every RUN waits for a `syncfs` of the whole
    // store's filesystem, seconds after a COPY of a large context. Older kernels lack the
    // option; they keep the sync.
    if let Err(err) = rustix::mount::fsconfig_set_flag(fs.as_fd(), "volatile") {
        tracing::debug!(%err, "overlay has no `volatile` option here");
    }
    rustix::mount::fsconfig_create(fs.as_fd())
        .map_err(|err| with_context(&err.into(), "create", upper))?;
    // `nodev`: a device node in an image layer (or extracted from an ADDed tar) must not
    // open the host's device; /dev gets its own nodes.
    let mount = rustix::mount::fsmount(
        fs.as_fd(),
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NODEV,
    )?;
    Ok(mount)
}

fn with_context(err: &io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(
        err.kind(),
        format!("overlay {what} {}: {err}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_option_separators() {
        assert_eq!(
            escape_option(Path::new("/a,b:c\\d")).unwrap(),
            "/a\\,b\\:c\\\\d"
        );
    }
}
