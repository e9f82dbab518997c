//! `kiln import ROOTFS_DIR|ROOTFS.tar[.gz|.zst]`: a one-layer image from a root filesystem,
//! like `docker import` — stored under `-t NAME` (joining the other platforms NAME holds)
//! and/or written with `-o`. The import itself
//! is `kiln_build::Import`; this module maps the flags and prints what it did.

use std::io::Write as _;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use kiln_build::oci::{Compression, ImageRef, Platform};
use kiln_build::{Import, ImportOutput, ImportStep};

/// Arguments of `kiln import`.
#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// A root filesystem: a directory, or a tar archive (plain, gzip or zstd); `-` reads the
    /// archive from standard input.
    #[arg(value_name = "ROOTFS_DIR|ROOTFS.tar")]
    source: PathBuf,
    /// Name (and tag) to store the image under, e.g. `busybox:latest`. When NAME already
    /// holds an image (or an index) for other platforms, NAME becomes an index of those
    /// platforms plus this one (an image of the same platform is replaced); `kiln import
    /// --platform linux/amd64 -t app …` then `--platform linux/arm64 -t app …` makes a
    /// two-platform `app`.
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

/// SOURCE_DATE_EPOCH from the environment, if set.
fn source_date_epoch() -> anyhow::Result<Option<i64>> {
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
    let platform = match &args.platform {
        Some(p) => p
            .parse::<Platform>()
            .with_context(|| format!("--platform `{p}`"))?,
        None => Platform::host(),
    };
    let mut import = Import::new(&args.source, &platform)?;
    for tag in &args.tags {
        import = import.tag(ImageRef::parse(tag).with_context(|| format!("-t `{tag}`"))?);
    }
    for spec in &args.outputs {
        import = import.output(spec.parse::<ImportOutput>()?);
    }
    if let Some(epoch) = source_date_epoch()? {
        import = import.source_date_epoch(epoch);
    }
    for change in &args.changes {
        import = import.change(change)?;
    }
    if let Some(message) = &args.message {
        import = import.message(message);
    }
    if let Some(threads) = args.compression_threads {
        import = import.compression_threads(threads);
    }
    import = import.compression(match args.compression {
        CompressionArg::Gzip => Compression::gzip(),
        CompressionArg::Zstd => Compression::zstd(),
        CompressionArg::None => Compression::None,
    });

    let store = kiln_build::open_store(root)?;
    let outcome = import.run(&store, &mut |step| match step {
        ImportStep::Tagged(name) => eprintln!("tagged {name}"),
        ImportStep::Platforms(name, platforms) => {
            let list: Vec<String> = platforms.iter().map(ToString::to_string).collect();
            eprintln!("{name} now holds platforms: {}", list.join(", "));
        }
        ImportStep::Wrote(output) => {
            let what = match output {
                ImportOutput::OciTar(_) => "OCI archive",
                ImportOutput::OciDir(_) => "OCI layout",
                ImportOutput::DockerTar(_) => "docker archive",
                _ => "root filesystem",
            };
            eprintln!("wrote {what} {}", output.dest().display());
        }
        _ => {}
    })?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", outcome.config_digest).context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}
