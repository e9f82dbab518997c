//! `docker import` as a library call: a one-layer image from a root filesystem (a directory,
//! or a tar archive — plain, gzip or zstd — possibly on standard input), its config edited by
//! `--change` instructions ([`kiln_plan::ConfigChanges`]), stored in the local store under
//! its names and written to OCI/docker archives, an OCI layout or a root filesystem directory.
//!
//! [`Import`] holds the options and checks them when they are given (the source exists, each
//! change applies), so nothing touches the store before the import can run;
//! [`Import::run`] then writes the layer, the image and the outputs.

mod tar_source;

use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, Write as _};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use kiln_oci::{
    ArchiveOptions, AssembleError, Compression, Descriptor, DiffId, DiffTar, Digest, ExportImage,
    History, ImageConfiguration, ImageIndex, ImageRef, LayerError, LayerWriter, LayoutError,
    ManifestFormat, MediaType, Platform, assemble_image, rfc3339_utc,
};
use kiln_plan::{ChangeError, ConfigChanges};
use kiln_store::{LockMode, Store, StoreError};

pub use tar_source::TarError;

/// Write buffer between the layer compressor and the store's blob file.
const LAYER_BUFFER: usize = 1 << 20;

/// Why an import failed; each variant names its path, name or instruction.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The root filesystem cannot be read.
    #[error("cannot import {}", path.display())]
    Source {
        /// The source as given.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A `--change` instruction was refused.
    #[error(transparent)]
    Change(#[from] ChangeError),
    /// The layer compressor could not start.
    #[error("starting the layer compressor")]
    Compressor(#[source] std::io::Error),
    /// A directory source could not be archived.
    #[error("archiving {}", path.display())]
    Archive {
        /// The directory.
        path: PathBuf,
        /// What failed (boxed: large).
        #[source]
        source: Box<LayerError>,
    },
    /// An archive source could not be opened (fs_err's source names the path).
    #[error("opening the archive")]
    Open {
        /// The archive.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An archive source could not be decompressed.
    #[error("reading {}", path.display())]
    Decompress {
        /// The archive.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// An archive source is not a tar archive kiln can import.
    #[error(transparent)]
    Tar(#[from] TarError),
    /// The layer could not be finished or flushed into the store.
    #[error("finishing the layer")]
    FinishLayer(#[source] std::io::Error),
    /// The blob the store computed differs from the compressor's digest (a bug or a disk
    /// fault).
    #[error("layer written as {written} but hashed as {hashed} while compressing")]
    DigestMismatch {
        /// The store's digest.
        written: Digest,
        /// The compressor's digest.
        hashed: Digest,
    },
    /// The config and manifest could not be assembled.
    #[error("assembling the image")]
    Assemble(#[source] Box<AssembleError>),
    /// An output could not be written.
    #[error("writing {}", dest.display())]
    Output {
        /// The destination.
        dest: PathBuf,
        /// What failed (boxed: large).
        #[source]
        source: Box<LayoutError>,
    },
    /// `type=local` into a directory that has files.
    #[error("--output type=local: {} exists and is not empty", dest.display())]
    LocalNotEmpty {
        /// The destination.
        dest: PathBuf,
    },
    /// `type=local` staging could not be created or renamed into place (fs_err's message
    /// names the path).
    #[error(transparent)]
    LocalFs(std::io::Error),
    /// `type=local` staging could not be created (tempfile names the path it tried).
    #[error("{action} {}", path.display())]
    LocalDir {
        /// What was being done.
        action: &'static str,
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// What the name held could not be read to add the new platform to it.
    #[error("adding the image to the platforms {name} holds")]
    Platforms {
        /// The name.
        name: ImageRef,
        /// What failed.
        #[source]
        source: Box<crate::ImageError>,
    },
    /// A store operation failed (the store's error names its path or digest).
    #[error(transparent)]
    Store(Box<StoreError>),
}

/// What `name` should point to once the image `new` (a manifest for `platform`) is
/// imported under it: `new` itself when the name holds nothing, or only an image of the
/// same platform (or of none); otherwise an index of the platforms it held with `new` in
/// place of the same platform's entry (stored here).
fn merge_platform(
    store: &Store,
    name: &ImageRef,
    new: &Descriptor,
    platform: &Platform,
) -> Result<Digest, ImportError> {
    let failed = |source: crate::ImageError| ImportError::Platforms {
        name: name.clone(),
        source: Box::new(source),
    };
    let Some(existing) = store.resolve_ref(name)? else {
        return Ok(new.digest.clone());
    };
    let same = |other: &Platform| other.normalized() == platform.normalized();
    let index = crate::images::read_index(store, &existing).map_err(failed)?;
    let mut entries: Vec<Descriptor> = if let Some(index) = index {
        index.manifests
    } else {
        let held = crate::images::platforms_of(store, &existing).map_err(failed)?;
        match held.first() {
            Some(held) if !same(&held.platform) => vec![
                store
                    .descriptor_of(&existing)?
                    .with_platform(held.platform.clone()),
            ],
            _ => return Ok(new.digest.clone()),
        }
    };
    // The same platform is replaced; so are attestations of manifests no longer listed.
    entries.retain(|d| d.platform.as_ref().is_none_or(|p| !same(p)) || is_attestation(d));
    let listed: Vec<String> = entries.iter().map(|d| d.digest.to_string()).collect();
    entries.retain(|d| {
        !is_attestation(d)
            || d.annotations
                .get(ANNOTATION_REFERENCE_DIGEST)
                .is_some_and(|target| listed.contains(target))
    });
    if !entries.iter().any(|d| !is_attestation(d)) {
        return Ok(new.digest.clone());
    }
    entries.push(new.clone());
    let index = ImageIndex::new(entries);
    let bytes = serde_json::to_vec(&index).map_err(|source| {
        failed(crate::ImageError::Json {
            what: "index",
            digest: existing.clone(),
            source,
        })
    })?;
    Ok(store.put_bytes(&bytes)?)
}

/// BuildKit's attestation manifests point to the image they describe with this annotation.
const ANNOTATION_REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";

fn is_attestation(descriptor: &Descriptor) -> bool {
    descriptor
        .annotations
        .contains_key(kiln_oci::ANNOTATION_DOCKER_REFERENCE_TYPE)
}

impl From<StoreError> for ImportError {
    fn from(err: StoreError) -> Self {
        Self::Store(Box::new(err))
    }
}

/// Why an `--output` spec of `kiln import` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--output `{spec}`: {reason}")]
pub struct ImportOutputError {
    /// The spec as given.
    pub spec: String,
    /// What is wrong with it.
    pub reason: String,
}

/// One destination of an import besides the store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImportOutput {
    /// `type=oci,dest=FILE.tar`: an OCI image layout in a tar archive.
    OciTar(PathBuf),
    /// `type=oci,dest=DIR,tar=false`: an OCI image layout directory.
    OciDir(PathBuf),
    /// `type=docker,dest=FILE.tar`: a `docker load` archive.
    DockerTar(PathBuf),
    /// `type=local,dest=DIR` (or a bare `DIR`): the root filesystem.
    Local(PathBuf),
}

impl ImportOutput {
    /// Where it is written.
    pub fn dest(&self) -> &Path {
        match self {
            Self::OciTar(p) | Self::OciDir(p) | Self::DockerTar(p) | Self::Local(p) => p,
        }
    }
}

impl std::str::FromStr for ImportOutput {
    type Err = ImportOutputError;

    /// `type=oci|docker|local,dest=PATH[,tar=true|false]`; a spec without `=` is
    /// `type=local,dest=SPEC` (docker buildx).
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| ImportOutputError {
            spec: spec.to_owned(),
            reason,
        };
        if !spec.contains('=') {
            return Ok(Self::Local(PathBuf::from(spec)));
        }
        let mut kind = None;
        let mut dest = None;
        let mut is_tar = true;
        for part in spec.split(',') {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| fail(format!("`{part}` is not key=value")))?;
            match key.trim() {
                "type" => kind = Some(value.trim().to_owned()),
                "dest" => dest = Some(PathBuf::from(value.trim())),
                "tar" => {
                    is_tar = match value.trim() {
                        "true" => true,
                        "false" => false,
                        other => {
                            return Err(fail(format!("tar must be true or false, not `{other}`")));
                        }
                    }
                }
                "name" | "oci-mediatypes" | "compression" => {}
                other => return Err(fail(format!("unknown option `{other}`"))),
            }
        }
        let dest = dest.ok_or_else(|| fail("dest=PATH is required".to_owned()))?;
        match kind.as_deref() {
            Some("oci") if is_tar => Ok(Self::OciTar(dest)),
            Some("oci") => Ok(Self::OciDir(dest)),
            Some("docker") => Ok(Self::DockerTar(dest)),
            Some("local") => Ok(Self::Local(dest)),
            Some(other) => Err(fail(format!(
                "unsupported type `{other}` (oci, docker, local)"
            ))),
            None => Err(fail("type= is required (oci, docker, local)".to_owned())),
        }
    }
}

/// What [`Import::run`] reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImportStep {
    /// The image was stored under this name.
    Tagged(ImageRef),
    /// This output was written.
    Wrote(ImportOutput),
    /// The name holds an index of these platforms (the image joined the other platforms
    /// the name held).
    Platforms(ImageRef, Vec<Platform>),
}

/// What [`Import::run`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOutcome {
    /// The image ID (config digest).
    pub config_digest: Digest,
    /// The manifest digest.
    pub manifest_digest: Digest,
}

/// An import of a root filesystem, like `docker import`.
///
/// ```no_run
/// use kiln_build::{Import, open_store};
/// use kiln_build::oci::{ImageRef, Platform};
///
/// let import = Import::new("rootfs.tar.gz", &Platform::host())?
///     .tag(ImageRef::parse("base:1")?)
///     .change(r#"CMD ["/bin/sh"]"#)?;
/// let store = open_store(None)?;
/// let outcome = import.run(&store, &mut |step| eprintln!("{step:?}"))?;
/// println!("{}", outcome.config_digest);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use = "an Import does nothing until `run` is called"]
pub struct Import {
    source: PathBuf,
    is_dir: bool,
    config: ImageConfiguration,
    changes: ConfigChanges,
    names: Vec<ImageRef>,
    message: Option<String>,
    compression: Compression,
    threads: Option<NonZeroUsize>,
    source_date_epoch: Option<i64>,
    outputs: Vec<ImportOutput>,
}

impl Import {
    /// An import of `source` (a directory, an archive, or `-` for an archive on standard
    /// input) as an image for `platform`, gzip-compressed, named nothing yet. Fails when the
    /// source does not exist.
    pub fn new(source: impl Into<PathBuf>, platform: &Platform) -> Result<Self, ImportError> {
        let source = source.into();
        let is_stdin = source.as_os_str() == "-";
        let is_dir = !is_stdin
            && fs_err::metadata(&source)
                .map_err(|err| ImportError::Source {
                    path: source.clone(),
                    source: err,
                })?
                .is_dir();
        Ok(Self {
            source,
            is_dir,
            config: ImageConfiguration::new(platform),
            changes: ConfigChanges::default(),
            names: Vec::new(),
            message: None,
            compression: Compression::gzip(),
            threads: None,
            source_date_epoch: None,
            outputs: Vec::new(),
        })
    }

    /// Stores the image under `name` too (`-t`). When `name` holds an image or index of
    /// other platforms it becomes an index of those plus this one (the same platform's
    /// image is replaced); reported as [`ImportStep::Platforms`].
    pub fn tag(mut self, name: ImageRef) -> Self {
        self.names.push(name);
        self
    }

    /// Applies a `--change` instruction to the config now (see [`ConfigChanges`]).
    pub fn change(mut self, instruction: &str) -> Result<Self, ImportError> {
        self.changes.apply(instruction, &mut self.config)?;
        Ok(self)
    }

    /// The history comment (default: `Imported from <source name>`).
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// The layer's compression (default gzip).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Compression threads (default: all cores); the bytes are the same for any number.
    pub fn compression_threads(mut self, threads: NonZeroUsize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// `SOURCE_DATE_EPOCH`: the creation time, and the newest mtime in the layer.
    pub fn source_date_epoch(mut self, epoch: i64) -> Self {
        self.source_date_epoch = Some(epoch);
        self
    }

    /// Writes the image to `output` too.
    pub fn output(mut self, output: ImportOutput) -> Self {
        self.outputs.push(output);
        self
    }

    /// Writes the layer and the image into `store` (holding its shared lock), names it,
    /// writes the outputs, and reports each name and output to `on_step` when done.
    pub fn run(
        &self,
        store: &Store,
        on_step: &mut dyn FnMut(&ImportStep),
    ) -> Result<ImportOutcome, ImportError> {
        let _lock = store.lock(LockMode::Shared)?;
        let epoch = self.source_date_epoch;
        let (layer, diff_id) = self.write_layer(store)?;
        let mut config = self.config.clone();
        let created = rfc3339_utc(epoch.unwrap_or_else(now_seconds));
        config.created = Some(created.clone());
        config.rootfs.diff_ids = vec![diff_id];
        let source_name = self
            .source
            .file_name()
            .map_or_else(|| "-".to_owned(), |n| n.to_string_lossy().into_owned());
        config.history = vec![History {
            created: Some(created),
            created_by: "kiln import".to_owned(),
            comment: self
                .message
                .clone()
                .unwrap_or_else(|| format!("Imported from {source_name}")),
            ..History::default()
        }];
        let image = assemble_image(config, vec![layer], ManifestFormat::Oci, BTreeMap::new())
            .map_err(|err| ImportError::Assemble(Box::new(err)))?;
        store.put_bytes(image.config.bytes())?;
        let manifest_digest = store.put_bytes(image.manifest.bytes())?;
        let platform = self.config.platform();
        let descriptor = image.manifest_descriptor().with_platform(platform.clone());
        for name in &self.names {
            let top = merge_platform(store, name, &descriptor, &platform)?;
            store.set_ref(name, &top)?;
            on_step(&ImportStep::Tagged(name.clone()));
            if top != manifest_digest {
                let platforms = crate::images::platforms_of(store, &top)
                    .map_err(|source| ImportError::Platforms {
                        name: name.clone(),
                        source: Box::new(source),
                    })?
                    .into_iter()
                    .map(|p| p.platform)
                    .collect();
                on_step(&ImportStep::Platforms(name.clone(), platforms));
            }
        }
        self.write_outputs(store, &image.manifest_descriptor(), on_step)?;
        Ok(ImportOutcome {
            config_digest: image.config_digest().clone(),
            manifest_digest,
        })
    }

    /// Writes the layer blob into the store; returns its descriptor and diff id.
    fn write_layer(&self, store: &Store) -> Result<(Descriptor, DiffId), ImportError> {
        let source = &self.source;
        let blob = store.begin_blob(None, None)?;
        let threads = self.threads.unwrap_or_else(kiln_oci::default_threads);
        let mut layer = LayerWriter::with_threads(
            BufWriter::with_capacity(LAYER_BUFFER, blob),
            self.compression,
            threads,
        )
        .map_err(ImportError::Compressor)?;
        if self.is_dir {
            let mut tar = DiffTar::new(source);
            if let Some(epoch) = self.source_date_epoch {
                tar = tar.source_date_epoch(epoch);
            }
            tar.write_to(&mut layer)
                .map_err(|err| ImportError::Archive {
                    path: source.clone(),
                    source: Box::new(err),
                })?;
        } else {
            let input: Box<dyn std::io::Read + Send> = if source.as_os_str() == "-" {
                Box::new(std::io::stdin())
            } else {
                Box::new(fs_err::File::open(source).map_err(|err| ImportError::Open {
                    path: source.clone(),
                    source: err,
                })?)
            };
            let (_, decoded) = kiln_oci::decompress(BufReader::with_capacity(LAYER_BUFFER, input))
                .map_err(|err| ImportError::Decompress {
                    path: source.clone(),
                    source: err,
                })?;
            tar_source::reencode_tar(decoded, &mut layer, self.source_date_epoch, source)?;
        }
        let (out, digests) = layer.finish().map_err(ImportError::FinishLayer)?;
        let mut blob = out
            .into_inner()
            .map_err(|err| ImportError::FinishLayer(err.into_error()))?;
        blob.flush().map_err(ImportError::FinishLayer)?;
        let digest = blob.commit()?;
        if digest != digests.digest {
            return Err(ImportError::DigestMismatch {
                written: digest,
                hashed: digests.digest,
            });
        }
        let media_type = MediaType::oci_layer(self.compression.kind());
        Ok((
            Descriptor::new(media_type, digest, digests.size),
            digests.diff_id,
        ))
    }

    /// Writes the image to each output.
    fn write_outputs(
        &self,
        store: &Store,
        descriptor: &Descriptor,
        on_step: &mut dyn FnMut(&ImportStep),
    ) -> Result<(), ImportError> {
        let options = ArchiveOptions {
            mtime: self
                .source_date_epoch
                .and_then(|e| u64::try_from(e).ok())
                .unwrap_or(0),
            platform: None,
        };
        for output in &self.outputs {
            let written = |dest: &Path| {
                let dest = dest.to_owned();
                move |source: LayoutError| ImportError::Output {
                    dest,
                    source: Box::new(source),
                }
            };
            match output {
                ImportOutput::OciTar(dest) => {
                    let image = self.export_image(descriptor, false);
                    kiln_oci::write_oci_archive(dest, store, &[image], &options)
                        .map_err(written(dest))?;
                }
                ImportOutput::OciDir(dest) => {
                    let image = self.export_image(descriptor, false);
                    kiln_oci::write_oci_layout_dir(dest, store, &[image]).map_err(written(dest))?;
                }
                ImportOutput::DockerTar(dest) => {
                    let image = self.export_image(descriptor, true);
                    kiln_oci::write_docker_archive(dest, store, &[image], &options)
                        .map_err(written(dest))?;
                }
                ImportOutput::Local(dest) => {
                    let resolved = store.resolve_image(&descriptor.digest, None)?;
                    let layers: Vec<_> = resolved
                        .manifest
                        .value()
                        .layers
                        .iter()
                        .map(|l| l.digest.clone())
                        .collect();
                    write_local(store, dest, &layers)?;
                }
            }
            on_step(&ImportStep::Wrote(output.clone()));
        }
        Ok(())
    }

    fn export_image(&self, descriptor: &Descriptor, is_docker: bool) -> ExportImage {
        let mut image = ExportImage::new(descriptor.clone());
        for name in &self.names {
            // docker save records familiar names (`busybox:latest`); OCI layouts full ones.
            let text = if is_docker {
                name.familiar()
            } else {
                name.to_string()
            };
            image = image.named(&text);
        }
        image
    }
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `type=local`: the root filesystem, unpacked in a sibling temp dir and renamed into place
/// so no half-written tree is ever at `dest`.
fn write_local(store: &Store, dest: &Path, layers: &[Digest]) -> Result<(), ImportError> {
    if let Ok(mut entries) = fs_err::read_dir(dest)
        && entries.next().is_some()
    {
        return Err(ImportError::LocalNotEmpty {
            dest: dest.to_owned(),
        });
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let fail = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source: std::io::Error| ImportError::LocalDir {
            action,
            path,
            source,
        }
    };
    fs_err::create_dir_all(&parent).map_err(ImportError::LocalFs)?;
    let staging = tempfile::Builder::new()
        .prefix(".kiln-local-")
        .tempdir_in(&parent)
        .map_err(fail("creating a temp dir in", &parent))?;
    store.flatten_to(staging.path(), layers)?;
    let _ = fs_err::remove_dir(dest);
    let staged = staging.keep();
    fs_err::rename(&staged, dest).map_err(ImportError::LocalFs)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(spec: &str) -> Result<ImportOutput, ImportOutputError> {
        spec.parse()
    }

    #[test]
    fn output_specs() {
        assert_eq!(
            output("type=oci,dest=o.tar").unwrap(),
            ImportOutput::OciTar("o.tar".into())
        );
        assert_eq!(
            output("type=oci,dest=d,tar=false").unwrap(),
            ImportOutput::OciDir("d".into())
        );
        assert_eq!(
            output("type=docker,dest=i.tar").unwrap(),
            ImportOutput::DockerTar("i.tar".into())
        );
        assert_eq!(
            output("type=local,dest=r").unwrap(),
            ImportOutput::Local("r".into())
        );
        assert_eq!(output("out").unwrap(), ImportOutput::Local("out".into()));
        let err = output("type=registry,dest=x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "--output `type=registry,dest=x`: unsupported type `registry` (oci, docker, local)"
        );
        assert!(output("type=oci").is_err());
        assert!(output("type=oci,dest=x,tar=maybe").is_err());
    }

    #[test]
    fn a_directory_imports_as_one_named_layer() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        fs_err::create_dir_all(rootfs.join("bin")).unwrap();
        fs_err::write(rootfs.join("bin/hello"), b"hi").unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let name = ImageRef::parse("imported:1").unwrap();
        let import = Import::new(&rootfs, &Platform::new("linux", "amd64"))
            .unwrap()
            .tag(name.clone())
            .change("ENV A=1")
            .unwrap()
            .source_date_epoch(1_700_000_000);
        let mut steps = Vec::new();
        let outcome = import.run(&store, &mut |s| steps.push(s.clone())).unwrap();
        assert_eq!(steps, [ImportStep::Tagged(name.clone())]);
        assert_eq!(
            store.resolve_ref(&name).unwrap(),
            Some(outcome.manifest_digest.clone())
        );
        let image = store.resolve_image(&outcome.manifest_digest, None).unwrap();
        let config = image.config.value();
        assert_eq!(config.config.env, ["A=1"]);
        assert_eq!(config.rootfs.diff_ids.len(), 1);
        assert_eq!(config.history[0].comment, "Imported from rootfs");
        assert_eq!(image.config.digest(), &outcome.config_digest);
    }

    #[test]
    fn another_platform_joins_the_name_and_the_same_platform_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        fs_err::create_dir_all(&rootfs).unwrap();
        fs_err::write(rootfs.join("f"), b"1").unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let name = ImageRef::parse("multi:1").unwrap();
        let import = |platform: &str| {
            let platform: Platform = platform.parse().unwrap();
            let mut steps = Vec::new();
            let outcome = Import::new(&rootfs, &platform)
                .unwrap()
                .tag(name.clone())
                .run(&store, &mut |s| steps.push(s.clone()))
                .unwrap();
            (outcome.manifest_digest, steps)
        };
        let platforms = |steps: &[ImportStep]| -> Vec<String> {
            steps
                .iter()
                .find_map(|s| match s {
                    ImportStep::Platforms(_, p) => {
                        Some(p.iter().map(ToString::to_string).collect())
                    }
                    _ => None,
                })
                .unwrap_or_default()
        };
        let (amd, steps) = import("linux/amd64");
        assert!(platforms(&steps).is_empty());
        // The same platform again: still a single manifest.
        fs_err::write(rootfs.join("f"), b"2").unwrap();
        let (amd2, _) = import("linux/amd64");
        assert_ne!(amd, amd2);
        assert_eq!(store.resolve_ref(&name).unwrap(), Some(amd2.clone()));
        let (arm, steps) = import("linux/arm64");
        assert_eq!(platforms(&steps), ["linux/amd64", "linux/arm64"]);
        let top = store.resolve_ref(&name).unwrap().unwrap();
        let index = crate::images::read_index(&store, &top).unwrap().unwrap();
        let digests: Vec<_> = index.manifests.iter().map(|d| d.digest.clone()).collect();
        assert_eq!(digests, [amd2, arm.clone()]);
        fs_err::write(rootfs.join("f"), b"3").unwrap();
        let (amd3, steps) = import("linux/amd64");
        assert_eq!(platforms(&steps), ["linux/arm64", "linux/amd64"]);
        let top = store.resolve_ref(&name).unwrap().unwrap();
        let index = crate::images::read_index(&store, &top).unwrap().unwrap();
        let digests: Vec<_> = index.manifests.iter().map(|d| d.digest.clone()).collect();
        assert_eq!(digests, [arm, amd3]);
    }

    #[test]
    fn bad_sources_and_changes_fail_before_the_store() {
        let platform = Platform::new("linux", "amd64");
        let err = Import::new("/no/such/rootfs", &platform).unwrap_err();
        assert!(err.to_string().contains("/no/such/rootfs"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let err = Import::new(dir.path(), &platform)
            .unwrap()
            .change("RUN true")
            .unwrap_err();
        assert!(
            err.to_string().contains("unsupported instruction `RUN`"),
            "{err}"
        );
    }
}
