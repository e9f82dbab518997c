//! Verified blob ingest and reads.
//!
//! A write lands in a temp file under `tmp/`, is hashed while it is written, verified against
//! the expected digest and size, fsynced, renamed into `blobs/sha256/<hex>` and the directory
//! fsynced. Readers never see a partial blob; two writers of the same blob both rename a
//! complete, identical file, so the result is one good blob.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use kiln_oci::{BlobError, BlobIngest, BlobSink, BlobSource, Digest, Sha256Hasher};

use crate::Store;
use crate::error::{IoContext as _, StoreError};
use crate::layout::{create_temp, rename_durable};

/// An in-progress write of one blob. Dropping it without [`BlobWriter::commit`] (or
/// [`BlobWriter::commit_unverified`]) removes the temp file.
#[derive(Debug)]
pub struct BlobWriter {
    store: Store,
    file: Option<File>,
    temp: PathBuf,
    hasher: Sha256Hasher,
    expected: Option<Digest>,
    size: Option<u64>,
}

impl Store {
    /// Starts writing a blob that must hash to `expected` (and have `size` bytes, when given).
    pub fn begin_blob(
        &self,
        expected: Option<&Digest>,
        size: Option<u64>,
    ) -> Result<BlobWriter, StoreError> {
        let (file, temp) = create_temp(&self.tmp_dir(), "ingest")?;
        Ok(BlobWriter {
            store: self.clone(),
            file: Some(file),
            temp,
            hasher: Sha256Hasher::new(),
            expected: expected.cloned(),
            size,
        })
    }

    /// Stores `bytes` (a manifest, a config) and returns their digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let digest = Digest::sha256_of(bytes);
        if self.has_blob(&digest) {
            return Ok(digest);
        }
        let mut writer = self.begin_blob(Some(&digest), Some(bytes.len() as u64))?;
        writer
            .write_all(bytes)
            .at("writing blob", writer.temp.clone())?;
        writer.commit()
    }

    /// Copies a stream into the store, verifying it against `expected` when given.
    pub fn put_reader(
        &self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
    ) -> Result<Digest, StoreError> {
        let mut writer = self.begin_blob(expected, None)?;
        io::copy(reader, &mut writer).at("writing blob", writer.temp.clone())?;
        writer.commit()
    }

    /// Whether the blob is present (committed blobs are complete by construction).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Opens a committed blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        let path = self.blob_path(digest);
        fs_err::File::open(&path)
            .map(fs_err::File::into_file)
            .map_err(|err| {
                if err.kind() == io::ErrorKind::NotFound {
                    StoreError::Blob(BlobError::NotFound {
                        digest: digest.clone(),
                    })
                } else {
                    StoreError::Fs(err)
                }
            })
    }

    /// Reads a whole (small) blob, re-checking its digest: for manifests, configs and indexes.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let mut bytes = Vec::new();
        self.open_blob(digest)?
            .read_to_end(&mut bytes)
            .at("reading blob", self.blob_path(digest))?;
        let actual = Digest::sha256_of(&bytes);
        if &actual != digest {
            return Err(StoreError::Blob(BlobError::DigestMismatch {
                expected: digest.clone(),
                actual,
            }));
        }
        Ok(bytes)
    }

    /// The length of a committed blob.
    pub fn blob_len(&self, digest: &Digest) -> Result<u64, StoreError> {
        let path = self.blob_path(digest);
        match fs_err::metadata(&path) {
            Ok(meta) => Ok(meta.len()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::Blob(BlobError::NotFound {
                    digest: digest.clone(),
                }))
            }
            Err(err) => Err(StoreError::Fs(err)),
        }
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.hasher.len()
    }

    /// The temp file being written (for diagnostics).
    pub fn temp_path(&self) -> &std::path::Path {
        &self.temp
    }

    /// Verifies digest and size against what was announced, makes the blob durable and
    /// visible, and returns its digest. Without an announced digest, the computed one is used.
    pub fn commit(mut self) -> Result<Digest, StoreError> {
        let file = self.file.take().ok_or_else(|| {
            StoreError::io(
                "committing",
                &self.temp,
                io::Error::other("already committed"),
            )
        })?;
        let hasher = std::mem::take(&mut self.hasher);
        let actual_len = hasher.len();
        let actual = hasher.finish();
        if let Some(expected) = &self.expected
            && expected != &actual
        {
            drop(file);
            let _ = fs_err::remove_file(&self.temp);
            return Err(StoreError::Blob(BlobError::DigestMismatch {
                expected: expected.clone(),
                actual,
            }));
        }
        if let Some(size) = self.size
            && size != actual_len
        {
            drop(file);
            let _ = fs_err::remove_file(&self.temp);
            return Err(StoreError::Blob(BlobError::SizeMismatch {
                digest: actual,
                expected: size,
                actual: actual_len,
            }));
        }
        let dest = self.store.blob_path(&actual);
        if dest.is_file() {
            // Someone else committed the same content first: theirs is complete and identical.
            drop(file);
            let _ = fs_err::remove_file(&self.temp);
            return Ok(actual);
        }
        if let Err(err) = file.sync_all() {
            drop(file);
            let _ = fs_err::remove_file(&self.temp);
            return Err(StoreError::io("syncing blob", &self.temp, err));
        }
        drop(file);
        rename_durable(&self.temp, &dest)?;
        Ok(actual)
    }

    /// Commits without an expected digest (a layer whose digest is known only at the end).
    /// Same as [`BlobWriter::commit`] when nothing was announced.
    pub fn commit_unverified(mut self) -> Result<Digest, StoreError> {
        self.expected = None;
        self.size = None;
        self.commit()
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer already committed"))?;
        let n = file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs_err::remove_file(&self.temp);
        }
    }
}

impl BlobIngest for BlobWriter {
    fn written(&self) -> u64 {
        self.hasher.len()
    }

    fn commit(self: Box<Self>) -> Result<(), BlobError> {
        BlobWriter::commit(*self)
            .map(|_| ())
            .map_err(into_blob_error)
    }
}

fn into_blob_error(err: StoreError) -> BlobError {
    match err {
        StoreError::Blob(err) => err,
        StoreError::Io {
            action,
            path,
            source,
        } => BlobError::Io {
            action,
            path,
            source,
        },
        other => BlobError::Io {
            action: "storing blob",
            path: PathBuf::new(),
            source: io::Error::other(other.to_string()),
        },
    }
}

impl BlobSink for Store {
    fn has_blob(&self, digest: &Digest) -> bool {
        Store::has_blob(self, digest)
    }

    fn begin_ingest(
        &self,
        expected: &Digest,
        size: Option<u64>,
    ) -> Result<Box<dyn BlobIngest>, BlobError> {
        self.begin_blob(Some(expected), size)
            .map(|w| Box::new(w) as Box<dyn BlobIngest>)
            .map_err(into_blob_error)
    }
}

impl BlobSource for Store {
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, BlobError> {
        Store::open_blob(self, digest)
            .map(|f| Box::new(f) as Box<dyn Read + Send>)
            .map_err(into_blob_error)
    }

    fn blob_len(&self, digest: &Digest) -> Result<u64, BlobError> {
        Store::blob_len(self, digest).map_err(into_blob_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn tmp_is_empty(store: &Store) -> bool {
        fs_err::read_dir(store.root().join("tmp"))
            .unwrap()
            .filter_map(Result::ok)
            .all(|e| e.file_type().unwrap().is_dir())
    }

    #[test]
    fn put_bytes_stores_content_under_its_digest() {
        let (_d, store) = store();
        let digest = store.put_bytes(b"hello").unwrap();
        assert_eq!(digest, Digest::sha256_of(b"hello"));
        assert!(store.has_blob(&digest));
        assert_eq!(store.read_blob(&digest).unwrap(), b"hello");
        assert_eq!(store.blob_len(&digest).unwrap(), 5);
        assert_eq!(store.put_bytes(b"hello").unwrap(), digest);
        assert!(tmp_is_empty(&store));
    }

    #[test]
    fn a_wrong_digest_or_size_stores_nothing() {
        let (_d, store) = store();
        let wrong = Digest::sha256_of(b"other");
        let mut w = store.begin_blob(Some(&wrong), None).unwrap();
        w.write_all(b"hello").unwrap();
        let err = w.commit().unwrap_err();
        assert!(
            matches!(err, StoreError::Blob(BlobError::DigestMismatch { .. })),
            "{err}"
        );
        assert!(!store.has_blob(&wrong));
        assert!(!store.has_blob(&Digest::sha256_of(b"hello")));

        let right = Digest::sha256_of(b"hello");
        let mut w = store.begin_blob(Some(&right), Some(4)).unwrap();
        w.write_all(b"hello").unwrap();
        assert!(matches!(
            w.commit(),
            Err(StoreError::Blob(BlobError::SizeMismatch { .. }))
        ));
        assert!(!store.has_blob(&right));
        assert!(tmp_is_empty(&store));
    }

    #[test]
    fn dropping_an_ingest_leaves_no_trace() {
        let (_d, store) = store();
        let digest = Digest::sha256_of(b"partial");
        {
            let mut ingest = BlobSink::begin_ingest(&store, &digest, None).unwrap();
            ingest.write_all(b"part").unwrap();
            assert_eq!(ingest.written(), 4);
        }
        assert!(!store.has_blob(&digest));
        assert!(tmp_is_empty(&store));
    }

    #[test]
    fn trait_ingest_and_source_round_trip() {
        let (_d, store) = store();
        let digest = Digest::sha256_of(b"layer bytes");
        let mut ingest = BlobSink::begin_ingest(&store, &digest, Some(11)).unwrap();
        ingest.write_all(b"layer bytes").unwrap();
        ingest.commit().unwrap();
        let mut out = String::new();
        BlobSource::open_blob(&store, &digest)
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "layer bytes");
        assert_eq!(BlobSource::blob_len(&store, &digest).unwrap(), 11);
        let missing = Digest::sha256_of(b"nope");
        assert!(matches!(
            BlobSource::open_blob(&store, &missing),
            Err(BlobError::NotFound { .. })
        ));
    }

    #[test]
    fn concurrent_writers_of_one_blob_end_with_one_good_blob() {
        let (_d, store) = store();
        let content: Vec<u8> = (0..200_000u32).flat_map(u32::to_le_bytes).collect();
        let digest = Digest::sha256_of(&content);
        std::thread::scope(|s| {
            for _ in 0..4 {
                let store = store.clone();
                let content = &content;
                let digest = &digest;
                s.spawn(move || {
                    let mut w = store.begin_blob(Some(digest), None).unwrap();
                    for chunk in content.chunks(4096) {
                        w.write_all(chunk).unwrap();
                    }
                    w.commit().unwrap();
                });
            }
        });
        assert_eq!(store.read_blob(&digest).unwrap(), content);
        assert!(tmp_is_empty(&store));
    }
}
