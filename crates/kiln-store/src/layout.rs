//! Opening a store: the versioned directory layout of DESIGN.md §7 and the paths inside it.
//!
//! ```text
//! layout-version            "1"
//! blobs/sha256/<hex>        immutable content
//! snapshots/<chain-hex>/    unpacked layers (overlay lower dirs)
//! cache/v2/<key>.json       cache records: their references and a body the engine reads
//! refs/<encoded name>       image name → manifest digest
//! mounts/<id>/              cache mounts
//! tmp/                      staging on the same filesystem; tmp/leases/ live-build leases
//! lock                      flock: shared for builds, exclusive for GC
//! ```

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_oci::{ChainId, Digest};

use crate::error::{IoContext as _, StoreError};

/// The layout version this kiln writes and understands.
pub const LAYOUT_VERSION: &str = "1";

/// The store root's mode: snapshots keep the images' setuid binaries and device nodes, so
/// nobody but the store's owner may reach them (DESIGN.md §1.7, "the store is private").
pub(crate) const ROOT_MODE: u32 = 0o700;

/// The directory of cache records.
pub(crate) const RECORDS_DIR: &str = "cache/v2";
/// The records of older kilns (a body whose digest-shaped strings were its references),
/// removed by GC.
pub(crate) const LEGACY_RECORDS_DIR: &str = "cache/v1";

const DIRS: [&str; 8] = [
    "blobs/sha256",
    "snapshots",
    RECORDS_DIR,
    "refs",
    "mounts",
    "tmp",
    "tmp/leases",
    "tmp/trash",
];

/// A handle on a content-addressed store directory. Cheap to clone; safe to share between
/// threads and, through the `lock` file and atomic renames, between processes.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    /// Whether this process may create device nodes and set `trusted.*` xattrs
    /// (overlay whiteouts in snapshots): root with `CAP_SYS_ADMIN`, which root in an
    /// unprivileged container lacks; decided once at open.
    is_privileged: bool,
    /// What was wrong with the root's permissions when it was opened (reported by `verify`).
    root_permissions: Vec<RootPermissions>,
}

/// Something about the store root that lets other users in (found at [`Store::open`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RootPermissions {
    /// Group or other bits were set; `open` changed the mode to [`ROOT_MODE`].
    Loose {
        /// The mode found (permission bits only).
        mode: u32,
    },
    /// The root belongs to another user than the one running kiln.
    ForeignOwner {
        /// The root's owner.
        owner: u32,
        /// The running user (effective uid).
        user: u32,
    },
}

impl Store {
    /// Opens the store at `root`, creating the layout when the directory is new or empty.
    /// A store with another `layout-version` is refused.
    ///
    /// The root (and any parent this creates) is made mode 0700; an existing root open to
    /// other users is changed to 0700 with a warning, and one owned by another user is
    /// warned about. [`Store::verify`] reports both.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(ROOT_MODE)
            .create(&root)
            .at("creating store directory", &root)?;
        let root_permissions = secure_root(&root)?;
        let version_path = root.join("layout-version");
        match fs_err::read_to_string(&version_path) {
            Ok(found) => {
                let found = found.trim();
                if found != LAYOUT_VERSION {
                    return Err(StoreError::LayoutVersion {
                        root,
                        found: found.to_owned(),
                        expected: LAYOUT_VERSION,
                    });
                }
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                for dir in DIRS {
                    let path = root.join(dir);
                    fs_err::create_dir_all(&path)?;
                }
                // Written last and atomically: a store with a version file is complete.
                write_atomic(
                    &root.join("tmp"),
                    &version_path,
                    format!("{LAYOUT_VERSION}\n").as_bytes(),
                )?;
            }
            Err(err) => return Err(StoreError::Fs(err)),
        }
        for dir in DIRS {
            let path = root.join(dir);
            if !path.is_dir() {
                fs_err::create_dir_all(&path)?;
            }
        }
        let lock = root.join("lock");
        fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&lock)?;
        Ok(Self {
            inner: Arc::new(Inner {
                root,
                is_privileged: has_sys_admin(),
                root_permissions,
            }),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Where the blob `digest` lives once committed (exporters may `copy_file_range` from it).
    /// The file exists only if [`Store::has_blob`] says so.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.inner
            .root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    /// Where the snapshot of `chain` lives (an overlay lower dir once created).
    pub fn snapshot_path(&self, chain: &ChainId) -> PathBuf {
        self.inner.root.join("snapshots").join(chain.hex())
    }

    pub(crate) fn is_privileged(&self) -> bool {
        self.inner.is_privileged
    }

    pub(crate) fn root_permissions(&self) -> &[RootPermissions] {
        &self.inner.root_permissions
    }

    pub(crate) fn dir(&self, name: &str) -> PathBuf {
        self.inner.root.join(name)
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.inner.root.join("tmp")
    }
}

/// Makes `root` private to its owner: group and other bits are cleared (with a warning naming
/// the old mode). Returns what was wrong, for `verify`.
fn secure_root(root: &Path) -> Result<Vec<RootPermissions>, StoreError> {
    let meta = fs_err::metadata(root)?;
    let mut found = Vec::new();
    let user = rustix::process::geteuid().as_raw();
    if meta.uid() != user {
        tracing::warn!(
            "the kiln store {} belongs to uid {}, not to the running user (uid {user}): \
             its owner can read and run everything this user builds into it",
            root.display(),
            meta.uid()
        );
        found.push(RootPermissions::ForeignOwner {
            owner: meta.uid(),
            user,
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        fs_err::set_permissions(root, fs::Permissions::from_mode(ROOT_MODE))?;
        tracing::warn!(
            "the kiln store {} had mode {mode:04o}, open to other users; changed it to {ROOT_MODE:04o}",
            root.display()
        );
        found.push(RootPermissions::Loose { mode });
    }
    Ok(found)
}

/// The store root's permission problems right now (`verify` re-checks after `open`).
pub(crate) fn root_permissions_now(root: &Path) -> Result<Vec<RootPermissions>, StoreError> {
    let meta = fs_err::metadata(root)?;
    let mut found = Vec::new();
    let user = rustix::process::geteuid().as_raw();
    if meta.uid() != user {
        found.push(RootPermissions::ForeignOwner {
            owner: meta.uid(),
            user,
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        found.push(RootPermissions::Loose { mode });
    }
    Ok(found)
}

/// Writes `bytes` to `dest` atomically: temp file in `tmp`, fsync, rename, fsync the directory.
pub(crate) fn write_atomic(tmp: &Path, dest: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let (file, temp) = create_temp(tmp, "write")?;
    let mut file = file;
    file.write_all(bytes).at("writing", &temp)?;
    file.sync_all().at("syncing", &temp)?;
    drop(file);
    rename_durable(&temp, dest)
}

/// Renames `from` to `to` and fsyncs the destination directory. On failure `from` is removed.
pub(crate) fn rename_durable(from: &Path, to: &Path) -> Result<(), StoreError> {
    if let Err(err) = fs_err::rename(from, to) {
        let _ = fs_err::remove_file(from);
        return Err(StoreError::Fs(err));
    }
    if let Some(parent) = to.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// fsyncs a directory so a rename or removal in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    Ok(fs_err::File::open(dir)?.sync_all()?)
}

/// Creates a fresh temp file `tmp/<prefix>-<pid>-<n>` (exclusively). The pid in the name lets
/// `verify` and GC tell a live writer's file from a crashed one's.
pub(crate) fn create_temp(tmp: &Path, prefix: &str) -> Result<(File, PathBuf), StoreError> {
    let pid = std::process::id();
    loop {
        let path = tmp.join(format!("{prefix}-{pid}-{}", unique_suffix()));
        match fs_err::OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => return Ok((file.into_file(), path)),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(StoreError::Fs(err)),
        }
    }
}

/// Creates a fresh temp directory `tmp/<prefix>-<pid>-<n>`.
pub(crate) fn create_temp_dir(tmp: &Path, prefix: &str) -> Result<PathBuf, StoreError> {
    let pid = std::process::id();
    loop {
        let path = tmp.join(format!("{prefix}-{pid}-{}", unique_suffix()));
        match fs_err::create_dir(&path) {
            Ok(()) => return Ok(path),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(StoreError::Fs(err)),
        }
    }
}

fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{n}-{nanos:08x}")
}

/// The pid a temp name `prefix-<pid>-…` was created by.
pub(crate) fn temp_owner(name: &str) -> Option<i32> {
    let mut parts = name.splitn(3, '-');
    parts.next()?;
    parts.next()?.parse().ok()
}

/// Whether process `pid` is alive (a zombie counts as alive; a lease of a dead one is stale).
pub(crate) fn pid_is_alive(pid: i32) -> bool {
    if i64::from(pid) == i64::from(std::process::id()) {
        return true;
    }
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Root of the initial user namespace with `CAP_SYS_ADMIN` in its effective set: what
/// `trusted.*` xattrs and device nodes need. Root in an unprivileged container (Docker's
/// default capabilities) is not, nor root of a user namespace (kiln re-executed rootless,
/// kiln-sandbox `is_host_root`, which has every capability there): they get `user.*` ones.
fn has_sys_admin() -> bool {
    rustix::process::geteuid().is_root()
        && is_initial_user_namespace()
        && rustix::thread::capabilities(None).is_ok_and(|sets| {
            sets.effective
                .contains(rustix::thread::CapabilitySet::SYS_ADMIN)
        })
}

/// The initial user namespace maps every id to itself (`0 0 4294967295`); without a readable
/// `/proc` this assumes it.
pub(crate) fn is_initial_user_namespace() -> bool {
    fs_err::read_to_string("/proc/self/uid_map").map_or(true, |map| {
        map.split_whitespace().eq(["0", "0", "4294967295"])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_creates_the_layout_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s")).unwrap();
        for d in DIRS {
            assert!(store.root().join(d).is_dir(), "{d}");
        }
        assert_eq!(
            fs_err::read_to_string(store.root().join("layout-version")).unwrap(),
            "1\n"
        );
        assert!(store.root().join("lock").is_file());
        Store::open(store.root()).unwrap();
    }

    #[test]
    fn open_refuses_another_layout_version() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("layout-version"), "2\n").unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::LayoutVersion { ref found, .. } if found == "2"));
        assert!(err.to_string().contains("layout version 2"), "{err}");
    }

    fn mode_of(path: &Path) -> u32 {
        fs_err::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn open_creates_a_private_root_and_private_parents() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a/b/store");
        let store = Store::open(&root).unwrap();
        assert_eq!(mode_of(&root), 0o700);
        assert_eq!(mode_of(&dir.path().join("a")), 0o700);
        assert_eq!(mode_of(&dir.path().join("a/b")), 0o700);
        assert!(store.root_permissions().is_empty());
    }

    #[test]
    fn open_makes_a_loose_root_private_and_remembers_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("s");
        Store::open(&root).unwrap();
        fs_err::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        let store = Store::open(&root).unwrap();
        assert_eq!(mode_of(&root), 0o700);
        assert_eq!(
            store.root_permissions(),
            [RootPermissions::Loose { mode: 0o755 }]
        );
        // Fixed: the next open finds nothing.
        assert!(Store::open(&root).unwrap().root_permissions().is_empty());
    }

    #[test]
    fn temp_owner_reads_the_pid() {
        assert_eq!(temp_owner("ingest-123-4-abc"), Some(123));
        assert_eq!(temp_owner("garbage"), None);
    }
}
