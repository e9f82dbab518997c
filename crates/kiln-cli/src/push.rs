//! `kiln push NAME [REF]...`: uploads an image of the local store to a registry, like
//! `docker push`. Each REF (default: NAME itself) gets the manifest exactly as stored, so the
//! registry's digest equals the local one.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use kiln_build::oci::ImageRef;

use crate::images::human_size;
use crate::pull::{RegistryArgs, with_transfer_view};

/// Arguments of `kiln push`.
#[derive(Debug, Args)]
pub(crate) struct PushArgs {
    /// The local image to push (a name in `kiln images`).
    name: String,
    /// Where to push it (default: NAME); several are allowed (more tags or repositories).
    targets: Vec<String>,
    /// Print only the pushed digest, no progress.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// Runs `kiln push`.
pub(crate) fn run(args: &PushArgs, root: Option<&Path>) -> anyhow::Result<ExitCode> {
    let name = ImageRef::parse(&args.name)?;
    let targets = if args.targets.is_empty() {
        vec![name.clone()]
    } else {
        args.targets
            .iter()
            .map(|t| ImageRef::parse(t))
            .collect::<Result<Vec<_>, _>>()?
    };
    let pushed = with_transfer_view(root, &args.registry, args.quiet, |store, config| {
        kiln_build::push_image(store, &name, &targets, config)
    })?;
    let digest = pushed.digest;
    if !args.quiet {
        eprintln!(
            "Pushed {digest}: {} uploaded ({}), {} already present, {} mounted",
            pushed.blobs_uploaded,
            human_size(pushed.bytes_uploaded),
            pushed.blobs_present,
            pushed.blobs_mounted
        );
    }
    let mut stdout = std::io::stdout().lock();
    std::io::Write::write_all(&mut stdout, format!("{digest}\n").as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
