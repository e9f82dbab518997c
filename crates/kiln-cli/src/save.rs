//! `kiln save NAME… [-o FILE] [--format docker|oci]`: local images into one tar, like
//! `docker save`; `kiln load [-i FILE]`: images from one, like `docker load`.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use kiln_build::ArchiveFormat;
use kiln_build::oci::Platform;

/// Arguments of `kiln save`.
#[derive(Debug, Args)]
pub(crate) struct SaveArgs {
    /// Images in the local store: names or image ID prefixes.
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
    /// Write to this file (atomically) instead of standard output; `-` is standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// The archive's layout: `docker` (as `docker save` writes) or `oci` (an OCI layout).
    #[arg(long, value_enum, default_value_t = FormatArg::Docker)]
    format: FormatArg,
    /// For a multi-platform image in a docker archive (one image per name): the platform to
    /// save (default: this host's). An OCI archive keeps every platform.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = crate::flags::parse_platform)]
    platform: Option<Platform>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    Docker,
    Oci,
}

/// Runs `kiln save`.
pub(crate) fn run_save(args: &SaveArgs, root: Option<&Path>) -> anyhow::Result<ExitCode> {
    let format = match args.format {
        FormatArg::Docker => ArchiveFormat::Docker,
        FormatArg::Oci => ArchiveFormat::Oci,
    };
    let dest = args.output.as_deref().filter(|p| *p != Path::new("-"));
    if dest.is_none() && std::io::stdout().is_terminal() {
        // docker save: "cowardly refusing to save to a terminal".
        bail!(
            "refusing to write an image archive to a terminal: use `-o FILE` or redirect \
             standard output"
        );
    }
    let store = kiln_build::open_store(root)?;
    if let Some(dest) = dest {
        kiln_build::save_images(&store, &args.names, format, args.platform.as_ref(), dest)?;
    } else {
        let stdout = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
        kiln_build::save_images_to(&store, &args.names, format, args.platform.as_ref(), stdout)?
            .flush()
            .context("writing the archive to standard output")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `kiln load`.
#[derive(Debug, Args)]
pub(crate) struct LoadArgs {
    /// Read from this tar (a docker-archive or an OCI archive) instead of standard input.
    #[arg(short, long, value_name = "FILE")]
    input: Option<PathBuf>,
}

/// Runs `kiln load`.
pub(crate) fn run_load(args: &LoadArgs, root: Option<&Path>) -> anyhow::Result<ExitCode> {
    let source = args.input.as_deref().filter(|p| *p != Path::new("-"));
    if source.is_none() && std::io::stdin().is_terminal() {
        // docker load: "requested load from stdin, but stdin is empty".
        bail!("no image archive on standard input: use `-i FILE` or redirect standard input");
    }
    let store = kiln_build::open_store(root)?;
    let loaded = match source {
        Some(path) => kiln_build::load_images(&store, path)?,
        None => kiln_build::load_images_from(&store, &mut std::io::stdin().lock())?,
    };
    let mut out = std::io::stdout().lock();
    for image in &loaded {
        if image.names.is_empty() {
            writeln!(out, "Loaded image ID: {}", image.id).context("writing to stdout")?;
            continue;
        }
        for name in &image.names {
            writeln!(out, "Loaded image: {}", name.familiar()).context("writing to stdout")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
