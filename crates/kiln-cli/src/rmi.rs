//! `kiln rmi NAME…`: removes image names from the local store, like `docker rmi`. The blobs
//! stay until `kiln prune` finds nothing else uses them.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use kiln_oci::ImageRef;
use kiln_store::LockMode;

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
        .map(|t| ImageRef::parse(t).with_context(|| format!("image name `{t}`")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let store = crate::root::open_store(root)?;
    let _lock = store.lock(LockMode::Shared)?;
    let mut missing = Vec::new();
    let mut out = std::io::stdout().lock();
    for name in &names {
        if store.delete_ref(name)? {
            writeln!(out, "Untagged: {}", name.familiar()).context("writing to stdout")?;
        } else {
            missing.push(name.familiar());
        }
    }
    if !missing.is_empty() && !args.force {
        bail!("no such image: {} (see `kiln images`)", missing.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
