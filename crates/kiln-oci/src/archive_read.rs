//! Reading image tars: an OCI layout tar ([`OciArchive`]) and a docker-archive
//! ([`DockerArchive`], both the Docker 25+ layout and the older `<id>/layer.tar` one).
//!
//! The tar is scanned once to find where each regular file's data starts; blobs are then
//! streamed straight from the file (no extraction, nothing whole in memory), so an archive
//! is itself a [`BlobSource`] for importing.

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::layout::{
    INDEX_JSON_FILE, LayoutError, MAX_JSON_BLOB_SIZE, OCI_LAYOUT_FILE, ResolvedImage, blob_path,
    check_layout_header, find_in_index, io_error, resolve_image,
};
use crate::layout_write::{DOCKER_MANIFEST_FILE, DockerArchiveEntry};
use crate::{
    BlobError, BlobSource, Descriptor, Digest, ImageConfiguration, ImageIndex, JsonBlob, Platform,
};

/// Symlinks followed when resolving a member path (legacy docker-archives link duplicate
/// layers).
const MAX_LINK_HOPS: usize = 8;

/// A tar file indexed by member path.
#[derive(Debug)]
pub struct TarArchive {
    path: PathBuf,
    /// Member path → (data offset, size) for regular files.
    files: BTreeMap<String, (u64, u64)>,
    /// Member path → link target (already made relative to the archive root).
    links: BTreeMap<String, String>,
}

impl TarArchive {
    /// Scans the tar at `path`.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, LayoutError> {
        let path = path.into();
        let file = fs_err::File::open(&path)?;
        let mut archive = tar::Archive::new(io::BufReader::new(file));
        let mut files = BTreeMap::new();
        let mut links = BTreeMap::new();
        let entries = archive
            .entries_with_seek()
            .map_err(io_error("reading tar", &path))?;
        for entry in entries {
            let entry = entry.map_err(io_error("reading tar entry in", &path))?;
            let name = entry
                .path()
                .map_err(io_error("reading tar entry name in", &path))?;
            let name = crate::clean_rel(&name.to_string_lossy());
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    files.insert(name, (entry.raw_file_position(), entry.size()));
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    if let Some(target) = entry
                        .link_name()
                        .map_err(io_error("reading link target in", &path))?
                    {
                        let target = target.to_string_lossy();
                        let resolved = if entry.header().entry_type() == tar::EntryType::Link
                            || target.starts_with('/')
                        {
                            crate::clean_rel(&target)
                        } else {
                            let dir = name.rsplit_once('/').map_or("", |(dir, _)| dir);
                            crate::clean_rel(&format!("{dir}/{target}"))
                        };
                        links.insert(name, resolved);
                    }
                }
                _ => {}
            }
        }
        Ok(Self { path, files, links })
    }

    /// The archive file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a regular file (or a link to one) named `member` exists.
    pub fn contains(&self, member: &str) -> bool {
        self.locate(member).is_some()
    }

    fn locate(&self, member: &str) -> Option<(u64, u64)> {
        let mut name = crate::clean_rel(member);
        for _ in 0..MAX_LINK_HOPS {
            if let Some(found) = self.files.get(&name) {
                return Some(*found);
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }

    /// Streams the member `member`.
    pub fn open_member(&self, member: &str) -> Result<Box<dyn Read + Send>, LayoutError> {
        let (offset, size) = self.locate(member).ok_or_else(|| LayoutError::Malformed {
            path: self.path.clone(),
            format: "image archive",
            reason: format!("it has no file `{member}`"),
        })?;
        Ok(self.open_at(offset, size)?)
    }

    /// Length of the member `member`, if present.
    pub fn member_len(&self, member: &str) -> Option<u64> {
        self.locate(member).map(|(_, size)| size)
    }

    /// Reads a small member (a JSON file) whole.
    pub fn read_member(&self, member: &str) -> Result<Vec<u8>, LayoutError> {
        let size = self.member_len(member).unwrap_or(0);
        if size > MAX_JSON_BLOB_SIZE {
            return Err(LayoutError::Malformed {
                path: self.path.clone(),
                format: "image archive",
                reason: format!("`{member}` is {size} bytes, larger than {MAX_JSON_BLOB_SIZE}"),
            });
        }
        let mut bytes = Vec::new();
        // fs_err::File: a read error names the archive
        self.open_member(member)?.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    fn open_at(&self, offset: u64, size: u64) -> io::Result<Box<dyn Read + Send>> {
        let mut file = fs_err::File::open(&self.path)?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(file.take(size)))
    }
}

impl BlobSource for TarArchive {
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, BlobError> {
        let (offset, size) =
            self.locate(&blob_path(digest))
                .ok_or_else(|| BlobError::NotFound {
                    digest: digest.clone(),
                })?;
        self.open_at(offset, size).map_err(BlobError::Fs)
    }

    fn blob_len(&self, digest: &Digest) -> Result<u64, BlobError> {
        self.member_len(&blob_path(digest))
            .ok_or_else(|| BlobError::NotFound {
                digest: digest.clone(),
            })
    }
}

/// An OCI layout tar (`oci-archive:`), opened for reading.
#[derive(Debug)]
pub struct OciArchive {
    tar: TarArchive,
    index: JsonBlob<ImageIndex>,
}

impl OciArchive {
    /// Scans the tar and reads its `oci-layout` and `index.json`.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, LayoutError> {
        let tar = TarArchive::open(path)?;
        let malformed = |reason: String| LayoutError::Malformed {
            path: tar.path.clone(),
            format: "OCI archive",
            reason,
        };
        if !tar.contains(OCI_LAYOUT_FILE) {
            return Err(malformed(format!("it has no `{OCI_LAYOUT_FILE}` file")));
        }
        check_layout_header(&tar.read_member(OCI_LAYOUT_FILE)?)
            .map_err(|e| malformed(e.to_string()))?;
        if !tar.contains(INDEX_JSON_FILE) {
            return Err(malformed(format!("it has no `{INDEX_JSON_FILE}` file")));
        }
        let index = JsonBlob::<ImageIndex>::parse(tar.read_member(INDEX_JSON_FILE)?)?;
        index.value().validate()?;
        Ok(Self { tar, index })
    }

    /// The top-level `index.json`.
    pub fn index(&self) -> &ImageIndex {
        self.index.value()
    }

    /// The entry named `name` (tag, full name or digest; `None`: the only entry).
    pub fn find(&self, name: Option<&str>) -> Result<&Descriptor, LayoutError> {
        find_in_index(self.index.value(), name, &self.tar.path)
    }

    /// The image named `name` for `platform`.
    pub fn resolve(
        &self,
        name: Option<&str>,
        platform: Option<&Platform>,
    ) -> Result<ResolvedImage, LayoutError> {
        let top = self.find(name)?.clone();
        resolve_image(&self.tar, &top, platform)
    }

    /// The archive as a blob source.
    pub fn blobs(&self) -> &TarArchive {
        &self.tar
    }
}

impl BlobSource for OciArchive {
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, BlobError> {
        self.tar.open_blob(digest)
    }

    fn blob_len(&self, digest: &Digest) -> Result<u64, BlobError> {
        self.tar.blob_len(digest)
    }
}

/// A docker-archive (`docker save` output), opened for reading.
#[derive(Debug)]
pub struct DockerArchive {
    tar: TarArchive,
    entries: Vec<DockerArchiveEntry>,
}

/// One image of a docker-archive: its config and its layer members.
#[derive(Debug, Clone)]
pub struct DockerArchiveImage {
    /// The `manifest.json` entry.
    pub entry: DockerArchiveEntry,
    /// The parsed config (original bytes kept).
    pub config: JsonBlob<ImageConfiguration>,
}

impl DockerArchive {
    /// Scans the tar and reads `manifest.json`.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, LayoutError> {
        let tar = TarArchive::open(path)?;
        if !tar.contains(DOCKER_MANIFEST_FILE) {
            return Err(LayoutError::Malformed {
                path: tar.path.clone(),
                format: "docker archive",
                reason: format!(
                    "it has no `{DOCKER_MANIFEST_FILE}` (pre-1.10 archives are not supported)"
                ),
            });
        }
        let bytes = tar.read_member(DOCKER_MANIFEST_FILE)?;
        let entries: Vec<DockerArchiveEntry> =
            serde_json::from_slice(&bytes).map_err(|e| LayoutError::Malformed {
                path: tar.path.clone(),
                format: "docker archive",
                reason: format!("invalid {DOCKER_MANIFEST_FILE}: {e}"),
            })?;
        Ok(Self { tar, entries })
    }

    /// The `manifest.json` entries.
    pub fn entries(&self) -> &[DockerArchiveEntry] {
        &self.entries
    }

    /// The image tagged `name` (a `RepoTags` entry), or the only image when `None`.
    pub fn image(&self, name: Option<&str>) -> Result<DockerArchiveImage, LayoutError> {
        let available = || {
            self.entries
                .iter()
                .flat_map(|e| e.repo_tags.clone())
                .collect::<Vec<_>>()
        };
        let entry = match name {
            None => match self.entries.as_slice() {
                [only] => only,
                many => {
                    return Err(LayoutError::AmbiguousImage {
                        location: self.tar.path.clone(),
                        count: many.len(),
                        available: available(),
                    });
                }
            },
            Some(name) => self
                .entries
                .iter()
                .find(|e| e.repo_tags.iter().any(|t| t == name))
                .ok_or_else(|| LayoutError::ImageNotFound {
                    name: name.to_owned(),
                    location: self.tar.path.clone(),
                    available: available(),
                })?,
        };
        let config = JsonBlob::<ImageConfiguration>::parse(self.tar.read_member(&entry.config)?)?;
        let diff_ids = config.value().rootfs.diff_ids.len();
        if diff_ids != entry.layers.len() {
            return Err(LayoutError::Malformed {
                path: self.tar.path.clone(),
                format: "docker archive",
                reason: format!(
                    "config {} lists {diff_ids} diff_ids but the manifest entry has {} layers",
                    entry.config,
                    entry.layers.len()
                ),
            });
        }
        Ok(DockerArchiveImage {
            entry: entry.clone(),
            config,
        })
    }

    /// Streams a member (a layer path from [`DockerArchiveEntry::layers`]).
    pub fn open_member(&self, member: &str) -> Result<Box<dyn Read + Send>, LayoutError> {
        self.tar.open_member(member)
    }

    /// The underlying tar (also a blob source for `blobs/sha256/…` members).
    pub fn tar(&self) -> &TarArchive {
        &self.tar
    }
}
