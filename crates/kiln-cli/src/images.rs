//! `kiln images`: the local store's tagged images, as `docker images` lists them
//! (REPOSITORY TAG IMAGE ID CREATED SIZE) plus the PLATFORMS each name holds (an index's
//! platforms not in the store marked `(not pulled)`), or one JSON object per line with
//! `--format json` (`Platforms`: `Platform`, `Manifest`, `Pulled`).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use serde_json::json;

/// Arguments of `kiln images`.
#[derive(Debug, Args)]
pub(crate) struct ImagesArgs {
    /// `table` (default) or `json` (one object per line, like `docker images --format json`).
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    format: String,
    /// Only show image IDs.
    #[arg(short, long)]
    quiet: bool,
}

/// One listed image, as printed.
struct Row {
    repository: String,
    tag: String,
    id: String,
    digest: String,
    created: Option<String>,
    size: u64,
    platforms: Vec<kiln_build::ImagePlatform>,
}

/// Runs `kiln images`.
pub(crate) fn run(args: &ImagesArgs, root: Option<&Path>) -> anyhow::Result<ExitCode> {
    let store = kiln_build::open_store(root)?;
    let mut rows = Vec::new();
    for image in kiln_build::list_images(&store)? {
        if let Some(problem) = &image.problem {
            eprintln!("warning: {}: {problem}", image.name);
        }
        rows.push(Row {
            repository: image.repository,
            tag: image.tag,
            id: image.id.to_string(),
            digest: image.digest.to_string(),
            created: image.created,
            size: image.size,
            platforms: image.platforms,
        });
    }
    let mut out = std::io::stdout().lock();
    let now = std::time::SystemTime::now();
    if args.quiet {
        for row in &rows {
            writeln!(out, "{}", short_id(&row.id)).context("writing to stdout")?;
        }
    } else if args.format == "json" {
        for row in &rows {
            let line = json!({
                "Repository": row.repository,
                "Tag": row.tag,
                "ID": short_id(&row.id),
                "Digest": row.digest,
                "CreatedAt": row.created,
                "CreatedSince": row.created.as_deref().map(|c| since(c, now)),
                "Size": human_size(row.size),
                "VirtualSize": row.size,
                "Platforms": row.platforms.iter().map(|p| json!({
                    "Platform": p.platform.to_string(),
                    "Manifest": p.manifest.to_string(),
                    "Pulled": p.is_present,
                })).collect::<Vec<_>>(),
            });
            writeln!(out, "{line}").context("writing to stdout")?;
        }
    } else {
        let table: Vec<[String; 6]> = rows
            .iter()
            .map(|r| {
                [
                    r.repository.clone(),
                    r.tag.clone(),
                    short_id(&r.id).to_owned(),
                    r.created
                        .as_deref()
                        .map_or_else(|| "N/A".to_owned(), |c| since(c, now)),
                    human_size(r.size),
                    kiln_build::describe_platforms(&r.platforms),
                ]
            })
            .collect();
        let header = [
            "REPOSITORY",
            "TAG",
            "IMAGE ID",
            "CREATED",
            "SIZE",
            "PLATFORMS",
        ]
        .map(str::to_owned);
        let mut widths = header.clone().map(|h| h.len());
        for row in &table {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(&table) {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<w$}   ");
                }
            }
            writeln!(out, "{}", line.trim_end()).context("writing to stdout")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The 12-hex-character image ID docker shows.
pub(crate) fn short_id(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    &hex[..hex.len().min(12)]
}

/// Byte sizes as docker prints them (`units.HumanSizeWithPrecision(size, 3)`): decimal units
/// (1 kB = 1000 B), the value rounded to the nearest with three significant digits
/// (`1.23MB`, `12.3MB`, `123MB`), trailing zeros dropped, no space. The one size format of
/// the CLI (images, history, prune, store verify, pull and push summaries).
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    #[expect(clippy::cast_precision_loss, reason = "display only")]
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    let digits = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    let rounded = format!("{value:.digits$}");
    let trimmed = if rounded.contains('.') {
        rounded
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    } else {
        rounded
    };
    format!("{trimmed}{}", UNITS[unit])
}

/// `3 days ago`, from an RFC 3339 UTC timestamp (`2024-01-02T03:04:05Z`).
fn since(created: &str, now: std::time::SystemTime) -> String {
    let Some(then) = kiln_build::oci::parse_rfc3339(created) else {
        return created.to_owned();
    };
    let now = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let secs = (now - then).max(0);
    let (n, unit) = match secs {
        s if s < 60 => return format!("{s} seconds ago"),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86_400 => (s / 3600, "hour"),
        s if s < 86_400 * 14 => (s / 86_400, "day"),
        s if s < 86_400 * 60 => (s / (86_400 * 7), "week"),
        s if s < 86_400 * 730 => (s / (86_400 * 30), "month"),
        s => (s / (86_400 * 365), "year"),
    };
    let plural = if n == 1 { "" } else { "s" };
    format!("{n} {unit}{plural} ago")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages_read_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_234_567), "1.23MB");
        assert_eq!(human_size(4_260_000), "4.26MB");
        assert_eq!(human_size(123_456_789), "123MB");
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_hours(72);
        assert_eq!(since("1970-01-01T00:00:00Z", now), "3 days ago");
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
    }
}
