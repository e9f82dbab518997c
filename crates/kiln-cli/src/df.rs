//! `kiln df` (also `kiln du`): what the local store holds, by kind, and what `kiln prune`
//! and `kiln prune --all` would reclaim (their dry runs).

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use kiln_build::GcOptions;

/// Arguments of `kiln df`.
#[derive(Debug, Args)]
pub(crate) struct DfArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

/// One kind of content: its store directory, and whether its items are the files below it
/// (blobs, cache records) or its entries (snapshots, cache mounts, temporary files).
const KINDS: [(&str, &str, bool); 5] = [
    ("blobs", "blobs", true),
    ("snapshots", "snapshots", false),
    ("cache records", "cache", true),
    ("cache mounts", "mounts", false),
    ("temporary", "tmp", false),
];

/// Runs `kiln df`.
pub(crate) fn run(args: &DfArgs, root: Option<&Path>) -> anyhow::Result<ExitCode> {
    let store = kiln_build::open_store(root)?;
    let images = kiln_build::list_images(&store)?.len();
    let mut rows = Vec::new();
    for (name, dir, by_file) in KINDS {
        let (items, bytes) = measure(&store.root().join(dir), by_file)
            .with_context(|| format!("measuring the store's {name}"))?;
        rows.push((name, items, bytes));
    }
    let reclaimable = |all: bool| -> anyhow::Result<u64> {
        let options = GcOptions {
            all,
            dry_run: true,
            ..GcOptions::default()
        };
        let report = kiln_build::prune(&store, &options, || {
            eprintln!("waiting for running kiln builds and imports to release the store…");
        })?;
        Ok(report.freed_bytes)
    };
    let (unused, with_cache) = (reclaimable(false)?, reclaimable(true)?);
    let total: u64 = rows.iter().map(|row| row.2).sum();
    let mut out = std::io::stdout().lock();
    if args.format == Format::Json {
        let kinds: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .map(|(name, items, bytes)| {
                (
                    (*name).to_owned(),
                    serde_json::json!({ "items": items, "bytes": bytes }),
                )
            })
            .collect();
        let doc = serde_json::json!({
            "images": images,
            "kinds": kinds,
            "total_bytes": total,
            "reclaimable_bytes": unused,
            "reclaimable_with_cache_bytes": with_cache,
        });
        writeln!(out, "{doc}").context("writing to stdout")?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "{:<15} {:>8} {:>10}", "KIND", "ITEMS", "SIZE").context("writing to stdout")?;
    writeln!(out, "{:<15} {images:>8} {:>10}", "images", "-").context("writing to stdout")?;
    for (name, items, bytes) in &rows {
        writeln!(
            out,
            "{name:<15} {items:>8} {:>10}",
            crate::images::human_size(*bytes)
        )
        .context("writing to stdout")?;
    }
    writeln!(
        out,
        "Total: {}; reclaimable: {} (kiln prune), {} (kiln prune --all)",
        crate::images::human_size(total),
        crate::images::human_size(unused),
        crate::images::human_size(with_cache)
    )
    .context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// The number of items under `dir` and the bytes of every regular file below it (symlinks
/// not followed); a missing directory is empty.
fn measure(dir: &Path, by_file: bool) -> std::io::Result<(usize, u64)> {
    let Ok(entries) = fs_err::read_dir(dir) else {
        return Ok((0, 0));
    };
    let mut items = 0;
    let mut bytes = 0;
    let mut stack = Vec::new();
    for entry in entries {
        let entry = entry?;
        if !by_file {
            items += 1;
        }
        stack.push(entry.path());
    }
    while let Some(path) = stack.pop() {
        let meta = fs_err::symlink_metadata(&path)?;
        if meta.is_dir() {
            for entry in fs_err::read_dir(&path)? {
                stack.push(entry?.path());
            }
        } else if meta.is_file() {
            bytes += meta.len();
            if by_file {
                items += 1;
            }
        }
    }
    Ok((items, bytes))
}
