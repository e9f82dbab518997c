//! Cache records (`cache/v2/<key>.json`) and cache mounts (`mounts/<id>/`).
//!
//! A record is a body the store does not read (the build engine's JSON) and its
//! [`RecordRefs`]: the blobs and snapshots it needs, which GC keeps while the record lives
//! and reads nothing else of the record for. The engine writes a record atomically *after*
//! what it references is durable. Reading a record bumps its mtime: `prune --older-than`
//! and `--max-size` evict the least recently used first.
//!
//! `cache/v1/` held records whose every digest-shaped string counted as a reference; they
//! keep nothing alive any more, and the next GC removes them.

use std::fmt::Write as _;
use std::fs::FileTimes;
use std::io;
use std::path::PathBuf;
use std::time::SystemTime;

use kiln_oci::Digest;

use kiln_oci::ChainId;
use serde::{Deserialize, Serialize};

use crate::Store;
use crate::error::StoreError;
use crate::layout::{RECORDS_DIR, write_atomic};

/// What a cache record keeps alive: GC marks these blobs (and what they reference) and these
/// snapshots as live for as long as the record is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordRefs {
    /// Blobs the record names.
    #[serde(default)]
    pub blobs: Vec<Digest>,
    /// Snapshots the record names.
    #[serde(default)]
    pub snapshots: Vec<ChainId>,
}

/// A record as stored.
#[derive(Serialize, Deserialize)]
struct Envelope<B> {
    refs: RecordRefs,
    body: B,
}

/// The references of the record `bytes`; `None` when it is not a record of this version.
pub(crate) fn refs_of(bytes: &[u8]) -> Option<RecordRefs> {
    parse_refs(bytes).ok()
}

/// The references of the record `bytes`, or why it is not a record of this version.
pub(crate) fn parse_refs(bytes: &[u8]) -> Result<RecordRefs, serde_json::Error> {
    serde_json::from_slice::<Envelope<serde::de::IgnoredAny>>(bytes).map(|e| e.refs)
}

impl Store {
    /// Stores the record `body` under `key` (lowercase hex, e.g. a cache key's sha256),
    /// replacing any previous one atomically; GC keeps what `refs` names while it lives.
    pub fn put_cache_record(
        &self,
        key: &str,
        refs: &RecordRefs,
        body: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let path = self.cache_record_path(key)?;
        let bytes = serde_json::to_vec(&Envelope {
            refs: refs.clone(),
            body,
        })
        .map_err(|e| StoreError::io("encoding cache record", &path, io::Error::other(e)))?;
        write_atomic(&self.tmp_dir(), &path, &bytes)
    }

    /// The body of the record stored under `key`, or `None`. A hit refreshes the record's
    /// age.
    pub fn get_cache_record(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let path = self.cache_record_path(key)?;
        let bytes = match fs_err::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(StoreError::Fs(err)),
        };
        let value = serde_json::from_slice::<Envelope<serde_json::Value>>(&bytes)
            .map_err(|source| StoreError::Corrupt {
                path: path.clone(),
                what: "cache record JSON",
                source,
            })?
            .body;
        // Best effort: an LRU hint, not a correctness matter (the store may be read-only).
        if let Ok(file) = fs_err::OpenOptions::new().append(true).open(&path) {
            let _ = file.set_times(FileTimes::new().set_modified(SystemTime::now()));
        }
        Ok(Some(value))
    }

    /// Removes the record under `key`; returns whether it existed.
    pub fn delete_cache_record(&self, key: &str) -> Result<bool, StoreError> {
        let path = self.cache_record_path(key)?;
        match fs_err::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(StoreError::Fs(err)),
        }
    }

    /// The directory of cache mount `id` (`--mount=type=cache,id=…`), created on first use.
    /// Ids may contain `/`-separated segments of `[A-Za-z0-9._-]`; nothing may escape `mounts/`.
    pub fn cache_mount_dir(&self, id: &str) -> Result<PathBuf, StoreError> {
        let invalid = |reason| StoreError::InvalidMountId {
            id: id.to_owned(),
            reason,
        };
        if id.is_empty() {
            return Err(invalid("the id is empty"));
        }
        let encoded = Self::mount_dir_name(id);
        if encoded.len() > 200 {
            return Err(invalid("the id is longer than 200 characters once encoded"));
        }
        let path = self.dir("mounts").join(encoded);
        fs_err::create_dir_all(&path)?;
        Ok(path)
    }

    /// The directory name of cache mount `id` under `mounts/`: percent-encoded, never `.`-led.
    pub(crate) fn mount_dir_name(id: &str) -> String {
        let mut encoded = String::new();
        for byte in id.bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-') {
                encoded.push(char::from(byte));
            } else {
                let _ = write!(encoded, "%{byte:02X}");
            }
        }
        if encoded.starts_with('.') {
            encoded = format!("%2E{}", &encoded[1..]);
        }
        encoded
    }

    fn cache_record_path(&self, key: &str) -> Result<PathBuf, StoreError> {
        let is_hex = !key.is_empty()
            && key.len() <= 128
            && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !is_hex {
            return Err(StoreError::InvalidCacheKey {
                key: key.to_owned(),
            });
        }
        Ok(self.dir(RECORDS_DIR).join(format!("{key}.json")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_keys_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = "ab".repeat(32);
        assert_eq!(store.get_cache_record(&key).unwrap(), None);
        let rec = serde_json::json!({"layer": Digest::sha256_of(b"l").to_string(), "n": 1});
        let refs = RecordRefs {
            blobs: vec![Digest::sha256_of(b"blob")],
            snapshots: vec![ChainId::from_stored(Digest::sha256_of(b"snapshot"))],
        };
        store.put_cache_record(&key, &refs, &rec).unwrap();
        assert_eq!(store.get_cache_record(&key).unwrap(), Some(rec.clone()));
        let bytes = fs_err::read(store.cache_record_path(&key).unwrap()).unwrap();
        assert_eq!(refs_of(&bytes), Some(refs.clone()));
        // A record of cache/v1 (a bare body) has no references.
        assert_eq!(refs_of(rec.to_string().as_bytes()), None);
        assert!(store.delete_cache_record(&key).unwrap());
        for bad in ["", "../x", "ABC", "a/b"] {
            assert!(matches!(
                store.put_cache_record(bad, &refs, &rec),
                Err(StoreError::InvalidCacheKey { .. })
            ));
        }
    }

    #[test]
    fn mount_ids_stay_inside_mounts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mounts = store.root().join("mounts");
        for id in ["apt", "../../etc", "a/b", ".."] {
            let path = store.cache_mount_dir(id).unwrap();
            assert_eq!(path.parent().unwrap(), mounts, "{id}");
            assert!(path.is_dir());
        }
        assert!(store.cache_mount_dir("").is_err());
    }

    #[test]
    fn locked_mounts_exclude_each_other_and_survive_prune_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let held = store.lock_cache_mount("apt").unwrap();
        let lock = store.root().join("mounts/.locks/apt");
        let try_flock = || {
            std::process::Command::new("flock")
                .args(["-n", "-x"])
                .arg(&lock)
                .arg("true")
                .status()
                .unwrap()
                .success()
        };
        assert!(!try_flock(), "a second holder must wait");
        store.cache_mount_dir("unused").unwrap();
        let report = store
            .gc(&crate::GcOptions {
                all: true,
                ..crate::GcOptions::default()
            })
            .unwrap();
        assert_eq!(report.removed_mounts, 1, "only the unlocked mount goes");
        assert!(store.root().join("mounts/apt").is_dir());
        assert!(!store.root().join("mounts/unused").exists());
        drop(held);
        assert!(try_flock());
    }
}
