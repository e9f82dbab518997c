//! Cross-process coordination: an `flock` on `<root>/lock` (shared for builds and imports,
//! exclusive for GC and repairs) and leases, small files under `tmp/leases/` naming the
//! blobs and snapshots a live process needs, stale once that process is gone.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kiln_oci::{ChainId, Digest};
use rustix::fs::{FlockOperation, flock};
use serde::{Deserialize, Serialize};

use crate::Store;
use crate::error::{IoContext as _, StoreError};
use crate::layout::{pid_is_alive, temp_owner, write_atomic};

/// How a [`StoreLock`] holds the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Many holders at once: builds, imports, pulls.
    Shared,
    /// One holder, no shared holders: GC and repairs.
    Exclusive,
}

/// A held `flock` on the store; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
    mode: LockMode,
}

impl StoreLock {
    /// How the lock is held.
    pub fn mode(&self) -> LockMode {
        self.mode
    }
}

impl Store {
    /// Takes the store lock in `mode`, waiting for conflicting holders.
    pub fn lock(&self, mode: LockMode) -> Result<StoreLock, StoreError> {
        let (file, path) = self.open_store_lock()?;
        let op = match mode {
            LockMode::Shared => FlockOperation::LockShared,
            LockMode::Exclusive => FlockOperation::LockExclusive,
        };
        flock(&file, op)
            .map_err(std::io::Error::from)
            .at("locking", path)?;
        Ok(StoreLock { _file: file, mode })
    }

    /// Takes the store lock in `mode` if nobody holds it in a conflicting mode.
    pub fn try_lock(&self, mode: LockMode) -> Result<Option<StoreLock>, StoreError> {
        let (file, path) = self.open_store_lock()?;
        let op = match mode {
            LockMode::Shared => FlockOperation::NonBlockingLockShared,
            LockMode::Exclusive => FlockOperation::NonBlockingLockExclusive,
        };
        match flock(&file, op) {
            Ok(()) => Ok(Some(StoreLock { _file: file, mode })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(err) => Err(StoreError::io("locking", path, err.into())),
        }
    }

    /// Holds cache mount `id` exclusively (`--mount=type=cache,sharing=locked`): waits until
    /// no other process holds it; released on drop. The lock file is `mounts/.locks/<id>`
    /// (mount directory names never start with `.`).
    pub fn lock_cache_mount(&self, id: &str) -> Result<StoreLock, StoreError> {
        let dir = self.cache_mount_dir(id)?;
        let locks = self.dir("mounts/.locks");
        fs_err::create_dir_all(&locks)?;
        let path = locks.join(dir.file_name().unwrap_or_default());
        let file = open_lock_file(&path)?;
        flock(&file, FlockOperation::LockExclusive)
            .map_err(std::io::Error::from)
            .at("locking", path)?;
        Ok(StoreLock {
            _file: file,
            mode: LockMode::Exclusive,
        })
    }

    fn open_store_lock(&self) -> Result<(File, PathBuf), StoreError> {
        let path = self.root().join("lock");
        Ok((open_lock_file(&path)?, path))
    }

    /// Starts a lease: until it is dropped (or this process dies), GC keeps every blob and
    /// snapshot added to it.
    pub fn lease(&self) -> Result<Lease, StoreError> {
        let dir = self.dir("tmp/leases");
        let (file, path) = crate::layout::create_temp(&dir, "lease")?;
        drop(file);
        let lease = Lease {
            store: self.clone(),
            path,
            content: Mutex::new(LeaseFile::default()),
        };
        lease.save()?;
        Ok(lease)
    }

    /// Everything protected by the leases of live processes. Stale leases are ignored (and
    /// removed when `remove_stale`).
    pub(crate) fn live_leases(&self, remove_stale: bool) -> Result<LeaseFile, StoreError> {
        let dir = self.dir("tmp/leases");
        let mut all = LeaseFile::default();
        for entry in fs_err::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let is_live = temp_owner(&name).is_some_and(pid_is_alive);
            if !is_live {
                if remove_stale {
                    let _ = fs_err::remove_file(&path);
                }
                continue;
            }
            let Ok(bytes) = fs_err::read(&path) else {
                continue;
            };
            // A lease being rewritten right now is empty for an instant; the old one was
            // renamed away atomically, so a parse failure only means "nothing yet".
            if let Ok(file) = serde_json::from_slice::<LeaseFile>(&bytes) {
                all.blobs.extend(file.blobs);
                all.snapshots.extend(file.snapshots);
                all.mounts.extend(file.mounts);
            }
        }
        Ok(all)
    }
}

/// Opens (creating when missing) a file that exists only to be `flock`ed: the store lock or
/// a cache mount's lock.
fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    Ok(fs_err::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?
        .into_file())
}

/// What one lease protects.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct LeaseFile {
    pub(crate) blobs: BTreeSet<Digest>,
    pub(crate) snapshots: BTreeSet<ChainId>,
    #[serde(default)]
    pub(crate) mounts: BTreeSet<String>,
}

/// A live process's claim on blobs and snapshots, stored in `tmp/leases/lease-<pid>-…`.
/// Removed on drop; a lease whose process died is stale and ignored by GC.
#[derive(Debug)]
pub struct Lease {
    store: Store,
    path: PathBuf,
    content: Mutex<LeaseFile>,
}

impl Lease {
    /// Protects a blob from GC for the life of the lease.
    pub fn protect_blob(&self, digest: &Digest) -> Result<(), StoreError> {
        let is_new = self.content().blobs.insert(digest.clone());
        if is_new { self.save() } else { Ok(()) }
    }

    /// Protects a snapshot from GC for the life of the lease.
    pub fn protect_snapshot(&self, chain: &ChainId) -> Result<(), StoreError> {
        let is_new = self.content().snapshots.insert(chain.clone());
        if is_new { self.save() } else { Ok(()) }
    }

    /// Marks a cache mount as in use (prune --all skips it).
    pub fn protect_mount(&self, id: &str) -> Result<(), StoreError> {
        let is_new = self.content().mounts.insert(id.to_owned());
        if is_new { self.save() } else { Ok(()) }
    }

    /// The lease file (for diagnostics).
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn content(&self) -> std::sync::MutexGuard<'_, LeaseFile> {
        self.content
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn save(&self) -> Result<(), StoreError> {
        let content = self.content();
        let bytes = serde_json::to_vec(&*content)
            .map_err(|e| StoreError::io("encoding lease", &self.path, std::io::Error::other(e)))?;
        write_atomic(&self.store.tmp_dir(), &self.path, &bytes)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = fs_err::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_shared_and_shared_shares() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // flock locks belong to open file descriptions, so two opens in one process conflict
        // exactly like two processes do.
        let a = store.lock(LockMode::Shared).unwrap();
        let b = store.try_lock(LockMode::Shared).unwrap();
        assert!(b.is_some());
        assert!(store.try_lock(LockMode::Exclusive).unwrap().is_none());
        drop((a, b));
        let x = store.try_lock(LockMode::Exclusive).unwrap().unwrap();
        assert_eq!(x.mode(), LockMode::Exclusive);
        assert!(store.try_lock(LockMode::Shared).unwrap().is_none());
    }

    #[test]
    fn lock_conflicts_across_processes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lock = store.root().join("lock");
        let run = |args: &[&str]| {
            std::process::Command::new("flock")
                .args(args)
                .arg(&lock)
                .arg("true")
                .status()
                .expect("flock(1) from util-linux")
                .success()
        };
        let held = store.lock(LockMode::Shared).unwrap();
        assert!(run(&["-n", "-s"]), "a second shared holder is allowed");
        assert!(
            !run(&["-n", "-x"]),
            "an exclusive holder must wait for builds"
        );
        drop(held);
        let held = store.lock(LockMode::Exclusive).unwrap();
        assert!(!run(&["-n", "-s"]), "builds must wait for GC");
        drop(held);
        assert!(run(&["-n", "-x"]));
    }

    #[test]
    fn leases_protect_until_dropped_and_stale_ones_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = Digest::sha256_of(b"x");
        let lease = store.lease().unwrap();
        lease.protect_blob(&d).unwrap();
        assert!(store.live_leases(false).unwrap().blobs.contains(&d));
        // A lease of a process that no longer exists (pid beyond pid_max) is stale.
        fs_err::write(
            store.root().join("tmp/leases/lease-2147483647-0-0"),
            serde_json::to_vec(&LeaseFile {
                blobs: [Digest::sha256_of(b"stale")].into(),
                ..LeaseFile::default()
            })
            .unwrap(),
        )
        .unwrap();
        let live = store.live_leases(true).unwrap();
        assert!(!live.blobs.contains(&Digest::sha256_of(b"stale")));
        assert!(
            !store
                .root()
                .join("tmp/leases/lease-2147483647-0-0")
                .exists()
        );
        let path = lease.path().to_owned();
        drop(lease);
        assert!(!path.exists());
        assert!(store.live_leases(false).unwrap().blobs.is_empty());
    }
}
