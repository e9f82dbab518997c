//! `kiln tag SRC DST`: another name for a local image, like `docker tag`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

/// Arguments of `kiln tag`.
#[derive(Debug, Args)]
pub(crate) struct TagArgs {
    /// The local image: a name or an image ID prefix.
    #[arg(value_name = "SOURCE_IMAGE")]
    source: String,
    /// The new name (`name[:tag]`).
    #[arg(value_name = "TARGET_IMAGE")]
    target: String,
}

/// Runs `kiln tag`.
pub(crate) fn run(args: &TagArgs, root: Option<&Path>) -> anyhow::Result<ExitCode> {
    let target = kiln_build::parse_image_name(&args.target)
        .with_context(|| format!("target name `{}`", args.target))?;
    let store = kiln_build::open_store(root)?;
    kiln_build::tag_image(&store, &args.source, &target)?;
    Ok(ExitCode::SUCCESS)
}
