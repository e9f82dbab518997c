//! `kiln inspect IMAGE`: the image's manifest and config as JSON on stdout
//! (`{"Name": …, "Digest": …, "Manifest": …, "Config": …}`); a JSON array when several names
//! are given, like `docker inspect`.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use serde_json::json;

/// Arguments of `kiln inspect`.
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// Images in the local store: names or image ID prefixes.
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
}

/// Runs `kiln inspect`.
pub(crate) fn run(args: &InspectArgs, root: Option<&Path>) -> anyhow::Result<ExitCode> {
    let store = kiln_build::open_store(root)?;
    let mut out = Vec::new();
    for text in &args.names {
        let image = kiln_build::inspect_image(&store, text)?;
        out.push(json!({
            "Name": image.name,
            "Id": image.id.to_string(),
            "Digest": image.digest.to_string(),
            "Manifest": image.manifest,
            "Config": image.config,
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
