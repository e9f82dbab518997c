//! Removing directory trees that RUN steps and `kiln run` wrote, whoever owns their files.
//!
//! As root a recursive removal always works. Rootless it may not: the sandbox maps uid 0 to
//! the caller but every other uid to a subordinate id (`/etc/subuid`), so a directory a
//! `USER 1000` step made is owned by, say, uid 201000 on the host, and the caller may not
//! unlink what is in it. [`remove_tree`] then removes the tree from inside a user namespace
//! with the sandbox's own mapping, where the caller is root over every id the sandbox could
//! have used. It does that with util-linux's `unshare` (which calls `newuidmap` and
//! `newgidmap`, as the sandbox does) running `rm -rf`: the store forbids `unsafe`, so it
//! cannot `unshare(2)` itself, and the sandbox's helper only runs commands inside an image.

use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::StoreError;

/// Where `unshare` finds the subordinate ranges it maps.
const SUBUID_FILE: &str = "/etc/subuid";
const SUBGID_FILE: &str = "/etc/subgid";

/// Removes `path` (a directory tree or a single file); a missing path is not an error.
///
/// When that is refused, directories without owner write or search permission are opened up
/// (the overlay's mode-0 `work/` directory, read-only layer directories) and it is tried
/// again. What is still refused to an unprivileged caller is removed inside a user namespace
/// mapped like the sandbox's; when that is impossible the error says what to configure.
pub fn remove_tree(path: &Path) -> Result<(), StoreError> {
    let meta = match fs_err::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err.into()),
    };
    if !meta.is_dir() {
        return Ok(fs_err::remove_file(path)?);
    }
    // The common case (root, or nothing private in the tree) costs one pass.
    let first = fs_err::remove_dir_all(path);
    let retried = match first {
        Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
            make_owner_writable(path);
            fs_err::remove_dir_all(path)
        }
        other => other,
    };
    match retried {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err)
            if err.kind() == io::ErrorKind::PermissionDenied
                && !rustix::process::geteuid().is_root() =>
        {
            remove_in_user_namespace(path).map_err(|reason| StoreError::RemoveRootless {
                path: path.to_owned(),
                source: err,
                reason,
            })
        }
        Err(err) => Err(err.into()),
    }
}

/// Gives the owner `rwx` on every directory of `dir` it owns and lacks it on (layers may hold
/// mode 0555 directories, overlayfs makes its `work/work` mode 0). Best effort: what cannot
/// be changed is left for the removal to report.
pub(crate) fn make_owner_writable(dir: &Path) {
    for entry in walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
    {
        if entry.file_type().is_dir()
            && let Ok(meta) = entry.metadata()
            && meta.permissions().mode() & 0o700 != 0o700
        {
            let _ = fs_err::set_permissions(
                entry.path(),
                std::fs::Permissions::from_mode(meta.permissions().mode() | 0o700),
            );
        }
    }
}

/// `rm -rf path` inside a user namespace that maps the caller to 0 and its subordinate
/// ranges from 1, like the sandbox's (kiln-sandbox `write_id_maps`). Returns why it failed.
fn remove_in_user_namespace(path: &Path) -> Result<(), RootlessRemovalError> {
    let uid = rustix::process::geteuid().as_raw();
    let name = user_name(uid);
    let who = name.clone().unwrap_or_else(|| uid.to_string());
    let (uid_start, uid_count) = subordinate_range(Path::new(SUBUID_FILE), uid, name.as_deref())
        .ok_or_else(|| RootlessRemovalError::NoSubordinateRange {
            who: who.clone(),
            file: SUBUID_FILE.into(),
        })?;
    let (gid_start, gid_count) = subordinate_range(Path::new(SUBGID_FILE), uid, name.as_deref())
        .ok_or_else(|| RootlessRemovalError::NoSubordinateRange {
            who: who.clone(),
            file: SUBGID_FILE.into(),
        })?;
    let mut command = Command::new("unshare");
    command
        .arg("--map-user=0")
        .arg("--map-group=0")
        .arg(format!("--map-users={uid_start},1,{uid_count}"))
        .arg(format!("--map-groups={gid_start},1,{gid_count}"))
        .args(["--", "rm", "-rf", "--one-file-system", "--"])
        .arg(path);
    let out = command
        .output()
        .map_err(|source| RootlessRemovalError::Spawn { source })?;
    if !out.status.success() {
        return Err(RootlessRemovalError::Failed {
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    if path.exists() {
        return Err(RootlessRemovalError::Failed {
            status: out.status,
            stderr: "the directory is still there".to_owned(),
        });
    }
    Ok(())
}

/// Why a tree could not be removed inside a user namespace.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RootlessRemovalError {
    /// The caller has no subordinate range, so no namespace can map the ids in the tree.
    #[error(
        "user {who} has no range in {}: add one with `sudo usermod --add-subuids 100000-165535 \
         --add-subgids 100000-165535 {who}`",
        file.display()
    )]
    NoSubordinateRange {
        /// The user's name (or uid).
        who: String,
        /// `/etc/subuid` or `/etc/subgid`.
        file: PathBuf,
    },
    /// `unshare` could not be started.
    #[error(
        "cannot run `unshare` (util-linux 2.38 or later, with `newuidmap`/`newgidmap` from the \
         uidmap package): {source}"
    )]
    Spawn {
        /// The spawn error.
        #[source]
        source: io::Error,
    },
    /// `unshare … rm -rf` failed.
    #[error(
        "`unshare --map-users … rm -rf` failed ({status}): {stderr}; it needs util-linux 2.38 or \
         later and setuid `newuidmap`/`newgidmap` (the uidmap package)"
    )]
    Failed {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed.
        stderr: String,
    },
}

fn user_name(uid: u32) -> Option<String> {
    let passwd = fs_err::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 2 && fields[2] == uid.to_string()).then(|| fields[0].to_owned())
    })
}

/// The first `start:count` range of `uid` (by number or `name`) in a subid file.
fn subordinate_range(file: &Path, uid: u32, name: Option<&str>) -> Option<(u32, u32)> {
    let text = fs_err::read_to_string(file).ok()?;
    parse_subordinate_range(&text, uid, name)
}

fn parse_subordinate_range(text: &str, uid: u32, name: Option<&str>) -> Option<(u32, u32)> {
    let uid_text = uid.to_string();
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.trim().split(':').collect();
        let owner = *fields.first()?;
        if owner != uid_text && Some(owner) != name {
            return None;
        }
        Some((fields.get(1)?.parse().ok()?, fields.get(2)?.parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_found_by_name_or_uid() {
        let text = "alice:100000:65536\n1001:300000:1000\n";
        assert_eq!(
            parse_subordinate_range(text, 1000, Some("alice")),
            Some((100_000, 65_536))
        );
        assert_eq!(
            parse_subordinate_range(text, 1001, Some("bob")),
            Some((300_000, 1000))
        );
        assert_eq!(parse_subordinate_range(text, 1002, Some("carol")), None);
    }

    #[test]
    fn a_missing_tree_is_already_removed() {
        let dir = tempfile::tempdir().unwrap();
        remove_tree(&dir.path().join("absent")).unwrap();
    }

    #[test]
    fn directories_without_owner_permissions_are_opened_up_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("scratch");
        let work = tree.join("work/ovl/work");
        fs_err::create_dir_all(work.join("incompat")).unwrap();
        fs_err::write(work.join("incompat/dirty"), "").unwrap();
        for d in [work.join("incompat"), work.clone()] {
            fs_err::set_permissions(&d, std::fs::Permissions::from_mode(0o000)).unwrap();
        }
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
    }

    #[test]
    fn a_file_is_removed_too() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs_err::write(&file, "x").unwrap();
        remove_tree(&file).unwrap();
        assert!(!file.exists());
    }
}
