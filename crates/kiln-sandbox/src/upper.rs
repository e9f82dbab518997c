//! Cleaning the upperdir after an overlay run: the mountpoints the sandbox created in the
//! merged view (`/proc`, `/dev`, `/etc/hosts`, … when the image had none) landed in the upper
//! directory; they are removed when still the untouched stubs we made, and parent directories
//! that were copied up only to hold them are removed too (or get the lower's times back), so
//! nothing of the sandbox's plumbing leaks into the layer.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::FileType;

use crate::fsmeta;
use crate::rootfs::Stub;

/// Removes `stubs` (in reverse creation order) from `upper` and tidies their parents.
/// `lowers` are top-most first.
pub(crate) fn remove_stubs(upper: &Path, lowers: &[PathBuf], stubs: &[Stub]) -> io::Result<()> {
    let mut parents = BTreeSet::new();
    for stub in stubs.iter().rev() {
        // The command may have replaced a parent of the stub with a symlink: following it
        // would let this host-side cleanup delete or touch a host path.
        if crosses_symlink(upper, &stub.path, false) {
            tracing::debug!(path = %stub.path.display(), "a parent of the stub is a symlink now; kept");
            continue;
        }
        let path = upper.join(&stub.path);
        let Ok(stat) = rustix::fs::lstat(&path) else {
            continue;
        };
        let kind = FileType::from_raw_mode(stat.st_mode);
        let is_untouched = if stub.is_dir {
            kind == FileType::Directory
                && fs_err::read_dir(&path)?.next().is_none()
                && !fsmeta::is_opaque(&path)
        } else {
            kind == FileType::RegularFile && stat.st_size == 0
        };
        if !is_untouched {
            tracing::debug!(path = %stub.path.display(), "mountpoint stub was changed by the command; kept");
            continue;
        }
        if stub.is_dir {
            fs_err::remove_dir(&path)?;
        } else {
            fs_err::remove_file(&path)?;
        }
        let mut ancestor = stub.path.parent();
        while let Some(dir) = ancestor.filter(|d| !d.as_os_str().is_empty()) {
            parents.insert(dir.to_path_buf());
            ancestor = dir.parent();
        }
        parents.insert(PathBuf::new());
    }
    // Deepest first, so a parent sees its children already tidied.
    for rel in parents.iter().rev() {
        if crosses_symlink(upper, rel, true) {
            continue;
        }
        let path = upper.join(rel);
        let Ok(stat) = rustix::fs::lstat(&path) else {
            continue;
        };
        let Some(lower_stat) = lowers
            .iter()
            .find_map(|lower| rustix::fs::lstat(lower.join(rel)).ok())
        else {
            continue;
        };
        let is_copied_up_only = !rel.as_os_str().is_empty()
            && FileType::from_raw_mode(stat.st_mode) == FileType::Directory
            && fs_err::read_dir(&path)?.next().is_none()
            && !fsmeta::is_opaque(&path)
            && stat.st_mode == lower_stat.st_mode
            && stat.st_uid == lower_stat.st_uid
            && stat.st_gid == lower_stat.st_gid;
        if is_copied_up_only {
            fs_err::remove_dir(&path)?;
        } else {
            fsmeta::set_times(&path, &lower_stat)?;
        }
    }
    Ok(())
}

/// Whether a component of `rel` under `upper` is a symlink (its last one too when
/// `including_last`). The sandbox's processes are all gone when this runs, so the answer
/// cannot change before the caller acts on it.
fn crosses_symlink(upper: &Path, rel: &Path, including_last: bool) -> bool {
    let mut path = upper.to_path_buf();
    let components: Vec<_> = rel.components().collect();
    let checked = if including_last {
        components.len()
    } else {
        components.len().saturating_sub(1)
    };
    components.iter().take(checked).any(|component| {
        path.push(component);
        rustix::fs::lstat(&path)
            .is_ok_and(|stat| FileType::from_raw_mode(stat.st_mode) == FileType::Symlink)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_untouched_stubs_and_copied_up_parents() {
        let tmp = tempfile::tempdir().unwrap();
        let lower = tmp.path().join("lower");
        let upper = tmp.path().join("upper");
        fs_err::create_dir_all(lower.join("etc")).unwrap();
        fs_err::create_dir_all(upper.join("etc")).unwrap();
        fs_err::create_dir_all(upper.join("proc")).unwrap();
        fs_err::create_dir_all(upper.join("tmp")).unwrap();
        fs_err::write(upper.join("tmp/kept"), "written by the command").unwrap();
        fs_err::write(upper.join("etc/hosts"), "").unwrap();
        let stubs = [
            Stub {
                path: "proc".into(),
                is_dir: true,
            },
            Stub {
                path: "tmp".into(),
                is_dir: true,
            },
            Stub {
                path: "etc/hosts".into(),
                is_dir: false,
            },
        ];
        remove_stubs(&upper, &[lower], &stubs).unwrap();
        assert!(!upper.join("proc").exists());
        assert!(!upper.join("etc").exists(), "copied-up parent must go");
        assert!(upper.join("tmp/kept").exists(), "a changed stub stays");
    }

    #[test]
    fn a_parent_replaced_by_a_symlink_is_never_followed() {
        // The command renamed the stub's parent away and put a symlink to a host directory
        // in its place: the host-side cleanup must not delete the host's empty file there,
        // nor touch the host directory's times.
        let tmp = tempfile::tempdir().unwrap();
        let lower = tmp.path().join("lower");
        let upper = tmp.path().join("upper");
        let host = tmp.path().join("host");
        fs_err::create_dir_all(lower.join("etc")).unwrap();
        fs_err::create_dir_all(&upper).unwrap();
        fs_err::create_dir_all(host.join("empty-dir")).unwrap();
        fs_err::write(host.join("hosts"), "").unwrap();
        fs_err::os::unix::fs::symlink(&host, upper.join("etc")).unwrap();
        let before = fs_err::metadata(&host).unwrap().modified().unwrap();
        let stubs = [
            Stub {
                path: "etc/empty-dir".into(),
                is_dir: true,
            },
            Stub {
                path: "etc/hosts".into(),
                is_dir: false,
            },
        ];
        remove_stubs(&upper, &[lower], &stubs).unwrap();
        assert!(host.join("hosts").exists(), "a host file was deleted");
        assert!(
            host.join("empty-dir").exists(),
            "a host directory was deleted"
        );
        assert_eq!(fs_err::metadata(&host).unwrap().modified().unwrap(), before);
    }
}
