//! `kiln push NAME [REF]...`: uploads an image of the local store to a registry, like
//! `docker push`. Each REF (default: NAME itself) gets the manifest exactly as stored, so the
//! registry's digest equals the local one.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use kiln_oci::ImageRef;
use kiln_registry::Client;
use kiln_store::LockMode;
use std::sync::Arc;

use crate::images::human_size;
use crate::pull::{RegistryArgs, TransferView, runtime};

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
    let store = crate::root::open_store(root)?;
    let _lock = store.lock(LockMode::Shared)?;
    let digest = match name.digest() {
        Some(digest) => digest.clone(),
        None => store
            .require_ref(&name)
            .with_context(|| format!("no local image named {name} (see `kiln images`)"))?,
    };
    let view = TransferView::new(args.quiet);
    let client = Client::new(
        args.registry
            .client_config()
            .progress(Arc::new(view.clone())),
    )?;
    record_mount_hints(&client, &store, &targets);
    let pushed = runtime()?
        .block_on(client.push_image(&store, &digest, &targets))
        .with_context(|| format!("pushing {name}"))?;
    view.finish();
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

/// Local images named after a repository of a target registry probably have their blobs
/// there (they were pulled from it, or pushed): offer those repositories as mount sources,
/// so a push of an image built on a base from the same registry mounts the base layers. A
/// wrong guess costs nothing: the registry answers the mount with a normal upload session.
fn record_mount_hints(client: &Client, store: &kiln_store::Store, targets: &[ImageRef]) {
    let Ok(refs) = store.list_refs() else { return };
    for entry in refs {
        let is_same_registry = targets
            .iter()
            .any(|t| t.registry() == entry.name.registry());
        if !is_same_registry {
            continue;
        }
        let Ok(image) = store.resolve_image(&entry.digest, None) else {
            continue;
        };
        let registry = entry.name.registry();
        let repository = entry.name.repository();
        let manifest = image.manifest.value();
        for descriptor in std::iter::once(&manifest.config).chain(&manifest.layers) {
            client.record_blob_origin(registry, repository, &descriptor.digest);
        }
    }
}
