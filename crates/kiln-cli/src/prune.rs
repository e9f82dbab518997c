//! `kiln prune`: garbage-collects the local store. By default removes blobs and snapshots
//! nothing references; `--older-than` and `--max-size` also evict cache records (least
//! recently used first); `--all` removes every cache record and unused cache mount. Tagged
//! images and what running builds use are never removed.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use kiln_build::GcOptions;

/// Arguments of `kiln prune`.
#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// Remove all build cache, not just unreferenced content.
    #[arg(short, long)]
    all: bool,
    /// Keep at most this much (e.g. `10GB`, `512MB`), evicting least recently used cache
    /// (buildx's spelling: `--keep-storage`).
    #[arg(long, visible_alias = "keep-storage", value_name = "SIZE", value_parser = parse_size)]
    max_size: Option<u64>,
    /// Remove cache not used for this long (e.g. `24h`, `7d`, `90m`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    older_than: Option<Duration>,
    /// buildx's filter: `until=DURATION` (the same as `--older-than`); no other key.
    #[arg(
        long,
        value_name = "until=DURATION",
        value_parser = parse_filter,
        conflicts_with = "older_than"
    )]
    filter: Vec<Duration>,
    /// Do not ask for confirmation (buildx); kiln never asks.
    #[arg(short, long)]
    force: bool,
    /// Show what would be removed, remove nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Runs `kiln prune`.
pub(crate) fn run(args: &PruneArgs, root: Option<&Path>) -> anyhow::Result<ExitCode> {
    let store = kiln_build::open_store(root)?;
    // `--force` only skips buildx's confirmation prompt, which kiln does not have.
    let _ = args.force;
    let options = GcOptions {
        all: args.all,
        older_than: args
            .older_than
            .or_else(|| args.filter.iter().min().copied()),
        max_size: args.max_size,
        dry_run: args.dry_run,
    };
    let report = kiln_build::prune(&store, &options, || {
        eprintln!("waiting for running kiln builds and imports to release the store…");
    })?;
    let verb = if args.dry_run {
        "Would remove"
    } else {
        "Removed"
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{verb} {} blobs, {} snapshots, {} cache records, {} cache mounts, {} leftover temp files",
        report.removed_blobs,
        report.removed_snapshots,
        report.removed_records,
        report.removed_mounts,
        report.removed_temp
    )
    .context("writing to stdout")?;
    writeln!(
        out,
        "Total reclaimed space: {}\nStill in use: {}",
        crate::images::human_size(report.freed_bytes),
        crate::images::human_size(report.kept_bytes)
    )
    .context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// `--filter until=24h` (buildx prune); any other filter key is a usage error naming it.
fn parse_filter(text: &str) -> anyhow::Result<Duration> {
    match text.split_once('=') {
        Some(("until", duration)) => parse_duration(duration),
        Some((key, _)) => {
            bail!("unknown --filter key `{key}`: kiln prune filters by until=DURATION only")
        }
        None => bail!("invalid --filter `{text}`: expected until=DURATION"),
    }
}

/// `10GB`, `512MiB`, `1.5G`, `4096` (bytes).
fn parse_size(text: &str) -> anyhow::Result<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .with_context(|| format!("`{text}` is not a size like 10GB or 512MB"))?;
    let multiplier: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => {
            bail!("`{text}`: unknown size unit `{other}` (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)")
        }
    };
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "non-negative by parsing; sizes far below 2^53"
    )]
    Ok((value * multiplier) as u64)
}

/// `90s`, `30m`, `24h`, `7d`, `1h30m`.
fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let mut total = 0u64;
    let mut number = String::new();
    let mut has_unit = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number
            .parse()
            .with_context(|| format!("`{text}` is not a duration like 24h, 7d or 90m"))?;
        let seconds = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            other => bail!("`{text}`: unknown duration unit `{other}` (s, m, h, d, w)"),
        };
        total = total.saturating_add(n.saturating_mul(seconds));
        number.clear();
        has_unit = true;
    }
    if !number.is_empty() || !has_unit {
        bail!("`{text}` is not a duration like 24h, 7d or 90m (every number needs a unit)");
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("10GB").unwrap(), 10_000_000_000);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("1XB").is_err());
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_mins(90));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_hours(168));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("5y").is_err());
    }
}
