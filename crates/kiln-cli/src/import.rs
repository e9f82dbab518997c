//! `kiln import ROOTFS_DIR|ROOTFS.tar[.gz|.zst]`: a one-layer image from a root filesystem,
//! like `docker import` — stored under `-t NAME` and/or written with `-o`.

mod change;
mod tar_source;

use std::fs::File;
use std::io::{BufReader, BufWriter, Write as _};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use kiln_oci::{
    ArchiveOptions, Compression, Descriptor, DiffTar, ExportImage, History, ImageConfiguration,
    ImageRef, LayerWriter, ManifestFormat, MediaType, Platform, assemble_image, rfc3339_utc,
};
use kiln_store::{LockMode, Store};

/// Arguments of `kiln import`.
#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// A root filesystem: a directory, or a tar archive (plain, gzip or zstd); `-` reads the
    /// archive from standard input.
    #[arg(value_name = "ROOTFS_DIR|ROOTFS.tar")]
    source: PathBuf,
    /// Name (and tag) to store the image under, e.g. `busybox:latest`.
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    tags: Vec<String>,
    /// Dockerfile instruction applied to the config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL,
    /// USER, WORKDIR, VOLUME, STOPSIGNAL); repeatable.
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    changes: Vec<String>,
    /// Commit message for the history entry.
    #[arg(short = 'm', long = "message", value_name = "MSG")]
    message: Option<String>,
    /// Platform recorded in the config (default: the host's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// Output: `type=oci,dest=FILE.tar`, `type=oci,dest=DIR,tar=false`,
    /// `type=docker,dest=FILE.tar`, `type=local,dest=DIR`; repeatable.
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    outputs: Vec<String>,
    /// Layer compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    compression: CompressionArg,
    /// Compression threads (default: all cores); the output is the same for any number.
    #[arg(long, value_name = "N")]
    compression_threads: Option<NonZeroUsize>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CompressionArg {
    Gzip,
    Zstd,
    None,
}

/// One `-o` destination.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Output {
    OciTar(PathBuf),
    OciDir(PathBuf),
    DockerTar(PathBuf),
    Local(PathBuf),
}

fn parse_output(spec: &str) -> anyhow::Result<Output> {
    if !spec.contains('=') {
        // docker buildx: `-o DIR` is `type=local,dest=DIR`.
        return Ok(Output::Local(PathBuf::from(spec)));
    }
    let mut kind = None;
    let mut dest = None;
    let mut is_tar = true;
    for part in spec.split(',') {
        let (key, value) = part
            .split_once('=')
            .with_context(|| format!("--output `{spec}`: `{part}` is not key=value"))?;
        match key.trim() {
            "type" => kind = Some(value.trim().to_owned()),
            "dest" => dest = Some(PathBuf::from(value.trim())),
            "tar" => {
                is_tar = match value.trim() {
                    "true" => true,
                    "false" => false,
                    other => bail!("--output `{spec}`: tar must be true or false, not `{other}`"),
                }
            }
            "name" | "oci-mediatypes" | "compression" => {}
            other => bail!("--output `{spec}`: unknown option `{other}`"),
        }
    }
    let dest = dest.with_context(|| format!("--output `{spec}`: dest=PATH is required"))?;
    match kind.as_deref() {
        Some("oci") if is_tar => Ok(Output::OciTar(dest)),
        Some("oci") => Ok(Output::OciDir(dest)),
        Some("docker") => Ok(Output::DockerTar(dest)),
        Some("local") => Ok(Output::Local(dest)),
        Some(other) => bail!("--output `{spec}`: unsupported type `{other}` (oci, docker, local)"),
        None => bail!("--output `{spec}`: type= is required (oci, docker, local)"),
    }
}

/// SOURCE_DATE_EPOCH from the environment, if set.
pub(crate) fn source_date_epoch() -> anyhow::Result<Option<i64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => v
            .trim()
            .parse::<i64>()
            .map(Some)
            .with_context(|| format!("SOURCE_DATE_EPOCH=`{v}` is not a number of seconds")),
        Err(_) => Ok(None),
    }
}

/// Runs `kiln import`.
pub(crate) fn run(args: &ImportArgs, root: Option<&Path>) -> anyhow::Result<ExitCode> {
    // Validate everything before touching the store.
    let is_stdin = args.source.as_os_str() == "-";
    let is_dir = !is_stdin
        && std::fs::metadata(&args.source)
            .with_context(|| format!("cannot import {}", args.source.display()))?
            .is_dir();
    let names = args
        .tags
        .iter()
        .map(|t| ImageRef::parse(t).with_context(|| format!("-t `{t}`")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let outputs = args
        .outputs
        .iter()
        .map(|o| parse_output(o))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let platform = match &args.platform {
        Some(p) => p
            .parse::<Platform>()
            .with_context(|| format!("--platform `{p}`"))?,
        None => Platform::host(),
    };
    let epoch = source_date_epoch()?;
    let mut config = ImageConfiguration::new(&platform);
    let mut changes = change::Changes::default();
    for text in &args.changes {
        changes.apply(text, &mut config.config)?;
    }

    let store = crate::root::open_store(root)?;
    let _lock = store.lock(LockMode::Shared)?;
    let compression = match args.compression {
        CompressionArg::Gzip => Compression::gzip(),
        CompressionArg::Zstd => Compression::zstd(),
        CompressionArg::None => Compression::None,
    };
    let threads = args
        .compression_threads
        .unwrap_or_else(kiln_oci::default_threads);
    let (layer, diff_id) = write_layer(&store, &args.source, is_dir, compression, threads, epoch)?;

    let created = rfc3339_utc(epoch.unwrap_or_else(now_seconds));
    config.created = Some(created.clone());
    config.rootfs.diff_ids = vec![diff_id];
    let source_name = args
        .source
        .file_name()
        .map_or_else(|| "-".to_owned(), |n| n.to_string_lossy().into_owned());
    config.history = vec![History {
        created: Some(created),
        created_by: "kiln import".to_owned(),
        comment: args
            .message
            .clone()
            .unwrap_or_else(|| format!("Imported from {source_name}")),
        ..History::default()
    }];
    let image = assemble_image(
        config,
        vec![layer],
        ManifestFormat::Oci,
        std::collections::BTreeMap::new(),
    )
    .context("assembling the image")?;
    store.put_bytes(image.config.bytes())?;
    let manifest = store.put_bytes(image.manifest.bytes())?;
    for name in &names {
        store.set_ref(name, &manifest)?;
        eprintln!("tagged {name}");
    }
    write_outputs(
        &store,
        &image.manifest_descriptor(),
        &names,
        &outputs,
        epoch,
    )?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", image.config_digest()).context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Writes the layer blob into the store; returns its descriptor and diff id.
fn write_layer(
    store: &Store,
    source: &Path,
    is_dir: bool,
    compression: Compression,
    threads: NonZeroUsize,
    epoch: Option<i64>,
) -> anyhow::Result<(Descriptor, kiln_oci::DiffId)> {
    let blob = store.begin_blob(None, None)?;
    let mut layer = LayerWriter::with_threads(
        BufWriter::with_capacity(1 << 20, blob),
        compression,
        threads,
    )
    .context("starting the layer compressor")?;
    if is_dir {
        let mut tar = DiffTar::new(source);
        if let Some(epoch) = epoch {
            tar = tar.source_date_epoch(epoch);
        }
        tar.write_to(&mut layer)
            .with_context(|| format!("archiving {}", source.display()))?;
    } else {
        let input: Box<dyn std::io::Read + Send> = if source.as_os_str() == "-" {
            Box::new(std::io::stdin())
        } else {
            Box::new(File::open(source).with_context(|| format!("opening {}", source.display()))?)
        };
        let (_, decoded) = kiln_oci::decompress(BufReader::with_capacity(1 << 20, input))
            .with_context(|| format!("reading {}", source.display()))?;
        tar_source::reencode_tar(decoded, &mut layer, epoch, source)?;
    }
    let (out, digests) = layer.finish().context("finishing the layer")?;
    let mut blob = out
        .into_inner()
        .map_err(std::io::IntoInnerError::into_error)
        .context("flushing the layer")?;
    blob.flush().context("flushing the layer")?;
    let digest = blob.commit()?;
    if digest != digests.digest {
        bail!(
            "layer written as {digest} but hashed as {} while compressing",
            digests.digest
        );
    }
    let media_type = MediaType::oci_layer(compression.kind());
    Ok((
        Descriptor::new(media_type, digest, digests.size),
        digests.diff_id,
    ))
}

/// Writes the image to each `-o` destination.
fn write_outputs(
    store: &Store,
    descriptor: &Descriptor,
    names: &[ImageRef],
    outputs: &[Output],
    epoch: Option<i64>,
) -> anyhow::Result<()> {
    let options = ArchiveOptions {
        mtime: epoch.and_then(|e| u64::try_from(e).ok()).unwrap_or(0),
        platform: None,
    };
    for output in outputs {
        match output {
            Output::OciTar(dest) => {
                let image = export_image(descriptor, names, false);
                kiln_oci::write_oci_archive(dest, store, &[image], &options)
                    .with_context(|| format!("writing {}", dest.display()))?;
                eprintln!("wrote OCI archive {}", dest.display());
            }
            Output::OciDir(dest) => {
                let image = export_image(descriptor, names, false);
                kiln_oci::write_oci_layout_dir(dest, store, &[image])
                    .with_context(|| format!("writing {}", dest.display()))?;
                eprintln!("wrote OCI layout {}", dest.display());
            }
            Output::DockerTar(dest) => {
                let image = export_image(descriptor, names, true);
                kiln_oci::write_docker_archive(dest, store, &[image], &options)
                    .with_context(|| format!("writing {}", dest.display()))?;
                eprintln!("wrote docker archive {}", dest.display());
            }
            Output::Local(dest) => {
                let resolved = store.resolve_image(&descriptor.digest, None)?;
                let layers: Vec<_> = resolved
                    .manifest
                    .value()
                    .layers
                    .iter()
                    .map(|l| l.digest.clone())
                    .collect();
                write_local(store, dest, &layers)?;
                eprintln!("wrote root filesystem {}", dest.display());
            }
        }
    }
    Ok(())
}

fn export_image(descriptor: &Descriptor, names: &[ImageRef], is_docker: bool) -> ExportImage {
    let mut image = ExportImage::new(descriptor.clone());
    for name in names {
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

/// `type=local`: the root filesystem, unpacked in a sibling temp dir and renamed into place
/// so no half-written tree is ever at `dest`.
fn write_local(store: &Store, dest: &Path, layers: &[kiln_oci::Digest]) -> anyhow::Result<()> {
    if let Ok(mut entries) = std::fs::read_dir(dest)
        && entries.next().is_some()
    {
        bail!(
            "--output type=local: {} exists and is not empty",
            dest.display()
        );
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".kiln-local-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a temp dir in {}", parent.display()))?;
    store.flatten_to(staging.path(), layers)?;
    let _ = std::fs::remove_dir(dest);
    let staged = staging.keep();
    std::fs::rename(&staged, dest).with_context(|| format!("renaming into {}", dest.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_specs() {
        assert_eq!(
            parse_output("type=oci,dest=o.tar").unwrap(),
            Output::OciTar("o.tar".into())
        );
        assert_eq!(
            parse_output("type=oci,dest=d,tar=false").unwrap(),
            Output::OciDir("d".into())
        );
        assert_eq!(
            parse_output("type=docker,dest=i.tar").unwrap(),
            Output::DockerTar("i.tar".into())
        );
        assert_eq!(
            parse_output("type=local,dest=r").unwrap(),
            Output::Local("r".into())
        );
        assert_eq!(parse_output("out").unwrap(), Output::Local("out".into()));
        assert!(parse_output("type=registry,dest=x").is_err());
        assert!(parse_output("type=oci").is_err());
        assert!(parse_output("type=oci,dest=x,tar=maybe").is_err());
    }
}
