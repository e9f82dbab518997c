//! Garbage collection (`kiln prune`): mark everything reachable from refs, live leases and
//! the cache records that survive the age/size limits, then sweep the rest.
//!
//! Runs under the exclusive store lock, so no build or import is between writing a blob
//! and recording it. Snapshots are renamed into `tmp/trash/` before they are deleted, so a
//! crash mid-delete never leaves a half snapshot visible.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use kiln_oci::{ChainId, Digest};

use crate::Store;
use crate::cache::{RecordRefs, refs_of};
use crate::error::StoreError;
use crate::graph::{Edges, edges_of};
use crate::layout::{LEGACY_RECORDS_DIR, RECORDS_DIR, pid_is_alive, sync_dir, temp_owner};
use crate::lock::LockMode;

/// What `prune` may remove. The default removes only what nothing references.
#[derive(Debug, Clone, Default)]
pub struct GcOptions {
    /// Also remove every cache record and unused cache mount (`prune --all`).
    pub all: bool,
    /// Remove cache records not used for this long (`--older-than`).
    pub older_than: Option<Duration>,
    /// Evict least-recently-used cache records until blobs + snapshots fit (`--max-size`).
    pub max_size: Option<u64>,
    /// Report what would be removed without removing it.
    pub dry_run: bool,
}

/// What a GC run removed and kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs removed.
    pub removed_blobs: usize,
    /// Snapshots removed.
    pub removed_snapshots: usize,
    /// Cache records removed.
    pub removed_records: usize,
    /// Cache mounts removed.
    pub removed_mounts: usize,
    /// Leftover temp files/dirs of dead processes removed.
    pub removed_temp: usize,
    /// Bytes freed (blob sizes + snapshot file sizes).
    pub freed_bytes: u64,
    /// Bytes still used by blobs and snapshots.
    pub kept_bytes: u64,
}

struct Record {
    key: String,
    path: PathBuf,
    used: SystemTime,
    refs: RecordRefs,
    /// A record of `cache/v1`: always evicted.
    legacy: bool,
}

impl Store {
    /// Collects garbage under the exclusive lock (waiting for running builds to finish).
    pub fn gc(&self, options: &GcOptions) -> Result<GcReport, StoreError> {
        let _lock = self.lock(LockMode::Exclusive)?;
        let mut report = GcReport::default();
        if !options.dry_run {
            report.removed_temp = self.remove_dead_temp()?;
        }
        let leases = self.live_leases(!options.dry_run)?;

        let mut blobs = self.list_blobs()?;
        let snapshots = self.list_snapshots()?;
        let mut records = self.list_records()?;
        records.sort_by_key(|r| r.used);

        let now = SystemTime::now();
        let mut evicted: Vec<Record> = Vec::new();
        let mut kept: Vec<Record> = Vec::new();
        for record in records {
            let is_old = options
                .older_than
                .is_some_and(|age| now.duration_since(record.used).unwrap_or_default() > age);
            if options.all || is_old || record.legacy {
                evicted.push(record);
            } else {
                kept.push(record);
            }
        }

        let mut roots: Vec<Digest> = Vec::new();
        for entry in self.list_refs()? {
            roots.push(entry.digest);
        }
        roots.extend(leases.blobs.iter().cloned());
        let mut edge_cache: HashMap<Digest, Edges> = HashMap::new();
        let mut snapshot_sizes: BTreeMap<ChainId, u64> = BTreeMap::new();
        let mark = |store: &Store,
                    kept: &[Record],
                    edge_cache: &mut HashMap<Digest, Edges>,
                    blobs: &BTreeMap<Digest, u64>|
         -> (BTreeSet<Digest>, BTreeSet<ChainId>) {
            let mut live_blobs = BTreeSet::new();
            let mut live_chains: BTreeSet<ChainId> = leases.snapshots.clone();
            let mut stack: Vec<Digest> = roots.clone();
            for record in kept {
                stack.extend(record.refs.blobs.iter().cloned());
                live_chains.extend(record.refs.snapshots.iter().cloned());
            }
            while let Some(digest) = stack.pop() {
                let Some(&len) = blobs.get(&digest) else {
                    continue;
                };
                if !live_blobs.insert(digest.clone()) {
                    continue;
                }
                let edges = edge_cache
                    .entry(digest.clone())
                    .or_insert_with(|| edges_of(len, || store.read_blob(&digest).ok()));
                stack.extend(edges.required.iter().cloned());
                stack.extend(edges.optional.iter().cloned());
                live_chains.extend(edges.layers.iter().map(|(_, chain)| chain.clone()));
            }
            (live_blobs, live_chains)
        };

        let (mut live_blobs, mut live_chains) = mark(self, &kept, &mut edge_cache, &blobs);
        if let Some(max) = options.max_size {
            let size_of = |live_blobs: &BTreeSet<Digest>,
                           live_chains: &BTreeSet<ChainId>,
                           sizes: &mut BTreeMap<ChainId, u64>|
             -> u64 {
                let blob_bytes: u64 = live_blobs.iter().filter_map(|d| blobs.get(d)).sum();
                let snap_bytes: u64 = live_chains
                    .iter()
                    .filter(|c| snapshots.contains(c))
                    .map(|c| {
                        *sizes
                            .entry(c.clone())
                            .or_insert_with(|| self.snapshot_size(c))
                    })
                    .sum();
                blob_bytes + snap_bytes
            };
            // Oldest records go first; refs and leases are never evicted.
            while size_of(&live_blobs, &live_chains, &mut snapshot_sizes) > max && !kept.is_empty()
            {
                evicted.push(kept.remove(0));
                (live_blobs, live_chains) = mark(self, &kept, &mut edge_cache, &blobs);
            }
        }

        for record in &evicted {
            tracing::debug!(key = %record.key, "evicting cache record");
            if !options.dry_run {
                match fs_err::remove_file(&record.path) {
                    Ok(()) => {}
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => {
                        return Err(StoreError::Fs(err));
                    }
                }
            }
        }
        report.removed_records = evicted.len();

        for (digest, len) in &blobs {
            if live_blobs.contains(digest) {
                report.kept_bytes += len;
                continue;
            }
            report.removed_blobs += 1;
            report.freed_bytes += len;
            if !options.dry_run {
                let path = self.blob_path(digest);
                fs_err::remove_file(&path)?;
            }
        }
        blobs.retain(|d, _| live_blobs.contains(d));

        for chain in &snapshots {
            let size = *snapshot_sizes
                .entry(chain.clone())
                .or_insert_with(|| self.snapshot_size(chain));
            if live_chains.contains(chain) {
                report.kept_bytes += size;
                continue;
            }
            report.removed_snapshots += 1;
            report.freed_bytes += size;
            if !options.dry_run {
                let path = self.snapshot_path(chain);
                self.remove_dir_via_trash(&path)?;
                let _ = fs_err::remove_file(crate::snapshot::unsynced_marker(&path));
            }
        }

        if options.all {
            let dir = self.dir("mounts");
            for entry in fs_err::read_dir(&dir)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.')
                    || leases
                        .mounts
                        .iter()
                        .any(|id| Store::mount_dir_name(id) == name)
                    || self.is_mount_locked(&name)
                {
                    continue;
                }
                report.removed_mounts += 1;
                if !options.dry_run {
                    self.remove_dir_via_trash(&entry.path())?;
                }
            }
        }
        if !options.dry_run {
            for dir in ["blobs/sha256", "snapshots", RECORDS_DIR] {
                sync_dir(&self.dir(dir))?;
            }
        }
        Ok(report)
    }

    /// Every committed blob with its size.
    pub(crate) fn list_blobs(&self) -> Result<BTreeMap<Digest, u64>, StoreError> {
        let dir = self.dir("blobs/sha256");
        let mut out = BTreeMap::new();
        for entry in fs_err::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(digest) = format!("sha256:{name}").parse::<Digest>() else {
                continue;
            };
            let len = entry.metadata()?.len();
            out.insert(digest, len);
        }
        Ok(out)
    }

    /// Every snapshot's chain id.
    pub fn list_snapshots(&self) -> Result<BTreeSet<ChainId>, StoreError> {
        let dir = self.dir("snapshots");
        let mut out = BTreeSet::new();
        for entry in fs_err::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Ok(digest) = format!("sha256:{name}").parse::<Digest>() {
                out.insert(ChainId::from_stored(digest));
            }
        }
        Ok(out)
    }

    /// The records of `cache/v2`, then those of `cache/v1` (an older kiln's, which keep
    /// nothing alive and are evicted like any record that is too old).
    fn list_records(&self) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::new();
        for (dir, legacy) in [(RECORDS_DIR, false), (LEGACY_RECORDS_DIR, true)] {
            let dir = self.dir(dir);
            if legacy && !dir.exists() {
                continue;
            }
            list_records_in(&dir, legacy, &mut out)?;
        }
        Ok(out)
    }

    /// Total size of the regular files in a snapshot.
    pub(crate) fn snapshot_size(&self, chain: &ChainId) -> u64 {
        tree_size(&self.snapshot_path(chain))
    }

    /// Removes temp files and directories (and leases) left by processes that died.
    pub(crate) fn remove_dead_temp(&self) -> Result<usize, StoreError> {
        let mut removed = 0;
        for dir in [self.tmp_dir(), self.dir("tmp/trash")] {
            for entry in fs_err::read_dir(&dir)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name == "leases" || name == "trash" {
                    continue;
                }
                if temp_owner(&name).is_some_and(pid_is_alive) {
                    continue;
                }
                crate::remove_tree(&entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Whether a process holds the `sharing=locked` lock of the mount directory `name`.
    fn is_mount_locked(&self, name: &str) -> bool {
        let path = self.dir("mounts/.locks").join(name);
        let Ok(file) = fs_err::File::open(&path) else {
            return false;
        };
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared).is_err()
    }

    /// Removes a directory by first renaming it into `tmp/trash/` (atomic disappearance).
    pub(crate) fn remove_dir_via_trash(&self, dir: &Path) -> Result<(), StoreError> {
        let trash = crate::layout::create_temp_dir(&self.dir("tmp/trash"), "trash")?;
        let target = trash.join("t");
        if let Err(err) = fs_err::rename(dir, &target) {
            // Moving a directory rewrites its `..`, which needs write permission on it: a
            // rootless cache mount given a subordinate owner (`uid=`) can only be removed in
            // place. GC holds the exclusive lock, so no build sees it half-removed.
            if err.kind() != io::ErrorKind::PermissionDenied {
                return Err(err.into());
            }
            crate::remove_tree(&trash)?;
            return crate::remove_tree(dir);
        }
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        crate::remove_tree(&trash)
    }
}

fn tree_size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Appends the records of `dir` to `out` (`legacy`: of `cache/v1`).
fn list_records_in(dir: &Path, legacy: bool, out: &mut Vec<Record>) -> Result<(), StoreError> {
    for entry in fs_err::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let Some(key) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_suffix(".json"))
            .map(str::to_owned)
        else {
            continue;
        };
        let used = entry.metadata().and_then(|m| m.modified())?;
        // An unparsable record keeps nothing alive; `verify` reports it.
        let refs = fs_err::read(&path)
            .ok()
            .and_then(|bytes| refs_of(&bytes))
            .unwrap_or_default();
        out.push(Record {
            key,
            path,
            used,
            refs,
            legacy,
        });
    }
    Ok(())
}
