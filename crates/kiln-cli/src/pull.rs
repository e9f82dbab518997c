//! `kiln pull REF [--platform P[,P…]]`: fetches an image (one or more platforms of it) from a
//! registry into the local store and names it REF, like `docker pull`. Also home of the
//! transfer progress view shared with `kiln push`: indicatif bars on a TTY, one plain line
//! per blob otherwise.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::Args;
use kiln_build::oci::{Digest, ImageRef, Platform};
use kiln_build::{
    BlobOutcome, ClientConfig, Direction, ImageError, Store, TransferEvent, TransferProgress,
};

/// Registry connection flags shared by `pull`, `push` and `login`.
#[derive(Debug, Clone, Args)]
pub(crate) struct RegistryArgs {
    /// Allow plain HTTP (or HTTPS without certificate checks) to this registry
    /// (`host` or `host:port`; repeatable). Loopback registries never need it.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    insecure_registries: Vec<String>,
    /// How many blobs to transfer at once.
    #[arg(long, default_value_t = kiln_build::DEFAULT_DOWNLOAD_CONCURRENCY, value_name = "N")]
    max_concurrent: usize,
}

impl RegistryArgs {
    /// The client options these flags ask for.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new()
            .download_concurrency(self.max_concurrent)
            .upload_concurrency(self.max_concurrent);
        for host in &self.insecure_registries {
            config = config.insecure_registry(host.clone());
        }
        config
    }
}

/// Arguments of `kiln pull`.
#[derive(Debug, Args)]
pub(crate) struct PullArgs {
    /// The image to pull (`busybox`, `ghcr.io/owner/app:1`, `localhost:5000/x@sha256:…`).
    reference: String,
    /// The platform to pull from a multi-platform image (default: this host's); a comma list
    /// or a repeated flag pulls each. The name keeps pointing at the image's index, so every
    /// platform pulled stays usable under it.
    #[arg(
        long,
        value_name = "OS/ARCH[/VARIANT]",
        value_delimiter = ',',
        value_parser = crate::flags::parse_platform
    )]
    platform: Vec<Platform>,
    /// Print only the pulled reference, no progress.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// Runs `kiln pull`.
pub(crate) fn run(args: &PullArgs, root: Option<&Path>) -> anyhow::Result<ExitCode> {
    let reference = ImageRef::parse(&args.reference)?;
    let platforms = if args.platform.is_empty() {
        vec![Platform::host()]
    } else {
        args.platform.clone()
    };
    let mut tops: Vec<Digest> = Vec::new();
    let mut name = None;
    for platform in &platforms {
        let pulled = with_transfer_view(root, &args.registry, args.quiet, |store, config| {
            kiln_build::pull_image(store, &reference, platform, config)
        })?;
        if let Some(warning) = &pulled.platform_warning {
            eprintln!("WARNING: {warning}");
        }
        if !args.quiet {
            let of_index = if pulled.top == pulled.digest {
                String::new()
            } else {
                format!(" of index {}", pulled.top)
            };
            eprintln!(
                "Digest: {} for {platform}{of_index} ({} downloaded, {} already present, {})",
                pulled.digest,
                pulled.blobs_downloaded,
                pulled.blobs_present,
                crate::images::human_size(pulled.bytes_downloaded)
            );
        }
        if !tops.contains(&pulled.top) {
            tops.push(pulled.top.clone());
        }
        name = Some(pulled.name);
    }
    if !args.quiet
        && let Some(name) = &name
        && let Some(top) = tops.last()
    {
        let store = kiln_build::open_store(root)?;
        let held = kiln_build::platforms_of(&store, top)?;
        if held.len() > 1 {
            eprintln!(
                "{} holds: {}",
                name.familiar(),
                kiln_build::describe_platforms(&held)
            );
        }
    }
    let mut stdout = std::io::stdout().lock();
    for top in tops {
        std::io::Write::write_all(
            &mut stdout,
            format!("{}\n", reference.with_digest(top)).as_bytes(),
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What `kiln pull` and `kiln push` share: opens the store at `root` and runs `transfer` on it
/// with `registry`'s client config reporting to a [`TransferView`] (plain when `quiet`),
/// finishing the view before returning the outcome.
pub(crate) fn with_transfer_view<T>(
    root: Option<&Path>,
    registry: &RegistryArgs,
    quiet: bool,
    transfer: impl FnOnce(&Store, ClientConfig) -> Result<T, ImageError>,
) -> anyhow::Result<T> {
    let store = kiln_build::open_store(root)?;
    let view = TransferView::new(quiet);
    let config = registry.client_config().progress(Arc::new(view.clone()));
    let outcome = transfer(&store, config)?;
    view.finish();
    Ok(outcome)
}

/// Renders [`TransferEvent`]s: one indicatif bar per blob on a TTY, plain lines otherwise.
#[derive(Debug, Clone)]
pub(crate) struct TransferView {
    inner: Arc<ViewInner>,
}

#[derive(Debug)]
struct ViewInner {
    bars: Option<indicatif::MultiProgress>,
    quiet: bool,
    blobs: Mutex<HashMap<Digest, indicatif::ProgressBar>>,
}

impl TransferView {
    pub(crate) fn new(quiet: bool) -> Self {
        let is_tty = std::io::stderr().is_terminal();
        let bars = (!quiet && is_tty).then(|| {
            indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stderr())
        });
        Self {
            inner: Arc::new(ViewInner {
                bars,
                quiet,
                blobs: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Clears the live view.
    pub(crate) fn finish(&self) {
        if let Some(bars) = &self.inner.bars {
            let _ = bars.clear();
        }
    }

    fn bar(
        &self,
        digest: &Digest,
        size: u64,
        direction: Direction,
    ) -> Option<indicatif::ProgressBar> {
        let bars = self.inner.bars.as_ref()?;
        let mut blobs = self
            .inner
            .blobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let bar = blobs.entry(digest.clone()).or_insert_with(|| {
            let bar = bars.add(indicatif::ProgressBar::new(size));
            let verb = match direction {
                Direction::Download => "pull",
                Direction::Upload => "push",
            };
            let template = format!(
                "{{prefix}} {verb} [{{bar:30}}] {{bytes}}/{{total_bytes}} {{bytes_per_sec}}"
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(digest.short().to_owned());
            bar
        });
        Some(bar.clone())
    }
}

impl TransferProgress for TransferView {
    fn on_event(&self, event: &TransferEvent) {
        if self.inner.quiet {
            return;
        }
        match event {
            TransferEvent::BlobStarted {
                digest,
                size,
                direction,
            } => {
                if self.bar(digest, *size, *direction).is_none() {
                    let verb = match direction {
                        Direction::Download => "Pulling",
                        Direction::Upload => "Pushing",
                    };
                    eprintln!(
                        "{}: {verb} {}",
                        digest.short(),
                        crate::images::human_size(*size)
                    );
                }
            }
            TransferEvent::BlobProgress { digest, done, .. } => {
                if let Some(bar) = self
                    .inner
                    .blobs
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get(digest)
                {
                    bar.set_position(*done);
                }
            }
            TransferEvent::BlobFinished {
                digest,
                size,
                outcome,
            } => {
                let text = match outcome {
                    BlobOutcome::Transferred => "Done".to_owned(),
                    BlobOutcome::AlreadyPresent => "Already exists".to_owned(),
                    BlobOutcome::Mounted { from } => format!("Mounted from {from}"),
                    _ => "Finished".to_owned(),
                };
                let bar = self
                    .inner
                    .blobs
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(digest);
                match (bar, &self.inner.bars) {
                    (Some(bar), Some(bars)) => {
                        bar.finish_and_clear();
                        bars.remove(&bar);
                        let _ = bars.println(format!(
                            "{}: {text} ({})",
                            digest.short(),
                            crate::images::human_size(*size)
                        ));
                    }
                    (None, Some(bars)) => {
                        let _ = bars.println(format!("{}: {text}", digest.short()));
                    }
                    _ => eprintln!("{}: {text}", digest.short()),
                }
            }
            TransferEvent::Retrying {
                operation,
                attempt,
                delay,
                reason,
            } => {
                let line =
                    format!("retrying {operation} (attempt {attempt} in {delay:?}): {reason}");
                match &self.inner.bars {
                    Some(bars) => {
                        let _ = bars.println(line);
                    }
                    None => eprintln!("{line}"),
                }
            }
            TransferEvent::ManifestPushed { reference, digest } => {
                eprintln!("{reference}: digest: {digest}");
            }
            TransferEvent::Resolved { .. } | _ => {}
        }
    }
}
