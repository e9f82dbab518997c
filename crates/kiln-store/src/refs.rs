//! Image references: one small JSON file per normalized name under `refs/`, replaced by an
//! atomic rename, so a reader sees either the old or the new target, never a torn one.
//!
//! File names percent-encode every byte outside `[A-Za-z0-9._-]` (`/` → `%2F`, `:` → `%3A`);
//! a name whose encoding would exceed a safe file-name length is stored as `sha256-<hex of
//! the name>`. The file holds the name itself, so listing never has to decode.

use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;
use std::time::SystemTime;

use kiln_oci::{Digest, ImageRef};
use serde::{Deserialize, Serialize};

use crate::Store;
use crate::error::StoreError;
use crate::layout::{sync_dir, write_atomic};

/// Longest encoded name stored as-is (file names are limited to 255 bytes).
const MAX_ENCODED_NAME: usize = 200;

/// One image reference of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefEntry {
    /// The normalized name (`docker.io/library/busybox:latest`).
    pub name: ImageRef,
    /// The manifest (or index) it points to.
    pub digest: Digest,
    /// The registry reference the image was pulled from, when it was pulled (an index's
    /// platforms that are not in the store can be fetched from there); `None` for an image
    /// made here (built, imported, loaded).
    pub origin: Option<ImageRef>,
    /// When the ref was last written.
    pub updated: SystemTime,
}

/// The content of a ref file.
#[derive(Serialize, Deserialize)]
pub(crate) struct RefFile {
    pub(crate) name: ImageRef,
    pub(crate) digest: Digest,
    /// Absent in refs written before origins were recorded, and for images made here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) origin: Option<ImageRef>,
}

impl Store {
    /// Points `name` at the manifest (or index) `digest`, which must be present, as an image
    /// made here (no registry origin).
    pub fn set_ref(&self, name: &ImageRef, digest: &Digest) -> Result<(), StoreError> {
        self.set_ref_with_origin(name, digest, None)
    }

    /// Points `name` at the manifest (or index) `digest`, which must be present, recording
    /// the registry reference it was pulled from (`None`: made here).
    pub fn set_ref_with_origin(
        &self,
        name: &ImageRef,
        digest: &Digest,
        origin: Option<&ImageRef>,
    ) -> Result<(), StoreError> {
        if !self.has_blob(digest) {
            return Err(StoreError::Blob(kiln_oci::BlobError::NotFound {
                digest: digest.clone(),
            }));
        }
        let path = self.ref_path(name);
        let body = serde_json::to_vec(&RefFile {
            name: name.clone(),
            digest: digest.clone(),
            origin: origin.cloned(),
        })
        .map_err(|e| StoreError::io("encoding ref", &path, io::Error::other(e)))?;
        write_atomic(&self.tmp_dir(), &path, &body)
    }

    /// The manifest digest `name` points to, or `None`.
    pub fn resolve_ref(&self, name: &ImageRef) -> Result<Option<Digest>, StoreError> {
        let path = self.ref_path(name);
        match fs_err::read(&path) {
            Ok(bytes) => Ok(Some(parse_ref(&path, &bytes)?.digest)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(StoreError::Fs(err)),
        }
    }

    /// The whole ref `name` (its digest and origin), or `None`.
    pub fn ref_entry(&self, name: &ImageRef) -> Result<Option<RefEntry>, StoreError> {
        let path = self.ref_path(name);
        let bytes = match fs_err::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(StoreError::Fs(err)),
        };
        let file = parse_ref(&path, &bytes)?;
        let updated = fs_err::metadata(&path)?.modified()?;
        Ok(Some(RefEntry {
            name: file.name,
            digest: file.digest,
            origin: file.origin,
            updated,
        }))
    }

    /// Like [`Store::resolve_ref`], but a missing name is an error that says so.
    pub fn require_ref(&self, name: &ImageRef) -> Result<Digest, StoreError> {
        self.resolve_ref(name)?
            .ok_or_else(|| StoreError::RefNotFound { name: name.clone() })
    }

    /// Removes the ref `name`; returns whether it existed.
    pub fn delete_ref(&self, name: &ImageRef) -> Result<bool, StoreError> {
        let path = self.ref_path(name);
        match fs_err::remove_file(&path) {
            Ok(()) => {
                sync_dir(&self.dir("refs"))?;
                Ok(true)
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(StoreError::Fs(err)),
        }
    }

    /// Every ref, sorted by name. An unreadable ref file is an error naming it.
    pub fn list_refs(&self) -> Result<Vec<RefEntry>, StoreError> {
        let dir = self.dir("refs");
        let mut out = Vec::new();
        for entry in fs_err::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let bytes = match fs_err::read(&path) {
                Ok(bytes) => bytes,
                // Deleted between listing and reading.
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(StoreError::Fs(err)),
            };
            let file = parse_ref(&path, &bytes)?;
            let updated = entry.metadata().and_then(|m| m.modified())?;
            out.push(RefEntry {
                name: file.name,
                digest: file.digest,
                origin: file.origin,
                updated,
            });
        }
        out.sort_by_key(|r| r.name.to_string());
        Ok(out)
    }

    pub(crate) fn ref_path(&self, name: &ImageRef) -> PathBuf {
        self.dir("refs").join(encode_ref_name(&name.to_string()))
    }
}

pub(crate) fn parse_ref(path: &std::path::Path, bytes: &[u8]) -> Result<RefFile, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        path: path.to_owned(),
        what: "image ref",
        source,
    })
}

fn encode_ref_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    if out.len() > MAX_ENCODED_NAME || out.starts_with('.') {
        return format!("sha256-{}", Digest::sha256_of(name.as_bytes()).hex());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_round_trip_with_normalized_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let r = |s: &str| ImageRef::parse(s).unwrap();
        let m = store.put_bytes(b"{}").unwrap();
        store.set_ref(&r("busybox"), &m).unwrap();
        assert!(
            store
                .root()
                .join("refs/docker.io%2Flibrary%2Fbusybox%3Alatest")
                .is_file()
        );
        assert_eq!(
            store.resolve_ref(&r("docker.io/library/busybox")).unwrap(),
            Some(m.clone())
        );
        assert_eq!(store.resolve_ref(&r("busybox:other")).unwrap(), None);
        let m2 = store.put_bytes(b"{\"a\":1}").unwrap();
        store.set_ref(&r("busybox:latest"), &m2).unwrap();
        store.set_ref(&r("ghcr.io/o/app:1"), &m).unwrap();
        let names: Vec<_> = store
            .list_refs()
            .unwrap()
            .into_iter()
            .map(|e| (e.name.to_string(), e.digest))
            .collect();
        assert_eq!(
            names,
            vec![
                ("docker.io/library/busybox:latest".to_owned(), m2),
                ("ghcr.io/o/app:1".to_owned(), m),
            ]
        );
        assert!(store.delete_ref(&r("busybox")).unwrap());
        assert!(!store.delete_ref(&r("busybox")).unwrap());
        assert!(matches!(
            store.require_ref(&r("busybox")),
            Err(StoreError::RefNotFound { .. })
        ));
    }

    #[test]
    fn origins_are_kept_and_old_refs_have_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let r = |s: &str| ImageRef::parse(s).unwrap();
        let m = store.put_bytes(b"{}").unwrap();
        store
            .set_ref_with_origin(&r("app:1"), &m, Some(&r("localhost:5000/app:1")))
            .unwrap();
        let entry = store.ref_entry(&r("app:1")).unwrap().unwrap();
        assert_eq!(entry.origin, Some(r("localhost:5000/app:1")));
        store.set_ref(&r("app:1"), &m).unwrap();
        assert_eq!(store.ref_entry(&r("app:1")).unwrap().unwrap().origin, None);
        let old = format!(r#"{{"name":"docker.io/library/old:1","digest":"{m}"}}"#);
        fs_err::write(store.ref_path(&r("old:1")), old).unwrap();
        let entry = store.ref_entry(&r("old:1")).unwrap().unwrap();
        assert_eq!((entry.digest, entry.origin), (m, None));
        assert_eq!(store.ref_entry(&r("absent")).unwrap(), None);
    }

    #[test]
    fn a_ref_needs_its_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(
            store
                .set_ref(
                    &ImageRef::parse("x").unwrap(),
                    &Digest::sha256_of(b"absent")
                )
                .is_err()
        );
    }

    #[test]
    fn long_names_are_hashed() {
        let long = format!("docker.io/{}/x:latest", "a".repeat(250));
        let encoded = encode_ref_name(&long);
        assert!(
            encoded.starts_with("sha256-") && encoded.len() < 80,
            "{encoded}"
        );
    }
}
