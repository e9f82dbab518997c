//! Cache records (`cache/v1/<key>.json`) and cache mounts (`mounts/<id>/`).
//!
//! A record is opaque JSON to the store, written atomically by the build engine *after* the
//! blobs it names are durable. For GC, every string in a record that parses as a digest
//! (`sha256:<hex>`) counts as a reference to the blob — or snapshot — of that digest, so a
//! record keeps what it needs without the store knowing its schema. Reading a record bumps
//! its mtime: `prune --older-than` and `--max-size` evict the least recently used first.

use std::fmt::Write as _;
use std::fs::FileTimes;
use std::io;
use std::path::PathBuf;
use std::time::SystemTime;

use kiln_oci::Digest;

use crate::Store;
use crate::error::StoreError;
use crate::layout::write_atomic;

impl Store {
    /// Stores the record `json` under `key` (lowercase hex, e.g. a cache key's sha256),
    /// replacing any previous one atomically.
    pub fn put_cache_record(&self, key: &str, json: &serde_json::Value) -> Result<(), StoreError> {
        let path = self.cache_record_path(key)?;
        let bytes = serde_json::to_vec(json)
            .map_err(|e| StoreError::io("encoding cache record", &path, io::Error::other(e)))?;
        write_atomic(&self.tmp_dir(), &path, &bytes)
    }

    /// The record stored under `key`, or `None`. A hit refreshes the record's age.
    pub fn get_cache_record(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let path = self.cache_record_path(key)?;
        let bytes = match fs_err::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(StoreError::Fs(err)),
        };
        let value = serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
            path: path.clone(),
            what: "cache record JSON",
            source,
        })?;
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
        Ok(self.dir("cache/v1").join(format!("{key}.json")))
    }
}

/// Every digest string anywhere in `value`.
pub(crate) fn digests_in(value: &serde_json::Value, out: &mut Vec<Digest>) {
    match value {
        serde_json::Value::String(s) => {
            if let Ok(d) = s.parse::<Digest>() {
                out.push(d);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| digests_in(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| digests_in(v, out)),
        _ => {}
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
        store.put_cache_record(&key, &rec).unwrap();
        assert_eq!(store.get_cache_record(&key).unwrap(), Some(rec.clone()));
        let mut found = Vec::new();
        digests_in(&rec, &mut found);
        assert_eq!(found, vec![Digest::sha256_of(b"l")]);
        assert!(store.delete_cache_record(&key).unwrap());
        for bad in ["", "../x", "ABC", "a/b"] {
            assert!(matches!(
                store.put_cache_record(bad, &rec),
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
