//! Writing images out of a [`BlobSource`]: an OCI layout directory, an OCI layout tar
//! (`--output type=oci`) and a docker-archive tar (`--output type=docker`, the layout
//! `docker save` of Docker 25+ writes: an OCI layout plus `manifest.json` and
//! `repositories`).
//!
//! Nothing half-written is ever visible: directories are assembled in a temporary sibling
//! and renamed into place, tars are written to a temporary file in the destination's
//! directory and renamed. Blobs are streamed from the source (never whole in memory) and
//! verified against their descriptors while copying. Tar entries are sorted and carry a
//! fixed mtime, uid/gid 0, so the same images give the same bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::layout::{
    IMAGE_LAYOUT_VERSION, INDEX_JSON_FILE, LayoutError, OCI_LAYOUT_FILE, blob_path, io_error,
    read_json_blob, resolve_image,
};
use crate::{
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, BlobError, BlobSource, Descriptor, ImageIndex,
    ImageManifest, Platform, Sha256Hasher, to_canonical_json,
};

/// Read size when streaming blobs (few syscalls, still a small fixed footprint).
const COPY_BUFFER: usize = 1 << 20;

/// docker-archive's list of images.
pub const DOCKER_MANIFEST_FILE: &str = "manifest.json";
/// docker-archive's legacy `repositories` file.
pub const DOCKER_REPOSITORIES_FILE: &str = "repositories";

/// One image (or index) to export, with the names to record for it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportImage {
    /// The manifest or index descriptor; its blobs must all be in the source.
    pub descriptor: Descriptor,
    /// Image names (`app:1.0` or `docker.io/library/app:1.0`). In an OCI `index.json` each
    /// becomes an entry with `io.containerd.image.name` (normalized, see
    /// [`normalize_image_name`]) and `org.opencontainers.image.ref.name` (the tag); in a
    /// docker-archive they are also the `RepoTags`, as given (`docker save` writes the
    /// familiar form, `app:1.0`).
    pub names: Vec<String>,
}

impl ExportImage {
    /// An image exported without a name.
    pub fn new(descriptor: Descriptor) -> Self {
        Self {
            descriptor,
            names: Vec::new(),
        }
    }

    /// An image exported under `name`.
    #[must_use]
    pub fn named(mut self, name: &str) -> Self {
        self.names.push(name.to_owned());
        self
    }
}

/// Options of the tar writers.
#[derive(Debug, Clone, Default)]
pub struct ArchiveOptions {
    /// mtime of every tar entry, in seconds since the epoch (`SOURCE_DATE_EPOCH`, or 0).
    pub mtime: u64,
    /// For docker-archives: the platform chosen when an exported descriptor is an index
    /// (the host's when `None`).
    pub platform: Option<Platform>,
}

/// The tag part of a name, as containerd writes `org.opencontainers.image.ref.name`
/// (`docker.io/library/app:1.0` → `1.0`); an untagged name is used whole.
pub fn ref_name_of(name: &str) -> &str {
    let without_digest = name.split('@').next().unwrap_or(name);
    let last = without_digest.rfind('/').map_or(0, |i| i + 1);
    match without_digest[last..].split_once(':') {
        Some((_, tag)) if !tag.is_empty() => tag,
        _ => name,
    }
}

fn index_entries(images: &[ExportImage]) -> Vec<Descriptor> {
    let mut entries = Vec::new();
    for image in images {
        if image.names.is_empty() {
            entries.push(image.descriptor.clone());
        }
        for name in &image.names {
            let full = normalize_image_name(name);
            entries.push(
                image
                    .descriptor
                    .clone()
                    .with_annotation(ANNOTATION_REF_NAME, ref_name_of(&full))
                    .with_annotation(ANNOTATION_IMAGE_NAME, &full),
            );
        }
    }
    entries
}

/// The fully qualified form containerd and BuildKit record in `io.containerd.image.name`
/// (`app:1` → `docker.io/library/app:1`, `ghcr.io/o/app` → `ghcr.io/o/app:latest`), as
/// Docker's `ParseNormalizedNamed` + `TagNameOnly` give. Names that already carry a
/// registry, a tag or a digest keep them.
pub fn normalize_image_name(name: &str) -> String {
    const DOCKER_HUB: &str = "docker.io";
    let (repo_and_tag, digest) = match name.split_once('@') {
        Some((before, digest)) => (before, Some(digest)),
        None => (name, None),
    };
    let has_domain = repo_and_tag.split_once('/').is_some_and(|(first, _)| {
        first.contains('.')
            || first.contains(':')
            || first == "localhost"
            || first.chars().any(|c| c.is_ascii_uppercase())
    });
    let mut full = if has_domain {
        repo_and_tag.to_owned()
    } else if repo_and_tag.contains('/') {
        format!("{DOCKER_HUB}/{repo_and_tag}")
    } else {
        format!("{DOCKER_HUB}/library/{repo_and_tag}")
    };
    let last = full.rfind('/').map_or(0, |i| i + 1);
    if digest.is_none() && !full[last..].contains(':') {
        full.push_str(":latest");
    }
    if let Some(digest) = digest {
        full.push('@');
        full.push_str(digest);
    }
    full
}

fn layout_header() -> Vec<u8> {
    format!(r#"{{"imageLayoutVersion":"{IMAGE_LAYOUT_VERSION}"}}"#).into_bytes()
}

/// Every blob reachable from `roots` (indexes, manifests, their configs and layers), each
/// once, sorted by digest. Missing non-distributable layers (those with `urls`) are skipped,
/// as registries and `docker save` do.
pub fn collect_blobs(
    source: &dyn BlobSource,
    roots: &[Descriptor],
) -> Result<Vec<Descriptor>, LayoutError> {
    let mut seen = BTreeMap::new();
    let mut stack: Vec<Descriptor> = roots.to_vec();
    while let Some(descriptor) = stack.pop() {
        if seen.contains_key(&descriptor.digest) {
            continue;
        }
        if descriptor.media_type.is_index() {
            let index = read_json_blob::<ImageIndex>(source, &descriptor)?;
            stack.extend(index.value().manifests.iter().cloned());
        } else if descriptor.media_type.is_manifest() {
            let manifest = read_json_blob::<ImageManifest>(source, &descriptor)?;
            stack.push(manifest.value().config.clone());
            stack.extend(manifest.value().layers.iter().cloned());
        } else if (descriptor.media_type.is_nondistributable() || !descriptor.urls.is_empty())
            && matches!(
                source.blob_len(&descriptor.digest),
                Err(BlobError::NotFound { .. })
            )
        {
            continue;
        }
        seen.insert(descriptor.digest.clone(), descriptor);
    }
    Ok(seen.into_values().collect())
}

/// Copies the blob of `descriptor` from `source` to `out`, verifying size and digest.
/// Returns an error (and has written at most `descriptor.size` bytes) on a mismatch.
fn copy_verified(
    source: &dyn BlobSource,
    descriptor: &Descriptor,
    out: &mut dyn Write,
) -> Result<(), LayoutError> {
    let mut reader = VerifyingReader::new(source.open_blob(&descriptor.digest)?, descriptor);
    let result = io::copy(&mut BufReader::with_capacity(COPY_BUFFER, &mut reader), out);
    match result {
        Ok(_) => Ok(()),
        Err(source) => Err(reader.failure.take().map_or_else(
            || {
                LayoutError::Blob(BlobError::Io {
                    action: "copying blob",
                    path: PathBuf::from(descriptor.digest.to_string()),
                    source,
                })
            },
            LayoutError::Blob,
        )),
    }
}

/// Passes exactly `size` bytes through, then fails the read that would end the stream if
/// the content was short, long, or hashed to another digest.
struct VerifyingReader<'d> {
    inner: Box<dyn Read + Send>,
    descriptor: &'d Descriptor,
    remaining: u64,
    hasher: Option<Sha256Hasher>,
    failure: Option<BlobError>,
}

impl<'d> VerifyingReader<'d> {
    fn new(inner: Box<dyn Read + Send>, descriptor: &'d Descriptor) -> Self {
        Self {
            inner,
            descriptor,
            remaining: descriptor.size,
            hasher: Some(Sha256Hasher::new()),
            failure: None,
        }
    }

    fn fail(&mut self, error: BlobError) -> io::Error {
        let io_error = io::Error::new(io::ErrorKind::InvalidData, error.to_string());
        self.failure = Some(error);
        io_error
    }

    fn finish(&mut self) -> io::Result<usize> {
        let Some(hasher) = self.hasher.take() else {
            return Ok(0);
        };
        let mut probe = [0_u8; 1];
        let extra = self.inner.read(&mut probe)?;
        if extra > 0 {
            let digest = self.descriptor.digest.clone();
            return Err(self.fail(BlobError::SizeMismatch {
                digest,
                expected: self.descriptor.size,
                actual: self.descriptor.size + 1,
            }));
        }
        let actual = hasher.finish();
        if actual != self.descriptor.digest {
            let expected = self.descriptor.digest.clone();
            return Err(self.fail(BlobError::DigestMismatch { expected, actual }));
        }
        Ok(0)
    }
}

impl Read for VerifyingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return self.finish();
        }
        let want = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            let digest = self.descriptor.digest.clone();
            let actual = self.descriptor.size - self.remaining;
            return Err(self.fail(BlobError::SizeMismatch {
                digest,
                expected: self.descriptor.size,
                actual,
            }));
        }
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..n]);
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn json_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>, LayoutError> {
    Ok(to_canonical_json(value)?)
}

fn parent_dir(dest: &Path) -> &Path {
    match dest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// The directory that will hold `dest` ([`parent_dir`]), created when missing: the staging
/// file or directory goes there, so the final rename stays on one filesystem.
fn created_parent(dest: &Path) -> Result<&Path, LayoutError> {
    let parent = parent_dir(dest);
    fs_err::create_dir_all(parent)?;
    Ok(parent)
}

/// What is at `dest` now (not following a symbolic link), `None` when nothing is.
fn existing_metadata(dest: &Path) -> Result<Option<fs::Metadata>, LayoutError> {
    match fs_err::symlink_metadata(dest) {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn sync_dir(path: &Path) -> Result<(), LayoutError> {
    Ok(fs_err::File::open(path)?.sync_all()?)
}

/// Writes an OCI image layout directory at `dest` holding `images` (blobs from `source`).
/// `dest` must not exist, be an empty directory, or be an OCI layout (which is replaced
/// whole, atomically). Returns the entries written to `index.json`.
pub fn write_oci_layout_dir(
    dest: &Path,
    source: &dyn BlobSource,
    images: &[ExportImage],
) -> Result<Vec<Descriptor>, LayoutError> {
    let replace_existing = match existing_metadata(dest)? {
        Some(meta) if meta.is_dir() => {
            let is_empty = fs_err::read_dir(dest)?.next().is_none();
            if !is_empty && !dest.join(OCI_LAYOUT_FILE).is_file() {
                return Err(LayoutError::DestinationExists {
                    path: dest.to_owned(),
                    reason: "it is a non-empty directory that is not an OCI layout",
                });
            }
            !is_empty
        }
        Some(meta) => {
            return Err(LayoutError::DestinationExists {
                path: dest.to_owned(),
                reason: if meta.file_type().is_symlink() {
                    "it is a symbolic link (not followed or replaced; name the real path)"
                } else {
                    "it is not a directory"
                },
            });
        }
        None => false,
    };
    let parent = created_parent(dest)?;
    let staging = tempfile::Builder::new()
        .prefix(".kiln-layout-")
        .tempdir_in(parent)
        .map_err(io_error("creating a temporary directory in", parent))?;
    let root = staging.path();

    let entries = index_entries(images);
    let roots: Vec<Descriptor> = images.iter().map(|i| i.descriptor.clone()).collect();
    let blobs = collect_blobs(source, &roots)?;
    let mut blob_dirs = BTreeSet::new();
    for descriptor in &blobs {
        let path = root.join(blob_path(&descriptor.digest));
        let dir = parent_dir(&path).to_owned();
        if blob_dirs.insert(dir.clone()) {
            fs_err::create_dir_all(&dir)?;
        }
        let file = fs_err::File::create(&path)?;
        let mut writer = BufWriter::new(file);
        copy_verified(source, descriptor, &mut writer)?;
        let file = writer
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
    }
    if blob_dirs.is_empty() {
        let dir = root.join("blobs").join("sha256");
        fs_err::create_dir_all(&dir)?;
    }
    let index = ImageIndex::new(entries.clone());
    write_synced(&root.join(INDEX_JSON_FILE), &json_bytes(&index)?)?;
    write_synced(&root.join(OCI_LAYOUT_FILE), &layout_header())?;
    for dir in &blob_dirs {
        sync_dir(dir)?;
    }
    sync_dir(&root.join("blobs"))?;
    sync_dir(root)?;

    if replace_existing {
        let old = tempfile::Builder::new()
            .prefix(".kiln-layout-old-")
            .tempdir_in(parent)
            .map_err(io_error("creating a temporary directory in", parent))?;
        // rename(2) replaces the empty placeholder directory with the old layout.
        fs_err::rename(dest, old.path())?;
        if let Err(e) = fs_err::rename(root, dest) {
            // Put the old layout back; the new one is dropped with `staging`.
            let _ = fs_err::rename(old.path(), dest);
            return Err(e.into());
        }
        let _ = staging.keep();
        drop(old);
    } else {
        fs_err::rename(root, dest)?;
        let _ = staging.keep();
    }
    sync_dir(parent)?;
    Ok(entries)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), LayoutError> {
    let mut file = fs_err::File::create(path)?;
    file.write_all(bytes)?;
    Ok(file.sync_all()?)
}

/// A tar writer with the fixed entry metadata kiln's archives use.
struct ArchiveTar<W: Write> {
    builder: tar::Builder<W>,
    mtime: u64,
}

impl<W: Write> ArchiveTar<W> {
    fn new(out: W, mtime: u64) -> Self {
        Self {
            builder: tar::Builder::new(out),
            mtime,
        }
    }

    fn header(
        &self,
        path: &str,
        kind: tar::EntryType,
        mode: u32,
        size: u64,
    ) -> Result<tar::Header, LayoutError> {
        let mut header = tar::Header::new_ustar();
        header
            .set_path(path)
            .map_err(|e| io_error("naming tar entry", Path::new(path))(e))?;
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_mtime(self.mtime);
        header.set_uid(0);
        header.set_gid(0);
        header.set_cksum();
        Ok(header)
    }

    fn dir(&mut self, path: &str) -> Result<(), LayoutError> {
        let header = self.header(path, tar::EntryType::Directory, 0o755, 0)?;
        self.builder
            .append(&header, io::empty())
            .map_err(io_error("writing tar entry", Path::new(path)))
    }

    fn file(&mut self, path: &str, bytes: &[u8]) -> Result<(), LayoutError> {
        let header = self.header(path, tar::EntryType::Regular, 0o644, bytes.len() as u64)?;
        self.builder
            .append(&header, bytes)
            .map_err(io_error("writing tar entry", Path::new(path)))
    }

    fn blob(
        &mut self,
        source: &dyn BlobSource,
        descriptor: &Descriptor,
    ) -> Result<(), LayoutError> {
        let path = blob_path(&descriptor.digest);
        let header = self.header(&path, tar::EntryType::Regular, 0o644, descriptor.size)?;
        let mut reader = VerifyingReader::new(source.open_blob(&descriptor.digest)?, descriptor);
        let result = self
            .builder
            .append(&header, BufReader::with_capacity(COPY_BUFFER, &mut reader));
        match result {
            Ok(()) => Ok(()),
            Err(e) => Err(reader.failure.take().map_or_else(
                || io_error("writing tar entry", Path::new(&path))(e),
                LayoutError::Blob,
            )),
        }
    }

    fn blobs(&mut self, source: &dyn BlobSource, blobs: &[Descriptor]) -> Result<(), LayoutError> {
        self.dir("blobs/")?;
        let algorithms: BTreeSet<&str> = blobs
            .iter()
            .map(|d| d.digest.algorithm().as_str())
            .collect();
        let algorithms = if algorithms.is_empty() {
            BTreeSet::from(["sha256"])
        } else {
            algorithms
        };
        for algorithm in algorithms {
            self.dir(&format!("blobs/{algorithm}/"))?;
            for descriptor in blobs
                .iter()
                .filter(|d| d.digest.algorithm().as_str() == algorithm)
            {
                self.blob(source, descriptor)?;
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<W, LayoutError> {
        self.builder
            .into_inner()
            .map_err(io_error("finishing tar", Path::new("archive")))
    }
}

/// Writes an OCI layout as a tar stream to `out` (entries: `blobs/…` sorted by digest,
/// `index.json`, `oci-layout`).
pub fn write_oci_archive_to<W: Write>(
    out: W,
    source: &dyn BlobSource,
    images: &[ExportImage],
    options: &ArchiveOptions,
) -> Result<W, LayoutError> {
    let roots: Vec<Descriptor> = images.iter().map(|i| i.descriptor.clone()).collect();
    let blobs = collect_blobs(source, &roots)?;
    let index = ImageIndex::new(index_entries(images));
    let mut tar = ArchiveTar::new(out, options.mtime);
    tar.blobs(source, &blobs)?;
    tar.file(INDEX_JSON_FILE, &json_bytes(&index)?)?;
    tar.file(OCI_LAYOUT_FILE, &layout_header())?;
    tar.finish()
}

/// One entry of docker-archive's `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DockerArchiveEntry {
    /// Path of the config blob inside the archive.
    #[serde(rename = "Config")]
    pub config: String,
    /// The image's names (`busybox:latest`); may be null or empty.
    #[serde(
        rename = "RepoTags",
        default,
        deserialize_with = "crate::canonical::null_as_default"
    )]
    pub repo_tags: Vec<String>,
    /// Paths of the layer blobs, base first.
    #[serde(
        rename = "Layers",
        default,
        deserialize_with = "crate::canonical::null_as_default"
    )]
    pub layers: Vec<String>,
    /// Fields kiln does not know (`LayerSources`, `Parent`), kept.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Writes a docker-archive tar stream to `out`: an OCI layout of the images' manifests
/// (indexes are resolved to `options.platform`), plus `manifest.json` and `repositories`,
/// as `docker save` of Docker 25+ writes. `docker load` and `skopeo … docker-archive:`
/// read it; compressed layers are fine for both.
pub fn write_docker_archive_to<W: Write>(
    out: W,
    source: &dyn BlobSource,
    images: &[ExportImage],
    options: &ArchiveOptions,
) -> Result<W, LayoutError> {
    let mut exported = Vec::new();
    let mut manifest_json = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for image in images {
        let resolved = resolve_image(source, &image.descriptor, options.platform.as_ref())?;
        let manifest = resolved.manifest.value();
        for layer in &manifest.layers {
            // docker load needs every layer in the archive: fail now, naming the digest.
            source.blob_len(&layer.digest)?;
        }
        if let Some(top) = manifest.layers.last() {
            for name in &image.names {
                if let Some((repo, tag)) = split_repo_tag(name) {
                    repositories
                        .entry(repo.to_owned())
                        .or_default()
                        .insert(tag.to_owned(), top.digest.hex().to_owned());
                }
            }
        }
        manifest_json.push(DockerArchiveEntry {
            config: blob_path(&manifest.config.digest),
            repo_tags: image.names.clone(),
            layers: manifest
                .layers
                .iter()
                .map(|l| blob_path(&l.digest))
                .collect(),
            extra: BTreeMap::new(),
        });
        let mut descriptor = resolved.descriptor.clone();
        descriptor.annotations.clear();
        exported.push(ExportImage {
            descriptor,
            names: image.names.clone(),
        });
    }
    let roots: Vec<Descriptor> = exported.iter().map(|i| i.descriptor.clone()).collect();
    let blobs = collect_blobs(source, &roots)?;
    let index = ImageIndex::new(index_entries(&exported));
    let mut tar = ArchiveTar::new(out, options.mtime);
    tar.blobs(source, &blobs)?;
    tar.file(INDEX_JSON_FILE, &json_bytes(&index)?)?;
    tar.file(DOCKER_MANIFEST_FILE, &json_bytes(&manifest_json)?)?;
    tar.file(OCI_LAYOUT_FILE, &layout_header())?;
    tar.file(DOCKER_REPOSITORIES_FILE, &json_bytes(&repositories)?)?;
    tar.finish()
}

/// `repo:tag` of a tagged name without digest (`docker.io/library/a:1` → (`docker.io/library/a`, `1`)).
fn split_repo_tag(name: &str) -> Option<(&str, &str)> {
    if name.contains('@') {
        return None;
    }
    let last = name.rfind('/').map_or(0, |i| i + 1);
    let colon = name[last..].rfind(':')? + last;
    Some((&name[..colon], &name[colon + 1..]))
}

/// Writes an OCI layout tar to the file `dest` (atomically: temp file in the same
/// directory, fsync, rename).
pub fn write_oci_archive(
    dest: &Path,
    source: &dyn BlobSource,
    images: &[ExportImage],
    options: &ArchiveOptions,
) -> Result<(), LayoutError> {
    write_file_atomically(dest, |out| {
        write_oci_archive_to(out, source, images, options)
    })
}

/// Writes a docker-archive tar to the file `dest` (atomically).
pub fn write_docker_archive(
    dest: &Path,
    source: &dyn BlobSource,
    images: &[ExportImage],
    options: &ArchiveOptions,
) -> Result<(), LayoutError> {
    write_file_atomically(dest, |out| {
        write_docker_archive_to(out, source, images, options)
    })
}

/// Why an existing `dest` that is not a regular file cannot take a tar output.
fn not_a_file_reason(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    let kind = meta.file_type();
    if kind.is_dir() {
        "it is a directory (a tar output needs a file path)"
    } else if kind.is_symlink() {
        "it is a symbolic link (not followed or replaced; name the real path)"
    } else if kind.is_char_device() || kind.is_block_device() {
        "it is a device node (only a regular file is replaced)"
    } else if kind.is_fifo() {
        "it is a FIFO (only a regular file is replaced)"
    } else {
        "it is not a regular file (only a regular file is replaced)"
    }
}

fn write_file_atomically(
    dest: &Path,
    write: impl FnOnce(BufWriter<File>) -> Result<BufWriter<File>, LayoutError>,
) -> Result<(), LayoutError> {
    // Only a regular file is replaced: renaming over a device (`/dev/full`), a FIFO or a
    // symbolic link would replace it, not write through it.
    match existing_metadata(dest)? {
        Some(meta) if meta.is_file() => {}
        Some(meta) => {
            return Err(LayoutError::DestinationExists {
                path: dest.to_owned(),
                reason: not_a_file_reason(&meta),
            });
        }
        None => {}
    }
    let parent = created_parent(dest)?;
    let temp = tempfile::Builder::new()
        .prefix(".kiln-archive-")
        .tempfile_in(parent)
        .map_err(io_error("creating a temporary file in", parent))?;
    let file = temp.reopen().map_err(io_error("opening", temp.path()))?;
    let writer = write(BufWriter::with_capacity(1 << 20, file))?;
    let file = writer
        .into_inner()
        .map_err(|e| io_error("writing", temp.path())(e.into_error()))?;
    file.sync_all().map_err(io_error("syncing", temp.path()))?;
    temp.persist(dest)
        .map_err(|e| io_error("renaming the archive to", dest)(e.error))?;
    sync_dir(parent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MediaType;

    #[test]
    fn names_are_normalized_like_docker() {
        assert_eq!(normalize_image_name("app"), "docker.io/library/app:latest");
        assert_eq!(normalize_image_name("app:1"), "docker.io/library/app:1");
        assert_eq!(normalize_image_name("me/app:1"), "docker.io/me/app:1");
        assert_eq!(
            normalize_image_name("ghcr.io/o/app"),
            "ghcr.io/o/app:latest"
        );
        assert_eq!(
            normalize_image_name("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
        assert_eq!(normalize_image_name("localhost/app:2"), "localhost/app:2");
        let digest = format!("{}", crate::Digest::sha256_of(b"x"));
        assert_eq!(
            normalize_image_name(&format!("app@{digest}")),
            format!("docker.io/library/app@{digest}")
        );
        assert_eq!(
            normalize_image_name("docker.io/library/app:1"),
            "docker.io/library/app:1"
        );
    }

    #[test]
    fn ref_names_are_tags() {
        assert_eq!(ref_name_of("docker.io/library/app:1.0"), "1.0");
        assert_eq!(ref_name_of("localhost:5000/app"), "localhost:5000/app");
        assert_eq!(ref_name_of("localhost:5000/app:v2"), "v2");
        assert_eq!(ref_name_of("app"), "app");
        assert_eq!(
            split_repo_tag("localhost:5000/app:v2"),
            Some(("localhost:5000/app", "v2"))
        );
        assert_eq!(split_repo_tag("localhost:5000/app"), None);
    }

    #[test]
    fn verifying_reader_rejects_short_long_and_wrong_content() {
        let good = Descriptor::of_bytes(MediaType::OciLayerTar, b"hello");
        let check = |content: &'static [u8]| {
            let mut reader = VerifyingReader::new(Box::new(content), &good);
            let mut out = Vec::new();
            let result = io::copy(&mut reader, &mut out);
            (result.is_ok(), reader.failure.take(), out.len())
        };
        assert!(check(b"hello").0);
        assert!(matches!(
            check(b"hell").1,
            Some(BlobError::SizeMismatch { actual: 4, .. })
        ));
        assert!(matches!(
            check(b"hello!").1,
            Some(BlobError::SizeMismatch { .. })
        ));
        let (ok, failure, written) = check(b"HELLO");
        assert!(!ok && matches!(failure, Some(BlobError::DigestMismatch { .. })));
        assert!(written <= 5);
    }
}
