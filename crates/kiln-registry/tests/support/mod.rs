//! A directory of blobs laid out as an OCI image layout (`blobs/sha256/<hex>`, `index.json`,
//! `oci-layout`): a verifying [`BlobSink`] and a [`BlobSource`] for the tests, readable by
//! skopeo as `oci:DIR:TAG`. Also builds test images with random, incompressible layers.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use fs_err::File;
use kiln_oci::{BlobError, BlobIngest, BlobSink, BlobSource, Digest, Sha256Hasher};

/// Blobs in a directory.
pub(crate) struct DirStore {
    root: PathBuf,
}

impl DirStore {
    pub(crate) fn new(root: &Path) -> Self {
        fs_err::create_dir_all(root.join("blobs/sha256")).expect("creating blob dir");
        fs_err::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("oci-layout");
        if !root.join("index.json").exists() {
            fs_err::write(
                root.join("index.json"),
                r#"{"schemaVersion":2,"manifests":[]}"#,
            )
            .expect("index.json");
        }
        Self {
            root: root.to_owned(),
        }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    pub(crate) fn put(&self, bytes: &[u8]) -> Digest {
        let digest = Digest::sha256_of(bytes);
        fs_err::write(self.path(&digest), bytes).expect("writing blob");
        digest
    }

    pub(crate) fn read(&self, digest: &Digest) -> Vec<u8> {
        fs_err::read(self.path(digest)).expect("reading blob")
    }

    /// Names of every blob and leftover temp file (to prove nothing corrupt was kept).
    pub(crate) fn files(&self) -> Vec<String> {
        let mut out: Vec<String> = fs_err::read_dir(self.root.join("blobs/sha256"))
            .expect("listing blobs")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out
    }

    /// Adds `digest` to `index.json` under `tag` (so skopeo can read `oci:DIR:tag`).
    pub(crate) fn tag(&self, tag: &str, media_type: &str, digest: &Digest) {
        let size = fs_err::metadata(self.path(digest)).expect("blob").len();
        let path = self.root.join("index.json");
        let mut index: serde_json::Value =
            serde_json::from_slice(&fs_err::read(&path).expect("index")).expect("json");
        index["manifests"]
            .as_array_mut()
            .expect("manifests")
            .push(serde_json::json!({
                "mediaType": media_type, "digest": digest.to_string(), "size": size,
                "annotations": {"org.opencontainers.image.ref.name": tag}
            }));
        fs_err::write(&path, serde_json::to_vec(&index).expect("json")).expect("index");
    }
}

impl BlobSink for DirStore {
    fn has_blob(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    fn begin_ingest(
        &self,
        expected: &Digest,
        size: Option<u64>,
    ) -> Result<Box<dyn BlobIngest>, BlobError> {
        let temp =
            self.root
                .join("blobs/sha256")
                .join(format!(".tmp-{}-{}", expected.hex(), rand_u64()));
        let file = fs_err::File::create(&temp).map_err(BlobError::Fs)?;
        Ok(Box::new(DirIngest {
            file,
            temp,
            target: self.path(expected),
            expected: expected.clone(),
            size,
            hasher: Sha256Hasher::new(),
            is_done: false,
        }))
    }
}

impl BlobSource for DirStore {
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, BlobError> {
        fs_err::File::open(self.path(digest))
            .map(|f| Box::new(f) as Box<dyn Read + Send>)
            .map_err(|_| BlobError::NotFound {
                digest: digest.clone(),
            })
    }

    fn blob_len(&self, digest: &Digest) -> Result<u64, BlobError> {
        fs_err::metadata(self.path(digest))
            .map(|m| m.len())
            .map_err(|_| BlobError::NotFound {
                digest: digest.clone(),
            })
    }
}

struct DirIngest {
    file: File,
    temp: PathBuf,
    target: PathBuf,
    expected: Digest,
    size: Option<u64>,
    hasher: Sha256Hasher,
    is_done: bool,
}

impl Write for DirIngest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BlobIngest for DirIngest {
    fn written(&self) -> u64 {
        self.hasher.len()
    }

    fn commit(mut self: Box<Self>) -> Result<(), BlobError> {
        let written = self.hasher.len();
        let actual = std::mem::take(&mut self.hasher).finish();
        if actual != self.expected {
            return Err(BlobError::DigestMismatch {
                expected: self.expected.clone(),
                actual,
            });
        }
        if let Some(size) = self.size
            && size != written
        {
            return Err(BlobError::SizeMismatch {
                digest: self.expected.clone(),
                expected: size,
                actual: written,
            });
        }
        fs_err::rename(&self.temp, &self.target).map_err(BlobError::Fs)?;
        self.is_done = true;
        Ok(())
    }
}

impl Drop for DirIngest {
    fn drop(&mut self) {
        if !self.is_done {
            let _ = fs_err::remove_file(&self.temp);
        }
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher as _, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// Incompressible bytes from a seed (xorshift64*).
pub(crate) fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A test image written into a [`DirStore`].
pub(crate) struct TestImage {
    pub(crate) manifest: Digest,
    pub(crate) manifest_bytes: Vec<u8>,
    pub(crate) config: Digest,
    pub(crate) layers: Vec<Digest>,
    /// Path → content of every file in the image.
    pub(crate) files: BTreeMap<String, Vec<u8>>,
}

/// Writes an OCI image with one gzip layer per `(path, content)` into `store`.
pub(crate) fn build_image(store: &DirStore, files: &[(&str, Vec<u8>)], arch: &str) -> TestImage {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    let mut layer_descriptors = Vec::new();
    for (path, content) in files {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, path, content.as_slice())
            .expect("tar entry");
        let tar_bytes = tar.into_inner().expect("tar");
        diff_ids.push(Digest::sha256_of(&tar_bytes).to_string());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar_bytes).expect("gzip");
        let blob = gz.finish().expect("gzip");
        let digest = store.put(&blob);
        layer_descriptors.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest.to_string(), "size": blob.len()
        }));
        layers.push(digest);
    }
    let config = serde_json::json!({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": files.iter().map(|(p, _)| serde_json::json!({"created_by": format!("add {p}")})).collect::<Vec<_>>()
    });
    let config_bytes = serde_json::to_vec(&config).expect("config");
    let config_digest = store.put(&config_bytes);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config_bytes.len()},
        "layers": layer_descriptors
    });
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).expect("manifest");
    let manifest_digest = store.put(&manifest_bytes);
    TestImage {
        manifest: manifest_digest,
        manifest_bytes,
        config: config_digest,
        layers,
        files: files
            .iter()
            .map(|(p, c)| ((*p).to_owned(), c.clone()))
            .collect(),
    }
}

/// Writes an OCI index over `images` (each `(digest, size, arch)`) and returns its digest.
pub(crate) fn build_index(store: &DirStore, images: &[(&TestImage, &str)]) -> (Digest, Vec<u8>) {
    let manifests: Vec<_> = images
        .iter()
        .map(|(image, arch)| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": image.manifest.to_string(), "size": image.manifest_bytes.len(),
                "platform": {"architecture": arch, "os": "linux"}
            })
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests
    });
    let bytes = serde_json::to_vec(&index).expect("index");
    (store.put(&bytes), bytes)
}
