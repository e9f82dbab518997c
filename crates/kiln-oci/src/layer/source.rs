//! Reading the metadata of a source file for a tar entry: type, xattrs, device numbers.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::whiteout::is_overlay_xattr;

/// Xattrs never written into a layer: overlayfs' own bookkeeping, and SELinux labels, which
/// belong to the host's policy (Docker and BuildKit leave them out too).
pub(super) fn is_layer_xattr(name: &[u8]) -> bool {
    !is_overlay_xattr(name) && name != b"security.selinux"
}

const XATTR_BUF: usize = 4096;

/// The extended attributes a layer records for `path` (sorted by name): all of them but
/// overlayfs' own and SELinux labels. What a COPY of a layer's file carries over.
pub fn layer_xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut xattrs = read_xattrs(path)?;
    xattrs.retain(|(name, _)| is_layer_xattr(name));
    Ok(xattrs)
}

/// All xattrs of `path` (not following a final symlink), sorted by name. A filesystem
/// without xattr support yields none.
pub(super) fn read_xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names = vec![0u8; XATTR_BUF];
    let len = loop {
        match rustix::fs::llistxattr(path, &mut names[..]) {
            Ok(len) => break len,
            Err(rustix::io::Errno::RANGE) => {
                let need = rustix::fs::llistxattr_query(path)?;
                names.resize(need.max(names.len() * 2), 0);
            }
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for name in names[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name_os = std::ffi::OsStr::from_bytes(name);
        let mut value = vec![0u8; XATTR_BUF];
        let value_len = loop {
            match rustix::fs::lgetxattr(path, name_os, &mut value[..]) {
                Ok(n) => break Some(n),
                Err(rustix::io::Errno::RANGE) => {
                    let need = rustix::fs::lgetxattr_query(path, name_os)?;
                    value.resize(need.max(value.len() * 2), 0);
                }
                // Removed between list and get: nothing to record.
                Err(rustix::io::Errno::NODATA) => break None,
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(n) = value_len {
            value.truncate(n);
            out.push((name.to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// Major and minor numbers of a device `rdev`.
pub(super) fn device_numbers(rdev: u64) -> (u64, u64) {
    (
        u64::from(rustix::fs::major(rdev)),
        u64::from(rustix::fs::minor(rdev)),
    )
}
