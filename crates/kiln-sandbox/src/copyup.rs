//! The copy fallback for hosts without usable overlayfs: the lowers are applied bottom-up
//! (whiteouts and opaque directories honoured) into a private rootfs directory, its metadata
//! is snapshotted, and after the run a metadata differ (inode, mode, owner, size, mtime,
//! ctime, xattrs — never content hashing) writes the changes into the upperdir in overlay form
//! (0/0 character-device whiteouts, `overlay.opaque` on replaced directories), so the same
//! layer writer handles both modes.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::FileType;

use crate::fsmeta::{self, Meta};

/// What [`copy_lowers`] does with device nodes of the layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Devices {
    /// Created with `mknod` (the copy is bound `nodev` before anything runs on it).
    Copy,
    /// Left out: chroot isolation may have no `nodev` mount and no devices cgroup, so a node
    /// from a hostile layer would open the host's device.
    Skip,
}

/// Applies `lowers` (top-most first, like overlay's `lowerdir`) into the empty directory
/// `rootfs`.
pub(crate) fn copy_lowers(lowers: &[PathBuf], rootfs: &Path, devices: Devices) -> io::Result<()> {
    for lower in lowers.iter().rev() {
        apply_dir(lower, rootfs, devices)?;
        let stat = fsmeta::lstat(lower)?;
        fsmeta::copy_metadata(lower, &stat, rootfs)?;
    }
    Ok(())
}

fn apply_dir(source: &Path, dest: &Path, devices: Devices) -> io::Result<()> {
    if fsmeta::is_opaque(source) {
        for entry in fs_err::read_dir(dest)? {
            fsmeta::remove_all(&entry?.path())?;
        }
    }
    for entry in fs_err::read_dir(source)? {
        let entry = entry?;
        let from = entry.path();
        let to = dest.join(entry.file_name());
        let stat = fsmeta::lstat(&from)?;
        if fsmeta::is_whiteout(&stat) {
            fsmeta::remove_all(&to)?;
            continue;
        }
        if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
            let is_existing_dir = rustix::fs::lstat(&to)
                .is_ok_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory);
            if !is_existing_dir {
                fsmeta::remove_all(&to)?;
                fs_err::create_dir(&to)?;
            }
            apply_dir(&from, &to, devices)?;
            // After the children: writing them changed the directory's mtime.
            fsmeta::copy_metadata(&from, &stat, &to)?;
        } else {
            fsmeta::remove_all(&to)?;
            let kind = FileType::from_raw_mode(stat.st_mode);
            let is_device = matches!(kind, FileType::CharacterDevice | FileType::BlockDevice);
            if is_device && devices == Devices::Skip {
                tracing::debug!(path = %from.display(), "device node left out of the chroot copy");
                continue;
            }
            fsmeta::copy_entry(&from, &stat, &to)?;
        }
    }
    Ok(())
}

/// Copies the host file or directory `source` onto `target`, which exists with the same
/// kind (chroot isolation's stand-in for a bind mount): a directory's entries are merged in,
/// a file is replaced; owners, modes, xattrs and times come along, device nodes do not.
pub(crate) fn copy_in(source: &Path, target: &Path) -> io::Result<()> {
    let stat = fsmeta::lstat(source)?;
    if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
        apply_dir(source, target, Devices::Skip)?;
        fsmeta::copy_metadata(source, &stat, target)
    } else {
        fsmeta::remove_all(target)?;
        fsmeta::copy_entry(source, &stat, target)
    }
}

/// The rootfs's metadata right after the copy.
#[derive(Debug, Default)]
pub(crate) struct Baseline {
    entries: HashMap<PathBuf, Meta>,
    children: HashMap<PathBuf, Vec<OsString>>,
}

/// Records the metadata of every path under `rootfs`.
pub(crate) fn snapshot(rootfs: &Path) -> io::Result<Baseline> {
    snapshot_except(rootfs, &HashSet::new())
}

/// Records the metadata of every path under `rootfs` but those at or below `masked` (which
/// the differ skips too: they may be mounts of `/proc` or `/sys`).
pub(crate) fn snapshot_except(rootfs: &Path, masked: &HashSet<PathBuf>) -> io::Result<Baseline> {
    let mut baseline = Baseline::default();
    snapshot_dir(rootfs, Path::new(""), masked, &mut baseline)?;
    Ok(baseline)
}

fn snapshot_dir(
    rootfs: &Path,
    rel: &Path,
    masked: &HashSet<PathBuf>,
    baseline: &mut Baseline,
) -> io::Result<()> {
    let mut names = Vec::new();
    for entry in fs_err::read_dir(rootfs.join(rel))? {
        let entry = entry?;
        let child = rel.join(entry.file_name());
        if masked.contains(&child) {
            names.push(entry.file_name());
            continue;
        }
        let meta = fsmeta::meta(&rootfs.join(&child))?;
        let is_dir = meta.kind == FileType::Directory;
        baseline.entries.insert(child.clone(), meta);
        names.push(entry.file_name());
        if is_dir {
            snapshot_dir(rootfs, &child, masked, baseline)?;
        }
    }
    baseline.children.insert(rel.to_path_buf(), names);
    Ok(())
}

struct Differ<'a> {
    rootfs: &'a Path,
    upper: &'a Path,
    baseline: &'a Baseline,
    stubs: &'a HashSet<PathBuf>,
    masked: &'a HashSet<PathBuf>,
    written: &'a HashSet<PathBuf>,
    opaque_xattr: &'a str,
    /// Upper directories created, to restore their times after their children were written.
    created_dirs: Vec<PathBuf>,
}

/// What [`write_diff`] treats specially.
pub(crate) struct Unlayered<'a> {
    /// Mountpoints created by the sandbox: only what was written inside them counts.
    pub(crate) stubs: &'a HashSet<PathBuf>,
    /// Paths that stood for a mount (`/proc`, `/dev`, a cache mount's target copied in under
    /// chroot isolation…): nothing at or below them is a change.
    pub(crate) masked: &'a HashSet<PathBuf>,
    /// Files opened for writing: a change even when their metadata is the same (overlayfs
    /// copies them up).
    pub(crate) written: &'a HashSet<PathBuf>,
}

/// Writes the changes of `rootfs` since `baseline` into `upper` in overlay form.
pub(crate) fn write_diff(
    rootfs: &Path,
    baseline: &Baseline,
    special: &Unlayered<'_>,
    upper: &Path,
    opaque_xattr: &str,
) -> io::Result<()> {
    let mut differ = Differ {
        rootfs,
        upper,
        baseline,
        stubs: special.stubs,
        masked: special.masked,
        written: special.written,
        opaque_xattr,
        created_dirs: Vec::new(),
    };
    differ.diff_dir(Path::new(""))?;
    for rel in differ.created_dirs.iter().rev() {
        let stat = fsmeta::lstat(&rootfs.join(rel))?;
        fsmeta::set_times(&upper.join(rel), &stat)?;
    }
    Ok(())
}

impl Differ<'_> {
    /// Creates `upper/rel` and its missing parents with the rootfs's metadata.
    fn ensure_upper_dir(&mut self, rel: &Path) -> io::Result<()> {
        if rel.as_os_str().is_empty() || self.upper.join(rel).exists() {
            return Ok(());
        }
        if let Some(parent) = rel.parent() {
            self.ensure_upper_dir(parent)?;
        }
        let source = self.rootfs.join(rel);
        fs_err::create_dir(self.upper.join(rel))?;
        fsmeta::copy_metadata(&source, &fsmeta::lstat(&source)?, &self.upper.join(rel))?;
        self.created_dirs.push(rel.to_path_buf());
        Ok(())
    }

    fn copy_tree(&mut self, rel: &Path) -> io::Result<()> {
        let source = self.rootfs.join(rel);
        let stat = fsmeta::lstat(&source)?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
            if let Some(parent) = rel.parent() {
                self.ensure_upper_dir(parent)?;
            }
            return fsmeta::copy_entry(&source, &stat, &self.upper.join(rel));
        }
        self.ensure_upper_dir(rel)?;
        for entry in fs_err::read_dir(&source)? {
            let child = rel.join(entry?.file_name());
            if self.stubs.contains(&child) || self.masked.contains(&child) {
                continue;
            }
            self.copy_tree(&child)?;
        }
        Ok(())
    }

    fn diff_dir(&mut self, rel: &Path) -> io::Result<()> {
        let mut current = HashSet::new();
        for entry in fs_err::read_dir(self.rootfs.join(rel))? {
            current.insert(entry?.file_name());
        }
        let empty = Vec::new();
        let before = self.baseline.children.get(rel).unwrap_or(&empty);
        for name in before {
            if !current.contains(name) && !self.masked.contains(&rel.join(name)) {
                self.ensure_upper_dir(rel)?;
                fsmeta::make_whiteout(&self.upper.join(rel).join(name))?;
            }
        }
        let mut names: Vec<OsString> = current.into_iter().collect();
        names.sort();
        for name in names {
            let child = rel.join(&name);
            if self.masked.contains(&child) {
                continue;
            }
            let path = self.rootfs.join(&child);
            let now = fsmeta::meta(&path)?;
            let is_dir = now.kind == FileType::Directory;
            if self.stubs.contains(&child) {
                // Only what the command wrote inside a stub directory is a change.
                if is_dir {
                    self.diff_dir(&child)?;
                }
                continue;
            }
            match self.baseline.entries.get(&child) {
                None => self.copy_tree(&child)?,
                Some(old) if old.kind == FileType::Directory && is_dir => {
                    if old.ino == now.ino {
                        if !same_metadata(old, &now) {
                            self.ensure_upper_dir(&child)?;
                        }
                        self.diff_dir(&child)?;
                    } else {
                        // Removed and recreated: the new directory hides the old contents.
                        self.copy_tree(&child)?;
                        let upper_dir = self.upper.join(&child);
                        rustix::fs::lsetxattr(
                            &upper_dir,
                            self.opaque_xattr,
                            b"y",
                            rustix::fs::XattrFlags::empty(),
                        )
                        .map_err(|err| {
                            io::Error::new(
                                io::Error::from(err).kind(),
                                format!(
                                    "set {} on {}: {err}",
                                    self.opaque_xattr,
                                    upper_dir.display()
                                ),
                            )
                        })?;
                    }
                }
                Some(old)
                    if old.kind == now.kind
                        && same_metadata(old, &now)
                        && !self.written.contains(&child) => {}
                Some(_) => {
                    self.ensure_upper_dir(rel)?;
                    self.copy_tree(&child)?;
                }
            }
        }
        Ok(())
    }
}

fn same_metadata(old: &Meta, now: &Meta) -> bool {
    old == now
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(path: &Path, text: &str) {
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, text).unwrap();
    }

    #[test]
    fn differ_writes_overlay_form() {
        let tmp = tempfile::tempdir().unwrap();
        let lower = tmp.path().join("lower");
        let rootfs = tmp.path().join("rootfs");
        let upper = tmp.path().join("upper");
        for dir in [&lower, &rootfs, &upper] {
            fs_err::create_dir_all(dir).unwrap();
        }
        write(&lower.join("keep/a"), "a");
        write(&lower.join("gone/file"), "x");
        write(&lower.join("dead"), "d");
        write(&lower.join("mode"), "m");
        write(&lower.join("redo/old"), "o");
        copy_lowers(std::slice::from_ref(&lower), &rootfs, Devices::Copy).unwrap();
        let baseline = snapshot(&rootfs).unwrap();

        fs_err::remove_dir_all(rootfs.join("gone")).unwrap();
        fs_err::write(rootfs.join("gone"), "now a file").unwrap();
        fs_err::remove_file(rootfs.join("dead")).unwrap();
        fs_err::set_permissions(rootfs.join("mode"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        fs_err::remove_dir_all(rootfs.join("redo")).unwrap();
        write(&rootfs.join("redo/new"), "n");
        write(&rootfs.join("stub/inside"), "i");

        let stubs = HashSet::from([PathBuf::from("stub")]);
        write_diff(
            &rootfs,
            &baseline,
            &Unlayered {
                stubs: &stubs,
                masked: &HashSet::new(),
                written: &HashSet::new(),
            },
            &upper,
            "user.overlay.opaque",
        )
        .unwrap();

        assert!(
            !upper.join("keep").exists(),
            "unchanged dir must not be in the diff"
        );
        assert_eq!(
            fs_err::read_to_string(upper.join("gone")).unwrap(),
            "now a file"
        );
        assert!(fsmeta::is_whiteout(
            &fsmeta::lstat(&upper.join("dead")).unwrap()
        ));
        assert_eq!(
            fsmeta::lstat(&upper.join("mode")).unwrap().st_mode & 0o7777,
            0o700
        );
        // A replaced directory is opaque when the differ sees a new inode; the filesystem may
        // hand the freed inode number straight back, and then `old` is whited out instead.
        // Either way the lower's `redo/old` is hidden.
        let old_whited_out =
            fsmeta::lstat(&upper.join("redo/old")).is_ok_and(|m| fsmeta::is_whiteout(&m));
        assert!(fsmeta::is_opaque(&upper.join("redo")) || old_whited_out);
        assert!(upper.join("redo/new").exists());
        assert_eq!(
            fs_err::read_to_string(upper.join("stub/inside")).unwrap(),
            "i"
        );
    }

    #[test]
    fn copy_applies_whiteouts_and_opaque_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let bottom = tmp.path().join("bottom");
        let top = tmp.path().join("top");
        let rootfs = tmp.path().join("rootfs");
        for dir in [&bottom, &top, &rootfs] {
            fs_err::create_dir_all(dir).unwrap();
        }
        write(&bottom.join("a"), "a");
        write(&bottom.join("d/old"), "o");
        fsmeta::make_whiteout(&top.join("a")).unwrap();
        write(&top.join("d/new"), "n");
        rustix::fs::lsetxattr(
            top.join("d"),
            "user.overlay.opaque",
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        copy_lowers(&[top, bottom], &rootfs, Devices::Copy).unwrap();
        assert!(!rootfs.join("a").exists());
        assert!(rootfs.join("d/new").exists());
        assert!(!rootfs.join("d/old").exists());
    }
}
