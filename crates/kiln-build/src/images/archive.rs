//! `kiln save` and `kiln load`: the local store's images to and from one image tar, like
//! `docker save` and `docker load`.
//!
//! [`save_images`] writes a docker-archive (the layout `docker save` of Docker 25+ writes:
//! `manifest.json` with `RepoTags`, plus an OCI layout) or an OCI archive (`index.json`
//! entries annotated with `org.opencontainers.image.ref.name` and `io.containerd.image.name`),
//! through kiln-oci's writers: atomically, blobs verified while copied.
//!
//! A multi-platform name is saved whole (its index, every platform) in an OCI archive, and
//! as one platform's image (`--platform`, else the host's, as `docker save` does) in a
//! docker-archive, whose `manifest.json` has one image per name.
//!
//! [`load_images`] reads either kind (told apart by `manifest.json` / `oci-layout`), also the
//! older docker-archive without an OCI layout (`<id>/layer.tar`, as skopeo and Docker before
//! 25 write it), copies every blob into the store verified against its digest (a legacy
//! layer against the config's `diff_ids`), and only then sets the names: a corrupt archive
//! leaves no name pointing at missing blobs.

use std::io::{self, Read, Write};
use std::path::Path;

use kiln_oci::{
    ArchiveOptions, Descriptor, Digest, DockerArchive, ExportImage, ImageIndex, ImageManifest,
    ImageRef, JsonBlob, LayoutError, MediaType, OciArchive, Platform, TarArchive, collect_blobs,
    read_json_blob,
};
use kiln_registry::RegistryError;
use kiln_store::{LockMode, Store, StoreError};

use super::platforms::{PullPolicy, check_complete, resolve_platform_image};
use super::{ImageError, require_image};

/// The member that marks an OCI layout.
const OCI_LAYOUT_MEMBER: &str = "oci-layout";
/// The member that marks a docker-archive.
const DOCKER_MANIFEST_MEMBER: &str = "manifest.json";
/// How standard input is named in errors.
const STDIN_NAME: &str = "standard input";

/// The kind of tar [`save_images`] writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArchiveFormat {
    /// docker-archive, as `docker save` writes it (`docker load` and `skopeo
    /// docker-archive:` read it).
    #[default]
    Docker,
    /// An OCI image layout in a tar (`skopeo oci-archive:`).
    Oci,
}

/// The images `texts` (names or image ID prefixes) as the writers take them: one entry per
/// image, with every name it was asked for by (an ID prefix adds none, as with `docker
/// save`). docker-archives record familiar tagged names (`busybox:latest`), OCI archives
/// full ones.
///
/// A multi-platform name goes whole into an OCI archive (every platform must be in the
/// store); a docker-archive holds one image per name, `platform`'s (the host's by default,
/// as `docker save` picks), which must be in the store.
fn export_images(
    store: &Store,
    texts: &[String],
    format: ArchiveFormat,
    platform: Option<&Platform>,
) -> Result<Vec<ExportImage>, ImageError> {
    let mut images: Vec<ExportImage> = Vec::new();
    for text in texts {
        let digest = require_image(store, text)?;
        // An image a `-t` build kept with uncompressed layers: compressed now (as `kiln
        // push` does), so the archive holds what a registry would.
        let digest = crate::engine::compress_stored_image(store, &digest).map_err(|source| {
            ImageError::CompressLayers {
                name: text.clone(),
                action: "save",
                source: Box::new(source),
            }
        })?;
        let name = match ImageRef::parse(text) {
            Ok(name) if store.resolve_ref(&name)?.as_ref() == Some(&digest) => Some(name),
            _ => None,
        };
        if let Some(name) = &name {
            match format {
                ArchiveFormat::Oci => check_complete(store, "save", name, &digest)?,
                ArchiveFormat::Docker => {
                    // The variant the writer will pick must be here: its error names the
                    // platforms the index has, or how to pull the one it lacks.
                    let wanted = platform.cloned().unwrap_or_else(Platform::host);
                    resolve_platform_image(
                        store,
                        name,
                        text,
                        &wanted,
                        PullPolicy::Never,
                        &mut |_: &ImageRef, _: &Platform| {
                            Err(RegistryError::ClientSetup("save never pulls".to_owned()))
                        },
                    )?;
                }
            }
        }
        let name = name.and_then(|name| match format {
            ArchiveFormat::Docker => name.tag().is_some().then(|| name.familiar()),
            ArchiveFormat::Oci => Some(name.to_string()),
        });
        let position = images.iter().position(|i| i.descriptor.digest == digest);
        let index = if let Some(index) = position {
            index
        } else {
            images.push(ExportImage::new(store.descriptor_of(&digest)?));
            images.len() - 1
        };
        let image = &mut images[index];
        if let Some(name) = name
            && !image.names.contains(&name)
        {
            image.names.push(name);
        }
    }
    Ok(images)
}

/// Writes the local images `texts` (names or image ID prefixes) into one tar at `dest`, in
/// `format`, atomically (a temporary file renamed into place), holding the store's shared
/// lock so a `prune` waits. An OCI archive keeps a multi-platform name's index whole; a
/// docker-archive holds `platform`'s image of it (the host's when `None`), as `docker save
/// --platform` does.
pub fn save_images(
    store: &Store,
    texts: &[String],
    format: ArchiveFormat,
    platform: Option<&Platform>,
    dest: &Path,
) -> Result<(), ImageError> {
    let _lock = store.lock(LockMode::Shared)?;
    let images = export_images(store, texts, format, platform)?;
    let options = ArchiveOptions {
        platform: platform.cloned(),
        ..ArchiveOptions::default()
    };
    let written = match format {
        ArchiveFormat::Docker => kiln_oci::write_docker_archive(dest, store, &images, &options),
        ArchiveFormat::Oci => kiln_oci::write_oci_archive(dest, store, &images, &options),
    };
    written.map_err(|source| ImageError::Save {
        dest: dest.display().to_string(),
        source: Box::new(source),
    })
}

/// Like [`save_images`], but streams the tar to `out` (standard output, a pipe).
pub fn save_images_to<W: Write>(
    store: &Store,
    texts: &[String],
    format: ArchiveFormat,
    platform: Option<&Platform>,
    out: W,
) -> Result<W, ImageError> {
    let _lock = store.lock(LockMode::Shared)?;
    let images = export_images(store, texts, format, platform)?;
    let options = ArchiveOptions {
        platform: platform.cloned(),
        ..ArchiveOptions::default()
    };
    let written = match format {
        ArchiveFormat::Docker => kiln_oci::write_docker_archive_to(out, store, &images, &options),
        ArchiveFormat::Oci => kiln_oci::write_oci_archive_to(out, store, &images, &options),
    };
    written.map_err(|source| ImageError::Save {
        dest: "standard output".to_owned(),
        source: Box::new(source),
    })
}

/// One image [`load_images`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    /// The manifest (or index) digest.
    pub digest: Digest,
    /// The image ID (config digest); the manifest digest when it is an index without an
    /// image for this platform.
    pub id: Digest,
    /// The names it is stored under (none: the archive named it not).
    pub names: Vec<ImageRef>,
}

/// An image found in an archive, before its blobs are copied.
struct Found {
    content: Content,
    names: Vec<ImageRef>,
}

/// What an archive holds of one image.
enum Content {
    /// A manifest or index, its blobs in the archive's OCI layout.
    Manifest(Box<Descriptor>),
    /// A legacy docker-archive entry: config and layer members (a manifest is made).
    Legacy { config: String, layers: Vec<String> },
}

/// Loads every image of the docker-archive or OCI archive at `path` into the store (holding
/// its shared lock) and names each as the archive does. Every blob is verified; the names
/// are set only once all blobs of all images are stored.
pub fn load_images(store: &Store, path: &Path) -> Result<Vec<LoadedImage>, ImageError> {
    let _lock = store.lock(LockMode::Shared)?;
    load_locked(store, path, &path.display().to_string())
}

/// Like [`load_images`], reading the archive from `input` (standard input): it is spooled
/// into a temporary file of the store first (a tar is read by seeking).
pub fn load_images_from(
    store: &Store,
    input: &mut dyn Read,
) -> Result<Vec<LoadedImage>, ImageError> {
    let _lock = store.lock(LockMode::Shared)?;
    let spool_dir = store.root().join("tmp");
    let spool_error = |action: &'static str| {
        let path = spool_dir.clone();
        move |source: io::Error| ImageError::Load {
            file: STDIN_NAME.to_owned(),
            source: Box::new(LayoutError::Io {
                action,
                path,
                source,
            }),
        }
    };
    fs_err::create_dir_all(&spool_dir).map_err(spool_error("creating"))?;
    let mut spool = tempfile::Builder::new()
        .prefix("load-")
        .tempfile_in(&spool_dir)
        .map_err(spool_error("creating a temporary file in"))?;
    io::copy(input, spool.as_file_mut()).map_err(spool_error("spooling standard input into"))?;
    load_locked(store, spool.path(), STDIN_NAME)
}

fn load_locked(store: &Store, path: &Path, file: &str) -> Result<Vec<LoadedImage>, ImageError> {
    let load_error = |source: LayoutError| ImageError::Load {
        file: file.to_owned(),
        source: Box::new(source),
    };
    let tar = TarArchive::open(path).map_err(load_error)?;
    let found = if tar.contains(DOCKER_MANIFEST_MEMBER) {
        docker_images(&DockerArchive::open(path).map_err(load_error)?, file)?
    } else if tar.contains(OCI_LAYOUT_MEMBER) {
        oci_images(&OciArchive::open(path).map_err(load_error)?, file)?
    } else {
        return Err(load_error(LayoutError::Malformed {
            path: path.to_owned(),
            format: "image archive",
            reason: format!(
                "it has neither `{DOCKER_MANIFEST_MEMBER}` (docker-archive) nor \
                 `{OCI_LAYOUT_MEMBER}` (OCI archive); make it with `docker save` or `kiln save`"
            ),
        }));
    };
    // Every blob first; names last, so a failure leaves no name pointing at missing blobs.
    let mut loaded = Vec::new();
    for image in found {
        let digest = match &image.content {
            Content::Manifest(top) => {
                copy_blobs(store, &tar, top, file)?;
                top.digest.clone()
            }
            Content::Legacy { config, layers } => store_legacy(store, &tar, config, layers, file)?,
        };
        let id = store
            .resolve_image(&digest, None)
            .map_or_else(|_| digest.clone(), |i| i.config.digest().clone());
        loaded.push(LoadedImage {
            digest,
            id,
            names: image.names,
        });
    }
    for image in &loaded {
        for name in &image.names {
            store.set_ref(name, &image.digest)?;
        }
    }
    Ok(loaded)
}

/// Parses a name recorded in the archive, naming the archive when it is not one.
fn archive_name(text: &str, file: &str) -> Result<ImageRef, ImageError> {
    ImageRef::parse(text).map_err(|source| ImageError::ArchiveName {
        file: file.to_owned(),
        name: text.to_owned(),
        source,
    })
}

/// The images of a docker-archive: each `manifest.json` entry, with the OCI manifest of the
/// same config when the archive also holds an OCI layout (Docker 25+, kiln), else as a
/// legacy entry.
fn docker_images(archive: &DockerArchive, file: &str) -> Result<Vec<Found>, ImageError> {
    let tar = archive.tar();
    let load_error = |source: LayoutError| ImageError::Load {
        file: file.to_owned(),
        source: Box::new(source),
    };
    let manifests = if tar.contains(kiln_oci::INDEX_JSON_FILE) {
        let bytes = tar
            .read_member(kiln_oci::INDEX_JSON_FILE)
            .map_err(load_error)?;
        let index = JsonBlob::<ImageIndex>::parse(bytes).map_err(|e| load_error(e.into()))?;
        let mut manifests = Vec::new();
        for descriptor in &index.value().manifests {
            if descriptor.media_type.is_index() {
                continue;
            }
            let manifest = read_json_blob::<ImageManifest>(tar, descriptor).map_err(load_error)?;
            let mut descriptor = descriptor.clone();
            descriptor.annotations.clear();
            manifests.push((manifest.value().config.digest.clone(), descriptor));
        }
        manifests
    } else {
        Vec::new()
    };
    let mut found = Vec::new();
    for entry in archive.entries() {
        let config = tar.read_member(&entry.config).map_err(load_error)?;
        let config_digest = Digest::sha256_of(&config);
        let names = entry
            .repo_tags
            .iter()
            .map(|t| archive_name(t, file))
            .collect::<Result<Vec<_>, _>>()?;
        let content = match manifests
            .iter()
            .find(|(config, _)| config == &config_digest)
        {
            Some((_, descriptor)) => Content::Manifest(Box::new(descriptor.clone())),
            None => Content::Legacy {
                config: entry.config.clone(),
                layers: entry.layers.clone(),
            },
        };
        found.push(Found { content, names });
    }
    Ok(found)
}

/// The images of an OCI archive: its `index.json` entries, one per image, named by
/// `io.containerd.image.name`, else by an `org.opencontainers.image.ref.name` that is a
/// whole name (a bare tag such as `1.0` names no repository).
fn oci_images(archive: &OciArchive, file: &str) -> Result<Vec<Found>, ImageError> {
    let mut found: Vec<Found> = Vec::new();
    for descriptor in &archive.index().manifests {
        let name = match (descriptor.image_name(), descriptor.ref_name()) {
            (Some(name), _) => Some(archive_name(name, file)?),
            (None, Some(name)) if name.contains(':') || name.contains('/') => {
                Some(archive_name(name, file)?)
            }
            _ => None,
        };
        let mut top = descriptor.clone();
        top.annotations.clear();
        let position = found
            .iter()
            .position(|f| matches!(&f.content, Content::Manifest(t) if t.digest == top.digest));
        let index = if let Some(index) = position {
            index
        } else {
            found.push(Found {
                content: Content::Manifest(Box::new(top)),
                names: Vec::new(),
            });
            found.len() - 1
        };
        let image = &mut found[index];
        if let Some(name) = name
            && !image.names.contains(&name)
        {
            image.names.push(name);
        }
    }
    Ok(found)
}

/// Copies every blob reachable from `top` out of the archive, each verified against its
/// digest and size; blobs the store has are skipped.
fn copy_blobs(
    store: &Store,
    tar: &TarArchive,
    top: &Descriptor,
    file: &str,
) -> Result<(), ImageError> {
    let blobs =
        collect_blobs(tar, std::slice::from_ref(top)).map_err(|source| ImageError::Load {
            file: file.to_owned(),
            source: Box::new(source),
        })?;
    for blob in blobs {
        if store.has_blob(&blob.digest) {
            continue;
        }
        let blob_error = |source: StoreError| ImageError::LoadBlob {
            file: file.to_owned(),
            digest: blob.digest.clone(),
            source: Box::new(source),
        };
        let mut reader = kiln_oci::BlobSource::open_blob(tar, &blob.digest)
            .map_err(|e| blob_error(StoreError::Blob(e)))?;
        let mut writer = store
            .begin_blob(Some(&blob.digest), Some(blob.size))
            .map_err(blob_error)?;
        io::copy(&mut reader, &mut writer).map_err(|source| ImageError::LoadRead {
            file: file.to_owned(),
            member: kiln_oci::blob_path(&blob.digest),
            source,
        })?;
        writer.commit().map_err(blob_error)?;
    }
    Ok(())
}

/// Stores a legacy docker-archive entry (config and layer tars named by path): its layers
/// as they are (each checked against the config's `diff_ids`), its config, and an OCI
/// manifest made for them. Returns the manifest digest.
fn store_legacy(
    store: &Store,
    tar: &TarArchive,
    config_member: &str,
    layer_members: &[String],
    file: &str,
) -> Result<Digest, ImageError> {
    let load_error = |source: LayoutError| ImageError::Load {
        file: file.to_owned(),
        source: Box::new(source),
    };
    let config_bytes = tar.read_member(config_member).map_err(load_error)?;
    let config = JsonBlob::<kiln_oci::ImageConfiguration>::parse(config_bytes)
        .map_err(|e| load_error(e.into()))?;
    let diff_ids = &config.value().rootfs.diff_ids;
    if diff_ids.len() != layer_members.len() {
        return Err(load_error(LayoutError::Malformed {
            path: tar.path().to_owned(),
            format: "docker archive",
            reason: format!(
                "config {config_member} lists {} diff_ids but its entry has {} layers",
                diff_ids.len(),
                layer_members.len()
            ),
        }));
    }
    let mut layers = Vec::new();
    for (member, diff_id) in layer_members.iter().zip(diff_ids) {
        let read_error = |source: io::Error| ImageError::LoadRead {
            file: file.to_owned(),
            member: member.clone(),
            source,
        };
        let reader = tar.open_member(member).map_err(load_error)?;
        let mut writer = store.begin_blob(None, None)?;
        let (compression, mut tar_stream) = kiln_oci::decompress(TeeReader {
            inner: reader,
            copy: &mut writer,
        })
        .map_err(read_error)?;
        let mut hasher = kiln_oci::Sha256Hasher::new();
        io::copy(&mut tar_stream, &mut HashWriter(&mut hasher)).map_err(read_error)?;
        drop(tar_stream);
        let actual = hasher.finish();
        if actual != diff_id.0 {
            return Err(ImageError::LayerMismatch {
                file: file.to_owned(),
                member: member.clone(),
                expected: diff_id.0.clone(),
                actual,
            });
        }
        let size = writer.written();
        let digest = writer.commit_unverified()?;
        layers.push(Descriptor::new(
            MediaType::oci_layer(compression),
            digest,
            size,
        ));
    }
    let config_digest = store.put_bytes(config.bytes())?;
    let config_descriptor = Descriptor::new(MediaType::OciConfig, config_digest, config.size());
    let manifest = JsonBlob::from_value(ImageManifest::new(config_descriptor, layers))
        .map_err(|e| load_error(e.into()))?;
    Ok(store.put_bytes(manifest.bytes())?)
}

/// Copies what is read through it into `copy` (the stored blob), so a layer is hashed
/// uncompressed while its compressed bytes are stored.
struct TeeReader<'a, R> {
    inner: R,
    copy: &'a mut kiln_store::BlobWriter,
}

impl<R: Read> Read for TeeReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// A `Write` that only hashes.
struct HashWriter<'a>(&'a mut kiln_oci::Sha256Hasher);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_no_image_archive_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let path = dir.path().join("plain.tar");
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(2);
        builder
            .append_data(&mut header, "hello.txt", &b"hi"[..])
            .unwrap();
        fs_err::write(&path, builder.into_inner().unwrap()).unwrap();
        let err = load_images(&store, &path).unwrap_err();
        let message = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(message.contains("plain.tar"), "{message}");
        assert!(message.contains("manifest.json"), "{message}");
    }
}
