//! The final image: config + manifest assembled and stored, then written to every output
//! (local store names, OCI layout dir/tar, docker-archive, rootfs directory, registry push).
//! File outputs are written to a temporary path and renamed: never half-written. `dest=-`
//! streams a tar output to stdout instead (a consumer sees a truncated stream on failure).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use kiln_oci::{
    ArchiveOptions, AssembledImage, Descriptor, ExportImage, ImageRef, ManifestFormat, MemoryBlobs,
    assemble_image, write_docker_archive, write_docker_archive_to, write_oci_archive,
    write_oci_archive_to, write_oci_layout_dir,
};
use kiln_store::Store;

use super::compressor::Compressor;
use super::error::BuildError;
use super::error::ExportError;
use super::lazy::LazyLayers;
use super::model::StageResult;
use super::options::Builder;
use super::platforms::{Built, Encoding};
use crate::annotation::AnnotationLevel;
use crate::attest::{self, Attestations};
use crate::event::{Event, EventSink};
use crate::output::{ExportOptions, Output};

/// Assembles the target stage's image and stores its config and manifest (with the blobs of
/// its layers: compressed in the background since their commit, or now). `labels` (`--label`)
/// are set last, over the Dockerfile's: the config is made here on every build, so a changed
/// label never comes from a cached config.
pub(crate) fn assemble(
    store: &Store,
    target: &StageResult,
    epoch: Option<i64>,
    labels: &BTreeMap<String, String>,
    compressor: &Compressor,
    annotations: BTreeMap<String, String>,
) -> Result<AssembledImage, BuildError> {
    // Includes waiting for the layers' background compression.
    let _span = tracing::debug_span!("assemble_image").entered();
    let mut config = target.output.image.clone();
    // BuildKit dockerfile2llb: `opt.Labels` are set on the target's config after its last
    // instruction, with no history entry.
    config.config.labels.extend(
        labels
            .iter()
            .map(|(key, value)| (key.clone(), value.clone())),
    );
    if let Some(epoch) = epoch {
        config.created = Some(kiln_oci::rfc3339_utc(epoch));
    }
    let layers: Vec<Descriptor> = target
        .layers
        .iter()
        .map(|l| compressor.descriptor(l).map_err(ExportError::Layer))
        .collect::<Result<_, _>>()?;
    let image = assemble_image(config, layers, ManifestFormat::Oci, annotations)
        .map_err(|e| ExportError::Assemble(Box::new(e)))?;
    store
        .put_bytes(image.config.bytes())
        .map_err(ExportError::Store)?;
    store
        .put_bytes(image.manifest.bytes())
        .map_err(ExportError::Store)?;
    Ok(image)
}

/// Whether the image goes only into the local store under `-t` names, so its new layers
/// need not be compressed now (`Compressor::deferred`; `kiln push`/`save` compress them):
/// no `--push`, no `-o`, no `--cache-to`, no attestations, one platform, and no
/// `SOURCE_DATE_EPOCH` (the layer tars a later compression makes from the snapshots
/// must be the ones the build hashed, and those clamp their times to the build's epoch),
/// and the default compression (the one `kiln push` uses).
pub(crate) fn defers_compression(builder: &Builder, platforms: usize) -> bool {
    builder.compression == kiln_oci::Compression::default()
        && !builder.tags.is_empty()
        && !builder.push
        && builder.outputs.is_empty()
        && builder.cache_to.is_empty()
        && !builder.attest.is_enabled()
        && platforms == 1
        && builder.source_date_epoch.is_none()
}

/// Whether an output needs the image's layer bytes here: an archive, a directory, or a name
/// kept in the local store and not pushed. A pushed image whose layers came from a registry
/// cache needs none: the registry has them or mounts them.
pub(crate) fn needs_local_blobs(builder: &Builder) -> bool {
    let pushed_tags = builder.push;
    (!builder.tags.is_empty() && !pushed_tags)
        || builder.outputs.iter().any(|o| match &o.output {
            Output::Image { push, .. } => !push,
            _ => true,
        })
}

/// What the export made: the names kept in the local store, and the image the build's
/// outcome names (the first output's, when its `-o` keys encode it otherwise).
pub(crate) struct Exported {
    pub(crate) tagged: Vec<String>,
    pub(crate) primary: Option<Built>,
}

/// A set of names that get one image: `-t` (with `--push`), or a `type=image` output.
struct Target<'a> {
    names: Vec<String>,
    push: bool,
    options: Option<&'a ExportOptions>,
}

/// Writes every output; returns the names stored locally.
pub(crate) fn export(
    builder: &Builder,
    store: &Store,
    built: &Built,
    lazy: &LazyLayers,
    events: &dyn EventSink,
    attestations: Option<&Attestations>,
) -> Result<Exported, BuildError> {
    let _span = tracing::debug_span!("export_outputs").entered();
    // buildx: a `type=image` output without `name=` takes the `-t` names.
    let image_outputs: Vec<(&Vec<String>, bool, &ExportOptions)> = builder
        .outputs
        .iter()
        .filter_map(|spec| match &spec.output {
            Output::Image { names, push } => Some((names, *push, &spec.options)),
            _ => None,
        })
        .collect();
    let mut targets = Vec::new();
    if !builder.tags.is_empty() && !image_outputs.iter().any(|(names, ..)| names.is_empty()) {
        targets.push(Target {
            names: builder.tags.clone(),
            push: builder.push,
            options: None,
        });
    }
    for (names, push, options) in image_outputs {
        targets.push(Target {
            names: if names.is_empty() {
                builder.tags.clone()
            } else {
                names.clone()
            },
            push: push || builder.push,
            options: Some(options),
        });
    }
    // Each encoding an output asks for is made once.
    let mut variants: Vec<(Encoding, Built)> = Vec::new();
    let encoded = |options: Option<&ExportOptions>,
                   variants: &mut Vec<(Encoding, Built)>|
     -> Result<Option<usize>, ExportError> {
        let Some(encoding) = encoding_of(builder, options) else {
            return Ok(None);
        };
        if let Some(i) = variants.iter().position(|(e, _)| *e == encoding) {
            return Ok(Some(i));
        }
        let image = built.encoded(store, &encoding, builder.source_date_epoch)?;
        variants.push((encoding, image));
        Ok(Some(variants.len() - 1))
    };
    let mut tagged = Vec::new();
    for target in &targets {
        let variant = encoded(target.options, &mut variants)?;
        let image = variant.map_or(built, |i| &variants[i].1);
        let attested;
        let image = match attestations {
            Some(attestations) => {
                attested = attach(store, image, &target.names, attestations)?;
                &attested
            }
            None => image,
        };
        let descriptor = image.top();
        // Like `buildx --push`, an image whose layers are still only in a registry cache is
        // pushed, not kept here: the store holds no image it lacks the blobs of.
        let complete = image
            .images()
            .flat_map(|(_, i)| &i.manifest.value().layers)
            .all(|l| !lazy.is_pending(&l.digest));
        let store_it = target.options.is_none_or(|o| o.store) && (complete || !target.push);
        if store_it {
            for name in &target.names {
                let reference =
                    ImageRef::parse(name).map_err(|source| ExportError::InvalidName {
                        name: name.clone(),
                        source,
                    })?;
                // Re-tagging the same image is a no-op: skip the atomic write and its fsyncs.
                let current = store.resolve_ref(&reference).map_err(ExportError::Store)?;
                if current.as_ref() != Some(&descriptor.digest) {
                    store
                        .set_ref(&reference, &descriptor.digest)
                        .map_err(ExportError::Store)?;
                }
                tagged.push(name.clone());
            }
        }
        if target.push && !target.names.is_empty() {
            let by_digest = target.options.is_some_and(|o| o.push_by_digest);
            push(builder, lazy, &descriptor, &target.names, by_digest, events)?;
        }
    }
    let options = ArchiveOptions {
        mtime: builder
            .source_date_epoch
            .and_then(|e| u64::try_from(e).ok())
            .unwrap_or(0),
        platform: None,
    };
    for spec in &builder.outputs {
        let output = &spec.output;
        if matches!(output, Output::DockerTar(_)) && built.is_multi_platform() {
            // Refused before the build; again here, should an embedder get this far.
            return Err(multi_platform_docker(builder, output).into());
        }
        if matches!(output, Output::Image { .. }) {
            continue;
        }
        let variant = encoded(Some(&spec.options), &mut variants)?;
        let image = variant.map_or(built, |i| &variants[i].1);
        let names = if spec.options.names.is_empty() {
            &builder.tags
        } else {
            &spec.options.names
        };
        let attested;
        let image = match attestations {
            Some(attestations) if !matches!(output, Output::Local(_) | Output::Tar(_)) => {
                attested = attach(store, image, names, attestations)?;
                &attested
            }
            _ => image,
        };
        let export_image = names.iter().fold(
            ExportImage::new(layout_descriptor(builder, image, &spec.options)),
            |img, n| img.named(n),
        );
        // Configs and manifests from memory, the index and layers from the store.
        let mut blobs = MemoryBlobs::with_fallback(store);
        for (_, image) in image.images() {
            blobs.insert(image.config.bytes().to_vec());
            blobs.insert(image.manifest.bytes().to_vec());
        }
        match output {
            Output::OciTar(_) | Output::DockerTar(_) if output.is_stdout() => {
                let stdout = std::io::stdout().lock();
                let out = std::io::BufWriter::with_capacity(1 << 20, stdout);
                let image = std::slice::from_ref(&export_image);
                let written = if let Output::OciTar(_) = output {
                    write_oci_archive_to(out, &blobs, image, &options)
                } else {
                    write_docker_archive_to(out, &blobs, image, &options)
                };
                written
                    .map_err(|source| ExportError::StdoutArchive {
                        output: output.to_string(),
                        source,
                    })?
                    .flush()
                    .map_err(|source| ExportError::Stdout {
                        output: output.to_string(),
                        source,
                    })?;
            }
            Output::OciTar(dest) => {
                write_oci_archive(dest, &blobs, std::slice::from_ref(&export_image), &options)
                    .map_err(|source| archive_error(dest, source))?;
            }
            Output::OciDir(dest) => {
                write_oci_layout_dir(dest, &blobs, std::slice::from_ref(&export_image))
                    .map_err(|source| archive_error(dest, source))?;
            }
            Output::DockerTar(dest) => {
                write_docker_archive(dest, &blobs, std::slice::from_ref(&export_image), &options)
                    .map_err(|source| archive_error(dest, source))?;
            }
            Output::Local(dest) => write_local(store, built, dest, attestations, builder)?,
            Output::Tar(dest) => {
                write_rootfs_tar(store, built, output, dest, attestations, builder)?;
            }
            Output::Image { .. } => {}
        }
    }
    // The first output's encoding names the build's image, as buildx's one exporter; with
    // no `-o`, the `-t` image's (annotated by `--annotation`).
    let mut primary = encoding_of(builder, builder.outputs.first().map(|spec| &spec.options))
        .and_then(|encoding| variants.iter().position(|(e, _)| *e == encoding))
        .map(|i| variants.swap_remove(i).1);
    // With attestations, the build's image is the index that lists them (named as the first
    // output names it, as its statements' subjects are).
    if let Some(attestations) = attestations {
        let names = match builder.outputs.first().map(|spec| &spec.output) {
            Some(Output::Image { names, .. }) if !names.is_empty() => names,
            Some(output) if !matches!(output, Output::Image { .. }) => {
                let options = &builder.outputs[0].options;
                if options.names.is_empty() {
                    &builder.tags
                } else {
                    &options.names
                }
            }
            _ => &builder.tags,
        };
        let attached = attach(
            store,
            primary.as_ref().unwrap_or(built),
            names,
            attestations,
        )?;
        primary = Some(attached);
    }
    Ok(Exported { tagged, primary })
}

/// `image` with an attestation manifest per platform image in its index: statements of
/// each platform's predicates about its manifest, the subjects named after `names`.
fn attach(
    store: &Store,
    image: &Built,
    names: &[String],
    attestations: &Attestations,
) -> Result<Built, ExportError> {
    let mut manifests = Vec::new();
    for ((platform, assembled), predicates) in image.images().zip(&attestations.platforms) {
        let descriptor = assembled.manifest_descriptor();
        let subjects = attest::statement::image_subjects(names, platform, &descriptor.digest);
        let statements = attest::statements_for(predicates, &subjects);
        let manifest =
            attest::manifest::attestation_manifest(&descriptor, &statements).map_err(|e| {
                ExportError::Index(format!(
                    "making the attestation manifest of {}: {e}",
                    descriptor.digest
                ))
            })?;
        manifests.push(manifest);
    }
    image.with_attestations(store, manifests)
}

/// Writes the statements of `type=local`/`type=tar` into the flattened root filesystem in
/// `dir` (each platform's into its directory), as BuildKit's local exporter does.
fn write_local_attestations(
    built: &Built,
    dir: &Path,
    attestations: Option<&Attestations>,
    builder: &Builder,
) -> Result<(), ExportError> {
    let Some(attestations) = attestations else {
        return Ok(());
    };
    for ((platform, _), predicates) in built.images().zip(&attestations.platforms) {
        let target = if built.is_multi_platform() {
            dir.join(Built::platform_dir(platform))
        } else {
            dir.to_owned()
        };
        attest::write_local_statements(&target, predicates, builder.source_date_epoch)
            .map_err(|e| ExportError::Attestation(Box::new(e)))?;
    }
    Ok(())
}

/// The encoding an output asks for (its `-o` keys, `None` for `-t`; the `--annotation`s),
/// when it is not the build's own.
fn encoding_of(builder: &Builder, options: Option<&ExportOptions>) -> Option<Encoding> {
    let default = ExportOptions::default();
    let options = options.unwrap_or(&default);
    let annotations = builder.annotations.merged(&options.annotations);
    if options.is_default_encoding(builder.compression) && annotations.is_empty() {
        return None;
    }
    let compression = options.compression.unwrap_or(builder.compression);
    Some(Encoding {
        compression,
        force: options.force_compression,
        keep_layers: compression == builder.compression && !options.force_compression,
        format: if options.oci_mediatypes == Some(false) {
            ManifestFormat::Docker
        } else {
            ManifestFormat::Oci
        },
        annotations,
    })
}

/// The descriptor an OCI layout's `index.json` (or a docker archive's) records for `image`:
/// the index with its `index-descriptor` annotations, or the one manifest with its
/// `manifest-descriptor` ones.
fn layout_descriptor(builder: &Builder, image: &Built, options: &ExportOptions) -> Descriptor {
    let annotations = builder.annotations.merged(&options.annotations);
    let mut descriptor = image.top();
    let extra = if image.index().is_some() {
        annotations.at(AnnotationLevel::IndexDescriptor, None)
    } else {
        let platform = image.images().next().map(|(p, _)| p);
        annotations.at(AnnotationLevel::ManifestDescriptor, platform)
    };
    descriptor.annotations.extend(extra);
    descriptor
}

/// `type=docker` of a multi-platform build: refused, as buildx does.
pub(crate) fn multi_platform_docker(
    builder: &Builder,
    output: &Output,
) -> super::error::OptionsError {
    super::error::OptionsError::DockerArchiveMultiPlatform {
        output: output.to_string(),
        platforms: builder
            .target_platforms()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Flattens the root filesystem of each image of `built` into `dir`: into `dir` itself for a
/// one-platform build, into `dir/linux_amd64`, `dir/linux_arm64`, … for a multi-platform
/// one (buildx's layout).
fn flatten_platforms(store: &Store, built: &Built, dir: &Path) -> Result<(), ExportError> {
    for (platform, image) in built.images() {
        let blobs: Vec<_> = image
            .manifest
            .value()
            .layers
            .iter()
            .map(|d| d.digest.clone())
            .collect();
        let target = if built.is_multi_platform() {
            dir.join(Built::platform_dir(platform))
        } else {
            dir.to_owned()
        };
        store.flatten_to(&target, &blobs)?;
    }
    Ok(())
}

fn archive_error(dest: &Path, source: kiln_oci::LayoutError) -> ExportError {
    ExportError::Archive {
        path: dest.to_path_buf(),
        source,
    }
}

fn export_io(action: &'static str, path: &Path, source: std::io::Error) -> ExportError {
    ExportError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn write_local(
    store: &Store,
    built: &Built,
    dest: &Path,
    attestations: Option<&Attestations>,
    builder: &Builder,
) -> Result<(), ExportError> {
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs_err::create_dir_all(parent).map_err(ExportError::Fs)?;
    let temp = tempfile::Builder::new()
        .prefix(".kiln-local-")
        .tempdir_in(parent)
        .map_err(|e| export_io("creating a temporary directory in", parent, e))?;
    flatten_platforms(store, built, temp.path())?;
    write_local_attestations(built, temp.path(), attestations, builder)?;
    // Checked before the build too; again here, since the destination may have changed.
    Output::Local(dest.to_owned()).check_destination()?;
    if fs_err::symlink_metadata(dest).is_ok() {
        fs_err::remove_dir(dest).map_err(ExportError::Fs)?;
    }
    let kept = temp.keep();
    fs_err::rename(&kept, dest).map_err(|e| {
        let _ = fs_err::remove_dir_all(&kept);
        ExportError::Fs(e)
    })?;
    Ok(())
}

/// `type=tar`: the root filesystem `type=local` would write (one directory per platform for
/// a multi-platform build), flattened into a temporary directory and written as one tar
/// (sorted, so the same image gives the same tar), to a temporary file beside `dest` renamed
/// into place, or to stdout for `dest=-`.
fn write_rootfs_tar(
    store: &Store,
    built: &Built,
    output: &Output,
    dest: &Path,
    attestations: Option<&Attestations>,
    builder: &Builder,
) -> Result<(), ExportError> {
    // Flattened in the store's tmp, private to its owner as the image's files (setuid
    // binaries, device nodes) need; only the tar is written beside `dest`.
    let scratch = store.root().join("tmp");
    fs_err::create_dir_all(&scratch).map_err(ExportError::Fs)?;
    let rootfs = tempfile::Builder::new()
        .prefix("rootfs-")
        .tempdir_in(&scratch)
        .map_err(|e| export_io("creating a temporary directory in", &scratch, e))?;
    flatten_platforms(store, built, rootfs.path())?;
    write_local_attestations(built, rootfs.path(), attestations, builder)?;
    let tar_error = |source| ExportError::RootfsTar {
        output: output.to_string(),
        source,
    };
    if output.is_stdout() {
        let stdout = std::io::stdout().lock();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout);
        kiln_oci::DiffTar::new(rootfs.path())
            .write_to(&mut out)
            .map_err(tar_error)?;
        out.flush().map_err(|source| ExportError::Stdout {
            output: output.to_string(),
            source,
        })?;
        return Ok(());
    }
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs_err::create_dir_all(parent).map_err(ExportError::Fs)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".kiln-tar-")
        .tempfile_in(parent)
        .map_err(|e| export_io("creating a temporary file in", parent, e))?;
    let temp_path = temp.path().to_path_buf();
    {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, temp.as_file_mut());
        kiln_oci::DiffTar::new(rootfs.path())
            .write_to(&mut out)
            .map_err(tar_error)?;
        out.flush()
            .map_err(|e| export_io("writing", &temp_path, e))?;
    }
    // Checked before the build too; again here, since the destination may have changed.
    output.check_destination()?;
    temp.persist(dest)
        .map_err(|e| export_io("renaming a temporary file to", dest, e.error))?;
    Ok(())
}

/// Pushes `image` to `names` (`push-by-digest`: to each name's repository by digest, with no
/// tag).
fn push(
    builder: &Builder,
    lazy: &LazyLayers,
    image: &Descriptor,
    names: &[String],
    by_digest: bool,
    events: &dyn EventSink,
) -> Result<(), ExportError> {
    let targets = names
        .iter()
        .map(|n| {
            let reference = ImageRef::parse(n).map_err(|source| ExportError::InvalidName {
                name: n.clone(),
                source,
            })?;
            if !by_digest {
                return Ok(reference);
            }
            ImageRef::parse(&format!("{}@{}", reference.name(), image.digest)).map_err(|source| {
                ExportError::InvalidName {
                    name: n.clone(),
                    source,
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut config = kiln_registry::ClientConfig::new();
    for host in &builder.insecure_registries {
        config = config.insecure_registry(host.clone());
    }
    let client =
        kiln_registry::Client::new(config).map_err(|e| ExportError::Client(Box::new(e)))?;
    for (digest, registry, repository) in lazy.pending_origins() {
        client.record_blob_origin(&registry, &repository, &digest);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ExportError::Runtime)?;
    runtime
        .block_on(client.push_image(&lazy.source(), &image.digest, &targets))
        .map_err(|source| ExportError::Push {
            names: names.join(", "),
            source: Box::new(source),
        })?;
    for (name, target) in names.iter().zip(&targets) {
        events.emit(Event::Pushed {
            reference: if by_digest {
                target.to_string()
            } else {
                name.clone()
            },
        });
    }
    Ok(())
}
