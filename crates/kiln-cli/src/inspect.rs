//! `kiln inspect NAME`: the image's manifest and config as JSON on stdout
//! (`{"Name": …, "Digest": …, "Manifest": …, "Config": …}`); a JSON array when several names
//! are given, like `docker inspect`.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use kiln_oci::ImageRef;
use serde_json::json;

/// Arguments of `kiln inspect`.
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// Image names in the local store.
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
}

/// Runs `kiln inspect`.
pub(crate) fn run(args: &InspectArgs, root: Option<&Path>) -> anyhow::Result<ExitCode> {
    let store = crate::root::open_store(root)?;
    let mut out = Vec::new();
    for text in &args.names {
        let name = ImageRef::parse(text).with_context(|| format!("image name `{text}`"))?;
        let digest = store.require_ref(&name)?;
        let image = store.resolve_image(&digest, None)?;
        let manifest: serde_json::Value = serde_json::from_slice(image.manifest.bytes())
            .with_context(|| format!("parsing manifest {}", image.manifest.digest()))?;
        let config: serde_json::Value = serde_json::from_slice(image.config.bytes())
            .with_context(|| format!("parsing config {}", image.config.digest()))?;
        out.push(json!({
            "Name": name.to_string(),
            "Id": image.config.digest().to_string(),
            "Digest": digest.to_string(),
            "Manifest": manifest,
            "Config": config,
        }));
    }
    let text = if out.len() == 1 {
        serde_json::to_string_pretty(&out[0])
    } else {
        serde_json::to_string_pretty(&out)
    }
    .context("encoding JSON")?;
    writeln!(std::io::stdout().lock(), "{text}").context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}
