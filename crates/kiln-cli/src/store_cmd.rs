//! `kiln store verify [--repair]`: rehashes every blob of the local store, checks that every
//! image name points at a complete image and every cache record parses, and that the store
//! root is private (mode 0700, owned by the running user); with `--repair`,
//! removes what is corrupt and what crashed processes left in `tmp/`. Exits 1 when problems
//! were found and not repaired.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

/// Arguments of `kiln store`.
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Check the store's integrity (and repair it with --repair).
    Verify(VerifyArgs),
}

/// Arguments of `kiln store verify`.
#[derive(Debug, Args)]
struct VerifyArgs {
    /// Remove corrupt blobs, broken refs, corrupt records and leftover temp files.
    #[arg(long)]
    repair: bool,
}

/// Runs `kiln store …`.
pub(crate) fn run(args: &StoreArgs, root: Option<&Path>) -> anyhow::Result<ExitCode> {
    match &args.command {
        StoreCommand::Verify(verify) => run_verify(verify, root),
    }
}

fn run_verify(args: &VerifyArgs, root: Option<&Path>) -> anyhow::Result<ExitCode> {
    let store = kiln_build::open_store(root)?;
    let report = store.verify(args.repair)?;
    let mut out = std::io::stdout().lock();
    let w = |out: &mut std::io::StdoutLock<'_>, line: String| {
        writeln!(out, "{line}").context("writing to stdout")
    };
    w(
        &mut out,
        format!(
            "checked {} blobs ({}), {} refs, {} cache records",
            report.blobs_checked,
            crate::images::human_size(report.bytes_checked),
            report.refs_checked,
            report.records_checked
        ),
    )?;
    let mut unrepaired = 0;
    for problem in &report.problems {
        let action = match problem.repair_action() {
            Some(action) if report.repaired => action,
            Some(_) => "found",
            None => {
                unrepaired += 1;
                "found"
            }
        };
        w(&mut out, format!("{action}: {problem}"))?;
    }
    let action = if report.repaired { "removed" } else { "found" };
    for path in &report.leftover_temp {
        w(
            &mut out,
            format!(
                "{action}: leftover temp file of a crashed process {}",
                path.display()
            ),
        )?;
    }
    if report.is_consistent() {
        w(&mut out, "store is consistent".to_owned())?;
        return Ok(ExitCode::SUCCESS);
    }
    if report.repaired && unrepaired > 0 {
        w(
            &mut out,
            format!("{unrepaired} problems that --repair does not change"),
        )?;
        return Ok(ExitCode::from(crate::EXIT_FAILURE));
    }
    if report.repaired {
        w(
            &mut out,
            format!("repaired {} problems", report.problems.len()),
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    w(
        &mut out,
        format!(
            "{} problems; run `kiln store verify --repair` to remove them",
            report.problems.len()
        ),
    )?;
    Ok(ExitCode::from(crate::EXIT_FAILURE))
}
