//! `kiln rmi NAME…`: removes image names from the local store, like `docker rmi`. The blobs
//! stay until `kiln prune` finds nothing else uses them.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use kiln_build::oci::ImageRef;

/// Arguments of `kiln rmi`.
#[derive(Debug, Args)]
pub(crate) struct RmiArgs {
    /// Image names to remove.
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
    /// Do not fail when a name is not in the store.
    #[arg(short, long)]
    force: bool,
}

/// Runs `kiln rmi`.
pub(crate) fn run(args: &RmiArgs, root: Option<&Path>) -> anyhow::Result<ExitCode> {
    let names = args
        .names
        .iter()
        .map(|t| kiln_build::parse_image_name(t))
        .collect::<Result<Vec<_>, _>>()?;
    let store = kiln_build::open_store(root)?;
    let untagged = kiln_build::untag_images(&store, &names)?;
    let mut out = std::io::stdout().lock();
    for name in &untagged.removed {
        writeln!(out, "Untagged: {}", name.familiar()).context("writing to stdout")?;
    }
    if !untagged.missing.is_empty() && !args.force {
        let missing: Vec<String> = untagged.missing.iter().map(ImageRef::familiar).collect();
        bail!("no such image: {} (see `kiln images`)", missing.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
