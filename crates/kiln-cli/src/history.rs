//! `kiln history IMAGE`: the image's history entries newest first, as `docker history` shows
//! them (IMAGE CREATED CREATED-BY SIZE COMMENT), or one JSON object per line with
//! `--format json`. The entries and their layer sizes are `kiln_build::image_history`'s.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use serde_json::json;

/// docker's width of a truncated CREATED BY cell.
const CREATED_BY_WIDTH: usize = 45;
/// The IMAGE cell of entries that have no image of their own (docker's wording).
const MISSING_ID: &str = "<missing>";

/// Arguments of `kiln history`.
#[derive(Debug, Args)]
pub(crate) struct HistoryArgs {
    /// The image (a name in the local store).
    #[arg(value_name = "IMAGE")]
    image: String,
    /// Don't truncate CREATED BY and image IDs.
    #[arg(long)]
    no_trunc: bool,
    /// Print sizes and dates in human-readable form (`-H=false` for bytes and RFC 3339).
    #[arg(
        short = 'H',
        long,
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    human: bool,
    /// `table` (default) or `json` (one object per line, like `docker history --format json`).
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    format: String,
}

/// One history entry, ready to print.
#[derive(Debug)]
struct Row {
    id: String,
    created: Option<String>,
    created_by: String,
    size: u64,
    comment: String,
}

/// Runs `kiln history`.
pub(crate) fn run(args: &HistoryArgs, root: Option<&Path>) -> anyhow::Result<ExitCode> {
    let store = kiln_build::open_store(root)?;
    let history = kiln_build::image_history(&store, &args.image)?;
    let mut rows: Vec<Row> = history
        .entries
        .into_iter()
        .map(|entry| Row {
            id: MISSING_ID.to_owned(),
            created: entry.created,
            created_by: entry.created_by,
            size: entry.size,
            comment: entry.comment,
        })
        .collect();
    if let Some(top) = rows.first_mut() {
        let id = history.id.to_string();
        top.id = if args.no_trunc {
            id
        } else {
            crate::images::short_id(&id).to_owned()
        };
    }
    print_rows(&rows, args)?;
    Ok(ExitCode::SUCCESS)
}

fn print_rows(rows: &[Row], args: &HistoryArgs) -> anyhow::Result<()> {
    let now = std::time::SystemTime::now();
    let created = |row: &Row| match (&row.created, args.human) {
        (None, _) => "N/A".to_owned(),
        (Some(text), true) => created_since(text, now),
        (Some(text), false) => text.clone(),
    };
    let created_by = |row: &Row| {
        let text = row.created_by.replace('\t', " ");
        if args.no_trunc {
            text
        } else {
            ellipsis(&text, CREATED_BY_WIDTH)
        }
    };
    let size = |row: &Row| {
        if args.human {
            crate::images::human_size(row.size)
        } else {
            row.size.to_string()
        }
    };
    let mut out = std::io::stdout().lock();
    if args.format == "json" {
        for row in rows {
            let line = json!({
                "Comment": row.comment,
                "CreatedAt": row.created,
                "CreatedBy": created_by(row),
                "CreatedSince": row.created.as_deref().map(|c| created_since(c, now)),
                "ID": row.id,
                "Size": size(row),
            });
            writeln!(out, "{line}").context("writing to stdout")?;
        }
        return Ok(());
    }
    let header = ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"].map(str::to_owned);
    let table: Vec<[String; 5]> = rows
        .iter()
        .map(|row| {
            [
                row.id.clone(),
                created(row),
                created_by(row),
                size(row),
                row.comment.clone(),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &table {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&table) {
        let mut line = String::new();
        for (index, (cell, width)) in row.iter().zip(widths).enumerate() {
            if index + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}   ");
            }
        }
        writeln!(out, "{}", line.trim_end()).context("writing to stdout")?;
    }
    Ok(())
}

/// docker's `formatter.Ellipsis`: at most `width` characters, the last one `…` when cut.
fn ellipsis(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width - 1).collect();
    cut.push('…');
    cut
}

/// `5 minutes ago` from an RFC 3339 timestamp, with docker's `units.HumanDuration` wording.
fn created_since(created: &str, now: std::time::SystemTime) -> String {
    let Some(then) = kiln_build::oci::parse_rfc3339(created) else {
        return created.to_owned();
    };
    let now = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    format!("{} ago", human_duration((now - then).max(0)))
}

/// docker's `units.HumanDuration` for whole seconds.
fn human_duration(seconds: i64) -> String {
    const MINUTE: i64 = 60;
    const HOUR: i64 = 60 * MINUTE;
    const DAY: i64 = 24 * HOUR;
    let minutes = seconds / MINUTE;
    // Go rounds hours to the nearest one.
    let hours = (seconds + HOUR / 2) / HOUR;
    match seconds {
        s if s < 1 => "Less than a second".to_owned(),
        1 => "1 second".to_owned(),
        s if s < MINUTE => format!("{s} seconds"),
        _ if minutes == 1 => "About a minute".to_owned(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".to_owned(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        s => format!("{} years", s / (DAY * 365)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_by_is_cut_like_docker() {
        let long = "/bin/sh -c #(nop) ADD file:0123456789abcdef0123456789 in /";
        let cut = ellipsis(long, CREATED_BY_WIDTH);
        assert_eq!(cut.chars().count(), CREATED_BY_WIDTH);
        assert!(cut.ends_with('…'));
        assert_eq!(ellipsis("short", CREATED_BY_WIDTH), "short");
    }

    #[test]
    fn durations_read_like_docker() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(30), "30 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(5 * 60), "5 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(5 * 3600), "5 hours");
        assert_eq!(human_duration(3 * 86_400), "3 days");
        assert_eq!(human_duration(20 * 86_400), "2 weeks");
        assert_eq!(human_duration(90 * 86_400), "3 months");
        assert_eq!(human_duration(3 * 365 * 86_400), "3 years");
    }

    #[test]
    fn created_since_uses_docker_wording() {
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_mins(10);
        assert_eq!(created_since("1970-01-01T00:05:00Z", now), "5 minutes ago");
    }
}
