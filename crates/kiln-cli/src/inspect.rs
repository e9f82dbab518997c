//! `kiln inspect [--platform P] IMAGE`: the image's manifest and config as JSON on stdout
//! (`{"Name": …, "Id": …, "Digest": …, "Platform": …, "Manifest": …, "Config": …,
//! "Platforms": […]}`); for a multi-platform name without `--platform`, its index
//! (`"IndexDigest"`, `"Index"`) and `"Platforms"` instead of one image. A JSON array when
//! several names are given, like `docker inspect`.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use kiln_build::oci::Platform;
use serde_json::json;

/// Arguments of `kiln inspect`.
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// Images in the local store: names or image ID prefixes.
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
    /// Show this platform's image of a multi-platform name (an error names the platforms it
    /// has); without it, a multi-platform name shows its index and platforms.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = crate::flags::parse_platform)]
    platform: Option<Platform>,
}

/// Runs `kiln inspect`.
pub(crate) fn run(args: &InspectArgs, root: Option<&Path>) -> anyhow::Result<ExitCode> {
    let store = kiln_build::open_store(root)?;
    let mut out = Vec::new();
    for text in &args.names {
        let image = kiln_build::inspect_image(&store, text, args.platform.as_ref())?;
        if let Some(warning) = &image.platform_warning {
            eprintln!("WARNING: {warning}");
        }
        let platforms: Vec<_> = image
            .platforms
            .iter()
            .map(|p| {
                json!({
                    "Platform": p.platform.to_string(),
                    "Manifest": p.manifest.to_string(),
                    "Pulled": p.is_present,
                })
            })
            .collect();
        let mut entry = json!({
            "Name": image.name,
            "Digest": image.digest.to_string(),
            "Platforms": platforms,
        });
        if let Some(id) = &image.id {
            entry["Id"] = json!(id.to_string());
        }
        if let Some(platform) = &image.platform {
            entry["Platform"] = json!(platform.to_string());
        }
        if let Some(manifest) = image.manifest {
            entry["Manifest"] = manifest;
        }
        if let Some(config) = image.config {
            entry["Config"] = config;
        }
        if let Some((digest, index)) = image.index {
            entry["IndexDigest"] = json!(digest.to_string());
            entry["Index"] = index;
        }
        out.push(entry);
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
